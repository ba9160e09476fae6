//! Property tests of the SIP message layer: whatever bytes arrive, parsing
//! and framing never panic; what we build parses back to what we meant.

use maskline_sip::message::{Builder, Message, Method, Name, frame, response_to, uri_of, uri_user};
use proptest::prelude::*;

const INVITE: &str = "INVITE sip:+8657100000001@127.0.0.1 SIP/2.0\r\n\
Via: SIP/2.0/UDP 10.0.0.1:5070;branch=z9hG4bK-abc;rport\r\n\
Max-Forwards: 70\r\n\
From: <sip:+8613800000001@10.0.0.1>;tag=a1\r\n\
To: <sip:+8657100000001@127.0.0.1>\r\n\
Call-ID: c1@10.0.0.1\r\n\
CSeq: 1 INVITE\r\n\
Contact: <sip:a@10.0.0.1:5070>\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 5\r\n\
\r\n\
v=0\r\n";

fn token() -> impl Strategy<Value = String> {
    "[A-Za-z0-9.!%*_+`'~-]{1,24}"
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2_048)) {
        let _ = Message::parse(&bytes);
        let _ = frame(&bytes);
    }

    /// A valid message with bytes flipped, cut or inserted anywhere.
    #[test]
    fn mutated_messages_never_panic(
        edits in proptest::collection::vec((0usize..INVITE.len(), any::<u8>(), 0u8..3), 1..8)
    ) {
        let mut bytes = INVITE.as_bytes().to_vec();
        for (at, byte, kind) in edits {
            let at = at.min(bytes.len().saturating_sub(1));
            match kind {
                0 if !bytes.is_empty() => bytes[at] = byte,
                1 => bytes.insert(at, byte),
                _ => bytes.truncate(at),
            }
        }
        if let Ok(m) = Message::parse(&bytes) {
            // Whatever parsed is self-consistent enough to answer.
            let reply = response_to(&m, 400, Some("t")).finish(b"");
            prop_assert!(Message::parse(&reply).is_ok());
            let _ = uri_user(m.uri());
            let _ = uri_user(uri_of(m.from()));
            let _ = m.max_forwards();
            let _ = m.values(Name::Via).count();
        }
        let _ = frame(&bytes);
    }

    /// Any text (multi-byte characters included) where URIs and header
    /// values go: parsing and every accessor stay panic-free.
    #[test]
    fn unicode_in_uris_and_values_never_panics(
        uri in "\\PC{0,12}",
        from in "\\PC{0,24}",
        via in "\\PC{0,24}",
    ) {
        let text = format!(
            "INVITE {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {via}\r\nFrom: {from}\r\nTo: {from}\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\nP-Asserted-Identity: {from}\r\n\r\n"
        );
        if let Ok(m) = Message::parse(text.as_bytes()) {
            let _ = uri_user(m.uri());
            let _ = uri_user(uri_of(m.from()));
            for v in m.values(Name::PAssertedIdentity) {
                let _ = uri_user(uri_of(v));
            }
            let _ = (m.branch(), m.sent_by(), m.from_tag(), m.to_tag());
            let _ = maskline_sip::message::uri_hostport(m.uri());
        }
        let _ = uri_user(&uri);
        let _ = uri_user(&from);
        let _ = uri_of(&from);
    }

    /// Requests we build parse back with the same identifiers and body.
    #[test]
    fn built_requests_round_trip(
        user in "\\+?[0-9]{5,15}",
        tag in token(),
        call_id in token(),
        branch in "[A-Za-z0-9]{1,20}",
        cseq in 1u32..1_000_000,
        body in proptest::collection::vec(any::<u8>(), 0..512),
        method in prop_oneof![
            Just(Method::Invite), Just(Method::Bye), Just(Method::Update),
            Just(Method::Info), Just(Method::Options),
        ],
    ) {
        let uri = format!("sip:{user}@127.0.0.1:5060;user=phone");
        let mut b = Builder::request(&method, &uri);
        let branch = format!("z9hG4bK{branch}");
        b.header_parts("Via", &["SIP/2.0/UDP 127.0.0.1:5060;branch=", &branch, ";rport"])
            .max_forwards(70)
            .header_parts("From", &["<sip:x@h>;tag=", &tag])
            .header("To", "<sip:y@h>")
            .header("Call-ID", &call_id)
            .cseq(cseq, &method);
        if !body.is_empty() {
            b.header("Content-Type", "application/octet-stream");
        }
        let bytes = b.finish(&body);
        let m = Message::parse(&bytes).unwrap();
        prop_assert_eq!(m.method(), Some(&method));
        prop_assert_eq!(uri_user(m.uri()), Some(user.as_str()));
        prop_assert_eq!(m.branch(), branch.as_str());
        prop_assert_eq!(m.from_tag(), Some(tag.as_str()));
        prop_assert_eq!(m.call_id(), call_id.as_str());
        prop_assert_eq!(m.cseq, cseq);
        prop_assert_eq!(&m.body, &body);
        // The same bytes framed from a stream, after a keep-alive.
        let mut stream = b"\r\n\r\n".to_vec();
        stream.extend_from_slice(&bytes);
        stream.extend_from_slice(b"INVITE partial");
        let (skip, len) = frame(&stream).unwrap().unwrap();
        prop_assert_eq!(&stream[skip..skip + len], &bytes[..]);
    }
}
