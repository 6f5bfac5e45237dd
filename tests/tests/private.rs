//! Private networks and access lists, with real nodes over loopback: a node without the
//! network's pre-shared key, or with another key, never completes a connection while a peer
//! with the key does; a denied peer and a peer off the allowlist likewise; and two nodes
//! talk over QUIC as over TCP.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use murmur_node::network::access::{Access, parse_psk};
use murmur_node::node::{NodeOptions, RunningNode};
use murmur_node::status::NodeStatus;
use murmur_tests::{dial_addr, options, start, wait_for};
use std::time::{Duration, Instant};

const KEY: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
const OTHER_KEY: &str = "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210";

fn node_options(
    dir: &tempfile::TempDir,
    index: usize,
    bootstrap: Option<&NodeStatus>,
) -> NodeOptions {
    options(
        dir.path(),
        "private",
        index,
        4,
        bootstrap.map(dial_addr).into_iter().collect(),
    )
}

fn connected(status: &NodeStatus, peer: &str) -> bool {
    status.connected.iter().any(|p| p == peer)
}

/// Waits until the connections that failed reach `attempts` at each of `counted` (the host,
/// or the outsiders themselves), checking all along that the host never listed one of the
/// `outsiders` as connected.
async fn refused_again_and_again(
    host: &RunningNode,
    outsiders: &[&RunningNode],
    counted: &[&RunningNode],
    attempts: u64,
) {
    let ids: Vec<String> = outsiders.iter().map(|o| o.snapshot().peer_id).collect();
    let deadline = Duration::from_secs(60);
    let start = Instant::now();
    loop {
        let h = host.snapshot();
        for id in &ids {
            assert!(
                !connected(&h, id),
                "{id} got a connection with the host: {h:#?}"
            );
        }
        if counted
            .iter()
            .all(|n| n.snapshot().counters.connections_failed >= attempts)
        {
            return;
        }
        assert!(
            start.elapsed() < deadline,
            "timed out waiting for {attempts} failed connections each: {:#?}",
            counted
                .iter()
                .map(|o| o.snapshot().counters)
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_peers_with_the_key_connect() {
    let dirs: Vec<_> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut host = node_options(&dirs[0], 0, None);
    host.network.psk = Some(parse_psk(KEY).unwrap());
    let host = start(host).await;
    let h = wait_for(&host, "host listening", Duration::from_secs(30), |s| {
        !s.listen_addrs.is_empty()
    })
    .await;

    let mut member = node_options(&dirs[1], 1, Some(&h));
    member.network.psk = Some(parse_psk(KEY).unwrap());
    let mut stranger = node_options(&dirs[2], 2, Some(&h));
    stranger.network.psk = Some(parse_psk(OTHER_KEY).unwrap());
    let public = node_options(&dirs[3], 3, Some(&h));
    let (member, stranger, public) = (
        start(member).await,
        start(stranger).await,
        start(public).await,
    );

    // The member connects and merges the host's model: the key does not get in the way.
    let m = wait_for(
        &member,
        "the member merging",
        Duration::from_secs(60),
        |s| connected(s, &h.peer_id) && s.counters.merges >= 1,
    )
    .await;
    wait_for(
        &host,
        "the host seeing the member",
        Duration::from_secs(10),
        |s| connected(s, &m.peer_id),
    )
    .await;
    // The bootstrap redial makes each outsider try again every 10 s: two failures each, on
    // both sides (under another key, or none, the handshake itself fails).
    let outsiders = [&stranger, &public];
    refused_again_and_again(&host, &outsiders, &outsiders, 2).await;
    for o in outsiders {
        let s = o.snapshot();
        assert!(s.connected.is_empty(), "{s:#?}");
    }
    // The host's side of those handshakes failed too (it may notice a little later).
    let h = wait_for(
        &host,
        "the host counting failed handshakes",
        Duration::from_secs(30),
        |s| s.counters.connections_failed >= 2,
    )
    .await;
    assert_eq!(h.connected, vec![m.peer_id.clone()], "{h:#?}");

    for n in [member, stranger, public, host] {
        n.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denied_and_unlisted_peers_never_connect() {
    let dirs: Vec<_> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
    let ids: Vec<libp2p::PeerId> = dirs
        .iter()
        .map(|d| {
            murmur_node::identity::load_or_create(d.path())
                .unwrap()
                .public()
                .to_peer_id()
        })
        .collect();
    // The host allows 1 and 2 and denies 2: only 1 gets in; 3 is not on the list.
    let mut host = node_options(&dirs[0], 0, None);
    host.network.access = Access::new([ids[1], ids[2]], [ids[2]]);
    let host = start(host).await;
    let h = wait_for(&host, "host listening", Duration::from_secs(30), |s| {
        !s.listen_addrs.is_empty()
    })
    .await;
    let allowed = start(node_options(&dirs[1], 1, Some(&h))).await;
    let a = wait_for(
        &allowed,
        "the allowed peer merging",
        Duration::from_secs(60),
        |s| connected(s, &h.peer_id) && s.counters.merges >= 1,
    )
    .await;
    // The outsiders also know the allowed peer, which has no lists: it hears them and relays
    // what they announce to the host.
    let outsider = |dir, i| {
        let mut o = node_options(dir, i, Some(&h));
        o.network.bootstrap.push(dial_addr(&a));
        o
    };
    let denied = start(outsider(&dirs[2], 2)).await;
    let unlisted = start(outsider(&dirs[3], 3)).await;
    // The host refuses each connection as it is established (the outsider sees it open and
    // close at once), and the outsiders' redial tries again every 10 s: two refusals each.
    refused_again_and_again(&host, &[&denied, &unlisted], &[&host], 4).await;
    assert_eq!(host.snapshot().connected, vec![ids[1].to_string()]);
    // Announcements the outsiders wrote reach the host through the allowed peer and are
    // ignored: after the allowed peer heard several rounds of each, the host knows neither.
    let outsiders = [ids[2].to_string(), ids[3].to_string()];
    wait_for(
        &allowed,
        "the allowed peer hearing the outsiders",
        Duration::from_secs(60),
        |s| {
            outsiders
                .iter()
                .all(|o| s.peers.iter().any(|p| &p.peer_id == o && p.version >= 3))
        },
    )
    .await;
    let h = host.snapshot();
    assert!(
        h.peers.iter().all(|p| !outsiders.contains(&p.peer_id)),
        "the host heard an outsider: {h:#?}"
    );
    assert_eq!(h.connected, vec![ids[1].to_string()]);

    for n in [allowed, denied, unlisted, host] {
        n.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_merge_over_quic() {
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let quic: libp2p::Multiaddr = "/ip4/127.0.0.1/udp/0/quic-v1".parse().unwrap();
    let mut a = node_options(&dirs[0], 0, None);
    a.network.listen = vec![quic.clone()];
    let a = start(a).await;
    let sa = wait_for(&a, "a listening on QUIC", Duration::from_secs(30), |s| {
        s.listen_addrs.iter().any(|l| l.contains("quic-v1"))
    })
    .await;
    let mut b = node_options(&dirs[1], 1, Some(&sa));
    b.network.listen = vec![quic];
    let b = start(b).await;
    let sb = wait_for(
        &b,
        "b merging a's model over QUIC",
        Duration::from_secs(60),
        |s| connected(s, &sa.peer_id) && s.counters.merges >= 1 && s.counters.chunks_fetched > 0,
    )
    .await;
    wait_for(
        &a,
        "a merging b's model over QUIC",
        Duration::from_secs(60),
        |s| connected(s, &sb.peer_id) && s.counters.merges >= 1,
    )
    .await;
    a.shutdown().await;
    b.shutdown().await;
}
