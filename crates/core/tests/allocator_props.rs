//! The allocator: unit tests of `Index::allocate`'s preferences, then a
//! property test that drives random sequences of binds, unbinds, patches,
//! sweeps, retirements and clock moves against a brute-force model.

use maskline_core::{
    AllocRequest, Allocation, Area, AreaMatch, BindingId, Channel, Connect, Controls, Decision,
    Direction, Error, Extension, Inbound, Index, Mode, NewBinding, Number, Prompt, TenantId,
    UnixTime,
};
use proptest::prelude::*;
use proptest::sample::Index as Pick;
use rand::SeedableRng;
use rand::rngs::StdRng;

const T: TenantId = TenantId(1);
const EXT_LEN: u8 = 4;

fn num(digits: u64) -> Number {
    Number::from_digits(digits).expect("test numbers are valid")
}

fn area(s: &str) -> Area {
    Area::new(s).expect("test areas are valid")
}

/// Party `i` (a real number).
fn party(i: u64) -> Number {
    num(8613800000000 + i)
}

/// An index plus what a caller of `allocate` + `insert` keeps around.
struct Fx {
    index: Index,
    rng: StdRng,
    next_id: u128,
}

impl Fx {
    fn new(cooldown: i64) -> Fx {
        let mut index = Index::new(cooldown);
        index.add_tenant(T);
        Fx {
            index,
            rng: StdRng::seed_from_u64(7),
            next_id: 1,
        }
    }

    fn number(&mut self, digits: u64, area_code: Option<&str>) -> Number {
        let x = num(digits);
        let a = area_code.map(area);
        self.index.add_number(T, x, a.as_ref()).expect("add number");
        x
    }

    fn alloc_in(
        &mut self,
        mode: Mode,
        a: Number,
        b: Option<Number>,
        area_code: Option<&str>,
        area_match: AreaMatch,
        now: UnixTime,
    ) -> Result<Allocation, Error> {
        let wanted = area_code.map(area);
        let req = AllocRequest {
            tenant: T,
            mode,
            a,
            b,
            area: wanted.as_ref(),
            area_match,
            extension_len: EXT_LEN,
        };
        self.index.allocate(&req, now, &mut self.rng)
    }

    fn alloc(
        &mut self,
        mode: Mode,
        a: Number,
        b: Option<Number>,
        now: UnixTime,
    ) -> Result<Allocation, Error> {
        self.alloc_in(mode, a, b, None, AreaMatch::Fallback, now)
    }

    /// Inserts what `allocate` chose; the insert must succeed.
    fn insert(
        &mut self,
        mode: Mode,
        a: Number,
        b: Option<Number>,
        alloc: &Allocation,
        now: UnixTime,
        ends_at: UnixTime,
    ) -> BindingId {
        let id = BindingId(self.next_id);
        self.next_id += 1;
        let nb = NewBinding {
            id,
            tenant: T,
            mode,
            x: alloc.x,
            extension: alloc.extension,
            a,
            b,
            ends_at,
            ended: false,
            controls: Controls::default(),
            pending: false,
        };
        assert_eq!(
            self.index.insert(&nb, now),
            Ok(true),
            "insert after allocate"
        );
        self.index.check_invariants(now).expect("invariants");
        id
    }

    /// Allocates (any area) and inserts, expiring at `ends_at`.
    fn bind(
        &mut self,
        mode: Mode,
        a: Number,
        b: Option<Number>,
        now: UnixTime,
        ends_at: UnixTime,
    ) -> (BindingId, Allocation) {
        let alloc = self.alloc(mode, a, b, now).expect("allocate");
        let id = self.insert(mode, a, b, &alloc, now, ends_at);
        (id, alloc)
    }
}

// === Areas ===

#[test]
fn requested_area_is_preferred() {
    let mut fx = Fx::new(50);
    let hz1 = fx.number(8657100000001, Some("0571"));
    fx.number(8657100000002, Some("0571"));
    let sz1 = fx.number(8675500000001, Some("0755"));
    for area_match in [AreaMatch::Strict, AreaMatch::Fallback] {
        let got = fx
            .alloc_in(
                Mode::Axb,
                party(1),
                Some(party(2)),
                Some("0755"),
                area_match,
                0,
            )
            .expect("0755 has a free number");
        assert_eq!(got.x, sz1);
        assert_eq!(got.area, Some(area("0755")));
        let got = fx
            .alloc_in(Mode::Axn, party(1), None, Some("0571"), area_match, 0)
            .expect("0571 has a free number");
        assert_eq!(got.x, hz1);
        assert_eq!(got.area, Some(area("0571")));
    }
}

#[test]
fn requested_area_beats_packing_and_sticky_reuse() {
    let mut fx = Fx::new(50);
    let hz = fx.number(8657100000001, Some("0571"));
    let sz = fx.number(8675500000001, Some("0755"));
    // hz serves axb and the pair (1, 2) had it before.
    let (id, first) = fx.bind(Mode::Axb, party(1), Some(party(2)), 0, 10);
    assert_eq!(first.x, hz);
    fx.bind(Mode::Axb, party(5), Some(party(6)), 0, 1_000);
    fx.index.end(id, 10);
    let got = fx
        .alloc_in(
            Mode::Axb,
            party(1),
            Some(party(2)),
            Some("0755"),
            AreaMatch::Fallback,
            100,
        )
        .expect("0755 is free");
    assert_eq!(got.x, sz);
    let got = fx
        .alloc_in(
            Mode::Axb,
            party(3),
            Some(party(4)),
            Some("0755"),
            AreaMatch::Fallback,
            100,
        )
        .expect("0755 is free");
    assert_eq!(got.x, sz);
}

#[test]
fn strict_area_exhausted_is_pool_exhausted_and_fallback_takes_another_area() {
    let mut fx = Fx::new(50);
    let hz = fx.number(8657100000001, Some("0571"));
    let sz = fx.number(8675500000001, Some("0755"));
    let alloc = fx
        .alloc_in(
            Mode::Axn,
            party(1),
            None,
            Some("0571"),
            AreaMatch::Strict,
            0,
        )
        .expect("free");
    assert_eq!(alloc.x, hz);
    fx.insert(Mode::Axn, party(1), None, &alloc, 0, 1_000);

    assert_eq!(
        fx.alloc_in(
            Mode::Axn,
            party(2),
            None,
            Some("0571"),
            AreaMatch::Strict,
            0
        ),
        Err(Error::PoolExhausted)
    );
    let got = fx
        .alloc_in(
            Mode::Axn,
            party(2),
            None,
            Some("0571"),
            AreaMatch::Fallback,
            0,
        )
        .expect("fallback to 0755");
    assert_eq!(got.x, sz);
    assert_eq!(got.area, Some(area("0755")));
}

#[test]
fn unknown_area_is_exhausted_when_strict_and_ignored_on_fallback() {
    let mut fx = Fx::new(50);
    let hz = fx.number(8657100000001, Some("0571"));
    assert_eq!(
        fx.alloc_in(
            Mode::Axb,
            party(1),
            Some(party(2)),
            Some("0999"),
            AreaMatch::Strict,
            0
        ),
        Err(Error::PoolExhausted)
    );
    let got = fx
        .alloc_in(
            Mode::Axb,
            party(1),
            Some(party(2)),
            Some("0999"),
            AreaMatch::Fallback,
            0,
        )
        .expect("any area");
    assert_eq!(got.x, hz);
}

#[test]
fn numbers_without_area_serve_requests_without_area() {
    let mut fx = Fx::new(50);
    let plain = fx.number(8613000000001, None);
    let (_, alloc) = fx.bind(Mode::Axb, party(1), Some(party(2)), 0, 100);
    assert_eq!(alloc.x, plain);
    assert_eq!(alloc.area, None);
}

// === Sticky reuse ===

/// Binds (1, 3) on the first number so that the pair (1, 2) lands on the
/// second, then unbinds both at t=10 (cool-down 50 ends at t=60). Returns
/// both numbers; the pair had the second.
fn pair_on_second_number(fx: &mut Fx) -> (Number, Number) {
    let x1 = fx.number(8657100000001, Some("0571"));
    let x2 = fx.number(8657100000002, Some("0571"));
    let (blocker, alloc) = fx.bind(Mode::Axb, party(1), Some(party(3)), 0, 1_000);
    assert_eq!(alloc.x, x1);
    let (pair, alloc) = fx.bind(Mode::Axb, party(1), Some(party(2)), 0, 1_000);
    assert_eq!(alloc.x, x2, "party 1 is busy on x1");
    fx.index.end(blocker, 10);
    fx.index.end(pair, 10);
    (x1, x2)
}

#[test]
fn pair_gets_its_x_back_after_cool_down() {
    for sweep in [false, true] {
        let mut fx = Fx::new(50);
        let (x1, x2) = pair_on_second_number(&mut fx);
        let now = 10 + 50;
        if sweep {
            fx.index.sweep(now, usize::MAX);
            assert!(fx.index.is_empty());
        }
        // A new pair takes the first number ...
        let fresh = fx
            .alloc(Mode::Axb, party(4), Some(party(5)), now)
            .expect("free");
        assert_eq!(fresh.x, x1, "sweep={sweep}");
        // ... the old pair its own, in either order.
        let again = fx
            .alloc(Mode::Axb, party(1), Some(party(2)), now)
            .expect("free");
        assert_eq!(again.x, x2, "sweep={sweep}");
        let swapped = fx
            .alloc(Mode::Axb, party(2), Some(party(1)), now)
            .expect("free");
        assert_eq!(swapped.x, x2, "sweep={sweep} swapped");
    }
}

#[test]
fn pair_cannot_reuse_its_x_during_cool_down() {
    let mut fx = Fx::new(50);
    let (x1, _) = pair_on_second_number(&mut fx);
    // Both numbers still reserve parties 1 and 2 (x2) and 1 and 3 (x1).
    assert_eq!(
        fx.alloc(Mode::Axb, party(1), Some(party(2)), 59),
        Err(Error::PoolExhausted)
    );
    let other = fx.alloc(Mode::Axb, party(2), Some(party(3)), 59);
    assert_eq!(other, Err(Error::PoolExhausted), "2 cools on x2, 3 on x1");
    let x = fx
        .alloc(Mode::Axb, party(4), Some(party(5)), 59)
        .expect("strangers");
    assert_eq!(x.x, x1);
}

#[test]
fn axn_owner_gets_its_x_back_after_cool_down() {
    for sweep in [false, true] {
        let mut fx = Fx::new(50);
        let x1 = fx.number(8657100000001, None);
        let x2 = fx.number(8657100000002, None);
        let (other, alloc) = fx.bind(Mode::Axn, party(9), None, 0, 1_000);
        assert_eq!(alloc.x, x1);
        let (own, first) = fx.bind(Mode::Axn, party(1), Some(party(2)), 0, 1_000);
        assert_eq!(first.x, x2);
        fx.index.end(other, 10);
        fx.index.end(own, 10);
        if sweep {
            fx.index.sweep(60, usize::MAX);
        }
        // x1 is first in line, but A had x2 (whatever B is now).
        let again = fx.alloc(Mode::Axn, party(1), None, 60).expect("free");
        assert_eq!(again.x, x2, "sweep={sweep}");
        let fresh = fx.alloc(Mode::Axn, party(3), None, 60).expect("free");
        assert_eq!(fresh.x, x1, "sweep={sweep}");
    }
}

#[test]
fn axe_owner_gets_its_extension_back_after_cool_down() {
    let mut fx = Fx::new(50);
    let x = fx.number(8657100000001, None);
    let (own, first) = fx.bind(Mode::Axe, party(1), None, 0, 1_000);
    fx.index.end(own, 10);
    let again = fx.alloc(Mode::Axe, party(1), None, 60).expect("free");
    assert_eq!(again.x, x);
    assert_eq!(again.extension, first.extension);
}

// === Packing and modes ===

#[test]
fn axb_bindings_with_disjoint_parties_pack_onto_one_number() {
    let mut fx = Fx::new(50);
    let x1 = fx.number(8657100000001, None);
    fx.number(8657100000002, None);
    fx.number(8657100000003, None);
    for i in 0..4 {
        let (_, alloc) = fx.bind(Mode::Axb, party(2 * i), Some(party(2 * i + 1)), 0, 100);
        assert_eq!(alloc.x, x1, "pair {i}");
    }
    // A party already on x1 moves to the next number.
    let (_, alloc) = fx.bind(Mode::Axb, party(0), Some(party(20)), 0, 100);
    assert_ne!(alloc.x, x1);
}

#[test]
fn axe_bindings_pack_onto_one_number() {
    let mut fx = Fx::new(50);
    let x1 = fx.number(8657100000001, None);
    fx.number(8657100000002, None);
    for i in 0..10 {
        let (_, alloc) = fx.bind(Mode::Axe, party(i), None, 0, 100);
        assert_eq!(alloc.x, x1, "owner {i}");
    }
}

#[test]
fn axn_takes_a_free_number_alone() {
    let mut fx = Fx::new(50);
    let x1 = fx.number(8657100000001, None);
    let x2 = fx.number(8657100000002, None);
    let x3 = fx.number(8657100000003, None);
    let (_, axb) = fx.bind(Mode::Axb, party(1), Some(party(2)), 0, 1_000);
    assert_eq!(axb.x, x1);
    let (_, first) = fx.bind(Mode::Axn, party(3), None, 0, 1_000);
    assert_eq!(first.x, x2, "axn never joins the axb number");
    let (_, second) = fx.bind(Mode::Axn, party(4), Some(party(5)), 0, 1_000);
    assert_eq!(second.x, x3, "axn never shares");
    assert_eq!(
        fx.alloc(Mode::Axn, party(6), None, 0),
        Err(Error::PoolExhausted),
        "the axb number is never given to axn"
    );
    assert_eq!(
        fx.alloc(Mode::Axe, party(6), None, 0),
        Err(Error::PoolExhausted),
        "nor to axe"
    );
    // axb still packs onto its own number.
    assert_eq!(
        fx.alloc(Mode::Axb, party(6), Some(party(7)), 0)
            .map(|a| a.x),
        Ok(x1)
    );
}

#[test]
fn number_serving_axe_is_not_given_to_axb() {
    let mut fx = Fx::new(50);
    let x1 = fx.number(8657100000001, None);
    let (_, axe) = fx.bind(Mode::Axe, party(1), None, 0, 1_000);
    assert_eq!(axe.x, x1);
    assert_eq!(
        fx.alloc(Mode::Axb, party(2), Some(party(3)), 0),
        Err(Error::PoolExhausted)
    );
}

#[test]
fn number_returns_to_any_mode_after_cool_down_and_sweep() {
    let mut fx = Fx::new(50);
    let x1 = fx.number(8657100000001, None);
    let (id, _) = fx.bind(Mode::Axb, party(1), Some(party(2)), 0, 1_000);
    fx.index.end(id, 10);
    assert_eq!(
        fx.alloc(Mode::Axn, party(3), None, 59),
        Err(Error::PoolExhausted)
    );
    fx.index.sweep(60, usize::MAX);
    assert_eq!(fx.alloc(Mode::Axn, party(3), None, 60).map(|a| a.x), Ok(x1));
}

/// "Live is decided by time, not by housekeeping": a number whose only
/// bindings are past cool-down is free, however late the sweep runs.
#[test]
fn number_returns_to_any_mode_after_cool_down_without_sweep() {
    for (old, new) in [
        (Mode::Axb, Mode::Axn),
        (Mode::Axb, Mode::Axe),
        (Mode::Axn, Mode::Axn),
        (Mode::Axn, Mode::Axb),
        (Mode::Axe, Mode::Axn),
    ] {
        let mut fx = Fx::new(50);
        let x1 = fx.number(8657100000001, None);
        let b = (old == Mode::Axb).then(|| party(2));
        let (id, _) = fx.bind(old, party(1), b, 0, 1_000);
        fx.index.end(id, 10);
        let new_b = (new == Mode::Axb).then(|| party(4));
        let got = fx.alloc(new, party(3), new_b, 60);
        assert_eq!(got.as_ref().map(|a| a.x), Ok(x1), "{old} then {new}");
        let alloc = got.expect("checked");
        fx.insert(new, party(3), new_b, &alloc, 60, 1_000);
    }
}

// === Extensions ===

#[test]
fn axe_extensions_have_the_configured_length_are_unique_and_not_sequential() {
    for len in [1u8, 4, 6] {
        let mut fx = Fx::new(50);
        let x = fx.number(8657100000001, None);
        let mut values = Vec::new();
        // One digit: 10 extensions, half of which may be handed out.
        let count = if len == 1 { 5 } else { 50 };
        for i in 0..count {
            let req = AllocRequest {
                tenant: T,
                mode: Mode::Axe,
                a: party(i),
                b: None,
                area: None,
                area_match: AreaMatch::Fallback,
                extension_len: len,
            };
            let alloc = fx.index.allocate(&req, 0, &mut fx.rng).expect("room");
            assert_eq!(alloc.x, x);
            let e = alloc.extension.expect("axe gets an extension");
            assert_eq!(e.len(), len);
            assert_eq!(e.to_string().len(), usize::from(len));
            fx.insert(Mode::Axe, party(i), None, &alloc, 0, 1_000);
            values.push(e.value());
        }
        let mut unique = values.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), values.len(), "len {len}: unique {values:?}");
        if len > 1 {
            assert!(
                !values.windows(2).all(|w| w[1] == w[0] + 1),
                "len {len}: sequential {values:?}"
            );
            assert!(
                !values.windows(2).all(|w| w[1] > w[0]),
                "len {len}: increasing {values:?}"
            );
        }
    }
}

#[test]
fn axe_moves_on_when_a_number_is_half_full() {
    let mut fx = Fx::new(50);
    let x1 = fx.number(8657100000001, None);
    let x2 = fx.number(8657100000002, None);
    let req = |a| AllocRequest {
        tenant: T,
        mode: Mode::Axe,
        a,
        b: None,
        area: None,
        area_match: AreaMatch::Fallback,
        extension_len: 1,
    };
    let mut on = Vec::new();
    for i in 0..10 {
        let alloc = fx
            .index
            .allocate(&req(party(i)), 0, &mut fx.rng)
            .expect("room");
        fx.insert(Mode::Axe, party(i), None, &alloc, 0, 1_000);
        on.push(alloc.x);
    }
    assert_eq!(on[..5], [x1; 5]);
    assert_eq!(on[5..], [x2; 5]);
    assert_eq!(
        fx.index.allocate(&req(party(10)), 0, &mut fx.rng),
        Err(Error::PoolExhausted)
    );
}

#[test]
fn extension_length_out_of_range_is_refused() {
    let mut fx = Fx::new(50);
    fx.number(8657100000001, None);
    for len in [0, 9] {
        let req = AllocRequest {
            tenant: T,
            mode: Mode::Axe,
            a: party(1),
            b: None,
            area: None,
            area_match: AreaMatch::Fallback,
            extension_len: len,
        };
        assert_eq!(
            fx.index.allocate(&req, 0, &mut fx.rng),
            Err(Error::InvalidExtension)
        );
    }
}

// === Refusals ===

#[test]
fn pool_exhausted_when_the_party_is_busy_on_every_number() {
    let mut fx = Fx::new(50);
    for i in 1..=3 {
        fx.number(8657100000000 + i, None);
    }
    for i in 1..=3 {
        fx.bind(Mode::Axb, party(0), Some(party(i)), 0, 1_000);
    }
    assert_eq!(
        fx.alloc(Mode::Axb, party(0), Some(party(4)), 0),
        Err(Error::PoolExhausted)
    );
    assert_eq!(
        fx.alloc(Mode::Axb, party(4), Some(party(0)), 0),
        Err(Error::PoolExhausted),
        "as B too"
    );
    assert_eq!(
        fx.alloc(Mode::Axe, party(0), None, 0),
        Err(Error::PoolExhausted),
        "numbers serving axb do not take axe"
    );
    // Other parties still fit.
    assert!(fx.alloc(Mode::Axb, party(5), Some(party(6)), 0).is_ok());
    // Once the party's bindings have cooled down, it fits again.
    assert!(
        fx.alloc(Mode::Axb, party(0), Some(party(4)), 1_049)
            .is_err()
    );
    assert!(fx.alloc(Mode::Axb, party(0), Some(party(4)), 1_050).is_ok());
}

#[test]
fn same_party_and_missing_b_are_refused() {
    let mut fx = Fx::new(50);
    fx.number(8657100000001, None);
    for mode in Mode::ALL {
        assert_eq!(
            fx.alloc(mode, party(1), Some(party(1)), 0),
            Err(Error::SameParty),
            "{mode}"
        );
    }
    assert_eq!(fx.alloc(Mode::Axb, party(1), None, 0), Err(Error::MissingB));
    assert!(fx.alloc(Mode::Axn, party(1), None, 0).is_ok());
    assert!(fx.alloc(Mode::Axe, party(1), None, 0).is_ok());
}

#[test]
fn unknown_tenant_and_other_tenants_numbers_are_never_allocated() {
    let mut fx = Fx::new(50);
    let other = TenantId(2);
    fx.index
        .add_number(other, num(8657100000009), None)
        .expect("other pool");
    let req = |tenant| AllocRequest {
        tenant,
        mode: Mode::Axn,
        a: party(1),
        b: None,
        area: None,
        area_match: AreaMatch::Fallback,
        extension_len: EXT_LEN,
    };
    assert_eq!(
        fx.index.allocate(&req(TenantId(3)), 0, &mut fx.rng),
        Err(Error::PoolExhausted)
    );
    assert_eq!(
        fx.index.allocate(&req(T), 0, &mut fx.rng),
        Err(Error::PoolExhausted),
        "tenant 1 has no numbers"
    );
    let mine = fx.number(8657100000001, None);
    assert_eq!(
        fx.index.allocate(&req(T), 0, &mut fx.rng).map(|a| a.x),
        Ok(mine)
    );
}

#[test]
fn retired_number_is_never_allocated_and_can_come_back() {
    let mut fx = Fx::new(50);
    let x1 = fx.number(8657100000001, None);
    let (id, _) = fx.bind(Mode::Axb, party(1), Some(party(2)), 0, 1_000);
    assert_eq!(fx.index.retire_number(T, x1, 0), Err(Error::NumberInUse));
    fx.index.end(id, 10);
    assert_eq!(fx.index.retire_number(T, x1, 59), Err(Error::NumberInUse));
    assert_eq!(fx.index.retire_number(T, x1, 60), Ok(()));
    assert_eq!(
        fx.index.retire_number(T, x1, 60),
        Err(Error::NumberNotFound)
    );
    assert_eq!(
        fx.alloc(Mode::Axb, party(1), Some(party(2)), 60),
        Err(Error::PoolExhausted),
        "sticky reuse does not bring back a retired number"
    );
    fx.number(8657100000001, None);
    assert_eq!(
        fx.alloc(Mode::Axb, party(1), Some(party(2)), 60)
            .map(|a| a.x),
        Ok(x1)
    );
    fx.index.check_invariants(60).expect("invariants");
}

// === Housekeeping ===

#[test]
fn expiry_of_a_record_dropped_before_any_sweep_is_still_reported() {
    let mut fx = Fx::new(50);
    let x1 = fx.number(8657100000001, None);
    let x2 = fx.number(8657100000002, None);
    let (pair, first) = fx.bind(Mode::Axb, party(1), Some(party(2)), 0, 100);
    assert_eq!(first.x, x1);
    let (owner, held) = fx.bind(Mode::Axn, party(3), None, 0, 100);
    assert_eq!(held.x, x2);
    // Past cool-down and never swept: the pair binds again on x1, which
    // drops its old record on the way in ...
    let (_, again) = fx.bind(Mode::Axb, party(1), Some(party(2)), 150, 1_000);
    assert_eq!(again.x, x1);
    // ... and retiring x2 drops the axn record.
    assert_eq!(fx.index.retire_number(T, x2, 150), Ok(()));
    // The store still learns that both expired, once.
    let mut expired = fx.index.sweep(150, 0).expired;
    expired.sort();
    assert_eq!(expired, vec![(pair, 100), (owner, 100)]);
    assert!(fx.index.sweep(150, usize::MAX).expired.is_empty());
}

#[test]
fn unbound_record_dropped_before_any_sweep_is_not_reported_as_expired() {
    let mut fx = Fx::new(50);
    fx.number(8657100000001, None);
    let (pair, _) = fx.bind(Mode::Axb, party(1), Some(party(2)), 0, 100);
    fx.index.end(pair, 10);
    fx.bind(Mode::Axb, party(1), Some(party(2)), 150, 1_000);
    assert!(fx.index.sweep(150, usize::MAX).expired.is_empty());
}

#[test]
fn sweep_with_unbounded_budget_after_a_partial_pass() {
    let mut fx = Fx::new(50);
    fx.number(8657100000001, None);
    for i in 0..3 {
        fx.bind(Mode::Axb, party(2 * i), Some(party(2 * i + 1)), 0, 10);
    }
    let first = fx.index.sweep(100, 1);
    assert_eq!(first.removed, 1);
    assert!(first.census.is_none());
    let rest = fx.index.sweep(100, usize::MAX);
    assert_eq!(rest.removed, 2);
    assert!(rest.census.is_some());
    assert!(fx.index.is_empty());
}

// === Property test ===

const COOLDOWN: i64 = 50;
const PARTIES: u8 = 8;
const AREAS: [&str; 2] = ["0571", "0755"];
/// Numbers of the tenant under test: (digits, area index).
const POOL: [(u64, usize); 6] = [
    (8657100000001, 0),
    (8657100000002, 0),
    (8657100000003, 0),
    (8675500000001, 1),
    (8675500000002, 1),
    (8675500000003, 1),
];
/// A number of another tenant: never allocated, never routed for T.
const FOREIGN: u64 = 8657100000009;
/// Never a party of any binding.
const STRANGER: u64 = 8613900000000;

#[derive(Clone, Debug)]
enum Op {
    Bind {
        mode: Mode,
        a: u8,
        b: Option<u8>,
        /// 0 and 1 are the pool's areas; 2 is an area without numbers.
        area: Option<u8>,
        strict: bool,
        expires_in: i64,
    },
    /// Unbind the i-th live binding.
    Unbind(Pick),
    AdvanceTime(i64),
    /// Change B of the i-th active binding.
    PatchB(Pick, Option<u8>),
    /// Move the expiry of the i-th active binding to now + secs.
    PatchExpiry(Pick, i64),
    Sweep(usize),
    /// Retire a pool number (or bring a retired one back).
    RetireNumber(usize),
}

fn mode_strategy() -> impl Strategy<Value = Mode> {
    prop_oneof![Just(Mode::Axb), Just(Mode::Axn), Just(Mode::Axe)]
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (
            mode_strategy(),
            0..PARTIES,
            prop::option::weighted(0.9, 0..PARTIES),
            prop::option::weighted(0.7, 0..3u8),
            any::<bool>(),
            1..200i64,
        )
            .prop_map(|(mode, a, b, area, strict, expires_in)| Op::Bind {
                mode,
                a,
                b,
                area,
                strict,
                expires_in,
            }),
        2 => any::<Pick>().prop_map(Op::Unbind),
        3 => (0..120i64).prop_map(Op::AdvanceTime),
        1 => (any::<Pick>(), prop::option::weighted(0.8, 0..PARTIES))
            .prop_map(|(i, b)| Op::PatchB(i, b)),
        1 => (any::<Pick>(), 0..200i64).prop_map(|(i, s)| Op::PatchExpiry(i, s)),
        1 => prop_oneof![Just(1usize), Just(3), Just(usize::MAX)].prop_map(Op::Sweep),
        1 => (0..POOL.len()).prop_map(Op::RetireNumber),
    ]
}

/// A binding as the test remembers it.
#[derive(Clone, Debug)]
struct MBinding {
    id: BindingId,
    mode: Mode,
    x: Number,
    ext: Option<Extension>,
    a: Number,
    b: Option<Number>,
    /// min(expires_at, unbind time).
    ends_at: UnixTime,
    unbound: bool,
    expiry_reported: bool,
}

impl MBinding {
    fn live(&self, now: UnixTime) -> bool {
        now < self.ends_at + COOLDOWN
    }

    fn active(&self, now: UnixTime) -> bool {
        now < self.ends_at
    }

    fn has_party(&self, p: Number) -> bool {
        self.a == p || self.b == Some(p)
    }
}

struct Model {
    now: UnixTime,
    bindings: Vec<MBinding>,
    retired: [bool; POOL.len()],
    next_id: u128,
}

fn pool_number(i: usize) -> Number {
    num(POOL[i].0)
}

impl Model {
    fn live(&self) -> impl Iterator<Item = &MBinding> {
        self.bindings.iter().filter(|b| b.live(self.now))
    }

    fn live_on(&self, x: Number) -> impl Iterator<Item = &MBinding> {
        self.live().filter(move |b| b.x == x)
    }

    fn pool_index(&self, x: Number) -> Option<usize> {
        POOL.iter().position(|&(d, _)| num(d) == x)
    }

    /// Brute force, from the invariants alone: could `x` take this binding
    /// now without breaking any of them?
    fn eligible(&self, x: Number, mode: Mode, a: Number, b: Option<Number>) -> bool {
        let Some(i) = self.pool_index(x) else {
            return false;
        };
        if self.retired[i] {
            return false;
        }
        let live: Vec<&MBinding> = self.live_on(x).collect();
        if live.iter().any(|l| l.mode != mode) {
            return false;
        }
        match mode {
            Mode::Axn => live.is_empty(),
            Mode::Axb | Mode::Axe => !live
                .iter()
                .any(|l| l.has_party(a) || b.is_some_and(|b| l.has_party(b))),
        }
    }

    /// Pool indices a request may take its number from.
    fn allowed(&self, area: Option<u8>, strict: bool) -> Vec<usize> {
        (0..POOL.len())
            .filter(|&i| match (area, strict) {
                (Some(want), true) => usize::from(want) == POOL[i].1,
                _ => true,
            })
            .collect()
    }
}

fn check_model_invariants(model: &Model) -> Result<(), TestCaseError> {
    for (i, &(digits, _)) in POOL.iter().enumerate() {
        let x = num(digits);
        let live: Vec<&MBinding> = model.live_on(x).collect();
        prop_assert!(
            !model.retired[i] || live.is_empty(),
            "live binding on retired number {i}"
        );
        if let Some(first) = live.first() {
            prop_assert!(
                live.iter().all(|l| l.mode == first.mode),
                "two modes on number {i}: {live:?}"
            );
        }
        if live.iter().any(|l| l.mode == Mode::Axn) {
            prop_assert_eq!(live.len(), 1, "axn number {} shared: {:?}", i, live);
        }
        let mut parties = Vec::new();
        let mut exts = Vec::new();
        for l in &live {
            parties.push(l.a);
            parties.extend(l.b);
            exts.extend(l.ext);
        }
        let n_parties = parties.len();
        parties.sort_unstable();
        parties.dedup();
        prop_assert_eq!(
            parties.len(),
            n_parties,
            "party twice on number {}: {:?}",
            i,
            live
        );
        let n_exts = exts.len();
        exts.sort_unstable_by_key(|e| (e.len(), e.value()));
        exts.dedup();
        prop_assert_eq!(
            exts.len(),
            n_exts,
            "extension twice on number {}: {:?}",
            i,
            live
        );
    }
    Ok(())
}

/// What `decide` must answer for `caller` dialling `x` (with `ext`), from the
/// model alone. `None`: the model does not pin the answer down.
fn expected(model: &Model, caller: Number, x: Number, ext: Option<Extension>) -> Option<Decision> {
    let now = model.now;
    let i = model.pool_index(x)?;
    let no_binding = Decision::Announce {
        prompt: Prompt::NoBinding,
        binding: None,
        tenant: Some(T),
    };
    if model.retired[i] {
        return Some(Decision::Announce {
            prompt: Prompt::NoBinding,
            binding: None,
            tenant: None,
        });
    }
    let live: Vec<&MBinding> = model.live_on(x).collect();
    let Some(first) = live.first() else {
        // Nothing live; a number whose last binding was axe may still ask
        // for the extension first.
        return if ext.is_none() {
            None
        } else {
            Some(no_binding)
        };
    };
    let found = match first.mode {
        Mode::Axb => live.iter().find(|l| l.has_party(caller)),
        Mode::Axn => Some(first),
        Mode::Axe => match ext {
            None => return Some(Decision::CollectExtension { tenant: T }),
            Some(e) => live.iter().find(|l| l.ext == Some(e)),
        },
    };
    let Some(l) = found else {
        return Some(no_binding);
    };
    if !l.active(now) {
        return Some(Decision::Announce {
            prompt: Prompt::Expired,
            binding: Some(l.id),
            tenant: Some(T),
        });
    }
    let (direction, to) = if caller == l.a {
        match l.b {
            Some(b) => (Direction::AToB, b),
            None => {
                return Some(Decision::Announce {
                    prompt: Prompt::NoB,
                    binding: Some(l.id),
                    tenant: Some(T),
                });
            }
        }
    } else if Some(caller) == l.b {
        (Direction::BToA, l.a)
    } else {
        (Direction::NToA, l.a)
    };
    Some(Decision::Connect(Connect {
        binding: l.id,
        tenant: T,
        mode: l.mode,
        direction,
        to,
        caller_id: x,
        max_call_seconds: None,
        record: false,
        pre_connect: false,
        callee_whisper: false,
        warn_before_end_seconds: None,
    }))
}

fn check_decisions(index: &Index, model: &Model) -> Result<(), TestCaseError> {
    let now = model.now;
    let voice = |caller, called, extension| Inbound {
        caller,
        called,
        extension,
        channel: Channel::Voice,
    };
    // The properties as stated: bound parties reach each other, cooling
    // bindings announce "expired".
    for l in model.live() {
        let ext = l.ext;
        match (l.mode, l.active(now)) {
            (Mode::Axb, true) => {
                let b = l.b.expect("axb has b");
                match index.decide(&voice(l.a, l.x, None), now) {
                    Decision::Connect(c) => {
                        prop_assert_eq!((c.binding, c.to, c.caller_id), (l.id, b, l.x));
                        prop_assert_eq!(c.direction, Direction::AToB);
                    }
                    d => prop_assert!(false, "a of {:?} gets {:?}", l, d),
                }
                match index.decide(&voice(b, l.x, None), now) {
                    Decision::Connect(c) => {
                        prop_assert_eq!((c.binding, c.to, c.caller_id), (l.id, l.a, l.x));
                        prop_assert_eq!(c.direction, Direction::BToA);
                    }
                    d => prop_assert!(false, "b of {:?} gets {:?}", l, d),
                }
            }
            (_, true) => {
                let got = index.decide(&voice(num(STRANGER), l.x, ext), now);
                prop_assert!(
                    matches!(got, Decision::Connect(c) if c.to == l.a && c.binding == l.id),
                    "anyone calling {:?} gets {:?}",
                    l,
                    got
                );
            }
            (_, false) => {
                let want = Decision::Announce {
                    prompt: Prompt::Expired,
                    binding: Some(l.id),
                    tenant: Some(T),
                };
                let mut callers = vec![l.a];
                callers.extend(l.b);
                if l.mode != Mode::Axb {
                    callers.push(num(STRANGER));
                }
                for caller in callers {
                    let got = index.decide(&voice(caller, l.x, ext), now);
                    prop_assert_eq!(got, want, "cooling {:?}", l);
                }
            }
        }
    }
    // And the whole table: every caller on every number.
    let mut callers: Vec<Number> = (0..PARTIES).map(|p| party(u64::from(p))).collect();
    callers.push(num(STRANGER));
    let unused_ext = Extension::new(10_000 - 1, EXT_LEN).expect("valid");
    for &(digits, _) in &POOL {
        let x = num(digits);
        let mut exts: Vec<Option<Extension>> = vec![None];
        exts.extend(model.live_on(x).filter_map(|l| l.ext).map(Some));
        if !exts.contains(&Some(unused_ext)) {
            exts.push(Some(unused_ext));
        }
        for &caller in &callers {
            for &ext in &exts {
                let got = index.decide(&voice(caller, x, ext), now);
                if let Some(want) = expected(model, caller, x, ext) {
                    prop_assert_eq!(got, want, "caller {:?} x {:?} ext {:?}", caller, x, ext);
                } else {
                    prop_assert!(
                        matches!(
                            got,
                            Decision::CollectExtension { tenant: T }
                                | Decision::Announce {
                                    prompt: Prompt::NoBinding,
                                    binding: None,
                                    tenant: Some(T)
                                }
                        ),
                        "idle number {:?} gets {:?}",
                        x,
                        got
                    );
                }
            }
        }
    }
    let foreign = index.decide(&voice(party(0), num(FOREIGN), None), now);
    prop_assert!(
        matches!(foreign, Decision::Announce { tenant: Some(t), .. } if t != T),
        "{:?}",
        foreign
    );
    Ok(())
}

fn apply(
    index: &mut Index,
    model: &mut Model,
    rng: &mut StdRng,
    op: &Op,
) -> Result<(), TestCaseError> {
    let now = model.now;
    match *op {
        Op::Bind {
            mode,
            a,
            b,
            area: area_ix,
            strict,
            expires_in,
        } => {
            let a = party(u64::from(a));
            let b = b.map(|b| party(u64::from(b)));
            let wanted = area_ix.map(|i| area(["0571", "0755", "0999"][usize::from(i)]));
            let req = AllocRequest {
                tenant: T,
                mode,
                a,
                b,
                area: wanted.as_ref(),
                area_match: if strict {
                    AreaMatch::Strict
                } else {
                    AreaMatch::Fallback
                },
                extension_len: EXT_LEN,
            };
            let got = index.allocate(&req, now, rng);
            let refused = match (mode, b) {
                (Mode::Axb, None) => Some(Error::MissingB),
                (_, Some(b)) if b == a => Some(Error::SameParty),
                _ => None,
            };
            if let Some(e) = refused {
                prop_assert_eq!(got, Err(e));
                return Ok(());
            }
            let allowed = model.allowed(area_ix, strict);
            let eligible: Vec<usize> = allowed
                .iter()
                .copied()
                .filter(|&i| model.eligible(pool_number(i), mode, a, b))
                .collect();
            match got {
                Err(Error::PoolExhausted) => {
                    prop_assert!(
                        eligible.is_empty(),
                        "pool_exhausted for {:?} {:?}/{:?} area {:?} strict {} at {}, \
                         but numbers {:?} are eligible; live: {:?}",
                        mode,
                        a,
                        b,
                        area_ix,
                        strict,
                        now,
                        eligible,
                        model.live().collect::<Vec<_>>()
                    );
                }
                Err(e) => prop_assert!(false, "allocate failed: {e:?}"),
                Ok(alloc) => {
                    let i = model.pool_index(alloc.x);
                    prop_assert!(i.is_some(), "allocated {:?} outside the pool", alloc.x);
                    let i = i.expect("checked");
                    prop_assert!(
                        eligible.contains(&i),
                        "allocated number {} for {:?} {:?}/{:?}, but eligible are {:?}; live: {:?}",
                        i,
                        mode,
                        a,
                        b,
                        eligible,
                        model.live().collect::<Vec<_>>()
                    );
                    prop_assert_eq!(alloc.area.clone(), Some(area(AREAS[POOL[i].1])));
                    // The requested area wins whenever it can serve.
                    if let Some(want) = area_ix.map(usize::from)
                        && eligible.iter().any(|&j| POOL[j].1 == want)
                    {
                        prop_assert_eq!(POOL[i].1, want, "requested area not preferred");
                    }
                    match mode {
                        Mode::Axe => {
                            let e = alloc.extension;
                            prop_assert!(e.is_some_and(|e| e.len() == EXT_LEN), "{:?}", e);
                            prop_assert!(
                                !model.live_on(alloc.x).any(|l| l.ext == e),
                                "extension {:?} is live on {:?}",
                                e,
                                alloc.x
                            );
                        }
                        Mode::Axb | Mode::Axn => prop_assert_eq!(alloc.extension, None),
                    }
                    let id = BindingId(model.next_id);
                    model.next_id += 1;
                    let nb = NewBinding {
                        id,
                        tenant: T,
                        mode,
                        x: alloc.x,
                        extension: alloc.extension,
                        a,
                        b,
                        ends_at: now + expires_in,
                        ended: false,
                        controls: Controls::default(),
                        pending: false,
                    };
                    prop_assert_eq!(index.insert(&nb, now), Ok(true), "insert {:?}", nb);
                    model.bindings.push(MBinding {
                        id,
                        mode,
                        x: alloc.x,
                        ext: alloc.extension,
                        a,
                        b,
                        ends_at: nb.ends_at,
                        unbound: false,
                        expiry_reported: false,
                    });
                }
            }
        }
        Op::Unbind(pick) => {
            let live: Vec<usize> = (0..model.bindings.len())
                .filter(|&j| model.bindings[j].live(now))
                .collect();
            if live.is_empty() {
                return Ok(());
            }
            let m = &mut model.bindings[live[pick.index(live.len())]];
            prop_assert_eq!(index.end(m.id, now), Some(m.ends_at));
            m.ends_at = m.ends_at.min(now);
            m.unbound = true;
        }
        Op::AdvanceTime(secs) => model.now += secs,
        Op::PatchB(pick, new_b) => {
            let active: Vec<usize> = (0..model.bindings.len())
                .filter(|&j| model.bindings[j].active(now))
                .collect();
            if active.is_empty() {
                return Ok(());
            }
            let j = active[pick.index(active.len())];
            let new_b = new_b.map(|p| party(u64::from(p)));
            let m = &model.bindings[j];
            let want = match (m.mode, new_b) {
                (Mode::Axb, None) => Err(Error::MissingB),
                (_, Some(p)) if p == m.a => Err(Error::SameParty),
                _ if new_b == m.b => Ok(()),
                (Mode::Axb | Mode::Axe, Some(p))
                    if model.live_on(m.x).any(|o| o.id != m.id && o.has_party(p)) =>
                {
                    Err(Error::PartyConflict)
                }
                _ => Ok(()),
            };
            let got = index.set_b(m.id, new_b, now);
            prop_assert_eq!(got.clone(), want, "set_b {:?} on {:?}", new_b, m);
            if got.is_ok() {
                model.bindings[j].b = new_b;
            }
        }
        Op::PatchExpiry(pick, secs) => {
            let active: Vec<usize> = (0..model.bindings.len())
                .filter(|&j| model.bindings[j].active(now) && !model.bindings[j].unbound)
                .collect();
            if active.is_empty() {
                return Ok(());
            }
            let m = &mut model.bindings[active[pick.index(active.len())]];
            prop_assert_eq!(
                index.set_expiry_if_active(m.id, now + secs, now),
                Some(m.ends_at)
            );
            m.ends_at = now + secs;
        }
        Op::Sweep(budget) => {
            let report = index.sweep(now, budget);
            for (id, at) in report.expired {
                let m = model.bindings.iter_mut().find(|m| m.id == id);
                prop_assert!(m.is_some(), "unknown binding {:?} reported", id);
                let m = m.expect("checked");
                prop_assert!(!m.unbound, "unbound binding reported as expired: {:?}", m);
                prop_assert!(!m.expiry_reported, "expiry reported twice: {:?}", m);
                prop_assert!(!m.active(now), "active binding reported expired: {:?}", m);
                prop_assert_eq!(at, m.ends_at);
                m.expiry_reported = true;
            }
        }
        Op::RetireNumber(i) => {
            let x = pool_number(i);
            if model.retired[i] {
                let a = area(AREAS[POOL[i].1]);
                prop_assert_eq!(index.add_number(T, x, Some(&a)), Ok(()));
                model.retired[i] = false;
            } else {
                let busy = model.live_on(x).next().is_some();
                let want = if busy {
                    Err(Error::NumberInUse)
                } else {
                    Ok(())
                };
                prop_assert_eq!(index.retire_number(T, x, now), want);
                model.retired[i] = !busy;
            }
        }
    }
    Ok(())
}

fn run_ops(seed: u64, ops: &[Op]) -> Result<(), TestCaseError> {
    let mut index = Index::new(COOLDOWN);
    index.add_tenant(T);
    for &(digits, a) in &POOL {
        index
            .add_number(T, num(digits), Some(&area(AREAS[a])))
            .expect("add number");
    }
    index
        .add_number(TenantId(2), num(FOREIGN), Some(&area(AREAS[0])))
        .expect("foreign number");
    let mut model = Model {
        now: 1_000,
        bindings: Vec::new(),
        retired: [false; POOL.len()],
        next_id: 1,
    };
    let mut rng = StdRng::seed_from_u64(seed);
    for op in ops {
        apply(&mut index, &mut model, &mut rng, op)?;
        let checked = index.check_invariants(model.now);
        prop_assert!(checked.is_ok(), "after {:?}: {:?}", op, checked);
        check_model_invariants(&model)?;
        check_decisions(&index, &model)?;
    }
    // Long after everything: the index empties and nothing routes.
    model.now += 1_000;
    apply(&mut index, &mut model, &mut rng, &Op::Sweep(usize::MAX))?;
    apply(&mut index, &mut model, &mut rng, &Op::Sweep(usize::MAX))?;
    prop_assert!(index.is_empty(), "{} records left", index.len());
    check_decisions(&index, &model)?;
    // Every binding that ran out without an unbind was reported once, so
    // that the store can record it as expired.
    for m in &model.bindings {
        prop_assert!(
            m.unbound || m.expiry_reported,
            "expiry never reported: {:?}",
            m
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        ..ProptestConfig::default()
    })]

    #[test]
    fn allocator_keeps_invariants_and_decisions_follow_the_model(
        seed in any::<u64>(),
        ops in prop::collection::vec(op_strategy(), 1..60),
    ) {
        run_ops(seed, &ops)?;
    }
}
