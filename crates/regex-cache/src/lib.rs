//! The part of `regex-cache` 0.2's API that `phonenumber` uses, with each
//! pattern compiled once, on first use, and kept by the `CachedRegex` that
//! owns it.
//!
//! The published crate keeps compiled patterns in one LRU (100 entries, for
//! every pattern of libphonenumber's metadata) behind a global mutex: every
//! match locks it, hashes the pattern's text with SipHash and searches while
//! holding the lock. Validating the two parties of a binding was about a
//! quarter of the server's CPU on the bind path, a third of that the lock,
//! the hash and the LRU, and it serialised request threads on the lock
//! (BENCHMARKS.md §6.0). Matching is the `regex` crate's
//! either way, with the same pattern and options, so answers do not change;
//! `crates/core`'s tests check numbers against libphonenumber's examples.

use std::borrow::Cow;
use std::fmt;
use std::sync::{Arc, Mutex, OnceLock};

use regex::{Captures, Match, Replacer};
pub use regex::{Error, Regex, RegexBuilder};

/// Accepted for compatibility; compiled patterns live in each
/// [`CachedRegex`], not here.
#[derive(Clone, Debug, Default)]
pub struct RegexCache;

impl RegexCache {
    pub fn new(_capacity: usize) -> RegexCache {
        RegexCache
    }
}

#[derive(Clone, Debug)]
struct Options {
    case_insensitive: bool,
    multi_line: bool,
    dot_matches_new_line: bool,
    swap_greed: bool,
    ignore_whitespace: bool,
    unicode: bool,
    size_limit: usize,
    dfa_size_limit: usize,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            case_insensitive: false,
            multi_line: false,
            dot_matches_new_line: false,
            swap_greed: false,
            ignore_whitespace: false,
            unicode: true,
            // The published crate's limits, set on every pattern.
            size_limit: 10 * (1 << 20),
            dfa_size_limit: 2 * (1 << 20),
        }
    }
}

impl Options {
    fn compile(&self, source: &str) -> Result<Regex, Error> {
        let mut b = RegexBuilder::new(source);
        b.case_insensitive(self.case_insensitive)
            .multi_line(self.multi_line)
            .dot_matches_new_line(self.dot_matches_new_line)
            .swap_greed(self.swap_greed)
            .ignore_whitespace(self.ignore_whitespace)
            .unicode(self.unicode)
            .size_limit(self.size_limit)
            .dfa_size_limit(self.dfa_size_limit);
        b.build()
    }
}

/// A pattern compiled on first use.
#[derive(Clone)]
pub struct CachedRegex {
    source: Arc<str>,
    options: Arc<Options>,
    compiled: Arc<OnceLock<Regex>>,
}

impl CachedRegex {
    /// Checks the pattern's syntax now; compiles it on first use.
    pub fn new(cache: Arc<Mutex<RegexCache>>, source: &str) -> Result<CachedRegex, Error> {
        CachedRegexBuilder::new(cache, source).build()
    }

    pub fn new_unchecked(cache: Arc<Mutex<RegexCache>>, source: &str) -> CachedRegex {
        CachedRegexBuilder::new(cache, source).build_unchecked()
    }

    fn regex(&self) -> &Regex {
        self.compiled
            .get_or_init(|| match self.options.compile(&self.source) {
                Ok(re) => re,
                // As the published crate does: a pattern that passed the syntax
                // check but does not compile (a size limit) is a bug in the
                // metadata, not in the input being matched.
                Err(e) => panic!("pattern {:?} does not compile: {e}", self.source),
            })
    }

    pub fn is_match(&self, text: &str) -> bool {
        self.regex().is_match(text)
    }

    pub fn find<'t>(&self, text: &'t str) -> Option<Match<'t>> {
        self.regex().find(text)
    }

    pub fn captures<'t>(&self, text: &'t str) -> Option<Captures<'t>> {
        self.regex().captures(text)
    }

    pub fn replace<'t, R: Replacer>(&self, text: &'t str, rep: R) -> Cow<'t, str> {
        self.regex().replace(text, rep)
    }

    pub fn replace_all<'t, R: Replacer>(&self, text: &'t str, rep: R) -> Cow<'t, str> {
        self.regex().replace_all(text, rep)
    }

    pub fn shortest_match(&self, text: &str) -> Option<usize> {
        self.regex().shortest_match(text)
    }

    pub fn captures_len(&self) -> usize {
        self.regex().captures_len()
    }

    /// The pattern as given (without the builder's flags).
    pub fn as_str(&self) -> &str {
        &self.source
    }
}

impl fmt::Debug for CachedRegex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.source, f)
    }
}

impl fmt::Display for CachedRegex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&*self.source, f)
    }
}

#[derive(Clone, Debug)]
pub struct CachedRegexBuilder {
    source: String,
    options: Options,
}

impl CachedRegexBuilder {
    pub fn new(_cache: Arc<Mutex<RegexCache>>, source: &str) -> CachedRegexBuilder {
        CachedRegexBuilder {
            source: source.to_owned(),
            options: Options::default(),
        }
    }

    /// Checks the syntax (as the published crate does: with the parser's
    /// defaults, whatever the flags), and leaves compiling to first use.
    pub fn build(&self) -> Result<CachedRegex, Error> {
        if let Err(e) = regex_syntax::Parser::new().parse(&self.source) {
            return Err(Error::Syntax(e.to_string()));
        }
        Ok(self.build_unchecked())
    }

    pub fn build_unchecked(&self) -> CachedRegex {
        CachedRegex {
            source: Arc::from(self.source.as_str()),
            options: Arc::new(self.options.clone()),
            compiled: Arc::new(OnceLock::new()),
        }
    }

    pub fn case_insensitive(&mut self, yes: bool) -> &mut CachedRegexBuilder {
        self.options.case_insensitive = yes;
        self
    }

    pub fn multi_line(&mut self, yes: bool) -> &mut CachedRegexBuilder {
        self.options.multi_line = yes;
        self
    }

    pub fn dot_matches_new_line(&mut self, yes: bool) -> &mut CachedRegexBuilder {
        self.options.dot_matches_new_line = yes;
        self
    }

    pub fn swap_greed(&mut self, yes: bool) -> &mut CachedRegexBuilder {
        self.options.swap_greed = yes;
        self
    }

    pub fn ignore_whitespace(&mut self, yes: bool) -> &mut CachedRegexBuilder {
        self.options.ignore_whitespace = yes;
        self
    }

    pub fn unicode(&mut self, yes: bool) -> &mut CachedRegexBuilder {
        self.options.unicode = yes;
        self
    }

    pub fn size_limit(&mut self, limit: usize) -> &mut CachedRegexBuilder {
        self.options.size_limit = limit;
        self
    }

    pub fn dfa_size_limit(&mut self, limit: usize) -> &mut CachedRegexBuilder {
        self.options.dfa_size_limit = limit;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache() -> Arc<Mutex<RegexCache>> {
        Arc::new(Mutex::new(RegexCache::new(1)))
    }

    #[test]
    fn flags_apply_and_the_pattern_compiles_once() {
        let re = CachedRegexBuilder::new(cache(), "1 [3-9] \\d{2}")
            .ignore_whitespace(true)
            .build()
            .unwrap();
        assert!(re.is_match("1380"));
        assert_eq!(re.find("x1380").map(|m| m.start()), Some(1));
        assert!(!re.is_match("1 3 80"));
        let copy = re.clone();
        assert!(
            std::ptr::eq(re.regex(), copy.regex()),
            "clones share one compiled pattern"
        );
        assert_eq!(re.as_str(), "1 [3-9] \\d{2}");
        assert!(re.captures("138").is_none());
        assert_eq!(re.captures_len(), 1);
        assert_eq!(re.replace("1380", "x"), "x");
    }

    #[test]
    fn bad_syntax_is_an_error_at_build() {
        assert!(matches!(
            CachedRegex::new(cache(), "(unclosed"),
            Err(Error::Syntax(_))
        ));
        assert!(CachedRegex::new(cache(), "a(b)c").is_ok());
    }
}
