//! RFC 4475's torture messages (the `.dat` files of its appendix, under
//! `tests/rfc4475/`; also the fuzz targets' seeds): the parser never
//! panics on any of them, accepts the ones §3.1.1 calls valid, and refuses
//! the ones whose fault would mislead the B2BUA.

use maskline_sip::message::{Message, frame};

fn messages() -> Vec<(String, Vec<u8>)> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/rfc4475");
    let mut all: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "dat"))
        .map(|p| {
            let name = p.file_stem().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&p).unwrap())
        })
        .collect();
    all.sort();
    assert!(
        all.len() >= 49,
        "RFC 4475 has 49 messages; found {}",
        all.len()
    );
    all
}

#[test]
fn no_torture_message_panics_as_a_datagram_or_a_stream() {
    for (name, bytes) in messages() {
        let _ = Message::parse(&bytes);
        // As a stream: framed, then parsed, as TCP input is.
        let mut rest = &bytes[..];
        while let Ok(Some((skip, len))) = frame(rest) {
            assert!(
                len > 0 && skip + len <= rest.len(),
                "{name}: a frame outside the input"
            );
            let _ = Message::parse(&rest[skip..skip + len]);
            rest = &rest[skip + len..];
        }
    }
}

#[test]
fn the_valid_messages_of_section_3_1_1_parse() {
    let valid = [
        "wsinv",
        "intmeth",
        "esc01",
        "escnull",
        "esc02",
        "lwsdisp",
        "longreq",
        "dblreq",
        "semiuri",
        "transports",
        "mpart01",
        "unreason",
        "noreason",
    ];
    let all = messages();
    for name in valid {
        let (_, bytes) = all.iter().find(|(n, _)| n == name).unwrap();
        let parsed = Message::parse(bytes);
        assert!(parsed.is_ok(), "{name}: {:?}", parsed.err());
    }
}

#[test]
fn messages_whose_framing_lies_are_refused() {
    // §3.1.2.1 Content-Length larger than the datagram, §3.1.2.2 negative
    // Content-Length, §3.1.2.3 CSeq and §3.1.2.4 two values too large for
    // their fields: a B2BUA that guessed would relay the wrong thing.
    for name in ["clerr", "ncl", "scalar02", "scalarlg"] {
        let all = messages();
        let (_, bytes) = all.iter().find(|(n, _)| n == name).unwrap();
        assert!(Message::parse(bytes).is_err(), "{name} was accepted");
    }
}
