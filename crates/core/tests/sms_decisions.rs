//! Every decision of `sms::decide_text`: relay per mode and direction, a
//! shared number's extension from the text or the sender's last call,
//! holding, blocking (controls, expiry, marketing to axn/axe owners).

use maskline_core::sms::{
    Filter, FilterMode, InboundText, MessageReason, Rule, RuleAction, Sender, SenderId,
    TextDecision, decide_release, decide_text,
};
use maskline_core::{
    BindingId, Controls, Direction, Extension, Index, Mode, NewBinding, Number, TenantId, UnixTime,
};

const COOLDOWN: i64 = 100;
const NOW: UnixTime = 1_000;
const ENDS: UnixTime = 2_000;
const T: TenantId = TenantId(1);
const MARKETING: &str = "双11狂欢，全场满300减50，领券戳 t.cn/abc 回T退订";
const PICKUP_WITH_TAIL: &str = "【菜鸟驿站】取件码12-3-4567，会员日福利 回T退订";

fn num(digits: u64) -> Number {
    Number::from_digits(digits).unwrap()
}
fn ext(s: &str) -> Extension {
    s.parse().unwrap()
}
fn x_axb() -> Number {
    num(8657100000001)
}
fn x_axn() -> Number {
    num(8657100000002)
}
fn x_axe() -> Number {
    num(8657100000004)
}
fn x_unknown() -> Number {
    num(8657199999999)
}
fn a() -> Number {
    num(8613800000001)
}
fn b() -> Number {
    num(8613800000002)
}
fn c() -> Number {
    num(8613800000003)
}
fn n() -> Number {
    num(8613900000009)
}

fn binding(
    id: u128,
    mode: Mode,
    x: Number,
    extension: Option<&str>,
    b: Option<Number>,
) -> NewBinding {
    NewBinding {
        id: BindingId(id),
        tenant: T,
        mode,
        x,
        extension: extension.map(ext),
        a: a(),
        b,
        ends_at: ENDS,
        ended: false,
        controls: Controls::default(),
        pending: false,
    }
}

fn index() -> Index {
    let mut index = Index::new(COOLDOWN);
    index.add_tenant(T);
    for x in [x_axb(), x_axn(), x_axe()] {
        index.add_number(T, x, None).unwrap();
    }
    for nb in [
        binding(1, Mode::Axb, x_axb(), None, Some(b())),
        binding(2, Mode::Axn, x_axn(), None, Some(b())),
        binding(3, Mode::Axe, x_axe(), Some("1234"), None),
        NewBinding {
            a: c(),
            ..binding(4, Mode::Axe, x_axe(), Some("5678"), None)
        },
    ] {
        assert_eq!(index.insert(&nb, NOW - 10), Ok(true));
    }
    index
}

fn standard() -> Filter {
    Filter::default()
}

fn decide(
    index: &Index,
    from: Number,
    to: Number,
    text: &str,
    affinity: Option<Option<&str>>,
) -> TextDecision {
    decide_from(index, &Sender::Number(from), to, text, affinity)
}

fn decide_from(
    index: &Index,
    from: &Sender,
    to: Number,
    text: &str,
    affinity: Option<Option<&str>>,
) -> TextDecision {
    let filter = standard();
    decide_text(
        index,
        &InboundText { from, to, text },
        4,
        affinity.map(|a| a.map(ext)),
        |_| Some(&filter),
        NOW,
    )
}

fn relay_to(d: TextDecision) -> (Number, Direction, BindingId) {
    match d {
        TextDecision::Relay(c) => {
            assert_eq!(
                c.caller_id,
                match c.mode {
                    Mode::Axb => x_axb(),
                    Mode::Axn => x_axn(),
                    Mode::Axe => x_axe(),
                }
            );
            (c.to, c.direction, c.binding)
        }
        other => panic!("expected a relay, got {other:?}"),
    }
}

fn blocked(d: TextDecision) -> MessageReason {
    match d {
        TextDecision::Block { reason, .. } => reason,
        other => panic!("expected a block, got {other:?}"),
    }
}

#[test]
fn axb_relays_both_ways() {
    let i = index();
    assert_eq!(
        relay_to(decide(&i, a(), x_axb(), "hi", None)),
        (b(), Direction::AToB, BindingId(1))
    );
    assert_eq!(
        relay_to(decide(&i, b(), x_axb(), "hi", None)),
        (a(), Direction::BToA, BindingId(1))
    );
}

#[test]
fn axb_is_not_filtered() {
    let i = index();
    assert_eq!(relay_to(decide(&i, b(), x_axb(), MARKETING, None)).0, a());
}

#[test]
fn axn_relays_anyone_to_a_and_a_to_b() {
    let i = index();
    assert_eq!(
        relay_to(decide(&i, n(), x_axn(), "hi", None)),
        (a(), Direction::NToA, BindingId(2))
    );
    assert_eq!(
        relay_to(decide(&i, a(), x_axn(), "hi", None)),
        (b(), Direction::AToB, BindingId(2))
    );
}

#[test]
fn marketing_to_an_axn_owner_is_blocked_but_codes_pass() {
    let i = index();
    assert_eq!(
        blocked(decide(&i, n(), x_axn(), MARKETING, None)),
        MessageReason::Marketing
    );
    assert_eq!(
        relay_to(decide(&i, n(), x_axn(), PICKUP_WITH_TAIL, None)).0,
        a()
    );
    // The owner's own texts are not filtered.
    assert_eq!(relay_to(decide(&i, a(), x_axn(), MARKETING, None)).0, b());
}

#[test]
fn tenant_rules_block_and_the_filter_can_be_off() {
    let i = index();
    let rules = Filter {
        mode: FilterMode::Off,
        rules: vec![Rule::new("贷款", RuleAction::Block).unwrap()],
    };
    let d = |text| {
        decide_text(
            &i,
            &InboundText {
                from: &Sender::Number(n()),
                to: x_axn(),
                text,
            },
            4,
            None,
            |_| Some(&rules),
            NOW,
        )
    };
    assert_eq!(blocked(d("低息贷款，当天放款")), MessageReason::TenantRule);
    assert!(matches!(d(MARKETING), TextDecision::Relay(_)));
}

#[test]
fn axe_routes_by_the_extension_the_text_starts_with() {
    let i = index();
    assert_eq!(
        relay_to(decide(&i, n(), x_axe(), "1234 外卖到了", None)),
        (a(), Direction::NToA, BindingId(3))
    );
    assert_eq!(
        relay_to(decide(&i, n(), x_axe(), "#5678 hello", None)),
        (c(), Direction::NToA, BindingId(4))
    );
}

#[test]
fn axe_without_an_extension_asks_for_the_senders_last_call() {
    let i = index();
    assert_eq!(
        decide(&i, n(), x_axe(), "外卖到了", None),
        TextDecision::NeedAffinity
    );
    // An extension nobody has is no extension.
    assert_eq!(
        decide(&i, n(), x_axe(), "9999 外卖到了", None),
        TextDecision::NeedAffinity
    );
    assert_eq!(
        relay_to(decide(&i, n(), x_axe(), "外卖到了", Some(Some("5678")))).0,
        c()
    );
}

#[test]
fn axe_with_no_extension_anywhere_is_held() {
    let i = index();
    assert_eq!(
        decide(&i, n(), x_axe(), "外卖到了", Some(None)),
        TextDecision::Hold { tenant: T }
    );
    // The last call's extension has no binding any more.
    assert_eq!(
        decide(&i, n(), x_axe(), "外卖到了", Some(Some("4321"))),
        TextDecision::Hold { tenant: T }
    );
}

fn release(
    index: &Index,
    from: &Sender,
    text: &str,
    extension: &str,
    now: UnixTime,
) -> TextDecision {
    let filter = standard();
    decide_release(
        index,
        &InboundText {
            from,
            to: x_axe(),
            text,
        },
        ext(extension),
        |_| Some(&filter),
        now,
    )
}

#[test]
fn a_held_text_is_released_to_the_chosen_extension_only() {
    let i = index();
    let from = Sender::Number(n());
    assert_eq!(
        relay_to(release(&i, &from, "外卖到了", "5678", NOW)),
        (c(), Direction::NToA, BindingId(4))
    );
    // The extension the text starts with does not override the choice.
    assert_eq!(
        relay_to(release(&i, &from, "1234 外卖到了", "5678", NOW)).0,
        c()
    );
    let named = Sender::Id(SenderId::new("Cainiao").unwrap());
    assert_eq!(
        relay_to(release(&i, &named, "取件码 8-2-3401", "1234", NOW)).0,
        a()
    );
}

#[test]
fn a_release_to_no_live_binding_stays_held_and_rules_still_apply() {
    let i = index();
    let from = Sender::Number(n());
    assert_eq!(
        release(&i, &from, "外卖到了", "4321", NOW),
        TextDecision::Hold { tenant: T }
    );
    assert_eq!(
        blocked(release(&i, &from, MARKETING, "1234", NOW)),
        MessageReason::Marketing
    );
    assert_eq!(
        blocked(release(&i, &from, "外卖到了", "1234", ENDS + 10)),
        MessageReason::Expired
    );
    // Past the cool-down the number is free again: no binding, held.
    assert_eq!(
        release(&i, &from, "外卖到了", "1234", ENDS + COOLDOWN + 10),
        TextDecision::Hold { tenant: T }
    );
}

#[test]
fn sms_off_expired_and_unknown_are_blocked() {
    let mut i = index();
    let mut off = binding(5, Mode::Axb, x_axb(), None, Some(n()));
    off.a = c();
    off.controls.sms = false;
    assert_eq!(i.insert(&off, NOW - 5), Ok(true));
    assert_eq!(
        blocked(decide(&i, c(), x_axb(), "hi", None)),
        MessageReason::SmsDisabled
    );
    assert_eq!(
        blocked(decide(&i, n(), x_unknown(), "hi", None)),
        MessageReason::NoBinding
    );
    let late = |from, to| {
        decide_text(
            &i,
            &InboundText {
                from: &Sender::Number(from),
                to,
                text: "hi",
            },
            4,
            None,
            |_| None,
            ENDS + 10,
        )
    };
    assert_eq!(blocked(late(a(), x_axb())), MessageReason::Expired);
    assert_eq!(blocked(late(n(), x_unknown())), MessageReason::NoBinding);
}

#[test]
fn a_direction_the_binding_forbids_is_blocked() {
    let mut i = Index::new(COOLDOWN);
    i.add_tenant(T);
    i.add_number(T, x_axb(), None).unwrap();
    let mut one_way = binding(1, Mode::Axb, x_axb(), None, Some(b()));
    one_way.controls.b_to_a = false;
    assert_eq!(i.insert(&one_way, NOW), Ok(true));
    assert_eq!(
        blocked(decide(&i, b(), x_axb(), "hi", None)),
        MessageReason::DirectionForbidden
    );
    assert_eq!(relay_to(decide(&i, a(), x_axb(), "hi", None)).0, b());
}

#[test]
fn a_without_b_on_axn_is_blocked() {
    let mut i = Index::new(COOLDOWN);
    i.add_tenant(T);
    i.add_number(T, x_axn(), None).unwrap();
    assert_eq!(
        i.insert(&binding(1, Mode::Axn, x_axn(), None, None), NOW),
        Ok(true)
    );
    assert_eq!(
        blocked(decide(&i, a(), x_axn(), "hi", None)),
        MessageReason::NoB
    );
}

#[test]
fn a_short_code_or_named_sender_is_anyone() {
    let i = index();
    let courier = Sender::Id(SenderId::new("10690000123").unwrap());
    let named = Sender::Id(SenderId::new("FedEx").unwrap());
    for from in [&courier, &named] {
        match decide_from(&i, from, x_axn(), "取件码12-3-4567", None) {
            TextDecision::Relay(c) => assert_eq!((c.to, c.direction), (a(), Direction::NToA)),
            other => panic!("{other:?}"),
        }
        // Never a party of an axb binding.
        assert_eq!(
            blocked(decide_from(&i, from, x_axb(), "hi", None)),
            MessageReason::NoBinding
        );
        assert_eq!(
            relay_to(decide_from(&i, from, x_axe(), "5678 hi", None)).0,
            c()
        );
    }
}

#[test]
fn sender_ids_are_checked() {
    for ok in [
        "10690000123",
        "FedEx",
        "SF-Express",
        "DHL Express",
        "A&B.co_1",
    ] {
        assert!(SenderId::new(ok).is_ok(), "{ok}");
    }
    for bad in [
        "",
        " FedEx",
        "FedEx ",
        "+8613800000001",
        "顺丰",
        "a\nb",
        "123456789012345678901",
    ] {
        assert!(SenderId::new(bad).is_err(), "{bad:?}");
    }
    assert_eq!(
        Sender::parse_stored("+8613800000001").unwrap(),
        Sender::Number(a())
    );
    assert_eq!(Sender::parse_stored("FedEx").unwrap().to_string(), "FedEx");
}
