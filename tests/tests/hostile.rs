//! Hostile peers in process: a late joiner in a network with a `version-max` peer (which
//! claims `version = u64::MAX` and serves a sign-flipped model, in bursts) adopts an honest
//! model, and the hostile peer ends up charged and blocked by the honest ones. The attack
//! matrix with real peer processes is `node/tests/hostile.rs` (`murmur bench hostile`).

use murmur_node::hostile::Hostile;
use murmur_tests::{dial_addr, options, start, wait_for};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_joiner_next_to_a_version_max_peer_adopts_an_honest_model() {
    let dirs: Vec<_> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
    let first = start(options(dirs[0].path(), "vmax", 0, 4, vec![])).await;
    let s0 = wait_for(&first, "first listening", Duration::from_secs(30), |s| {
        !s.listen_addrs.is_empty()
    })
    .await;
    let second = start(options(dirs[1].path(), "vmax", 1, 4, vec![dial_addr(&s0)])).await;
    let mut hostile_opts = options(dirs[2].path(), "vmax", 2, 4, vec![dial_addr(&s0)]);
    hostile_opts.hostile = Some(Hostile::VersionMax);
    let hostile = start(hostile_opts).await;
    let hostile_id = hostile.peer_id.to_string();
    for n in [&first, &second] {
        wait_for(n, "honest peers trained", Duration::from_secs(90), |s| {
            s.version >= 5 && s.accuracy >= 0.85
        })
        .await;
    }
    let late = start(options(dirs[3].path(), "vmax", 3, 4, vec![dial_addr(&s0)])).await;
    let s = wait_for(&late, "late joiner adopted", Duration::from_secs(90), |s| {
        s.adoption.is_some() && s.accuracy >= 0.85
    })
    .await;
    let adopt = s.adoption.as_ref().expect("waited for it");
    assert_eq!(adopt.outcome, "adopted", "{adopt:?}");
    assert_ne!(
        adopt.models[0].peer_id, hostile_id,
        "adopted the version-max peer's model: {s:#?}"
    );
    // Every honest peer refuses the sign-flipped model when it picks it, and blocks its peer
    // once the charges reach the error budget.
    for n in [&first, &second] {
        let s = wait_for(
            n,
            "hostile peer blocked and disconnected",
            Duration::from_secs(90),
            |s| s.blocked.contains(&hostile_id) && !s.connected.contains(&hostile_id),
        )
        .await;
        assert!(s.counters.merges_rejected >= 1, "{:?}", s.counters);
        assert!(s.accuracy >= 0.85, "honest accuracy {}", s.accuracy);
    }
    for n in [late, hostile, second, first] {
        n.shutdown().await;
    }
}
