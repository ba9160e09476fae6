//! Every route decision of `Index::decide`, driven through the public API:
//! numbers and bindings go in with `add_number` and `insert`, time comes in as
//! a parameter, and each case names the behaviour it pins down.

use maskline_core::{
    BindingId, Channel, Connect, Controls, Decision, Direction, Extension, Inbound, Index, Mode,
    NewBinding, Number, Prompt, RejectReason, TenantId, UnixTime,
};

const COOLDOWN: i64 = 100;
const NOW: UnixTime = 1_000;
const ENDS: UnixTime = 2_000;
const T: TenantId = TenantId(1);

fn num(digits: u64) -> Number {
    Number::from_digits(digits).expect("test numbers are valid")
}

fn ext(s: &str) -> Extension {
    s.parse().expect("test extensions are valid")
}

// Virtual numbers.
fn x_axb() -> Number {
    num(8657100000001)
}
fn x_axn() -> Number {
    num(8657100000002)
}
fn x_axn_no_b() -> Number {
    num(8657100000003)
}
fn x_axe() -> Number {
    num(8657100000004)
}
fn x_idle() -> Number {
    num(8657100000005)
}
fn x_unknown() -> Number {
    num(8657199999999)
}

// Parties.
fn a() -> Number {
    num(8613800000001)
}
fn b() -> Number {
    num(8613800000002)
}
fn c() -> Number {
    num(8613800000003)
}
fn d() -> Number {
    num(8613800000004)
}
/// Anyone: never a bound party.
fn n() -> Number {
    num(8613900000009)
}

fn voice(caller: Number, called: Number) -> Inbound {
    Inbound {
        caller,
        called,
        extension: None,
        channel: Channel::Voice,
    }
}

fn sms(caller: Number, called: Number) -> Inbound {
    Inbound {
        channel: Channel::Sms,
        ..voice(caller, called)
    }
}

fn with_ext(caller: Number, called: Number, e: &str) -> Inbound {
    Inbound {
        extension: Some(ext(e)),
        ..voice(caller, called)
    }
}

fn binding(id: u128, mode: Mode, x: Number, a: Number, b: Option<Number>) -> NewBinding {
    NewBinding {
        id: BindingId(id),
        tenant: T,
        mode,
        x,
        extension: None,
        a,
        b,
        ends_at: ENDS,
        ended: false,
        controls: Controls::default(),
        pending: false,
    }
}

fn axe_binding(id: u128, x: Number, e: &str, a: Number, b: Option<Number>) -> NewBinding {
    NewBinding {
        extension: Some(ext(e)),
        ..binding(id, Mode::Axe, x, a, b)
    }
}

fn insert(index: &mut Index, nb: &NewBinding, now: UnixTime) {
    assert_eq!(index.insert(nb, now), Ok(true), "insert {:?}", nb.id);
}

/// An index with one tenant owning `x_axb`..`x_idle` and nothing bound.
fn empty_index() -> Index {
    let mut index = Index::new(COOLDOWN);
    index.add_tenant(T);
    for x in [x_axb(), x_axn(), x_axn_no_b(), x_axe(), x_idle()] {
        index.add_number(T, x, None).expect("add number");
    }
    index
}

/// The fixture most tables run against:
/// - 1: axb A<->B on `x_axb` (max 600 s, recorded); 2: axb C<->D on the same X;
/// - 3: axn A (B set) on `x_axn`; 4: axn A (no B) on `x_axn_no_b`;
/// - 5: axe 1234 -> A (B set) and 6: axe 0042 -> C (no B), both on `x_axe`.
fn fixture() -> Index {
    let mut index = empty_index();
    let mut first = binding(1, Mode::Axb, x_axb(), a(), Some(b()));
    first.controls.max_call_seconds = Some(600);
    first.controls.record = true;
    insert(&mut index, &first, NOW);
    insert(
        &mut index,
        &binding(2, Mode::Axb, x_axb(), c(), Some(d())),
        NOW,
    );
    insert(
        &mut index,
        &binding(3, Mode::Axn, x_axn(), a(), Some(b())),
        NOW,
    );
    insert(
        &mut index,
        &binding(4, Mode::Axn, x_axn_no_b(), a(), None),
        NOW,
    );
    insert(
        &mut index,
        &axe_binding(5, x_axe(), "1234", a(), Some(b())),
        NOW,
    );
    insert(&mut index, &axe_binding(6, x_axe(), "0042", c(), None), NOW);
    index
}

fn connect(id: u128, mode: Mode, direction: Direction, to: Number, x: Number) -> Decision {
    Decision::Connect(Connect {
        binding: BindingId(id),
        tenant: T,
        mode,
        direction,
        to,
        caller_id: x,
        max_call_seconds: None,
        record: false,
        pre_connect: false,
        callee_whisper: false,
        warn_before_end_seconds: None,
    })
}

fn announce(prompt: Prompt, id: Option<u128>) -> Decision {
    Decision::Announce {
        prompt,
        binding: id.map(BindingId),
        tenant: Some(T),
    }
}

fn no_binding() -> Decision {
    announce(Prompt::NoBinding, None)
}

fn expired(id: u128) -> Decision {
    announce(Prompt::Expired, Some(id))
}

fn reject(reason: RejectReason, id: u128) -> Decision {
    Decision::Reject {
        reason,
        binding: BindingId(id),
        tenant: T,
    }
}

struct Case {
    name: &'static str,
    inbound: Inbound,
    want: Decision,
}

fn case(name: &'static str, inbound: Inbound, want: Decision) -> Case {
    Case {
        name,
        inbound,
        want,
    }
}

fn run(index: &Index, now: UnixTime, cases: &[Case]) {
    let mut failures = Vec::new();
    for c in cases {
        let got = index.decide(&c.inbound, now);
        if got != c.want {
            failures.push(format!(
                "{}:\n   got  {got:?}\n   want {:?}",
                c.name, c.want
            ));
        }
        // Whatever the decision, the called party only ever sees X.
        if let Decision::Connect(conn) = got {
            assert_eq!(conn.caller_id, c.inbound.called, "{}: caller id", c.name);
            assert_ne!(
                conn.to, c.inbound.caller,
                "{}: calls back the caller",
                c.name
            );
        }
        if let Decision::Reject { reason, .. } = got {
            assert_eq!(reason.sip_code(), 403, "{}: sip code", c.name);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

// === The fixture's decisions, one table ===

#[test]
fn every_mode_routes_its_callers_to_the_right_party() {
    let index = fixture();
    let mut first_a_to_b = connect(1, Mode::Axb, Direction::AToB, b(), x_axb());
    let mut first_b_to_a = connect(1, Mode::Axb, Direction::BToA, a(), x_axb());
    for d in [&mut first_a_to_b, &mut first_b_to_a] {
        if let Decision::Connect(conn) = d {
            conn.max_call_seconds = Some(600);
            conn.record = true;
        }
    }
    let cases = vec![
        // axb
        case("axb_a_calls_x_reaches_b", voice(a(), x_axb()), first_a_to_b),
        case("axb_b_calls_x_reaches_a", voice(b(), x_axb()), first_b_to_a),
        case(
            "axb_second_pair_on_same_x_a_reaches_its_b",
            voice(c(), x_axb()),
            connect(2, Mode::Axb, Direction::AToB, d(), x_axb()),
        ),
        case(
            "axb_second_pair_on_same_x_b_reaches_its_a",
            voice(d(), x_axb()),
            connect(2, Mode::Axb, Direction::BToA, c(), x_axb()),
        ),
        case(
            "axb_stranger_hears_no_binding",
            voice(n(), x_axb()),
            no_binding(),
        ),
        case(
            "axb_extension_is_ignored",
            with_ext(b(), x_axb(), "1234"),
            first_b_to_a,
        ),
        case(
            "axb_sms_allowed_by_default",
            sms(a(), x_axb()),
            first_a_to_b,
        ),
        // numbers without bindings
        case(
            "unknown_x_hears_no_binding_without_tenant",
            voice(a(), x_unknown()),
            Decision::Announce {
                prompt: Prompt::NoBinding,
                binding: None,
                tenant: None,
            },
        ),
        case(
            "idle_x_of_the_tenant_hears_no_binding_with_tenant",
            voice(a(), x_idle()),
            no_binding(),
        ),
        // axn
        case(
            "axn_anyone_reaches_a",
            voice(n(), x_axn()),
            connect(3, Mode::Axn, Direction::NToA, a(), x_axn()),
        ),
        case(
            "axn_other_party_of_another_binding_reaches_a_as_anyone",
            voice(c(), x_axn()),
            connect(3, Mode::Axn, Direction::NToA, a(), x_axn()),
        ),
        case(
            "axn_b_reaches_a",
            voice(b(), x_axn()),
            connect(3, Mode::Axn, Direction::BToA, a(), x_axn()),
        ),
        case(
            "axn_a_reaches_b",
            voice(a(), x_axn()),
            connect(3, Mode::Axn, Direction::AToB, b(), x_axn()),
        ),
        case(
            "axn_a_without_b_hears_no_b",
            voice(a(), x_axn_no_b()),
            announce(Prompt::NoB, Some(4)),
        ),
        case(
            "axn_without_b_anyone_still_reaches_a",
            voice(n(), x_axn_no_b()),
            connect(4, Mode::Axn, Direction::NToA, a(), x_axn_no_b()),
        ),
        case(
            "axn_sms_from_anyone_reaches_a",
            sms(n(), x_axn()),
            connect(3, Mode::Axn, Direction::NToA, a(), x_axn()),
        ),
        // axe
        case(
            "axe_without_extension_collects_extension",
            voice(n(), x_axe()),
            Decision::CollectExtension { tenant: T },
        ),
        case(
            "axe_bound_party_without_extension_collects_extension",
            voice(a(), x_axe()),
            Decision::CollectExtension { tenant: T },
        ),
        case(
            "axe_right_extension_reaches_a",
            with_ext(n(), x_axe(), "1234"),
            connect(5, Mode::Axe, Direction::NToA, a(), x_axe()),
        ),
        case(
            "axe_extension_with_leading_zeros_reaches_its_a",
            with_ext(n(), x_axe(), "0042"),
            connect(6, Mode::Axe, Direction::NToA, c(), x_axe()),
        ),
        case(
            "axe_extension_without_its_leading_zeros_is_another_extension",
            with_ext(n(), x_axe(), "42"),
            no_binding(),
        ),
        case(
            "axe_wrong_extension_hears_no_binding",
            with_ext(n(), x_axe(), "9999"),
            no_binding(),
        ),
        case(
            "axe_b_reaches_a",
            with_ext(b(), x_axe(), "1234"),
            connect(5, Mode::Axe, Direction::BToA, a(), x_axe()),
        ),
        case(
            "axe_a_via_extension_reaches_b",
            with_ext(a(), x_axe(), "1234"),
            connect(5, Mode::Axe, Direction::AToB, b(), x_axe()),
        ),
        case(
            "axe_a_via_extension_without_b_hears_no_b",
            with_ext(c(), x_axe(), "0042"),
            announce(Prompt::NoB, Some(6)),
        ),
        case(
            "axe_a_of_one_extension_dialling_another_reaches_its_a_as_anyone",
            with_ext(a(), x_axe(), "0042"),
            connect(6, Mode::Axe, Direction::NToA, c(), x_axe()),
        ),
    ];
    run(&index, NOW, &cases);
}

// === Controls ===

/// One binding of `mode` on its fixture X with `controls`, and the inbound
/// that travels `direction` on it.
fn single(mode: Mode, controls: Controls) -> (Index, Number) {
    let mut index = empty_index();
    let x = match mode {
        Mode::Axb => x_axb(),
        Mode::Axn => x_axn(),
        Mode::Axe => x_axe(),
    };
    let mut nb = binding(7, mode, x, a(), Some(b()));
    if mode == Mode::Axe {
        nb.extension = Some(ext("1234"));
    }
    nb.controls = controls;
    insert(&mut index, &nb, NOW);
    (index, x)
}

fn inbound_for(mode: Mode, direction: Direction, x: Number, channel: Channel) -> Inbound {
    let caller = match direction {
        Direction::AToB => a(),
        Direction::BToA => b(),
        Direction::NToA => n(),
    };
    Inbound {
        caller,
        called: x,
        extension: (mode == Mode::Axe).then(|| ext("1234")),
        channel,
    }
}

fn directions(mode: Mode) -> &'static [Direction] {
    match mode {
        Mode::Axb => &[Direction::AToB, Direction::BToA],
        Mode::Axn | Mode::Axe => &[Direction::AToB, Direction::BToA, Direction::NToA],
    }
}

#[test]
fn directions_forbidden_by_controls_are_rejected_with_403() {
    let mut checked = 0;
    for mode in Mode::ALL {
        for (flag, controls) in [
            (
                "a_to_b=false",
                Controls {
                    a_to_b: false,
                    ..Controls::default()
                },
            ),
            (
                "b_to_a=false",
                Controls {
                    b_to_a: false,
                    ..Controls::default()
                },
            ),
        ] {
            let (index, x) = single(mode, controls);
            for &direction in directions(mode) {
                // a_to_b governs A's calls out; b_to_a every call reaching A.
                let forbidden = match direction {
                    Direction::AToB => !controls.a_to_b,
                    Direction::BToA | Direction::NToA => !controls.b_to_a,
                };
                let to = if direction == Direction::AToB {
                    b()
                } else {
                    a()
                };
                for channel in [Channel::Voice, Channel::Sms] {
                    let got = index.decide(&inbound_for(mode, direction, x, channel), NOW);
                    let want = if forbidden {
                        reject(RejectReason::DirectionForbidden, 7)
                    } else {
                        connect(7, mode, direction, to, x)
                    };
                    assert_eq!(got, want, "{mode} {flag} {direction:?} {channel:?}");
                    if let Decision::Reject { reason, .. } = got {
                        assert_eq!(reason.sip_code(), 403);
                        assert_eq!(reason.as_str(), "direction_forbidden");
                    }
                    checked += 1;
                }
            }
        }
    }
    assert_eq!(checked, 2 * 2 * (2 + 3 + 3));
}

#[test]
fn sms_is_rejected_when_controls_disable_it_and_voice_still_connects() {
    let controls = Controls {
        sms: false,
        ..Controls::default()
    };
    for mode in Mode::ALL {
        let (index, x) = single(mode, controls);
        for &direction in directions(mode) {
            let to = if direction == Direction::AToB {
                b()
            } else {
                a()
            };
            let got = index.decide(&inbound_for(mode, direction, x, Channel::Sms), NOW);
            assert_eq!(
                got,
                reject(RejectReason::SmsDisabled, 7),
                "{mode} {direction:?} sms"
            );
            assert_eq!(RejectReason::SmsDisabled.sip_code(), 403);
            let got = index.decide(&inbound_for(mode, direction, x, Channel::Voice), NOW);
            assert_eq!(
                got,
                connect(7, mode, direction, to, x),
                "{mode} {direction:?} voice"
            );
        }
    }
}

#[test]
fn forbidden_direction_wins_over_disabled_sms() {
    let controls = Controls {
        a_to_b: false,
        sms: false,
        ..Controls::default()
    };
    let (index, x) = single(Mode::Axb, controls);
    let got = index.decide(
        &inbound_for(Mode::Axb, Direction::AToB, x, Channel::Sms),
        NOW,
    );
    assert_eq!(got, reject(RejectReason::DirectionForbidden, 7));
}

#[test]
fn max_call_seconds_and_record_are_carried_into_connect() {
    for mode in Mode::ALL {
        for (max, record) in [(None, false), (Some(1), true), (Some(3600), false)] {
            let (index, x) = single(
                mode,
                Controls {
                    max_call_seconds: max,
                    record,
                    ..Controls::default()
                },
            );
            for &direction in directions(mode) {
                match index.decide(&inbound_for(mode, direction, x, Channel::Voice), NOW) {
                    Decision::Connect(conn) => {
                        assert_eq!(conn.max_call_seconds, max, "{mode} {direction:?}");
                        assert_eq!(conn.record, record, "{mode} {direction:?}");
                        assert_eq!(conn.direction, direction);
                    }
                    other => panic!("{mode} {direction:?}: {other:?}"),
                }
            }
        }
    }
}

// === Time: expiry, unbinding, cool-down ===

#[test]
fn expired_binding_gets_expired_prompt() {
    for mode in Mode::ALL {
        let (index, x) = single(mode, Controls::default());
        for &direction in directions(mode) {
            let inbound = inbound_for(mode, direction, x, Channel::Voice);
            assert!(
                matches!(index.decide(&inbound, ENDS - 1), Decision::Connect(_)),
                "{mode} {direction:?}: active until the last second"
            );
            for now in [ENDS, ENDS + 1, ENDS + COOLDOWN - 1] {
                assert_eq!(
                    index.decide(&inbound, now),
                    expired(7),
                    "{mode} {direction:?} at {now}"
                );
            }
        }
    }
}

#[test]
fn expired_prompt_applies_to_sms_too() {
    let (index, x) = single(Mode::Axb, Controls::default());
    assert_eq!(index.decide(&sms(a(), x), ENDS), expired(7));
}

#[test]
fn binding_past_cool_down_gets_no_binding_even_without_sweep() {
    for mode in Mode::ALL {
        let (index, x) = single(mode, Controls::default());
        for &direction in directions(mode) {
            let inbound = inbound_for(mode, direction, x, Channel::Voice);
            for now in [ENDS + COOLDOWN, ENDS + COOLDOWN + 1, i64::MAX] {
                assert_eq!(
                    index.decide(&inbound, now),
                    no_binding(),
                    "{mode} {direction:?} at {now}"
                );
            }
        }
    }
}

#[test]
fn stranger_on_an_expired_axb_x_hears_no_binding() {
    let (index, x) = single(Mode::Axb, Controls::default());
    assert_eq!(index.decide(&voice(n(), x), ENDS), no_binding());
}

#[test]
fn unbound_binding_gets_expired_prompt_immediately() {
    for mode in Mode::ALL {
        let (mut index, x) = single(mode, Controls::default());
        let at = NOW + 10;
        assert_eq!(
            index.end(BindingId(7), at),
            Some(ENDS),
            "{mode}: previous end"
        );
        assert_eq!(index.is_ended(BindingId(7)), Some(true));
        for &direction in directions(mode) {
            let inbound = inbound_for(mode, direction, x, Channel::Voice);
            assert!(
                matches!(index.decide(&inbound, at - 1), Decision::Connect(_)),
                "{mode} {direction:?}: still connects before the unbind time"
            );
            assert_eq!(
                index.decide(&inbound, at),
                expired(7),
                "{mode} {direction:?}"
            );
            assert_eq!(
                index.decide(&inbound, at + COOLDOWN - 1),
                expired(7),
                "{mode} {direction:?}"
            );
            // The cool-down runs from the unbinding, not from the expiry.
            assert_eq!(
                index.decide(&inbound, at + COOLDOWN),
                no_binding(),
                "{mode} {direction:?}"
            );
        }
    }
}

#[test]
fn unbinding_after_expiry_keeps_the_earlier_end() {
    let (mut index, x) = single(Mode::Axb, Controls::default());
    assert_eq!(index.end(BindingId(7), ENDS + 50), Some(ENDS));
    assert_eq!(index.decide(&voice(a(), x), ENDS + COOLDOWN), no_binding());
}

#[test]
fn undo_end_restores_routing() {
    let (mut index, x) = single(Mode::Axb, Controls::default());
    let before = index.end(BindingId(7), NOW).expect("bound");
    assert_eq!(index.decide(&voice(a(), x), NOW), expired(7));
    index.undo_end(BindingId(7), before, false);
    assert_eq!(index.is_ended(BindingId(7)), Some(false));
    assert_eq!(
        index.decide(&voice(a(), x), NOW),
        connect(7, Mode::Axb, Direction::AToB, b(), x)
    );
}

#[test]
fn binding_loaded_as_ended_during_cool_down_gets_expired_prompt() {
    let mut index = empty_index();
    let mut nb = binding(8, Mode::Axb, x_axb(), a(), Some(b()));
    nb.ends_at = NOW - 10;
    nb.ended = true;
    insert(&mut index, &nb, NOW);
    assert_eq!(index.decide(&voice(a(), x_axb()), NOW), expired(8));
}

#[test]
fn binding_loaded_past_cool_down_is_ignored() {
    let mut index = empty_index();
    let mut nb = binding(8, Mode::Axb, x_axb(), a(), Some(b()));
    nb.ends_at = NOW - COOLDOWN;
    assert_eq!(index.insert(&nb, NOW), Ok(false));
    assert!(index.is_empty());
    assert_eq!(index.decide(&voice(a(), x_axb()), NOW), no_binding());
}

#[test]
fn sweep_does_not_change_decisions() {
    let mut index = fixture();
    let probes = [
        voice(a(), x_axb()),
        voice(n(), x_axn()),
        with_ext(n(), x_axe(), "1234"),
    ];
    for now in [ENDS - 1, ENDS, ENDS + COOLDOWN - 1, ENDS + COOLDOWN] {
        let before: Vec<Decision> = probes.iter().map(|i| index.decide(i, now)).collect();
        index.sweep(now, usize::MAX);
        let after: Vec<Decision> = probes.iter().map(|i| index.decide(i, now)).collect();
        assert_eq!(before, after, "at {now}");
    }
    assert!(index.is_empty(), "everything past cool-down is swept");
}

// === Pending reservations ===

#[test]
fn pending_binding_does_not_route_until_confirmed() {
    for mode in Mode::ALL {
        let mut index = empty_index();
        let x = match mode {
            Mode::Axb => x_axb(),
            Mode::Axn => x_axn(),
            Mode::Axe => x_axe(),
        };
        let mut nb = binding(9, mode, x, a(), Some(b()));
        if mode == Mode::Axe {
            nb.extension = Some(ext("1234"));
        }
        nb.pending = true;
        insert(&mut index, &nb, NOW);
        for &direction in directions(mode) {
            let inbound = inbound_for(mode, direction, x, Channel::Voice);
            assert_eq!(
                index.decide(&inbound, NOW),
                no_binding(),
                "{mode} {direction:?} pending"
            );
        }
        index.confirm(BindingId(9));
        for &direction in directions(mode) {
            let inbound = inbound_for(mode, direction, x, Channel::Voice);
            let to = if direction == Direction::AToB {
                b()
            } else {
                a()
            };
            assert_eq!(
                index.decide(&inbound, NOW),
                connect(9, mode, direction, to, x),
                "{mode} {direction:?} confirmed"
            );
        }
    }
}

#[test]
fn pending_binding_holds_its_slots() {
    let mut index = empty_index();
    let mut nb = binding(9, Mode::Axb, x_axb(), a(), Some(b()));
    nb.pending = true;
    insert(&mut index, &nb, NOW);
    let clash = binding(10, Mode::Axb, x_axb(), a(), Some(c()));
    assert_eq!(
        index.insert(&clash, NOW),
        Err(maskline_core::Error::PartyConflict)
    );
}

#[test]
fn removed_reservation_stops_holding_and_routing() {
    let mut index = empty_index();
    let mut nb = binding(9, Mode::Axb, x_axb(), a(), Some(b()));
    nb.pending = true;
    insert(&mut index, &nb, NOW);
    assert!(index.remove(BindingId(9)));
    assert!(!index.remove(BindingId(9)));
    index.confirm(BindingId(9));
    assert_eq!(index.decide(&voice(a(), x_axb()), NOW), no_binding());
    insert(
        &mut index,
        &binding(10, Mode::Axb, x_axb(), a(), Some(c())),
        NOW,
    );
    assert_eq!(
        index.decide(&voice(a(), x_axb()), NOW),
        connect(10, Mode::Axb, Direction::AToB, c(), x_axb())
    );
}

// === Changes take effect on the next decision ===

#[test]
fn set_b_on_axb_reroutes_both_sides_and_drops_the_old_b() {
    let mut index = fixture();
    index
        .set_b(BindingId(1), Some(n()), NOW)
        .expect("n is free on x_axb");
    let mut a_to_n = connect(1, Mode::Axb, Direction::AToB, n(), x_axb());
    let mut n_to_a = connect(1, Mode::Axb, Direction::BToA, a(), x_axb());
    for d in [&mut a_to_n, &mut n_to_a] {
        if let Decision::Connect(conn) = d {
            conn.max_call_seconds = Some(600);
            conn.record = true;
        }
    }
    run(
        &index,
        NOW,
        &[
            case("a_reaches_new_b", voice(a(), x_axb()), a_to_n),
            case("new_b_reaches_a", voice(n(), x_axb()), n_to_a),
            case("old_b_hears_no_binding", voice(b(), x_axb()), no_binding()),
        ],
    );
}

#[test]
fn set_b_on_axb_to_a_party_of_another_live_binding_conflicts() {
    let mut index = fixture();
    assert_eq!(
        index.set_b(BindingId(1), Some(c()), NOW),
        Err(maskline_core::Error::PartyConflict)
    );
    assert_eq!(
        index.set_b(BindingId(1), Some(a()), NOW),
        Err(maskline_core::Error::SameParty)
    );
    assert_eq!(
        index.set_b(BindingId(1), None, NOW),
        Err(maskline_core::Error::MissingB)
    );
    // Nothing changed.
    assert!(matches!(
        index.decide(&voice(b(), x_axb()), NOW),
        Decision::Connect(Connect { to, .. }) if to == a()
    ));
    assert!(matches!(
        index.decide(&voice(c(), x_axb()), NOW),
        Decision::Connect(Connect { to, .. }) if to == d()
    ));
}

#[test]
fn set_b_on_axn_and_axe_changes_where_a_goes() {
    let mut index = fixture();
    index.set_b(BindingId(4), Some(d()), NOW).expect("axn b");
    index.set_b(BindingId(3), None, NOW).expect("axn clear b");
    index.set_b(BindingId(6), Some(d()), NOW).expect("axe b");
    index.set_b(BindingId(5), None, NOW).expect("axe clear b");
    run(
        &index,
        NOW,
        &[
            case(
                "axn_a_reaches_new_b",
                voice(a(), x_axn_no_b()),
                connect(4, Mode::Axn, Direction::AToB, d(), x_axn_no_b()),
            ),
            case(
                "axn_new_b_reaches_a_as_b",
                voice(d(), x_axn_no_b()),
                connect(4, Mode::Axn, Direction::BToA, a(), x_axn_no_b()),
            ),
            case(
                "axn_cleared_b_a_hears_no_b",
                voice(a(), x_axn()),
                announce(Prompt::NoB, Some(3)),
            ),
            case(
                "axn_old_b_now_reaches_a_as_anyone",
                voice(b(), x_axn()),
                connect(3, Mode::Axn, Direction::NToA, a(), x_axn()),
            ),
            case(
                "axe_a_reaches_new_b",
                with_ext(c(), x_axe(), "0042"),
                connect(6, Mode::Axe, Direction::AToB, d(), x_axe()),
            ),
            case(
                "axe_cleared_b_a_hears_no_b",
                with_ext(a(), x_axe(), "1234"),
                announce(Prompt::NoB, Some(5)),
            ),
            case(
                "axe_old_b_now_reaches_a_as_anyone",
                with_ext(b(), x_axe(), "1234"),
                connect(5, Mode::Axe, Direction::NToA, a(), x_axe()),
            ),
        ],
    );
}

#[test]
fn set_expiry_moves_the_end_seen_by_the_next_decision() {
    let (mut index, x) = single(Mode::Axb, Controls::default());
    let inbound = voice(a(), x);
    // Extended: connects past the old end.
    assert_eq!(
        index.set_expiry_if_active(BindingId(7), ENDS + 500, NOW),
        Some(ENDS)
    );
    assert!(matches!(
        index.decide(&inbound, ENDS + 499),
        Decision::Connect(_)
    ));
    assert_eq!(index.decide(&inbound, ENDS + 500), expired(7));
    // Shortened to now: expired at once, cool-down from the new end.
    assert_eq!(
        index.set_expiry_if_active(BindingId(7), NOW, NOW),
        Some(ENDS + 500)
    );
    assert_eq!(index.decide(&inbound, NOW), expired(7));
    assert_eq!(index.decide(&inbound, NOW + COOLDOWN), no_binding());
    assert_eq!(index.set_expiry_if_active(BindingId(999), NOW, NOW), None);
}

#[test]
fn set_expiry_does_not_revive_an_ended_binding() {
    let (mut index, x) = single(Mode::Axb, Controls::default());
    let inbound = voice(a(), x);
    // Cooling after expiry.
    assert_eq!(
        index.set_expiry_if_active(BindingId(7), ENDS + 500, ENDS),
        None
    );
    assert_eq!(index.decide(&inbound, ENDS), expired(7));
    // Unbound.
    let (mut index, _) = single(Mode::Axb, Controls::default());
    index.end(BindingId(7), NOW);
    assert_eq!(
        index.set_expiry_if_active(BindingId(7), ENDS + 500, NOW),
        None
    );
    assert_eq!(index.decide(&inbound, NOW + 1), expired(7));
}

#[test]
fn set_controls_takes_effect_on_the_next_decision() {
    let (mut index, x) = single(Mode::Axn, Controls::default());
    let from_n = voice(n(), x);
    assert_eq!(
        index.decide(&from_n, NOW),
        connect(7, Mode::Axn, Direction::NToA, a(), x)
    );
    index.set_controls(
        BindingId(7),
        &Controls {
            b_to_a: false,
            ..Controls::default()
        },
    );
    assert_eq!(
        index.decide(&from_n, NOW),
        reject(RejectReason::DirectionForbidden, 7)
    );
    index.set_controls(
        BindingId(7),
        &Controls {
            max_call_seconds: Some(60),
            record: true,
            sms: false,
            ..Controls::default()
        },
    );
    let Decision::Connect(conn) = index.decide(&from_n, NOW) else {
        panic!("connects again");
    };
    assert_eq!((conn.max_call_seconds, conn.record), (Some(60), true));
    assert_eq!(
        index.decide(&sms(n(), x), NOW),
        reject(RejectReason::SmsDisabled, 7)
    );
}

#[test]
fn set_controls_keeps_pending_and_ended_state() {
    let mut index = empty_index();
    let mut nb = binding(9, Mode::Axb, x_axb(), a(), Some(b()));
    nb.pending = true;
    insert(&mut index, &nb, NOW);
    index.set_controls(BindingId(9), &Controls::default());
    assert_eq!(index.decide(&voice(a(), x_axb()), NOW), no_binding());
    index.confirm(BindingId(9));
    index.end(BindingId(9), NOW);
    index.set_controls(BindingId(9), &Controls::default());
    assert_eq!(index.is_ended(BindingId(9)), Some(true));
    assert_eq!(index.decide(&voice(a(), x_axb()), NOW), expired(9));
}

#[test]
fn retired_number_is_unknown_to_decisions() {
    let mut index = fixture();
    index.retire_number(T, x_idle(), NOW).expect("idle");
    assert_eq!(
        index.decide(&voice(a(), x_idle()), NOW),
        Decision::Announce {
            prompt: Prompt::NoBinding,
            binding: None,
            tenant: None,
        }
    );
    assert_eq!(
        index.retire_number(T, x_axb(), NOW),
        Err(maskline_core::Error::NumberInUse)
    );
}

#[test]
fn decisions_never_cross_tenants() {
    let mut index = fixture();
    let other = TenantId(2);
    let x_other = num(8657100000099);
    index.add_number(other, x_other, None).expect("other pool");
    assert_eq!(
        index.add_number(other, x_axb(), None),
        Err(maskline_core::Error::NumberTaken)
    );
    let nb = NewBinding {
        tenant: other,
        ..binding(20, Mode::Axb, x_other, a(), Some(b()))
    };
    insert(&mut index, &nb, NOW);
    // A binding of tenant 2 on tenant 1's number is refused.
    let wrong = NewBinding {
        tenant: other,
        ..binding(21, Mode::Axb, x_idle(), a(), Some(b()))
    };
    assert_eq!(
        index.insert(&wrong, NOW),
        Err(maskline_core::Error::NumberNotFound)
    );
    match index.decide(&voice(a(), x_other), NOW) {
        Decision::Connect(conn) => {
            assert_eq!(conn.tenant, other);
            assert_eq!(conn.binding, BindingId(20));
        }
        d => panic!("{d:?}"),
    }
    match index.decide(&voice(a(), x_axb()), NOW) {
        Decision::Connect(conn) => assert_eq!((conn.tenant, conn.binding), (T, BindingId(1))),
        d => panic!("{d:?}"),
    }
}

#[test]
fn a_connect_carries_the_bindings_call_prompts() {
    let mut index = empty_index();
    let mut b = binding(1, Mode::Axb, x_axb(), a(), Some(b()));
    b.controls = Controls {
        pre_connect: true,
        callee_whisper: true,
        warn_before_end_seconds: Some(90),
        max_call_seconds: Some(600),
        ..Controls::default()
    };
    insert(&mut index, &b, NOW);
    let Decision::Connect(c) = index.decide(&voice(a(), x_axb()), NOW) else {
        panic!("connects");
    };
    assert!(c.pre_connect && c.callee_whisper);
    assert_eq!(c.warn_before_end_seconds, Some(90));
    assert_eq!(c.max_call_seconds, Some(600));
    // Changed controls reach the index.
    index.set_controls(BindingId(1), &Controls::default());
    let Decision::Connect(c) = index.decide(&voice(a(), x_axb()), NOW) else {
        panic!("connects");
    };
    assert!(!c.pre_connect && !c.callee_whisper);
    assert_eq!(c.warn_before_end_seconds, None);
}
