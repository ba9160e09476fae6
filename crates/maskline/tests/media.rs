//! The media contract, end to end: real `sipp` peers signal, and RTP runs
//! through the real `maskline` binary's relay. Where a test must see what
//! a party received, the party's media is a UDP socket of the test's own,
//! named in that party's SDP; elsewhere sipp plays sip-tester's pcaps
//! itself. Every assertion is on packets that actually arrived.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use common::sipp::{self, Sipp, Transport};
use common::voice::Rig;
use common::*;
use maskline_media::dtmf::{Digit, DtmfEncoder, TelephoneEvent};
use maskline_media::rtp::{HEADER_LEN, RtpHeader, RtpPacket};
use maskline_media::{Codec, g711};
use serde_json::{Value, json};

const PEER_SECS: u64 = 30;

fn a() -> String {
    party(1)
}

fn b() -> String {
    party(2)
}

fn axb() -> Value {
    json!({"mode": "axb", "a": a(), "b": b(), "expires_in": 600})
}

/// A party's media: a socket of the test's own on loopback.
struct Party {
    socket: UdpSocket,
}

impl Party {
    fn new() -> Party {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        Party { socket }
    }

    fn port(&self) -> String {
        self.socket.local_addr().unwrap().port().to_string()
    }

    fn send(&self, to: SocketAddr, header: RtpHeader, payload: &[u8]) {
        let mut packet = vec![0u8; HEADER_LEN + payload.len()];
        header.write(&mut packet).unwrap();
        packet[HEADER_LEN..].copy_from_slice(payload);
        self.socket.send_to(&packet, to).unwrap();
    }

    /// What arrives from the first packet until a second passes without
    /// one (or `secs` in all).
    fn receive_stream(&self, secs: u64) -> Vec<(SocketAddr, Vec<u8>)> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        let mut got = Vec::new();
        let mut last = None;
        let mut buf = [0u8; 2048];
        while Instant::now() < deadline
            && last.is_none_or(|at: Instant| at.elapsed() < Duration::from_secs(1))
        {
            if let Ok((len, from)) = self.socket.recv_from(&mut buf) {
                got.push((from, buf[..len].to_vec()));
                last = Some(Instant::now());
            }
        }
        got
    }

    /// What arrives until `n` packets did or `secs` pass without `n`.
    fn receive(&self, n: usize, secs: u64) -> Vec<(SocketAddr, Vec<u8>)> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        let mut got = Vec::new();
        let mut buf = [0u8; 2048];
        while got.len() < n && Instant::now() < deadline {
            if let Ok((len, from)) = self.socket.recv_from(&mut buf) {
                got.push((from, buf[..len].to_vec()));
            }
        }
        got
    }
}

/// Maskline's RTP port on a leg, as the scenario read it from the SDP it
/// got and wrote it down.
async fn maskline_port(peer: &Sipp) -> SocketAddr {
    let port = eventually(PEER_SECS, "Maskline's RTP port in the SDP", || async {
        peer.file("maskline_rtp_port")
    })
    .await;
    SocketAddr::new([127, 0, 0, 1].into(), port.trim().parse().unwrap())
}

/// 20 ms of a 1 kHz tone at half scale, in `codec`.
fn tone(codec: Codec, frame: u32) -> Vec<u8> {
    (0..160u32)
        .map(|i| {
            let t = f64::from(frame * 160 + i) / 8000.0;
            let sample = (16_000.0 * (2.0 * std::f64::consts::PI * 1000.0 * t).sin()) as i16;
            codec.encode(sample)
        })
        .collect()
}

fn rtp(packet: &[u8]) -> RtpPacket<'_> {
    RtpPacket::parse(packet).unwrap()
}

/// The callee: a sipp UAS answering with `codec` and telephone-event 96,
/// its media at `callee`'s socket.
fn callee_uas(callee: &Party, codec: Codec) -> Sipp {
    let pt = codec.payload_type().to_string();
    Sipp::uas(
        "uas_media.xml",
        Transport::Udp,
        &[
            "-s",
            &b(),
            "-key",
            "rtp_port",
            &callee.port(),
            "-key",
            "codec_pt",
            &pt,
            "-key",
            "codec_name",
            codec.encoding_name(),
        ],
    )
}

/// A call answered between two parties of the test's own: Maskline
/// between a UAC (the caller, hanging up after `hang_up_ms`) and a UAS (the
/// callee, answering PCMU), on a binding made from `spec`.
struct Call {
    rig: Rig,
    binding: Value,
    uac: Sipp,
    uas: Sipp,
    /// Maskline's RTP address on the caller's leg, and on the callee's.
    a_side: SocketAddr,
    b_side: SocketAddr,
}

impl Call {
    async fn place(caller: &Party, callee: &Party, spec: Value, hang_up_ms: &str) -> Call {
        let uas = callee_uas(callee, Codec::Pcmu);
        let rig = Rig::start(&uas, &[]).await;
        let binding = rig.bind(spec).await;
        let x = binding["x"].as_str().unwrap().to_owned();
        let uac = rig.uac(
            "uac_media.xml",
            &a(),
            &x,
            Transport::Udp,
            &["-key", "rtp_port", &caller.port(), "-d", hang_up_ms],
        );
        let a_side = maskline_port(&uac).await;
        let b_side = maskline_port(&uas).await;
        Call {
            rig,
            binding,
            uac,
            uas,
            a_side,
            b_side,
        }
    }
}

async fn both_succeed(uac: &mut Sipp, uas: &mut Sipp) {
    let (a, b) = (
        uac.wait(Duration::from_secs(PEER_SECS)).await,
        uas.wait(Duration::from_secs(PEER_SECS)).await,
    );
    assert!(
        a.success() && b.success(),
        "caller {a}, callee {b}\n{}\n{}",
        uac.report(),
        uas.report()
    );
}

/// Sends `frames` of tone from `from` to `to` and checks they reach
/// `listener` unchanged in payload, from Maskline's `via`, as one stream of
/// its own.
fn audio_crosses(from: &Party, to: SocketAddr, listener: &Party, via: SocketAddr, ssrc: u32) {
    let frames = 50u32;
    for i in 0..frames {
        let header = RtpHeader {
            marker: i == 0,
            payload_type: 0,
            sequence: 1000 + i as u16,
            timestamp: 5000 + i * 160,
            ssrc,
        };
        from.send(to, header, &tone(Codec::Pcmu, i));
    }
    let got = listener.receive(frames as usize, 10);
    assert_eq!(got.len(), frames as usize, "every packet arrives");
    let first = rtp(&got[0].1).header;
    for (i, (source, packet)) in got.iter().enumerate() {
        assert_eq!(*source, via, "the party hears Maskline's port only");
        let p = rtp(packet);
        assert_eq!(p.header.payload_type, 0);
        assert_ne!(p.header.ssrc, ssrc, "the other party's SSRC never crosses");
        assert_eq!(p.header.ssrc, first.ssrc);
        assert_eq!(p.header.sequence, first.sequence.wrapping_add(i as u16));
        assert_eq!(
            p.header.timestamp.wrapping_sub(first.timestamp),
            i as u32 * 160
        );
        assert_eq!(p.payload, tone(Codec::Pcmu, i as u32), "audio unchanged");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn both_parties_hear_each_other_through_maskline_and_digits_cross_as_events() {
    let (caller, callee) = (Party::new(), Party::new());
    let Call {
        rig,
        binding,
        mut uac,
        mut uas,
        a_side,
        b_side,
    } = Call::place(&caller, &callee, axb(), "3000").await;
    assert_ne!(a_side, b_side);

    audio_crosses(&caller, a_side, &callee, b_side, 0x1111_1111);
    audio_crosses(&callee, b_side, &caller, a_side, 0x2222_2222);

    // The caller keys 5 as RFC 4733 events (payload type 101); the callee
    // gets them under its own payload type, 96.
    let five = Digit::from_char('5').unwrap();
    let packets: Vec<_> = DtmfEncoder::new(five, Duration::from_millis(100), 10)
        .unwrap()
        .collect();
    for (i, p) in packets.iter().enumerate() {
        let header = RtpHeader {
            marker: p.marker,
            payload_type: 101,
            sequence: 2000 + i as u16,
            timestamp: 90_000,
            ssrc: 0x1111_1111,
        };
        caller.send(a_side, header, &p.event.to_bytes());
    }
    let got = callee.receive(packets.len(), 10);
    assert_eq!(got.len(), packets.len());
    for (_, packet) in &got {
        let p = rtp(packet);
        assert_eq!(p.header.payload_type, 96);
        assert_eq!(
            TelephoneEvent::parse(p.payload).unwrap().event,
            five.event()
        );
    }
    assert!(
        got.iter()
            .any(|(_, p)| TelephoneEvent::parse(rtp(p).payload).unwrap().end),
        "the end of the digit crosses"
    );

    both_succeed(&mut uac, &mut uas).await;
    let cdrs = rig.cdrs(&binding, 1).await;
    assert_eq!(cdrs[0]["release_reason"], "normal", "{:#}", cdrs[0]);
}

#[tokio::test(flavor = "multi_thread")]
async fn sipps_own_pcap_audio_and_dtmf_reach_the_callee() {
    let callee = Party::new();
    let mut uas = callee_uas(&callee, Codec::Pcma);
    let rig = Rig::start(&uas, &[]).await;
    let binding = rig.bind(axb()).await;
    let x = binding["x"].as_str().unwrap().to_owned();
    let media_port = sipp::free_sip_port().to_string();
    let mut uac = rig.uac(
        "uac_pcap.xml",
        &a(),
        &x,
        Transport::Udp,
        &["-mi", "127.0.0.1", "-mp", &media_port],
    );
    let b_side = maskline_port(&uas).await;
    // g711a.pcap is 236 packets of 30 ms of PCMA; dtmf_2833_1.pcap 10 events.
    let got = tokio::task::spawn_blocking(move || callee.receive_stream(PEER_SECS))
        .await
        .unwrap();
    let audio: Vec<RtpPacket<'_>> = got
        .iter()
        .filter(|(from, _)| *from == b_side)
        .map(|(_, p)| rtp(p))
        .filter(|p| p.header.payload_type == 8)
        .collect();
    let events: Vec<TelephoneEvent> = got
        .iter()
        .map(|(_, p)| rtp(p))
        .filter(|p| p.header.payload_type == 96)
        .map(|p| TelephoneEvent::parse(p.payload).unwrap())
        .collect();
    assert!(
        audio.len() >= 230,
        "the pcap's 236 audio packets arrive ({} did, {} events)",
        audio.len(),
        events.len()
    );
    // Speech, not silence: decoded, the audio has real energy.
    let energy: f64 = audio
        .iter()
        .flat_map(|p| p.payload.iter())
        .map(|&c| f64::from(g711::alaw_decode(c)).powi(2))
        .sum::<f64>()
        / (audio.len() * 160) as f64;
    assert!(energy.sqrt() > 300.0, "RMS {}", energy.sqrt());
    assert!(
        events.iter().any(|e| e.event == 1 && e.end),
        "the digit 1 arrives as events, ended: {events:?}"
    );
    both_succeed(&mut uac, &mut uas).await;
    let invite = &uas.received_requests("INVITE")[0];
    let sdp = sipp::body(invite);
    assert!(
        !sdp.contains(&format!(" {media_port} ")),
        "the caller's RTP port crossed:\n{invite}"
    );
    let cdrs = rig.cdrs(&binding, 1).await;
    assert_eq!(cdrs[0]["release_reason"], "normal", "{:#}", cdrs[0]);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_answered_call_without_rtp_ends_with_media_timeout() {
    let mut uas = Sipp::uas("uas_answer_wait_bye.xml", Transport::Udp, &["-s", &b()]);
    let rig = Rig::start(&uas, &[("MASKLINE_RTP_TIMEOUT_SECS", "1")]).await;
    let binding = rig.bind(axb()).await;
    let x = binding["x"].as_str().unwrap().to_owned();
    let mut uac = rig.uac("uac_wait_bye.xml", &a(), &x, Transport::Udp, &[]);
    both_succeed(&mut uac, &mut uas).await;
    let cdrs = rig.cdrs(&binding, 1).await;
    assert_eq!(cdrs[0]["release_reason"], "media_timeout", "{:#}", cdrs[0]);
    assert_eq!(cdrs[0]["release_cause"], 102, "{:#}", cdrs[0]);
    assert_eq!(cdrs[0]["released_by"], "system", "{:#}", cdrs[0]);
    assert!(cdrs[0]["answered_at"].is_string(), "{:#}", cdrs[0]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_rtp_port_range_refuses_the_next_call_with_503() {
    let caller = Party::new();
    let callee = Party::new();
    let mut uas = callee_uas(&callee, Codec::Pcmu);
    // Room for one call: two pairs of ports, somewhere no other test is.
    let base = 30_000 + 4 * (std::process::id() % 2_000) as u16;
    let range = format!("{base}-{}", base + 3);
    let rig = Rig::start(&uas, &[("MASKLINE_RTP_PORTS", range.as_str())]).await;
    let binding = rig.bind(axb()).await;
    let x = binding["x"].as_str().unwrap().to_owned();
    let mut first = rig.uac(
        "uac_media.xml",
        &a(),
        &x,
        Transport::Udp,
        &["-key", "rtp_port", &caller.port(), "-d", "3000"],
    );
    maskline_port(&first).await;
    let mut second = rig.uac("uac_expect_fail.xml", &a(), &x, Transport::Udp, &[]);
    let status = second.wait(Duration::from_secs(PEER_SECS)).await;
    assert!(status.success(), "{}", second.report());
    let refusal = second
        .received()
        .into_iter()
        .find(|m| sipp::status(m).is_some_and(|c| c >= 300))
        .unwrap();
    assert_eq!(sipp::status(&refusal), Some(503), "{refusal}");
    both_succeed(&mut first, &mut uas).await;
    let cdrs = rig.cdrs(&binding, 2).await;
    assert!(cdrs.iter().any(|c| c["final_status"] == 503), "{cdrs:#?}");
}

/// Keys `digits` as RFC 4733 events from `party` to `to`.
fn key(party: &Party, to: SocketAddr, digits: &str) {
    for (n, c) in digits.chars().enumerate() {
        let digit = Digit::from_char(c).unwrap();
        for (i, p) in DtmfEncoder::new(digit, Duration::from_millis(100), 10)
            .unwrap()
            .enumerate()
        {
            let header = RtpHeader {
                marker: p.marker,
                payload_type: 101,
                sequence: (100 * n + i) as u16,
                timestamp: 8000 * n as u32,
                ssrc: 0x3333_3333,
            };
            party.send(to, header, &p.event.to_bytes());
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_caller_of_a_shared_number_hears_the_prompt_keys_the_extension_and_is_connected() {
    let (caller, callee) = (Party::new(), Party::new());
    let mut uas = callee_uas(&callee, Codec::Pcmu);
    let rig = Rig::start(&uas, &[]).await;
    let binding = rig.bind(json!({"mode": "axe", "a": b()})).await;
    let x = binding["x"].as_str().unwrap().to_owned();
    let extension = binding["extension"].as_str().unwrap().to_owned();
    let mut uac = rig.uac(
        "uac_ivr.xml",
        &a(),
        &x,
        Transport::Udp,
        &["-key", "rtp_port", &caller.port(), "-d", "1000"],
    );
    let a_side = maskline_port(&uac).await;
    // The first half second of enter_extension, as the built-in Mandarin
    // recording encodes in PCMU, frame by frame.
    let heard = caller.receive(25, 10);
    assert_eq!(heard.len(), 25, "the prompt plays");
    let prompt = maskline_media::prompts::builtin(
        maskline_media::prompts::PromptName::EnterExtension,
        maskline_media::prompts::Language::Zh,
    );
    for (i, (from, packet)) in heard.iter().enumerate() {
        assert_eq!(*from, a_side);
        let p = rtp(packet);
        assert_eq!(p.header.payload_type, 0);
        assert_eq!(p.header.marker, i == 0, "a talkspurt starts the prompt");
        let expected: Vec<u8> = prompt.samples()[i * 160..(i + 1) * 160]
            .iter()
            .map(|&s| Codec::Pcmu.encode(s))
            .collect();
        assert_eq!(p.payload, expected, "frame {i} of the prompt");
    }
    key(&caller, a_side, &extension);
    both_succeed(&mut uac, &mut uas).await;
    let invite = &uas.received_requests("INVITE")[0];
    assert!(
        sipp::header(invite, "From").is_some_and(|f| f.contains(&x)),
        "the holder sees X:\n{invite}"
    );
    let cdrs = rig.cdrs(&binding, 1).await;
    assert_eq!(cdrs[0]["release_reason"], "normal", "{:#}", cdrs[0]);
    assert_eq!(cdrs[0]["callee"], json!(b()), "{:#}", cdrs[0]);
}

/// 20 ms of a `hz` tone at half scale, linear.
fn tone_at(hz: f64, frame: u32) -> Vec<i16> {
    (0..160u32)
        .map(|i| {
            let t = f64::from(frame * 160 + i) / 8000.0;
            (16_000.0 * (2.0 * std::f64::consts::PI * hz * t).sin()) as i16
        })
        .collect()
}

/// The energy of `samples` at `hz` relative to their total (Goertzel).
fn share_at(samples: &[i16], hz: f64) -> f64 {
    let w = 2.0 * std::f64::consts::PI * hz / 8000.0;
    let (mut s1, mut s2, mut total) = (0.0f64, 0.0f64, 0.0f64);
    for &x in samples {
        let x = f64::from(x);
        let s = x + 2.0 * w.cos() * s1 - s2;
        s2 = s1;
        s1 = s;
        total += x * x;
    }
    let power = s1 * s1 + s2 * s2 - 2.0 * w.cos() * s1 * s2;
    power / (total * samples.len() as f64 / 2.0).max(1.0)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_recorded_call_leaves_a_two_channel_wav_listed_on_its_cdr() {
    let (caller, callee) = (Party::new(), Party::new());
    let mut spec = axb();
    spec["controls"] = json!({"record": true});
    let Call {
        rig,
        binding,
        mut uac,
        mut uas,
        a_side,
        b_side,
    } = Call::place(&caller, &callee, spec, "3000").await;
    // One second each way: 1 kHz from the caller, 440 Hz from the callee.
    for i in 0..50u32 {
        for (party, to, hz, ssrc) in [(&caller, a_side, 1000.0, 1), (&callee, b_side, 440.0, 2)] {
            let payload: Vec<u8> = tone_at(hz, i)
                .iter()
                .map(|&s| Codec::Pcmu.encode(s))
                .collect();
            let header = RtpHeader {
                marker: i == 0,
                payload_type: 0,
                sequence: i as u16,
                timestamp: i * 160,
                ssrc,
            };
            party.send(to, header, &payload);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // Both parties hear that the call is recorded.
    let notice = maskline_media::prompts::builtin(
        maskline_media::prompts::PromptName::RecordingNotice,
        maskline_media::prompts::Language::Zh,
    );
    let first: Vec<u8> = notice.samples()[..160]
        .iter()
        .map(|&s| Codec::Pcmu.encode(s))
        .collect();
    for party in [&caller, &callee] {
        let heard = party.receive(1, 10);
        assert_eq!(heard.len(), 1);
        assert_eq!(rtp(&heard[0].1).payload, first, "the recording notice");
    }
    both_succeed(&mut uac, &mut uas).await;

    let cdrs = rig.cdrs(&binding, 1).await;
    let id = cdrs[0]["id"].as_str().unwrap().to_owned();
    let path = format!("/v1/calls/{id}/recording");
    let listed = eventually(15, "the recording on the CDR", || async {
        let cdrs = rig.calls(None).await;
        cdrs.into_iter()
            .find(|c| c["id"] == json!(id) && c["recording"].is_object())
    })
    .await;
    assert_eq!(listed["recording"]["url"], json!(path));
    let get_recording = || {
        rig.server
            .client
            .get(format!("{}{path}", rig.server.base))
            .bearer_auth(&rig.key)
            .send()
    };
    let response = get_recording().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"].to_str().unwrap(),
        "audio/wav"
    );
    let wav = response.bytes().await.unwrap();
    assert_eq!(&wav[..4], b"RIFF");
    let frames = maskline_media::wav::read_recording(&wav[..], 64 << 20).unwrap();
    let seconds = frames.len() as f64 / 8000.0;
    // Recorded from the answer to the hang-up: the call's 3 s, about.
    assert!((2.0..6.0).contains(&seconds), "{seconds} s recorded");
    let left: Vec<i16> = frames.iter().map(|f| f[0]).collect();
    let right: Vec<i16> = frames.iter().map(|f| f[1]).collect();
    assert!(share_at(&left, 1000.0) > 0.05, "the caller on the left");
    assert!(share_at(&right, 440.0) > 0.05, "the callee on the right");
    assert!(share_at(&left, 440.0) < share_at(&left, 1000.0) / 10.0);

    // `maskline keys rotate` beside the running server: the finished
    // recording is sealed again under the new key (its records name it) and
    // plays back the same.
    let mut rec = Vec::new();
    for tenant in std::fs::read_dir(rig.server.dir.join("data/recordings")).unwrap() {
        for file in std::fs::read_dir(tenant.unwrap().path()).unwrap() {
            rec.push(file.unwrap().path());
        }
    }
    assert_eq!(rec.len(), 1, "{rec:?}");
    assert!(rec[0].extension().is_some_and(|e| e == "rec"), "{rec:?}");
    let rec = rec.remove(0);
    let key_of = |p: &std::path::Path| {
        let b = std::fs::read(p).unwrap();
        u32::from_be_bytes(b[12..16].try_into().unwrap())
    };
    let before = key_of(&rec);
    rig.server.cli(&["keys", "rotate"]);
    eventually(90, "the recording sealed under the new key", || async {
        (key_of(&rec) != before).then_some(())
    })
    .await;
    let again = get_recording().await.unwrap().bytes().await.unwrap();
    assert_eq!(again, wav, "the same recording under the new key");
    // The blind key turned with it: the CDR is still found by its parties'
    // numbers, whether or not the reseal has reached its row.
    for party in [&binding["a"], &binding["b"]] {
        let number = party.as_str().unwrap().replace('+', "%2B");
        let found = rig
            .server
            .list_all(&format!("/v1/calls?party={number}"), &rig.key, 10)
            .await;
        assert_eq!(found.len(), 1, "{found:#?}");
        assert_eq!(found[0]["id"], json!(id));
    }

    // call.recorded is an event of the tenant's.
    let events = rig.server.list_all("/v1/events", &rig.key, 100).await;
    assert!(
        events.iter().any(|e| e["type"] == "call.recorded"),
        "{events:#?}"
    );
    let (status, _) = rig.server.call("DELETE", &path, Some(&rig.key), None).await;
    assert_eq!(status, 204);
    let (status, body) = rig.server.call("GET", &path, Some(&rig.key), None).await;
    assert_eq!(status, 404, "{body}");
    let (status, _) = rig.server.call("DELETE", &path, Some(&rig.key), None).await;
    assert_eq!(status, 404);
}

/// Keys `digits` as in-band DTMF: 80 ms of each digit's two tones, then
/// 80 ms of silence, as PCMU from `party`.
fn key_in_band(party: &Party, to: SocketAddr, digits: &str) {
    let mut frame = 0u32;
    let mut send = |samples: &[i16]| {
        let payload: Vec<u8> = samples.iter().map(|&s| Codec::Pcmu.encode(s)).collect();
        let header = RtpHeader {
            marker: frame == 0,
            payload_type: 0,
            sequence: frame as u16,
            timestamp: frame * 160,
            ssrc: 0x4444_4444,
        };
        party.send(to, header, &payload);
        frame += 1;
        std::thread::sleep(Duration::from_millis(20));
    };
    for c in digits.chars() {
        let mut tone = maskline_media::tones::DualTone::dtmf(Digit::from_char(c).unwrap(), -10.0);
        for _ in 0..4 {
            let mut samples = [0i16; 160];
            tone.fill(&mut samples);
            send(&samples);
        }
        for _ in 0..4 {
            send(&[0i16; 160]);
        }
    }
}

/// A call to a shared number whose extension the caller keys with `key`
/// (given the caller's socket, Maskline's port and the extension), then
/// connected to the holder.
async fn shared_number_call(
    scenario: &str,
    key: impl FnOnce(&Party, SocketAddr, &str) + Send + 'static,
    digit_keys: bool,
) {
    let (caller, callee) = (Party::new(), Party::new());
    let mut uas = callee_uas(&callee, Codec::Pcmu);
    let rig = Rig::start(&uas, &[]).await;
    let binding = rig.bind(json!({"mode": "axe", "a": b()})).await;
    let x = binding["x"].as_str().unwrap().to_owned();
    let extension = binding["extension"].as_str().unwrap().to_owned();
    let mut args: Vec<String> = vec![
        "-key".into(),
        "rtp_port".into(),
        caller.port(),
        "-d".into(),
        "1000".into(),
    ];
    if digit_keys {
        for (i, d) in extension.chars().enumerate() {
            args.extend(["-key".to_owned(), format!("d{}", i + 1), d.to_string()]);
        }
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut uac = rig.uac(scenario, &a(), &x, Transport::Udp, &args);
    let a_side = maskline_port(&uac).await;
    tokio::task::spawn_blocking(move || key(&caller, a_side, &extension))
        .await
        .unwrap();
    both_succeed(&mut uac, &mut uas).await;
    let cdrs = rig.cdrs(&binding, 1).await;
    assert_eq!(cdrs[0]["release_reason"], "normal", "{:#}", cdrs[0]);
    assert_eq!(cdrs[0]["callee"], json!(b()), "{:#}", cdrs[0]);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_extension_keyed_as_in_band_tones_connects_the_call() {
    shared_number_call("uac_ivr.xml", key_in_band, false).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_extension_keyed_by_sip_info_connects_the_call() {
    // The digits go as INFO from the scenario; the caller's socket keys
    // nothing.
    shared_number_call("uac_ivr_info.xml", |_, _, _| {}, true).await;
}

/// A WAV of `samples`: 8 kHz mono PCM16.
fn wav_of(samples: &[i16]) -> Vec<u8> {
    let data = samples.len() as u32 * 2;
    let mut w = Vec::new();
    w.extend_from_slice(b"RIFF");
    w.extend_from_slice(&(36 + data).to_le_bytes());
    w.extend_from_slice(b"WAVEfmt ");
    w.extend_from_slice(&16u32.to_le_bytes());
    w.extend_from_slice(&1u16.to_le_bytes());
    w.extend_from_slice(&1u16.to_le_bytes());
    w.extend_from_slice(&8000u32.to_le_bytes());
    w.extend_from_slice(&16000u32.to_le_bytes());
    w.extend_from_slice(&2u16.to_le_bytes());
    w.extend_from_slice(&16u16.to_le_bytes());
    w.extend_from_slice(b"data");
    w.extend_from_slice(&data.to_le_bytes());
    for s in samples {
        w.extend_from_slice(&s.to_le_bytes());
    }
    w
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tenants_own_prompt_is_the_one_a_refused_caller_hears() {
    let caller = Party::new();
    let mut uas = Sipp::uas("uas_answer.xml", Transport::Udp, &["-s", &b()]);
    let rig = Rig::start(&uas, &[]).await;
    let binding = rig.bind(axb()).await;
    let x = binding["x"].as_str().unwrap().to_owned();
    // Half a second of 600 Hz as the tenant's `no_binding`.
    let mine: Vec<i16> = (0..25).flat_map(|i| tone_at(600.0, i)).collect();
    let response = rig
        .server
        .client
        .put(format!("{}/v1/prompts/no_binding", rig.server.base))
        .bearer_auth(&rig.key)
        .header("content-type", "audio/wav")
        .body(wav_of(&mine))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    // A stranger dials X: it hears the tenant's prompt, then 404.
    let stranger = party(9);
    let mut uac = Sipp::uac(
        "uac_announced.xml",
        &rig.sip,
        Transport::Udp,
        &x,
        &[
            ("caller", stranger.as_str()),
            ("rtp_port", caller.port().as_str()),
        ],
        &[],
    );
    let heard = tokio::task::spawn_blocking(move || caller.receive_stream(PEER_SECS))
        .await
        .unwrap();
    assert_eq!(heard.len(), 25, "the whole prompt, and only it");
    for (i, (_, packet)) in heard.iter().enumerate() {
        let expected: Vec<u8> = mine[i * 160..(i + 1) * 160]
            .iter()
            .map(|&s| Codec::Pcmu.encode(s))
            .collect();
        assert_eq!(rtp(packet).payload, expected, "frame {i}");
    }
    let status = uac.wait(Duration::from_secs(PEER_SECS)).await;
    assert!(status.success(), "{}", uac.report());
    let refusal = uac
        .received()
        .into_iter()
        .find(|m| sipp::status(m).is_some_and(|c| c >= 300))
        .unwrap();
    assert_eq!(sipp::status(&refusal), Some(404), "{refusal}");
    // Nothing reached the gateway.
    uas.kill();
    assert!(uas.received_requests("INVITE").is_empty());
}

/// The first 20 ms of built-in prompt `name` in PCMU.
fn first_frame(name: maskline_media::prompts::PromptName) -> Vec<u8> {
    let prompt = maskline_media::prompts::builtin(name, maskline_media::prompts::Language::Zh);
    prompt.samples()[..160]
        .iter()
        .map(|&s| Codec::Pcmu.encode(s))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bindings_call_prompts_reach_the_parties_they_are_for() {
    use maskline_media::prompts::PromptName;

    let (caller, callee) = (Party::new(), Party::new());
    let mut uas = callee_uas(&callee, Codec::Pcmu);
    let rig = Rig::start(&uas, &[]).await;
    let mut spec = axb();
    spec["controls"] = json!({
        "max_call_seconds": 60,
        "warn_before_end_seconds": 58,
        "prompts": {"pre_connect": true, "callee_whisper": true}
    });
    let binding = rig.bind(spec).await;
    assert_eq!(binding["controls"]["prompts"]["callee_whisper"], true);
    let x = binding["x"].as_str().unwrap().to_owned();
    let mut uac = rig.uac(
        "uac_media.xml",
        &a(),
        &x,
        Transport::Udp,
        &["-key", "rtp_port", &caller.port(), "-d", "4000"],
    );
    let (heard_by_caller, heard_by_callee) = tokio::task::spawn_blocking(move || {
        std::thread::scope(|s| {
            let a = s.spawn(|| caller.receive_stream(PEER_SECS));
            let b = s.spawn(|| callee.receive_stream(PEER_SECS));
            (a.join().unwrap(), b.join().unwrap())
        })
    })
    .await
    .unwrap();
    both_succeed(&mut uac, &mut uas).await;
    let payloads = |heard: &[(SocketAddr, Vec<u8>)]| -> Vec<Vec<u8>> {
        heard.iter().map(|(_, p)| rtp(p).payload.to_vec()).collect()
    };
    let (to_caller, to_callee) = (payloads(&heard_by_caller), payloads(&heard_by_callee));
    assert_eq!(
        to_caller.first(),
        Some(&first_frame(PromptName::PreConnect)),
        "the caller first hears pre_connect"
    );
    assert_eq!(
        to_callee.first(),
        Some(&first_frame(PromptName::CalleeWhisper)),
        "the callee first hears its whisper"
    );
    let last_minute = first_frame(PromptName::LastMinute);
    assert!(
        to_caller.contains(&last_minute),
        "the caller hears last_minute"
    );
    assert!(
        to_callee.contains(&last_minute),
        "the callee hears last_minute"
    );
}

/// The privacy contract's black-box check on the embedded store: after a
/// bind, a recorded call with audio, a text and a webhook secret, no
/// party's digits are anywhere in the data directory's raw files (database,
/// WAL, recordings), nor in the logs.
#[tokio::test(flavor = "multi_thread")]
async fn no_party_digits_are_stored_in_clear_after_binds_calls_recordings_and_texts() {
    // Digits that no X, id or time here contains by chance.
    let (party_a, party_b) = ("+8613847319256", "+8613962748135");
    let callee = Party::new();
    let mut uas = callee_uas(&callee, Codec::Pcma);
    // No cool-down: an unbound binding is at once an ended record to erase.
    let rig = Rig::start(&uas, &[("MASKLINE_COOLDOWN_SECS", "0")]).await;
    let binding = rig
        .bind(
            json!({"mode": "axb", "a": party_a, "b": party_b, "expires_in": 600,
                     "external_ref": "order-1", "controls": {"record": true}}),
        )
        .await;
    let x = binding["x"].as_str().unwrap().to_owned();
    let (st, v) = rig
        .server
        .call(
            "PUT",
            "/v1/webhook",
            Some(&rig.key),
            Some(json!({"url": "http://127.0.0.1:9/hook"})),
        )
        .await;
    assert!(st == 200 || st == 201, "{st} {v}");
    let secret = v["secret"].as_str().unwrap().to_owned();
    let media_port = sipp::free_sip_port().to_string();
    let mut uac = rig.uac(
        "uac_pcap.xml",
        party_a,
        &x,
        Transport::Udp,
        &["-mi", "127.0.0.1", "-mp", &media_port],
    );
    let got = tokio::task::spawn_blocking(move || callee.receive_stream(PEER_SECS))
        .await
        .unwrap();
    assert!(got.len() > 100, "the caller's audio reached the callee");
    both_succeed(&mut uac, &mut uas).await;
    let cdrs = rig.cdrs(&binding, 1).await;
    let id = cdrs[0]["id"].as_str().unwrap().to_owned();
    eventually(15, "the recording on the CDR", || async {
        let cdrs = rig.calls(None).await;
        cdrs.into_iter()
            .find(|c| c["id"] == json!(id) && c["recording"].is_object())
    })
    .await;
    let (st, v) = rig
        .server
        .call(
            "POST",
            "/v1/sms/inbound",
            Some(SWITCH_KEY),
            Some(json!({"from": party_a, "to": x,
                        "text": format!("call me back on {party_b}"), "gateway_id": "gw-1"})),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    // What the API gives back is whole: the store opened what it sealed.
    let (st, listed) = rig
        .server
        .call("GET", "/v1/messages", Some(&rig.key), None)
        .await;
    assert_eq!(st, 200);
    assert!(listed.to_string().contains("call me back on"), "{listed}");
    let response = rig
        .server
        .client
        .get(format!("{}/v1/calls/{id}/recording", rig.server.base))
        .bearer_auth(&rig.key)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let wav = response.bytes().await.unwrap();
    let frames = maskline_media::wav::read_recording(&wav[..], 64 << 20).unwrap();
    assert!(frames.len() > 8000, "{} frames recorded", frames.len());

    let mut needles = digit_forms(party_a);
    needles.extend(digit_forms(party_b));
    needles.push(secret);
    needles.push("call me back".to_owned());
    let data = rig.server.dir.join("data");
    // While it runs (the WAL holds the latest commits), and once stopped.
    assert_eq!(files_holding(&data, &needles), vec![]);
    let recordings: Vec<_> = std::fs::read_dir(data.join("recordings"))
        .unwrap()
        .flat_map(|t| std::fs::read_dir(t.unwrap().path()).unwrap())
        .map(|f| std::fs::read(f.unwrap().path()).unwrap())
        .collect();
    assert_eq!(recordings.len(), 1);
    assert!(!recordings[0].starts_with(b"RIFF"), "a recording in clear");

    // Erasure: once the binding has ended, DELETE /v1/parties/{A} removes
    // A's ended binding, its texts and its CDR's recording; the CDR stays
    // with A's mask.
    let binding_path = format!("/v1/bindings/{}", binding["id"].as_str().unwrap());
    let (st, v) = rig
        .server
        .call("DELETE", &binding_path, Some(&rig.key), None)
        .await;
    assert_eq!(st, 200, "{v}");
    let (st, v) = rig
        .server
        .call(
            "DELETE",
            "/v1/parties/%2B8613847319256",
            Some(&rig.key),
            None,
        )
        .await;
    assert_eq!(st, 204, "{v}");
    let (st, _) = rig
        .server
        .call("GET", &binding_path, Some(&rig.key), None)
        .await;
    assert_eq!(st, 404, "the ended binding is gone");
    let cdr = rig
        .calls(None)
        .await
        .into_iter()
        .find(|c| c["id"] == json!(id))
        .expect("the CDR stays");
    assert_eq!(cdr["caller"], json!("+86138****9256"), "{cdr:#}");
    assert_eq!(cdr["callee"], json!(party_b));
    assert!(cdr["recording"].is_null(), "{cdr:#}");
    let (st, _) = rig
        .server
        .call(
            "GET",
            &format!("/v1/calls/{id}/recording"),
            Some(&rig.key),
            None,
        )
        .await;
    assert_eq!(st, 404);
    let (_, listed) = rig
        .server
        .call("GET", "/v1/messages", Some(&rig.key), None)
        .await;
    assert_eq!(listed["items"], json!([]), "{listed}");
    let (st, v) = rig
        .server
        .call("DELETE", "/v1/parties/12345", Some(&rig.key), None)
        .await;
    assert_eq!(
        (st, v["code"].as_str()),
        (400, Some("invalid_number")),
        "{v}"
    );
    let mut server = rig.server;
    assert!(server.stop().success());
    assert_eq!(files_holding(&data, &needles), vec![]);
    let logs = server.logs();
    for n in digit_forms(party_a).iter().chain(&digit_forms(party_b)) {
        assert!(!logs.contains(n.as_str()), "{n} in the logs");
    }
}
