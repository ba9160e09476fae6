//! Phone numbers: parsing and validation (libphonenumber's data through the
//! `phonenumber` crate), the compact E.164 form the index keys on, masking for
//! logs, and area derivation.

use std::fmt;
use std::num::NonZeroU64;
use std::str::FromStr;

use phonenumber::country;

use crate::Error;

/// An E.164 number held as its digits in a `u64` (at most 15 digits, never a
/// leading zero), so the route index keys on 8 bytes and `Option<Number>` is
/// free.
///
/// `Display` prints the full E.164 form and is meant for API output only;
/// `Debug` prints the masked form so that a stray `?binding` in a log line
/// never leaks a real number.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Number(NonZeroU64);

/// Region used to read national-format input (`MASKLINE_DEFAULT_REGION`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Region(country::Id);

/// A number area (for China the long-distance code, e.g. `0571`), used to
/// match virtual numbers to where the parties are.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct Area(String);

/// Longest input we hand to the parser: anything longer is not a phone number,
/// and bounding it keeps parsing cost bounded.
const MAX_INPUT_LEN: usize = 40;

// === impl Region ===

impl Region {
    pub fn as_str(&self) -> &str {
        self.0.as_ref()
    }

    /// The region's country calling code (`86` for CN).
    pub fn country_code(&self) -> Option<u16> {
        phonenumber::metadata::DATABASE
            .by_id(self.0.as_ref())
            .map(|m| m.country_code())
    }
}

impl FromStr for Region {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let upper = s.trim().to_ascii_uppercase();
        country::Id::from_str(&upper)
            .map(Region)
            .map_err(|_| Error::InvalidRegion(s.to_owned()))
    }
}

impl Default for Region {
    fn default() -> Self {
        Region(country::Id::CN)
    }
}

// === impl Number ===

/// The E.164 digits of `input` as libphonenumber's metadata reads it, when
/// valid.
fn digits_of(input: &str, region: Region) -> Option<u64> {
    // The parser is third-party code fed by untrusted input; a panic in it
    // must become a refusal, not a dead request handler.
    std::panic::catch_unwind(|| {
        let pn = phonenumber::parse(Some(region.0), input).ok()?;
        if pn.extension().is_some() || !is_valid(&pn) {
            return None;
        }
        // E.164 is the country code, the national number's leading
        // zeros (Italy keeps them), then the national number; built
        // arithmetically rather than formatted and parsed back.
        let national = pn.national();
        let width = decimal_width(national.value()) + u32::from(national.zeros());
        u64::from(pn.code().value())
            .checked_mul(10u64.checked_pow(width)?)?
            .checked_add(national.value())
    })
    .ok()
    .flatten()
}

/// The types a valid number has one of, the common ones first.
const TYPES: [phonenumber::Type; 10] = [
    phonenumber::Type::Mobile,
    phonenumber::Type::FixedLine,
    phonenumber::Type::TollFree,
    phonenumber::Type::PremiumRate,
    phonenumber::Type::SharedCost,
    phonenumber::Type::Voip,
    phonenumber::Type::PersonalNumber,
    phonenumber::Type::Pager,
    phonenumber::Type::Uan,
    phonenumber::Type::Voicemail,
];

/// Whether `national` matches the region's general pattern and one of its
/// types: what `phonenumber::is_valid` asks of `number_type`. That function
/// names the type, so it tries premium rate, toll free and six more before
/// mobile; each miss is an unanchored regex search, and those were most of a
/// bind's parsing. Validity does not depend on the order.
fn has_type(meta: &phonenumber::Metadata, national: &str) -> bool {
    let d = meta.descriptors();
    d.get(phonenumber::Type::Unknown)
        .is_some_and(|general| general.is_match(national))
        && TYPES
            .iter()
            .any(|&t| d.get(t).is_some_and(|desc| desc.is_match(national)))
}

/// `phonenumber::is_valid`, step for step (the region a shared country code
/// belongs to is chosen as it chooses it), with [`has_type`] for its
/// `number_type(..) != Unknown`. A property test holds the two to the same
/// answers.
fn is_valid(pn: &phonenumber::PhoneNumber) -> bool {
    let db = &*phonenumber::metadata::DATABASE;
    let code = pn.code().value();
    let national = pn.national().to_string();
    let Some(regions) = db.region(&code) else {
        return false;
    };
    let meta = match regions.as_slice() {
        ["001"] => db.by_code(&code).and_then(|m| m.into_iter().next()),
        [only] => only
            .parse::<country::Id>()
            .ok()
            .and_then(|id| db.by_id(id.as_ref())),
        _ => {
            let chosen = regions.iter().find(|region| {
                db.by_id(**region)
                    .is_some_and(|meta| match meta.leading_digits() {
                        Some(p) => p.find(&national).is_some_and(|m| m.start() == 0),
                        None => has_type(meta, &national),
                    })
            });
            chosen
                .and_then(|r| r.parse::<country::Id>().ok())
                .and_then(|id| db.by_id(id.as_ref()))
        }
    };
    meta.is_some_and(|meta| has_type(meta, &national))
}

impl Number {
    /// Parses E.164 or national input (read in `region`) and validates it
    /// against libphonenumber's metadata.
    pub fn parse(input: &str, region: Region) -> Result<Number, Error> {
        let trimmed = input.trim();
        if trimmed.is_empty() || trimmed.len() > MAX_INPUT_LEN || !plausible(trimmed) {
            return Err(Error::InvalidNumber);
        }
        let digits = digits_of(trimmed, region).ok_or(Error::InvalidNumber)?;
        // Only a number that reads back as itself is accepted. With leading
        // zeros the metadata cannot place (`+800` and ten digits), the
        // parser keeps a different count of zeros depending on the region,
        // and the number stored would be another one than the one typed.
        // (`+44 (0)20 …`: the national trunk prefix written in brackets is
        // no digit of the number.)
        let typed = trimmed.strip_prefix('+').map(|rest| {
            rest.replace("(0)", "")
                .bytes()
                .filter(u8::is_ascii_digit)
                .map(char::from)
                .collect::<String>()
        });
        // Input already in E.164 was read back just above: parsing it again
        // would only repeat that answer, at half of a bind's parsing cost.
        let canonical = format!("+{digits}");
        if typed.is_some_and(|t| t != canonical[1..])
            || (trimmed != canonical && digits_of(&canonical, region) != Some(digits))
        {
            return Err(Error::InvalidNumber);
        }
        Number::from_digits(digits)
    }

    /// Reads an already-normalised `+digits` string (from our own store)
    /// without consulting the metadata.
    pub fn from_e164(s: &str) -> Result<Number, Error> {
        let digits = s.strip_prefix('+').ok_or(Error::InvalidNumber)?;
        if digits.is_empty()
            || digits.len() > 15
            || digits.starts_with('0')
            || !digits.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(Error::InvalidNumber);
        }
        let value: u64 = digits.parse().map_err(|_| Error::InvalidNumber)?;
        NonZeroU64::new(value)
            .map(Number)
            .ok_or(Error::InvalidNumber)
    }

    /// The E.164 digits as an integer (the compact form used by benchmarks
    /// and simulations that generate numbers).
    pub fn from_digits(value: u64) -> Result<Number, Error> {
        if value == 0 || value >= 1_000_000_000_000_000 {
            return Err(Error::InvalidNumber);
        }
        NonZeroU64::new(value)
            .map(Number)
            .ok_or(Error::InvalidNumber)
    }

    pub fn digits(self) -> u64 {
        self.0.get()
    }

    /// The form every log line uses: all but four middle digits, e.g.
    /// `+86138****0000`.
    pub fn masked(self) -> Masked {
        Masked(self)
    }

    /// The area of a virtual number when the numbering plan gives one:
    /// for Chinese fixed lines, the long-distance code with its trunk prefix
    /// (`+8657112345678` -> `0571`). Mobile numbers carry no area.
    pub fn derived_area(self) -> Option<Area> {
        let digits = self.digits().to_string();
        let national = digits.strip_prefix("86")?;
        let e164 = format!("+{digits}");
        let kind = std::panic::catch_unwind(|| {
            let pn = phonenumber::parse(None, &e164).ok()?;
            Some(pn.number_type(&phonenumber::metadata::DATABASE))
        })
        .ok()
        .flatten()?;
        if kind != phonenumber::Type::FixedLine && kind != phonenumber::Type::FixedLineOrMobile {
            return None;
        }
        // Beijing (10) and the 2x cities have two-digit codes, the rest three.
        let len = if national.starts_with('1') || national.starts_with('2') {
            2
        } else {
            3
        };
        Some(Area(format!("0{}", national.get(..len)?)))
    }
}

fn decimal_width(mut n: u64) -> u32 {
    let mut width = 1;
    while n >= 10 {
        n /= 10;
        width += 1;
    }
    width
}

/// Digits and the usual separators, with at most one `+`, in front. The
/// parser alone accepts more (`++86...`, letters as keypad digits), which no
/// platform means.
fn plausible(s: &str) -> bool {
    let body = s.strip_prefix('+').unwrap_or(s);
    body.bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b' ' | b'-' | b'(' | b')' | b'.'))
}

impl fmt::Display for Number {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "+{}", self.0)
    }
}

impl fmt::Debug for Number {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.masked(), f)
    }
}

/// A number formatted for logs.
#[derive(Clone, Copy)]
pub struct Masked(Number);

impl fmt::Display for Masked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let digits = self.0.digits().to_string();
        let n = digits.len();
        // Keep the last four and hide the four before them; very short
        // numbers show only their last two digits.
        let (shown_head, hidden) = if n >= 8 {
            (n - 8, 4)
        } else {
            (0, n.saturating_sub(2))
        };
        f.write_str("+")?;
        f.write_str(&digits[..shown_head])?;
        for _ in 0..hidden {
            f.write_str("*")?;
        }
        f.write_str(&digits[shown_head + hidden..])
    }
}

impl fmt::Debug for Masked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

// === impl Area ===

impl Area {
    /// 1 to 16 ASCII letters, digits or `-`: area codes, city codes, or an
    /// operator's own labels.
    pub fn new(s: &str) -> Result<Area, Error> {
        let ok = !s.is_empty()
            && s.len() <= 16
            && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if ok {
            Ok(Area(s.to_owned()))
        } else {
            Err(Error::InvalidArea)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Area {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Every country calling code in the metadata.
    fn codes() -> Vec<u16> {
        let mut codes: Vec<u16> = phonenumber::metadata::DATABASE
            .iter()
            .map(|m| m.country_code())
            .collect();
        codes.sort_unstable();
        codes.dedup();
        codes
    }

    fn same_validity(input: &str, region: country::Id) {
        if let Ok(pn) = phonenumber::parse(Some(region), input) {
            assert_eq!(
                is_valid(&pn),
                phonenumber::is_valid(&pn),
                "{input} read in {region:?}"
            );
        }
    }

    #[test]
    fn validity_agrees_with_libphonenumber_on_every_example_number() {
        let mut checked = 0;
        for meta in phonenumber::metadata::DATABASE.iter() {
            let Ok(region) = meta.id().parse::<country::Id>() else {
                continue;
            };
            for t in TYPES.iter().copied().chain([phonenumber::Type::Unknown]) {
                if let Some(example) = meta.descriptors().get(t).and_then(|d| d.example()) {
                    same_validity(example, region);
                    same_validity(&format!("+{}{example}", meta.country_code()), region);
                    checked += 1;
                }
            }
        }
        assert!(checked > 1000, "{checked} examples");
    }

    /// Every example number in the metadata, with its country code.
    fn examples() -> Vec<(u16, String)> {
        let mut all = Vec::new();
        for meta in phonenumber::metadata::DATABASE.iter() {
            for t in TYPES {
                if let Some(example) = meta.descriptors().get(t).and_then(|d| d.example()) {
                    all.push((meta.country_code(), example.to_owned()));
                }
            }
        }
        all
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(10_000))]

        /// Numbers near real ranges: an example with its last digits
        /// changed, valid about as often as not.
        #[test]
        fn validity_agrees_with_libphonenumber_near_examples(
            (code, example) in prop::sample::select(examples()),
            keep in 0usize..12,
            tail in "[0-9]{0,4}",
        ) {
            let head = &example[..keep.min(example.len())];
            same_validity(&format!("+{code}{head}{tail}"), country::Id::CN);
        }

        #[test]
        fn validity_agrees_with_libphonenumber(
            code in prop::sample::select(codes()),
            digits in "[0-9]{2,14}",
        ) {
            same_validity(&format!("+{code}{digits}"), country::Id::CN);
        }

        #[test]
        fn validity_of_national_input_agrees_with_libphonenumber(
            region in prop::sample::select(vec![
                country::Id::CN, country::Id::US, country::Id::GB, country::Id::IT,
                country::Id::VA, country::Id::RU, country::Id::KZ, country::Id::CA,
            ]),
            digits in "0?[0-9]{3,12}",
        ) {
            same_validity(&digits, region);
        }
    }

    fn cn() -> Region {
        Region::default()
    }

    #[test]
    fn e164_and_national_mobile_normalise_to_the_same_number() {
        let a = Number::parse("+8613800138000", cn()).unwrap();
        let b = Number::parse("13800138000", cn()).unwrap();
        let c = Number::parse(" 138 0013 8000 ", cn()).unwrap();
        assert_eq!(a, b);
        assert_eq!(a, c);
        assert_eq!(a.to_string(), "+8613800138000");
    }

    #[test]
    fn national_fixed_line_with_trunk_prefix_parses() {
        let n = Number::parse("057112345678", cn()).unwrap();
        assert_eq!(n.to_string(), "+8657112345678");
    }

    #[test]
    fn product_example_virtual_number_is_valid() {
        let n = Number::parse("+8657100000001", cn()).unwrap();
        assert_eq!(n.derived_area().unwrap().as_str(), "0571");
    }

    #[test]
    fn leading_zeros_of_the_national_number_are_kept() {
        let it: Region = "IT".parse().unwrap();
        let n = Number::parse("06 6982 1234", it).unwrap();
        assert_eq!(n.to_string(), "+390669821234");
    }

    /// Found by the `number` fuzz target: `+800` and ten digits was read
    /// as a valid eight-digit freephone number with two of its zeros gone,
    /// so the party stored was another number.
    #[test]
    fn a_number_is_accepted_only_if_it_reads_back_as_itself() {
        for region in ["CN", "US", "GB"] {
            let region: Region = region.parse().unwrap();
            match Number::parse("+8000000000001", region) {
                Err(e) => assert_eq!(e, Error::InvalidNumber),
                Ok(n) => assert_eq!(Number::parse(&n.to_string(), region), Ok(n)),
            }
            // An international number is the digits typed, or refused.
            if let Ok(n) = Number::parse("+800 0000 000001", region) {
                assert_eq!(n.to_string(), "+8000000000001");
            }
        }
        let gb: Region = "GB".parse().unwrap();
        assert_eq!(
            Number::parse("+44 (0)20 7946 0018", gb).map(|n| n.to_string()),
            Ok("+442079460018".to_owned())
        );
    }

    #[test]
    fn other_regions_parse_in_their_own_national_form() {
        let us: Region = "us".parse().unwrap();
        let n = Number::parse("(201) 555-0123", us).unwrap();
        assert_eq!(n.to_string(), "+12015550123");
    }

    #[test]
    fn invalid_inputs_are_refused() {
        for bad in [
            "",
            "   ",
            "abc",
            "+86",
            "12",
            "+861380013800099999",
            "+8613800138000 ext. 12",
            "++8613800138000",
            "+0013800138000",
            &"9".repeat(100),
        ] {
            assert!(
                Number::parse(bad, cn()).is_err(),
                "{bad:?} should be refused"
            );
        }
    }

    #[test]
    fn unknown_region_is_refused() {
        assert!("XX".parse::<Region>().is_err());
        assert!("".parse::<Region>().is_err());
        assert_eq!("cn".parse::<Region>().unwrap().as_str(), "CN");
    }

    #[test]
    fn from_e164_round_trips_and_rejects_garbage() {
        let n = Number::from_e164("+8613800138000").unwrap();
        assert_eq!(n.to_string(), "+8613800138000");
        for bad in ["8613800138000", "+", "+0123", "+12a4", "+1234567890123456"] {
            assert!(Number::from_e164(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn masking_hides_four_digits_before_the_last_four() {
        let n = Number::from_e164("+8613800138000").unwrap();
        assert_eq!(n.masked().to_string(), "+86138****8000");
        assert_eq!(format!("{n:?}"), "+86138****8000");
        let short = Number::from_digits(12345).unwrap();
        assert_eq!(short.masked().to_string(), "+***45");
    }

    #[test]
    fn area_derives_from_chinese_fixed_lines_only() {
        let hz = Number::parse("+8657187654321", cn()).unwrap();
        assert_eq!(hz.derived_area().unwrap().as_str(), "0571");
        let bj = Number::parse("+861087654321", cn()).unwrap();
        assert_eq!(bj.derived_area().unwrap().as_str(), "010");
        let mobile = Number::parse("+8613800138000", cn()).unwrap();
        assert_eq!(mobile.derived_area(), None);
    }

    #[test]
    fn areas_are_validated() {
        assert!(Area::new("0571").is_ok());
        assert!(Area::new("").is_err());
        assert!(Area::new("05 71").is_err());
        assert!(Area::new(&"1".repeat(17)).is_err());
    }
}
