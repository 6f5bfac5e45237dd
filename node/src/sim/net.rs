//! The simulated network, as pure functions of the scenario's seed: each link's latency,
//! whether two peers reach each other at a time (partitions), whether a message is lost,
//! and how long a transfer takes (at one rate for the whole network). It holds no state
//! that changes; it must not know about peers' models or cores.

use super::scenario::{NetworkModel, Split};
use std::time::Duration;

/// The links between simulated peers.
#[derive(Debug, Clone)]
pub struct Links {
    seed: u64,
    latency: Duration,
    jitter_nanos: u64,
    bytes_per_sec: f64,
    loss: f64,
    splits: Vec<(Duration, Duration, usize)>,
}

/// A well-mixed 64-bit hash (SplitMix64's finalizer): the same input gives the same output
/// on every machine.
pub fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

impl Links {
    pub fn new(seed: u64, model: &NetworkModel, splits: &[Split]) -> Self {
        Self {
            seed: mix(seed ^ 0x6E65_7477_6F72_6B00),
            latency: Duration::from_secs_f64(model.latency_ms / 1_000.0),
            jitter_nanos: (model.jitter_ms * 1e6) as u64,
            bytes_per_sec: model.bandwidth_mbps * 1e6 / 8.0,
            loss: model.loss,
            splits: splits
                .iter()
                .map(|s| {
                    (
                        Duration::from_secs_f64(s.at_secs),
                        Duration::from_secs_f64(s.heal_secs),
                        s.groups,
                    )
                })
                .collect(),
        }
    }

    /// One-way latency between `a` and `b` (the same both ways).
    pub fn latency(&self, a: u32, b: u32) -> Duration {
        if self.jitter_nanos == 0 {
            return self.latency;
        }
        let (lo, hi) = (a.min(b), a.max(b));
        let h = mix(self.seed ^ (u64::from(lo) << 32 | u64::from(hi)));
        self.latency + Duration::from_nanos(h % self.jitter_nanos)
    }

    /// True if `a` and `b` reach each other at `at` (no split between them).
    pub fn connected(&self, a: u32, b: u32, at: Duration) -> bool {
        self.splits.iter().all(|&(from, to, groups)| {
            !(from <= at && at < to) || a as usize % groups == b as usize % groups
        })
    }

    /// The groups of the split active at `at`, if one is.
    pub fn active_split(&self, at: Duration) -> Option<usize> {
        self.splits
            .iter()
            .find(|&&(from, to, _)| from <= at && at < to)
            .map(|s| s.2)
    }

    /// True if the message named `key` is lost (decided by the key alone, so the same
    /// message is lost in every run).
    pub fn lost(&self, key: u64) -> bool {
        if self.loss <= 0.0 {
            return false;
        }
        let h = mix(self.seed ^ mix(key));
        ((h >> 11) as f64 / (1u64 << 53) as f64) < self.loss
    }

    /// Time to move `bytes` over any link: `bytes` at the scenario's `bandwidth_mbps`, one
    /// rate for every link and both directions (no per-peer rates). The engine queues a
    /// fetching peer's chunk answers one after the other on its downlink.
    pub fn transfer(&self, bytes: u64) -> Duration {
        Duration::from_secs_f64(bytes as f64 / self.bytes_per_sec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn links(loss: f64, splits: &[Split]) -> Links {
        let model = NetworkModel {
            latency_ms: 10.0,
            jitter_ms: 4.0,
            bandwidth_mbps: 8.0,
            loss,
        };
        Links::new(7, &model, splits)
    }

    #[test]
    fn latency_is_symmetric_fixed_per_link_and_within_the_jitter() {
        let l = links(0.0, &[]);
        for (a, b) in [(0, 1), (3, 9), (100, 2)] {
            let d = l.latency(a, b);
            assert_eq!(d, l.latency(b, a));
            assert!(d >= Duration::from_millis(10) && d < Duration::from_millis(14));
        }
        assert_ne!(l.latency(0, 1), l.latency(0, 2));
        assert_eq!(l.transfer(1_000_000), Duration::from_secs(1));
    }

    #[test]
    fn a_split_cuts_groups_apart_until_it_heals() {
        let split = Split {
            at_secs: 10.0,
            heal_secs: 20.0,
            groups: 2,
        };
        let l = links(0.0, &[split]);
        let s = Duration::from_secs;
        assert!(l.connected(0, 1, s(5)));
        assert!(!l.connected(0, 1, s(10)));
        assert!(l.connected(0, 2, s(15)));
        assert!(l.connected(0, 1, s(20)));
    }

    #[test]
    fn loss_is_decided_by_the_message_and_close_to_its_rate() {
        let l = links(0.25, &[]);
        let lost = (0..10_000u64).filter(|&k| l.lost(k)).count();
        assert!((2_300..2_700).contains(&lost), "{lost}");
        assert_eq!(l.lost(42), l.lost(42));
        assert!(!links(0.0, &[]).lost(42));
    }
}
