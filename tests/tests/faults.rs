//! Faults, with real nodes: a peer serving corrupted chunks, a node stopped and restarted
//! from its checkpoint, and a late joiner.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use murmur_node::averaging::fetch::{self, ErrorBudgets, FetchLimits, Rates};
use murmur_node::store::ChunkStore;
use murmur_protocol::ManifestId;
use murmur_tests::{dial_addr, options, start, wait_for};
use std::time::Duration;

const LIMITS: FetchLimits = FetchLimits {
    per_peer_inflight: 4,
    deadline: Duration::from_secs(20),
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupted_chunks_are_caught_charged_and_fetched_from_another_holder() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let honest = start(options(dirs[0].path(), "corrupt", 0, 3, vec![])).await;
    let s0 = wait_for(&honest, "honest listening", Duration::from_secs(30), |s| {
        !s.listen_addrs.is_empty()
    })
    .await;
    let mut bad_opts = options(dirs[1].path(), "corrupt", 1, 3, vec![dial_addr(&s0)]);
    bad_opts.network.corrupt_served_chunks = true;
    let bad = start(bad_opts).await;
    let client = start(options(
        dirs[2].path(),
        "corrupt",
        2,
        3,
        vec![dial_addr(&s0)],
    ))
    .await;

    // The bad peer's current model; the honest peer holds a copy too (as if it had fetched it).
    let sb = wait_for(
        &bad,
        "bad peer's first model",
        Duration::from_secs(30),
        |s| s.version >= 1,
    )
    .await;
    let id: ManifestId = sb.manifest.parse().unwrap();
    let (manifest, bytes) = bad.store.manifest(&id).expect("bad peer holds its model");
    let original = bad.store.assemble(&id).unwrap();
    honest.store.insert_manifest(id, manifest.clone(), bytes);
    for chunk in &manifest.chunks {
        honest
            .store
            .insert_chunk(*chunk, bad.store.chunk(chunk).unwrap())
            .unwrap();
    }
    wait_for(
        &client,
        "client connected to both",
        Duration::from_secs(30),
        |s| s.peers.len() == 2,
    )
    .await;

    // Ask the bad peer first: every chunk it sends fails verification, is charged to it, and
    // is fetched again from the honest holder.
    let mut budgets = ErrorBudgets::new(100);
    let layout = layout_of(&honest.store, &id);
    let (fetched, ledger) = fetch::fetch(
        &client.client,
        &client.store,
        id,
        &[bad.peer_id, honest.peer_id],
        budgets.clone(),
        &Rates::default(),
        LIMITS,
        &layout,
    )
    .await;
    let fetched = fetched.unwrap_or_else(|e| panic!("fetch failed: {e}"));
    // What the fetch charged and forgave, as the averaging core applies it.
    budgets.settle(&ledger);
    assert_eq!(
        fetched.params, original,
        "the fetched model is exactly the original"
    );
    assert_eq!(
        fetched.sources.keys().collect::<Vec<_>>(),
        vec![&honest.peer_id],
        "every chunk that was kept came from the honest holder"
    );
    let charged: u32 = budgets
        .snapshot()
        .iter()
        .filter(|(p, _)| *p == bad.peer_id)
        .map(|(_, n)| *n)
        .sum();
    assert!(
        charged >= 1,
        "the bad peer was charged: {:?}",
        budgets.snapshot()
    );
    assert!(
        budgets
            .snapshot()
            .iter()
            .all(|(p, n)| *p == bad.peer_id || *n == 0)
    );

    // In the running network, fetches from the bad peer fail and nothing corrupt is merged:
    // the honest peers keep learning.
    let s = wait_for(
        &client,
        "client learning despite the bad peer",
        Duration::from_secs(60),
        |s| s.counters.fetch_failures >= 1 && s.accuracy >= 0.85,
    )
    .await;
    assert!(s.counters.merges_rejected == 0, "{:?}", s.counters);
    for n in [client, bad, honest] {
        n.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_resumes_from_its_checkpoint_and_catches_up() {
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let other = start(options(dirs[0].path(), "restart", 0, 2, vec![])).await;
    let so = wait_for(&other, "other listening", Duration::from_secs(30), |s| {
        !s.listen_addrs.is_empty()
    })
    .await;
    let opts = options(dirs[1].path(), "restart", 1, 2, vec![dial_addr(&so)]);
    let node = start(opts.clone()).await;
    let before = wait_for(&node, "a few merged rounds", Duration::from_secs(60), |s| {
        s.version >= 5 && s.counters.merges >= 1 && s.accuracy >= 0.8
    })
    .await;
    node.shutdown().await;

    let node = start(opts).await;
    let after = wait_for(
        &node,
        "first round after restart",
        Duration::from_secs(30),
        |s| s.manifest.len() == 64,
    )
    .await;
    assert_eq!(after.peer_id, before.peer_id, "same identity");
    assert!(after.resumed, "resumed from the checkpoint");
    assert!(
        after.version > before.version,
        "version continues: {} then {}",
        before.version,
        after.version
    );
    // Resumed weights, not a fresh model: the first round after restart is already good.
    assert!(
        after.accuracy >= 0.8,
        "accuracy right after restart {}",
        after.accuracy
    );
    wait_for(&node, "merging again", Duration::from_secs(30), |s| {
        s.counters.merges >= 1
    })
    .await;
    node.shutdown().await;
    other.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_joiner_adopts_the_networks_model_and_catches_up() {
    let dirs: Vec<_> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
    let first = start(options(dirs[0].path(), "late", 0, 4, vec![])).await;
    let s0 = wait_for(&first, "first listening", Duration::from_secs(30), |s| {
        !s.listen_addrs.is_empty()
    })
    .await;
    let mut nodes = vec![first];
    for (i, dir) in dirs.iter().enumerate().take(3).skip(1) {
        nodes.push(start(options(dir.path(), "late", i, 4, vec![dial_addr(&s0)])).await);
    }
    for n in &nodes {
        wait_for(n, "early peers trained", Duration::from_secs(60), |s| {
            s.version >= 5 && s.accuracy >= 0.85
        })
        .await;
    }
    let late = start(options(dirs[3].path(), "late", 3, 4, vec![dial_addr(&s0)])).await;
    let s = wait_for(
        &late,
        "late joiner caught up",
        Duration::from_secs(60),
        |s| s.counters.merges >= 2 && s.accuracy >= 0.85 && s.peers.len() == 3,
    )
    .await;
    assert!(!s.resumed);
    assert!(s.counters.chunks_fetched > 0);
    let adopt = s
        .adoption
        .as_ref()
        .unwrap_or_else(|| panic!("the late joiner adopted nothing: {s:#?}"));
    assert_eq!(adopt.kind, "adopt");
    assert_eq!(adopt.outcome, "adopted", "{adopt:?}");
    assert_eq!(adopt.models.len(), 1, "{adopt:?}");
    let model = &adopt.models[0];
    assert!(
        model.chunks_fetched >= 2 && model.error.is_none(),
        "{adopt:?}"
    );
    assert_eq!(
        model.sources.values().sum::<u64>(),
        model.chunks_fetched,
        "every fetched chunk has its source: {adopt:?}"
    );

    // Catching up from several holders at once: once a second early peer holds the first
    // one's model, a fetch by the late joiner takes chunks from both of them in parallel.
    let s0 = nodes[0].snapshot();
    let id: ManifestId = s0.manifest.parse().unwrap();
    let budgets = ErrorBudgets::new(5);
    let layout = layout_of(&nodes[0].store, &id);
    let copy = fetch::fetch(
        &nodes[1].client,
        &nodes[1].store,
        id,
        &[nodes[0].peer_id],
        budgets.clone(),
        &Rates::default(),
        LIMITS,
        &layout,
    )
    .await
    .0
    .unwrap_or_else(|e| panic!("second holder's fetch: {e}"));
    let chunks = copy.chunks_fetched + copy.chunks_reused;
    assert!(chunks >= 2, "the model spans several chunks ({chunks})");
    // Into an empty store (the late joiner may hold this model already from a merge).
    let empty = ChunkStore::new(64 << 20);
    let fetched = fetch::fetch(
        &late.client,
        &empty,
        id,
        &[nodes[0].peer_id, nodes[1].peer_id],
        budgets.clone(),
        &Rates::default(),
        FetchLimits {
            per_peer_inflight: 1,
            ..LIMITS
        },
        &layout,
    )
    .await
    .0
    .unwrap_or_else(|e| panic!("late joiner's fetch: {e}"));
    assert_eq!(fetched.params, copy.params);
    assert_eq!(
        fetched.sources.len(),
        2,
        "chunks came from both holders: {:?}",
        fetched.sources
    );
    late.shutdown().await;
    for n in nodes {
        n.shutdown().await;
    }
}

/// The layout of model `id` as `store` holds it (every test node trains the same model).
fn layout_of(store: &murmur_node::store::ChunkStore, id: &ManifestId) -> murmur_protocol::Layout {
    let (manifest, _) = store.manifest(id).expect("the holder has the manifest");
    manifest.validate().expect("a valid manifest")
}
