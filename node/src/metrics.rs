//! The node's counters: one atomic per thing counted, shared by the tasks that count
//! (averaging, the node loop) and read by the HTTP API and announcements. Owns no other state.

use crate::cpu;
use serde::Serialize;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// The span of the recent CPU shares ([`CounterSnapshot::train_share_recent`]).
pub const RECENT_WINDOW: Duration = Duration::from_secs(30);

/// CPU time the calling thread has used, from `/proc/thread-self/schedstat` (its first field,
/// in nanoseconds); `None` where that cannot be read.
pub fn thread_cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let nanos: u64 = stat.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(nanos))
}

/// Monotonic counters of one node.
#[derive(Debug, Default)]
pub struct Counters {
    /// Training rounds completed (each produced an announced model).
    pub rounds: AtomicU64,
    /// Merges applied to the model.
    pub merges: AtomicU64,
    /// Partner models the training thread refused by a check ([`Rejection`]: another layout,
    /// non-finite values or a held-back loss that could not be computed, a held-back loss
    /// over the acceptance bound, a distance from our model over the distance bound), one
    /// each; plus one each time the trainer failed to take in the merged or adopted weights.
    /// An adoption candidate that does not beat our model is merged instead, and counts here
    /// only if a check refuses it.
    ///
    /// [`Rejection`]: crate::averaging::robust::Rejection
    pub merges_rejected: AtomicU64,
    /// Partner differences cut by norm clipping.
    pub merges_clipped: AtomicU64,
    /// Partner models accepted on one part of the held-back examples, the rest unmeasured
    /// (the screen of [`crate::train::merge`]).
    pub merges_screened: AtomicU64,
    /// Times training diverged (or took a non-finite model) and went back to the last good
    /// weights.
    pub rollbacks: AtomicU64,
    /// Announcements ignored because their peer announced again too soon.
    pub announces_throttled: AtomicU64,
    /// Chunks fetched from peers (verified).
    pub chunks_fetched: AtomicU64,
    /// Chunks a merge needed that were already held (not fetched again).
    pub chunks_reused: AtomicU64,
    /// Fetches that failed (no holder answered in time, or all answers were bad).
    pub fetch_failures: AtomicU64,
    /// Gossip announcements rejected by validation.
    pub announces_rejected: AtomicU64,
    /// CPU time spent evaluating on the test split, in microseconds: the training thread's
    /// and candle's compute pool's ([`cpu::ComputeClock`]).
    pub eval_cpu_micros: AtomicU64,
    /// CPU time of the local training steps, in microseconds: the training thread's and
    /// candle's compute pool's across each step ([`cpu::ComputeClock`]).
    pub train_cpu_micros: AtomicU64,
    /// CPU time of applying merges (partner models checked on the held-back data and
    /// averaged in), in microseconds, measured like `train_cpu_micros`.
    pub merge_cpu_micros: AtomicU64,
    /// Checkpoints written (each complete, synced and renamed into place).
    pub checkpoints: AtomicU64,
    /// Checkpoint writes that failed (full disk, read-only data dir, ...); each is retried.
    pub checkpoint_failures: AtomicU64,
    /// CPU times seen by recent snapshots (at most one a second), for the recent shares.
    recent: Mutex<VecDeque<(Instant, CpuTimes)>>,
}

/// Cumulative CPU times by activity, in microseconds (see `docs/api.md`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuTimes {
    /// The whole process (user + system).
    pub process: u64,
    /// Local training steps.
    pub train: u64,
    /// Applying merges.
    pub merge: u64,
    /// The async runtime's threads (network, serving, fetching, verifying, hashing, API).
    pub runtime: u64,
    /// Evaluation on the test split.
    pub eval: u64,
}

impl CpuTimes {
    /// `(resource utilization, communication overhead)`: training's share of the process
    /// CPU time, and the share of the runtime threads plus merging; each in `0..=1`, zero
    /// before any process time was measured.
    pub fn shares(&self) -> (f32, f32) {
        (
            cpu::share(self.train, self.process),
            cpu::share(self.runtime.saturating_add(self.merge), self.process),
        )
    }

    /// What was spent since `earlier`.
    pub fn since(&self, earlier: &CpuTimes) -> CpuTimes {
        CpuTimes {
            process: self.process.saturating_sub(earlier.process),
            train: self.train.saturating_sub(earlier.train),
            merge: self.merge.saturating_sub(earlier.merge),
            runtime: self.runtime.saturating_sub(earlier.runtime),
            eval: self.eval.saturating_sub(earlier.eval),
        }
    }
}

/// Bytes fetched per merge applied; `None` before the first merge.
pub fn bytes_per_merge(bytes_received: u64, merges: u64) -> Option<f64> {
    (merges > 0).then(|| bytes_received as f64 / merges as f64)
}

/// A point-in-time copy of [`Counters`], plus the traffic totals, the process's and the
/// async runtime's CPU times, and the shares derived from them.
#[derive(Debug, Clone, Copy, Default, Serialize, serde::Deserialize, PartialEq)]
pub struct CounterSnapshot {
    pub rounds: u64,
    pub merges: u64,
    pub merges_rejected: u64,
    #[serde(default)]
    pub merges_clipped: u64,
    #[serde(default)]
    pub merges_screened: u64,
    #[serde(default)]
    pub rollbacks: u64,
    #[serde(default)]
    pub announces_throttled: u64,
    pub chunks_fetched: u64,
    pub chunks_reused: u64,
    pub fetch_failures: u64,
    pub announces_rejected: u64,
    #[serde(default)]
    pub eval_cpu_micros: u64,
    /// CPU time of local training steps (training thread + compute pool), microseconds.
    #[serde(default)]
    pub train_cpu_micros: u64,
    /// CPU time of applying merges (training thread + compute pool), microseconds.
    #[serde(default)]
    pub merge_cpu_micros: u64,
    /// CPU time of the async runtime's threads, microseconds.
    #[serde(default)]
    pub runtime_cpu_micros: u64,
    /// CPU time of the whole process (user + system), microseconds (`CLOCK_PROCESS_CPUTIME_ID`).
    #[serde(default)]
    pub process_cpu_micros: u64,
    /// Resource utilization: `train_cpu_micros / process_cpu_micros` (0..=1), since start.
    #[serde(default)]
    pub train_share: f32,
    /// Communication overhead: `(runtime_cpu_micros + merge_cpu_micros) /
    /// process_cpu_micros` (0..=1), since start.
    #[serde(default)]
    pub comm_share: f32,
    /// `train_share` over about the last [`RECENT_WINDOW`] (since start, until then).
    #[serde(default)]
    pub train_share_recent: f32,
    /// `comm_share` over about the last [`RECENT_WINDOW`].
    #[serde(default)]
    pub comm_share_recent: f32,
    /// `bytes_received / merges`; `None` before the first merge.
    #[serde(default)]
    pub bytes_per_merge: Option<f64>,
    #[serde(default)]
    pub checkpoints: u64,
    #[serde(default)]
    pub checkpoint_failures: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    /// Sync requests this node answered `Busy` (a peer over its share, or the node at a
    /// serving limit).
    #[serde(default)]
    pub busy_sent: u64,
    /// `Busy` answers this node received (and backed off from).
    #[serde(default)]
    pub busy_received: u64,
    /// Connections that failed or were refused before they were established.
    #[serde(default)]
    pub connections_failed: u64,
    /// Network events dropped because the node task's queue was full.
    #[serde(default)]
    pub events_dropped: u64,
    /// Hole punches (DCUtR) that ended, and those that made a direct connection.
    #[serde(default)]
    pub punch_attempts: u64,
    #[serde(default)]
    pub punch_successes: u64,
    /// Reservations and circuits this node's relay accepted, and those it refused.
    #[serde(default)]
    pub relay_reservations_served: u64,
    #[serde(default)]
    pub relay_circuits_served: u64,
    #[serde(default)]
    pub relay_refused: u64,
    /// Model bytes (manifests and chunks) received over relayed connections, and over
    /// direct ones (hole-punched included).
    #[serde(default)]
    pub fetched_relayed_bytes: u64,
    #[serde(default)]
    pub fetched_direct_bytes: u64,
    /// Requests of ours whose connection closed under them or could not be made (not
    /// charged to the peer).
    #[serde(default)]
    pub requests_lost: u64,
    /// Every byte written on direct connections: answers, gossip, and circuits relayed
    /// for others (what `network.max_upload_mbps` caps).
    #[serde(default)]
    pub uploaded_bytes: u64,
}

impl Counters {
    /// Adds one to `counter`.
    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Adds `n` to `counter`.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// The CPU times so far: the counters, and the process's and the runtime threads' clocks
    /// read now.
    pub fn cpu_times(&self) -> CpuTimes {
        let r = |c: &AtomicU64| c.load(Ordering::Relaxed);
        CpuTimes {
            process: cpu::process_time().map_or(0, cpu::micros),
            train: r(&self.train_cpu_micros),
            merge: r(&self.merge_cpu_micros),
            runtime: cpu::micros(cpu::RUNTIME.total()),
            eval: r(&self.eval_cpu_micros),
        }
    }

    /// `(resource utilization, communication overhead)` since start, read now (see
    /// [`CpuTimes::shares`]); the same as a snapshot's `train_share` and `comm_share`.
    pub fn cpu_shares(&self) -> (f32, f32) {
        self.cpu_times().shares()
    }

    /// Records `now` among the recent CPU times and returns the times over the recent
    /// window: since the newest kept sample at least [`RECENT_WINDOW`] old (the oldest while
    /// the node is younger; since start over the first second).
    fn recent(&self, now: CpuTimes) -> CpuTimes {
        let at = Instant::now();
        let mut q = self.recent.lock().unwrap_or_else(PoisonError::into_inner);
        if q.back()
            .is_none_or(|(t, _)| at.duration_since(*t) >= Duration::from_secs(1))
        {
            q.push_back((at, now));
        }
        // Keep one sample at or beyond the window so that the span is the full window.
        while q
            .get(1)
            .is_some_and(|(t, _)| at.duration_since(*t) >= RECENT_WINDOW)
        {
            q.pop_front();
        }
        match q.front() {
            Some((t, first)) if at.duration_since(*t) >= Duration::from_secs(1) => now.since(first),
            _ => now,
        }
    }

    /// Reads every counter; traffic comes from the sync codec's totals.
    pub fn snapshot(&self, traffic: &crate::network::Traffic) -> CounterSnapshot {
        let r = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let times = self.cpu_times();
        let (train_share, comm_share) = times.shares();
        let (train_share_recent, comm_share_recent) = self.recent(times).shares();
        let bytes_received = r(&traffic.received);
        let merges = r(&self.merges);
        CounterSnapshot {
            rounds: r(&self.rounds),
            merges,
            merges_rejected: r(&self.merges_rejected),
            merges_clipped: r(&self.merges_clipped),
            merges_screened: r(&self.merges_screened),
            rollbacks: r(&self.rollbacks),
            announces_throttled: r(&self.announces_throttled),
            chunks_fetched: r(&self.chunks_fetched),
            chunks_reused: r(&self.chunks_reused),
            fetch_failures: r(&self.fetch_failures),
            announces_rejected: r(&self.announces_rejected),
            eval_cpu_micros: times.eval,
            train_cpu_micros: times.train,
            merge_cpu_micros: times.merge,
            runtime_cpu_micros: times.runtime,
            process_cpu_micros: times.process,
            train_share,
            comm_share,
            train_share_recent,
            comm_share_recent,
            bytes_per_merge: bytes_per_merge(bytes_received, merges),
            checkpoints: r(&self.checkpoints),
            checkpoint_failures: r(&self.checkpoint_failures),
            bytes_sent: r(&traffic.sent),
            bytes_received,
            busy_sent: r(&traffic.busy_sent),
            busy_received: r(&traffic.busy_received),
            connections_failed: r(&traffic.connections_failed),
            events_dropped: r(&traffic.events_dropped),
            punch_attempts: r(&traffic.punch_attempts),
            punch_successes: r(&traffic.punch_successes),
            relay_reservations_served: r(&traffic.relay_reservations_served),
            relay_circuits_served: r(&traffic.relay_circuits_served),
            relay_refused: r(&traffic.relay_refused),
            fetched_relayed_bytes: r(&traffic.fetched_relayed),
            fetched_direct_bytes: r(&traffic.fetched_direct),
            requests_lost: r(&traffic.requests_lost),
            uploaded_bytes: r(&traffic.uploaded),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_are_training_and_communication_over_the_process_time() {
        let t = CpuTimes {
            process: 1_000_000,
            train: 600_000,
            merge: 50_000,
            runtime: 150_000,
            eval: 100_000,
        };
        assert_eq!(t.shares(), (0.6, 0.2));
        assert_eq!(CpuTimes::default().shares(), (0.0, 0.0));
        // Parts measured to the nanosecond may pass a process time counted in ticks.
        let over = CpuTimes {
            process: 10_000,
            train: 10_400,
            ..CpuTimes::default()
        };
        assert_eq!(over.shares(), (1.0, 0.0));
        let later = CpuTimes {
            process: 1_500_000,
            train: 700_000,
            merge: 50_000,
            runtime: 400_000,
            eval: 100_000,
        };
        let d = later.since(&t);
        assert_eq!((d.process, d.train, d.runtime), (500_000, 100_000, 250_000));
        assert_eq!(d.shares(), (0.2, 0.5));
        assert_eq!(t.since(&later), CpuTimes::default());
    }

    #[test]
    fn bytes_per_merge_is_undefined_before_a_merge() {
        assert_eq!(bytes_per_merge(1000, 0), None);
        assert_eq!(bytes_per_merge(1000, 4), Some(250.0));
    }

    #[test]
    fn a_snapshot_carries_the_cpu_times_and_their_shares() {
        let c = Counters::default();
        Counters::add(&c.train_cpu_micros, 1_000);
        Counters::add(&c.merge_cpu_micros, 500);
        Counters::inc(&c.merges);
        let traffic = crate::network::Traffic::default();
        Counters::add(&traffic.received, 3_000);
        let s = c.snapshot(&traffic);
        assert_eq!((s.train_cpu_micros, s.merge_cpu_micros), (1_000, 500));
        assert!(s.process_cpu_micros > 0, "{s:?}");
        assert_eq!(s.bytes_per_merge, Some(3_000.0));
        let (train, comm) = c.cpu_shares();
        assert!((0.0..=1.0).contains(&train) && (0.0..=1.0).contains(&comm));
        assert!(s.train_share > 0.0 && s.comm_share > 0.0, "{s:?}");
        // Over its first second the recent shares are the cumulative ones.
        assert_eq!(s.train_share_recent, s.train_share);
    }

    #[test]
    fn the_recent_window_starts_at_the_newest_sample_old_enough() {
        let c = Counters::default();
        let at = |secs: u64, train: u64| {
            (
                Instant::now() - Duration::from_secs(secs),
                CpuTimes {
                    process: 1_000 + train * 2,
                    train,
                    ..CpuTimes::default()
                },
            )
        };
        {
            let mut q = c.recent.lock().unwrap();
            q.extend([at(60, 0), at(40, 100), at(31, 200), at(10, 300)]);
        }
        let now = CpuTimes {
            process: 2_200,
            train: 600,
            ..CpuTimes::default()
        };
        let d = c.recent(now);
        // Since the sample 31 s old: process 2200 - 1400, train 600 - 200.
        assert_eq!((d.process, d.train), (800, 400));
        assert_eq!(
            c.recent.lock().unwrap().len(),
            3,
            "older samples dropped, now added"
        );
    }
}
