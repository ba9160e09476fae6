//! A tenant's call rules against toll fraud: which numbers may be parties of
//! its bindings (and so be called through the carrier trunk). A number is
//! allowed when it starts with an allowed prefix and with no denied one.
//! Until a tenant sets its own, its parties must be in the default region's
//! country, and the international premium-rate, shared-cost and satellite
//! ranges are denied.

use crate::{Error, Number, Region};

/// Most prefixes in one list.
pub const MAX_PREFIXES: usize = 256;

/// Denied unless a tenant says otherwise: satellite networks (Inmarsat
/// +870, the global mobile satellite system +881), international networks
/// (+882, +883), international premium rate (+979) and shared cost (+808).
/// Calls to them are billed at rates fraud lives on.
pub const DEFAULT_DENY: [&str; 6] = ["+870", "+881", "+882", "+883", "+979", "+808"];

/// An E.164 prefix: `+` and 1 to 15 digits.
#[derive(Clone, PartialEq, Eq, Debug, Hash)]
pub struct Prefix(String);

impl Prefix {
    pub fn parse(s: &str) -> Result<Prefix, Error> {
        let digits = s.strip_prefix('+').ok_or(Error::InvalidPrefix)?;
        if digits.is_empty() || digits.len() > 15 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Error::InvalidPrefix);
        }
        Ok(Prefix(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn matches(&self, e164: &str) -> bool {
        e164.starts_with(&self.0)
    }
}

/// A tenant's rules.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct CallRules {
    pub allow_prefixes: Vec<Prefix>,
    pub deny_prefixes: Vec<Prefix>,
    pub caps: CallCaps,
}

/// How many of a tenant's calls may run through the trunk at once, and
/// start in any one second, counted over every node (see
/// [`crate::call_load`]). `None`: no cap.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct CallCaps {
    pub max_concurrent_calls: Option<u32>,
    pub max_calls_per_second: Option<u32>,
}

impl CallCaps {
    pub fn is_capped(&self) -> bool {
        self.max_concurrent_calls.is_some() || self.max_calls_per_second.is_some()
    }
}

impl CallRules {
    /// The rules of a tenant that set none: `region`'s country code only,
    /// [`DEFAULT_DENY`] denied.
    pub fn defaults(region: Region) -> CallRules {
        CallRules {
            allow_prefixes: region
                .country_code()
                .map(|cc| Prefix(format!("+{cc}")))
                .into_iter()
                .collect(),
            deny_prefixes: DEFAULT_DENY
                .iter()
                .map(|p| Prefix((*p).to_owned()))
                .collect(),
            caps: CallCaps::default(),
        }
    }

    /// Rules from lists, checked: each a prefix, at most [`MAX_PREFIXES`]
    /// each.
    pub fn new(allow: &[String], deny: &[String]) -> Result<CallRules, Error> {
        if allow.len() > MAX_PREFIXES || deny.len() > MAX_PREFIXES {
            return Err(Error::InvalidPrefix);
        }
        let parse = |l: &[String]| -> Result<Vec<Prefix>, Error> {
            l.iter().map(|p| Prefix::parse(p)).collect()
        };
        Ok(CallRules {
            allow_prefixes: parse(allow)?,
            deny_prefixes: parse(deny)?,
            caps: CallCaps::default(),
        })
    }

    pub fn with_caps(self, caps: CallCaps) -> CallRules {
        CallRules { caps, ..self }
    }

    /// Whether `n` may be a party.
    pub fn allows(&self, n: Number) -> bool {
        let e164 = n.to_string();
        self.allow_prefixes.iter().any(|p| p.matches(&e164))
            && !self.deny_prefixes.iter().any(|p| p.matches(&e164))
    }

    /// `Ok` when every party may be one, else `DestinationNotAllowed`.
    pub fn check(&self, parties: impl IntoIterator<Item = Number>) -> Result<(), Error> {
        match parties.into_iter().all(|n| self.allows(n)) {
            true => Ok(()),
            false => Err(Error::DestinationNotAllowed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn n(s: &str) -> Number {
        Number::from_e164(s).unwrap()
    }

    #[test]
    fn by_default_only_the_regions_country_is_allowed() {
        let cn = CallRules::defaults(Region::default());
        assert!(cn.allows(n("+8613800138000")));
        assert!(!cn.allows(n("+12025550100")));
        assert!(!cn.allows(n("+447700900123")));
        let us = CallRules::defaults("US".parse().unwrap());
        assert!(us.allows(n("+12025550100")));
        assert!(!us.allows(n("+8613800138000")));
    }

    #[test]
    fn a_denied_prefix_wins_over_an_allowed_one() {
        let rules = CallRules::new(
            &["+86".into(), "+8".into()],
            &["+86138".into(), "+881".into()],
        )
        .unwrap();
        assert!(rules.allows(n("+8613900139000")));
        assert!(!rules.allows(n("+8613800138000")));
        assert_eq!(
            rules.check([n("+8613900139000"), n("+8613800138000")]),
            Err(Error::DestinationNotAllowed)
        );
        assert_eq!(rules.check([n("+8613900139000")]), Ok(()));
    }

    #[test]
    fn prefixes_are_a_plus_and_digits() {
        for bad in ["86", "+", "+8a", "+1234567890123456", " +86", ""] {
            assert_eq!(Prefix::parse(bad), Err(Error::InvalidPrefix), "{bad:?}");
        }
        assert!(Prefix::parse("+881").is_ok());
        let many = vec!["+1".to_owned(); MAX_PREFIXES + 1];
        assert_eq!(CallRules::new(&many, &[]), Err(Error::InvalidPrefix));
    }

    proptest! {
        /// Allowed exactly when some allowed prefix starts the number and
        /// no denied one does.
        #[test]
        fn allows_is_prefix_logic(
            digits in "[1-9][0-9]{9,12}",
            allow in proptest::collection::vec("[1-9][0-9]{0,3}", 0..4),
            deny in proptest::collection::vec("[1-9][0-9]{0,4}", 0..4),
        ) {
            let Ok(number) = Number::from_e164(&format!("+{digits}")) else {
                return Ok(());
            };
            let plus = |v: &Vec<String>| v.iter().map(|p| format!("+{p}")).collect::<Vec<_>>();
            let rules = CallRules::new(&plus(&allow), &plus(&deny)).unwrap();
            let e164 = number.to_string();
            let expected = allow.iter().any(|p| e164[1..].starts_with(p.as_str()))
                && !deny.iter().any(|p| e164[1..].starts_with(p.as_str()));
            prop_assert_eq!(rules.allows(number), expected);
        }
    }
}
