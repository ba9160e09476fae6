//! Bindings: their identity, mode, parties, controls and lifecycle.

use std::fmt;
use std::str::FromStr;

use crate::{Area, Error, Number};

/// Unix time in seconds. Time always comes in as a parameter so that expiry
/// is tested without sleeping.
pub type UnixTime = i64;

/// A binding's id: a UUID (v7, so ids sort by creation time and make stable
/// list cursors).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct BindingId(pub u128);

/// A tenant's id (a UUID).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct TenantId(pub u128);

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Mode {
    /// A and B reach each other through X.
    Axb,
    /// X belongs to A alone: anyone reaches A; A reaches B when set.
    Axn,
    /// X is shared; the binding is X plus extension digits leading to A.
    Axe,
}

/// Per-binding call rules.
///
/// Direction flags: in `axb`, `a_to_b` and `b_to_a` are the two directions.
/// In `axn` and `axe`, `a_to_b` governs A's calls out to B and `b_to_a` every
/// call that reaches A (from B or anyone else).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Controls {
    pub a_to_b: bool,
    pub b_to_a: bool,
    pub max_call_seconds: Option<u32>,
    pub record: bool,
    pub sms: bool,
    /// The caller hears `pre_connect` while the callee is called.
    pub pre_connect: bool,
    /// The callee hears `callee_whisper` as it answers.
    pub callee_whisper: bool,
    /// Both parties hear `last_minute` this long before
    /// `max_call_seconds` ends the call (at most
    /// [`MAX_WARN_BEFORE_END_SECS`]).
    pub warn_before_end_seconds: Option<u32>,
}

/// The longest `warn_before_end_seconds`: an hour.
pub const MAX_WARN_BEFORE_END_SECS: u32 = 3600;

/// Extension digits of an `axe` binding: 1 to 8 digits, leading zeros kept.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Extension {
    value: u32,
    len: u8,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum BindingStatus {
    Active,
    /// Ended, but its slots stay reserved and callers hear "expired".
    Cooling,
    /// Past cool-down: the slots are free again.
    Ended,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum EndReason {
    Unbound,
    Expired,
}

/// The full binding as stored and returned by the API.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Binding {
    pub id: BindingId,
    pub tenant: TenantId,
    pub mode: Mode,
    pub x: Number,
    pub extension: Option<Extension>,
    pub a: Number,
    pub b: Option<Number>,
    /// The area of X.
    pub area: Option<Area>,
    pub external_ref: Option<String>,
    pub controls: Controls,
    pub created_at: UnixTime,
    pub updated_at: UnixTime,
    pub expires_at: UnixTime,
    pub ended_at: Option<UnixTime>,
    pub end_reason: Option<EndReason>,
}

/// Longest extension we hand out or accept.
pub const MAX_EXTENSION_LEN: u8 = 8;

// === impl ids ===

impl fmt::Display for BindingId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        uuid::Uuid::from_u128(self.0).hyphenated().fmt(f)
    }
}

impl FromStr for BindingId {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        parse_uuid(s).map(BindingId)
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        uuid::Uuid::from_u128(self.0).hyphenated().fmt(f)
    }
}

impl FromStr for TenantId {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        parse_uuid(s).map(TenantId)
    }
}

pub(crate) fn parse_uuid(s: &str) -> Result<u128, Error> {
    // Only the canonical hyphenated form, so each id has one spelling.
    if s.len() != 36 {
        return Err(Error::InvalidId);
    }
    uuid::Uuid::try_parse(s)
        .map(|u| u.as_u128())
        .map_err(|_| Error::InvalidId)
}

// === impl Mode ===

impl Mode {
    pub const ALL: [Mode; 3] = [Mode::Axb, Mode::Axn, Mode::Axe];

    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Axb => "axb",
            Mode::Axn => "axn",
            Mode::Axe => "axe",
        }
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

impl FromStr for Mode {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "axb" => Ok(Mode::Axb),
            "axn" => Ok(Mode::Axn),
            "axe" => Ok(Mode::Axe),
            _ => Err(Error::InvalidMode),
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// === impl Controls ===

impl Default for Controls {
    fn default() -> Self {
        Controls {
            a_to_b: true,
            b_to_a: true,
            max_call_seconds: None,
            record: false,
            sms: true,
            pre_connect: false,
            callee_whisper: false,
            warn_before_end_seconds: None,
        }
    }
}

// === impl Extension ===

impl Extension {
    /// `value` printed with `len` digits (zero-padded).
    pub fn new(value: u32, len: u8) -> Result<Extension, Error> {
        if len == 0 || len > MAX_EXTENSION_LEN || u64::from(value) >= 10u64.pow(u32::from(len)) {
            return Err(Error::InvalidExtension);
        }
        Ok(Extension { value, len })
    }

    pub fn value(self) -> u32 {
        self.value
    }

    pub fn len(self) -> u8 {
        self.len
    }

    pub fn is_empty(self) -> bool {
        false
    }

    /// A non-zero `u32` that keeps the length, so `07` and `7` differ.
    pub(crate) fn packed(self) -> u32 {
        (u32::from(self.len) << 27) | self.value
    }

    pub(crate) fn unpack(packed: u32) -> Option<Extension> {
        if packed == 0 {
            return None;
        }
        Some(Extension {
            value: packed & ((1 << 27) - 1),
            len: (packed >> 27) as u8,
        })
    }
}

impl FromStr for Extension {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        if s.is_empty()
            || s.len() > usize::from(MAX_EXTENSION_LEN)
            || !s.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(Error::InvalidExtension);
        }
        let value = s.parse().map_err(|_| Error::InvalidExtension)?;
        Extension::new(value, s.len() as u8)
    }
}

impl fmt::Display for Extension {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:0width$}", self.value, width = usize::from(self.len))
    }
}

// === impl BindingStatus ===

impl BindingStatus {
    /// Status of a binding whose effective end is `ends_at`, at `now`.
    pub fn at(ends_at: UnixTime, now: UnixTime, cooldown_secs: i64) -> BindingStatus {
        if now < ends_at {
            BindingStatus::Active
        } else if now < ends_at.saturating_add(cooldown_secs) {
            BindingStatus::Cooling
        } else {
            BindingStatus::Ended
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            BindingStatus::Active => "active",
            BindingStatus::Cooling => "cooling",
            BindingStatus::Ended => "ended",
        }
    }
}

impl FromStr for BindingStatus {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "active" => Ok(BindingStatus::Active),
            "cooling" => Ok(BindingStatus::Cooling),
            "ended" => Ok(BindingStatus::Ended),
            _ => Err(Error::InvalidStatus),
        }
    }
}

// === impl EndReason ===

impl EndReason {
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::Unbound => "unbound",
            EndReason::Expired => "expired",
        }
    }
}

impl FromStr for EndReason {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "unbound" => Ok(EndReason::Unbound),
            "expired" => Ok(EndReason::Expired),
            _ => Err(Error::InvalidEndReason),
        }
    }
}

// === impl Binding ===

impl Binding {
    /// When the binding stops routing: its expiry, or its unbinding if earlier.
    pub fn ends_at(&self) -> UnixTime {
        match self.ended_at {
            Some(t) => t.min(self.expires_at),
            None => self.expires_at,
        }
    }

    pub fn status(&self, now: UnixTime, cooldown_secs: i64) -> BindingStatus {
        BindingStatus::at(self.ends_at(), now, cooldown_secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extension_keeps_leading_zeros() {
        let e: Extension = "0042".parse().unwrap();
        assert_eq!(e.to_string(), "0042");
        assert_eq!(e.value(), 42);
        assert_ne!(e.packed(), "42".parse::<Extension>().unwrap().packed());
        assert_eq!(Extension::unpack(e.packed()), Some(e));
        assert_eq!(Extension::unpack(0), None);
    }

    #[test]
    fn bad_extensions_are_refused() {
        for bad in ["", "12a4", "123456789", "-1", " 12"] {
            assert!(bad.parse::<Extension>().is_err(), "{bad:?}");
        }
        assert!(Extension::new(10_000, 4).is_err());
        assert!(Extension::new(1, 0).is_err());
    }

    #[test]
    fn status_follows_time() {
        assert_eq!(BindingStatus::at(100, 99, 10), BindingStatus::Active);
        assert_eq!(BindingStatus::at(100, 100, 10), BindingStatus::Cooling);
        assert_eq!(BindingStatus::at(100, 109, 10), BindingStatus::Cooling);
        assert_eq!(BindingStatus::at(100, 110, 10), BindingStatus::Ended);
        assert_eq!(BindingStatus::at(100, 100, 0), BindingStatus::Ended);
        assert_eq!(BindingStatus::at(i64::MAX, 0, 10), BindingStatus::Active);
    }

    #[test]
    fn ids_print_and_parse_as_uuids() {
        let id = BindingId(0x0190_0000_0000_7000_8000_0000_0000_0001);
        let s = id.to_string();
        assert_eq!(s.len(), 36);
        assert_eq!(s.parse::<BindingId>().unwrap(), id);
        assert!("not-a-uuid".parse::<BindingId>().is_err());
        assert!(
            "01900000000070008000000000000001"
                .parse::<BindingId>()
                .is_err()
        );
    }

    #[test]
    fn modes_and_statuses_round_trip() {
        for m in Mode::ALL {
            assert_eq!(m.as_str().parse::<Mode>().unwrap(), m);
        }
        for s in [
            BindingStatus::Active,
            BindingStatus::Cooling,
            BindingStatus::Ended,
        ] {
            assert_eq!(s.as_str().parse::<BindingStatus>().unwrap(), s);
        }
        assert!("AXB".parse::<Mode>().is_err());
    }
}
