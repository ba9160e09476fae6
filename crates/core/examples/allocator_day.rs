//! Figure 3 of BENCHMARKS.md: how many numbers the allocator needs over a
//! simulated day, against the lower bound and a naive allocator.
//!
//! A day of `axb` bindings (default 1,000,000) over 10 areas arrives with a
//! food-delivery-like daily profile. Each binding pairs A with B, both drawn
//! from the area's parties by a Zipf law (see [`SCENARIOS`]: popular
//! merchants with hundreds of bindings at once, or couriers and repeat
//! customers with a few dozen on both sides), asks for its parties' area
//! (`Strict`), and lives a log-normal time (median 30 min, clamped to
//! 2 min .. 12 h) followed by a 30 min cool-down.
//!
//! - first-fit: the real [`Index::allocate`] + [`Index::insert`], with `now`
//!   advancing and [`Index::sweep`] every simulated minute;
//! - naive: a uniformly random eligible number of the area (neither party
//!   live on it), checked by inserting into a second [`Index`].
//!
//! Numbers in use = numbers with at least one live (active or cooling)
//! binding, tracked exactly from the bindings' lifetimes. Lower bound, per
//! area: the most live bindings one party has at once in that area (each
//! needs its own number); total: the sum over areas.
//!
//! Run: `cargo run --release -p maskline-core --example allocator_day`
//! (env `BINDINGS`, `POOL_PER_AREA`, `SEED`, `SCENARIO` change the defaults).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

use hashbrown::{HashMap, HashSet};
use maskline_core::{
    AllocRequest, Area, AreaMatch, BindingId, Controls, Index, Mode, NewBinding, Number, TenantId,
    UnixTime,
};
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};

const TENANT: TenantId = TenantId(0x0190_0000_0000_7000_8000_0000_0000_0001);
const COOLDOWN: i64 = 1_800;
/// Area code, national digits of its numbers' prefix, share of traffic.
const AREAS: [(&str, u64, u32); 10] = [
    ("010", 10, 16),
    ("021", 21, 16),
    ("020", 20, 12),
    ("0755", 755, 12),
    ("0571", 571, 10),
    ("028", 28, 8),
    ("027", 27, 8),
    ("029", 29, 6),
    ("025", 25, 6),
    ("023", 23, 6),
];
/// Who the parties of a day's bindings are.
struct Scenario {
    name: &'static str,
    /// B: merchants or couriers per area, and their Zipf exponent.
    bs: usize,
    b_zipf: f64,
    /// A: consumers per area, and their Zipf exponent (0 = uniform).
    as_: usize,
    a_zipf: f64,
}

const SCENARIOS: [Scenario; 2] = [
    // Food delivery / e-commerce: a few very popular merchants, consumers
    // with one order at a time.
    Scenario {
        name: "merchants",
        bs: 50_000,
        b_zipf: 1.0,
        as_: 2_000_000,
        a_zipf: 0.0,
    },
    // Ride-hailing / courier: flatter popularity on both sides, so both
    // parties of a binding have other bindings at once.
    Scenario {
        name: "couriers",
        bs: 20_000,
        b_zipf: 0.5,
        as_: 500_000,
        a_zipf: 0.6,
    },
];

/// Relative arrivals per hour of the day: night, lunch peak, dinner peak.
const HOURLY: [u32; 24] = [
    3, 2, 1, 1, 1, 2, 4, 8, 10, 9, 12, 20, 22, 14, 9, 8, 10, 16, 20, 17, 12, 9, 6, 4,
];

struct Spec {
    at: UnixTime,
    ends_at: UnixTime,
    area: usize,
    a: Number,
    b: Number,
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

fn number(digits: u64) -> Number {
    Number::from_digits(digits).expect("generated numbers are in range")
}

/// Virtual number `k` of area `i`: +86 <code> 6 <7 digits>.
fn x_number(i: usize, k: u64) -> Number {
    let code = AREAS[i].1;
    let width = if code < 100 { 8 } else { 7 };
    number(
        (86 * 10u64.pow(code.ilog10() + 1) + code) * 10u64.pow(width)
            + 6 * 10u64.pow(width - 1)
            + k,
    )
}

fn normal(rng: &mut SmallRng) -> f64 {
    // Box-Muller.
    let u1: f64 = 1.0 - rng.random::<f64>();
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

fn pick_weighted(rng: &mut SmallRng, weights: &[u32]) -> usize {
    let total: u32 = weights.iter().sum();
    let mut r = rng.random_range(0..total);
    for (i, &w) in weights.iter().enumerate() {
        if r < w {
            return i;
        }
        r -= w;
    }
    weights.len() - 1
}

/// Ranks 0..n drawn with probability proportional to 1 / (rank + 1)^s.
struct Zipf(Vec<f64>);

impl Zipf {
    fn new(n: usize, s: f64) -> Zipf {
        let mut acc = 0.0;
        Zipf(
            (1..=n)
                .map(|k| {
                    acc += 1.0 / (k as f64).powf(s);
                    acc
                })
                .collect(),
        )
    }

    fn sample(&self, rng: &mut SmallRng) -> u64 {
        let u = rng.random::<f64>() * self.0[self.0.len() - 1];
        self.0.partition_point(|&c| c < u).min(self.0.len() - 1) as u64
    }
}

fn day(n: usize, sc: &Scenario, rng: &mut SmallRng) -> Vec<Spec> {
    let bs = Zipf::new(sc.bs, sc.b_zipf);
    let as_ = Zipf::new(sc.as_, sc.a_zipf);
    let area_weights: Vec<u32> = AREAS.iter().map(|a| a.2).collect();
    let mut specs: Vec<Spec> = (0..n)
        .map(|_| {
            let hour = pick_weighted(rng, &HOURLY) as i64;
            let at = hour * 3600 + rng.random_range(0..3600);
            let minutes = (30f64.ln() + 1.0 * normal(rng)).exp().clamp(2.0, 720.0);
            let area = pick_weighted(rng, &area_weights);
            Spec {
                at,
                ends_at: at + (minutes * 60.0) as i64,
                area,
                // 138<area digit><7 digits>: A; 139...: B.
                a: number(8_613_800_000_000 + area as u64 * 10_000_000 + as_.sample(rng)),
                b: number(8_613_900_000_000 + area as u64 * 10_000_000 + bs.sample(rng)),
            }
        })
        .collect();
    specs.sort_by_key(|s| s.at);
    specs
}

/// Exact usage of numbers by live bindings, for one allocator.
struct Usage {
    live: HashMap<Number, u32>,
    in_use: Vec<u64>,
    peak: Vec<u64>,
    peak_total: u64,
    /// Most live bindings seen on one number.
    max_per_number: u32,
}

impl Usage {
    fn new() -> Usage {
        Usage {
            live: HashMap::new(),
            in_use: vec![0; AREAS.len()],
            peak: vec![0; AREAS.len()],
            peak_total: 0,
            max_per_number: 0,
        }
    }

    fn add(&mut self, area: usize, x: Number) {
        let c = self.live.entry(x).or_default();
        *c += 1;
        self.max_per_number = self.max_per_number.max(*c);
        if *c == 1 {
            self.in_use[area] += 1;
            self.peak[area] = self.peak[area].max(self.in_use[area]);
            self.peak_total = self.peak_total.max(self.in_use.iter().sum());
        }
    }

    fn remove(&mut self, area: usize, x: Number) {
        let c = self.live.get_mut(&x).expect("tracked");
        *c -= 1;
        if *c == 0 {
            self.live.remove(&x);
            self.in_use[area] -= 1;
        }
    }
}

fn new_index(pool: u64) -> (Index, Vec<Area>) {
    let mut index = Index::new(COOLDOWN);
    index.add_tenant(TENANT);
    let areas: Vec<Area> = AREAS
        .iter()
        .map(|a| Area::new(a.0).expect("valid area"))
        .collect();
    for (i, area) in areas.iter().enumerate() {
        for k in 0..pool {
            index
                .add_number(TENANT, x_number(i, k), Some(area))
                .expect("fresh number");
        }
    }
    (index, areas)
}

fn binding(i: usize, spec: &Spec, x: Number) -> NewBinding {
    NewBinding {
        id: BindingId(0x0190_0000_0000_7000_8000_0000_0000_0000 | i as u128),
        tenant: TENANT,
        mode: Mode::Axb,
        x,
        extension: None,
        a: spec.a,
        b: Some(spec.b),
        ends_at: spec.ends_at,
        ended: false,
        controls: Controls::default(),
        pending: false,
    }
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    f64::from(sorted[i]) / 1000.0
}

fn main() {
    let n = env_or("BINDINGS", 1_000_000) as usize;
    let pool = env_or("POOL_PER_AREA", 10_000);
    let seed = env_or("SEED", 20_240_601);
    let only = std::env::var("SCENARIO").ok();
    for sc in SCENARIOS
        .iter()
        .filter(|sc| only.as_deref().is_none_or(|o| o == sc.name))
    {
        simulate(n, pool, seed, sc);
    }
}

fn simulate(n: usize, pool: u64, seed: u64, sc: &Scenario) {
    let mut rng = SmallRng::seed_from_u64(seed);
    let specs = day(n, sc, &mut rng);
    println!(
        "=== scenario {}: A from {} per area (Zipf s={}), B from {} per area (Zipf s={})",
        sc.name, sc.as_, sc.a_zipf, sc.bs, sc.b_zipf
    );
    println!(
        "{n} axb bindings over 24 h, {} areas, {pool} numbers per area, \
         cool-down {COOLDOWN} s, seed {seed}",
        AREAS.len()
    );

    let (mut ff, areas) = new_index(pool);
    let (mut naive, _) = new_index(pool);
    let pool_numbers: Vec<Vec<Number>> = (0..AREAS.len())
        .map(|i| (0..pool).map(|k| x_number(i, k)).collect())
        .collect();
    // Naive's own view of which (X, party) slots are live.
    let mut naive_slots: HashSet<(Number, Number)> = HashSet::new();
    let mut x_ff: Vec<Number> = Vec::with_capacity(n);
    let mut x_naive: Vec<Number> = Vec::with_capacity(n);
    let mut ff_usage = Usage::new();
    let mut naive_usage = Usage::new();
    // Live bindings per (area, party), and the lower bound per area.
    let mut party_live: HashMap<Number, u32> = HashMap::new();
    let mut bound = vec![0u32; AREAS.len()];
    let mut bindings_per_area = vec![0u64; AREAS.len()];
    let mut pairs: HashSet<(Number, Number)> = HashSet::new();
    let mut deaths: BinaryHeap<Reverse<(UnixTime, usize)>> = BinaryHeap::new();
    let mut exhausted = (0u64, 0u64);
    let mut alloc_ns: Vec<u32> = Vec::with_capacity(n);
    let mut next_sweep = 0;
    let (mut swept_expired, mut swept_removed) = (0usize, 0usize);
    let mut ff_peak_index_in_use = 0u64;
    let mut last_peak = 0u64;
    let started = Instant::now();

    for (i, spec) in specs.iter().enumerate() {
        let now = spec.at;
        while let Some(&Reverse((dead_at, j))) = deaths.peek() {
            if dead_at > now {
                break;
            }
            deaths.pop();
            let s = &specs[j];
            ff_usage.remove(s.area, x_ff[j]);
            naive_usage.remove(s.area, x_naive[j]);
            naive_slots.remove(&(x_naive[j], s.a));
            naive_slots.remove(&(x_naive[j], s.b));
            for p in [s.a, s.b] {
                let c = party_live.get_mut(&p).expect("tracked");
                *c -= 1;
                if *c == 0 {
                    party_live.remove(&p);
                }
            }
        }
        while next_sweep <= now {
            for index in [&mut ff, &mut naive] {
                let report = index.sweep(next_sweep, 50_000);
                swept_expired += report.expired.len();
                swept_removed += report.removed;
            }
            next_sweep += 60;
        }

        // First-fit: the real allocator.
        let t0 = Instant::now();
        let req = AllocRequest {
            tenant: TENANT,
            mode: Mode::Axb,
            a: spec.a,
            b: Some(spec.b),
            area: Some(&areas[spec.area]),
            area_match: AreaMatch::Strict,
            extension_len: 0,
        };
        let x = match ff.allocate(&req, now, &mut rng) {
            Ok(alloc) => {
                ff.insert(&binding(i, spec, alloc.x), now)
                    .expect("allocated X is accepted");
                Some(alloc.x)
            }
            Err(_) => None,
        };
        alloc_ns.push(t0.elapsed().as_nanos().min(u128::from(u32::MAX)) as u32);

        // Naive: uniform among the area's eligible numbers.
        let candidates = &pool_numbers[spec.area];
        let eligible = |x: &Number| {
            !naive_slots.contains(&(*x, spec.a)) && !naive_slots.contains(&(*x, spec.b))
        };
        let mut nx = None;
        for _ in 0..64 {
            let x = candidates[rng.random_range(0..candidates.len())];
            if eligible(&x) {
                nx = Some(x);
                break;
            }
        }
        if nx.is_none() {
            let all: Vec<Number> = candidates.iter().copied().filter(|x| eligible(x)).collect();
            if !all.is_empty() {
                nx = Some(all[rng.random_range(0..all.len())]);
            }
        }
        if let Some(x) = nx {
            naive
                .insert(&binding(i, spec, x), now)
                .expect("naive X is eligible");
        }

        let (Some(x), Some(nx)) = (x, nx) else {
            exhausted.0 += u64::from(x.is_none());
            exhausted.1 += u64::from(nx.is_none());
            // Keep both allocators on the same bindings.
            x_ff.push(x.unwrap_or(candidates[0]));
            x_naive.push(nx.unwrap_or(candidates[0]));
            if let Some(x) = x {
                ff.remove(binding(i, spec, x).id);
            }
            if let Some(x) = nx {
                naive.remove(binding(i, spec, x).id);
            }
            continue;
        };
        x_ff.push(x);
        x_naive.push(nx);
        naive_slots.insert((nx, spec.a));
        naive_slots.insert((nx, spec.b));
        ff_usage.add(spec.area, x);
        naive_usage.add(spec.area, nx);
        bindings_per_area[spec.area] += 1;
        pairs.insert((spec.a, spec.b));
        for p in [spec.a, spec.b] {
            let c = party_live.entry(p).or_default();
            *c += 1;
            bound[spec.area] = bound[spec.area].max(*c);
        }
        deaths.push(Reverse((spec.ends_at + COOLDOWN, i)));
        if ff_usage.peak_total > last_peak {
            last_peak = ff_usage.peak_total;
            ff_peak_index_in_use = ff.pool_stats().iter().map(|s| s.in_use).sum();
        }
    }
    let took = started.elapsed();

    println!();
    println!(
        "{:<6} {:>9} {:>11} {:>10} {:>6} {:>10} {:>6}",
        "area", "bindings", "lower bound", "first-fit", "ratio", "naive", "ratio"
    );
    let total_bound: u64 = bound.iter().map(|&b| u64::from(b)).sum();
    for (i, a) in AREAS.iter().enumerate() {
        let lb = f64::from(bound[i]);
        println!(
            "{:<6} {:>9} {:>11} {:>10} {:>5.2}x {:>10} {:>5.2}x",
            a.0,
            bindings_per_area[i],
            bound[i],
            ff_usage.peak[i],
            ff_usage.peak[i] as f64 / lb,
            naive_usage.peak[i],
            naive_usage.peak[i] as f64 / lb,
        );
    }
    println!(
        "{:<6} {:>9} {:>11} {:>10} {:>5.2}x {:>10} {:>5.2}x",
        "total",
        bindings_per_area.iter().sum::<u64>(),
        total_bound,
        ff_usage.peak_total,
        ff_usage.peak_total as f64 / total_bound as f64,
        naive_usage.peak_total,
        naive_usage.peak_total as f64 / total_bound as f64,
    );
    println!(
        "(total = peak of the sum over areas; the sum of per-area peaks is {} first-fit, {} naive)",
        ff_usage.peak.iter().sum::<u64>(),
        naive_usage.peak.iter().sum::<u64>()
    );

    let mut sorted = alloc_ns.clone();
    sorted.sort_unstable();
    let mean = alloc_ns.iter().map(|&v| f64::from(v)).sum::<f64>() / alloc_ns.len() as f64 / 1000.0;
    println!();
    println!(
        "pool_exhausted: first-fit {}, naive {} (of {n})",
        exhausted.0, exhausted.1
    );
    println!(
        "most live bindings on one number: first-fit {}, naive {}",
        ff_usage.max_per_number, naive_usage.max_per_number
    );
    println!(
        "first-fit allocate+insert: mean {mean:.2} us, p50 {:.2} us, p99 {:.2} us, max {:.2} us",
        percentile(&sorted, 0.5),
        percentile(&sorted, 0.99),
        percentile(&sorted, 1.0)
    );
    let mut slowest: Vec<(u32, usize)> = alloc_ns.iter().copied().zip(0..).collect();
    slowest.sort_unstable_by_key(|&(ns, _)| Reverse(ns));
    let slowest: Vec<String> = slowest
        .iter()
        .take(3)
        .map(|&(ns, i)| format!("#{i} {:.1} ms", f64::from(ns) / 1e6))
        .collect();
    println!("slowest allocate+insert: {}", slowest.join(", "));
    println!(
        "first-fit numbers in use per Index::pool_stats at the peak: {ff_peak_index_in_use} \
         (includes records past cool-down not yet swept)"
    );
    println!(
        "sweeps: {swept_expired} expiries reported, {swept_removed} records removed (both indexes)"
    );
    println!(
        "end of day: first-fit index holds {} records, heap_bytes {:.1} MB; {} distinct pairs seen",
        ff.len(),
        ff.heap_bytes() as f64 / 1e6,
        pairs.len()
    );
    println!("simulated in {:.1} s", took.as_secs_f64());
    println!();
}
