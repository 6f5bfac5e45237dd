//! Peers nobody can dial, on loopback: two nodes that listen on nothing reserve slots on a
//! relay, are reached through its circuits, and pull each other's models over them (also
//! under a pre-shared key); a relay
//! at its reservation cap refuses the next one. (Hole punching needs NATs: the docker NAT
//! testnet, `testnet/nat.sh`, covers it.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

use libp2p::pnet::PreSharedKey;
use murmur_node::network::relay::RelayServer;
use murmur_node::node::{NodeOptions, RunningNode};
use murmur_protocol::ManifestId;
use murmur_tests::{dial_addr, options, start, wait_for};
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
    let mut opts = options(dir, net, index, 3, vec![relay.clone()]);
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

async fn relay_node(
    dir: &std::path::Path,
    net: &str,
    max_reservations: usize,
    psk: Option<PreSharedKey>,
) -> RunningNode {
    let mut opts = options(dir, net, 0, 3, vec![]);
    opts.network.relay_server = RelayServer::On;
    opts.network.relay_limits.max_reservations = max_reservations;
    opts.network.psk = psk;
    start(opts).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_peers_reserve_on_a_relay_and_average_over_its_circuits() {
    circuits("relay-circuits", None).await;
}

/// The same in a private network: the circuits run pnet under the key end to end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_circuits_work_in_a_private_network() {
    circuits("relay-circuits-psk", Some(PreSharedKey::new([7; 32]))).await;
}

async fn circuits(net: &str, psk: Option<PreSharedKey>) {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let relay = relay_node(dirs[0].path(), net, 64, psk).await;
    let sr = wait_for(&relay, "relay listening", Duration::from_secs(30), |s| {
        !s.listen_addrs.is_empty()
    })
    .await;
    assert!(sr.reach.relay_serving, "relay_server = on serves at once");
    let relay_addr = dial_addr(&sr);
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
    let relay = relay_node(dirs[0].path(), net, 1, None).await;
    let sr = wait_for(&relay, "relay listening", Duration::from_secs(30), |s| {
        !s.listen_addrs.is_empty()
    })
    .await;
    let relay_addr = dial_addr(&sr);
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
