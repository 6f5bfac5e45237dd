//! The `murmur` binary as a user runs it: help, a benchmark with `--json`, and clear errors.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

fn murmur() -> Command {
    Command::new(env!("CARGO_BIN_EXE_murmur"))
}

#[test]
fn help_lists_the_commands_that_work() {
    let out = murmur().arg("--help").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("bench"), "{text}");
}

#[test]
fn bench_chunking_prints_a_json_report() {
    let out = murmur()
        .args([
            "bench",
            "chunking",
            "--size-mb",
            "2",
            "--rounds",
            "2",
            "--chunk-size",
            "65536",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let last = stdout.lines().last().unwrap();
    let report: serde_json::Value = serde_json::from_str(last).unwrap();
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
