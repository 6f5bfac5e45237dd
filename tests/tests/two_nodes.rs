//! Two real nodes over loopback TCP: the second pulls the first's model chunk by chunk, every
//! chunk verified, and both converge.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use murmur_node::averaging::fetch::{self, ErrorBudgets, FetchLimits, Rates};
use murmur_node::store::ChunkStore;
use murmur_protocol::ManifestId;
use murmur_tests::{dial_addr, options, start, wait_for};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_pulls_another_nodes_model_verified_chunk_by_chunk() {
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let a = start(options(dirs[0].path(), "two-nodes", 0, 2, vec![])).await;
    let sa = wait_for(&a, "a's first round", Duration::from_secs(30), |s| {
        !s.listen_addrs.is_empty() && s.version >= 1
    })
    .await;
    let b = start(options(
        dirs[1].path(),
        "two-nodes",
        1,
        2,
        vec![dial_addr(&sa)],
    ))
    .await;

    // b hears a's announcements over gossip and merges a's model.
    let sb = wait_for(&b, "b merging a's model", Duration::from_secs(60), |s| {
        s.counters.merges >= 1 && s.counters.chunks_fetched > 0
    })
    .await;
    assert!(
        sb.peers.iter().any(|p| p.peer_id == sa.peer_id),
        "b knows a: {sb:#?}"
    );

    // Pull a's current model explicitly and compare with what a holds, value for value.
    let sa = a.snapshot();
    let id: ManifestId = sa.manifest.parse().unwrap();
    let layout = a
        .store
        .manifest(&id)
        .expect("a holds its model")
        .0
        .validate()
        .expect("a valid manifest");
    let fetched = murmur_tests::pull(&b, a.peer_id, id, &layout)
        .await
        .unwrap_or_else(|e| panic!("fetch failed: {e}"));
    let original = match a.store.assemble(&id) {
        Ok(p) => p,
        // a moved on and evicted that model between the two reads: compare with a fresh one.
        Err(e) => panic!("a no longer holds {id}: {e}"),
    };
    assert_eq!(fetched.params, original);
    assert_eq!(
        fetched.chunks_fetched + fetched.chunks_reused,
        b.store.manifest(&id).unwrap().0.chunks.len()
    );

    // A model of another shape is refused on its manifest (before any chunk is fetched:
    // `fetch::state::tests`), and its server is charged as for a refused model.
    let mut other = layout.tensors().to_vec();
    other.push(murmur_protocol::tensor::TensorSpec::f32("zz.extra", &[16]));
    let other = murmur_protocol::Layout::new(other).unwrap();
    let mut budgets = ErrorBudgets::new(100);
    let (refused, ledger) = fetch::fetch(
        &b.client,
        &ChunkStore::new(64 << 20),
        id,
        &[a.peer_id],
        budgets.clone(),
        &Rates::default(),
        FetchLimits {
            per_peer_inflight: 4,
            deadline: Duration::from_secs(20),
        },
        &other,
    )
    .await;
    assert!(
        matches!(refused, Err(fetch::FetchError::Layout { .. })),
        "{refused:?}"
    );
    budgets.settle(&ledger);
    assert_eq!(
        budgets.snapshot(),
        vec![(a.peer_id, fetch::LAYOUT_CHARGES)],
        "the server is charged"
    );

    // Both sides counted real traffic.
    let sa = wait_for(&a, "a's counters", Duration::from_secs(10), |s| {
        s.counters.bytes_sent > 0
    })
    .await;
    assert!(sa.counters.bytes_sent > 0);
    b.shutdown().await;
    a.shutdown().await;
}
