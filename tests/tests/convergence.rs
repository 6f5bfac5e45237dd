//! Five real nodes on the digits, split non-IID (Dirichlet 0.5 label skew): with no
//! coordinator they converge to one good model: mean accuracy >= 90 %, every peer within 3
//! points of the mean, and the consensus distance falls at least tenfold from its peak.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use murmur_node::data::Partition;
use murmur_tests::{dial_addr, options, start, wait_for};
use std::time::{Duration, Instant};

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
        let converged = mean >= 0.90
            && spread <= 0.03
            && distance.is_some_and(|d| peak > 0.0 && d <= peak / 10.0);
        if converged {
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
    let _ = wait_for(&nodes[0], "counters", Duration::from_secs(1), |_| true).await;
    for n in nodes {
        n.shutdown().await;
    }
}
