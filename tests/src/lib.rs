//! # murmur-tests
//!
//! Multi-node integration tests live in `tests/tests/*.rs`; the helpers here start real nodes
//! (real libp2p swarms on loopback TCP, real candle training on the built-in digits) on port
//! 0, and wait for conditions with a deadline instead of sleeping.
// Test helpers: a failed expectation is a failed test, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use murmur_node::averaging::fetch::FetchLimits;
use murmur_node::averaging::policy::{Policy, Weighting};
use murmur_node::data::{DatasetName, Partition, ShardSpec};
use murmur_node::network::NetworkConfig;
use murmur_node::node::{self, NodeOptions, NodeStatus, RunningNode};
use murmur_node::train::TrainConfig;
use murmur_node::train::worker::RoundPolicy;
use std::path::Path;
use std::time::{Duration, Instant};

/// Options for peer `index` of `count` on the digits, listening on loopback port 0.
pub fn options(
    data_dir: &Path,
    network_id: &str,
    index: usize,
    count: usize,
    bootstrap: Vec<libp2p::Multiaddr>,
) -> NodeOptions {
    NodeOptions {
        data_dir: data_dir.to_path_buf(),
        network: NetworkConfig {
            network_id: network_id.to_string(),
            listen: vec!["/ip4/127.0.0.1/tcp/0".parse().expect("static multiaddr")],
            bootstrap,
            mdns: false,
            kademlia: true,
            max_connections: 64,
            idle_timeout: Duration::from_secs(60),
            corrupt_served_chunks: false,
        },
        dataset: DatasetName::Digits,
        dataset_dir: None,
        partition: Partition::Iid,
        shard: ShardSpec { index, count },
        train: TrainConfig {
            model: "mlp:64".parse().expect("static model"),
            ..TrainConfig::default()
        },
        round: RoundPolicy {
            steps: 10,
            max_time: None,
            eval_every: Duration::ZERO,
        },
        policy: Policy {
            fanout: 2,
            freshness: Duration::from_secs(20),
            weighting: Weighting::Samples,
        },
        chunk_size: 4096,
        fetch: FetchLimits {
            per_peer_inflight: 4,
            deadline: Duration::from_secs(20),
        },
        error_budget: 5,
        store_budget_bytes: 64 << 20,
    }
}

/// Starts a node, failing the test with context if it cannot.
pub async fn start(opts: NodeOptions) -> RunningNode {
    match node::start(opts).await {
        Ok(n) => n,
        Err(e) => panic!("node failed to start: {e:#}"),
    }
}

/// Polls `node`'s status until `cond` holds, or panics after `deadline` with the last status.
pub async fn wait_for(
    node: &RunningNode,
    what: &str,
    deadline: Duration,
    cond: impl Fn(&NodeStatus) -> bool,
) -> NodeStatus {
    let start = Instant::now();
    loop {
        let status = node.snapshot();
        if cond(&status) {
            return status;
        }
        if start.elapsed() > deadline {
            panic!("timed out after {deadline:?} waiting for {what}; last status: {status:#?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A node's dialable address: its first listen address plus `/p2p/<peer id>`.
pub fn dial_addr(status: &NodeStatus) -> libp2p::Multiaddr {
    let addr = status.listen_addrs.first().expect("node listens").clone();
    format!("{addr}/p2p/{}", status.peer_id)
        .parse()
        .expect("valid multiaddr")
}
