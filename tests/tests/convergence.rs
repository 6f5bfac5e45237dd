//! Five real nodes on the digits, split non-IID (Dirichlet 0.5 label skew): with no
//! coordinator they converge to one good model: mean accuracy >= 90 %, every peer within 3
//! points of the mean, and the consensus distance falls at least tenfold from its peak. And
//! sample-efficiently: the most samples any peer trained on until every peer is at 90 % at
//! once is measured against one model trained on all the data (the parallel speedup counted
//! in samples) and must stay far below what the averaging of 51353fd needed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use murmur_node::data::{self, DatasetName, Partition};
use murmur_node::train::{TrainConfig, Trainer};
use murmur_tests::{dial_addr, options, start, wait_for};
use std::time::{Duration, Instant};

/// The target accuracy of the test.
const TARGET: f32 = 0.90;

/// Samples one model trained on all of the digits (batch 50, the peers' optimizer and
/// learning rate, no logit adjustment: the data is balanced) needs to reach `target`,
/// evaluated after every step; the median of three seeds.
fn centralized_samples(train: &TrainConfig, target: f32) -> u64 {
    let ds = data::load(DatasetName::Digits, None).unwrap();
    let mut runs: Vec<u64> = (1..=3)
        .map(|seed| {
            let cfg = TrainConfig {
                seed,
                balance_classes: false,
                holdout: 0,
                ..train.clone()
            };
            let mut t = Trainer::new(
                &cfg,
                ds.shape,
                ds.classes,
                ds.train.clone(),
                ds.test.clone(),
            )
            .unwrap();
            while t.evaluate().unwrap().accuracy < target {
                assert!(
                    t.samples_seen() < 1_000_000,
                    "centralized never reached {target}"
                );
                t.step().unwrap();
            }
            t.samples_seen()
        })
        .collect();
    runs.sort_unstable();
    runs[1]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_non_iid_nodes_converge() {
    const PEERS: usize = 5;
    let dirs: Vec<_> = (0..PEERS).map(|_| tempfile::tempdir().unwrap()).collect();
    let opts = |i: usize, bootstrap| {
        let mut o = options(dirs[i].path(), "converge", i, PEERS, bootstrap);
        o.partition = Partition::Dirichlet { alpha: 0.5 };
        o
    };
    let first = start(opts(0, vec![])).await;
    let s0 = wait_for(&first, "peer 0 listening", Duration::from_secs(30), |s| {
        !s.listen_addrs.is_empty()
    })
    .await;
    let mut nodes = vec![first];
    for i in 1..PEERS {
        nodes.push(start(opts(i, vec![dial_addr(&s0)])).await);
    }

    let deadline = Instant::now() + Duration::from_secs(180);
    let mut all_at_target = None;
    let mut peak = 0f64;
    let mut history = Vec::new();
    loop {
        let statuses: Vec<_> = nodes.iter().map(|n| n.snapshot()).collect();
        let accs: Vec<f32> = statuses.iter().map(|s| s.accuracy).collect();
        let mean = accs.iter().sum::<f32>() / PEERS as f32;
        let spread = accs.iter().map(|a| (a - mean).abs()).fold(0f32, f32::max);
        // Every node's view of the whole network must agree on who is in it.
        let full_view = statuses.iter().all(|s| s.peers.len() == PEERS - 1);
        let distance = statuses[0].consensus_distance.filter(|_| full_view);
        if let Some(d) = distance {
            peak = peak.max(d);
            history.push(d);
        }
        let converged = mean >= TARGET
            && spread <= 0.03
            && distance.is_some_and(|d| peak > 0.0 && d <= peak / 10.0);
        if accs.iter().all(|&a| a >= TARGET) && all_at_target.is_none() {
            // The samples behind each reported accuracy, when all are at the target at once.
            all_at_target = statuses.iter().map(|s| s.eval_samples).max();
        }
        if converged && all_at_target.is_some() {
            eprintln!(
                "converged: accuracies {accs:?}, consensus distance {distance:?} (peak {peak})"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no convergence in time: accuracies {accs:?} (mean {mean}, spread {spread}), distance {distance:?}, peak {peak}, full view {full_view}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for n in &nodes {
        let s = n.snapshot();
        assert!(s.counters.merges > 0, "{} never merged", s.peer_id);
    }
    let peer_samples = all_at_target.expect("every peer reached the target");
    let central = centralized_samples(&opts(0, vec![]).train, TARGET);
    let speedup = central as f64 / peer_samples as f64;
    eprintln!(
        "samples to {TARGET}: centralized {central}, most of any peer {peer_samples}: parallel \
         speedup {speedup:.2}"
    );
    // Before the merge wait and fresh partners, a peer needed 59,000 to 69,000 samples here
    // (speedup 0.03-0.04, measured at commit 51353fd's settings); before the same-round
    // exchange the bound was 25,000.
    assert!(
        peer_samples <= 12_500 && speedup >= 0.1,
        "a peer needed {peer_samples} samples (centralized {central}): speedup {speedup:.2}"
    );
    let _ = wait_for(&nodes[0], "counters", Duration::from_secs(1), |_| true).await;
    for n in nodes {
        n.shutdown().await;
    }
}
