//! Figure 1 of BENCHMARKS.md: route decisions per second on one core, memory
//! per binding, and proof that a decision allocates nothing.
//!
//! For each size N (env `MASKLINE_BENCH_SIZES`, default `1000000,10000000`)
//! it builds an [`Index`] holding N live `axb` bindings of one tenant, with
//! distinct parties, packed 100 to a number through [`Index::insert`], then:
//!
//! 1. prints memory per binding three ways: [`Index::heap_bytes`], the net
//!    bytes the allocator handed out while building, and the RSS delta;
//! 2. runs 4M decisions in a plain loop under an allocation counter and
//!    fails when any of them allocated;
//! 3. lets criterion time [`Index::decide`] for random inbounds that hit a
//!    live binding (`hit`) and for callers unknown on a known X (`miss`).
//!
//! Run: `cargo bench -p maskline-core --bench route`.

use std::alloc::System;
use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use maskline_core::{
    BindingId, Channel, Controls, Decision, Inbound, Index, Mode, NewBinding, Number, Prompt,
    TenantId, UnixTime,
};
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const NOW: UnixTime = 1_800_000_000;
const TENANT: TenantId = TenantId(0x0190_0000_0000_7000_8000_0000_0000_0001);
const BINDINGS_PER_NUMBER: usize = 100;
/// +8657100000001...: Hangzhou fixed lines.
const X_BASE: u64 = 8_657_100_000_001;
/// +8613800000000...: mobiles, two per binding.
const PARTY_BASE: u64 = 8_613_800_000_000;
/// Pre-generated inbounds per case (a power of two, indexed with a mask).
const INBOUNDS: usize = 1 << 20;
/// Decisions in the counted (allocation-checked) loop.
const COUNTED: usize = 4_000_000;

fn number(digits: u64) -> Number {
    Number::from_digits(digits).expect("generated numbers are in range")
}

fn x_of(i: usize, numbers: usize) -> Number {
    number(X_BASE + (i % numbers) as u64)
}

fn a_of(i: usize) -> Number {
    number(PARTY_BASE + 2 * i as u64)
}

fn b_of(i: usize) -> Number {
    number(PARTY_BASE + 2 * i as u64 + 1)
}

/// Resident set size in bytes, from /proc/self/statm.
fn rss_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: usize = statm
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// Bytes allocated and not freed (`stats_alloc` already adds a realloc's
/// growth to `bytes_allocated` and a shrink to `bytes_deallocated`).
fn net_heap(change: &stats_alloc::Stats) -> isize {
    change.bytes_allocated as isize - change.bytes_deallocated as isize
}

fn build(n: usize) -> Index {
    let numbers = n.div_ceil(BINDINGS_PER_NUMBER);
    let rss0 = rss_bytes();
    let region = Region::new(GLOBAL);
    let started = Instant::now();
    let mut index = Index::new(3600);
    index.add_tenant(TENANT);
    for j in 0..numbers {
        index
            .add_number(TENANT, x_of(j, numbers), None)
            .expect("fresh number");
    }
    for i in 0..n {
        let nb = NewBinding {
            id: BindingId(0x0190_0000_0000_7000_8000_0000_0000_0000 | i as u128),
            tenant: TENANT,
            mode: Mode::Axb,
            x: x_of(i, numbers),
            extension: None,
            a: a_of(i),
            b: Some(b_of(i)),
            ends_at: NOW + 3600,
            ended: false,
            controls: Controls::default(),
            pending: false,
        };
        let inserted = index.insert(&nb, NOW).expect("insert accepts the binding");
        assert!(inserted);
    }
    let took = started.elapsed();
    let heap = net_heap(&region.change());
    let rss = rss_bytes().saturating_sub(rss0);
    let per = |bytes: f64| bytes / n as f64;
    println!(
        "[{n}] built {n} axb bindings on {numbers} numbers in {:.1} s ({:.0} inserts/s)",
        took.as_secs_f64(),
        n as f64 / took.as_secs_f64()
    );
    println!(
        "[{n}] memory per binding: heap_bytes() {:.1} B | allocator net {:.1} B | RSS delta {:.1} B",
        per(index.heap_bytes() as f64),
        per(heap as f64),
        per(rss as f64)
    );
    index
}

/// Inbounds that each hit a live binding: a random binding, from A or B.
fn hits(n: usize, rng: &mut SmallRng) -> Vec<Inbound> {
    let numbers = n.div_ceil(BINDINGS_PER_NUMBER);
    (0..INBOUNDS)
        .map(|_| {
            let i = rng.random_range(0..n);
            let caller = if rng.random_bool(0.5) {
                a_of(i)
            } else {
                b_of(i)
            };
            Inbound {
                caller,
                called: x_of(i, numbers),
                extension: None,
                channel: Channel::Voice,
            }
        })
        .collect()
}

/// Inbounds to a known X from a party bound on another X only.
fn misses(n: usize, rng: &mut SmallRng) -> Vec<Inbound> {
    let numbers = n.div_ceil(BINDINGS_PER_NUMBER);
    (0..INBOUNDS)
        .map(|_| {
            let i = rng.random_range(0..n);
            Inbound {
                caller: a_of(i),
                called: x_of(i + 1, numbers),
                extension: None,
                channel: Channel::Voice,
            }
        })
        .collect()
}

fn check(index: &Index, hits: &[Inbound], misses: &[Inbound]) {
    for inb in hits.iter().take(10_000) {
        match index.decide(inb, NOW) {
            Decision::Connect(c) => {
                assert_eq!(c.caller_id, inb.called);
                assert_ne!(c.to, inb.caller);
            }
            other => panic!("a hit decided {other:?}"),
        }
    }
    for inb in misses.iter().take(10_000) {
        let d = index.decide(inb, NOW);
        assert!(
            matches!(
                d,
                Decision::Announce {
                    prompt: Prompt::NoBinding,
                    ..
                }
            ),
            "a miss decided {d:?}"
        );
    }
}

/// Decisions in a plain loop, counted by the allocator: must be zero.
fn counted(n: usize, index: &Index, inbounds: &[Inbound], what: &str) {
    let mask = inbounds.len() - 1;
    let region = Region::new(GLOBAL);
    let started = Instant::now();
    for k in 0..COUNTED {
        black_box(index.decide(black_box(&inbounds[k & mask]), NOW));
    }
    let took = started.elapsed();
    let change = region.change();
    println!(
        "[{n}] {what}: {COUNTED} decisions in {:.3} s = {:.2} M/s; allocations {}, reallocations {}, deallocations {}",
        took.as_secs_f64(),
        COUNTED as f64 / took.as_secs_f64() / 1e6,
        change.allocations,
        change.reallocations,
        change.deallocations
    );
    assert_eq!(
        (change.allocations, change.reallocations),
        (0, 0),
        "route decisions allocated"
    );
}

fn sizes() -> Vec<usize> {
    std::env::var("MASKLINE_BENCH_SIZES")
        .ok()
        .map(|s| {
            s.split(',')
                .map(|v| {
                    v.trim()
                        .replace('_', "")
                        .parse()
                        .expect("sizes are integers")
                })
                .collect()
        })
        .unwrap_or_else(|| vec![1_000_000, 10_000_000])
}

fn main() {
    let mut c = Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(5))
        .configure_from_args();
    // What the edges do before a decision or a bind: parse each number
    // (libphonenumber metadata, regexes). Not allocation-free.
    {
        let region = Region::new(GLOBAL);
        let first = Number::parse("+8613800138000", maskline_core::Region::default());
        let at_first = region.change().allocations;
        let region = Region::new(GLOBAL);
        let again = Number::parse("+8613900139000", maskline_core::Region::default());
        let at_again = region.change().allocations;
        assert!(first.is_ok() && again.is_ok());
        println!(
            "Number::parse: {at_first} allocations on first use (metadata), {at_again} per call after"
        );
        let mut group = c.benchmark_group("parse");
        group.throughput(Throughput::Elements(1));
        for input in ["+8613800138000", "+8657188886666", "138 0013 8000"] {
            group.bench_function(input, |b| {
                b.iter(|| Number::parse(black_box(input), maskline_core::Region::default()))
            });
        }
        // Callers' numbers as they come: each a new one, spread over the
        // range (the regex engine's lazy DFA keeps meeting new states).
        let scattered: Vec<String> = (1..=4096u64)
            .map(|n| format!("+86138{:08}", n * 73_939_133 % 100_000_000))
            .collect();
        let mut k = 0usize;
        group.bench_function("+86138 scattered", |b| {
            b.iter(|| {
                k = k.wrapping_add(1);
                Number::parse(
                    black_box(&scattered[k & 4095]),
                    maskline_core::Region::default(),
                )
            })
        });
        group.finish();
    }
    let mut rng = SmallRng::seed_from_u64(0x5eed);
    for n in sizes() {
        let whole = Region::new(GLOBAL);
        let index = build(n);
        let hits = hits(n, &mut rng);
        let misses = misses(n, &mut rng);
        check(&index, &hits, &misses);
        counted(n, &index, &hits, "hit");
        counted(n, &index, &misses, "miss");

        let mut group = c.benchmark_group(format!("decide/{n}"));
        group.throughput(Throughput::Elements(1));
        for (name, inbounds) in [("hit", &hits), ("miss", &misses)] {
            let mask = inbounds.len() - 1;
            let mut k = 0usize;
            group.bench_function(name, |b| {
                b.iter(|| {
                    let inb = &inbounds[k & mask];
                    k = k.wrapping_add(1);
                    index.decide(black_box(inb), NOW)
                })
            });
        }
        group.finish();
        drop(index);
        println!(
            "[{n}] allocator net after dropping the index: {} B",
            net_heap(&whole.change())
                - (hits.capacity() + misses.capacity()) as isize
                    * std::mem::size_of::<Inbound>() as isize
        );
    }
    c.final_summary();
}
