//! `murmur bench transfer`: one node pulls a model from another over loopback, through the
//! real stack (TCP + noise + yamux, request-response, the sync codec, per-chunk blake3
//! verification into the chunk store), against the same bytes copied over a plain TCP socket
//! in the same process. The best of several rounds of each is reported, with the ratio.

use crate::averaging::fetch::{self, ErrorBudgets, FetchLimits, Rates};
use crate::network::{self, Client, Event, NetworkConfig, Traffic};
use crate::store::ChunkStore;
use anyhow::Context;
use libp2p::Multiaddr;
use libp2p::identity::Keypair;
use murmur_protocol::Snapshot;
use murmur_protocol::limits::DEFAULT_CHUNK_SIZE;
use serde::Serialize;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Arguments of `murmur bench transfer`.
#[derive(Debug, Clone, clap::Args)]
pub struct TransferArgs {
    /// Model size in MB (10^6 bytes).
    #[arg(long, default_value_t = 50)]
    pub size_mb: u64,
    /// Chunk size in bytes.
    #[arg(long, default_value_t = DEFAULT_CHUNK_SIZE)]
    pub chunk_size: u32,
    /// Timed rounds of each; the best counts.
    #[arg(long, default_value_t = 3)]
    pub rounds: u32,
    /// Requests in flight to the serving peer.
    #[arg(long, default_value_t = 8)]
    pub inflight: usize,
    /// Print the report as one JSON line on stdout.
    #[arg(long)]
    pub json: bool,
}

/// What the benchmark measured, throughputs in Gbit/s.
#[derive(Debug, Clone, Serialize)]
pub struct TransferReport {
    pub bytes: u64,
    pub chunks: usize,
    pub rounds: u32,
    pub murmur_gbit_s: f64,
    pub tcp_gbit_s: f64,
    /// murmur / plain TCP.
    pub ratio: f64,
}

impl TransferReport {
    /// Prints the report: lines, or one JSON line.
    pub fn print(&self, json: bool) {
        if json {
            println!("{}", serde_json::to_string(self).unwrap_or_default());
            return;
        }
        println!(
            "pulling {:.1} MB ({} chunks) over loopback, best of {} rounds",
            self.bytes as f64 / 1e6,
            self.chunks,
            self.rounds
        );
        println!(
            "  plain TCP socket copy               {:>7.2} Gbit/s",
            self.tcp_gbit_s
        );
        println!(
            "  murmur fetch (noise+yamux, verified) {:>6.2} Gbit/s",
            self.murmur_gbit_s
        );
        println!("  ratio murmur / plain TCP            {:>7.2}x", self.ratio);
    }
}

fn net_config() -> NetworkConfig {
    NetworkConfig {
        network_id: "bench-transfer".into(),
        listen: vec![
            Multiaddr::empty()
                .with(libp2p::multiaddr::Protocol::Ip4([127, 0, 0, 1].into()))
                .with(libp2p::multiaddr::Protocol::Tcp(0)),
        ],
        bootstrap: vec![],
        relays: vec![],
        external_addrs: vec![],
        relay_server: Default::default(),
        relay_limits: Default::default(),
        mdns: false,
        kademlia: false,
        max_connections: 16,
        idle_timeout: Duration::from_secs(60),
        // Generous: this measures throughput on loopback, with a 300 s fetch deadline.
        request_timeout: Duration::from_secs(30),
        corrupt_served_chunks: false,
        emulate_link: None,
        never_answer: false,
        // Throughput is what is measured here: no per-peer share.
        serving: crate::network::ServeLimits {
            peer_requests_per_sec: 10_000.0,
            peer_upload_bytes_per_sec: None,
            max_upload_bytes_per_sec: None,
        },
        psk: None,
        access: Default::default(),
    }
}

/// Starts a node's network over `store`; returns its client and first listen address.
async fn start(store: ChunkStore) -> anyhow::Result<(Client, Multiaddr)> {
    let (client, mut events, event_loop) = network::new(
        Keypair::generate_ed25519(),
        net_config(),
        store,
        Arc::new(Traffic::default()),
    )?;
    tokio::spawn(event_loop.run());
    let addr = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(event) = events.recv().await {
            if let Event::Listening(addr) = event {
                return Some(addr);
            }
        }
        None
    })
    .await
    .ok()
    .flatten()
    .context("the node did not start listening")?;
    // Keep draining events so the loop never waits on us.
    tokio::spawn(async move { while events.recv().await.is_some() {} });
    Ok((client, addr))
}

async fn murmur_round(snapshot: &Snapshot, inflight: usize) -> anyhow::Result<Duration> {
    let server_store = ChunkStore::new(u64::MAX);
    server_store.insert_own(snapshot);
    let (server, addr) = start(server_store).await?;
    let store = ChunkStore::new(u64::MAX);
    let (client, _) = start(store.clone()).await?;
    client
        .dial(addr.with(libp2p::multiaddr::Protocol::P2p(server.peer_id())))
        .await
        .map_err(anyhow::Error::msg)?;
    let t = Instant::now();
    let limits = FetchLimits {
        per_peer_inflight: inflight,
        deadline: Duration::from_secs(300),
    };
    let fetched = fetch::fetch(
        &client,
        &store,
        snapshot.id,
        &[server.peer_id()],
        ErrorBudgets::new(3),
        &Rates::default(),
        limits,
        &snapshot.manifest.validate()?,
    )
    .await
    .0?;
    let elapsed = t.elapsed();
    anyhow::ensure!(
        fetched.chunks_fetched == snapshot.chunks.len(),
        "fetched {} of {} chunks",
        fetched.chunks_fetched,
        snapshot.chunks.len()
    );
    Ok(elapsed)
}

async fn tcp_round(data: Arc<Vec<u8>>) -> anyhow::Result<Duration> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let sender = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await?;
        socket.write_all(&data).await?;
        socket.shutdown().await
    });
    let mut socket = tokio::net::TcpStream::connect(addr).await?;
    let t = Instant::now();
    let mut received = Vec::new();
    socket.read_to_end(&mut received).await?;
    let elapsed = t.elapsed();
    sender.await??;
    Ok(elapsed)
}

/// Runs the benchmark.
pub async fn run(args: &TransferArgs) -> anyhow::Result<TransferReport> {
    anyhow::ensure!(
        args.rounds > 0 && args.size_mb > 0,
        "--rounds and --size-mb must be at least 1"
    );
    let params = super::chunking::synthetic_params(args.size_mb * 1_000_000)?;
    let snapshot = Snapshot::from_params(params, args.chunk_size)?;
    let data: Arc<Vec<u8>> = Arc::new(
        snapshot
            .chunks
            .iter()
            .flat_map(|c| c.data.iter().copied())
            .collect(),
    );
    let bytes = data.len() as u64;
    let (mut best_murmur, mut best_tcp) = (Duration::MAX, Duration::MAX);
    let bar = super::progress(u64::from(args.rounds), "transfer");
    for _ in 0..args.rounds {
        best_tcp = best_tcp.min(tcp_round(data.clone()).await?);
        best_murmur = best_murmur.min(murmur_round(&snapshot, args.inflight).await?);
        bar.inc(1);
    }
    bar.finish_and_clear();
    let gbit = |d: Duration| bytes as f64 * 8.0 / d.as_secs_f64().max(1e-9) / 1e9;
    Ok(TransferReport {
        bytes,
        chunks: snapshot.chunks.len(),
        rounds: args.rounds,
        murmur_gbit_s: gbit(best_murmur),
        tcp_gbit_s: gbit(best_tcp),
        ratio: gbit(best_murmur) / gbit(best_tcp),
    })
}
