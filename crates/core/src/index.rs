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
//!
//! Layout, chosen for memory per binding (see BENCHMARKS.md):
//! - records (one cache line each) sit in fixed chunks of 2^16
//!   ([`Chunked`]), so growth never leaves more than one chunk unused;
//! - `by_id` and `sticky` are `hashbrown::HashTable`s holding a record index
//!   (`sticky`: or a tag and an index, next to 32 bits of the key's hash),
//!   not the key: keys are read back from the record to compare, and for
//!   `by_id` to rehash. Such an entry's hash depends on fields of its record
//!   (id, tenant, mode, a, b), which must not change while the entry is in
//!   the table: only `set_b` changes one (b), and it takes the pair's
//!   `sticky` entry out first and puts it back after;
//! - `slots` and `ext_slots`, which every route decision reads, hold their
//!   keys packed (16 and 12 bytes with the record index), so that a lookup
//!   compares in the table and reads the record only once it is found (with
//!   4-byte entries compared through the record, hits measured about a
//!   quarter slower in the route bench, misses up to half as fast);
//! - `sticky` maps a party pair to its latest record while that record is
//!   in the index, and to a compact [`EndedPair`] once it has left (or once
//!   the pair's B moved on), so a pair's X is kept without a full key per
//!   live binding. Ended pairs older than the sticky window are pruned by
//!   [`Index::sweep`].

use std::collections::BTreeSet;
use std::hash::BuildHasher;

use hashbrown::hash_table::Entry;
use hashbrown::{DefaultHashBuilder, HashMap, HashTable};
use rand::{Rng, RngExt};

use crate::route::{Connect, Decision, Direction, Inbound, Prompt, RejectReason};
use crate::{
    Area, BindingId, BindingStatus, Channel, Controls, Error, Extension, Mode, Number, TenantId,
    UnixTime,
};

const NONE: u32 = u32::MAX;

/// Record indexes stay below this, so that a `sticky` entry can carry a tag
/// bit.
const MAX_RECORDS: usize = 1 << 31;
/// A `sticky` entry with this bit set indexes `ended`; otherwise `records`.
const ENDED_TAG: u32 = 1 << 31;
/// How long a pair keeps its X after its last binding ended, by default.
const DEFAULT_STICKY_WINDOW: i64 = 30 * 86_400;
/// Timestamps of ended pairs are kept within +-2^60 (they share an `i64`
/// with the mode); this one means "not known yet" (see [`Index::remember`]).
const UNSTAMPED: i64 = -(1 << 60);

/// Records (and ended pairs) per chunk of [`Chunked`] storage.
const CHUNK_BITS: u32 = 16;
const CHUNK: usize = 1 << CHUNK_BITS;

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

/// Grows in fixed chunks of [`CHUNK`] elements instead of doubling, so that
/// at most one chunk (plus one spare after shrinking) is unused. Element `i`
/// lives in chunk `i >> CHUNK_BITS` at `i & (CHUNK - 1)`.
#[derive(Debug)]
struct Chunked<T> {
    chunks: Vec<Vec<T>>,
    len: usize,
}

impl<T: Copy> Chunked<T> {
    fn new() -> Self {
        Chunked {
            chunks: Vec::new(),
            len: 0,
        }
    }

    fn len(&self) -> usize {
        self.len
    }

    #[inline]
    fn get(&self, i: usize) -> &T {
        &self.chunks[i >> CHUNK_BITS][i & (CHUNK - 1)]
    }

    #[inline]
    fn get_mut(&mut self, i: usize) -> &mut T {
        &mut self.chunks[i >> CHUNK_BITS][i & (CHUNK - 1)]
    }

    fn push(&mut self, value: T) {
        let c = self.len >> CHUNK_BITS;
        if c == self.chunks.len() {
            self.chunks.push(Vec::with_capacity(CHUNK));
        }
        self.chunks[c].push(value);
        self.len += 1;
    }

    /// Moves the last element into `i` (dropping what was there).
    fn swap_remove(&mut self, i: usize) {
        let last = self.len - 1;
        if i != last {
            *self.get_mut(i) = *self.get(last);
        }
        let c = last >> CHUNK_BITS;
        self.chunks[c].pop();
        self.len = last;
        // Keep one empty chunk as a spare, so that pushes and removals around
        // a chunk boundary do not allocate each time.
        if self.chunks[c].is_empty() {
            self.chunks.truncate(c + 1);
        }
    }

    fn iter(&self) -> impl Iterator<Item = &T> {
        self.chunks.iter().flatten()
    }

    fn reserve(&mut self, additional: usize) {
        self.chunks
            .reserve((self.len.saturating_add(additional)).div_ceil(CHUNK));
    }

    fn heap_bytes(&self) -> usize {
        self.chunks.capacity() * std::mem::size_of::<Vec<T>>()
            + self.chunks.iter().map(Vec::capacity).sum::<usize>() * std::mem::size_of::<T>()
    }
}

/// One cache line: a decision reads one line per record.
#[derive(Clone, Copy, Debug)]
#[repr(align(64))]
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
    /// The call prompts: `warn_before_end_seconds` in the low bits, and
    /// the `P_*` bits (what fits in the record's last two bytes).
    prompts: u16,
}

const P_PRE_CONNECT: u16 = 1 << 15;
const P_CALLEE_WHISPER: u16 = 1 << 14;
const P_WARN: u16 = (1 << 14) - 1;

fn pack_prompts(c: &Controls) -> u16 {
    let warn = c
        .warn_before_end_seconds
        .map_or(0, |w| w.min(u32::from(P_WARN)) as u16);
    let mut p = warn;
    if c.pre_connect {
        p |= P_PRE_CONNECT;
    }
    if c.callee_whisper {
        p |= P_CALLEE_WHISPER;
    }
    p
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

/// A `slots` entry: party `party` of record `r` is on number `x`.
#[derive(Clone, Copy, Debug)]
struct SlotEntry {
    party: Number,
    x: u32,
    r: u32,
}

// What the memory figures in BENCHMARKS.md assume.
const _: () = assert!(std::mem::size_of::<Record>() == 64);
const _: () = assert!(std::mem::size_of::<SlotEntry>() == 16);

/// An `ext_slots` entry: record `r` holds extension `ext` on number `x`.
#[derive(Clone, Copy, Debug)]
struct ExtEntry {
    x: u32,
    ext: u32,
    r: u32,
}

/// Key of the sticky map: the tenant, the mode and the party pair.
type StickyKey = (u32, u8, Number, Option<Number>);

/// A pair's X from a binding no longer in the index (or whose B moved on).
/// The tenant is its number's.
#[derive(Clone, Copy, Debug)]
struct EndedPair {
    /// `StickyKey`'s parties.
    a: Number,
    b: Option<Number>,
    /// When the pair's binding ended, `<< 2`, ORed with `StickyKey`'s mode.
    stamp: i64,
    n: u32,
    ext: u32,
}

impl EndedPair {
    fn new(key: &StickyKey, n: u32, ext: u32, at: i64) -> EndedPair {
        EndedPair {
            a: key.2,
            b: key.3,
            stamp: stamp(at, key.1),
            n,
            ext,
        }
    }

    fn at(&self) -> i64 {
        self.stamp >> 2
    }

    fn mode(&self) -> u8 {
        (self.stamp & 3) as u8
    }
}

fn stamp(at: i64, mode: u8) -> i64 {
    (at.clamp(UNSTAMPED + 1, 1 << 60) << 2) | i64::from(mode)
}

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
    records: Chunked<Record>,
    vacant: Vec<u32>,
    /// Hashes every key of the tables below; randomly seeded, since callers
    /// choose the keys.
    hasher: DefaultHashBuilder,
    /// id -> record.
    by_id: HashTable<u32>,
    /// (X, party) -> record, for every party of every axb and axe binding.
    slots: HashTable<SlotEntry>,
    /// (X, packed extension) -> record.
    ext_slots: HashTable<ExtEntry>,
    /// `StickyKey` -> the pair's latest record still in the index, or
    /// `ENDED_TAG | i` for `ended[i]` (the low half of an entry; the high
    /// half is the key's `sticky_h32`, so that growing the table reads
    /// nothing else: reading each key back doubled the write stall it
    /// causes). A record's key points to it from its insert (or `set_b`)
    /// until it leaves, unless a later binding of the pair (or `remember`)
    /// took the key over.
    sticky: HashTable<u64>,
    ended: Chunked<EndedPair>,
    sticky_window: i64,
    /// Next `ended` entry for `sweep` to check for age.
    ended_cursor: usize,
    /// The latest `now` any call passed in (`UnixTime::MIN` before any).
    clock: UnixTime,
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
            records: Chunked::new(),
            vacant: Vec::new(),
            hasher: DefaultHashBuilder::default(),
            by_id: HashTable::new(),
            slots: HashTable::new(),
            ext_slots: HashTable::new(),
            sticky: HashTable::new(),
            ended: Chunked::new(),
            sticky_window: DEFAULT_STICKY_WINDOW,
            ended_cursor: 0,
            clock: UnixTime::MIN,
            unreported: Vec::new(),
            sweep_cursor: 0,
            census: Census::default(),
        }
    }

    pub fn cooldown_secs(&self) -> i64 {
        self.cooldown
    }

    /// How long (seconds) a pair keeps its X for sticky reuse after its last
    /// binding ended; older pairs are forgotten by [`Index::sweep`]. 30 days
    /// unless set.
    pub fn set_sticky_window(&mut self, secs: i64) {
        self.sticky_window = secs.max(0);
    }

    /// Makes room for `bindings` more records, so that loading a large store
    /// does not leave the tables at double their needed size.
    pub fn reserve(&mut self, bindings: usize) {
        self.records.reserve(bindings);
        let (hasher, records) = (&self.hasher, &self.records);
        self.by_id
            .reserve(bindings, |&r| id_hash(hasher, records.get(r as usize).id));
        self.slots.reserve(bindings.saturating_mul(2), |e| {
            slot_hash(hasher, e.x, e.party)
        });
        self.sticky.reserve(bindings, |&e| sticky_rehash(e));
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

// === impl Index: tables ===

impl Index {
    #[inline]
    fn rec(&self, r: u32) -> &Record {
        self.records.get(r as usize)
    }

    #[inline]
    fn rec_mut(&mut self, r: u32) -> &mut Record {
        self.records.get_mut(r as usize)
    }

    /// The record of binding `id`.
    fn find_id(&self, id: BindingId) -> Option<u32> {
        let records = &self.records;
        self.by_id
            .find(id_hash(&self.hasher, id), |&r| {
                records.get(r as usize).id == id
            })
            .copied()
    }

    /// The record holding `party` on number `n`.
    #[inline]
    fn slot(&self, n: u32, party: Number) -> Option<u32> {
        self.slots
            .find(slot_hash(&self.hasher, n, party), |e| {
                e.x == n && e.party == party
            })
            .map(|e| e.r)
    }

    /// The record holding extension `packed` on number `n`.
    fn ext_slot(&self, n: u32, packed: u32) -> Option<u32> {
        self.ext_slots
            .find(ext_hash(&self.hasher, n, packed), |e| {
                e.x == n && e.ext == packed
            })
            .map(|e| e.r)
    }

    /// Enters record `r` (already stored) in `by_id`, `slots`, `ext_slots`.
    fn link(&mut self, r: u32) {
        let (hasher, records) = (&self.hasher, &self.records);
        let rec = *records.get(r as usize);
        self.by_id.insert_unique(id_hash(hasher, rec.id), r, |&v| {
            id_hash(hasher, records.get(v as usize).id)
        });
        if rec.mode == Mode::Axn {
            return;
        }
        for p in [Some(rec.a), rec.b].into_iter().flatten() {
            self.link_party(r, p);
        }
        if rec.ext != 0 {
            let entry = ExtEntry {
                x: rec.x,
                ext: rec.ext,
                r,
            };
            let hasher = &self.hasher;
            self.ext_slots
                .insert_unique(ext_hash(hasher, rec.x, rec.ext), entry, |e| {
                    ext_hash(hasher, e.x, e.ext)
                });
        }
    }

    /// Enters `party` of record `r` in `slots`.
    fn link_party(&mut self, r: u32, party: Number) {
        let x = self.rec(r).x;
        let hasher = &self.hasher;
        self.slots.insert_unique(
            slot_hash(hasher, x, party),
            SlotEntry { party, x, r },
            |e| slot_hash(hasher, e.x, e.party),
        );
    }

    /// Takes `party` of record `r` out of `slots` (when it is there).
    fn unlink_party(&mut self, r: u32, party: Number) {
        let x = self.rec(r).x;
        if let Ok(entry) = self
            .slots
            .find_entry(slot_hash(&self.hasher, x, party), |e| {
                e.x == x && e.party == party && e.r == r
            })
        {
            entry.remove();
        }
    }

    /// Takes record `r` out of `by_id`, `slots` and `ext_slots`.
    fn unlink(&mut self, r: u32) {
        let rec = *self.rec(r);
        if let Ok(entry) = self
            .by_id
            .find_entry(id_hash(&self.hasher, rec.id), |&v| v == r)
        {
            entry.remove();
        }
        for p in [Some(rec.a), rec.b].into_iter().flatten() {
            self.unlink_party(r, p);
        }
        if rec.ext != 0
            && let Ok(entry) = self
                .ext_slots
                .find_entry(ext_hash(&self.hasher, rec.x, rec.ext), |e| {
                    e.x == rec.x && e.ext == rec.ext && e.r == r
                })
        {
            entry.remove();
        }
    }

    /// The X (and packed extension) a pair had last.
    fn sticky_get(&self, key: &StickyKey) -> Option<(u32, u32)> {
        let (records, numbers, ended) = (&self.records, &self.numbers, &self.ended);
        let h32 = sticky_h32(&self.hasher, key);
        let &e = self
            .sticky
            .find(widen(h32), sticky_eq(records, numbers, ended, h32, key))?;
        let v = e as u32;
        Some(if v & ENDED_TAG == 0 {
            let rec = records.get(v as usize);
            (rec.x, rec.ext)
        } else {
            let e = ended.get((v & !ENDED_TAG) as usize);
            (e.n, e.ext)
        })
    }

    /// Points record `r`'s pair at `r` (its latest binding).
    fn sticky_set_live(&mut self, r: u32) {
        let (records, numbers, ended) = (&self.records, &self.numbers, &self.ended);
        let rec = records.get(r as usize);
        let key = sticky_key(rec.tenant, rec.mode, rec.a, rec.b);
        let h32 = sticky_h32(&self.hasher, &key);
        let entry = self.sticky.entry(
            widen(h32),
            sticky_eq(records, numbers, ended, h32, &key),
            |&e| sticky_rehash(e),
        );
        let freed = match entry {
            Entry::Occupied(mut o) => {
                let old = *o.get() as u32;
                *o.get_mut() = sticky_entry(h32, r);
                Some(old)
            }
            Entry::Vacant(v) => {
                v.insert(sticky_entry(h32, r));
                None
            }
        };
        if let Some(old) = freed
            && old & ENDED_TAG != 0
        {
            self.free_ended(old & !ENDED_TAG);
        }
    }

    /// Record `r` stops being its pair's binding (it leaves the index, or its
    /// B changes; `at` is when): if its pair still points to it, the pair
    /// keeps the X as an ended pair.
    fn sticky_retire(&mut self, r: u32, at: UnixTime) {
        let rec = *self.rec(r);
        let key = sticky_key(rec.tenant, rec.mode, rec.a, rec.b);
        let Ok(mut entry) = self
            .sticky
            .find_entry(sticky_hash(&self.hasher, &key), |&e| e as u32 == r)
        else {
            return;
        };
        if self.ended.len() >= ENDED_TAG as usize {
            // Out of room (2^31 ended pairs): the pair loses its X.
            entry.remove();
            return;
        }
        retarget(entry.get_mut(), ENDED_TAG | self.ended.len() as u32);
        self.ended.push(EndedPair::new(&key, rec.x, rec.ext, at));
    }

    /// Drops `ended[e]`, whose `sticky` entry is already gone or replaced,
    /// moving the last ended pair into its place.
    fn free_ended(&mut self, e: u32) {
        let last = (self.ended.len() - 1) as u32;
        if e != last {
            let key = ended_key(&self.numbers, self.ended.get(last as usize));
            if let Some(entry) = self.sticky.find_mut(sticky_hash(&self.hasher, &key), |&v| {
                v as u32 == ENDED_TAG | last
            }) {
                retarget(entry, ENDED_TAG | e);
            }
        }
        self.ended.swap_remove(e as usize);
    }

    /// Checks up to `budget` ended pairs for age, forgetting those that
    /// ended longer than the sticky window before `now`.
    fn prune_sticky(&mut self, now: UnixTime, budget: usize) {
        let cutoff = now.saturating_sub(self.sticky_window);
        let mut left = budget;
        while left > 0 && self.ended_cursor < self.ended.len() {
            left -= 1;
            let e = self.ended_cursor;
            let pair = *self.ended.get(e);
            let at = pair.at();
            if at == UNSTAMPED {
                // Remembered before any call told the time: its window
                // starts now.
                self.ended.get_mut(e).stamp = stamp(now, pair.mode());
            } else if at < cutoff {
                let key = ended_key(&self.numbers, &pair);
                let code = ENDED_TAG | e as u32;
                if let Ok(entry) = self
                    .sticky
                    .find_entry(sticky_hash(&self.hasher, &key), |&v| v as u32 == code)
                {
                    entry.remove();
                }
                // The last pair moves into `e`: check `e` again.
                self.free_ended(e as u32);
                continue;
            }
            self.ended_cursor += 1;
        }
        if self.ended_cursor >= self.ended.len() {
            self.ended_cursor = 0;
        }
    }

    fn tick(&mut self, now: UnixTime) {
        self.clock = self.clock.max(now);
    }
}

// === impl Index: route decisions ===

impl Index {
    /// What to do with one inbound call or message. Reads only; allocates
    /// nothing.
    pub fn decide(&self, inbound: &Inbound, now: UnixTime) -> Decision {
        self.decide_caller(
            Some(inbound.caller),
            inbound.called,
            inbound.extension,
            inbound.channel,
            now,
        )
    }

    /// The decision for a caller that is no phone number (a text from a
    /// short code or an alphanumeric sender): never a bound party, so anyone.
    pub fn decide_stranger(
        &self,
        called: Number,
        extension: Option<Extension>,
        channel: Channel,
        now: UnixTime,
    ) -> Decision {
        self.decide_caller(None, called, extension, channel, now)
    }

    fn decide_caller(
        &self,
        caller: Option<Number>,
        called: Number,
        extension: Option<Extension>,
        channel: Channel,
        now: UnixTime,
    ) -> Decision {
        let no_binding = Decision::Announce {
            prompt: Prompt::NoBinding,
            binding: None,
            tenant: None,
        };
        let Some(&n) = self.number_ix.get(&called) else {
            return no_binding;
        };
        let slot = &self.numbers[n as usize];
        let tenant = self.tenants[slot.tenant as usize];
        let record = match slot.mode {
            None => None,
            Some(Mode::Axb) => caller.and_then(|c| self.slot(n, c)),
            Some(Mode::Axn) => Some(slot.holder).filter(|&h| h != NONE),
            Some(Mode::Axe) => match extension {
                None => return Decision::CollectExtension { tenant },
                Some(ext) => self.ext_slot(n, ext.packed()),
            },
        };
        let Some(r) = record else {
            return Decision::Announce {
                prompt: Prompt::NoBinding,
                binding: None,
                tenant: Some(tenant),
            };
        };
        let rec = self.rec(r);
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
            Mode::Axb if caller == Some(rec.a) => match rec.b {
                Some(b) => (Direction::AToB, b),
                None => return self.announce_no_b(rec, tenant),
            },
            Mode::Axb => (Direction::BToA, rec.a),
            Mode::Axn | Mode::Axe if caller == Some(rec.a) => match rec.b {
                Some(b) => (Direction::AToB, b),
                None => return self.announce_no_b(rec, tenant),
            },
            Mode::Axn | Mode::Axe if caller.is_some() && caller == rec.b => {
                (Direction::BToA, rec.a)
            }
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
        if channel == Channel::Sms && rec.flags & F_SMS == 0 {
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
            caller_id: called,
            max_call_seconds: (rec.max_call != 0).then_some(rec.max_call),
            record: rec.flags & F_RECORD != 0,
            pre_connect: rec.prompts & P_PRE_CONNECT != 0,
            callee_whisper: rec.prompts & P_CALLEE_WHISPER != 0,
            warn_before_end_seconds: Some(u32::from(rec.prompts & P_WARN)).filter(|&w| w > 0),
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
        self.check_real(req.a, req.b)?;
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
        let sticky = self.sticky_get(&sticky_key(t, req.mode, req.a, req.b));
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
        self.slot(n, party).is_some_and(|r| self.is_live(r, now))
    }

    fn ext_taken(&self, n: u32, packed: u32, now: UnixTime) -> bool {
        self.ext_slot(n, packed)
            .is_some_and(|r| self.is_live(r, now))
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
        let rec = self.rec(r);
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
        self.tick(now);
        validate_parties(nb.mode, nb.a, nb.b)?;
        if self.find_id(nb.id).is_some() {
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
                if parties.iter().flatten().any(|&p| self.slot(n, p).is_some()) {
                    return Err(Error::PartyConflict);
                }
                if let Some(ext) = nb.extension
                    && self.ext_slot(n, ext.packed()).is_some()
                {
                    return Err(Error::ExtensionTaken);
                }
            }
        }
        if self.records.len() >= MAX_RECORDS && self.vacant.is_empty() {
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
            prompts: pack_prompts(&nb.controls),
        };
        let r = match self.vacant.pop() {
            Some(r) => {
                *self.rec_mut(r) = record;
                r
            }
            None => {
                self.records.push(record);
                (self.records.len() - 1) as u32
            }
        };
        self.link(r);
        if nb.mode == Mode::Axn {
            self.numbers[n as usize].holder = r;
        }
        let slot = &mut self.numbers[n as usize];
        slot.records.push(r);
        if slot.records.len() == 1 {
            slot.mode = Some(nb.mode);
            let pool = self.pools.entry((t, slot.area)).or_default();
            pool.free.remove(&n);
            pool.by_mode[nb.mode.index()].insert(n);
        }
        self.sticky_set_live(r);
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
            if let Some(r) = self.slot(n, *p) {
                stale.push(r);
            }
        }
        if let Some(ext) = ext
            && let Some(r) = self.ext_slot(n, ext.packed())
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
        let rec = *self.rec(r);
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
        match self.find_id(id) {
            Some(r) => {
                self.remove_record(r);
                true
            }
            None => false,
        }
    }

    fn remove_record(&mut self, r: u32) {
        let rec = *self.rec(r);
        if rec.flags & F_VACANT != 0 {
            return;
        }
        let n = rec.x;
        self.unlink(r);
        self.sticky_retire(r, rec.ends_at);
        let slot = &mut self.numbers[n as usize];
        if slot.holder == r {
            slot.holder = NONE;
        }
        let pos = rec.pos as usize;
        slot.records.swap_remove(pos);
        if let Some(&moved) = slot.records.get(pos) {
            self.records.get_mut(moved as usize).pos = pos as u32;
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
        self.rec_mut(r).flags = F_VACANT;
        self.vacant.push(r);
    }

    /// The write of a reserved binding is durable: it may route now.
    /// `false` when the reservation is no longer here ([`Index::apply`]
    /// dropped it for another node's binding).
    pub fn confirm(&mut self, id: BindingId) -> bool {
        match self.find_id(id) {
            Some(r) => {
                self.rec_mut(r).flags &= !F_PENDING;
                true
            }
            None => false,
        }
    }

    /// Ends a binding at `at` (unbind). Returns the previous end, for undo.
    pub fn end(&mut self, id: BindingId, at: UnixTime) -> Option<UnixTime> {
        let r = self.find_id(id)?;
        let rec = self.rec_mut(r);
        let before = rec.ends_at;
        rec.ends_at = rec.ends_at.min(at);
        rec.flags |= F_ENDED;
        Some(before)
    }

    /// Restores the end a failed write changed.
    pub fn undo_end(&mut self, id: BindingId, ends_at: UnixTime, was_ended: bool) {
        if let Some(r) = self.find_id(id) {
            let rec = self.rec_mut(r);
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
        self.tick(now);
        let r = self.find_id(id)?;
        let rec = self.rec_mut(r);
        if rec.flags & F_ENDED != 0 || rec.ends_at <= now {
            return None;
        }
        let before = rec.ends_at;
        rec.ends_at = expires_at;
        Some(before)
    }

    pub fn set_controls(&mut self, id: BindingId, controls: &Controls) {
        if let Some(r) = self.find_id(id) {
            let rec = self.rec_mut(r);
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
            rec.prompts = pack_prompts(controls);
        }
    }

    /// Changes B, keeping the one-binding-per-party-per-X invariant.
    pub fn set_b(&mut self, id: BindingId, b: Option<Number>, now: UnixTime) -> Result<(), Error> {
        self.tick(now);
        let r = self.find_id(id).ok_or(Error::BindingNotFound)?;
        let rec = *self.rec(r);
        validate_parties(rec.mode, rec.a, b)?;
        if rec.b != b {
            self.check_real(rec.a, b)?;
        }
        if rec.b == b {
            return Ok(());
        }
        let n = rec.x;
        if rec.mode != Mode::Axn
            && let Some(new_b) = b
        {
            self.evict_stale(n, &[Some(new_b)], None, now);
            if self.slot(n, new_b).is_some() {
                return Err(Error::PartyConflict);
            }
        }
        // `sticky` hashes B through the record: the old pair's entry comes
        // out (as an ended pair) before B changes, the new one goes in after.
        if rec.mode != Mode::Axn
            && let Some(old_b) = rec.b
        {
            self.unlink_party(r, old_b);
        }
        if sticky_key(rec.tenant, rec.mode, rec.a, rec.b)
            != sticky_key(rec.tenant, rec.mode, rec.a, b)
        {
            // The old pair has no binding now.
            self.sticky_retire(r, now);
        }
        self.rec_mut(r).b = b;
        if rec.mode != Mode::Axn
            && let Some(new_b) = b
        {
            self.link_party(r, new_b);
        }
        self.sticky_set_live(r);
        Ok(())
    }

    /// Makes the index hold a binding as the store has it, when another
    /// node stored it (a shared database already enforced every
    /// invariant): inserts it, or brings the record it has up to date (B,
    /// end, controls). Local records in its way are dropped: reservations
    /// the store is bound to refuse, or records whose end this node has not
    /// heard of yet. Returns the ids of the records dropped.
    pub fn apply(&mut self, nb: &NewBinding, now: UnixTime) -> Result<Vec<BindingId>, Error> {
        self.tick(now);
        let mut dropped = Vec::new();
        if let Some(r) = self.find_id(nb.id) {
            let rec = *self.rec(r);
            if rec.b != nb.b {
                if rec.mode != Mode::Axn
                    && let Some(new_b) = nb.b
                    && let Some(o) = self.slot(rec.x, new_b)
                    && o != r
                {
                    dropped.push(self.rec(o).id);
                    self.remove_record(o);
                }
                self.set_b(nb.id, nb.b, now)?;
            }
            let rec = self.rec_mut(r);
            rec.ends_at = nb.ends_at;
            if nb.ended {
                rec.flags |= F_ENDED;
            }
            self.set_controls(nb.id, &nb.controls);
            return Ok(dropped);
        }
        if now >= nb.ends_at.saturating_add(self.cooldown) {
            return Ok(dropped);
        }
        let n = self
            .own_number(nb.tenant, nb.x)
            .ok_or(Error::NumberNotFound)?;
        let slot = &self.numbers[n as usize];
        let mut in_way: Vec<u32> = Vec::new();
        if nb.mode == Mode::Axn || slot.mode.is_some_and(|m| m != nb.mode) {
            in_way.extend(&slot.records);
        } else {
            for p in [Some(nb.a), nb.b].into_iter().flatten() {
                in_way.extend(self.slot(n, p));
            }
            if let Some(ext) = nb.extension {
                in_way.extend(self.ext_slot(n, ext.packed()));
            }
            if slot.holder != NONE {
                in_way.push(slot.holder);
            }
        }
        for r in in_way {
            if self.rec(r).flags & F_VACANT == 0 {
                dropped.push(self.rec(r).id);
                self.remove_record(r);
            }
        }
        self.insert(nb, now)?;
        Ok(dropped)
    }

    /// Refuses a party that is a virtual number of any pool: a call to it
    /// would come back to Maskline (a loop, or a way to chain pools).
    fn check_real(&self, a: Number, b: Option<Number>) -> Result<(), Error> {
        let is_virtual = |n: Number| {
            self.number_ix
                .get(&n)
                .is_some_and(|&i| !self.numbers[i as usize].retired)
        };
        if is_virtual(a) || b.is_some_and(is_virtual) {
            return Err(Error::PartyIsVirtual);
        }
        Ok(())
    }

    /// Every tenant's pool: (tenant, number) pairs, retired numbers left out.
    pub fn pool_numbers(&self) -> Vec<(TenantId, Number)> {
        self.numbers
            .iter()
            .filter(|slot| !slot.retired)
            .map(|slot| (self.tenants[slot.tenant as usize], slot.number))
            .collect()
    }

    /// The extension of a binding in the index (`axe` ones have one).
    pub fn extension_of(&self, id: BindingId) -> Option<Extension> {
        let r = self.find_id(id)?;
        Extension::unpack(self.rec(r).ext)
    }

    /// When a binding in the index ends (or ended).
    pub fn ends_at(&self, id: BindingId) -> Option<UnixTime> {
        let r = self.find_id(id)?;
        Some(self.rec(r).ends_at)
    }

    /// Whether the store already knows this binding ended.
    pub fn is_ended(&self, id: BindingId) -> Option<bool> {
        let r = self.find_id(id)?;
        Some(self.rec(r).flags & F_ENDED != 0)
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
        let Some(n) = self.own_number(tenant, x) else {
            return;
        };
        let t = self.numbers[n as usize].tenant;
        let key = sticky_key(t, mode, a, b);
        let ext = extension.map_or(0, Extension::packed);
        // The binding's end is not known here: the pair's window starts at
        // the latest time the index was told (or at the next sweep).
        let mut pair = EndedPair::new(&key, n, ext, self.clock);
        if self.clock == UnixTime::MIN {
            pair.stamp = (UNSTAMPED << 2) | i64::from(key.1);
        }
        let (records, numbers, ended) = (&self.records, &self.numbers, &self.ended);
        let h32 = sticky_h32(&self.hasher, &key);
        let entry = self.sticky.entry(
            widen(h32),
            sticky_eq(records, numbers, ended, h32, &key),
            |&e| sticky_rehash(e),
        );
        let next = ENDED_TAG | self.ended.len() as u32;
        match entry {
            Entry::Occupied(o) if *o.get() as u32 & ENDED_TAG != 0 => {
                let e = *o.get() as u32 & !ENDED_TAG;
                *self.ended.get_mut(e as usize) = pair;
            }
            _ if self.ended.len() >= ENDED_TAG as usize => {}
            Entry::Occupied(mut o) => {
                retarget(o.get_mut(), next);
                self.ended.push(pair);
            }
            Entry::Vacant(v) => {
                v.insert(sticky_entry(h32, next));
                self.ended.push(pair);
            }
        }
    }
}

// === impl Index: housekeeping ===

impl Index {
    /// Visits up to `budget` record slots, dropping records past cool-down
    /// and reporting bindings that have just expired, then up to `budget`
    /// remembered pairs, forgetting those older than the sticky window (see
    /// [`Index::set_sticky_window`]). Called in small steps so that no single
    /// call holds the lock for long.
    pub fn sweep(&mut self, now: UnixTime, budget: usize) -> SweepReport {
        self.tick(now);
        let mut report = SweepReport {
            expired: std::mem::take(&mut self.unreported),
            ..SweepReport::default()
        };
        let end = self
            .sweep_cursor
            .saturating_add(budget)
            .min(self.records.len());
        for r in self.sweep_cursor..end {
            let rec = *self.records.get(r);
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
                        self.records.get_mut(r).flags |= F_ENDED;
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
        self.prune_sticky(now, budget);
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
        self.records.heap_bytes()
            + self.vacant.capacity() * 4
            + self.by_id.allocation_size()
            + self.slots.allocation_size()
            + self.ext_slots.allocation_size()
            + self.sticky.allocation_size()
            + self.ended.heap_bytes()
            + self.number_ix.allocation_size()
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
        self.check_tables()
    }

    /// The lookup tables hold exactly what the records say, each entry
    /// findable under its hash.
    fn check_tables(&self) -> Result<(), String> {
        let (mut held, mut sides, mut exts) = (0, 0, 0);
        for (r, rec) in self.records.iter().enumerate() {
            let r = r as u32;
            if rec.flags & F_VACANT != 0 {
                continue;
            }
            held += 1;
            if self.find_id(rec.id) != Some(r) {
                return Err(format!("binding {} not found by id", rec.id.0));
            }
            if rec.mode != Mode::Axn {
                for p in [Some(rec.a), rec.b].into_iter().flatten() {
                    sides += 1;
                    if self.slot(rec.x, p) != Some(r) {
                        return Err(format!("party {p:?} of {} not in slots", rec.id.0));
                    }
                }
            }
            if rec.ext != 0 {
                exts += 1;
                if self.ext_slot(rec.x, rec.ext) != Some(r) {
                    return Err(format!("extension of {} not in ext_slots", rec.id.0));
                }
            }
        }
        let lens = (self.by_id.len(), self.slots.len(), self.ext_slots.len());
        if lens != (held, sides, exts) {
            return Err(format!(
                "tables hold {lens:?} entries for {:?}",
                (held, sides, exts)
            ));
        }
        let mut keys = std::collections::HashSet::new();
        let mut ended = 0;
        for &e in self.sticky.iter() {
            let v = e as u32;
            if v & ENDED_TAG == 0 {
                if v as usize >= self.records.len() || self.rec(v).flags & F_VACANT != 0 {
                    return Err(format!("sticky points to dropped record {v}"));
                }
            } else if (v & !ENDED_TAG) as usize >= self.ended.len() {
                return Err(format!("sticky points past the ended pairs: {v:x}"));
            } else {
                ended += 1;
            }
            let key = sticky_entry_key(&self.records, &self.numbers, &self.ended, v);
            if !keys.insert(key) {
                return Err(format!("sticky holds {key:?} twice"));
            }
            if (e >> 32) as u32 != sticky_h32(&self.hasher, &key)
                || self
                    .sticky
                    .find(sticky_hash(&self.hasher, &key), |&w| w == e)
                    .is_none()
            {
                return Err(format!("sticky entry {v:x} not under its hash"));
            }
        }
        if ended != self.ended.len() {
            return Err(format!(
                "{} ended pairs, {ended} in sticky",
                self.ended.len()
            ));
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

#[inline]
fn id_hash(hasher: &DefaultHashBuilder, id: BindingId) -> u64 {
    hasher.hash_one(id)
}

#[inline]
fn slot_hash(hasher: &DefaultHashBuilder, n: u32, party: Number) -> u64 {
    hasher.hash_one((n, party))
}

#[inline]
fn ext_hash(hasher: &DefaultHashBuilder, n: u32, packed: u32) -> u64 {
    hasher.hash_one((n, packed))
}

/// 32 bits of a sticky key's hash: kept in its entry.
fn sticky_h32(hasher: &DefaultHashBuilder, key: &StickyKey) -> u32 {
    (hasher.hash_one(key) >> 32) as u32
}

/// The table hash of a `sticky_h32`, spread over 64 bits (the table takes
/// its bucket from the low bits and a tag from the top ones).
#[inline]
fn widen(h32: u32) -> u64 {
    u64::from(h32).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

fn sticky_hash(hasher: &DefaultHashBuilder, key: &StickyKey) -> u64 {
    widen(sticky_h32(hasher, key))
}

/// The table hash of a `sticky` entry, from the entry alone.
fn sticky_rehash(e: u64) -> u64 {
    widen((e >> 32) as u32)
}

/// A `sticky` entry: `h32` and what it points to.
fn sticky_entry(h32: u32, v: u32) -> u64 {
    (u64::from(h32) << 32) | u64::from(v)
}

/// Points a `sticky` entry elsewhere (its key, so its hash, is the same).
fn retarget(e: &mut u64, v: u32) {
    *e = (*e & !u64::from(u32::MAX)) | u64::from(v);
}

/// Whether a `sticky` entry is `key`'s: its stored `h32` first, then the
/// key rebuilt from what it points to.
fn sticky_eq<'a>(
    records: &'a Chunked<Record>,
    numbers: &'a [NumberSlot],
    ended: &'a Chunked<EndedPair>,
    h32: u32,
    key: &'a StickyKey,
) -> impl Fn(&u64) -> bool + 'a {
    move |&e| (e >> 32) as u32 == h32 && sticky_entry_key(records, numbers, ended, e as u32) == *key
}

/// The key of a `sticky` entry.
fn sticky_entry_key(
    records: &Chunked<Record>,
    numbers: &[NumberSlot],
    ended: &Chunked<EndedPair>,
    v: u32,
) -> StickyKey {
    if v & ENDED_TAG == 0 {
        let rec = records.get(v as usize);
        sticky_key(rec.tenant, rec.mode, rec.a, rec.b)
    } else {
        ended_key(numbers, ended.get((v & !ENDED_TAG) as usize))
    }
}

fn ended_key(numbers: &[NumberSlot], pair: &EndedPair) -> StickyKey {
    (numbers[pair.n as usize].tenant, pair.mode(), pair.a, pair.b)
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

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    const T: TenantId = TenantId(1);

    fn num(digits: u64) -> Number {
        Number::from_digits(digits).expect("valid")
    }

    /// An index with a 100 s sticky window and two free numbers.
    fn setup() -> (Index, Number, Number) {
        let mut index = Index::new(10);
        index.set_sticky_window(100);
        index.add_tenant(T);
        let (x1, x2) = (num(8657100000001), num(8657100000002));
        index.add_number(T, x1, None).expect("x1");
        index.add_number(T, x2, None).expect("x2");
        (index, x1, x2)
    }

    fn x_for(index: &Index, a: u64, b: u64, now: UnixTime) -> Number {
        let req = AllocRequest {
            tenant: T,
            mode: Mode::Axb,
            a: num(a),
            b: Some(num(b)),
            area: None,
            area_match: AreaMatch::Fallback,
            extension_len: 4,
        };
        let mut rng = StdRng::seed_from_u64(1);
        index.allocate(&req, now, &mut rng).expect("free").x
    }

    fn bind(index: &mut Index, id: u128, x: Number, a: u64, b: u64, ends_at: UnixTime) {
        let nb = NewBinding {
            id: BindingId(id),
            tenant: T,
            mode: Mode::Axb,
            x,
            extension: None,
            a: num(a),
            b: Some(num(b)),
            ends_at,
            ended: false,
            controls: Controls::default(),
            pending: false,
        };
        assert_eq!(index.insert(&nb, 0), Ok(true));
    }

    fn remote(
        id: u128,
        mode: Mode,
        x: Number,
        a: u64,
        b: Option<u64>,
        ends_at: UnixTime,
    ) -> NewBinding {
        NewBinding {
            id: BindingId(id),
            tenant: T,
            mode,
            x,
            extension: None,
            a: num(a),
            b: b.map(num),
            ends_at,
            ended: false,
            controls: Controls::default(),
            pending: false,
        }
    }

    fn inbound(caller: u64, called: Number) -> Inbound {
        Inbound {
            caller: num(caller),
            called,
            extension: None,
            channel: Channel::Voice,
        }
    }

    #[test]
    fn apply_inserts_a_new_binding_and_updates_a_known_one() {
        let (mut index, x1, _) = setup();
        let mut b = remote(1, Mode::Axb, x1, 8613800000001, Some(8613800000002), 100);
        assert_eq!(index.apply(&b, 0), Ok(vec![]));
        assert!(matches!(
            index.decide(&inbound(8613800000001, x1), 0),
            Decision::Connect(c) if c.to == num(8613800000002)
        ));
        // Another node changed B and then ended it.
        b.b = Some(num(8613800000003));
        assert_eq!(index.apply(&b, 1), Ok(vec![]));
        assert!(matches!(
            index.decide(&inbound(8613800000001, x1), 1),
            Decision::Connect(c) if c.to == num(8613800000003)
        ));
        // The old B is free on X again.
        assert_eq!(
            index.slot(index.own_number(T, x1).expect("x1"), num(8613800000002)),
            None
        );
        b.ends_at = 5;
        b.ended = true;
        assert_eq!(index.apply(&b, 6), Ok(vec![]));
        assert!(!matches!(
            index.decide(&inbound(8613800000001, x1), 6),
            Decision::Connect(_)
        ));
        assert_eq!(index.is_ended(BindingId(1)), Some(true));
        index.check_invariants(6).expect("invariants");
        // Past its cool-down an unknown binding is not inserted at all.
        let old = remote(2, Mode::Axb, x1, 8613800000005, Some(8613800000006), 5);
        assert_eq!(index.apply(&old, 100), Ok(vec![]));
        assert_eq!(index.is_ended(BindingId(2)), None);
    }

    #[test]
    fn apply_drops_local_records_in_the_way() {
        let (mut index, x1, _) = setup();
        // A local reservation of party 1 on X1, and a local axb on X1.
        let mut pending = remote(1, Mode::Axb, x1, 8613800000001, Some(8613800000002), 100);
        pending.pending = true;
        assert_eq!(index.insert(&pending, 0), Ok(true));
        bind(&mut index, 2, x1, 8613800000003, 8613800000004, 100);
        // Another node committed party 1 on X1 first: the reservation goes,
        // the unrelated binding stays.
        let theirs = remote(3, Mode::Axb, x1, 8613800000009, Some(8613800000001), 100);
        assert_eq!(index.apply(&theirs, 1), Ok(vec![BindingId(1)]));
        assert!(!index.confirm(BindingId(1)));
        assert_eq!(index.is_ended(BindingId(2)), Some(false));
        index.check_invariants(1).expect("invariants");
        // An axn binding committed elsewhere on X1 takes the whole number.
        let axn = remote(4, Mode::Axn, x1, 8613800000020, None, 100);
        let mut dropped = index.apply(&axn, 2).expect("applied");
        dropped.sort();
        assert_eq!(dropped, vec![BindingId(2), BindingId(3)]);
        assert!(matches!(
            index.decide(&inbound(8613800000077, x1), 2),
            Decision::Connect(c) if c.to == num(8613800000020)
        ));
        index.check_invariants(2).expect("invariants");
        // A number this node does not have is an error, and changes nothing.
        let elsewhere = remote(
            5,
            Mode::Axb,
            num(8657100000099),
            8613800000001,
            Some(8613800000002),
            100,
        );
        assert_eq!(index.apply(&elsewhere, 2), Err(Error::NumberNotFound));
        assert_eq!(index.len(), 1);
    }

    #[test]
    fn pool_numbers_lists_each_tenants_numbers_but_not_retired_ones() {
        let (mut index, x1, x2) = setup();
        let mut all = index.pool_numbers();
        all.sort();
        assert_eq!(all, vec![(T, x1), (T, x2)]);
        index.retire_number(T, x1, 0).expect("retire");
        assert_eq!(index.pool_numbers(), vec![(T, x2)]);
    }

    #[test]
    fn ended_pairs_are_forgotten_after_the_sticky_window() {
        let (mut index, x1, x2) = setup();
        bind(&mut index, 1, x2, 8613800000001, 8613800000002, 50);
        // Past cool-down, swept or not, the pair gets x2 back.
        assert_eq!(x_for(&index, 8613800000001, 8613800000002, 60), x2);
        index.sweep(60, usize::MAX);
        assert!(index.is_empty());
        assert_eq!(x_for(&index, 8613800000002, 8613800000001, 60), x2);
        // Ended at 50: kept through 150, gone after.
        index.sweep(150, usize::MAX);
        assert_eq!(x_for(&index, 8613800000001, 8613800000002, 150), x2);
        index.sweep(151, usize::MAX);
        assert_eq!(x_for(&index, 8613800000001, 8613800000002, 151), x1);
        assert_eq!((index.sticky.len(), index.ended.len()), (0, 0));
        index.check_invariants(151).expect("invariants");
    }

    #[test]
    fn remembered_pairs_count_from_the_first_time_known() {
        let (mut index, x1, x2) = setup();
        index.remember(
            T,
            Mode::Axb,
            num(8613800000001),
            Some(num(8613800000002)),
            x2,
            None,
        );
        assert_eq!(x_for(&index, 8613800000001, 8613800000002, 1000), x2);
        index.sweep(1000, usize::MAX);
        index.sweep(1100, usize::MAX);
        assert_eq!(x_for(&index, 8613800000001, 8613800000002, 1100), x2);
        index.sweep(1101, usize::MAX);
        assert_eq!(x_for(&index, 8613800000001, 8613800000002, 1101), x1);
        // Once the index knows the time, remember stamps with it.
        index.remember(
            T,
            Mode::Axb,
            num(8613800000001),
            Some(num(8613800000002)),
            x2,
            None,
        );
        index.sweep(1201, usize::MAX);
        assert_eq!(x_for(&index, 8613800000001, 8613800000002, 1201), x2);
        index.sweep(1202, usize::MAX);
        assert_eq!(x_for(&index, 8613800000001, 8613800000002, 1202), x1);
    }

    #[test]
    fn pruning_runs_within_the_sweep_budget() {
        let (mut index, _, x2) = setup();
        for i in 0..50u64 {
            let ends_at = if i % 2 == 0 { 450 } else { 500 };
            bind(
                &mut index,
                u128::from(i) + 1,
                x2,
                8613800000000 + 2 * i,
                8613800000001 + 2 * i,
                ends_at,
            );
        }
        index.sweep(510, usize::MAX);
        assert_eq!(index.ended.len(), 50);
        let mut calls = 0;
        while index.ended.len() > 25 {
            index.sweep(560, 3);
            index.check_invariants(560).expect("invariants");
            calls += 1;
            assert!(calls < 100, "pruning makes no progress");
        }
        assert!(calls >= 25 / 3, "pruned more than the budget allows");
        for _ in 0..20 {
            index.sweep(560, 3);
        }
        assert_eq!(index.ended.len(), 25, "pairs within the window stay");
        assert!(index.ended.iter().all(|p| p.at() == 500));
    }

    #[test]
    fn decisions_on_crowded_numbers() {
        let mut index = Index::new(10);
        index.add_tenant(T);
        let xs: Vec<Number> = (1..=3).map(|i| num(8657100000000 + i)).collect();
        for &x in &xs {
            index.add_number(T, x, None).expect("x");
        }
        let axe = num(8657100000009);
        index.add_number(T, axe, None).expect("axe");
        let party = |i: u64| num(8613800000000 + i);
        for i in 0..300u64 {
            bind(
                &mut index,
                u128::from(i) + 1,
                xs[(i % 3) as usize],
                8613800000000 + 2 * i,
                8613800000001 + 2 * i,
                1_000,
            );
        }
        for i in 0..50u64 {
            let nb = NewBinding {
                id: BindingId(1_000 + u128::from(i)),
                tenant: T,
                mode: Mode::Axe,
                x: axe,
                extension: Some(Extension::new(i as u32, 4).expect("ext")),
                a: party(5_000 + i),
                b: None,
                ends_at: 1_000,
                ended: false,
                controls: Controls::default(),
                pending: false,
            };
            assert_eq!(index.insert(&nb, 0), Ok(true));
        }
        index.check_invariants(0).expect("invariants");
        let call = |caller, called, extension| Inbound {
            caller,
            called,
            extension,
            channel: Channel::Voice,
        };
        for i in 0..300u64 {
            let x = xs[(i % 3) as usize];
            let (a, b) = (party(2 * i), party(2 * i + 1));
            for (from, to) in [(a, b), (b, a)] {
                match index.decide(&call(from, x, None), 0) {
                    Decision::Connect(c) => {
                        assert_eq!((c.binding, c.to), (BindingId(u128::from(i) + 1), to));
                    }
                    d => panic!("binding {i}: {d:?}"),
                }
            }
            // Bound on another number only.
            let other = xs[((i + 1) % 3) as usize];
            assert!(matches!(
                index.decide(&call(a, other, None), 0),
                Decision::Announce {
                    prompt: Prompt::NoBinding,
                    binding: None,
                    ..
                }
            ));
        }
        for i in 0..60u64 {
            let ext = Extension::new(i as u32, 4).expect("ext");
            let got = index.decide(&call(party(9_999), axe, Some(ext)), 0);
            match got {
                Decision::Connect(c) if i < 50 => {
                    assert_eq!(
                        (c.binding, c.to),
                        (BindingId(1_000 + u128::from(i)), party(5_000 + i))
                    );
                }
                Decision::Announce {
                    prompt: Prompt::NoBinding,
                    ..
                } if i >= 50 => {}
                d => panic!("extension {i}: {d:?}"),
            }
        }
        for i in (0..300u64).step_by(2) {
            assert!(index.remove(BindingId(u128::from(i) + 1)));
        }
        index
            .check_invariants(0)
            .expect("invariants after removals");
    }

    #[test]
    fn chunked_storage_grows_and_shrinks_by_whole_chunks() {
        let mut c: Chunked<u32> = Chunked::new();
        for i in 0..(2 * CHUNK + 5) as u32 {
            c.push(i);
        }
        assert_eq!(c.chunks.len(), 3);
        assert_eq!(*c.get(CHUNK + 7), (CHUNK + 7) as u32);
        c.swap_remove(3);
        assert_eq!(*c.get(3), (2 * CHUNK + 4) as u32);
        while c.len() > CHUNK - 1 {
            c.swap_remove(c.len() - 1);
        }
        // One empty chunk is kept as a spare.
        assert_eq!(c.chunks.len(), 2);
        assert!(c.chunks[1].is_empty());
        assert_eq!(c.iter().count(), CHUNK - 1);
        assert_eq!(
            c.heap_bytes(),
            c.chunks.capacity() * std::mem::size_of::<Vec<u32>>() + 2 * CHUNK * 4
        );
    }

    #[test]
    fn record_indexes_fit_the_tags() {
        assert!(MAX_RECORDS <= ENDED_TAG as usize);
        assert_eq!(
            ((MAX_RECORDS - 1) << 1 | 1) as u32 >> 1,
            (MAX_RECORDS - 1) as u32
        );
    }
}
