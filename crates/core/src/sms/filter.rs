//! The marketing filter for texts to axn and axe numbers: a tenant's own
//! rules, then (with the standard filter) the lexicon in `marketing.txt`.
//! Pick-up and verification texts always pass.

use std::sync::OnceLock;

use regex::{Regex, RegexSet, RegexSetBuilder};

use super::pickup::{is_verification, pickup_code};
use super::text::fold;
use crate::Error;

/// Whether the standard lexicon applies (tenant rules always do).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub enum FilterMode {
    Off,
    #[default]
    Standard,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum RuleAction {
    Block,
    Allow,
}

/// A tenant's rule: the first whose pattern matches a text decides it.
#[derive(Clone, Debug)]
pub struct Rule {
    pattern: Regex,
    pub action: RuleAction,
}

/// A tenant's filter, compiled once when its settings change.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    pub mode: FilterMode,
    pub rules: Vec<Rule>,
}

/// What the filter made of a text.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Verdict {
    Pass,
    /// The standard lexicon found bulk marketing.
    Marketing,
    /// The tenant's rule (its index) blocks it.
    Rule(usize),
}

/// Longest tenant pattern, and most rules, accepted.
pub const MAX_RULE_LEN: usize = 512;
pub const MAX_RULES: usize = 100;

impl Rule {
    /// A tenant's pattern: a regular expression matched case-insensitively
    /// against the text as received.
    pub fn new(pattern: &str, action: RuleAction) -> Result<Rule, Error> {
        if pattern.is_empty() || pattern.len() > MAX_RULE_LEN {
            return Err(Error::InvalidRule);
        }
        let pattern = regex::RegexBuilder::new(pattern)
            .case_insensitive(true)
            .size_limit(1 << 20)
            .build()
            .map_err(|_| Error::InvalidRule)?;
        Ok(Rule { pattern, action })
    }

    pub fn pattern(&self) -> &str {
        self.pattern.as_str()
    }
}

impl RuleAction {
    pub fn as_str(self) -> &'static str {
        match self {
            RuleAction::Block => "block",
            RuleAction::Allow => "allow",
        }
    }

    pub fn parse(s: &str) -> Option<RuleAction> {
        [RuleAction::Block, RuleAction::Allow]
            .into_iter()
            .find(|a| a.as_str() == s)
    }
}

impl FilterMode {
    pub fn as_str(self) -> &'static str {
        match self {
            FilterMode::Off => "off",
            FilterMode::Standard => "standard",
        }
    }

    pub fn parse(s: &str) -> Option<FilterMode> {
        [FilterMode::Off, FilterMode::Standard]
            .into_iter()
            .find(|m| m.as_str() == s)
    }
}

impl Filter {
    pub fn classify(&self, text: &str) -> Verdict {
        if pickup_code(text).is_some() || is_verification(text) {
            return Verdict::Pass;
        }
        if let Some((i, rule)) = self
            .rules
            .iter()
            .enumerate()
            .find(|(_, r)| r.pattern.is_match(text))
        {
            return match rule.action {
                RuleAction::Allow => Verdict::Pass,
                RuleAction::Block => Verdict::Rule(i),
            };
        }
        match self.mode {
            FilterMode::Standard if Lexicon::standard().is_marketing(&fold(text)) => {
                Verdict::Marketing
            }
            _ => Verdict::Pass,
        }
    }
}

/// The standard filter's data (`marketing.txt`), parsed once.
struct Lexicon {
    unsubscribe: RegexSet,
    promo: RegexSet,
    weights: Vec<i32>,
    with_marker: i32,
    without_marker: i32,
}

impl Lexicon {
    fn standard() -> &'static Lexicon {
        static LEXICON: OnceLock<Lexicon> = OnceLock::new();
        LEXICON.get_or_init(|| Lexicon::parse(include_str!("marketing.txt")))
    }

    /// Panics on a bad line: the file ships with the binary and a unit test
    /// parses it.
    fn parse(data: &str) -> Lexicon {
        let (mut unsubscribe, mut promo, mut weights) = (Vec::new(), Vec::new(), Vec::new());
        let (mut with_marker, mut without_marker) = (1, i32::MAX);
        for line in data.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (kind, rest) = line.split_once(' ').unwrap_or((line, ""));
            match kind {
                "unsubscribe" => unsubscribe.push(ascii_boundaries(rest)),
                "promo" => {
                    let (w, p) = rest.split_once(' ').unwrap_or(("", rest));
                    weights.push(w.parse().unwrap_or_else(|_| panic!("weight in {line:?}")));
                    promo.push(ascii_boundaries(p));
                }
                "threshold" => {
                    let (name, v) = rest.split_once(' ').unwrap_or((rest, ""));
                    let v = v.parse().unwrap_or_else(|_| panic!("value in {line:?}"));
                    match name {
                        "with_marker" => with_marker = v,
                        "without_marker" => without_marker = v,
                        _ => panic!("unknown threshold in {line:?}"),
                    }
                }
                _ => panic!("unknown rule kind in {line:?}"),
            }
        }
        let set = |patterns: &[String]| {
            RegexSetBuilder::new(patterns)
                .build()
                .unwrap_or_else(|e| panic!("marketing.txt: {e}"))
        };
        Lexicon {
            unsubscribe: set(&unsubscribe),
            promo: set(&promo),
            weights,
            with_marker,
            without_marker,
        }
    }

    fn is_marketing(&self, folded: &str) -> bool {
        let promo: i32 = self
            .promo
            .matches(folded)
            .iter()
            .map(|i| self.weights[i])
            .sum();
        let threshold = if self.unsubscribe.is_match(folded) {
            self.with_marker
        } else {
            self.without_marker
        };
        promo >= threshold
    }
}

/// `\b` between ASCII words only: `回T退订` has a boundary after `t`, though
/// CJK characters are word characters to Unicode.
fn ascii_boundaries(pattern: &str) -> String {
    pattern.replace(r"\b", r"(?-u:\b)")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn standard() -> Filter {
        Filter::default()
    }

    #[test]
    fn the_lexicon_parses() {
        let l = Lexicon::standard();
        assert_eq!(l.weights.len(), l.promo.len());
        assert!(l.unsubscribe.len() > 5);
    }

    #[test]
    fn marketing_with_an_opt_out_is_blocked() {
        for text in [
            "【某商城】双11狂欢，全场满300减50，领券戳 t.cn/abc 回T退订",
            "Flash sale! 50% off everything this weekend. Reply STOP to opt out",
            "会员日专享，积分兑好礼，拒收请回复R",
        ] {
            assert_eq!(standard().classify(text), Verdict::Marketing, "{text}");
        }
    }

    #[test]
    fn codes_always_pass() {
        for text in [
            "【某银行】验证码 482913，5分钟内有效。回T退订",
            "【菜鸟驿站】会员日福利！取件码12-3-4567，回T退订",
            "Your verification code is 5521. Reply STOP to opt out",
        ] {
            assert_eq!(standard().classify(text), Verdict::Pass, "{text}");
        }
        let block_all = Filter {
            mode: FilterMode::Standard,
            rules: vec![Rule::new(".", RuleAction::Block).unwrap()],
        };
        assert_eq!(block_all.classify("验证码 482913"), Verdict::Pass);
        assert_eq!(block_all.classify("hello"), Verdict::Rule(0));
    }

    #[test]
    fn notices_with_an_opt_out_pass() {
        for text in [
            "【某银行】您尾号1234的账户12月5日支出200.00元，余额1000.00元。回T退订",
            "Your appointment is on Monday at 10:00. Reply STOP to opt out",
        ] {
            assert_eq!(standard().classify(text), Verdict::Pass, "{text}");
        }
    }

    #[test]
    fn tenant_rules_come_first_and_the_first_match_wins() {
        let f = Filter {
            mode: FilterMode::Standard,
            rules: vec![
                Rule::new("好邻居超市", RuleAction::Allow).unwrap(),
                Rule::new("贷款|借钱", RuleAction::Block).unwrap(),
            ],
        };
        assert_eq!(f.classify("好邻居超市 满100减20 回T退订"), Verdict::Pass);
        assert_eq!(f.classify("急用钱？低息贷款"), Verdict::Rule(1));
        let off = Filter {
            mode: FilterMode::Off,
            rules: vec![],
        };
        assert_eq!(off.classify("双11狂欢 满300减50 回T退订"), Verdict::Pass);
    }

    #[test]
    fn bad_rules_are_refused() {
        assert_eq!(
            Rule::new("(", RuleAction::Block).err(),
            Some(Error::InvalidRule)
        );
        assert_eq!(
            Rule::new("", RuleAction::Block).err(),
            Some(Error::InvalidRule)
        );
        let long = "a".repeat(MAX_RULE_LEN + 1);
        assert_eq!(
            Rule::new(&long, RuleAction::Block).err(),
            Some(Error::InvalidRule)
        );
    }
}
