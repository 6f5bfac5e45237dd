//! Hostile peers, at the network layer, with bare swarms over loopback TCP (no training): a
//! blocked peer is cut off both ways until its block ends; a peer that never answers costs a
//! request its timeout, and a fetch a charge, never the fetch's deadline.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use libp2p::identity::Keypair;
use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId};
use murmur_node::averaging::fetch::{self, ErrorBudgets, FetchLimits, Rates};
use murmur_node::network::{self, Client, Event, NetStatus, NetworkConfig, RequestError, Traffic};
use murmur_node::store::ChunkStore;
use murmur_protocol::{FlatParams, ManifestId, Request, Response, Snapshot, TensorSpec};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

fn config(request_timeout: Duration, never_answer: bool) -> NetworkConfig {
    NetworkConfig {
        network_id: "blocking".into(),
        listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
        bootstrap: vec![],
        relays: vec![],
        external_addrs: vec![],
        relay_server: Default::default(),
        relay_limits: Default::default(),
        mdns: false,
        kademlia: false,
        max_connections: 16,
        idle_timeout: Duration::from_secs(60),
        request_timeout,
        corrupt_served_chunks: false,
        emulate_link: None,
        never_answer,
        serving: Default::default(),
        psk: None,
        access: Default::default(),
    }
}

/// A running network: its client, its dialable address, and its events (kept so that the
/// loop's event queue stays open).
struct Net {
    client: Client,
    addr: Multiaddr,
    _events: mpsc::Receiver<Event>,
}

impl Net {
    async fn start(cfg: NetworkConfig, store: ChunkStore) -> Self {
        let (client, events, event_loop) = network::new(
            Keypair::generate_ed25519(),
            cfg,
            store,
            Arc::new(Traffic::default()),
        )
        .unwrap();
        tokio::spawn(event_loop.run());
        let status = poll(&client, "a listen address", Duration::from_secs(10), |s| {
            !s.listen_addrs.is_empty()
        })
        .await;
        let addr = status.listen_addrs[0]
            .clone()
            .with(Protocol::P2p(client.peer_id()));
        Self {
            client,
            addr,
            _events: events,
        }
    }

    fn id(&self) -> PeerId {
        self.client.peer_id()
    }

    async fn connected_to(&self, other: &Net) -> bool {
        self.client.status().await.connected.contains(&other.id())
    }
}

/// Polls `client`'s status until `cond` holds; panics after `deadline` with the last status.
async fn poll(
    client: &Client,
    what: &str,
    deadline: Duration,
    cond: impl Fn(&NetStatus) -> bool,
) -> NetStatus {
    let start = Instant::now();
    loop {
        let status = client.status().await;
        if cond(&status) {
            return status;
        }
        assert!(
            start.elapsed() < deadline,
            "timed out after {deadline:?} waiting for {what}; last status: {status:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Dials `to` from `from` until `to` sees the connection; panics after `deadline`.
async fn connect(from: &Net, to: &Net, deadline: Duration) {
    let start = Instant::now();
    while !to.connected_to(from).await {
        assert!(
            start.elapsed() < deadline,
            "{} never got a connection from {}",
            to.id(),
            from.id()
        );
        let _ = from.client.dial(to.addr.clone()).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_peer_is_cut_off_both_ways_until_unblocked() {
    let timeout = Duration::from_secs(3);
    let a = Net::start(config(timeout, false), ChunkStore::new(1 << 20)).await;
    let b = Net::start(config(timeout, false), ChunkStore::new(1 << 20)).await;
    connect(&b, &a, Duration::from_secs(10)).await;

    a.client.block(b.id()).await;
    let status = poll(&a.client, "b disconnected", Duration::from_secs(5), |s| {
        !s.connected.contains(&b.id())
    })
    .await;
    assert_eq!(status.blocked, vec![b.id()]);
    poll(
        &b.client,
        "a gone from b's side",
        Duration::from_secs(5),
        |s| !s.connected.contains(&a.id()),
    )
    .await;

    // While blocked: a refuses to dial b, and b's connections are refused by a.
    let refused = a.client.dial(b.addr.clone()).await;
    assert!(refused.is_err(), "a dialled a blocked peer: {refused:?}");
    let request = b
        .client
        .request(a.id(), Request::Manifest(ManifestId::from_bytes([7; 32])))
        .await;
    assert!(
        // No connection can be made: `Lost`, which charges no one (a would have been
        // charged for a refusal it had every right to make).
        matches!(
            request,
            Err(RequestError::Lost { .. } | RequestError::Failed { .. })
        ),
        "a blocked peer's request went through: {request:?}"
    );
    assert!(!a.connected_to(&b).await, "a accepted a blocked peer");
    // The block lasts until it is lifted (the averaging core decides when).
    let redial = b.client.dial(a.addr.clone()).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !a.connected_to(&b).await,
        "a accepted a blocked peer's dial ({redial:?})"
    );
    assert_eq!(a.client.status().await.blocked, vec![b.id()]);

    // Unblocked: b gets in again.
    a.client.unblock(b.id()).await;
    assert!(a.client.status().await.blocked.is_empty());
    connect(&b, &a, Duration::from_secs(10)).await;
    let answer = b
        .client
        .request(a.id(), Request::Manifest(ManifestId::from_bytes([7; 32])))
        .await;
    assert!(matches!(answer, Ok(Response::Manifest(None))), "{answer:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unblocking_lifts_a_block_at_once() {
    let timeout = Duration::from_secs(3);
    let a = Net::start(config(timeout, false), ChunkStore::new(1 << 20)).await;
    let b = Net::start(config(timeout, false), ChunkStore::new(1 << 20)).await;
    a.client.block(b.id()).await;
    // Blocking oneself is ignored.
    a.client.block(a.id()).await;
    assert_eq!(a.client.status().await.blocked, vec![b.id()]);
    a.client.unblock(b.id()).await;
    assert!(a.client.status().await.blocked.is_empty());
    connect(&b, &a, Duration::from_secs(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_peer_fails_a_request_within_the_request_timeout() {
    let timeout = Duration::from_secs(1);
    // The silent side's own timeout is longer, so it is the requester's that fires.
    let silent = Net::start(
        config(Duration::from_secs(30), true),
        ChunkStore::new(1 << 20),
    )
    .await;
    let asker = Net::start(config(timeout, false), ChunkStore::new(1 << 20)).await;
    connect(&asker, &silent, Duration::from_secs(10)).await;
    let started = Instant::now();
    let result = asker
        .client
        .request(
            silent.id(),
            Request::Manifest(ManifestId::from_bytes([1; 32])),
        )
        .await;
    let elapsed = started.elapsed();
    match result {
        Err(RequestError::Timeout { peer }) => assert_eq!(peer, silent.id()),
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert!(
        elapsed >= timeout && elapsed < timeout + Duration::from_secs(2),
        "timed out after {elapsed:?} with a request timeout of {timeout:?}"
    );
}

/// 4,096 values in 1 KiB chunks: 16 chunks.
fn snapshot() -> Snapshot {
    let values = (0..4096).map(|i| (i as f32 * 0.01).sin()).collect();
    let params = FlatParams::from_named(vec![(TensorSpec::f32("w", &[4096]), values)]).unwrap();
    Snapshot::build(&params, 1024).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fetch_charges_a_silent_holder_and_finishes_from_an_honest_one() {
    let timeout = Duration::from_secs(1);
    let snap = snapshot();
    let holding = || {
        let store = ChunkStore::new(1 << 20);
        store.insert_own(&snap);
        store
    };
    let silent = Net::start(config(Duration::from_secs(30), true), holding()).await;
    let honest = Net::start(config(Duration::from_secs(30), false), holding()).await;
    let store = ChunkStore::new(1 << 20);
    let fetcher = Net::start(config(timeout, false), store.clone()).await;
    connect(&fetcher, &silent, Duration::from_secs(10)).await;
    connect(&fetcher, &honest, Duration::from_secs(10)).await;

    let deadline = Duration::from_secs(8);
    let mut budgets = ErrorBudgets::new(5);
    let started = Instant::now();
    let (fetched, ledger) = fetch::fetch(
        &fetcher.client,
        &store,
        snap.id,
        // The silent holder first: it is asked for the manifest and for chunks.
        &[silent.id(), honest.id()],
        budgets.clone(),
        &Rates::default(),
        FetchLimits {
            per_peer_inflight: 2,
            deadline,
        },
        &snap.manifest.validate().unwrap(),
    )
    .await;
    let fetched = fetched.unwrap_or_else(|e| panic!("fetch failed: {e}"));
    budgets.settle(&ledger);
    assert!(started.elapsed() < deadline);
    assert_eq!(fetched.chunks_fetched, snap.chunks.len());
    assert_eq!(fetched.sources.get(&honest.id()), Some(&snap.chunks.len()));
    let charges = budgets.snapshot();
    // Once for the manifest request, at least once for a chunk request (the first batch goes
    // to the first holder).
    assert!(
        charges.iter().any(|(p, n)| *p == silent.id() && *n >= 2),
        "the silent holder was not charged for each request: {charges:?}"
    );
    assert!(
        !charges.iter().any(|(p, n)| *p == honest.id() && *n > 0),
        "the honest holder was charged: {charges:?}"
    );
}
