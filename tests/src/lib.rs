//! # murmur-tests
//!
//! Multi-node integration tests live in `tests/tests/*.rs`; the helpers here start real nodes
//! (real libp2p swarms on loopback TCP, real candle training on the built-in digits) on port
//! 0, and wait for conditions with a deadline instead of sleeping.
// Test helpers: a failed expectation is a failed test, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use murmur_node::averaging::fetch::FetchLimits;
use murmur_node::averaging::policy::Policy;
use murmur_node::config::NodeConfig;
use murmur_node::data::{DatasetName, Partition, ShardSpec};
use murmur_node::network::NetworkConfig;
use murmur_node::node::{self, NodeOptions, RunningNode};
use murmur_node::status::NodeStatus;
use murmur_node::train::TrainConfig;
use murmur_node::train::worker::RoundPolicy;
use std::path::Path;
use std::time::{Duration, Instant};

/// Options for peer `index` of `count` on the digits, listening on loopback port 0: a peer
/// config's defaults for training and averaging (`murmur init`), with a small MLP, short
/// rounds and small chunks so that tests run fast.
pub fn options(
    data_dir: &Path,
    network_id: &str,
    index: usize,
    count: usize,
    bootstrap: Vec<libp2p::Multiaddr>,
) -> NodeOptions {
    let peer = murmur_node::run::options(&NodeConfig::default());
    NodeOptions {
        data_dir: data_dir.to_path_buf(),
        network: NetworkConfig {
            network_id: network_id.to_string(),
            listen: vec!["/ip4/127.0.0.1/tcp/0".parse().expect("static multiaddr")],
            bootstrap,
            relays: vec![],
            external_addrs: vec![],
            relay_server: Default::default(),
            relay_limits: Default::default(),
            mdns: false,
            kademlia: true,
            max_connections: 64,
            idle_timeout: Duration::from_secs(60),
            // A peer config's default (`averaging.request_timeout_secs`).
            request_timeout: peer.network.request_timeout,
            corrupt_served_chunks: false,
            emulate_link: None,
            never_answer: false,
            serving: Default::default(),
            psk: None,
            access: Default::default(),
        },
        dataset: DatasetName::Digits,
        dataset_dir: None,
        partition: Partition::Iid,
        shard: ShardSpec { index, count },
        train: TrainConfig {
            model: "mlp:64".parse().expect("static model"),
            ..peer.train
        },
        round: RoundPolicy {
            steps: 10,
            max_time: None,
            eval_every: Duration::ZERO,
            ..peer.round
        },
        policy: Policy {
            freshness: Duration::from_secs(20),
            ..peer.policy
        },
        chunk_size: 4096,
        encoding: murmur_protocol::Encoding::F32Le,
        fetch: FetchLimits {
            per_peer_inflight: 4,
            deadline: Duration::from_secs(20),
        },
        error_budget: 5,
        store_budget_bytes: 64 << 20,
        checkpoint_every: peer.checkpoint_every,
        hostile: None,
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

/// A small live network: `n` nodes on the digits, the first one's API and dashboard served on
/// a loopback port. Keep the temp dirs alive as long as the nodes.
#[derive(Debug)]
pub struct LiveNetwork {
    pub nodes: Vec<RunningNode>,
    pub dashboard: std::net::SocketAddr,
    pub dirs: Vec<tempfile::TempDir>,
    stop: tokio::sync::watch::Sender<bool>,
}

impl LiveNetwork {
    /// Starts `n` nodes (the rest bootstrapped from the first), waits until every node has
    /// announced a model and the first hears all the others, and serves the first's API.
    pub async fn start(network_id: &str, n: usize) -> Self {
        let dirs: Vec<_> = (0..n).map(|_| tempfile::tempdir().unwrap()).collect();
        let first = start(options(dirs[0].path(), network_id, 0, n, vec![])).await;
        let s0 = wait_for(
            &first,
            "first node listening",
            Duration::from_secs(30),
            |s| !s.listen_addrs.is_empty(),
        )
        .await;
        let mut nodes = vec![first];
        for (i, dir) in dirs.iter().enumerate().skip(1) {
            nodes.push(start(options(dir.path(), network_id, i, n, vec![dial_addr(&s0)])).await);
        }
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        let dashboard =
            murmur_node::api::serve("127.0.0.1:0".parse().unwrap(), (&nodes[0]).into(), stop_rx)
                .await
                .unwrap();
        wait_for(
            &nodes[0],
            "the first node hearing every other",
            Duration::from_secs(60),
            |s| s.version >= 1 && s.peers.len() == n - 1,
        )
        .await;
        Self {
            nodes,
            dashboard,
            dirs,
            stop,
        }
    }

    /// Stops the API and every node.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for n in self.nodes {
            n.shutdown().await;
        }
    }
}

/// A parsed HTTP response.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    /// Header names lower-cased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The first header named `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body parsed as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

/// `GET path` over HTTP/1.0 on loopback: one request needs no HTTP client library.
pub async fn http_get(addr: std::net::SocketAddr, path: &str) -> HttpResponse {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut raw))
        .await
        .expect("response within 10 s")
        .unwrap();
    parse_response(&raw)
}

/// Splits a raw HTTP response into status, headers and body.
pub fn parse_response(raw: &[u8]) -> HttpResponse {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("complete header");
    let head = String::from_utf8_lossy(&raw[..end]);
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    HttpResponse {
        status,
        headers,
        body: raw[end + 4..].to_vec(),
    }
}

/// Pulls model `id` (of `layout`) into `to` from `from` alone, as an averaging fetch does:
/// every chunk verified, a 20 s deadline, 4 requests in flight.
pub async fn pull(
    to: &RunningNode,
    from: libp2p::PeerId,
    id: murmur_protocol::ManifestId,
    layout: &murmur_protocol::Layout,
) -> Result<murmur_node::averaging::fetch::Fetched, murmur_node::averaging::fetch::FetchError> {
    use murmur_node::averaging::fetch::{self, ErrorBudgets, Rates};
    fetch::fetch(
        &to.client,
        &to.store,
        id,
        &[from],
        ErrorBudgets::new(3),
        &Rates::default(),
        FetchLimits {
            per_peer_inflight: 4,
            deadline: Duration::from_secs(20),
        },
        layout,
    )
    .await
    .0
}

/// 256 Ki values (1 MiB in f32), cut into 16 KiB chunks: 64 chunks.
pub fn model(seed: u32) -> murmur_protocol::Snapshot {
    let values = (0..256 * 1024u32)
        .map(|i| ((i.wrapping_mul(2_654_435_761) ^ seed) % 2001) as f32 / 1000.0 - 1.0)
        .collect();
    let params = murmur_protocol::FlatParams::from_named(vec![(
        murmur_protocol::TensorSpec::f32("w", &[256 * 1024]),
        values,
    )])
    .unwrap();
    murmur_protocol::Snapshot::build(&params, 16 * 1024).unwrap()
}

/// Puts `snap` in `node`'s store, as if it had fetched it.
pub fn hold(node: &RunningNode, snap: &murmur_protocol::Snapshot) {
    node.store
        .insert_manifest(snap.id, snap.manifest.clone(), snap.manifest_bytes.clone());
    for c in &snap.chunks {
        node.store.insert_chunk(c.id, c.data.clone()).unwrap();
    }
}
