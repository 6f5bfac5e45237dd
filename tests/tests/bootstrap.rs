//! The bootstrap peer is not special: kill it in a running network, and the other peers keep
//! merging with each other; a peer started later that knows only a surviving peer joins.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use murmur_node::status::NodeStatus;
use murmur_tests::{LiveNetwork, dial_addr, options, start, wait_for};
use std::collections::HashSet;
use std::time::Duration;

/// Peer ids whose models `s` merged, among its latest averagings.
fn merged_from(s: &NodeStatus) -> HashSet<String> {
    s.averagings
        .iter()
        .filter(|a| a.outcome == "merged" || a.outcome == "adopted")
        .flat_map(|a| a.models.iter())
        .filter(|m| m.error.is_none())
        .map(|m| m.peer_id.clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_bootstrap_peer_leaves_a_network_that_merges_and_admits_newcomers() {
    // Four peers, peers 1 to 3 bootstrapped from peer 0 only.
    let mut net = LiveNetwork::start("bootstrap-kill", 4).await;
    for n in &net.nodes {
        wait_for(n, "every peer merging", Duration::from_secs(60), |s| {
            s.counters.merges >= 1 && s.peers.len() == 3
        })
        .await;
    }

    // Kill the bootstrap peer: dropped, not shut down (its swarm and sockets vanish at once).
    let boot = net.nodes.remove(0);
    let boot_id = boot.peer_id.to_string();
    drop(boot);

    // The survivors keep merging, with each other: every one merges 3 more times, and its
    // latest averagings hold models of both other survivors, none of the dead peer's.
    let ids: Vec<String> = net.nodes.iter().map(|n| n.peer_id.to_string()).collect();
    for (i, n) in net.nodes.iter().enumerate() {
        let before = n.snapshot().counters.merges;
        let others: Vec<String> = ids
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, id)| id.clone())
            .collect();
        wait_for(
            n,
            "a survivor merging with both other survivors, and only with them",
            Duration::from_secs(90),
            |s| {
                let from = merged_from(s);
                s.counters.merges >= before + 3
                    && others.iter().all(|o| from.contains(o))
                    && s.averagings
                        .iter()
                        .rev()
                        .take(3)
                        .all(|a| a.models.iter().all(|m| m.peer_id != boot_id))
            },
        )
        .await;
    }

    // A late peer that knows only peer 1 joins: it hears peers 2 and 3 through it, connects
    // to another survivor than its bootstrap peer, merges and catches up.
    let s1 = net.nodes[0].snapshot();
    let late_dir = tempfile::tempdir().unwrap();
    let late = start(options(
        late_dir.path(),
        "bootstrap-kill",
        0,
        4,
        vec![dial_addr(&s1)],
    ))
    .await;
    let far: Vec<String> = ids[1..].to_vec();
    let s = wait_for(
        &late,
        "the late peer hearing every survivor, connected beyond its bootstrap peer, merging",
        // Covers one 120 s block: survivors may refuse the late peer's first, fresh model by
        // distance and block it (the late-joiner false alarm, more frequent since every
        // survivor merges every peer's model of the round); it joins once the blocks end.
        Duration::from_secs(180),
        |s| {
            let heard: HashSet<&str> = s.peers.iter().map(|p| p.peer_id.as_str()).collect();
            ids.iter().all(|id| heard.contains(id.as_str()))
                && !heard.contains(boot_id.as_str())
                && s.connected.iter().any(|c| far.contains(c))
                && s.counters.merges >= 2
                && s.accuracy >= 0.8
        },
    )
    .await;
    assert!(!s.resumed);
    // Another survivor hears it too (it joined the gossip, not only dialled). Like the wait
    // above, this covers one 120 s block: that survivor may have refused the late peer's
    // first models and blocked it (the late-joiner false alarm, issue 24; seen in CI: 2
    // refusals, charges 5, blocked), and hears it once the block ends.
    let late_id = late.peer_id.to_string();
    wait_for(
        &net.nodes[1],
        "a survivor the late peer was not told of hearing it",
        Duration::from_secs(180),
        |s| s.peers.iter().any(|p| p.peer_id == late_id),
    )
    .await;
    late.shutdown().await;
    net.shutdown().await;
}
