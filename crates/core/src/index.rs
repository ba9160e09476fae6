//! The in-memory index: every tenant's numbers and every live (active or
//! cooling) binding, laid out so that a route decision is two hash lookups
//! and an allocation is a first-fit walk over a few candidate numbers.
//!
//! Invariants kept by [`Index::insert`] and [`Index::set_b`], checked again by
//! the property tests:
//! - on one X, a party appears in at most one live binding;
//! - an `axn` binding holds its X alone;
//! - an `axe` binding's (X, extension) is unique;
//! - all live bindings on one X share one mode.
//!
//! "Live" is decided by time, not by housekeeping: a record whose cool-down
//! has passed counts as gone everywhere, however late [`Index::sweep`] runs.

use std::collections::BTreeSet;

use hashbrown::HashMap;
use rand::{Rng, RngExt};

use crate::route::{Connect, Decision, Direction, Inbound, Prompt, RejectReason};
use crate::{
    Area, BindingId, BindingStatus, Channel, Controls, Error, Extension, Mode, Number, TenantId,
    UnixTime,
};

const NONE: u32 = u32::MAX;

const F_A_TO_B: u8 = 1;
const F_B_TO_A: u8 = 2;
const F_RECORD: u8 = 4;
const F_SMS: u8 = 8;
/// Reserved but not yet durable: holds its slots, never routes.
const F_PENDING: u8 = 16;
/// Its end (unbind or expiry) is known to the store.
const F_ENDED: u8 = 32;
const F_VACANT: u8 = 64;

/// Share of an `axe` number's extension space we fill before moving on, so
/// that picking a random free extension stays a handful of tries.
const AXE_FILL_NUM: u64 = 1;
const AXE_FILL_DEN: u64 = 2;

/// How many candidate numbers an allocation may look at. First-fit stops at
/// the first number where neither party is present, so this is only reached
/// when a party holds thousands of bindings; it keeps the time under the write
/// lock bounded.
const MAX_CANDIDATES: usize = 1 << 16;

/// Which area a binding may take its X from.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub enum AreaMatch {
    /// Only the requested area; `pool_exhausted` otherwise.
    Strict,
    /// The requested area first, then any.
    #[default]
    Fallback,
}

/// What a new binding needs from the pool.
#[derive(Clone, Copy, Debug)]
pub struct AllocRequest<'a> {
    pub tenant: TenantId,
    pub mode: Mode,
    pub a: Number,
    pub b: Option<Number>,
    pub area: Option<&'a Area>,
    pub area_match: AreaMatch,
    pub extension_len: u8,
}

#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Allocation {
    pub x: Number,
    pub extension: Option<Extension>,
    pub area: Option<Area>,
}

/// A binding as the index holds it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct NewBinding {
    pub id: BindingId,
    pub tenant: TenantId,
    pub mode: Mode,
    pub x: Number,
    pub extension: Option<Extension>,
    pub a: Number,
    pub b: Option<Number>,
    /// min(expires_at, ended_at).
    pub ends_at: UnixTime,
    /// Whether the store already knows it ended (unbound or expired).
    pub ended: bool,
    pub controls: Controls,
    pub pending: bool,
}

/// Usage of one number.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct NumberUsage {
    pub mode: Option<Mode>,
    /// Bindings holding it (active or cooling, possibly some just past
    /// cool-down that the sweeper has not reached yet).
    pub bindings: u32,
}

/// Numbers of one tenant in one area.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct PoolStat {
    pub tenant: TenantId,
    pub area: Option<Area>,
    pub total: u64,
    pub in_use: u64,
}

/// Live bindings counted over one full sweep pass: `[mode][active, cooling]`.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct Census {
    pub live: [[u64; 2]; 3],
}

#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct SweepReport {
    /// Bindings that passed `expires_at` without being unbound: the store
    /// must record them as ended (reason `expired`) at the given time.
    pub expired: Vec<(BindingId, UnixTime)>,
    /// Records dropped because their cool-down ended.
    pub removed: usize,
    /// Set when this call finished a pass over every record.
    pub census: Option<Census>,
}

#[derive(Clone, Copy, Debug)]
struct Record {
    id: BindingId,
    a: Number,
    b: Option<Number>,
    ends_at: UnixTime,
    x: u32,
    tenant: u32,
    ext: u32,
    max_call: u32,
    /// Position in its number's `records`.
    pos: u32,
    mode: Mode,
    flags: u8,
}

#[derive(Clone, Debug)]
struct NumberSlot {
    number: Number,
    tenant: u32,
    /// The `axn` binding holding this number alone.
    holder: u32,
    /// Records referring to this number: live ones and any past cool-down
    /// that nothing has dropped yet (so `mode` may be stale; see `has_live`).
    records: Vec<u32>,
    area: u16,
    mode: Option<Mode>,
    retired: bool,
}

#[derive(Clone, Debug, Default)]
struct AreaPool {
    free: BTreeSet<u32>,
    by_mode: [BTreeSet<u32>; 3],
}

/// Key of the sticky map: the tenant, the mode and the party pair.
type StickyKey = (u32, u8, Number, Option<Number>);

/// See the module documentation.
#[derive(Debug)]
pub struct Index {
    cooldown: i64,
    tenants: Vec<TenantId>,
    tenant_ix: HashMap<TenantId, u32>,
    /// Index 0 is "no area".
    areas: Vec<Option<Area>>,
    area_ix: HashMap<Area, u16>,
    numbers: Vec<NumberSlot>,
    number_ix: HashMap<Number, u32>,
    pools: HashMap<(u32, u16), AreaPool>,
    tenant_areas: Vec<BTreeSet<u16>>,
    records: Vec<Record>,
    vacant: Vec<u32>,
    by_id: HashMap<BindingId, u32>,
    /// (X, party) -> record, for every party of every axb and axe binding.
    slots: HashMap<(u32, Number), u32>,
    /// (X, packed extension) -> record.
    ext_slots: HashMap<(u32, u32), u32>,
    sticky: HashMap<StickyKey, (u32, u32)>,
    /// Expiries of records dropped outside `sweep` (in the way of a new
    /// binding, or on a retired number) before a sweep reported them; the
    /// next sweep reports them.
    unreported: Vec<(BindingId, UnixTime)>,
    sweep_cursor: usize,
    census: Census,
}

// === impl Index: setup ===

impl Index {
    pub fn new(cooldown_secs: i64) -> Index {
        Index {
            cooldown: cooldown_secs.max(0),
            tenants: Vec::new(),
            tenant_ix: HashMap::new(),
            areas: vec![None],
            area_ix: HashMap::new(),
            numbers: Vec::new(),
            number_ix: HashMap::new(),
            pools: HashMap::new(),
            tenant_areas: Vec::new(),
            records: Vec::new(),
            vacant: Vec::new(),
            by_id: HashMap::new(),
            slots: HashMap::new(),
            ext_slots: HashMap::new(),
            sticky: HashMap::new(),
            unreported: Vec::new(),
            sweep_cursor: 0,
            census: Census::default(),
        }
    }

    pub fn cooldown_secs(&self) -> i64 {
        self.cooldown
    }

    /// Makes room for `bindings` more records, so that loading a large store
    /// does not leave the tables at double their needed size.
    pub fn reserve(&mut self, bindings: usize) {
        self.records.reserve_exact(bindings);
        self.by_id.reserve(bindings);
        self.slots.reserve(bindings * 2);
    }

    pub fn add_tenant(&mut self, tenant: TenantId) {
        self.tenant_slot(tenant);
    }

    fn tenant_slot(&mut self, tenant: TenantId) -> u32 {
        if let Some(&t) = self.tenant_ix.get(&tenant) {
            return t;
        }
        let t = self.tenants.len() as u32;
        self.tenants.push(tenant);
        self.tenant_areas.push(BTreeSet::new());
        self.tenant_ix.insert(tenant, t);
        t
    }

    fn area_slot(&mut self, area: Option<&Area>) -> u16 {
        let Some(area) = area else { return 0 };
        if let Some(&a) = self.area_ix.get(area) {
            return a;
        }
        let a = self.areas.len() as u16;
        self.areas.push(Some(area.clone()));
        self.area_ix.insert(area.clone(), a);
        a
    }

    /// Checks that `number` can join `tenant`'s pool: `Ok(true)` when the
    /// tenant already has it, `Ok(false)` when it is free to import.
    pub fn check_import(&self, tenant: TenantId, number: Number) -> Result<bool, Error> {
        match self.number_ix.get(&number) {
            None => Ok(false),
            Some(&n) if self.tenant_ix.get(&tenant) == Some(&self.numbers[n as usize].tenant) => {
                Ok(true)
            }
            Some(_) => Err(Error::NumberTaken),
        }
    }

    /// Adds a virtual number to a tenant's pool (no-op when already there).
    pub fn add_number(
        &mut self,
        tenant: TenantId,
        number: Number,
        area: Option<&Area>,
    ) -> Result<(), Error> {
        if self.check_import(tenant, number)? {
            return Ok(());
        }
        if self.numbers.len() >= NONE as usize {
            return Err(Error::CapacityExceeded);
        }
        let t = self.tenant_slot(tenant);
        let area = self.area_slot(area);
        let n = self.numbers.len() as u32;
        self.numbers.push(NumberSlot {
            number,
            tenant: t,
            holder: NONE,
            records: Vec::new(),
            area,
            mode: None,
            retired: false,
        });
        self.number_ix.insert(number, n);
        self.pools.entry((t, area)).or_default().free.insert(n);
        self.tenant_areas[t as usize].insert(area);
        Ok(())
    }

    /// Removes an unused number from its tenant's pool.
    pub fn retire_number(
        &mut self,
        tenant: TenantId,
        number: Number,
        now: UnixTime,
    ) -> Result<(), Error> {
        let n = self
            .own_number(tenant, number)
            .ok_or(Error::NumberNotFound)?;
        // Records past cool-down that the sweeper has not reached yet do not
        // keep the number in use.
        if self.has_live(n, now) {
            return Err(Error::NumberInUse);
        }
        self.drop_all_stale(n);
        let slot = &mut self.numbers[n as usize];
        slot.retired = true;
        let key = (slot.tenant, slot.area);
        self.number_ix.remove(&number);
        if let Some(pool) = self.pools.get_mut(&key) {
            pool.free.remove(&n);
        }
        Ok(())
    }

    fn own_number(&self, tenant: TenantId, number: Number) -> Option<u32> {
        let t = *self.tenant_ix.get(&tenant)?;
        let n = *self.number_ix.get(&number)?;
        (self.numbers[n as usize].tenant == t).then_some(n)
    }

    /// The area of one of the tenant's numbers (`None` when not in its pool).
    pub fn number_area(&self, tenant: TenantId, number: Number) -> Option<Option<Area>> {
        let n = self.own_number(tenant, number)?;
        Some(self.areas[self.numbers[n as usize].area as usize].clone())
    }

    pub fn number_usage(&self, tenant: TenantId, number: Number) -> Option<NumberUsage> {
        let n = self.own_number(tenant, number)?;
        let slot = &self.numbers[n as usize];
        Some(NumberUsage {
            mode: slot.mode,
            bindings: slot.records.len() as u32,
        })
    }
}

// === impl Index: route decisions ===

impl Index {
    /// What to do with one inbound call or message. Reads only; allocates
    /// nothing.
    pub fn decide(&self, inbound: &Inbound, now: UnixTime) -> Decision {
        let no_binding = Decision::Announce {
            prompt: Prompt::NoBinding,
            binding: None,
            tenant: None,
        };
        let Some(&n) = self.number_ix.get(&inbound.called) else {
            return no_binding;
        };
        let slot = &self.numbers[n as usize];
        let tenant = self.tenants[slot.tenant as usize];
        let record = match slot.mode {
            None => None,
            Some(Mode::Axb) => self.slots.get(&(n, inbound.caller)).copied(),
            Some(Mode::Axn) => Some(slot.holder).filter(|&h| h != NONE),
            Some(Mode::Axe) => match inbound.extension {
                None => return Decision::CollectExtension { tenant },
                Some(ext) => self.ext_slots.get(&(n, ext.packed())).copied(),
            },
        };
        let Some(r) = record else {
            return Decision::Announce {
                prompt: Prompt::NoBinding,
                binding: None,
                tenant: Some(tenant),
            };
        };
        let rec = &self.records[r as usize];
        if rec.flags & (F_PENDING | F_VACANT) != 0 {
            return Decision::Announce {
                prompt: Prompt::NoBinding,
                binding: None,
                tenant: Some(tenant),
            };
        }
        match BindingStatus::at(rec.ends_at, now, self.cooldown) {
            BindingStatus::Active => {}
            BindingStatus::Cooling => {
                return Decision::Announce {
                    prompt: Prompt::Expired,
                    binding: Some(rec.id),
                    tenant: Some(tenant),
                };
            }
            BindingStatus::Ended => {
                return Decision::Announce {
                    prompt: Prompt::NoBinding,
                    binding: None,
                    tenant: Some(tenant),
                };
            }
        }
        let (direction, to) = match rec.mode {
            Mode::Axb if inbound.caller == rec.a => match rec.b {
                Some(b) => (Direction::AToB, b),
                None => return self.announce_no_b(rec, tenant),
            },
            Mode::Axb => (Direction::BToA, rec.a),
            Mode::Axn | Mode::Axe if inbound.caller == rec.a => match rec.b {
                Some(b) => (Direction::AToB, b),
                None => return self.announce_no_b(rec, tenant),
            },
            Mode::Axn | Mode::Axe if Some(inbound.caller) == rec.b => (Direction::BToA, rec.a),
            Mode::Axn | Mode::Axe => (Direction::NToA, rec.a),
        };
        let allowed = match direction {
            Direction::AToB => rec.flags & F_A_TO_B != 0,
            Direction::BToA | Direction::NToA => rec.flags & F_B_TO_A != 0,
        };
        if !allowed {
            return Decision::Reject {
                reason: RejectReason::DirectionForbidden,
                binding: rec.id,
                tenant,
            };
        }
        if inbound.channel == Channel::Sms && rec.flags & F_SMS == 0 {
            return Decision::Reject {
                reason: RejectReason::SmsDisabled,
                binding: rec.id,
                tenant,
            };
        }
        Decision::Connect(Connect {
            binding: rec.id,
            tenant,
            mode: rec.mode,
            direction,
            to,
            caller_id: inbound.called,
            max_call_seconds: (rec.max_call != 0).then_some(rec.max_call),
            record: rec.flags & F_RECORD != 0,
        })
    }

    fn announce_no_b(&self, rec: &Record, tenant: TenantId) -> Decision {
        Decision::Announce {
            prompt: Prompt::NoB,
            binding: Some(rec.id),
            tenant: Some(tenant),
        }
    }
}

// === impl Index: allocation ===

impl Index {
    /// Chooses X (and an extension for `axe`) for a new binding. Reads only:
    /// the caller inserts the binding with [`Index::insert`] under the same
    /// lock.
    ///
    /// Preferences, in order: the requested area (then any area, unless
    /// `Strict`); the X this pair had before (sticky reuse); numbers already
    /// serving this mode, lowest first (packing); then a free number (one
    /// whose bindings are all past cool-down counts as free, swept or not).
    pub fn allocate<R: Rng + ?Sized>(
        &self,
        req: &AllocRequest<'_>,
        now: UnixTime,
        rng: &mut R,
    ) -> Result<Allocation, Error> {
        validate_parties(req.mode, req.a, req.b)?;
        if req.mode == Mode::Axe
            && (req.extension_len == 0 || req.extension_len > crate::binding::MAX_EXTENSION_LEN)
        {
            return Err(Error::InvalidExtension);
        }
        let Some(&t) = self.tenant_ix.get(&req.tenant) else {
            return Err(Error::PoolExhausted);
        };
        let tenant_areas = &self.tenant_areas[t as usize];
        let requested = req.area.map(|a| self.area_ix.get(a).copied());
        let mut tiers: Vec<Vec<u16>> = Vec::with_capacity(2);
        match requested {
            None => tiers.push(tenant_areas.iter().copied().collect()),
            Some(found) => {
                tiers.push(
                    found
                        .filter(|a| tenant_areas.contains(a))
                        .into_iter()
                        .collect(),
                );
                if req.area_match == AreaMatch::Fallback {
                    tiers.push(
                        tenant_areas
                            .iter()
                            .copied()
                            .filter(|&a| Some(a) != found)
                            .collect(),
                    );
                }
            }
        }
        let sticky = self
            .sticky
            .get(&sticky_key(t, req.mode, req.a, req.b))
            .copied();
        for tier in &tiers {
            if let Some((n, ext)) = sticky {
                let slot = &self.numbers[n as usize];
                if slot.tenant == t && tier.contains(&slot.area) && self.eligible(n, req, now) {
                    let ext = Extension::unpack(ext)
                        .filter(|e| {
                            e.len() == req.extension_len && !self.ext_taken(n, e.packed(), now)
                        })
                        .map(Ok);
                    return self.allocation(n, req, now, rng, ext);
                }
            }
            let mut seen = 0;
            for &area in tier {
                let Some(pool) = self.pools.get(&(t, area)) else {
                    continue;
                };
                for &n in &pool.by_mode[req.mode.index()] {
                    seen += 1;
                    if seen > MAX_CANDIDATES {
                        break;
                    }
                    if self.eligible(n, req, now) {
                        return self.allocation(n, req, now, rng, None);
                    }
                }
            }
            for &area in tier {
                if let Some(&n) = self.pools.get(&(t, area)).and_then(|p| p.free.first()) {
                    return self.allocation(n, req, now, rng, None);
                }
            }
            // Numbers of another mode whose bindings are all past cool-down
            // but not yet swept are free too.
            for &area in tier {
                let Some(pool) = self.pools.get(&(t, area)) else {
                    continue;
                };
                for mode in Mode::ALL.into_iter().filter(|&m| m != req.mode) {
                    for &n in &pool.by_mode[mode.index()] {
                        seen += 1;
                        if seen > MAX_CANDIDATES {
                            break;
                        }
                        if self.eligible(n, req, now) {
                            return self.allocation(n, req, now, rng, None);
                        }
                    }
                }
            }
        }
        Err(Error::PoolExhausted)
    }

    fn allocation<R: Rng + ?Sized>(
        &self,
        n: u32,
        req: &AllocRequest<'_>,
        now: UnixTime,
        rng: &mut R,
        ext: Option<Result<Extension, Error>>,
    ) -> Result<Allocation, Error> {
        let slot = &self.numbers[n as usize];
        let extension = match req.mode {
            Mode::Axe => Some(match ext {
                Some(e) => e?,
                None => self.random_extension(n, req.extension_len, now, rng)?,
            }),
            Mode::Axb | Mode::Axn => None,
        };
        Ok(Allocation {
            x: slot.number,
            extension,
            area: self.areas[slot.area as usize].clone(),
        })
    }

    /// Whether number `n` can take the binding `req` describes at `now`.
    fn eligible(&self, n: u32, req: &AllocRequest<'_>, now: UnixTime) -> bool {
        let slot = &self.numbers[n as usize];
        if slot.retired {
            return false;
        }
        // Another mode, or axn's "alone": only live records stand in the
        // way, whether or not the sweeper has dropped the others yet.
        if (req.mode == Mode::Axn || slot.mode != Some(req.mode)) && !slot.records.is_empty() {
            return !self.has_live(n, now);
        }
        match req.mode {
            Mode::Axn => true,
            Mode::Axb | Mode::Axe => {
                if req.mode == Mode::Axe
                    && slot.records.len() as u64 * AXE_FILL_DEN
                        >= extension_space(req.extension_len) * AXE_FILL_NUM
                {
                    return false;
                }
                !self.occupied(n, req.a, now) && req.b.is_none_or(|b| !self.occupied(n, b, now))
            }
        }
    }

    fn occupied(&self, n: u32, party: Number, now: UnixTime) -> bool {
        self.slots
            .get(&(n, party))
            .is_some_and(|&r| self.is_live(r, now))
    }

    fn ext_taken(&self, n: u32, packed: u32, now: UnixTime) -> bool {
        self.ext_slots
            .get(&(n, packed))
            .is_some_and(|&r| self.is_live(r, now))
    }

    fn random_extension<R: Rng + ?Sized>(
        &self,
        n: u32,
        len: u8,
        now: UnixTime,
        rng: &mut R,
    ) -> Result<Extension, Error> {
        let space = extension_space(len);
        // The number is at most half full (see `eligible`), so a random pick
        // is free with probability >= 1/2; the scan is only a backstop.
        for _ in 0..64 {
            let value = rng.random_range(0..space) as u32;
            let ext = Extension::new(value, len)?;
            if !self.ext_taken(n, ext.packed(), now) {
                return Ok(ext);
            }
        }
        let start = rng.random_range(0..space);
        for i in 0..space {
            let ext = Extension::new(((start + i) % space) as u32, len)?;
            if !self.ext_taken(n, ext.packed(), now) {
                return Ok(ext);
            }
        }
        Err(Error::PoolExhausted)
    }

    fn is_live(&self, r: u32, now: UnixTime) -> bool {
        let rec = &self.records[r as usize];
        rec.flags & F_VACANT == 0 && now < rec.ends_at.saturating_add(self.cooldown)
    }

    /// Whether any record on number `n` is live at `now`.
    fn has_live(&self, n: u32, now: UnixTime) -> bool {
        self.numbers[n as usize]
            .records
            .iter()
            .any(|&r| self.is_live(r, now))
    }
}

// === impl Index: writes ===

impl Index {
    /// Inserts a binding, enforcing every invariant (a conflict is an error
    /// and changes nothing). Records past cool-down that stand in the way
    /// are dropped first. Bindings whose cool-down is already over are
    /// ignored (`Ok(false)`).
    pub fn insert(&mut self, nb: &NewBinding, now: UnixTime) -> Result<bool, Error> {
        validate_parties(nb.mode, nb.a, nb.b)?;
        if self.by_id.contains_key(&nb.id) {
            return Err(Error::DuplicateBinding);
        }
        if now >= nb.ends_at.saturating_add(self.cooldown) {
            return Ok(false);
        }
        let t = *self
            .tenant_ix
            .get(&nb.tenant)
            .ok_or(Error::NumberNotFound)?;
        let n = self
            .own_number(nb.tenant, nb.x)
            .ok_or(Error::NumberNotFound)?;
        if (nb.mode == Mode::Axe) != nb.extension.is_some() {
            return Err(Error::InvalidExtension);
        }
        let parties = [Some(nb.a), nb.b];
        self.evict_stale(n, &parties, nb.extension, now);
        let slot = &self.numbers[n as usize];
        if (nb.mode == Mode::Axn || slot.mode != Some(nb.mode))
            && !slot.records.is_empty()
            && !self.has_live(n, now)
        {
            self.drop_all_stale(n);
        }
        let slot = &self.numbers[n as usize];
        let in_use = !slot.records.is_empty();
        if in_use && slot.mode != Some(nb.mode) {
            return Err(Error::ModeConflict);
        }
        match nb.mode {
            Mode::Axn if in_use => return Err(Error::NumberHeld),
            Mode::Axn => {}
            Mode::Axb | Mode::Axe => {
                if parties
                    .iter()
                    .flatten()
                    .any(|&p| self.slots.contains_key(&(n, p)))
                {
                    return Err(Error::PartyConflict);
                }
                if let Some(ext) = nb.extension
                    && self.ext_slots.contains_key(&(n, ext.packed()))
                {
                    return Err(Error::ExtensionTaken);
                }
            }
        }
        if self.records.len() >= NONE as usize && self.vacant.is_empty() {
            return Err(Error::CapacityExceeded);
        }

        let mut flags = 0;
        for (on, bit) in [
            (nb.controls.a_to_b, F_A_TO_B),
            (nb.controls.b_to_a, F_B_TO_A),
            (nb.controls.record, F_RECORD),
            (nb.controls.sms, F_SMS),
            (nb.pending, F_PENDING),
            (nb.ended, F_ENDED),
        ] {
            if on {
                flags |= bit;
            }
        }
        let record = Record {
            id: nb.id,
            a: nb.a,
            b: nb.b,
            ends_at: nb.ends_at,
            x: n,
            tenant: t,
            ext: nb.extension.map_or(0, Extension::packed),
            max_call: nb.controls.max_call_seconds.unwrap_or(0),
            pos: self.numbers[n as usize].records.len() as u32,
            mode: nb.mode,
            flags,
        };
        let r = match self.vacant.pop() {
            Some(r) => {
                self.records[r as usize] = record;
                r
            }
            None => {
                self.records.push(record);
                (self.records.len() - 1) as u32
            }
        };
        self.by_id.insert(nb.id, r);
        match nb.mode {
            Mode::Axn => self.numbers[n as usize].holder = r,
            Mode::Axb | Mode::Axe => {
                for p in parties.into_iter().flatten() {
                    self.slots.insert((n, p), r);
                }
                if record.ext != 0 {
                    self.ext_slots.insert((n, record.ext), r);
                }
            }
        }
        let slot = &mut self.numbers[n as usize];
        slot.records.push(r);
        if slot.records.len() == 1 {
            slot.mode = Some(nb.mode);
            let pool = self.pools.entry((t, slot.area)).or_default();
            pool.free.remove(&n);
            pool.by_mode[nb.mode.index()].insert(n);
        }
        self.sticky
            .insert(sticky_key(t, nb.mode, nb.a, nb.b), (n, record.ext));
        Ok(true)
    }

    /// Drops records past cool-down that occupy what a new binding on `n`
    /// needs.
    fn evict_stale(
        &mut self,
        n: u32,
        parties: &[Option<Number>],
        ext: Option<Extension>,
        now: UnixTime,
    ) {
        let mut stale = Vec::new();
        for p in parties.iter().flatten() {
            if let Some(&r) = self.slots.get(&(n, *p)) {
                stale.push(r);
            }
        }
        if let Some(ext) = ext
            && let Some(&r) = self.ext_slots.get(&(n, ext.packed()))
        {
            stale.push(r);
        }
        let holder = self.numbers[n as usize].holder;
        if holder != NONE {
            stale.push(holder);
        }
        for r in stale {
            if !self.is_live(r, now) {
                self.drop_stale(r);
            }
        }
    }

    /// Drops every record on number `n`; the caller has checked that none
    /// is live.
    fn drop_all_stale(&mut self, n: u32) {
        for r in self.numbers[n as usize].records.clone() {
            self.drop_stale(r);
        }
    }

    /// Drops a record past cool-down outside `sweep`, keeping its expiry for
    /// the next sweep to report when the store does not know it yet.
    fn drop_stale(&mut self, r: u32) {
        let rec = self.records[r as usize];
        if rec.flags & F_VACANT != 0 {
            return;
        }
        if rec.flags & (F_ENDED | F_PENDING) == 0 {
            self.unreported.push((rec.id, rec.ends_at));
        }
        self.remove_record(r);
    }

    /// Takes a binding out entirely (a reservation whose write failed, or a
    /// record past cool-down).
    pub fn remove(&mut self, id: BindingId) -> bool {
        match self.by_id.get(&id) {
            Some(&r) => {
                self.remove_record(r);
                true
            }
            None => false,
        }
    }

    fn remove_record(&mut self, r: u32) {
        let rec = self.records[r as usize];
        if rec.flags & F_VACANT != 0 {
            return;
        }
        let n = rec.x;
        for p in [Some(rec.a), rec.b].into_iter().flatten() {
            if self.slots.get(&(n, p)) == Some(&r) {
                self.slots.remove(&(n, p));
            }
        }
        if rec.ext != 0 && self.ext_slots.get(&(n, rec.ext)) == Some(&r) {
            self.ext_slots.remove(&(n, rec.ext));
        }
        let slot = &mut self.numbers[n as usize];
        if slot.holder == r {
            slot.holder = NONE;
        }
        let pos = rec.pos as usize;
        slot.records.swap_remove(pos);
        if let Some(&moved) = slot.records.get(pos) {
            self.records[moved as usize].pos = pos as u32;
        }
        if slot.records.is_empty() {
            let mode = slot.mode.take();
            let key = (slot.tenant, slot.area);
            let retired = slot.retired;
            if let Some(pool) = self.pools.get_mut(&key) {
                if let Some(mode) = mode {
                    pool.by_mode[mode.index()].remove(&n);
                }
                if !retired {
                    pool.free.insert(n);
                }
            }
        }
        self.by_id.remove(&rec.id);
        self.records[r as usize].flags = F_VACANT;
        self.vacant.push(r);
    }

    /// The write of a reserved binding is durable: it may route now.
    pub fn confirm(&mut self, id: BindingId) {
        if let Some(&r) = self.by_id.get(&id) {
            self.records[r as usize].flags &= !F_PENDING;
        }
    }

    /// Ends a binding at `at` (unbind). Returns the previous end, for undo.
    pub fn end(&mut self, id: BindingId, at: UnixTime) -> Option<UnixTime> {
        let r = *self.by_id.get(&id)?;
        let rec = &mut self.records[r as usize];
        let before = rec.ends_at;
        rec.ends_at = rec.ends_at.min(at);
        rec.flags |= F_ENDED;
        Some(before)
    }

    /// Restores the end a failed write changed.
    pub fn undo_end(&mut self, id: BindingId, ends_at: UnixTime, was_ended: bool) {
        if let Some(&r) = self.by_id.get(&id) {
            let rec = &mut self.records[r as usize];
            rec.ends_at = ends_at;
            if !was_ended {
                rec.flags &= !F_ENDED;
            }
        }
    }

    /// Moves the expiry of a binding that is still active at `now` (and not
    /// ended). Returns the previous end, or `None` when nothing changed.
    pub fn set_expiry_if_active(
        &mut self,
        id: BindingId,
        expires_at: UnixTime,
        now: UnixTime,
    ) -> Option<UnixTime> {
        let r = *self.by_id.get(&id)?;
        let rec = &mut self.records[r as usize];
        if rec.flags & F_ENDED != 0 || rec.ends_at <= now {
            return None;
        }
        let before = rec.ends_at;
        rec.ends_at = expires_at;
        Some(before)
    }

    pub fn set_controls(&mut self, id: BindingId, controls: &Controls) {
        if let Some(&r) = self.by_id.get(&id) {
            let rec = &mut self.records[r as usize];
            let keep = rec.flags & (F_PENDING | F_ENDED);
            let mut flags = keep;
            for (on, bit) in [
                (controls.a_to_b, F_A_TO_B),
                (controls.b_to_a, F_B_TO_A),
                (controls.record, F_RECORD),
                (controls.sms, F_SMS),
            ] {
                if on {
                    flags |= bit;
                }
            }
            rec.flags = flags;
            rec.max_call = controls.max_call_seconds.unwrap_or(0);
        }
    }

    /// Changes B, keeping the one-binding-per-party-per-X invariant.
    pub fn set_b(&mut self, id: BindingId, b: Option<Number>, now: UnixTime) -> Result<(), Error> {
        let r = *self.by_id.get(&id).ok_or(Error::BindingNotFound)?;
        let rec = self.records[r as usize];
        validate_parties(rec.mode, rec.a, b)?;
        if rec.b == b {
            return Ok(());
        }
        let n = rec.x;
        if rec.mode != Mode::Axn {
            if let Some(new_b) = b {
                self.evict_stale(n, &[Some(new_b)], None, now);
                if self.slots.contains_key(&(n, new_b)) {
                    return Err(Error::PartyConflict);
                }
                self.slots.insert((n, new_b), r);
            }
            if let Some(old_b) = rec.b
                && self.slots.get(&(n, old_b)) == Some(&r)
            {
                self.slots.remove(&(n, old_b));
            }
        }
        self.records[r as usize].b = b;
        let t = rec.tenant;
        self.sticky
            .insert(sticky_key(t, rec.mode, rec.a, b), (n, rec.ext));
        Ok(())
    }

    /// Whether the store already knows this binding ended.
    pub fn is_ended(&self, id: BindingId) -> Option<bool> {
        let &r = self.by_id.get(&id)?;
        Some(self.records[r as usize].flags & F_ENDED != 0)
    }

    /// Remembers a pair's X for sticky reuse, from a binding that is no
    /// longer live (startup reads these from the store's history).
    pub fn remember(
        &mut self,
        tenant: TenantId,
        mode: Mode,
        a: Number,
        b: Option<Number>,
        x: Number,
        extension: Option<Extension>,
    ) {
        if let Some(n) = self.own_number(tenant, x) {
            let t = self.numbers[n as usize].tenant;
            self.sticky.insert(
                sticky_key(t, mode, a, b),
                (n, extension.map_or(0, Extension::packed)),
            );
        }
    }
}

// === impl Index: housekeeping ===

impl Index {
    /// Visits up to `budget` record slots, dropping records past cool-down
    /// and reporting bindings that have just expired. Called in small steps
    /// so that no single call holds the lock for long.
    pub fn sweep(&mut self, now: UnixTime, budget: usize) -> SweepReport {
        let mut report = SweepReport {
            expired: std::mem::take(&mut self.unreported),
            ..SweepReport::default()
        };
        let end = self
            .sweep_cursor
            .saturating_add(budget)
            .min(self.records.len());
        for r in self.sweep_cursor..end {
            let rec = self.records[r];
            if rec.flags & F_VACANT != 0 {
                continue;
            }
            match BindingStatus::at(rec.ends_at, now, self.cooldown) {
                BindingStatus::Ended => {
                    if rec.flags & (F_ENDED | F_PENDING) == 0 {
                        report.expired.push((rec.id, rec.ends_at));
                    }
                    self.remove_record(r as u32);
                    report.removed += 1;
                }
                status => {
                    if status == BindingStatus::Cooling && rec.flags & (F_ENDED | F_PENDING) == 0 {
                        self.records[r].flags |= F_ENDED;
                        report.expired.push((rec.id, rec.ends_at));
                    }
                    let s = usize::from(status == BindingStatus::Cooling);
                    self.census.live[rec.mode.index()][s] += 1;
                }
            }
        }
        self.sweep_cursor = end;
        if self.sweep_cursor >= self.records.len() {
            self.sweep_cursor = 0;
            report.census = Some(std::mem::take(&mut self.census));
        }
        report
    }

    pub fn pool_stats(&self) -> Vec<PoolStat> {
        let mut stats: HashMap<(u32, u16), (u64, u64)> = HashMap::new();
        for slot in self.numbers.iter().filter(|s| !s.retired) {
            let e = stats.entry((slot.tenant, slot.area)).or_default();
            e.0 += 1;
            e.1 += u64::from(!slot.records.is_empty());
        }
        let mut out: Vec<PoolStat> = stats
            .into_iter()
            .map(|((t, a), (total, in_use))| PoolStat {
                tenant: self.tenants[t as usize],
                area: self.areas[a as usize].clone(),
                total,
                in_use,
            })
            .collect();
        out.sort_by(|x, y| (x.tenant, &x.area).cmp(&(y.tenant, &y.area)));
        out
    }

    /// Records held (live, or past cool-down and not yet swept).
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// Bytes held by the index's tables (capacity, not just length): what
    /// the memory-per-binding figure is computed from.
    pub fn heap_bytes(&self) -> usize {
        fn map<K, V, S>(m: &HashMap<K, V, S>) -> usize {
            // hashbrown: one control byte per bucket plus a group's worth.
            let buckets = if m.capacity() == 0 {
                0
            } else {
                (m.capacity() * 8 / 7).next_power_of_two()
            };
            buckets * (std::mem::size_of::<(K, V)>() + 1) + 16
        }
        self.records.capacity() * std::mem::size_of::<Record>()
            + self.vacant.capacity() * 4
            + map(&self.by_id)
            + map(&self.slots)
            + map(&self.ext_slots)
            + map(&self.sticky)
            + map(&self.number_ix)
            + self.numbers.capacity() * std::mem::size_of::<NumberSlot>()
            + self
                .numbers
                .iter()
                .map(|s| s.records.capacity() * 4)
                .sum::<usize>()
            + self.unreported.capacity() * std::mem::size_of::<(BindingId, UnixTime)>()
    }

    /// Every live binding's invariants, checked the slow way. For tests.
    #[doc(hidden)]
    pub fn check_invariants(&self, now: UnixTime) -> Result<(), String> {
        use std::collections::{HashMap as StdMap, HashSet};
        let mut parties: HashSet<(u32, Number)> = HashSet::new();
        let mut exts: HashSet<(u32, u32)> = HashSet::new();
        let mut modes: StdMap<u32, Mode> = StdMap::new();
        let mut per_x: StdMap<u32, usize> = StdMap::new();
        let mut axn: HashSet<u32> = HashSet::new();
        for (r, rec) in self.records.iter().enumerate() {
            if rec.flags & F_VACANT != 0 || !self.is_live(r as u32, now) {
                continue;
            }
            if self.numbers[rec.x as usize].retired {
                return Err(format!("binding {} on a retired number", rec.id.0));
            }
            if let Some(m) = modes.insert(rec.x, rec.mode)
                && m != rec.mode
            {
                return Err(format!("number {} serves two modes", rec.x));
            }
            *per_x.entry(rec.x).or_default() += 1;
            if rec.mode == Mode::Axn {
                axn.insert(rec.x);
            }
            for p in [Some(rec.a), rec.b].into_iter().flatten() {
                if !parties.insert((rec.x, p)) {
                    return Err(format!("party {p:?} twice on number {}", rec.x));
                }
            }
            if rec.ext != 0 && !exts.insert((rec.x, rec.ext)) {
                return Err(format!("extension twice on number {}", rec.x));
            }
        }
        for x in axn {
            if per_x[&x] != 1 {
                return Err(format!("axn number {x} shared"));
            }
        }
        Ok(())
    }
}

fn sticky_key(t: u32, mode: Mode, a: Number, b: Option<Number>) -> StickyKey {
    match (mode, b) {
        // An axb pair is the same pair whichever side was A.
        (Mode::Axb, Some(b)) if b < a => (t, mode as u8, b, Some(a)),
        (Mode::Axb, b) => (t, mode as u8, a, b),
        // axn and axe numbers follow A.
        (Mode::Axn | Mode::Axe, _) => (t, mode as u8, a, None),
    }
}

fn extension_space(len: u8) -> u64 {
    10u64.pow(u32::from(len))
}

/// A binding's parties, as each mode needs them.
pub fn validate_parties(mode: Mode, a: Number, b: Option<Number>) -> Result<(), Error> {
    match (mode, b) {
        (Mode::Axb, None) => Err(Error::MissingB),
        (_, Some(b)) if b == a => Err(Error::SameParty),
        _ => Ok(()),
    }
}
