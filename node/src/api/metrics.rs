//! `GET /metrics`: the node's counters and gauges in the Prometheus / OpenMetrics text format
//! (prefix `murmur_`), encoded by `prometheus-client` from a status snapshot at each scrape.

use crate::status::NodeStatus;
use prometheus_client::encoding::text::encode as encode_text;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

/// The content type of the encoding (Prometheus negotiates it).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Encodes `s` as text.
pub fn encode(s: &NodeStatus) -> Result<String, std::fmt::Error> {
    let c = &s.counters;
    let mut r = Registry::with_prefix("murmur");
    let counters: [(&str, &str, u64); 29] = [
        (
            "rounds",
            "Training rounds completed, each announcing a model",
            c.rounds,
        ),
        ("merges", "Merges applied to the model", c.merges),
        (
            "merges_rejected",
            "Partner models refused by a check, and weights the trainer failed to take in",
            c.merges_rejected,
        ),
        (
            "merges_clipped",
            "Partner differences cut by norm clipping",
            c.merges_clipped,
        ),
        (
            "merges_screened",
            "Partner models accepted on one part of the held-back examples, the rest unmeasured",
            c.merges_screened,
        ),
        (
            "rollbacks",
            "Returns to the last good weights after training diverged",
            c.rollbacks,
        ),
        (
            "announces_throttled",
            "Announcements ignored because their peer announced too soon again",
            c.announces_throttled,
        ),
        (
            "chunks_fetched",
            "Chunks fetched from peers and verified",
            c.chunks_fetched,
        ),
        (
            "chunks_reused",
            "Chunks a fetch needed that were already held",
            c.chunks_reused,
        ),
        (
            "fetch_failures",
            "Model fetches that failed",
            c.fetch_failures,
        ),
        (
            "announces_rejected",
            "Gossip announcements rejected by validation",
            c.announces_rejected,
        ),
        ("sent_bytes", "Bytes of sync traffic sent", c.bytes_sent),
        (
            "received_bytes",
            "Bytes of sync traffic received",
            c.bytes_received,
        ),
        (
            "checkpoints",
            "Checkpoints written, synced and renamed into place",
            c.checkpoints,
        ),
        (
            "checkpoint_failures",
            "Checkpoint writes that failed (each retried later)",
            c.checkpoint_failures,
        ),
        (
            "busy_sent",
            "Sync requests answered Busy (a peer over its share, or this node at a limit)",
            c.busy_sent,
        ),
        (
            "busy_received",
            "Busy answers received (backed off from, never charged)",
            c.busy_received,
        ),
        (
            "connections_failed",
            "Connections that failed or were refused before being established",
            c.connections_failed,
        ),
        (
            "events_dropped",
            "Network events dropped because the node task's queue was full",
            c.events_dropped,
        ),
        (
            "samples_trained",
            "Training samples folded into the model",
            s.samples,
        ),
        (
            "punch_attempts",
            "Hole punches (DCUtR) that ended, successful or not",
            c.punch_attempts,
        ),
        (
            "punch_successes",
            "Hole punches that made a direct connection",
            c.punch_successes,
        ),
        (
            "relay_reservations_served",
            "Reservations this node's relay accepted (renewals not counted)",
            c.relay_reservations_served,
        ),
        (
            "relay_circuits_served",
            "Circuits this node's relay accepted",
            c.relay_circuits_served,
        ),
        (
            "relay_refused",
            "Reservations and circuits this node's relay refused (over a cap or a rate limit)",
            c.relay_refused,
        ),
        (
            "fetched_relayed_bytes",
            "Model bytes received over relayed connections",
            c.fetched_relayed_bytes,
        ),
        (
            "fetched_direct_bytes",
            "Model bytes received over direct connections (hole-punched included)",
            c.fetched_direct_bytes,
        ),
        (
            "requests_lost",
            "Requests whose connection closed under them or could not be made (not charged)",
            c.requests_lost,
        ),
        (
            "uploaded_bytes",
            "Bytes written on direct connections: answers, gossip, circuits relayed for others",
            c.uploaded_bytes,
        ),
    ];
    for (name, help, value) in counters {
        r.register(name, help, ConstCounter::new(value));
    }
    let cpu = Family::<Vec<(String, String)>, Counter<f64, AtomicU64>>::default();
    for (activity, micros) in [
        ("process", c.process_cpu_micros),
        ("train", c.train_cpu_micros),
        ("merge", c.merge_cpu_micros),
        ("runtime", c.runtime_cpu_micros),
        ("eval", c.eval_cpu_micros),
    ] {
        cpu.get_or_create(&vec![("activity".to_string(), activity.to_string())])
            .inc_by(micros as f64 / 1e6);
    }
    r.register(
        "cpu_seconds",
        "CPU seconds by activity: process (user+system, all threads), train (training steps), \
         merge (checking and averaging partner models), runtime (the async runtime's threads: \
         network, serving, fetching, verifying, hashing, HTTP API), eval (test-split evaluation)",
        cpu,
    );
    let reach = Family::<Vec<(String, String)>, Gauge<f64, AtomicU64>>::default();
    for state in ["unknown", "public", "private"] {
        let on = s.reach.reachability.as_str() == state;
        reach
            .get_or_create(&vec![("state".to_string(), state.to_string())])
            .set(if on { 1.0 } else { 0.0 });
    }
    r.register(
        "reachability",
        "1 for this node's reachability (AutoNAT): public, private or unknown; 0 for the others",
        reach,
    );
    let kinds = Family::<Vec<(String, String)>, Gauge<f64, AtomicU64>>::default();
    for kind in [
        crate::network::reach::ConnectionKind::Direct,
        crate::network::reach::ConnectionKind::Punched,
        crate::network::reach::ConnectionKind::Relayed,
    ] {
        let n = s.reach.connections.values().filter(|k| **k == kind).count();
        kinds
            .get_or_create(&vec![("kind".to_string(), kind.as_str().to_string())])
            .set(n as f64);
    }
    r.register(
        "peers_by_connection",
        "Connected peers by how they are connected: direct, punched (DCUtR) or relayed",
        kinds,
    );
    let gauges: [(&str, &str, f64); 12] = [
        (
            "relay_reservations",
            "Relays holding a reservation for this node",
            s.reach.reservations.len() as f64,
        ),
        (
            "relay_serving",
            "1 when this node serves as a relay, else 0",
            if s.reach.relay_serving { 1.0 } else { 0.0 },
        ),
        (
            "model_version",
            "Version of the latest announced model",
            s.version as f64,
        ),
        (
            "accuracy",
            "Test accuracy of the latest evaluated model",
            f64::from(s.accuracy),
        ),
        (
            "loss",
            "Test loss of the latest evaluated model",
            f64::from(s.loss),
        ),
        (
            "uptime_seconds",
            "Seconds since the node started",
            s.uptime_secs,
        ),
        (
            "peers_known",
            "Peers heard from recently",
            s.peers.len() as f64,
        ),
        (
            "peers_connected",
            "Peers connected",
            s.connected.len() as f64,
        ),
        (
            "consensus_distance",
            "Estimated mean squared distance of the models to their mean (NaN if unknown)",
            s.consensus_distance.unwrap_or(f64::NAN),
        ),
        (
            "resource_utilization",
            "Share of the process CPU time spent on training steps since start (0..1)",
            f64::from(c.train_share),
        ),
        (
            "communication_overhead",
            "Share of the process CPU time spent on the runtime threads and merging since \
             start (0..1)",
            f64::from(c.comm_share),
        ),
        (
            "bytes_per_merge",
            "Bytes fetched per merge applied (NaN before the first merge)",
            c.bytes_per_merge.unwrap_or(f64::NAN),
        ),
    ];
    for (name, help, value) in gauges {
        r.register(name, help, ConstGauge::new(value));
    }
    let mut out = String::new();
    encode_text(&mut out, &r)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_and_gauges_are_encoded_with_the_prefix() {
        let mut s = NodeStatus {
            version: 4,
            accuracy: 0.5,
            ..NodeStatus::default()
        };
        s.counters.merges = 3;
        let text = encode(&s).unwrap_or_default();
        assert!(text.contains("# TYPE murmur_merges counter\n"), "{text}");
        assert!(text.contains("\nmurmur_merges_total 3\n"), "{text}");
        assert!(text.contains("\nmurmur_model_version 4.0\n"), "{text}");
        assert!(text.contains("\nmurmur_accuracy 0.5\n"), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[test]
    fn cpu_times_shares_and_bytes_per_merge_are_encoded() {
        let mut s = NodeStatus::default();
        s.counters.process_cpu_micros = 2_000_000;
        s.counters.train_cpu_micros = 1_500_000;
        s.counters.train_share = 0.75;
        s.counters.comm_share = 0.125;
        s.counters.bytes_per_merge = Some(4096.0);
        let text = encode(&s).unwrap_or_default();
        assert!(
            text.contains("# TYPE murmur_cpu_seconds counter\n"),
            "{text}"
        );
        assert!(
            text.contains("\nmurmur_cpu_seconds_total{activity=\"process\"} 2.0\n"),
            "{text}"
        );
        assert!(
            text.contains("\nmurmur_cpu_seconds_total{activity=\"train\"} 1.5\n"),
            "{text}"
        );
        for activity in ["merge", "runtime", "eval"] {
            assert!(
                text.contains(&format!(
                    "murmur_cpu_seconds_total{{activity=\"{activity}\"}}"
                )),
                "{text}"
            );
        }
        assert!(
            text.contains("\nmurmur_resource_utilization 0.75\n"),
            "{text}"
        );
        assert!(
            text.contains("\nmurmur_communication_overhead 0.125\n"),
            "{text}"
        );
        assert!(text.contains("\nmurmur_bytes_per_merge 4096.0\n"), "{text}");
        let none = encode(&NodeStatus::default()).unwrap_or_default();
        assert!(none.contains("\nmurmur_bytes_per_merge NaN\n"), "{none}");
    }
}
