//! Counting tenants' calls against their caps (`max_concurrent_calls`,
//! `max_calls_per_second`): this node's calls exactly, the other nodes'
//! as they last reported them. A call is admitted when this node's count
//! plus the others' stays under the cap, so across nodes a cap can be
//! overrun only by the calls the others admitted since their last report
//! (the edge publishes every 250 ms).
//!
//! Calls per second are counted over a sliding second of ten 100 ms
//! buckets: a bucket leaves the window whole, so a burst is judged over
//! 0.9 to 1 s, never more.

use std::collections::HashMap;

use crate::{CallCaps, TenantId, UnixMillis};

const BUCKET_MS: i64 = 100;
const BUCKETS: usize = 10;

/// Which cap refused a call.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum OverCap {
    Concurrent,
    PerSecond,
}

/// A tenant's calls on one node: in progress, and started in the last
/// second.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct TenantLoad {
    pub tenant: TenantId,
    pub active: u32,
    pub per_second: u32,
}

#[derive(Default, Clone, Debug)]
struct Load {
    active: u32,
    /// Calls started per bucket, and which bucket (ms / BUCKET_MS) each
    /// slot last counted.
    started: [u32; BUCKETS],
    epochs: [i64; BUCKETS],
    remote_active: u32,
    remote_per_second: u32,
}

impl Load {
    fn per_second(&self, now: UnixMillis) -> u32 {
        let epoch = now.div_euclid(BUCKET_MS);
        self.started
            .iter()
            .zip(self.epochs)
            .filter(|&(_, e)| e > epoch - BUCKETS as i64 && e <= epoch)
            .map(|(n, _)| *n)
            .sum()
    }

    fn count_start(&mut self, now: UnixMillis) {
        let epoch = now.div_euclid(BUCKET_MS);
        let slot = epoch.rem_euclid(BUCKETS as i64) as usize;
        if self.epochs[slot] != epoch {
            self.epochs[slot] = epoch;
            self.started[slot] = 0;
        }
        self.started[slot] += 1;
    }

    fn idle(&self, now: UnixMillis) -> bool {
        self.active == 0
            && self.remote_active == 0
            && self.remote_per_second == 0
            && self.per_second(now) == 0
    }
}

/// Every tenant's calls on this node, and the other nodes' last reports.
#[derive(Default, Debug)]
pub struct CallLoad {
    tenants: HashMap<TenantId, Load>,
}

impl CallLoad {
    /// Counts a call of `tenant` starting at `now` if its caps allow it.
    /// Every admitted call must be [`release`](Self::release)d once.
    pub fn admit(
        &mut self,
        tenant: TenantId,
        caps: CallCaps,
        now: UnixMillis,
    ) -> Result<(), OverCap> {
        let load = self.tenants.entry(tenant).or_default();
        if let Some(max) = caps.max_concurrent_calls
            && load.active.saturating_add(load.remote_active) >= max
        {
            return Err(OverCap::Concurrent);
        }
        if let Some(max) = caps.max_calls_per_second
            && load.per_second(now).saturating_add(load.remote_per_second) >= max
        {
            return Err(OverCap::PerSecond);
        }
        load.active += 1;
        load.count_start(now);
        Ok(())
    }

    /// An admitted call of `tenant` ended.
    pub fn release(&mut self, tenant: TenantId) {
        if let Some(load) = self.tenants.get_mut(&tenant) {
            load.active = load.active.saturating_sub(1);
        }
    }

    /// This node's load of every tenant with calls in progress or started
    /// in the last second, for the other nodes. Forgets tenants with
    /// nothing left to count.
    pub fn local(&mut self, now: UnixMillis) -> Vec<TenantLoad> {
        self.tenants.retain(|_, l| !l.idle(now));
        let mut out: Vec<TenantLoad> = self
            .tenants
            .iter()
            .map(|(&tenant, l)| TenantLoad {
                tenant,
                active: l.active,
                per_second: l.per_second(now),
            })
            .filter(|l| l.active > 0 || l.per_second > 0)
            .collect();
        out.sort_unstable_by_key(|l| l.tenant.0);
        out
    }

    /// The other nodes' load, summed per tenant: replaces what they
    /// reported before (a tenant absent has none there).
    pub fn set_remote(&mut self, remote: impl IntoIterator<Item = TenantLoad>) {
        for load in self.tenants.values_mut() {
            load.remote_active = 0;
            load.remote_per_second = 0;
        }
        for r in remote {
            let load = self.tenants.entry(r.tenant).or_default();
            load.remote_active = load.remote_active.saturating_add(r.active);
            load.remote_per_second = load.remote_per_second.saturating_add(r.per_second);
        }
    }

    /// `tenant`'s calls as the caps see them at `now`: this node's and the
    /// others' last reports together.
    pub fn total(&self, tenant: TenantId, now: UnixMillis) -> TenantLoad {
        let (active, per_second) = self.tenants.get(&tenant).map_or((0, 0), |l| {
            (
                l.active.saturating_add(l.remote_active),
                l.per_second(now).saturating_add(l.remote_per_second),
            )
        });
        TenantLoad {
            tenant,
            active,
            per_second,
        }
    }

    /// `tenant`'s calls in progress on this node.
    pub fn active(&self, tenant: TenantId) -> u32 {
        self.tenants.get(&tenant).map_or(0, |l| l.active)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const T: TenantId = TenantId(1);

    fn caps(concurrent: Option<u32>, per_second: Option<u32>) -> CallCaps {
        CallCaps {
            max_concurrent_calls: concurrent,
            max_calls_per_second: per_second,
        }
    }

    #[test]
    fn no_caps_admit_everything_and_still_count() {
        let mut l = CallLoad::default();
        for _ in 0..1_000 {
            l.admit(T, CallCaps::default(), 5).unwrap();
        }
        assert_eq!(l.active(T), 1_000);
        assert_eq!(
            l.local(5),
            vec![TenantLoad {
                tenant: T,
                active: 1_000,
                per_second: 1_000
            }]
        );
    }

    #[test]
    fn concurrent_calls_stop_at_the_cap_until_one_ends() {
        let mut l = CallLoad::default();
        let c = caps(Some(2), None);
        l.admit(T, c, 0).unwrap();
        l.admit(T, c, 0).unwrap();
        assert_eq!(l.admit(T, c, 5_000), Err(OverCap::Concurrent));
        l.release(T);
        l.admit(T, c, 5_000).unwrap();
        // Another tenant is counted apart.
        l.admit(TenantId(2), c, 5_000).unwrap();
    }

    #[test]
    fn calls_per_second_slide_with_the_clock() {
        let mut l = CallLoad::default();
        let c = caps(None, Some(3));
        for at in [1_000, 1_050, 1_420] {
            l.admit(T, c, at).unwrap();
            l.release(T);
        }
        assert_eq!(l.admit(T, c, 1_900), Err(OverCap::PerSecond));
        // The first two calls' bucket (1,000-1,099) leaves at 2,000.
        assert_eq!(l.admit(T, c, 1_999), Err(OverCap::PerSecond));
        l.admit(T, c, 2_000).unwrap();
        l.admit(T, c, 2_001).unwrap();
        assert_eq!(l.admit(T, c, 2_300), Err(OverCap::PerSecond));
        // A refused call does not count.
        l.admit(T, c, 2_400).unwrap();
    }

    #[test]
    fn other_nodes_load_counts_against_the_caps() {
        let mut l = CallLoad::default();
        let c = caps(Some(5), Some(4));
        l.set_remote([TenantLoad {
            tenant: T,
            active: 4,
            per_second: 1,
        }]);
        l.admit(T, c, 0).unwrap();
        assert_eq!(l.admit(T, c, 0), Err(OverCap::Concurrent));
        // Reports from two nodes add up; a later report replaces them.
        let two = |active, per_second| TenantLoad {
            tenant: T,
            active,
            per_second,
        };
        l.set_remote([two(1, 1), two(1, 1)]);
        l.admit(T, c, 10).unwrap();
        assert_eq!(l.admit(T, c, 20), Err(OverCap::PerSecond));
        assert_eq!(l.total(T, 20), two(4, 4));
        l.set_remote([]);
        l.admit(T, c, 30).unwrap();
        // What is published is this node's own load only.
        assert_eq!(l.local(30), vec![two(3, 3)]);
    }

    #[test]
    fn idle_tenants_are_forgotten() {
        let mut l = CallLoad::default();
        l.admit(T, CallCaps::default(), 0).unwrap();
        l.release(T);
        assert_eq!(l.local(500).len(), 1, "started within the second");
        assert!(l.local(1_000).is_empty());
        assert!(l.tenants.is_empty());
        // Releasing what was forgotten changes nothing.
        l.release(T);
        assert_eq!(l.active(T), 0);
    }

    #[derive(Clone, Debug)]
    enum Step {
        Admit,
        Release,
        Wait(u16),
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            4 => Just(Step::Admit),
            2 => Just(Step::Release),
            1 => (0u16..400).prop_map(Step::Wait),
        ]
    }

    proptest! {
        /// Whatever the order of starts, ends and waits, neither cap is
        /// ever exceeded on one node: no more calls in progress than the
        /// concurrent cap, and no more admitted in any window of ten
        /// buckets than the per-second cap.
        #[test]
        fn caps_are_never_exceeded(
            steps in proptest::collection::vec(step(), 1..300),
            concurrent in proptest::option::of(1u32..8),
            per_second in proptest::option::of(1u32..8),
            start in -5_000i64..5_000,
        ) {
            let c = caps(concurrent, per_second);
            let mut l = CallLoad::default();
            let mut now = start;
            let mut in_progress = 0u32;
            let mut admitted_at: Vec<i64> = Vec::new();
            for s in steps {
                match s {
                    Step::Admit => {
                        let expected_ok = concurrent.is_none_or(|m| in_progress < m)
                            && per_second.is_none_or(|m| {
                                let epoch = now.div_euclid(BUCKET_MS);
                                let recent = admitted_at
                                    .iter()
                                    .filter(|&&a| a.div_euclid(BUCKET_MS) > epoch - BUCKETS as i64)
                                    .count() as u32;
                                recent < m
                            });
                        prop_assert_eq!(l.admit(T, c, now).is_ok(), expected_ok);
                        if expected_ok {
                            in_progress += 1;
                            admitted_at.push(now);
                        }
                    }
                    Step::Release => {
                        if in_progress > 0 {
                            in_progress -= 1;
                            l.release(T);
                        }
                    }
                    Step::Wait(ms) => now += i64::from(ms),
                }
                prop_assert_eq!(l.active(T), in_progress);
                if let Some(m) = concurrent {
                    prop_assert!(in_progress <= m);
                }
            }
        }
    }
}
