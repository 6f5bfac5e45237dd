//! Slow links, with real nodes: a node behind an emulated link (`network.emulate_link`)
//! really delivers at its rate; a fetch with two holders of one model, one of them behind
//! a slow link, measures both and then takes the next model from the fast one; and a model
//! the fast one does not hold still comes from the slow one.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use libp2p::PeerId;
use murmur_node::averaging::fetch::{self, ErrorBudgets, FetchLimits, Fetched, Rates};
use murmur_node::node::RunningNode;
use murmur_protocol::Snapshot;
use murmur_tests::{dial_addr, hold, model, options, start, wait_for};
use std::time::{Duration, Instant};

const LIMITS: FetchLimits = FetchLimits {
    per_peer_inflight: 4,
    deadline: Duration::from_secs(30),
};

/// Fetches `snap` from `holders` into `client`'s store, failing the test with `what`.
async fn pull(
    client: &RunningNode,
    snap: &Snapshot,
    holders: &[PeerId],
    budgets: &ErrorBudgets,
    rates: &Rates,
    what: &str,
) -> Fetched {
    let layout = snap.manifest.validate().unwrap();
    fetch::fetch(
        &client.client,
        &client.store,
        snap.id,
        holders,
        budgets.clone(),
        rates,
        LIMITS,
        &layout,
    )
    .await
    .0
    .unwrap_or_else(|e| panic!("{what}: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetches_measure_holders_and_prefer_the_faster_one() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let fast = start(options(dirs[0].path(), "bandwidth", 0, 3, vec![])).await;
    let s0 = wait_for(&fast, "fast listening", Duration::from_secs(30), |s| {
        !s.listen_addrs.is_empty()
    })
    .await;
    // 8 Mbit/s = 1 MB/s: the 1 MiB model takes about a second from this holder alone.
    let mut slow_opts = options(dirs[1].path(), "bandwidth", 1, 3, vec![dial_addr(&s0)]);
    slow_opts.network.emulate_link = Some("8mbit,20ms".parse().unwrap());
    let slow = start(slow_opts).await;
    let client = start(options(
        dirs[2].path(),
        "bandwidth",
        2,
        3,
        vec![dial_addr(&s0)],
    ))
    .await;
    wait_for(
        &client,
        "client connected to both",
        Duration::from_secs(30),
        |s| s.peers.len() == 2,
    )
    .await;

    // The emulated link delivers at its rate: the whole model from the slow holder alone
    // cannot arrive sooner than its bytes over 8 Mbit/s.
    let first = model(1);
    hold(&slow, &first);
    let rates = Rates::default();
    let budgets = ErrorBudgets::new(100);
    let started = Instant::now();
    let fetched = pull(
        &client,
        &first,
        &[slow.peer_id],
        &budgets,
        &rates,
        "fetch from the slow holder failed",
    )
    .await;
    let took = started.elapsed();
    assert_eq!(fetched.chunks_fetched, 64);
    let floor = Duration::from_secs_f64(fetched.bytes as f64 * 8.0 / 8e6);
    assert!(
        took >= floor,
        "1 MiB through an emulated 8 Mbit/s link took {took:?}, less than {floor:?}"
    );
    let slow_rate = rates
        .rate(&slow.peer_id)
        .expect("the slow holder was measured");
    assert!(
        slow_rate < 1.2e6,
        "measured {slow_rate} B/s through a 1 MB/s link"
    );

    // Both hold the second model; the fast one is measured on a first pass (a model it alone
    // holds), then the shared one is fetched: the slow holder, over four times slower, gets
    // no request while the fast one is usable.
    let warm = model(2);
    hold(&fast, &warm);
    pull(
        &client,
        &warm,
        &[fast.peer_id],
        &budgets,
        &rates,
        "fetch from the fast holder failed",
    )
    .await;
    let fast_rate = rates
        .rate(&fast.peer_id)
        .expect("the fast holder was measured");
    assert!(
        fast_rate > 4.0 * slow_rate,
        "loopback measured at {fast_rate} B/s, the 8 Mbit/s link at {slow_rate} B/s"
    );
    let shared = model(3);
    hold(&fast, &shared);
    hold(&slow, &shared);
    let fetched = pull(
        &client,
        &shared,
        &[slow.peer_id, fast.peer_id],
        &budgets,
        &rates,
        "fetch from both holders failed",
    )
    .await;
    let expected = murmur_protocol::assemble(
        &shared.manifest,
        &shared
            .chunks
            .iter()
            .map(|c| c.data.clone())
            .collect::<Vec<_>>(),
    )
    .unwrap();
    assert_eq!(
        fetched.params, expected,
        "the model arrived whole and exact"
    );
    assert_eq!(
        fetched.sources.get(&slow.peer_id),
        None,
        "the slow holder was asked for nothing: {:?}",
        fetched.sources
    );
    assert_eq!(fetched.sources.get(&fast.peer_id), Some(&64));

    // A model only the slow holder has: the fast one, preferred, answers `NotHeld`, and the
    // chunks go to the slow one at once (it is skipped only while a faster holder could
    // still serve them).
    let only_slow = model(4);
    hold(&slow, &only_slow);
    let fetched = pull(
        &client,
        &only_slow,
        &[fast.peer_id, slow.peer_id],
        &budgets,
        &rates,
        "fetch of a model only the slow holder has failed",
    )
    .await;
    assert_eq!(fetched.sources.get(&slow.peer_id), Some(&64));
}
