//! Peers nobody can dial, on loopback: two nodes that listen on nothing reserve slots on a
//! relay, are reached through its circuits, and pull each other's models over them (also
//! under a pre-shared key); a relay at its reservation or circuit cap refuses the next one;
//! a relay forwards no faster than its upload cap; a fetch whose circuit the relay cuts goes
//! on with another holder and charges no one; a denied peer is refused through a relay; a
//! flood of reservations is refused past the caps. (Hole punching needs NATs: the docker NAT
//! testnet, `testnet/nat.sh`, covers it.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

use libp2p::pnet::PreSharedKey;
use murmur_node::averaging::budgets::Entry;
use murmur_node::averaging::fetch::{self, ErrorBudgets, FetchLimits, Rates};
use murmur_node::network::relay::RelayServer;
use murmur_node::network::throttle::gate_burst;
use murmur_node::node::{NodeOptions, RunningNode};
use murmur_node::status::NodeStatus;
use murmur_protocol::ManifestId;
use murmur_tests::{dial_addr, hold, model, options, start, wait_for};
use std::time::Duration;

/// Options for an unreachable peer: no listen address at all (so no one can dial it
/// directly), bootstrapped from and reserving on `relay`.
fn hidden(
    dir: &std::path::Path,
    net: &str,
    index: usize,
    relay: &libp2p::Multiaddr,
    psk: Option<PreSharedKey>,
) -> NodeOptions {
    // Shard `index` of at least 3 (the first tests start three nodes).
    let mut opts = options(dir, net, index, index.max(2) + 1, vec![relay.clone()]);
    opts.network.listen = vec![];
    opts.network.relays = vec![relay.clone()];
    opts.network.psk = psk;
    opts
}

/// `from`'s current model, pulled by `to` from `from` alone (its manifest at least comes
/// from `from`; chunks `to` already holds are not fetched again); returns its chunks.
async fn pull_from(to: &RunningNode, from: &RunningNode) -> usize {
    // `from` may move on and evict the model between reading its status and the pull:
    // try a few of its models.
    let mut last = String::new();
    for _ in 0..40 {
        let id: ManifestId = from.snapshot().manifest.parse().unwrap();
        let Some((manifest, _)) = from.store.manifest(&id) else {
            continue;
        };
        let layout = manifest.validate().expect("a valid manifest");
        match murmur_tests::pull(to, from.peer_id, id, &layout).await {
            Ok(got) => return got.chunks_fetched + got.chunks_reused,
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("no model pulled over the circuit: {last}");
}

/// Options for a relay (shard 0) with `max_reservations` and an optional key.
fn relay_opts(
    dir: &std::path::Path,
    net: &str,
    max_reservations: usize,
    psk: Option<PreSharedKey>,
) -> NodeOptions {
    let mut opts = options(dir, net, 0, 3, vec![]);
    opts.network.relay_limits.max_reservations = max_reservations;
    opts.network.psk = psk;
    opts
}

/// Starts `opts` as a relay (`relay_server = "on"`) and waits until it listens: the node,
/// its status and its address.
async fn relay_node(mut opts: NodeOptions) -> (RunningNode, NodeStatus, libp2p::Multiaddr) {
    opts.network.relay_server = RelayServer::On;
    let relay = start(opts).await;
    let sr = wait_for(&relay, "relay listening", Duration::from_secs(30), |s| {
        !s.listen_addrs.is_empty()
    })
    .await;
    let addr = dial_addr(&sr);
    (relay, sr, addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_peers_reserve_on_a_relay_and_average_over_its_circuits() {
    circuits("relay-circuits", None).await;
}

/// The same in a private network: both ends reach the relay over pnet connections under
/// the key, and the circuit inside them runs noise end to end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_circuits_work_in_a_private_network() {
    circuits("relay-circuits-psk", Some(PreSharedKey::new([7; 32]))).await;
}

async fn circuits(net: &str, psk: Option<PreSharedKey>) {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let (relay, sr, relay_addr) = relay_node(relay_opts(dirs[0].path(), net, 64, psk)).await;
    assert!(sr.reach.relay_serving, "relay_server = on serves at once");
    let b = start(hidden(dirs[1].path(), net, 1, &relay_addr, psk)).await;
    let c = start(hidden(dirs[2].path(), net, 2, &relay_addr, psk)).await;

    // Each holds a reservation on the relay, and listens on its circuit address.
    for (name, node) in [("b", &b), ("c", &c)] {
        let s = wait_for(node, "a reservation", Duration::from_secs(30), |s| {
            s.reach.reservations.contains(&sr.peer_id)
                && s.listen_addrs.iter().any(|a| a.contains("/p2p-circuit"))
        })
        .await;
        let secs = s.reach.first_reservation_secs.expect("time to reservation");
        assert!(secs < 30.0, "{name} reserved after {secs} s");
        assert_ne!(
            s.reach.reachability,
            murmur_node::network::reach::Reachability::Public,
            "loopback addresses are never confirmed: {:?}",
            s.reach
        );
    }

    // b and c can only reach each other through the relay: b dials c at the circuit
    // address c listens on and pulls c's current model from c alone, every chunk verified;
    // then c pulls b's. (On loopback DCUtR may at once turn the circuit into a direct
    // connection, the relayed one then closed: either way it began as a circuit.)
    let sc = wait_for(&c, "c announcing", Duration::from_secs(30), |s| {
        s.version >= 2
    })
    .await;
    let circuit: libp2p::Multiaddr = sc
        .listen_addrs
        .iter()
        .find(|a| a.contains("/p2p-circuit"))
        .expect("c listens on a circuit")
        .parse()
        .unwrap();
    // (b may already be connected to c, through the relay routes it adds for peers it
    // hears of; a second dial is then refused.)
    let _ = b.client.dial(circuit).await;
    wait_for(&b, "b connected to c", Duration::from_secs(30), |s| {
        s.reach.connections.contains_key(&sc.peer_id)
    })
    .await;
    assert!(pull_from(&b, &c).await > 0);
    assert!(pull_from(&c, &b).await > 0);
    let sb = b.snapshot();
    assert!(
        sb.counters.fetched_relayed_bytes + sb.counters.fetched_direct_bytes > 0,
        "{:?}",
        sb.counters
    );
    let sr = relay.snapshot();
    assert!(
        sr.counters.relay_reservations_served >= 1,
        "{:?}",
        sr.counters
    );
    assert!(sr.counters.relay_circuits_served >= 1, "{:?}", sr.counters);
    for n in [relay, b, c] {
        n.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_at_its_reservation_cap_refuses_the_next_one() {
    let net = "relay-cap";
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let (relay, _, relay_addr) = relay_node(relay_opts(dirs[0].path(), net, 1, None)).await;
    let b = start(hidden(dirs[1].path(), net, 1, &relay_addr, None)).await;
    wait_for(&b, "b's reservation", Duration::from_secs(30), |s| {
        !s.reach.reservations.is_empty()
    })
    .await;
    let c = start(hidden(dirs[2].path(), net, 2, &relay_addr, None)).await;
    wait_for(
        &relay,
        "the relay refusing c",
        Duration::from_secs(30),
        |s| s.counters.relay_refused >= 1,
    )
    .await;
    let sc = c.snapshot();
    assert!(sc.reach.reservations.is_empty(), "{:?}", sc.reach);
    assert!(
        !b.snapshot().reach.reservations.is_empty(),
        "b keeps its slot"
    );
    for n in [relay, b, c] {
        n.shutdown().await;
    }
}

/// A relay at its per-peer circuit cap refuses the next circuit that peer asks for: with one
/// circuit per peer, c reaches b through the relay, then cannot reach d, while its circuit to
/// b stays up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_at_its_circuit_cap_refuses_the_next_one() {
    let net = "relay-circuit-cap";
    let dirs: Vec<_> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut opts = quiet(options(dirs[0].path(), net, 0, 4, vec![]));
    opts.network.relay_limits.max_circuits_per_peer = 1;
    let (relay, sr, relay_addr) = relay_node(opts).await;
    let b = start(quiet(hidden(dirs[1].path(), net, 1, &relay_addr, None))).await;
    let c = start(quiet(hidden(dirs[2].path(), net, 2, &relay_addr, None))).await;
    let d = start(quiet(hidden(dirs[3].path(), net, 3, &relay_addr, None))).await;
    let sb = reserved(&b, &sr).await;
    let sd = reserved(&d, &sr).await;
    connect_through(&c, &sb).await;
    let refused_before = relay.snapshot().counters.relay_refused;
    let _ = c.client.dial(circuit_addr(&sd)).await;
    wait_for(
        &relay,
        "the relay refusing c a second circuit",
        Duration::from_secs(30),
        |s| s.counters.relay_refused > refused_before,
    )
    .await;
    let s = c.snapshot();
    assert!(
        !s.reach.connections.contains_key(&sd.peer_id),
        "{:?}",
        s.reach.connections
    );
    assert!(
        s.reach.connections.contains_key(&sb.peer_id),
        "c keeps its circuit to b: {:?}",
        s.reach.connections
    );
    for n in [relay, b, c, d] {
        n.shutdown().await;
    }
}

/// `opts` with rounds too long to end during a test: the node trains but never averages,
/// so the only model traffic is the test's own.
fn quiet(mut opts: NodeOptions) -> NodeOptions {
    opts.round.steps = 1_000_000;
    opts
}

/// Waits until `node` holds a reservation on `relay` and listens on its circuit address.
async fn reserved(node: &RunningNode, relay: &NodeStatus) -> NodeStatus {
    wait_for(node, "a reservation", Duration::from_secs(30), |s| {
        s.reach.reservations.contains(&relay.peer_id)
            && s.listen_addrs.iter().any(|a| a.contains("/p2p-circuit"))
    })
    .await
}

/// A hidden peer's address through the relay it listens on (from its status).
fn circuit_addr(to: &NodeStatus) -> libp2p::Multiaddr {
    let circuit = to
        .listen_addrs
        .iter()
        .find(|a| a.contains("/p2p-circuit"))
        .expect("listens on a circuit");
    let suffix = format!("/p2p/{}", to.peer_id);
    if circuit.ends_with(&suffix) {
        circuit.parse().unwrap()
    } else {
        format!("{circuit}{suffix}").parse().unwrap()
    }
}

/// Connects `from` to the peer of `to` (a hidden peer's status) through its circuit.
async fn connect_through(from: &RunningNode, to: &NodeStatus) {
    let _ = from.client.dial(circuit_addr(to)).await;
    wait_for(
        from,
        "connected through the relay",
        Duration::from_secs(30),
        |s| s.reach.connections.contains_key(&to.peer_id),
    )
    .await;
}

/// The bytes a relay forwards pass its upload cap (`max_upload_mbps`): while a 1 MiB model
/// is pulled over its circuit, the relay writes no more than the gate's burst, one write of
/// debt per stream and the cap's rate allow. What the relay wrote is counted whatever went
/// through it; it must be past the burst and slack for the check to mean something.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_forwards_no_faster_than_its_upload_cap() {
    let net = "relay-upload-cap";
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let rate = 1_000_000.0; // 8 Mbit/s
    let mut opts = quiet(options(dirs[0].path(), net, 0, 3, vec![]));
    opts.network.serving.max_upload_bytes_per_sec = Some(rate);
    let (relay, sr, relay_addr) = relay_node(opts).await;
    let b = start(quiet(hidden(dirs[1].path(), net, 1, &relay_addr, None))).await;
    let c = start(quiet(hidden(dirs[2].path(), net, 2, &relay_addr, None))).await;
    let sc = reserved(&c, &sr).await;
    reserved(&b, &sr).await;
    connect_through(&b, &sc).await;

    let snap = model(3);
    hold(&c, &snap);
    let layout = snap.manifest.validate().unwrap();
    // The relay's counters and clock as published together in its status (every 0.5 s):
    // the window runs from the last status before the pull to the first one after it.
    let relayed_before = b.snapshot().counters.fetched_relayed_bytes;
    let before = relay.snapshot();
    let got = murmur_tests::pull(&b, c.peer_id, snap.id, &layout)
        .await
        .expect("the model pulled over the circuit");
    assert_eq!(got.chunks_fetched, 64);
    let done = relay.snapshot().uptime_secs;
    let after = wait_for(
        &relay,
        "a status after the pull",
        Duration::from_secs(5),
        |s| s.uptime_secs > done,
    )
    .await;
    let window = after.uptime_secs - before.uptime_secs;
    let uploaded = after.counters.uploaded_bytes - before.counters.uploaded_bytes;
    let relayed = b.snapshot().counters.fetched_relayed_bytes - relayed_before;
    eprintln!(
        "relay wrote {uploaded} bytes in {window:.2} s ({:.3} MB/s under a cap of {:.3} MB/s); \
         {relayed} model bytes came over it",
        uploaded as f64 / window / 1e6,
        rate / 1e6
    );
    let slack = gate_burst(rate) + 4.0 * 64.0 * 1024.0;
    assert!(
        uploaded as f64 > slack,
        "the relay wrote {uploaded} bytes ({relayed} of the model came over it): too few to \
         reach its cap"
    );
    assert!(
        uploaded as f64 <= slack + rate * window,
        "the relay wrote {uploaded} bytes in {window:.3} s: more than {rate} B/s allows"
    );
    for n in [relay, b, c] {
        n.shutdown().await;
    }
}

/// A relay cuts a circuit at its byte cap in the middle of a fetch: the requests it carried
/// are lost (counted, never charged), and the fetch gets their chunks from the other holder.
/// h1 is reached only through r1 (256 KiB per circuit), h2 only through r2; the model is
/// 1 MiB, and the fetch asks each holder for about half of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fetch_whose_circuit_is_cut_goes_on_with_another_holder() {
    let net = "relay-cut";
    let dirs: Vec<_> = (0..5).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut relays = Vec::new();
    for (i, cap) in [(0, 256 << 10), (1, 256 << 20)] {
        let mut opts = quiet(options(dirs[i].path(), net, i, 5, vec![]));
        opts.network.relay_limits.max_circuit_bytes = cap;
        relays.push(relay_node(opts).await);
    }
    let (r1, r2) = (relays[0].2.clone(), relays[1].2.clone());
    let h1 = start(quiet(hidden(dirs[2].path(), net, 2, &r1, None))).await;
    let h2 = start(quiet(hidden(dirs[3].path(), net, 3, &r2, None))).await;
    let mut opts = quiet(hidden(dirs[4].path(), net, 4, &r1, None));
    opts.network.bootstrap.push(r2.clone());
    let a = start(opts).await;
    let s1 = reserved(&h1, &relays[0].1).await;
    let s2 = reserved(&h2, &relays[1].1).await;
    connect_through(&a, &s1).await;
    connect_through(&a, &s2).await;

    let snap = model(5);
    hold(&h1, &snap);
    hold(&h2, &snap);
    let layout = snap.manifest.validate().unwrap();
    let lost_before = a.snapshot().counters.requests_lost;
    let (result, ledger) = fetch::fetch(
        &a.client,
        &a.store,
        snap.id,
        &[h1.peer_id, h2.peer_id],
        ErrorBudgets::new(100),
        &Rates::default(),
        FetchLimits {
            per_peer_inflight: 4,
            deadline: Duration::from_secs(30),
        },
        &layout,
    )
    .await;
    let got = result.expect("the fetch completes");
    assert_eq!(got.chunks_fetched, 64);
    let lost = a.snapshot().counters.requests_lost - lost_before;
    assert!(
        lost >= 1,
        "the circuit to h1 was cut under the fetch's requests"
    );
    assert!(
        got.sources.get(&h2.peer_id).is_some_and(|n| *n > 0),
        "{:?}",
        got.sources
    );
    assert!(
        !ledger
            .entries()
            .iter()
            .any(|e| matches!(e, Entry::Charge(..))),
        "a cut circuit charges no one: {ledger:?}"
    );
    for n in [h1, h2, a] {
        n.shutdown().await;
    }
    for (n, _, _) in relays {
        n.shutdown().await;
    }
}

/// `network.deny` holds for a peer that comes through a relay: its circuit connection is
/// refused when it is established, as a direct one is, while an allowed peer's circuit
/// connection is kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denied_peer_is_refused_through_a_relay_too() {
    let net = "relay-deny";
    let dirs: Vec<_> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
    let denied_id = murmur_node::identity::load_or_create(dirs[3].path())
        .unwrap()
        .public()
        .to_peer_id();
    let (relay, sr, relay_addr) = relay_node(relay_opts(dirs[0].path(), net, 64, None)).await;
    let mut opts = quiet(hidden(dirs[1].path(), net, 1, &relay_addr, None));
    opts.network.access = murmur_node::network::access::Access::new([], [denied_id]);
    let host = start(opts).await;
    let allowed = start(quiet(hidden(dirs[2].path(), net, 2, &relay_addr, None))).await;
    let denied = start(quiet(hidden(dirs[3].path(), net, 3, &relay_addr, None))).await;
    let sh = reserved(&host, &sr).await;

    connect_through(&allowed, &sh).await;
    let failed_before = host.snapshot().counters.connections_failed;
    let _ = denied.client.dial(circuit_addr(&sh)).await;
    wait_for(
        &host,
        "the host refusing the denied peer's circuit",
        Duration::from_secs(30),
        |s| s.counters.connections_failed > failed_before,
    )
    .await;
    let s = host.snapshot();
    assert!(
        !s.reach.connections.contains_key(&denied_id.to_string()),
        "{:?}",
        s.reach.connections
    );
    assert!(
        s.reach
            .connections
            .contains_key(&allowed.peer_id.to_string()),
        "the allowed peer keeps its circuit: {:?}",
        s.reach.connections
    );
    for n in [relay, host, allowed, denied] {
        n.shutdown().await;
    }
}

/// A peer that asks for reservations; it answers pings, since a murmur node closes a
/// connection that does not.
#[derive(libp2p::swarm::NetworkBehaviour)]
struct Flooder {
    relay: libp2p::relay::client::Behaviour,
    ping: libp2p::ping::Behaviour,
}

/// A flood of reservation requests from many identities (each a fresh key: they cost
/// nothing) is answered like any other flood: the relay grants no more than its cap, refuses
/// the rest (over the cap, over libp2p's per-address rate limit, or over the connection
/// limits before a reservation is even asked for), and goes on averaging with an honest peer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_reservations_from_many_identities_is_refused_past_the_caps() {
    use libp2p::futures::StreamExt;
    use libp2p::multiaddr::Protocol;
    const FLOOD: u64 = 120;
    const CAP: usize = 8;
    let net = "relay-flood";
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let (relay, _, relay_addr) = relay_node(relay_opts(dirs[0].path(), net, CAP, None)).await;
    let honest = start(options(dirs[1].path(), net, 1, 2, vec![relay_addr.clone()])).await;
    wait_for(
        &honest,
        "the honest peer merging",
        Duration::from_secs(60),
        |s| s.counters.merges >= 1,
    )
    .await;

    let mut flood = Vec::new();
    for _ in 0..FLOOD {
        let mut swarm = libp2p::SwarmBuilder::with_new_identity()
            .with_tokio()
            .with_tcp(
                Default::default(),
                libp2p::noise::Config::new,
                libp2p::yamux::Config::default,
            )
            .unwrap()
            .with_relay_client(libp2p::noise::Config::new, libp2p::yamux::Config::default)
            .unwrap()
            .with_behaviour(|_, relay| Flooder {
                relay,
                ping: Default::default(),
            })
            .unwrap()
            .build();
        swarm
            .listen_on(relay_addr.clone().with(Protocol::P2pCircuit))
            .unwrap();
        flood.push(tokio::spawn(async move {
            loop {
                swarm.select_next_some().await;
            }
        }));
    }
    let s = wait_for(
        &relay,
        "every reservation request granted or refused",
        Duration::from_secs(60),
        |s| {
            let c = &s.counters;
            c.relay_reservations_served + c.relay_refused + c.connections_failed >= FLOOD
        },
    )
    .await;
    let c = &s.counters;
    eprintln!(
        "flood of {FLOOD}: {} reservations granted, {} refused, {} connections refused",
        c.relay_reservations_served, c.relay_refused, c.connections_failed
    );
    assert!(
        s.counters.relay_reservations_served <= CAP as u64,
        "granted past the cap: {:?}",
        s.counters
    );
    assert!(s.counters.relay_refused >= 1, "{:?}", s.counters);
    // The relay goes on averaging with the honest peer.
    let before = honest.snapshot().counters.merges;
    wait_for(
        &honest,
        "the honest peer merging after the flood",
        Duration::from_secs(60),
        |s| s.counters.merges >= before + 2,
    )
    .await;
    for task in flood {
        task.abort();
    }
    for n in [relay, honest] {
        n.shutdown().await;
    }
}
