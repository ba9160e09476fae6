//! SDP (RFC 4566) offers and answers (RFC 3264) for audio calls.
//!
//! Two types, one per direction, so that nothing a party wrote can be
//! rendered by mistake:
//!
//! - [`Sdp`] is a party's description, parsed: the connection address, each
//!   m-line with its payload types, `rtpmap`s, `fmtp`s, `ptime` and
//!   direction. [`Sdp::negotiate`] picks the audio stream we can carry and
//!   the codecs we share with it ([`Negotiated`]).
//! - [`LocalSdp`] is ours, built from typed values only and rendered from
//!   scratch: `v=`, an `o=` of our own (username `maskline`, our session id
//!   and version), `s=-`, our `c=`, `t=0 0`, one audio m-line on our port
//!   with PCMU/PCMA/telephone-event, `ptime`, the direction, and rejected
//!   m-lines. This is an allow-list: a party's address, port, origin,
//!   session name, bandwidth, ICE, crypto, RTCP or unknown attributes have no
//!   field to travel in. The few words echoed from a party (the media type,
//!   protocol and formats of an m-line we reject) are [`Token`]s, which
//!   cannot hold a `.` or `:` and so never an address.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use crate::{Codec, Error, Result, SAMPLE_RATE};

/// The largest description parsed. Offers with ICE candidates for several
/// interfaces reach a few KiB; anything near this is not a phone.
pub const MAX_SDP_LEN: usize = 16 * 1024;
/// m-lines per description.
pub const MAX_MEDIA: usize = 16;
/// Formats per m-line: the RTP payload type space.
pub const MAX_FORMATS: usize = 128;
/// The `o=` username of every description we send.
pub const ORIGIN_USERNAME: &str = "maskline";

const MAX_TOKEN_LEN: usize = 32;

/// What is wrong with a malformed description.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum SdpFault {
    /// A line is not `<letter>=<value>`.
    BadLine,
    /// A line that must be read is not UTF-8.
    NotText,
    /// The description does not start with `v=`.
    MissingVersion,
    /// `v=` other than 0.
    UnsupportedVersion,
    MissingOrigin,
    RepeatedOrigin,
    /// `o=` without its six fields.
    BadOrigin,
    /// A session-level line (`v=`, `o=`) after the first m-line.
    MisplacedLine,
    /// `c=` that is not `IN IP4|IP6 <address>`.
    BadConnection,
    /// `c=` naming a host rather than an IP address.
    ConnectionNotIp,
    /// `c=IN IP4` with an IPv6 address or the reverse.
    AddressFamilyMismatch,
    /// An m-line without its media type, port, protocol and formats.
    BadMedia,
    BadPort,
    /// An audio format that is not an RTP payload type (0 to 127).
    BadPayloadType,
    TooManyMedia,
    TooManyFormats,
    BadRtpmap,
    BadFmtp,
    BadPtime,
    /// An audio stream with no `c=` at its level or the session's.
    MissingConnection,
}

impl fmt::Display for SdpFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SdpFault::BadLine => "not a <type>=<value> line",
            SdpFault::NotText => "not UTF-8 text",
            SdpFault::MissingVersion => "does not start with v=",
            SdpFault::UnsupportedVersion => "version other than v=0",
            SdpFault::MissingOrigin => "no o= line",
            SdpFault::RepeatedOrigin => "more than one o= line",
            SdpFault::BadOrigin => {
                "o= needs username, session id, version, IN, address type, address"
            }
            SdpFault::MisplacedLine => "session-level line after the first m= line",
            SdpFault::BadConnection => "c= must be IN IP4 or IN IP6 and an address",
            SdpFault::ConnectionNotIp => "c= address is not an IP address",
            SdpFault::AddressFamilyMismatch => "c= address does not match its address type",
            SdpFault::BadMedia => "m= needs media, port, protocol and formats",
            SdpFault::BadPort => "m= port is not a number from 0 to 65535",
            SdpFault::BadPayloadType => "audio format is not an RTP payload type from 0 to 127",
            SdpFault::TooManyMedia => "more than 16 m= lines",
            SdpFault::TooManyFormats => "more than 128 formats on one m= line",
            SdpFault::BadRtpmap => {
                "a=rtpmap must be <payload type> <encoding>/<clock rate>[/<channels>]"
            }
            SdpFault::BadFmtp => "a=fmtp must be <payload type> <parameters>",
            SdpFault::BadPtime => "a=ptime is not a number of milliseconds from 1 to 1000",
            SdpFault::MissingConnection => "audio stream without a c= line",
        })
    }
}

/// Why an offer (or answer) cannot be taken, though well formed. The SIP
/// layer answers 488 Not Acceptable Here.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub enum Unacceptable {
    /// No audio stream with a port.
    NoAudio,
    /// Audio only over a profile we do not speak (SRTP, AVPF, DTLS).
    NoPlainRtp,
    /// Audio, but neither PCMU nor PCMA.
    NoCommonCodec,
}

impl fmt::Display for Unacceptable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Unacceptable::NoAudio => "no audio stream",
            Unacceptable::NoPlainRtp => "audio only over a profile other than RTP/AVP",
            Unacceptable::NoCommonCodec => "no common codec: neither PCMU nor PCMA offered",
        })
    }
}

/// A word from a party's description that may be repeated in ours:
/// 1 to 32 of `A-Z a-z 0-9 - _ / *`. No `.` or `:`, so never an IP address.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct Token(String);

impl Token {
    pub fn new(word: &str) -> Option<Token> {
        let allowed = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'/' | b'*');
        (!word.is_empty() && word.len() <= MAX_TOKEN_LEN && word.bytes().all(allowed))
            .then(|| Token(word.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Which way media flows, from the point of view of the description's
/// author.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub enum Direction {
    #[default]
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }

    fn from_attribute(name: &str) -> Option<Direction> {
        Some(match name {
            "sendrecv" => Direction::SendRecv,
            "sendonly" => Direction::SendOnly,
            "recvonly" => Direction::RecvOnly,
            "inactive" => Direction::Inactive,
            _ => return None,
        })
    }

    /// The direction an answerer mirrors (RFC 3264 §6.1): what the offerer
    /// sends, the answerer receives.
    pub fn reversed(self) -> Direction {
        match self {
            Direction::SendOnly => Direction::RecvOnly,
            Direction::RecvOnly => Direction::SendOnly,
            other => other,
        }
    }

    pub fn sends(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::SendOnly)
    }

    pub fn receives(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::RecvOnly)
    }

    fn without_receiving(self) -> Direction {
        if self.sends() {
            Direction::SendOnly
        } else {
            Direction::Inactive
        }
    }
}

/// A set of telephone-event codes, as in `a=fmtp:101 0-15,66`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct EventSet([u64; 4]);

impl EventSet {
    /// The sixteen DTMF events, what a receiver assumes without an `fmtp`.
    pub const DTMF: EventSet = EventSet([0xFFFF, 0, 0, 0]);

    /// Reads an event list; `None` when it is not one (then the party's
    /// `fmtp` is dropped, and 0-15 assumed, as RFC 4733 §2.4.1 says).
    pub fn parse(list: &str) -> Option<EventSet> {
        let mut set = EventSet::default();
        for item in list.split(',') {
            let item = item.trim();
            let (low, high) = match item.split_once('-') {
                Some((low, high)) => (low.trim(), high.trim()),
                None => (item, item),
            };
            let low = parse_decimal::<u8>(low)?;
            let high = parse_decimal::<u8>(high)?;
            if low > high {
                return None;
            }
            for event in low..=high {
                set.insert(event);
            }
        }
        Some(set)
    }

    pub fn insert(&mut self, event: u8) {
        self.0[event as usize / 64] |= 1 << (event % 64);
    }

    pub fn contains(&self, event: u8) -> bool {
        self.0[event as usize / 64] & (1 << (event % 64)) != 0
    }

    pub fn is_empty(&self) -> bool {
        self.0 == [0; 4]
    }
}

impl fmt::Display for EventSet {
    /// Ranges, shortest form: `0-16`, `0-15,66,70`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        let mut event: u16 = 0;
        while event <= 255 {
            if !self.contains(event as u8) {
                event += 1;
                continue;
            }
            let start = event;
            while event < 255 && self.contains(event as u8 + 1) {
                event += 1;
            }
            if !first {
                f.write_str(",")?;
            }
            first = false;
            if start == event {
                write!(f, "{start}")?;
            } else {
                write!(f, "{start}-{event}")?;
            }
            event += 1;
        }
        Ok(())
    }
}

impl fmt::Debug for EventSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EventSet({self})")
    }
}

/// Strict decimal: digits only (no sign, no spaces), as SDP numbers are.
fn parse_decimal<T: std::str::FromStr>(s: &str) -> Option<T> {
    if s.is_empty() || s.len() > 10 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

// === Parsed descriptions ===

/// The identity of a party's description: unchanged `session_id` and
/// `version` in a re-offer mean nothing changed (a session refresh).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Origin {
    pub session_id: String,
    pub version: String,
}

#[derive(Clone, PartialEq, Eq, Debug)]
pub struct RtpMap {
    pub payload_type: u8,
    pub encoding: String,
    pub clock_rate: u32,
    pub channels: Option<u16>,
}

#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Fmtp {
    pub payload_type: u8,
    pub parameters: String,
}

/// One m-line of a party's description, with the session-level defaults
/// applied.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Media {
    pub kind: Token,
    pub port: u16,
    pub proto: Token,
    /// As listed; for RTP audio, payload types in the order of preference.
    pub formats: Vec<String>,
    /// The media-level `c=` or else the session's.
    pub connection: Option<IpAddr>,
    /// Audio streams only: other media are never read further.
    pub rtpmaps: Vec<RtpMap>,
    pub fmtps: Vec<Fmtp>,
    pub ptime: Option<u16>,
    /// Effective direction: the attribute (media-level, else session-level,
    /// else sendrecv), turned into "not receiving" when the connection
    /// address is 0.0.0.0 (RFC 2543 hold, RFC 3264 §8.4).
    pub direction: Direction,
}

impl Media {
    pub fn is_audio(&self) -> bool {
        self.kind.as_str().eq_ignore_ascii_case("audio")
    }

    fn is_rtp(&self) -> bool {
        self.proto
            .as_str()
            .split('/')
            .any(|p| p.eq_ignore_ascii_case("RTP"))
    }

    /// The formats as RTP payload types (those that are numbers).
    pub fn payload_types(&self) -> impl Iterator<Item = u8> + '_ {
        self.formats
            .iter()
            .filter_map(|f| parse_decimal::<u8>(f))
            .filter(|&pt| pt <= 127)
    }

    pub fn rtpmap(&self, payload_type: u8) -> Option<&RtpMap> {
        self.rtpmaps.iter().find(|m| m.payload_type == payload_type)
    }

    pub fn fmtp(&self, payload_type: u8) -> Option<&str> {
        self.fmtps
            .iter()
            .find(|m| m.payload_type == payload_type)
            .map(|m| m.parameters.as_str())
    }

    /// Where to send RTP: `None` when the stream is rejected (port 0) or
    /// held with an unspecified address.
    pub fn rtp_addr(&self) -> Option<SocketAddr> {
        let ip = self.connection.filter(|ip| !ip.is_unspecified())?;
        (self.port != 0).then(|| SocketAddr::new(ip, self.port))
    }

    /// What a payload type carries, by `rtpmap` or else by the static
    /// assignments of RFC 3551.
    fn format_of(&self, payload_type: u8) -> Option<Format> {
        let Some(map) = self.rtpmap(payload_type) else {
            return match payload_type {
                0 => Some(Format::Audio(Codec::Pcmu)),
                8 => Some(Format::Audio(Codec::Pcma)),
                _ => None,
            };
        };
        if map.clock_rate != SAMPLE_RATE || map.channels.is_some_and(|c| c != 1) {
            return None;
        }
        let name = map.encoding.as_str();
        if name.eq_ignore_ascii_case("PCMU") {
            Some(Format::Audio(Codec::Pcmu))
        } else if name.eq_ignore_ascii_case("PCMA") {
            Some(Format::Audio(Codec::Pcma))
        } else if name.eq_ignore_ascii_case("telephone-event") {
            Some(Format::TelephoneEvent)
        } else {
            None
        }
    }
}

enum Format {
    Audio(Codec),
    TelephoneEvent,
}

/// A party's session description.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Sdp {
    pub origin: Origin,
    pub media: Vec<Media>,
}

/// A codec under the payload type a party numbered it with.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct PayloadCodec {
    pub payload_type: u8,
    pub codec: Codec,
}

impl PayloadCodec {
    /// Under its static payload type.
    pub fn new(codec: Codec) -> PayloadCodec {
        PayloadCodec {
            payload_type: codec.payload_type(),
            codec,
        }
    }
}

/// telephone-event at 8000 Hz, under the party's (dynamic) payload type.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct TelephoneEventFormat {
    pub payload_type: u8,
    /// The party's event list, if it gave a valid one.
    pub events: Option<EventSet>,
}

/// What we can carry of a party's description: its first audio stream over
/// RTP/AVP that has PCMU or PCMA.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Negotiated {
    /// Position of that m-line, kept in the answer (RFC 3264 §6).
    pub media_index: usize,
    /// Where the party wants RTP; `None` while it holds the call with
    /// 0.0.0.0.
    pub remote: Option<SocketAddr>,
    /// PCMU and PCMA as offered, in the party's order of preference.
    pub codecs: Vec<PayloadCodec>,
    pub telephone_event: Option<TelephoneEventFormat>,
    pub ptime: Option<u16>,
    /// The party's direction (see [`Media::direction`]).
    pub direction: Direction,
}

impl Negotiated {
    /// Our side of this stream on `port`: every shared codec, the same
    /// telephone-event and ptime, and `direction`.
    pub fn local_audio(&self, port: u16, direction: Direction) -> LocalAudio {
        LocalAudio {
            port,
            codecs: self.codecs.clone(),
            telephone_event: self.telephone_event,
            ptime: self.ptime,
            direction,
        }
    }

    /// Our answer's audio on `port`, mirroring the offer's direction.
    pub fn answer_audio(&self, port: u16) -> LocalAudio {
        self.local_audio(port, self.direction.reversed())
    }
}

impl Sdp {
    /// Parses a description, enforcing [`MAX_SDP_LEN`], [`MAX_MEDIA`] and
    /// [`MAX_FORMATS`]. Lines end with CRLF or LF. Lines and attributes we do
    /// not need are skipped unread, so a party's bandwidth, ICE or crypto
    /// lines may be anything.
    pub fn parse(input: &[u8]) -> Result<Sdp> {
        if input.len() > MAX_SDP_LEN {
            return Err(Error::SdpTooLarge {
                len: input.len(),
                limit: MAX_SDP_LEN,
            });
        }
        let mut parser = Parser::default();
        for (index, raw) in input.split(|&b| b == b'\n').enumerate() {
            let line = index + 1;
            let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
            parser
                .line(line, raw)
                .map_err(|fault| Error::sdp(line, fault))?;
        }
        parser.finish()
    }

    /// Whether the party offered anything but audio (video, T.38, data
    /// channels...): such m-lines are answered with port 0.
    pub fn has_other_media(&self) -> bool {
        self.media.iter().any(|m| !m.is_audio())
    }

    /// The audio stream we carry and what we share with it.
    pub fn negotiate(&self) -> Result<Negotiated> {
        let mut why = Unacceptable::NoAudio;
        for (media_index, media) in self.media.iter().enumerate() {
            if !media.is_audio() || media.port == 0 {
                continue;
            }
            if !media.proto.as_str().eq_ignore_ascii_case("RTP/AVP") {
                why = why.max(Unacceptable::NoPlainRtp);
                continue;
            }
            let mut codecs: Vec<PayloadCodec> = Vec::new();
            let mut telephone_event = None;
            for payload_type in media.payload_types() {
                match media.format_of(payload_type) {
                    // The first payload type of a codec is the one used.
                    Some(Format::Audio(codec)) if !codecs.iter().any(|c| c.codec == codec) => {
                        codecs.push(PayloadCodec {
                            payload_type,
                            codec,
                        });
                    }
                    Some(Format::TelephoneEvent) if telephone_event.is_none() => {
                        telephone_event = Some(TelephoneEventFormat {
                            payload_type,
                            events: media.fmtp(payload_type).and_then(EventSet::parse),
                        });
                    }
                    _ => {}
                }
            }
            if codecs.is_empty() {
                why = why.max(Unacceptable::NoCommonCodec);
                continue;
            }
            return Ok(Negotiated {
                media_index,
                remote: media.rtp_addr(),
                codecs,
                telephone_event,
                ptime: media.ptime,
                direction: media.direction,
            });
        }
        Err(Error::NotAcceptable(why))
    }
}

// === impl Parser ===

#[derive(Default)]
struct Parser {
    seen_version: bool,
    origin: Option<Origin>,
    connection: Option<IpAddr>,
    direction: Option<Direction>,
    media: Vec<MediaDraft>,
}

struct MediaDraft {
    line: usize,
    media: Media,
    connection: Option<IpAddr>,
    direction: Option<Direction>,
    /// Whether its attributes are read: RTP audio only.
    read_attributes: bool,
}

impl Parser {
    fn line(&mut self, line: usize, raw: &[u8]) -> Result<(), SdpFault> {
        if raw.iter().all(|b| b.is_ascii_whitespace()) {
            return Ok(());
        }
        let (kind, value) = match raw {
            [kind, b'=', value @ ..] if kind.is_ascii_lowercase() => (*kind, value),
            _ => return Err(SdpFault::BadLine),
        };
        if !self.seen_version {
            if kind != b'v' {
                return Err(SdpFault::MissingVersion);
            }
            if text(value)?.trim() != "0" {
                return Err(SdpFault::UnsupportedVersion);
            }
            self.seen_version = true;
            return Ok(());
        }
        match kind {
            b'v' => Err(SdpFault::MisplacedLine),
            b'o' => {
                if !self.media.is_empty() {
                    return Err(SdpFault::MisplacedLine);
                }
                if self.origin.is_some() {
                    return Err(SdpFault::RepeatedOrigin);
                }
                self.origin = Some(parse_origin(text(value)?)?);
                Ok(())
            }
            b'c' => {
                let address = parse_connection(text(value)?)?;
                match self.media.last_mut() {
                    Some(draft) => {
                        // Several c= lines are for layered multicast; the
                        // first is the stream's.
                        draft.connection.get_or_insert(address);
                    }
                    None => {
                        self.connection.get_or_insert(address);
                    }
                }
                Ok(())
            }
            b'm' => {
                if self.media.len() == MAX_MEDIA {
                    return Err(SdpFault::TooManyMedia);
                }
                let media = parse_media(text(value)?)?;
                let read_attributes = media.is_audio() && media.is_rtp();
                self.media.push(MediaDraft {
                    line,
                    media,
                    connection: None,
                    direction: None,
                    read_attributes,
                });
                Ok(())
            }
            b'a' => self.attribute(value),
            // s= i= u= e= p= b= t= r= z= k=: never read, never repeated.
            _ => Ok(()),
        }
    }

    fn attribute(&mut self, value: &[u8]) -> Result<(), SdpFault> {
        // Attributes we do not read may hold any bytes; decode only ours.
        let (name, argument) = match value.iter().position(|&b| b == b':') {
            Some(colon) => (&value[..colon], value.get(colon + 1..)),
            None => (value, None),
        };
        let name = std::str::from_utf8(name).unwrap_or("");
        if let Some(direction) = Direction::from_attribute(name.trim_end()) {
            match self.media.last_mut() {
                Some(draft) => draft.direction = Some(direction),
                None => self.direction = Some(direction),
            }
            return Ok(());
        }
        let Some(draft) = self.media.last_mut().filter(|d| d.read_attributes) else {
            return Ok(());
        };
        let media = &mut draft.media;
        match name {
            "rtpmap" => {
                let map = parse_rtpmap(text(argument.ok_or(SdpFault::BadRtpmap)?)?)?;
                if media.rtpmap(map.payload_type).is_none() {
                    media.rtpmaps.push(map);
                }
            }
            "fmtp" => {
                let fmtp = parse_fmtp(text(argument.ok_or(SdpFault::BadFmtp)?)?)?;
                if media.fmtp(fmtp.payload_type).is_none() {
                    media.fmtps.push(fmtp);
                }
            }
            "ptime" => {
                let ptime = parse_ptime(text(argument.ok_or(SdpFault::BadPtime)?)?)?;
                media.ptime.get_or_insert(ptime);
            }
            _ => {}
        }
        Ok(())
    }

    fn finish(self) -> Result<Sdp> {
        let whole = |fault| Error::MalformedSdp { line: None, fault };
        if !self.seen_version {
            return Err(whole(SdpFault::MissingVersion));
        }
        let origin = self.origin.ok_or(whole(SdpFault::MissingOrigin))?;
        let mut media = Vec::with_capacity(self.media.len());
        for draft in self.media {
            let mut m = draft.media;
            m.connection = draft.connection.or(self.connection);
            let direction = draft.direction.or(self.direction).unwrap_or_default();
            m.direction = match m.connection {
                Some(ip) if ip.is_unspecified() => direction.without_receiving(),
                _ => direction,
            };
            if m.is_audio() && m.port != 0 && m.connection.is_none() {
                return Err(Error::sdp(draft.line, SdpFault::MissingConnection));
            }
            media.push(m);
        }
        Ok(Sdp { origin, media })
    }
}

fn text(value: &[u8]) -> Result<&str, SdpFault> {
    std::str::from_utf8(value).map_err(|_| SdpFault::NotText)
}

fn parse_origin(value: &str) -> Result<Origin, SdpFault> {
    let fields: Vec<&str> = value.split_ascii_whitespace().collect();
    let [_username, session_id, version, net, _addrtype, _address] = fields[..] else {
        return Err(SdpFault::BadOrigin);
    };
    if net != "IN" {
        return Err(SdpFault::BadOrigin);
    }
    Ok(Origin {
        session_id: session_id.to_owned(),
        version: version.to_owned(),
    })
}

fn parse_connection(value: &str) -> Result<IpAddr, SdpFault> {
    let mut fields = value.split_ascii_whitespace();
    let (Some(net), Some(family), Some(address), None) =
        (fields.next(), fields.next(), fields.next(), fields.next())
    else {
        return Err(SdpFault::BadConnection);
    };
    if net != "IN" || !matches!(family, "IP4" | "IP6") {
        return Err(SdpFault::BadConnection);
    }
    // A multicast TTL or address count follows a slash.
    let address = address.split('/').next().unwrap_or(address);
    let ip: IpAddr = address.parse().map_err(|_| SdpFault::ConnectionNotIp)?;
    if ip.is_ipv4() != (family == "IP4") {
        return Err(SdpFault::AddressFamilyMismatch);
    }
    Ok(ip)
}

fn parse_media(value: &str) -> Result<Media, SdpFault> {
    let mut fields = value.split_ascii_whitespace();
    let (Some(kind), Some(port), Some(proto)) = (fields.next(), fields.next(), fields.next())
    else {
        return Err(SdpFault::BadMedia);
    };
    let kind = Token::new(kind).ok_or(SdpFault::BadMedia)?;
    let proto = Token::new(proto).ok_or(SdpFault::BadMedia)?;
    // "<port>/<count>" asks for consecutive ports; we only ever use one.
    let port = port.split('/').next().unwrap_or(port);
    let port = parse_decimal::<u16>(port).ok_or(SdpFault::BadPort)?;
    let mut formats = Vec::new();
    for format in fields {
        if formats.len() == MAX_FORMATS {
            return Err(SdpFault::TooManyFormats);
        }
        formats.push(format.to_owned());
    }
    if formats.is_empty() {
        return Err(SdpFault::BadMedia);
    }
    let media = Media {
        kind,
        port,
        proto,
        formats,
        connection: None,
        rtpmaps: Vec::new(),
        fmtps: Vec::new(),
        ptime: None,
        direction: Direction::SendRecv,
    };
    if media.is_audio() && media.is_rtp() {
        for format in &media.formats {
            if parse_payload_type(format).is_none() {
                return Err(SdpFault::BadPayloadType);
            }
        }
    }
    Ok(media)
}

fn parse_payload_type(s: &str) -> Option<u8> {
    parse_decimal::<u8>(s).filter(|&pt| pt <= 127)
}

fn parse_rtpmap(value: &str) -> Result<RtpMap, SdpFault> {
    let (pt, rest) = value.trim().split_once(' ').ok_or(SdpFault::BadRtpmap)?;
    let payload_type = parse_payload_type(pt).ok_or(SdpFault::BadRtpmap)?;
    let mut parts = rest.trim().split('/');
    let encoding = parts
        .next()
        .filter(|e| !e.is_empty())
        .ok_or(SdpFault::BadRtpmap)?;
    let clock_rate = parts
        .next()
        .and_then(parse_decimal::<u32>)
        .ok_or(SdpFault::BadRtpmap)?;
    let channels = match parts.next() {
        None => None,
        Some(c) => Some(parse_decimal::<u16>(c).ok_or(SdpFault::BadRtpmap)?),
    };
    if parts.next().is_some() {
        return Err(SdpFault::BadRtpmap);
    }
    Ok(RtpMap {
        payload_type,
        encoding: encoding.to_owned(),
        clock_rate,
        channels,
    })
}

fn parse_fmtp(value: &str) -> Result<Fmtp, SdpFault> {
    let value = value.trim();
    let (pt, parameters) = value.split_once(' ').unwrap_or((value, ""));
    let payload_type = parse_payload_type(pt).ok_or(SdpFault::BadFmtp)?;
    Ok(Fmtp {
        payload_type,
        parameters: parameters.trim().to_owned(),
    })
}

fn parse_ptime(value: &str) -> Result<u16, SdpFault> {
    // Some phones write "20.0".
    let value = value.trim();
    let whole = match value.split_once('.') {
        Some((whole, fraction)) if fraction.bytes().all(|b| b.is_ascii_digit()) => whole,
        Some(_) => return Err(SdpFault::BadPtime),
        None => value,
    };
    parse_decimal::<u16>(whole)
        .filter(|ms| (1..=1000).contains(ms))
        .ok_or(SdpFault::BadPtime)
}

// === impl LocalSdp ===

/// Our audio stream.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct LocalAudio {
    pub port: u16,
    /// Listed in this order of preference; none renders a rejected stream.
    pub codecs: Vec<PayloadCodec>,
    pub telephone_event: Option<TelephoneEventFormat>,
    pub ptime: Option<u16>,
    pub direction: Direction,
}

/// An m-line of a party's that we decline: port 0, its media type,
/// protocol and formats (RFC 3264 §6) and nothing else.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct RejectedMedia {
    pub kind: Token,
    pub proto: Token,
    pub formats: Vec<Token>,
}

impl RejectedMedia {
    /// Declines a party's m-line. Of its formats, only RTP payload types and
    /// words with a letter in them are repeated: a bare number from a
    /// non-RTP line could be a port.
    pub fn of(media: &Media) -> RejectedMedia {
        let rtp = media.is_rtp();
        let formats = media
            .formats
            .iter()
            .filter(|f| {
                if rtp {
                    parse_payload_type(f).is_some()
                } else {
                    f.bytes().any(|b| !b.is_ascii_digit())
                }
            })
            .filter_map(|f| Token::new(f))
            .collect();
        RejectedMedia {
            kind: media.kind.clone(),
            proto: media.proto.clone(),
            formats,
        }
    }
}

#[derive(Clone, PartialEq, Eq, Debug)]
pub enum LocalMedia {
    Audio(LocalAudio),
    Rejected(RejectedMedia),
}

/// A description of ours, rendered from these fields only.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct LocalSdp {
    /// `o=` session id: chosen once per call leg.
    pub session_id: u64,
    /// `o=` version: the same in a repeated description, one more in a
    /// changed one (RFC 3264 §8); see [`LocalSdp::revision_of`].
    pub version: u64,
    /// Our media address, in `o=` and `c=`.
    pub address: IpAddr,
    pub media: Vec<LocalMedia>,
}

impl LocalSdp {
    /// An offer of one audio stream.
    pub fn offer(session_id: u64, version: u64, address: IpAddr, audio: LocalAudio) -> LocalSdp {
        LocalSdp {
            session_id,
            version,
            address,
            media: vec![LocalMedia::Audio(audio)],
        }
    }

    /// The answer to `offer`: `audio` in place of the stream `accepted`
    /// chose, every other m-line rejected, in the offer's order.
    pub fn answer(
        session_id: u64,
        version: u64,
        address: IpAddr,
        offer: &Sdp,
        accepted: &Negotiated,
        audio: LocalAudio,
    ) -> LocalSdp {
        let mut audio = Some(audio);
        let media = offer
            .media
            .iter()
            .enumerate()
            .map(
                |(index, media)| match audio.take_if(|_| index == accepted.media_index) {
                    Some(audio) => LocalMedia::Audio(audio),
                    None => LocalMedia::Rejected(RejectedMedia::of(media)),
                },
            )
            .collect();
        LocalSdp {
            session_id,
            version,
            address,
            media,
        }
    }

    /// This description as the next one of a session that last sent
    /// `previous`: its session id, and its version if nothing changed or
    /// the version after it if anything did.
    pub fn revision_of(mut self, previous: &LocalSdp) -> LocalSdp {
        self.session_id = previous.session_id;
        let unchanged = self.address == previous.address && self.media == previous.media;
        self.version = if unchanged {
            previous.version
        } else {
            previous.version.wrapping_add(1)
        };
        self
    }

    /// The description's text, CRLF line endings.
    pub fn render(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for LocalSdp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let family = if self.address.is_ipv4() { "IP4" } else { "IP6" };
        let address = self.address;
        write!(f, "v=0\r\n")?;
        write!(
            f,
            "o={ORIGIN_USERNAME} {} {} IN {family} {address}\r\n",
            self.session_id, self.version
        )?;
        write!(f, "s=-\r\n")?;
        write!(f, "c=IN {family} {address}\r\n")?;
        write!(f, "t=0 0\r\n")?;
        for media in &self.media {
            match media {
                LocalMedia::Audio(audio) if !audio.codecs.is_empty() => render_audio(f, audio)?,
                LocalMedia::Audio(_) => write!(f, "m=audio 0 RTP/AVP 0\r\n")?,
                LocalMedia::Rejected(rejected) => {
                    write!(f, "m={} 0 {}", rejected.kind, rejected.proto)?;
                    if rejected.formats.is_empty() {
                        write!(f, " 0")?;
                    }
                    for format in &rejected.formats {
                        write!(f, " {format}")?;
                    }
                    write!(f, "\r\n")?;
                }
            }
        }
        Ok(())
    }
}

fn render_audio(f: &mut fmt::Formatter<'_>, audio: &LocalAudio) -> fmt::Result {
    let event = audio.telephone_event.filter(|e| {
        !audio
            .codecs
            .iter()
            .any(|c| c.payload_type == e.payload_type)
    });
    write!(f, "m=audio {} RTP/AVP", audio.port)?;
    for codec in &audio.codecs {
        write!(f, " {}", codec.payload_type)?;
    }
    if let Some(event) = event {
        write!(f, " {}", event.payload_type)?;
    }
    write!(f, "\r\n")?;
    for codec in &audio.codecs {
        write!(
            f,
            "a=rtpmap:{} {}/{SAMPLE_RATE}\r\n",
            codec.payload_type,
            codec.codec.encoding_name()
        )?;
    }
    if let Some(event) = event {
        write!(
            f,
            "a=rtpmap:{} telephone-event/{SAMPLE_RATE}\r\n",
            event.payload_type
        )?;
        if let Some(events) = event.events.filter(|e| !e.is_empty()) {
            write!(f, "a=fmtp:{} {events}\r\n", event.payload_type)?;
        }
    }
    if let Some(ptime) = audio.ptime.filter(|&p| p > 0) {
        write!(f, "a=ptime:{ptime}\r\n")?;
    }
    write!(f, "a={}\r\n", audio.direction.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    const OURS: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 10));
    const OUR_PORT: u16 = 20_000;

    /// sipp's built-in UAC scenario, as sent.
    const SIPP: &str = "v=0\r\n\
        o=user1 53655765 2353687637 IN IP4 192.168.1.20\r\n\
        s=-\r\n\
        c=IN IP4 192.168.1.20\r\n\
        t=0 0\r\n\
        m=audio 6000 RTP/AVP 0\r\n\
        a=rtpmap:0 PCMU/8000\r\n";

    /// baresip with opus, G.722, ICE, best-effort SRTP, RTCP-mux and video.
    const BARESIP: &str = "v=0\r\n\
        o=- 1458920347 2861526211 IN IP4 10.20.30.40\r\n\
        s=-\r\n\
        c=IN IP4 10.20.30.40\r\n\
        t=0 0\r\n\
        a=tool:baresip 3.10.1\r\n\
        a=ice-ufrag:Yt7b\r\n\
        a=ice-pwd:Cp6V0vkOTi3WzUeqa8VuDn\r\n\
        m=audio 18374 RTP/AVP 96 9 0 8 101\r\n\
        b=AS:128\r\n\
        a=rtpmap:96 opus/48000/2\r\n\
        a=fmtp:96 stereo=1;sprop-stereo=1;useinbandfec=1\r\n\
        a=rtpmap:9 G722/8000\r\n\
        a=rtpmap:0 PCMU/8000\r\n\
        a=rtpmap:8 PCMA/8000\r\n\
        a=rtpmap:101 telephone-event/8000\r\n\
        a=fmtp:101 0-15\r\n\
        a=rtcp:18375 IN IP4 10.20.30.40\r\n\
        a=rtcp-mux\r\n\
        a=sendrecv\r\n\
        a=label:1\r\n\
        a=ssrc:3421376210 cname:ad6fe9e5-0b7a-4eb2-8b4a-62ae1d6bd8f1\r\n\
        a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:mVa0cTpQ5oH8WFQvFCUHXLI4LvQTPxsxlozpSgpi\r\n\
        a=candidate:1 1 UDP 2113929471 10.20.30.40 18374 typ host\r\n\
        a=candidate:2 1 UDP 1677721855 203.0.113.99 41234 typ srflx raddr 10.20.30.40 rport 18374\r\n\
        a=end-of-candidates\r\n\
        m=video 24814 RTP/AVP 102 103\r\n\
        b=AS:1000\r\n\
        a=rtpmap:102 H264/90000\r\n\
        a=fmtp:102 packetization-mode=0;profile-level-id=42e01f\r\n\
        a=rtpmap:103 VP8/90000\r\n\
        a=rtcp-fb:103 nack pli\r\n\
        a=sendrecv\r\n";

    /// Linphone: telephone-event at three clock rates, session-level ICE,
    /// a session name, LF line endings.
    const LINPHONE: &str = "v=0\n\
        o=alice 2436 3524 IN IP4 192.168.0.104\n\
        s=Talk\n\
        c=IN IP4 192.168.0.104\n\
        t=0 0\n\
        a=ice-pwd:d1b0ca8a4cf2bc1c7c4d3e09\n\
        a=ice-ufrag:3d6b0c11\n\
        a=rtcp-xr:rcvr-rtt=all:10000 stat-summary=loss,dup,jitt,TTL voip-metrics\n\
        a=record:off\n\
        m=audio 7078 RTP/AVP 96 97 98 0 8 18 101 99 100\n\
        a=rtpmap:96 opus/48000/2\n\
        a=fmtp:96 useinbandfec=1\n\
        a=rtpmap:97 speex/16000\n\
        a=fmtp:97 vbr=on\n\
        a=rtpmap:98 speex/8000\n\
        a=fmtp:98 vbr=on\n\
        a=fmtp:18 annexb=yes\n\
        a=rtpmap:101 telephone-event/48000\n\
        a=rtpmap:99 telephone-event/16000\n\
        a=rtpmap:100 telephone-event/8000\n\
        a=candidate:1 1 UDP 2130706431 192.168.0.104 7078 typ host\n\
        a=candidate:1 2 UDP 2130706430 192.168.0.104 7079 typ host\n\
        a=rtcp-fb:* trr-int 1000\n\
        a=rtcp-fb:* ccm tmmbr\n\
        m=video 9078 RTP/AVP 96 97\n\
        a=rtpmap:96 VP8/90000\n\
        a=rtpmap:97 H264/90000\n\
        a=fmtp:97 profile-level-id=42801F\n\
        a=rtcp-fb:96 nack pli\n";

    /// Asterisk over IPv6, A-law first, ptime and maxptime.
    const ASTERISK_V6: &str = "v=0\r\n\
        o=root 1821307034 1821307034 IN IP6 2001:db8:85a3::8a2e:370:7334\r\n\
        s=Asterisk PBX 18.9.0\r\n\
        c=IN IP6 2001:db8:85a3::8a2e:370:7334\r\n\
        t=0 0\r\n\
        m=audio 14046 RTP/AVP 8 0 3 101\r\n\
        a=rtpmap:8 PCMA/8000\r\n\
        a=rtpmap:0 PCMU/8000\r\n\
        a=rtpmap:3 GSM/8000\r\n\
        a=rtpmap:101 telephone-event/8000\r\n\
        a=fmtp:101 0-16\r\n\
        a=ptime:20\r\n\
        a=maxptime:150\r\n\
        a=sendrecv\r\n";

    fn parse(text: &str) -> Sdp {
        Sdp::parse(text.as_bytes()).unwrap_or_else(|e| panic!("{e}\n{text}"))
    }

    fn answer(text: &str) -> (Negotiated, String) {
        let offer = parse(text);
        let negotiated = offer.negotiate().unwrap();
        let audio = negotiated.answer_audio(OUR_PORT);
        let sdp = LocalSdp::answer(42, 1, OURS, &offer, &negotiated, audio);
        (negotiated, sdp.render())
    }

    /// Nothing that identifies the party appears in what we send.
    fn assert_private(output: &str, secrets: &[&str]) {
        for secret in secrets {
            assert!(
                !output.contains(secret),
                "{secret:?} leaked into:\n{output}"
            );
        }
    }

    fn tokens(output: &str) -> Vec<&str> {
        output
            .split(|c: char| c.is_ascii_whitespace() || c == ':' || c == '/' || c == '=')
            .collect()
    }

    fn pcmu() -> PayloadCodec {
        PayloadCodec::new(Codec::Pcmu)
    }

    fn pcma() -> PayloadCodec {
        PayloadCodec::new(Codec::Pcma)
    }

    #[test]
    fn sipp_offer_is_answered_with_our_address_only() {
        let (negotiated, output) = answer(SIPP);
        assert_eq!(negotiated.codecs, [pcmu()]);
        assert_eq!(
            negotiated.remote,
            Some("192.168.1.20:6000".parse().unwrap())
        );
        assert_eq!(negotiated.telephone_event, None);
        assert_eq!(
            output,
            "v=0\r\n\
             o=maskline 42 1 IN IP4 198.51.100.10\r\n\
             s=-\r\n\
             c=IN IP4 198.51.100.10\r\n\
             t=0 0\r\n\
             m=audio 20000 RTP/AVP 0\r\n\
             a=rtpmap:0 PCMU/8000\r\n\
             a=sendrecv\r\n"
        );
        assert_private(
            &output,
            &["192.168.1.20", "user1", "53655765", "2353687637"],
        );
        assert!(!tokens(&output).contains(&"6000"));
    }

    #[test]
    fn baresip_offer_keeps_g711_and_events_and_rejects_video() {
        let (negotiated, output) = answer(BARESIP);
        assert_eq!(negotiated.media_index, 0);
        assert_eq!(negotiated.codecs, [pcmu(), pcma()]);
        assert_eq!(
            negotiated.telephone_event,
            Some(TelephoneEventFormat {
                payload_type: 101,
                events: Some(EventSet::DTMF),
            })
        );
        assert_eq!(
            output,
            "v=0\r\n\
             o=maskline 42 1 IN IP4 198.51.100.10\r\n\
             s=-\r\n\
             c=IN IP4 198.51.100.10\r\n\
             t=0 0\r\n\
             m=audio 20000 RTP/AVP 0 8 101\r\n\
             a=rtpmap:0 PCMU/8000\r\n\
             a=rtpmap:8 PCMA/8000\r\n\
             a=rtpmap:101 telephone-event/8000\r\n\
             a=fmtp:101 0-15\r\n\
             a=sendrecv\r\n\
             m=video 0 RTP/AVP 102 103\r\n"
        );
        assert_private(
            &output,
            &[
                "10.20.30.40",
                "203.0.113.99",
                "1458920347",
                "2861526211",
                "ice",
                "crypto",
                "candidate",
                "rtcp",
                "b=",
                "opus",
                "baresip",
                "cname",
            ],
        );
        for port in ["18374", "18375", "24814", "41234"] {
            assert!(!tokens(&output).contains(&port), "port {port}");
        }
    }

    #[test]
    fn other_media_are_noticed() {
        assert!(!parse(SIPP).has_other_media());
        assert!(!parse(ASTERISK_V6).has_other_media());
        assert!(parse(BARESIP).has_other_media());
        assert!(parse(LINPHONE).has_other_media());
    }

    #[test]
    fn linphone_offer_gets_the_8khz_telephone_event() {
        let (negotiated, output) = answer(LINPHONE);
        assert_eq!(negotiated.codecs, [pcmu(), pcma()]);
        assert_eq!(
            negotiated.telephone_event,
            Some(TelephoneEventFormat {
                payload_type: 100,
                events: None,
            })
        );
        assert!(output.contains("m=audio 20000 RTP/AVP 0 8 100\r\n"));
        assert!(output.contains("a=rtpmap:100 telephone-event/8000\r\n"));
        assert!(!output.contains("a=fmtp"));
        assert!(output.ends_with("m=video 0 RTP/AVP 96 97\r\n"));
        assert_private(
            &output,
            &[
                "192.168.0.104",
                "alice",
                "2436",
                "3524",
                "Talk",
                "rtcp-xr",
                "record",
            ],
        );
    }

    #[test]
    fn ipv6_offer_is_read_and_answered_on_our_address() {
        let offer = parse(ASTERISK_V6);
        let negotiated = offer.negotiate().unwrap();
        assert_eq!(negotiated.codecs, [pcma(), pcmu()]);
        assert_eq!(negotiated.ptime, Some(20));
        assert_eq!(
            negotiated.remote,
            Some("[2001:db8:85a3::8a2e:370:7334]:14046".parse().unwrap())
        );
        let ours = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 0x10));
        let sdp = LocalSdp::answer(
            7,
            9,
            ours,
            &offer,
            &negotiated,
            negotiated.answer_audio(OUR_PORT),
        );
        let output = sdp.render();
        assert_eq!(
            output,
            "v=0\r\n\
             o=maskline 7 9 IN IP6 2001:db8:ffff::10\r\n\
             s=-\r\n\
             c=IN IP6 2001:db8:ffff::10\r\n\
             t=0 0\r\n\
             m=audio 20000 RTP/AVP 8 0 101\r\n\
             a=rtpmap:8 PCMA/8000\r\n\
             a=rtpmap:0 PCMU/8000\r\n\
             a=rtpmap:101 telephone-event/8000\r\n\
             a=fmtp:101 0-16\r\n\
             a=ptime:20\r\n\
             a=sendrecv\r\n"
        );
        assert_private(
            &output,
            &[
                "2001:db8:85a3",
                "8a2e:370:7334",
                "1821307034",
                "Asterisk",
                "root",
                "maxptime",
            ],
        );
    }

    fn with_audio_lines(connection: &str, session_attrs: &str, media_attrs: &str) -> String {
        format!(
            "v=0\r\no=x 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 {connection}\r\nt=0 0\r\n{session_attrs}\
             m=audio 4000 RTP/AVP 0\r\n{media_attrs}"
        )
    }

    #[test]
    fn hold_forms_are_read_as_directions() {
        let cases = [
            ("192.0.2.1", "", "", Direction::SendRecv),
            ("192.0.2.1", "", "a=sendonly\r\n", Direction::SendOnly),
            ("192.0.2.1", "", "a=recvonly\r\n", Direction::RecvOnly),
            ("192.0.2.1", "", "a=inactive\r\n", Direction::Inactive),
            ("192.0.2.1", "a=sendonly\r\n", "", Direction::SendOnly),
            (
                "192.0.2.1",
                "a=inactive\r\n",
                "a=sendrecv\r\n",
                Direction::SendRecv,
            ),
            // RFC 2543 hold: the holder does not want to receive.
            ("0.0.0.0", "", "", Direction::SendOnly),
            ("0.0.0.0", "", "a=sendonly\r\n", Direction::SendOnly),
            ("0.0.0.0", "", "a=recvonly\r\n", Direction::Inactive),
        ];
        for (connection, session, media, expected) in cases {
            let text = with_audio_lines(connection, session, media);
            let negotiated = parse(&text).negotiate().unwrap();
            assert_eq!(negotiated.direction, expected, "{text}");
            assert_eq!(negotiated.remote.is_none(), connection == "0.0.0.0");
        }
    }

    #[test]
    fn a_held_call_is_answered_with_the_mirrored_direction() {
        let text = with_audio_lines("192.0.2.1", "", "a=sendonly\r\n");
        let (_, output) = answer(&text);
        assert!(output.ends_with("a=recvonly\r\n"), "{output}");
        let text = with_audio_lines("0.0.0.0", "", "");
        let (_, output) = answer(&text);
        assert!(output.ends_with("a=recvonly\r\n"), "{output}");
        assert!(output.contains("c=IN IP4 198.51.100.10\r\n"));
    }

    #[test]
    fn media_level_connection_overrides_the_session_level() {
        let text = "v=0\r\no=x 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
                    m=audio 4000 RTP/AVP 8\r\nc=IN IP4 192.0.2.77\r\n";
        let negotiated = parse(text).negotiate().unwrap();
        assert_eq!(negotiated.remote, Some("192.0.2.77:4000".parse().unwrap()));
        assert_eq!(negotiated.codecs, [pcma()]);
    }

    #[test]
    fn codecs_are_found_by_rtpmap_or_static_payload_type() {
        let offer = |formats: &str, attrs: &str| {
            format!(
                "v=0\r\no=x 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP {formats}\r\n{attrs}"
            )
        };
        let codecs = |text: &str| parse(text).negotiate().map(|n| n.codecs);
        // Static payload types need no rtpmap.
        assert_eq!(codecs(&offer("8 0", "")).unwrap(), [pcma(), pcmu()]);
        // A dynamic payload type keeps its number.
        assert_eq!(
            codecs(&offer("96", "a=rtpmap:96 pcmu/8000\r\n")).unwrap(),
            [PayloadCodec {
                payload_type: 96,
                codec: Codec::Pcmu
            }]
        );
        // Stereo or another clock is not our codec; the first of each wins.
        assert_eq!(
            codecs(&offer(
                "97 98 0 96",
                "a=rtpmap:97 PCMU/8000/2\r\na=rtpmap:98 PCMA/16000\r\na=rtpmap:96 PCMU/8000\r\n"
            ))
            .unwrap(),
            [pcmu()]
        );
        // telephone-event alone is not audio.
        assert!(matches!(
            codecs(&offer("101", "a=rtpmap:101 telephone-event/8000\r\n")),
            Err(Error::NotAcceptable(Unacceptable::NoCommonCodec))
        ));
    }

    #[test]
    fn offers_we_cannot_carry_are_not_acceptable_with_the_reason() {
        let base = "v=0\r\no=x 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n";
        let cases = [
            (
                "m=audio 4000 RTP/AVP 18\r\na=rtpmap:18 G729/8000\r\n",
                Unacceptable::NoCommonCodec,
            ),
            (
                "m=audio 4000 RTP/SAVP 0\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:x\r\n",
                Unacceptable::NoPlainRtp,
            ),
            (
                "m=audio 4000 UDP/TLS/RTP/SAVPF 0\r\n",
                Unacceptable::NoPlainRtp,
            ),
            ("m=video 4000 RTP/AVP 96\r\n", Unacceptable::NoAudio),
            ("m=audio 0 RTP/AVP 0\r\n", Unacceptable::NoAudio),
            ("", Unacceptable::NoAudio),
            (
                "m=audio 4000 RTP/SAVP 0\r\nm=audio 4002 RTP/AVP 18\r\n",
                Unacceptable::NoCommonCodec,
            ),
        ];
        for (media, reason) in cases {
            let text = format!("{base}{media}");
            match parse(&text).negotiate() {
                Err(Error::NotAcceptable(got)) => assert_eq!(got, reason, "{text}"),
                other => panic!("{text}: {other:?}"),
            }
        }
    }

    #[test]
    fn the_first_audio_stream_we_can_carry_is_chosen_and_the_rest_rejected() {
        let text = "v=0\r\no=x 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
                    m=audio 4000 RTP/SAVP 0\r\n\
                    m=audio 4002 RTP/AVP 8\r\n\
                    m=audio 4004 RTP/AVP 0\r\n\
                    m=application 5000 UDP/DTLS/SCTP webrtc-datachannel\r\n\
                    m=image 6000 udptl t38\r\n\
                    m=message 7000 TCP/MSRP *\r\n\
                    m=application 8000 UDP/BFCP 5000\r\n";
        let (negotiated, output) = answer(text);
        assert_eq!(negotiated.media_index, 1);
        let media: Vec<&str> = output.lines().filter(|l| l.starts_with("m=")).collect();
        assert_eq!(
            media,
            [
                "m=audio 0 RTP/SAVP 0",
                "m=audio 20000 RTP/AVP 8",
                "m=audio 0 RTP/AVP 0",
                "m=application 0 UDP/DTLS/SCTP webrtc-datachannel",
                "m=image 0 udptl t38",
                "m=message 0 TCP/MSRP *",
                // A bare number on a non-RTP line could be a port: not echoed.
                "m=application 0 UDP/BFCP 0",
            ]
        );
    }

    #[test]
    fn an_offer_of_ours_renders_every_allowed_line() {
        let audio = LocalAudio {
            port: 30_000,
            codecs: vec![pcma(), pcmu()],
            telephone_event: Some(TelephoneEventFormat {
                payload_type: 96,
                events: EventSet::parse("0-15,66,70-71"),
            }),
            ptime: Some(30),
            direction: Direction::SendOnly,
        };
        let sdp = LocalSdp::offer(1, 2, OURS, audio);
        assert_eq!(
            sdp.render(),
            "v=0\r\n\
             o=maskline 1 2 IN IP4 198.51.100.10\r\n\
             s=-\r\n\
             c=IN IP4 198.51.100.10\r\n\
             t=0 0\r\n\
             m=audio 30000 RTP/AVP 8 0 96\r\n\
             a=rtpmap:8 PCMA/8000\r\n\
             a=rtpmap:0 PCMU/8000\r\n\
             a=rtpmap:96 telephone-event/8000\r\n\
             a=fmtp:96 0-15,66,70-71\r\n\
             a=ptime:30\r\n\
             a=sendonly\r\n"
        );
    }

    #[test]
    fn telephone_event_on_a_codec_payload_type_is_left_out() {
        let audio = LocalAudio {
            port: 30_000,
            codecs: vec![pcmu()],
            telephone_event: Some(TelephoneEventFormat {
                payload_type: 0,
                events: None,
            }),
            ptime: None,
            direction: Direction::SendRecv,
        };
        let output = LocalSdp::offer(1, 1, OURS, audio).render();
        assert!(output.contains("m=audio 30000 RTP/AVP 0\r\n"));
        assert!(!output.contains("telephone-event"));
    }

    #[test]
    fn audio_without_codecs_renders_as_rejected() {
        let audio = LocalAudio {
            port: 30_000,
            codecs: vec![],
            telephone_event: None,
            ptime: None,
            direction: Direction::SendRecv,
        };
        assert!(
            LocalSdp::offer(1, 1, OURS, audio)
                .render()
                .ends_with("m=audio 0 RTP/AVP 0\r\n")
        );
    }

    #[test]
    fn the_version_moves_only_when_the_description_changes() {
        let audio = |direction| LocalAudio {
            port: 30_000,
            codecs: vec![pcmu()],
            telephone_event: None,
            ptime: None,
            direction,
        };
        let first = LocalSdp::offer(555, 3, OURS, audio(Direction::SendRecv));
        let same = LocalSdp::offer(0, 0, OURS, audio(Direction::SendRecv)).revision_of(&first);
        assert_eq!((same.session_id, same.version), (555, 3));
        let hold = LocalSdp::offer(0, 0, OURS, audio(Direction::SendOnly)).revision_of(&first);
        assert_eq!((hold.session_id, hold.version), (555, 4));
        let resume = LocalSdp::offer(0, 0, OURS, audio(Direction::SendRecv)).revision_of(&hold);
        assert_eq!(resume.version, 5);
    }

    #[test]
    fn event_lists_are_read_and_written_compactly() {
        for (text, rendered) in [
            ("0-15", Some("0-15")),
            ("0-16", Some("0-16")),
            ("0-15,66,70", Some("0-15,66,70")),
            ("0-15, 16 ,32-34", Some("0-16,32-34")),
            ("255", Some("255")),
            ("0-255", Some("0-255")),
            ("5-3", None),
            ("0-256", None),
            ("", None),
            ("0-15,", None),
            ("-1", None),
            ("a-b", None),
            ("0-15;x", None),
        ] {
            let set = EventSet::parse(text);
            assert_eq!(set.map(|s| s.to_string()).as_deref(), rendered, "{text:?}");
        }
        assert!(EventSet::DTMF.contains(15) && !EventSet::DTMF.contains(16));
    }

    #[test]
    fn malformed_descriptions_name_the_line_and_the_fault() {
        let head = "v=0\r\no=x 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\n";
        let many_media = format!("{head}{}", "m=video 0 RTP/AVP 96\r\n".repeat(17));
        let many_formats = format!(
            "{head}m=video 0 RTP/AVP{}\r\n",
            (0..129)
                .map(|i| format!(" {}", i % 128))
                .collect::<String>()
        );
        let cases: Vec<(String, Option<usize>, SdpFault)> = vec![
            ("".into(), None, SdpFault::MissingVersion),
            ("\r\n\r\n".into(), None, SdpFault::MissingVersion),
            (
                "o=x 1 1 IN IP4 192.0.2.1\r\n".into(),
                Some(1),
                SdpFault::MissingVersion,
            ),
            ("v=1\r\n".into(), Some(1), SdpFault::UnsupportedVersion),
            ("v=0\r\ns=-\r\n".into(), None, SdpFault::MissingOrigin),
            ("v=0\r\nv=0\r\n".into(), Some(2), SdpFault::MisplacedLine),
            (
                format!("{head}o=y 2 2 IN IP4 192.0.2.2\r\n"),
                Some(5),
                SdpFault::RepeatedOrigin,
            ),
            (
                "v=0\r\no=x 1 1 IN IP4\r\n".into(),
                Some(2),
                SdpFault::BadOrigin,
            ),
            (
                "v=0\r\no=x 1 1 ATM NSAP 47\r\n".into(),
                Some(2),
                SdpFault::BadOrigin,
            ),
            (
                format!("{head}m=audio 1 RTP/AVP 0\r\no=y 2 2 IN IP4 192.0.2.2\r\n"),
                Some(6),
                SdpFault::MisplacedLine,
            ),
            (
                format!("{head}c=IN IP4\r\n"),
                Some(5),
                SdpFault::BadConnection,
            ),
            (
                format!("{head}c=ATM NSAP 47.0091\r\n"),
                Some(5),
                SdpFault::BadConnection,
            ),
            (
                format!("{head}c=IN IP5 192.0.2.1\r\n"),
                Some(5),
                SdpFault::BadConnection,
            ),
            (
                format!("{head}c=IN IP4 pbx.example.com\r\n"),
                Some(5),
                SdpFault::ConnectionNotIp,
            ),
            (
                format!("{head}c=IN IP6 192.0.2.1\r\n"),
                Some(5),
                SdpFault::AddressFamilyMismatch,
            ),
            (
                format!("{head}c=IN IP4 ::1\r\n"),
                Some(5),
                SdpFault::AddressFamilyMismatch,
            ),
            (
                format!("{head}m=audio 70000 RTP/AVP 0\r\n"),
                Some(5),
                SdpFault::BadPort,
            ),
            (
                format!("{head}m=audio -1 RTP/AVP 0\r\n"),
                Some(5),
                SdpFault::BadPort,
            ),
            (
                format!("{head}m=audio 4000 RTP/AVP\r\n"),
                Some(5),
                SdpFault::BadMedia,
            ),
            (format!("{head}m=audio\r\n"), Some(5), SdpFault::BadMedia),
            (
                format!("{head}m=au.dio 4000 RTP/AVP 0\r\n"),
                Some(5),
                SdpFault::BadMedia,
            ),
            (
                format!("{head}m=audio 4000 RTP/AVP 0 128\r\n"),
                Some(5),
                SdpFault::BadPayloadType,
            ),
            (
                format!("{head}m=audio 4000 RTP/AVP PCMU\r\n"),
                Some(5),
                SdpFault::BadPayloadType,
            ),
            (
                format!("{head}m=audio 4000 RTP/AVP 0\r\na=rtpmap:0 PCMU\r\n"),
                Some(6),
                SdpFault::BadRtpmap,
            ),
            (
                format!("{head}m=audio 4000 RTP/AVP 0\r\na=rtpmap:200 PCMU/8000\r\n"),
                Some(6),
                SdpFault::BadRtpmap,
            ),
            (
                format!("{head}m=audio 4000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000/1/2\r\n"),
                Some(6),
                SdpFault::BadRtpmap,
            ),
            (
                format!("{head}m=audio 4000 RTP/AVP 0\r\na=rtpmap\r\n"),
                Some(6),
                SdpFault::BadRtpmap,
            ),
            (
                format!("{head}m=audio 4000 RTP/AVP 0\r\na=fmtp:x 0-15\r\n"),
                Some(6),
                SdpFault::BadFmtp,
            ),
            (
                format!("{head}m=audio 4000 RTP/AVP 0\r\na=ptime:0\r\n"),
                Some(6),
                SdpFault::BadPtime,
            ),
            (
                format!("{head}m=audio 4000 RTP/AVP 0\r\na=ptime:fast\r\n"),
                Some(6),
                SdpFault::BadPtime,
            ),
            (
                format!("{head}m=audio 4000 RTP/AVP 0\r\na=ptime:20.x\r\n"),
                Some(6),
                SdpFault::BadPtime,
            ),
            (format!("{head}x\r\n"), Some(5), SdpFault::BadLine),
            (format!("{head}A=b\r\n"), Some(5), SdpFault::BadLine),
            (format!("{head}a =b\r\n"), Some(5), SdpFault::BadLine),
            (many_media, Some(21), SdpFault::TooManyMedia),
            (many_formats, Some(5), SdpFault::TooManyFormats),
            (
                "v=0\r\no=x 1 1 IN IP4 192.0.2.1\r\ns=-\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"
                    .into(),
                Some(5),
                SdpFault::MissingConnection,
            ),
        ];
        for (text, line, fault) in cases {
            match Sdp::parse(text.as_bytes()) {
                Err(Error::MalformedSdp { line: l, fault: f }) => {
                    assert_eq!((l, f), (line, fault), "{text}");
                }
                other => panic!("{text}: expected {fault:?}, got {other:?}"),
            }
        }
        let mut binary = head.as_bytes().to_vec();
        binary.extend_from_slice(b"c=IN IP4 \xff\xfe\r\n");
        assert!(matches!(
            Sdp::parse(&binary),
            Err(Error::MalformedSdp {
                line: Some(5),
                fault: SdpFault::NotText
            })
        ));
    }

    #[test]
    fn what_we_do_not_read_may_be_anything() {
        let mut text = b"v=0\r\no=x 1 1 IN IP4 192.0.2.1\r\ns=\xe4\xf6 latin-1\r\ni=\xff\r\n\
            c=IN IP4 192.0.2.1\r\nt=0 0\r\na=x-\xff\r\nm=audio 4000 RTP/AVP 0\r\n\
            a=rtcp:nonsense\r\na=ptime:20.0\r\n\
            m=video 4002 RTP/AVP abc\r\na=rtpmap:garbage\r\na=fmtp\r\n"
            .to_vec();
        text.extend_from_slice(b"z=\r\n");
        let sdp = Sdp::parse(&text).unwrap();
        assert_eq!(sdp.media[0].ptime, Some(20));
        assert_eq!(sdp.media[1].formats, ["abc"]);
        assert_eq!(
            sdp.origin,
            Origin {
                session_id: "1".into(),
                version: "1".into()
            }
        );
    }

    #[test]
    fn oversized_descriptions_are_refused_before_parsing() {
        let text = format!("{SIPP}{}", "a=x\r\n".repeat(MAX_SDP_LEN / 5));
        assert!(matches!(
            Sdp::parse(text.as_bytes()),
            Err(Error::SdpTooLarge {
                limit: MAX_SDP_LEN,
                ..
            })
        ));
    }

    #[test]
    fn errors_read_as_sentences() {
        let e = Sdp::parse(b"v=0\r\no=x\r\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "malformed SDP at line 2: o= needs username, session id, version, IN, address type, address"
        );
        let e = Sdp::parse(b"v=0\r\n").unwrap_err();
        assert_eq!(e.to_string(), "malformed SDP: no o= line");
        let e = parse("v=0\r\no=x 1 1 IN IP4 192.0.2.1\r\n")
            .negotiate()
            .unwrap_err();
        assert_eq!(e.to_string(), "SDP not acceptable: no audio stream");
    }

    // === properties ===

    fn codec_strategy() -> impl Strategy<Value = Vec<PayloadCodec>> {
        (
            0usize..3,
            any::<bool>(),
            prop::option::of(96u8..128),
            prop::option::of(96u8..128),
        )
            .prop_map(|(count, swap, pt_u, pt_a)| {
                let mut codecs = vec![
                    PayloadCodec {
                        payload_type: pt_u.unwrap_or(0),
                        codec: Codec::Pcmu,
                    },
                    PayloadCodec {
                        payload_type: pt_a.unwrap_or(8),
                        codec: Codec::Pcma,
                    },
                ];
                if swap {
                    codecs.swap(0, 1);
                }
                codecs.truncate(count);
                codecs
            })
    }

    fn event_set_strategy() -> impl Strategy<Value = EventSet> {
        prop::collection::vec(any::<u8>(), 1..20).prop_map(|events| {
            let mut set = EventSet::default();
            for e in events {
                set.insert(e);
            }
            set
        })
    }

    fn direction_strategy() -> impl Strategy<Value = Direction> {
        prop_oneof![
            Just(Direction::SendRecv),
            Just(Direction::SendOnly),
            Just(Direction::RecvOnly),
            Just(Direction::Inactive),
        ]
    }

    fn audio_strategy() -> impl Strategy<Value = LocalAudio> {
        (
            1u16..,
            codec_strategy(),
            prop::option::of((96u8..128, prop::option::of(event_set_strategy()))),
            prop::option::of(1u16..=1000),
            direction_strategy(),
        )
            .prop_filter_map(
                "distinct payload types",
                |(port, codecs, event, ptime, direction)| {
                    let mut pts: Vec<u8> = codecs.iter().map(|c| c.payload_type).collect();
                    pts.extend(event.map(|e| e.0));
                    let n = pts.len();
                    pts.sort_unstable();
                    pts.dedup();
                    (pts.len() == n).then(|| LocalAudio {
                        port,
                        codecs,
                        telephone_event: event.map(|(payload_type, events)| TelephoneEventFormat {
                            payload_type,
                            events,
                        }),
                        ptime,
                        direction,
                    })
                },
            )
    }

    fn rejected_strategy() -> impl Strategy<Value = RejectedMedia> {
        prop_oneof![
            prop::collection::vec(0u8..128, 0..4).prop_map(|pts| RejectedMedia {
                kind: Token::new("audio").unwrap(),
                proto: Token::new("RTP/AVP").unwrap(),
                formats: pts
                    .iter()
                    .map(|p| Token::new(&p.to_string()).unwrap())
                    .collect(),
            }),
            (
                prop::sample::select(vec!["video", "text", "application", "image", "message"]),
                prop::sample::select(vec![
                    "RTP/AVP",
                    "RTP/SAVPF",
                    "udptl",
                    "TCP/MSRP",
                    "UDP/DTLS/SCTP"
                ]),
                prop::collection::vec("[a-z][a-z0-9-]{0,10}|\\*", 0..3),
            )
                .prop_map(|(kind, proto, formats)| RejectedMedia {
                    kind: Token::new(kind).unwrap(),
                    proto: Token::new(proto).unwrap(),
                    formats: formats.iter().filter_map(|f| Token::new(f)).collect(),
                }),
        ]
    }

    fn local_strategy() -> impl Strategy<Value = LocalSdp> {
        (
            any::<u64>(),
            any::<u64>(),
            any::<IpAddr>().prop_filter("specified", |ip| !ip.is_unspecified()),
            prop::collection::vec(
                prop_oneof![
                    audio_strategy().prop_map(LocalMedia::Audio),
                    rejected_strategy().prop_map(LocalMedia::Rejected),
                ],
                0..4,
            ),
        )
            .prop_map(|(session_id, version, address, media)| LocalSdp {
                session_id,
                version,
                address,
                media,
            })
    }

    /// A party's offer with identifying details everywhere a real one may
    /// carry them, among lines we must never copy.
    #[derive(Debug, Clone)]
    struct PartyOffer {
        text: String,
        secrets: Vec<String>,
        ports: Vec<u16>,
    }

    fn party_offer_strategy() -> impl Strategy<Value = PartyOffer> {
        (
            "U[a-z0-9]{5,10}",
            "[1-9][0-9]{6,12}",
            "[1-9][0-9]{6,12}",
            prop_oneof![
                any::<Ipv4Addr>().prop_map(IpAddr::V4),
                any::<Ipv6Addr>().prop_map(IpAddr::V6),
            ]
            .prop_filter("a party address", |ip| {
                !ip.is_unspecified() && !OURS.to_string().contains(&ip.to_string())
            }),
            "Talk [A-Za-z]{5}",
            (1024u16..).prop_filter("not ours", |p| *p != OUR_PORT && *p != 8000),
            (1024u16..).prop_filter("not ours", |p| *p != OUR_PORT && *p != 8000),
            prop::collection::vec(0usize..12, 0..12),
            prop::sample::subsequence(vec![0u8, 8, 18, 9, 3, 96, 101], 1..7),
            "[ -~]{0,40}",
        )
            .prop_map(|(user, session_id, version, ip, name, port, video_port, extras, pts, junk)| {
                let family = if ip.is_ipv4() { "IP4" } else { "IP6" };
                let origin = format!("{user} {session_id} {version} IN {family} {ip}");
                let pool = [
                    format!("i={name} details"),
                    format!("u=http://[{ip}]/{user}"),
                    format!("e={user}@example.com"),
                    "p=+1 555 0100".to_string(),
                    "b=AS:64".to_string(),
                    format!("a=ice-ufrag:{user}"),
                    format!("a=candidate:1 1 UDP 2130706431 {ip} {port} typ host"),
                    format!("a=rtcp:{} IN {family} {ip}", port.wrapping_add(1)),
                    "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR".to_string(),
                    format!("a=x-{user}:{ip} {session_id}"),
                    format!("a=fingerprint:sha-256 {junk}"),
                    format!("a={junk}"),
                ];
                let mut text = format!("v=0\r\no={origin}\r\ns={name}\r\nc=IN {family} {ip}\r\nt=0 0\r\n");
                for &e in extras.iter().take(3) {
                    text.push_str(&pool[e]);
                    text.push_str("\r\n");
                }
                let formats: Vec<String> = pts.iter().map(|p| p.to_string()).collect();
                text.push_str(&format!("m=audio {port} RTP/AVP {}\r\n", formats.join(" ")));
                if pts.contains(&96) {
                    text.push_str("a=rtpmap:96 opus/48000/2\r\n");
                }
                if pts.contains(&101) {
                    text.push_str("a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\n");
                }
                text.push_str(&format!("c=IN {family} {ip}\r\n"));
                for &e in extras.iter().skip(3) {
                    text.push_str(&pool[e]);
                    text.push_str("\r\n");
                }
                text.push_str(&format!("m=video {video_port} RTP/AVP 97\r\na=rtpmap:97 H264/90000\r\n"));
                PartyOffer {
                    secrets: vec![ip.to_string(), origin, user, session_id, version, name],
                    ports: vec![port, port.wrapping_add(1), video_port],
                    text,
                }
            })
    }

    /// Our session id in the answers these tests render: above any port,
    /// so that a party's port found in an answer is a leak, never our id.
    const OUR_SESSION: u64 = 4_242_424_242;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn rendered_descriptions_parse_back_to_what_was_rendered(local in local_strategy()) {
            let text = local.render();
            let parsed = Sdp::parse(text.as_bytes()).map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
            prop_assert_eq!(&parsed.origin.session_id, &local.session_id.to_string());
            prop_assert_eq!(&parsed.origin.version, &local.version.to_string());
            prop_assert_eq!(parsed.media.len(), local.media.len());
            for (ours, theirs) in local.media.iter().zip(&parsed.media) {
                prop_assert_eq!(theirs.connection, Some(local.address));
                match ours {
                    LocalMedia::Audio(audio) if !audio.codecs.is_empty() => {
                        prop_assert_eq!(theirs.kind.as_str(), "audio");
                        prop_assert_eq!(theirs.port, audio.port);
                        prop_assert_eq!(theirs.direction, audio.direction);
                        prop_assert_eq!(theirs.ptime, audio.ptime);
                        let mut pts: Vec<u8> = audio.codecs.iter().map(|c| c.payload_type).collect();
                        pts.extend(audio.telephone_event.map(|e| e.payload_type));
                        prop_assert_eq!(theirs.payload_types().collect::<Vec<_>>(), pts);
                        for codec in &audio.codecs {
                            let map = theirs.rtpmap(codec.payload_type).unwrap();
                            prop_assert_eq!(map.encoding.as_str(), codec.codec.encoding_name());
                        }
                        if let Some(event) = audio.telephone_event {
                            let events = theirs.fmtp(event.payload_type).and_then(EventSet::parse);
                            prop_assert_eq!(events, event.events);
                        }
                    }
                    LocalMedia::Audio(_) => {
                        prop_assert_eq!(theirs.port, 0);
                    }
                    LocalMedia::Rejected(rejected) => {
                        prop_assert_eq!(&theirs.kind, &rejected.kind);
                        prop_assert_eq!(&theirs.proto, &rejected.proto);
                        prop_assert_eq!(theirs.port, 0);
                        let formats: Vec<&str> = rejected.formats.iter().map(Token::as_str).collect();
                        if formats.is_empty() {
                            prop_assert_eq!(&theirs.formats, &["0"]);
                        } else {
                            prop_assert_eq!(&theirs.formats, &formats);
                        }
                    }
                }
            }
            // And negotiating our own offer finds what we offered.
            let first_audio = local.media.iter().find_map(|m| match m {
                LocalMedia::Audio(a) if !a.codecs.is_empty() => Some(a),
                _ => None,
            });
            match (first_audio, parsed.negotiate()) {
                (Some(audio), Ok(negotiated)) => {
                    prop_assert_eq!(&negotiated.codecs, &audio.codecs);
                    prop_assert_eq!(negotiated.telephone_event, audio.telephone_event);
                    prop_assert_eq!(negotiated.remote, Some(SocketAddr::new(local.address, audio.port)));
                }
                (None, Err(Error::NotAcceptable(_))) => {}
                (audio, result) => prop_assert!(false, "{:?} negotiated as {:?}", audio, result),
            }
        }

        #[test]
        fn nothing_of_the_party_reaches_the_answer(offer in party_offer_strategy()) {
            let sdp = match Sdp::parse(offer.text.as_bytes()) {
                Ok(sdp) => sdp,
                // Junk lines may make it malformed: then nothing is sent.
                Err(Error::MalformedSdp { .. }) => return Ok(()),
                Err(e) => return Err(TestCaseError::fail(format!("{e}"))),
            };
            let Ok(negotiated) = sdp.negotiate() else { return Ok(()) };
            let output = LocalSdp::answer(OUR_SESSION, 1, OURS, &sdp, &negotiated, negotiated.answer_audio(OUR_PORT)).render();
            for secret in &offer.secrets {
                prop_assert!(!output.contains(secret.as_str()), "{:?} leaked:\n{}", secret, output);
            }
            let words = tokens(&output);
            // A party port equal to ours is ours in the answer, not a leak.
            for port in offer.ports.iter().filter(|&&p| p != OUR_PORT) {
                prop_assert!(!words.contains(&port.to_string().as_str()), "port {} leaked:\n{}", port, output);
            }
            // What we send is a description of ours, whole.
            let back = Sdp::parse(output.as_bytes()).unwrap();
            prop_assert!(back.media.iter().all(|m| m.connection == Some(OURS)));
            prop_assert_eq!(back.negotiate().unwrap().remote, Some(SocketAddr::new(OURS, OUR_PORT)));
        }

        /// Real offers with random damage: whatever still parses and
        /// negotiates is answered without the addresses it names.
        #[test]
        fn damaged_real_offers_never_leak_their_addresses(
            which in 0usize..4,
            edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..6),
        ) {
            let mut bytes = [SIPP, BARESIP, LINPHONE, ASTERISK_V6][which].as_bytes().to_vec();
            for (at, byte, op) in edits {
                let i = at.index(bytes.len());
                match op {
                    0 => bytes[i] = byte,
                    1 => bytes.insert(i, byte),
                    _ => { bytes.remove(i); }
                }
            }
            let Ok(sdp) = Sdp::parse(&bytes) else { return Ok(()) };
            let Ok(negotiated) = sdp.negotiate() else { return Ok(()) };
            let output = LocalSdp::answer(OUR_SESSION, 1, OURS, &sdp, &negotiated, negotiated.answer_audio(OUR_PORT)).render();
            for ip in sdp.media.iter().filter_map(|m| m.connection) {
                let ip = ip.to_string();
                if !OURS.to_string().contains(&ip) {
                    prop_assert!(!output.contains(&ip), "{} leaked:\n{}", ip, output);
                }
            }
            for secret in ["192.168", "10.20.30", "203.0.113", "2001:db8:85a3", "user1", "alice", "Talk", "Asterisk", "crypto", "candidate", "ice-"] {
                prop_assert!(!output.contains(secret), "{} leaked:\n{}", secret, output);
            }
        }

        #[test]
        fn the_parser_never_panics_on_bytes(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
            let _ = Sdp::parse(&bytes).map(|sdp| sdp.negotiate());
        }

        #[test]
        fn the_parser_never_panics_on_sdp_shaped_text(
            lines in prop::collection::vec(("[vosciubtmaekz]", "[ -~]{0,60}"), 0..40),
        ) {
            let mut text = String::from("v=0\r\n");
            for (kind, value) in lines {
                text.push_str(&format!("{kind}={value}\r\n"));
            }
            let _ = Sdp::parse(text.as_bytes()).map(|sdp| sdp.negotiate());
        }
    }
}
