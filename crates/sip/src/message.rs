//! SIP messages (RFC 3261 §7, §20, §25): parsing into spans over the text,
//! and building new messages.
//!
//! A B2BUA never forwards a message: every message it sends is built here
//! from the fields it chooses to carry, which is what keeps a caller's
//! identity from crossing legs. Parsing is therefore only as deep as the
//! B2BUA needs: the start line, every header as a (name, value) span, the
//! values the transaction and dialog layers match on, and the body.

use std::fmt::Write as _;

use crate::Error;

/// A byte range into a message's head.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct Span {
    start: u32,
    end: u32,
}

impl Span {
    fn new(start: usize, end: usize) -> Span {
        Span {
            start: start as u32,
            end: end as u32,
        }
    }
}

#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Method {
    Invite,
    Ack,
    Bye,
    Cancel,
    Options,
    Update,
    Info,
    Prack,
    Register,
    Message,
    Refer,
    Notify,
    Subscribe,
    Publish,
    Other(String),
}

impl Method {
    pub fn parse(s: &str) -> Method {
        match s {
            "INVITE" => Method::Invite,
            "ACK" => Method::Ack,
            "BYE" => Method::Bye,
            "CANCEL" => Method::Cancel,
            "OPTIONS" => Method::Options,
            "UPDATE" => Method::Update,
            "INFO" => Method::Info,
            "PRACK" => Method::Prack,
            "REGISTER" => Method::Register,
            "MESSAGE" => Method::Message,
            "REFER" => Method::Refer,
            "NOTIFY" => Method::Notify,
            "SUBSCRIBE" => Method::Subscribe,
            "PUBLISH" => Method::Publish,
            other => Method::Other(other.to_owned()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Method::Invite => "INVITE",
            Method::Ack => "ACK",
            Method::Bye => "BYE",
            Method::Cancel => "CANCEL",
            Method::Options => "OPTIONS",
            Method::Update => "UPDATE",
            Method::Info => "INFO",
            Method::Prack => "PRACK",
            Method::Register => "REGISTER",
            Method::Message => "MESSAGE",
            Method::Refer => "REFER",
            Method::Notify => "NOTIFY",
            Method::Subscribe => "SUBSCRIBE",
            Method::Publish => "PUBLISH",
            Method::Other(s) => s,
        }
    }
}

/// Headers the B2BUA reads; everything else is [`Name::Other`] and is
/// never copied to the other leg.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Name {
    Via,
    From,
    To,
    CallId,
    CSeq,
    Contact,
    MaxForwards,
    ContentLength,
    ContentType,
    ContentDisposition,
    ContentEncoding,
    ContentLanguage,
    Route,
    RecordRoute,
    PAssertedIdentity,
    Require,
    Other,
}

impl Name {
    fn parse(s: &str) -> Name {
        let eq = |n: &str| s.eq_ignore_ascii_case(n);
        if s.len() == 1 {
            return match s.as_bytes()[0].to_ascii_lowercase() {
                b'v' => Name::Via,
                b'f' => Name::From,
                b't' => Name::To,
                b'i' => Name::CallId,
                b'm' => Name::Contact,
                b'l' => Name::ContentLength,
                b'c' => Name::ContentType,
                b'e' => Name::ContentEncoding,
                _ => Name::Other,
            };
        }
        if eq("Via") {
            Name::Via
        } else if eq("From") {
            Name::From
        } else if eq("To") {
            Name::To
        } else if eq("Call-ID") {
            Name::CallId
        } else if eq("CSeq") {
            Name::CSeq
        } else if eq("Contact") {
            Name::Contact
        } else if eq("Max-Forwards") {
            Name::MaxForwards
        } else if eq("Content-Length") {
            Name::ContentLength
        } else if eq("Content-Type") {
            Name::ContentType
        } else if eq("Content-Disposition") {
            Name::ContentDisposition
        } else if eq("Content-Encoding") {
            Name::ContentEncoding
        } else if eq("Content-Language") {
            Name::ContentLanguage
        } else if eq("Route") {
            Name::Route
        } else if eq("Record-Route") {
            Name::RecordRoute
        } else if eq("P-Asserted-Identity") {
            Name::PAssertedIdentity
        } else if eq("Require") {
            Name::Require
        } else {
            Name::Other
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Header {
    name: Name,
    value: Span,
}

#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Start {
    Request { method: Method, uri: Span },
    Response { code: u16 },
}

/// The parts of the top Via that transactions match on.
#[derive(Clone, Copy, Debug, Default)]
pub struct TopVia {
    /// `UDP`, `TCP`, ...
    pub transport: Span,
    pub sent_by: Span,
    pub branch: Span,
}

/// A parsed message. The head is kept as text (validated UTF-8) and every
/// field is a span into it; the body is raw bytes.
#[derive(Clone, Debug)]
pub struct Message {
    head: String,
    headers: Vec<Header>,
    pub start: Start,
    pub body: Vec<u8>,
    pub via: TopVia,
    pub call_id: Span,
    pub cseq: u32,
    pub cseq_method: Method,
    pub from: Span,
    pub to: Span,
    pub from_tag: Option<Span>,
    pub to_tag: Option<Span>,
}

/// Bytes a stream must hold before [`frame`] gives up on finding a head.
pub const MAX_HEAD: usize = 16 * 1024;
/// Largest body accepted (SDP is a few hundred bytes).
pub const MAX_BODY: usize = 64 * 1024;

/// On a stream transport: the length of the first complete message in
/// `buf`, after `skip` bytes of keep-alive CRLFs. `Ok(None)` means more
/// bytes are needed.
pub fn frame(buf: &[u8]) -> Result<Option<(usize, usize)>, Error> {
    let skip = buf
        .iter()
        .take_while(|&&b| b == b'\r' || b == b'\n')
        .count();
    let rest = &buf[skip..];
    let Some(head_end) = find_head_end(rest) else {
        if rest.len() > MAX_HEAD {
            return Err(Error::Malformed("header section too long"));
        }
        return Ok(None);
    };
    let head = std::str::from_utf8(&rest[..head_end.0])
        .map_err(|_| Error::Malformed("header section is not UTF-8"))?;
    // RFC 3261 §18.3: on a stream Content-Length is mandatory.
    let mut length = None;
    for line in head.split('\n').skip(1) {
        if length.is_none()
            && let Some((name, value)) = line.split_once(':')
            && Name::parse(name.trim()) == Name::ContentLength
        {
            length = Some(
                value
                    .trim()
                    .parse::<usize>()
                    .map_err(|_| Error::Malformed("Content-Length"))?,
            );
        }
    }
    let length = length.ok_or(Error::Malformed("Content-Length missing on a stream"))?;
    if length > MAX_BODY {
        return Err(Error::Malformed("body too large"));
    }
    let total = head_end.1 + length;
    Ok((rest.len() >= total).then_some((skip, total)))
}

/// (end of the head's text, start of the body): the head ends at the
/// newline that precedes an empty line (CRLF or, tolerated, bare LF).
fn find_head_end(buf: &[u8]) -> Option<(usize, usize)> {
    for (i, &b) in buf.iter().enumerate() {
        if b != b'\n' {
            continue;
        }
        match buf.get(i + 1) {
            Some(b'\n') => return Some((i, i + 2)),
            Some(b'\r') if buf.get(i + 2) == Some(&b'\n') => return Some((i, i + 3)),
            _ => {}
        }
    }
    None
}

impl Message {
    /// Parses one whole message (a datagram, or a frame from [`frame`]).
    pub fn parse(bytes: &[u8]) -> Result<Message, Error> {
        let (head_end, body_start) =
            find_head_end(bytes).ok_or(Error::Malformed("no end of headers"))?;
        if head_end > MAX_HEAD {
            return Err(Error::Malformed("header section too long"));
        }
        let head = std::str::from_utf8(&bytes[..head_end])
            .map_err(|_| Error::Malformed("header section is not UTF-8"))?
            .to_owned();
        let mut msg = Message {
            headers: Vec::with_capacity(16),
            start: Start::Response { code: 0 },
            body: Vec::new(),
            via: TopVia::default(),
            call_id: Span::default(),
            cseq: 0,
            cseq_method: Method::Invite,
            from: Span::default(),
            to: Span::default(),
            from_tag: None,
            to_tag: None,
            head,
        };
        msg.parse_head()?;
        let rest = &bytes[body_start.min(bytes.len())..];
        let body_len = match msg.header(Name::ContentLength) {
            Some(v) => v
                .trim()
                .parse::<usize>()
                .map_err(|_| Error::Malformed("Content-Length"))?,
            None => rest.len(),
        };
        if body_len > rest.len() {
            return Err(Error::Malformed("body shorter than Content-Length"));
        }
        if body_len > MAX_BODY {
            return Err(Error::Malformed("body too large"));
        }
        msg.body = rest[..body_len].to_vec();
        Ok(msg)
    }

    fn parse_head(&mut self) -> Result<(), Error> {
        let head = self.head.as_str();
        let mut pos = 0;
        let mut first = true;
        let mut start = None;
        while pos < head.len() {
            let line_end = head[pos..].find('\n').map_or(head.len(), |i| pos + i);
            let mut end = line_end;
            if end > pos && head.as_bytes()[end - 1] == b'\r' {
                end -= 1;
            }
            let line = &head[pos..end];
            if first {
                start = Some(parse_start(line, pos)?);
                first = false;
            } else if line.starts_with([' ', '\t']) {
                // Folded continuation (RFC 3261 §7.3.1): extend the value.
                let last = self
                    .headers
                    .last_mut()
                    .ok_or(Error::Malformed("continuation before any header"))?;
                last.value.end = end as u32;
            } else if !line.is_empty() {
                let colon = line
                    .find(':')
                    .ok_or(Error::Malformed("header without ':'"))?;
                let name = line[..colon].trim();
                if name.is_empty() || !name.bytes().all(is_token) {
                    return Err(Error::Malformed("header name"));
                }
                let value_start = pos + colon + 1;
                let skip = head[value_start..end].len() - head[value_start..end].trim_start().len();
                self.headers.push(Header {
                    name: Name::parse(name),
                    value: Span::new(value_start + skip, end),
                });
            }
            pos = line_end + 1;
        }
        self.start = start.ok_or(Error::Malformed("empty message"))?;

        let via = self.header(Name::Via).ok_or(Error::Missing("Via"))?;
        self.via = parse_via(&self.head, self.span_of(via))?;
        let call_id = self
            .header_span(Name::CallId)
            .ok_or(Error::Missing("Call-ID"))?;
        if self.get(call_id).is_empty() {
            return Err(Error::Missing("Call-ID"));
        }
        self.call_id = call_id;
        let cseq = self.header(Name::CSeq).ok_or(Error::Missing("CSeq"))?;
        let (num, method) = cseq
            .split_once(|c: char| c.is_ascii_whitespace())
            .ok_or(Error::Malformed("CSeq"))?;
        let num: u32 = num.trim().parse().map_err(|_| Error::Malformed("CSeq"))?;
        let method = Method::parse(method.trim());
        self.cseq = num;
        self.cseq_method = method;
        self.from = self.header_span(Name::From).ok_or(Error::Missing("From"))?;
        self.to = self.header_span(Name::To).ok_or(Error::Missing("To"))?;
        self.from_tag = param_span(&self.head, self.from, "tag");
        self.to_tag = param_span(&self.head, self.to, "tag");
        if let Start::Request { method, .. } = &self.start
            && *method != self.cseq_method
        {
            return Err(Error::Malformed("CSeq method differs from the request's"));
        }
        Ok(())
    }

    pub fn get(&self, span: Span) -> &str {
        self.head
            .get(span.start as usize..span.end as usize)
            .unwrap_or("")
    }

    fn span_of(&self, s: &str) -> Span {
        let start = s.as_ptr() as usize - self.head.as_ptr() as usize;
        Span::new(start, start + s.len())
    }

    fn header_span(&self, name: Name) -> Option<Span> {
        self.headers
            .iter()
            .find(|h| h.name == name)
            .map(|h| h.value)
    }

    /// The first header of this name.
    pub fn header(&self, name: Name) -> Option<&str> {
        self.header_span(name).map(|s| self.get(s))
    }

    /// Every value of a header, in order, with comma-joined lists split.
    pub fn values(&self, name: Name) -> impl Iterator<Item = &str> {
        self.headers
            .iter()
            .filter(move |h| h.name == name)
            .flat_map(|h| split_list(self.get(h.value)))
    }

    /// Every header line's raw value, in order (for copying Via lines).
    pub fn raw_values(&self, name: Name) -> impl Iterator<Item = &str> {
        self.headers
            .iter()
            .filter(move |h| h.name == name)
            .map(|h| self.get(h.value))
    }

    pub fn method(&self) -> Option<&Method> {
        match &self.start {
            Start::Request { method, .. } => Some(method),
            Start::Response { .. } => None,
        }
    }

    pub fn code(&self) -> Option<u16> {
        match self.start {
            Start::Response { code } => Some(code),
            Start::Request { .. } => None,
        }
    }

    pub fn uri(&self) -> &str {
        match self.start {
            Start::Request { uri, .. } => self.get(uri),
            Start::Response { .. } => "",
        }
    }

    pub fn branch(&self) -> &str {
        self.get(self.via.branch)
    }

    pub fn sent_by(&self) -> &str {
        self.get(self.via.sent_by)
    }

    pub fn call_id(&self) -> &str {
        self.get(self.call_id)
    }

    pub fn from_tag(&self) -> Option<&str> {
        self.from_tag.map(|s| self.get(s))
    }

    pub fn to_tag(&self) -> Option<&str> {
        self.to_tag.map(|s| self.get(s))
    }

    pub fn from(&self) -> &str {
        self.get(self.from)
    }

    pub fn to(&self) -> &str {
        self.get(self.to)
    }

    pub fn max_forwards(&self) -> Result<u32, Error> {
        match self.header(Name::MaxForwards) {
            None => Ok(70),
            Some(v) => v
                .trim()
                .parse()
                .map_err(|_| Error::Malformed("Max-Forwards")),
        }
    }
}

fn is_token(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b)
}

fn parse_start(line: &str, offset: usize) -> Result<Start, Error> {
    if let Some(rest) = line.strip_prefix("SIP/2.0 ") {
        let code = rest.get(..3).ok_or(Error::Malformed("status line"))?;
        let code: u16 = code.parse().map_err(|_| Error::Malformed("status code"))?;
        if !(100..=699).contains(&code) {
            return Err(Error::Malformed("status code"));
        }
        return Ok(Start::Response { code });
    }
    let mut parts = line.splitn(3, ' ');
    let method = parts.next().unwrap_or("");
    let uri = parts.next().ok_or(Error::Malformed("request line"))?;
    let version = parts.next().ok_or(Error::Malformed("request line"))?;
    if version != "SIP/2.0" {
        return Err(Error::Malformed("SIP version"));
    }
    if method.is_empty() || !method.bytes().all(is_token) || uri.is_empty() {
        return Err(Error::Malformed("request line"));
    }
    let uri_start = offset + method.len() + 1;
    Ok(Start::Request {
        method: Method::parse(method),
        uri: Span::new(uri_start, uri_start + uri.len()),
    })
}

fn parse_via(head: &str, span: Span) -> Result<TopVia, Error> {
    let value = head
        .get(span.start as usize..span.end as usize)
        .unwrap_or("");
    let first = split_list(value).next().ok_or(Error::Missing("Via"))?;
    let sub = |s: &str| {
        let start = s.as_ptr() as usize - head.as_ptr() as usize;
        Span::new(start, start + s.len())
    };
    let (transport, rest) = sent_protocol(first).ok_or(Error::Malformed("Via protocol"))?;
    if !rest.starts_with(|c: char| c.is_ascii_whitespace()) {
        return Err(Error::Malformed("Via"));
    }
    let rest = rest.trim_start();
    let sent_by = rest.split(';').next().unwrap_or("").trim();
    if sent_by.is_empty() {
        return Err(Error::Malformed("Via sent-by"));
    }
    let branch = param_in(first, "branch").map(sub).unwrap_or_default();
    Ok(TopVia {
        transport: sub(transport),
        sent_by: sub(sent_by),
        branch,
    })
}

/// `SIP/2.0/<transport>` at the start of a Via value, with the optional
/// white space (folded lines included) RFC 3261 allows around each `/`
/// (`SLASH = SWS "/" SWS`): the transport and what follows it.
fn sent_protocol(value: &str) -> Option<(&str, &str)> {
    fn token(s: &str) -> (&str, &str) {
        let end = s
            .find(|c: char| !c.is_ascii() || !is_token(c as u8))
            .unwrap_or(s.len());
        s.split_at(end)
    }
    fn slash(s: &str) -> Option<&str> {
        s.trim_start().strip_prefix('/').map(str::trim_start)
    }
    let (name, rest) = token(value.trim_start());
    let rest = slash(rest)?;
    let (version, rest) = token(rest);
    let rest = slash(rest)?;
    let (transport, rest) = token(rest);
    (name.eq_ignore_ascii_case("SIP") && version == "2.0" && !transport.is_empty())
        .then_some((transport, rest))
}

/// Splits a comma-separated header list, respecting quotes and `<...>`.
pub fn split_list(value: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(value);
    std::iter::from_fn(move || {
        loop {
            let s = rest?;
            let (mut quoted, mut angle, mut escaped) = (false, false, false);
            let mut cut = None;
            for (i, c) in s.char_indices() {
                if escaped {
                    escaped = false;
                    continue;
                }
                match c {
                    '\\' if quoted => escaped = true,
                    '"' => quoted = !quoted,
                    '<' if !quoted => angle = true,
                    '>' if !quoted => angle = false,
                    ',' if !quoted && !angle => {
                        cut = Some(i);
                        break;
                    }
                    _ => {}
                }
            }
            let item = match cut {
                Some(i) => {
                    rest = Some(&s[i + 1..]);
                    &s[..i]
                }
                None => {
                    rest = None;
                    s
                }
            };
            let item = item.trim();
            if !item.is_empty() {
                return Some(item);
            }
        }
    })
}

/// The header parameters of a name-addr or addr-spec value: what follows
/// `>` (or, without angle brackets, the first `;`).
fn header_params(value: &str) -> &str {
    match value.rfind('>') {
        Some(i) => &value[i + 1..],
        None => value.find(';').map_or("", |i| &value[i..]),
    }
}

fn param_in<'a>(params: &'a str, name: &str) -> Option<&'a str> {
    params.split(';').skip(1).find_map(|p| {
        // A parameter without a value yields an empty slice *of the input*:
        // spans are computed from where the value lies in the head.
        let (k, v) = p.split_once('=').unwrap_or((p, &p[p.len()..]));
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

fn param_span(head: &str, span: Span, name: &str) -> Option<Span> {
    let value = head.get(span.start as usize..span.end as usize)?;
    let params = header_params(value);
    let v = param_in(params, name)?;
    let start = v.as_ptr() as usize - head.as_ptr() as usize;
    Some(Span::new(start, start + v.len()))
}

/// The URI inside a name-addr (`"x" <sip:...>;tag=`) or addr-spec value.
pub fn uri_of(value: &str) -> &str {
    let mut quoted = false;
    let mut escaped = false;
    let open = value.char_indices().find_map(|(i, c)| {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '<' if !quoted => return Some(i),
            _ => {}
        }
        None
    });
    if let Some(open) = open {
        let rest = &value[open + 1..];
        return rest.find('>').map_or(rest, |i| &rest[..i]);
    }
    // addr-spec without brackets: header parameters follow the first ';'.
    value.split(';').next().unwrap_or("").trim()
}

/// The user part of a `sip:`/`sips:` URI or the number of a `tel:` URI,
/// without URI parameters.
pub fn uri_user(uri: &str) -> Option<&str> {
    let uri = uri.trim();
    // Compared as bytes: the input may hold multi-byte characters anywhere.
    let lower = |p: &str| {
        uri.as_bytes()
            .get(..p.len())
            .is_some_and(|b| b.eq_ignore_ascii_case(p.as_bytes()))
    };
    let rest = if lower("sip:") {
        &uri[4..]
    } else if lower("sips:") {
        &uri[5..]
    } else if lower("tel:") {
        let number = &uri[4..];
        return Some(number.split(';').next().unwrap_or(number));
    } else {
        return None;
    };
    let at = rest.find('@')?;
    let user = &rest[..at];
    // `user;param` and `user:password` forms.
    Some(user.split([';', ':']).next().unwrap_or(user))
}

/// `host[:port]` of a SIP URI (for sending to a Route or Contact).
pub fn uri_hostport(uri: &str) -> Option<&str> {
    let uri = uri.trim();
    let rest = uri.split_once(':')?.1;
    let rest = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    let end = rest.find([';', '?', '>']).unwrap_or(rest.len());
    Some(&rest[..end])
}

/// Standard reason phrases: we never copy a peer's phrase across legs.
pub fn reason_phrase(code: u16) -> &'static str {
    match code {
        100 => "Trying",
        180 => "Ringing",
        181 => "Call Is Being Forwarded",
        182 => "Queued",
        183 => "Session Progress",
        200 => "OK",
        202 => "Accepted",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        410 => "Gone",
        413 => "Request Entity Too Large",
        415 => "Unsupported Media Type",
        416 => "Unsupported URI Scheme",
        420 => "Bad Extension",
        480 => "Temporarily Unavailable",
        481 => "Call/Transaction Does Not Exist",
        482 => "Loop Detected",
        483 => "Too Many Hops",
        484 => "Address Incomplete",
        486 => "Busy Here",
        487 => "Request Terminated",
        488 => "Not Acceptable Here",
        491 => "Request Pending",
        500 => "Server Internal Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Server Time-out",
        600 => "Busy Everywhere",
        603 => "Decline",
        604 => "Does Not Exist Anywhere",
        606 => "Not Acceptable",
        c if c < 200 => "Session Progress",
        c if c < 300 => "OK",
        c if c < 400 => "Redirection",
        c if c < 500 => "Client Error",
        c if c < 600 => "Server Error",
        _ => "Global Failure",
    }
}

/// Builds an outgoing message. Content-Length is always written, last.
pub struct Builder {
    buf: String,
}

impl Builder {
    pub fn request(method: &Method, uri: &str) -> Builder {
        let mut buf = String::with_capacity(768);
        buf.push_str(method.as_str());
        buf.push(' ');
        buf.push_str(uri);
        buf.push_str(" SIP/2.0\r\n");
        Builder { buf }
    }

    pub fn response(code: u16) -> Builder {
        let mut buf = String::with_capacity(768);
        let _ = write!(buf, "SIP/2.0 {code} {}\r\n", reason_phrase(code));
        Builder { buf }
    }

    pub fn header(&mut self, name: &str, value: &str) -> &mut Builder {
        self.buf.push_str(name);
        self.buf.push_str(": ");
        self.buf.push_str(value);
        self.buf.push_str("\r\n");
        self
    }

    /// A header whose value is written in pieces, to avoid a format! per
    /// header on the hot path.
    pub fn header_parts(&mut self, name: &str, parts: &[&str]) -> &mut Builder {
        self.buf.push_str(name);
        self.buf.push_str(": ");
        for p in parts {
            self.buf.push_str(p);
        }
        self.buf.push_str("\r\n");
        self
    }

    pub fn cseq(&mut self, num: u32, method: &Method) -> &mut Builder {
        let _ = write!(self.buf, "CSeq: {num} {}\r\n", method.as_str());
        self
    }

    pub fn max_forwards(&mut self, n: u32) -> &mut Builder {
        let _ = write!(self.buf, "Max-Forwards: {n}\r\n");
        self
    }

    pub fn finish(self, body: &[u8]) -> Vec<u8> {
        let mut buf = self.buf;
        let _ = write!(buf, "Content-Length: {}\r\n\r\n", body.len());
        let mut out = buf.into_bytes();
        out.extend_from_slice(body);
        out
    }
}

/// A body fit to cross to the other leg, with its media type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Body {
    pub content_type: &'static str,
    pub bytes: Vec<u8>,
}

impl Builder {
    /// Content-Type (when there is a body), Content-Length and the body.
    pub fn finish_with(mut self, body: Option<&Body>) -> Vec<u8> {
        match body {
            Some(body) => {
                self.header("Content-Type", body.content_type);
                self.finish(&body.bytes)
            }
            None => self.finish(b""),
        }
    }
}

/// The part of `msg`'s body that may reach the other leg: DTMF
/// (`application/dtmf-relay`, `application/dtmf`) and nothing else.
///
/// Media descriptions never cross: every call is anchored, and the SDP on
/// each leg is Maskline's own (see [`sdp_of`] for reading a party's). An
/// ISUP part (SIP-I/SIP-T trunks) carries the calling and connected
/// numbers, and a body we cannot read (compressed, or of an unknown type)
/// could carry anything.
pub fn crossing_body(msg: &Message) -> Option<Body> {
    let content_type = readable_type(msg)?;
    match media_type(content_type).as_str() {
        "application/dtmf-relay" => Some(Body {
            content_type: "application/dtmf-relay",
            bytes: msg.body.clone(),
        }),
        "application/dtmf" => Some(Body {
            content_type: "application/dtmf",
            bytes: msg.body.clone(),
        }),
        _ => None,
    }
}

/// The session description in `msg`: an `application/sdp` body, or the SDP
/// part of a multipart one (SIP-I trunks send SDP beside ISUP).
pub fn sdp_of(msg: &Message) -> Option<&[u8]> {
    let content_type = readable_type(msg)?;
    match media_type(content_type).as_str() {
        "application/sdp" => Some(&msg.body),
        m if m.starts_with("multipart/") => {
            let boundary = param_in(content_type, "boundary")?.trim_matches('"');
            sdp_part(&msg.body, boundary)
        }
        _ => None,
    }
}

/// The Content-Type of a body we can read: present and not compressed.
fn readable_type(msg: &Message) -> Option<&str> {
    if msg.body.is_empty() {
        return None;
    }
    if msg
        .header(Name::ContentEncoding)
        .is_some_and(|e| !e.trim().eq_ignore_ascii_case("identity"))
    {
        return None;
    }
    msg.header(Name::ContentType)
}

fn media_type(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// The body of the first `application/sdp` part of a multipart body.
fn sdp_part<'a>(body: &'a [u8], boundary: &str) -> Option<&'a [u8]> {
    if boundary.is_empty() {
        return None;
    }
    let delimiter = format!("--{boundary}");
    let text = body;
    let mut parts = Vec::new();
    let mut start = None;
    let mut i = 0;
    while let Some(at) = find(&text[i..], delimiter.as_bytes()).map(|p| p + i) {
        if let Some(s) = start {
            parts.push(&text[s..at]);
        }
        let after = at + delimiter.len();
        if text[after..].starts_with(b"--") {
            break;
        }
        start = Some(after);
        i = after;
    }
    parts.into_iter().find_map(|part| {
        let (head_end, body_start) = find_head_end(part)?;
        let head = std::str::from_utf8(&part[..head_end]).ok()?;
        let is_sdp = head.lines().any(|line| {
            line.split_once(':').is_some_and(|(n, v)| {
                n.trim().eq_ignore_ascii_case("Content-Type") && media_type(v) == "application/sdp"
            })
        });
        let body = &part[body_start.min(part.len())..];
        // The CRLF before the next delimiter belongs to the delimiter.
        let body = body.strip_suffix(b"\r\n").unwrap_or(body);
        is_sdp.then_some(body)
    })
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || hay.len() < needle.len() {
        return None;
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The start of a response to `req`: status line, Via lines, From, To (with
/// `to_tag` added when the request had none), Call-ID and CSeq.
pub fn response_to(req: &Message, code: u16, to_tag: Option<&str>) -> Builder {
    let mut b = Builder::response(code);
    for via in req.raw_values(Name::Via) {
        b.header("Via", via);
    }
    b.header("From", req.from());
    match (req.to_tag, to_tag) {
        (None, Some(tag)) => b.header_parts("To", &[req.to(), ";tag=", tag]),
        _ => b.header("To", req.to()),
    };
    b.header("Call-ID", req.call_id());
    b.cseq(req.cseq, &req.cseq_method);
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    const INVITE: &str = "INVITE sip:+8657100000001@127.0.0.1:5060;user=phone SIP/2.0\r\n\
Via: SIP/2.0/UDP 10.0.0.1:5070;branch=z9hG4bK-abc;rport\r\n\
v: SIP/2.0/TCP 10.0.0.2;branch=z9hG4bK-2, SIP/2.0/UDP 10.0.0.3;branch=z9hG4bK-3\r\n\
Max-Forwards: 69\r\n\
From: \"Alice, A\" <sip:+8613800000001@10.0.0.1>;tag=from1\r\n\
To: <sip:+8657100000001@127.0.0.1>\r\n\
Call-ID: abc@10.0.0.1\r\n\
CSeq: 7 INVITE\r\n\
Contact: <sip:alice@10.0.0.1:5070>\r\n\
Record-Route: <sip:p1;lr>, <sip:p2;lr>\r\n\
Record-Route: <sip:p3;lr>\r\n\
Subject: a\r\n folded\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 4\r\n\
\r\n\
v=0\nEXTRA";

    #[test]
    fn parses_an_invite() {
        let m = Message::parse(INVITE.as_bytes()).unwrap();
        assert_eq!(m.method(), Some(&Method::Invite));
        assert_eq!(m.uri(), "sip:+8657100000001@127.0.0.1:5060;user=phone");
        assert_eq!(m.branch(), "z9hG4bK-abc");
        assert_eq!(m.sent_by(), "10.0.0.1:5070");
        assert_eq!(m.get(m.via.transport), "UDP");
        assert_eq!(m.call_id(), "abc@10.0.0.1");
        assert_eq!((m.cseq, &m.cseq_method), (7, &Method::Invite));
        assert_eq!(m.from_tag(), Some("from1"));
        assert_eq!(m.to_tag(), None);
        assert_eq!(m.max_forwards().unwrap(), 69);
        assert_eq!(m.body, b"v=0\n");
        assert_eq!(m.raw_values(Name::Via).count(), 2);
        assert_eq!(m.values(Name::Via).count(), 3);
        let rr: Vec<_> = m.values(Name::RecordRoute).collect();
        assert_eq!(rr, ["<sip:p1;lr>", "<sip:p2;lr>", "<sip:p3;lr>"]);
        assert_eq!(uri_user(uri_of(m.from())), Some("+8613800000001"));
        assert_eq!(uri_user(m.uri()), Some("+8657100000001"));
    }

    #[test]
    fn uri_helpers() {
        assert_eq!(
            uri_user("tel:+8613800000001;phone-context=x"),
            Some("+8613800000001")
        );
        assert_eq!(uri_user("sip:13800000001;npdi@h"), Some("13800000001"));
        assert_eq!(uri_user("sip:h.example"), None);
        assert_eq!(uri_user("http://x@y"), None);
        assert_eq!(uri_of("\"A <b>\" <sip:1@h>;tag=1"), "sip:1@h");
        assert_eq!(uri_of("sip:1@h;tag=1"), "sip:1@h");
        assert_eq!(
            uri_hostport("sip:u@10.0.0.1:5080;transport=tcp"),
            Some("10.0.0.1:5080")
        );
        assert_eq!(uri_hostport("sip:10.0.0.1;lr"), Some("10.0.0.1"));
    }

    #[test]
    fn rejects_garbage_without_panicking() {
        for bad in [
            "",
            "\r\n\r\n",
            "INVITE\r\n\r\n",
            "INVITE sip:x SIP/3.0\r\nVia: SIP/2.0/UDP h;branch=z\r\n\r\n",
            "SIP/2.0 99 x\r\n\r\n",
            "SIP/2.0 200 OK\r\nFrom: a\r\n\r\n",
            "OPTIONS sip:x SIP/2.0\r\nVia: SIP/2.0/UDP h\r\nFrom: a\r\nTo: b\r\nCall-ID: c\r\nCSeq: x OPTIONS\r\n\r\n",
            "OPTIONS sip:x SIP/2.0\r\nVia: SIP/2.0/UDP h\r\nFrom: a\r\nTo: b\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n\r\n",
            "OPTIONS sip:x SIP/2.0\r\nVia: SIP/2.0/UDP h\r\nFrom: a\r\nTo: b\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\nContent-Length: 9\r\n\r\nab",
            "BYE sip:x SIP/2.0\r\n bad\r\n\r\n",
        ] {
            assert!(Message::parse(bad.as_bytes()).is_err(), "{bad:?}");
        }
        // Arbitrary bytes, including non-UTF-8, never panic.
        let mut seed = 1u64;
        for len in 0..300 {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
                    (seed >> 33) as u8
                })
                .collect();
            let _ = Message::parse(&bytes);
            let _ = frame(&bytes);
        }
        // Every truncation of a valid message is handled.
        for cut in 0..INVITE.len() {
            let _ = Message::parse(&INVITE.as_bytes()[..cut]);
            let _ = frame(&INVITE.as_bytes()[..cut]);
        }
    }

    #[test]
    fn multibyte_and_valueless_parameters_do_not_panic() {
        // A character of several bytes where a scheme would end.
        assert_eq!(uri_user("abcé"), None);
        assert_eq!(uri_user("sipé:x@h"), None);
        assert_eq!(uri_user("té"), None);
        let bad = "INVITE abc\u{e9} SIP/2.0\r\nVia: SIP/2.0/UDP h;branch\r\nFrom: <sip:a@h>;tag\r\nTo: <sip:b@h>;tag\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n\r\n";
        let m = Message::parse(bad.as_bytes()).unwrap();
        assert_eq!(m.branch(), "");
        assert_eq!(m.from_tag(), Some(""));
        assert_eq!(uri_user(m.uri()), None);
    }

    fn with_body(content_type: &str, body: &str) -> Message {
        let text = format!(
            "INVITE sip:x@h SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@h>;tag=1\r\nTo: <sip:b@h>\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        Message::parse(text.as_bytes()).unwrap()
    }

    const SDP: &str = "v=0\r\no=user1 53655765 2353687637 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";

    #[test]
    fn sdp_is_read_from_a_body_or_a_multipart_part_and_never_crosses() {
        let m = with_body("application/sdp", SDP);
        assert_eq!(sdp_of(&m), Some(SDP.as_bytes()));
        assert_eq!(crossing_body(&m), None);
        let multipart = format!(
            "--b1\r\nContent-Type: application/sdp\r\n\r\n{SDP}\r\n--b1\r\nContent-Type: application/isup;version=itu-t92+\r\nContent-Disposition: signal;handling=optional\r\n\r\n\u{1}13800000001\r\n--b1--\r\n"
        );
        let m = with_body("multipart/mixed;boundary=b1", &multipart);
        assert_eq!(sdp_of(&m), Some(SDP.as_bytes()));
        assert_eq!(crossing_body(&m), None);
    }

    #[test]
    fn only_dtmf_crosses_and_isup_never_does() {
        assert_eq!(
            crossing_body(&with_body("application/isup", "x13800000001")),
            None
        );
        assert_eq!(sdp_of(&with_body("application/isup", "x13800000001")), None);
        assert_eq!(crossing_body(&with_body("text/plain", "13800000001")), None);
        let dtmf = crossing_body(&with_body(
            "application/dtmf-relay",
            "Signal=5\r\nDuration=160\r\n",
        ))
        .unwrap();
        assert_eq!(dtmf.bytes, b"Signal=5\r\nDuration=160\r\n");
    }

    #[test]
    fn frames_a_stream() {
        let one = "OPTIONS sip:x SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\nFrom: <sip:a@h>;tag=1\r\nTo: <sip:b@h>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\nContent-Length: 2\r\n\r\nhi";
        let stream = format!("\r\n\r\n{one}{one}");
        let (skip, len) = frame(stream.as_bytes()).unwrap().unwrap();
        assert_eq!(skip, 4);
        assert_eq!(len, one.len());
        let m = Message::parse(&stream.as_bytes()[skip..skip + len]).unwrap();
        assert_eq!(m.body, b"hi");
        assert_eq!(frame(&one.as_bytes()[..one.len() - 1]).unwrap(), None);
        let no_len = "OPTIONS sip:x SIP/2.0\r\nVia: SIP/2.0/TCP h\r\n\r\n";
        assert!(frame(no_len.as_bytes()).is_err());
    }

    #[test]
    fn builds_a_response_that_parses_back() {
        let req = Message::parse(INVITE.as_bytes()).unwrap();
        let mut b = response_to(&req, 180, Some("ours"));
        b.header("Contact", "<sip:x@127.0.0.1>");
        let bytes = b.finish(b"sdp");
        let r = Message::parse(&bytes).unwrap();
        assert_eq!(r.code(), Some(180));
        assert_eq!(r.to_tag(), Some("ours"));
        assert_eq!(r.from_tag(), Some("from1"));
        assert_eq!(r.branch(), "z9hG4bK-abc");
        assert_eq!(r.values(Name::Via).count(), 3);
        assert_eq!(r.body, b"sdp");
        assert!(String::from_utf8_lossy(&bytes).starts_with("SIP/2.0 180 Ringing\r\n"));
    }
}
