//! The `murmur` binary as a user runs it: help, a benchmark with `--json`, and clear errors.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{murmur, run_json};

#[test]
fn help_lists_the_commands_that_work() {
    let out = murmur().arg("--help").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for command in ["run", "init", "testnet", "train", "bench"] {
        assert!(
            text.contains(&format!("  {command} ")),
            "{command} missing from {text}"
        );
    }
}

#[test]
fn bench_chunking_prints_a_json_report() {
    let args = [
        "bench",
        "chunking",
        "--size-mb",
        "2",
        "--rounds",
        "2",
        "--chunk-size",
        "65536",
    ];
    let (report, _) = run_json(args.iter().chain(&["--json"]));
    assert_eq!(report["bytes"], 2_000_000);
    assert_eq!(report["chunks"], 31); // 2,000,000 / 65,536 rounded up
    assert!(report["ratio"].as_f64().unwrap() > 0.0);
}

#[test]
fn a_bad_rust_log_is_a_clear_error() {
    let out = murmur()
        .env("RUST_LOG", "murmur=notalevel[")
        .arg("bench")
        .arg("chunking")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("RUST_LOG"), "{err}");
}

#[test]
fn testnet_runs_peers_and_prints_a_json_summary() {
    let dir = tempfile::tempdir().unwrap();
    let (summary, err) = run_json([
        "testnet",
        "--peers",
        "3",
        "--until-accuracy",
        "0.9",
        "--duration",
        "90",
        "--json",
        "--dir",
        dir.path().to_str().unwrap(),
    ]);
    let peers = summary["peers"].as_array().unwrap();
    assert_eq!(peers.len(), 3, "{summary}");
    for key in [
        "peer_id",
        "accuracy",
        "loss",
        "version",
        "merges",
        "bytes_sent",
        "bytes_received",
        "chunks_fetched",
        "chunks_reused",
    ] {
        assert!(
            peers.iter().all(|p| p.get(key).is_some()),
            "missing {key}: {summary}"
        );
    }
    for key in [
        "mean_accuracy",
        "min_accuracy",
        "consensus_distance",
        "seconds",
    ] {
        assert!(summary.get(key).is_some(), "missing {key}: {summary}");
    }
    assert!(
        summary["min_accuracy"].as_f64().unwrap() >= 0.9,
        "{summary}"
    );
    assert!(
        peers.iter().all(|p| p["merges"].as_u64().unwrap() > 0),
        "{summary}"
    );
    // The peers' configs and logs stay in the directory, and every peer process has exited.
    assert!(dir.path().join("peer0.toml").exists() && dir.path().join("peer2.log").exists());
    assert!(err.contains("dashboard: http://127.0.0.1:"), "{err}");
}

/// A dataset the peers could not load is reported, with the fix, before any peer starts (no
/// peer directory is written), for `testnet` and the benchmarks that run one.
#[test]
fn a_testnet_dataset_that_cannot_load_is_reported_before_any_peer_starts() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-dir");
    let cases: [&[&str]; 3] = [
        &["testnet", "--dataset", "mnist", "--duration", "5"],
        &[
            "testnet",
            "--dataset",
            "fashion-mnist",
            "--duration",
            "5",
            "--data-dir",
            missing.to_str().unwrap(),
        ],
        &["bench", "hostile", "--dataset", "mnist", "--duration", "5"],
    ];
    for (i, args) in cases.into_iter().enumerate() {
        let run_dir = dir.path().join(format!("run{i}"));
        let out = murmur()
            .args(args)
            .arg("--dir")
            .arg(&run_dir)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8(out.stderr).unwrap();
        assert!(err.contains("--data-dir"), "{args:?}: no fix in {err}");
        assert!(
            !err.contains("exited; see"),
            "{args:?}: a peer started: {err}"
        );
        assert!(
            !run_dir.join("peer0").exists(),
            "{args:?}: a peer was set up: {err}"
        );
    }
}
