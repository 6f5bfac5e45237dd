//! The node's counters: one atomic per thing counted, shared by the tasks that count
//! (averaging, the node loop) and read by the HTTP API and announcements. Owns no other state.

use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

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
    /// Models fetched but refused (wrong layout, non-finite values, a loss on the held-back
    /// data over the acceptance bound, or not better for an adoption).
    pub merges_rejected: AtomicU64,
    /// Partner differences cut by norm clipping.
    pub merges_clipped: AtomicU64,
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
    /// CPU time the training thread spent evaluating on the test split, in microseconds.
    pub eval_cpu_micros: AtomicU64,
    /// Checkpoints written (each complete, synced and renamed into place).
    pub checkpoints: AtomicU64,
    /// Checkpoint writes that failed (full disk, read-only data dir, ...); each is retried.
    pub checkpoint_failures: AtomicU64,
}

/// A point-in-time copy of [`Counters`], plus the traffic totals.
#[derive(Debug, Clone, Copy, Default, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct CounterSnapshot {
    pub rounds: u64,
    pub merges: u64,
    pub merges_rejected: u64,
    #[serde(default)]
    pub merges_clipped: u64,
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

    /// Reads every counter; traffic comes from the sync codec's totals.
    pub fn snapshot(&self, traffic: &crate::network::Traffic) -> CounterSnapshot {
        let r = |c: &AtomicU64| c.load(Ordering::Relaxed);
        CounterSnapshot {
            rounds: r(&self.rounds),
            merges: r(&self.merges),
            merges_rejected: r(&self.merges_rejected),
            merges_clipped: r(&self.merges_clipped),
            rollbacks: r(&self.rollbacks),
            announces_throttled: r(&self.announces_throttled),
            chunks_fetched: r(&self.chunks_fetched),
            chunks_reused: r(&self.chunks_reused),
            fetch_failures: r(&self.fetch_failures),
            announces_rejected: r(&self.announces_rejected),
            eval_cpu_micros: r(&self.eval_cpu_micros),
            checkpoints: r(&self.checkpoints),
            checkpoint_failures: r(&self.checkpoint_failures),
            bytes_sent: r(&traffic.sent),
            bytes_received: r(&traffic.received),
            busy_sent: r(&traffic.busy_sent),
            busy_received: r(&traffic.busy_received),
            connections_failed: r(&traffic.connections_failed),
        }
    }
}
