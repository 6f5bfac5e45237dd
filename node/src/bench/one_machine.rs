//! The one-machine baseline as a user runs it: `murmur train` in a process of its own, its
//! whole CPU time (loading the data, training, evaluating after each epoch) read from the
//! kernel, as each peer's process is counted. `murmur bench converge` puts it beside the
//! in-process baseline (training steps only) for a speedup that counts both sides alike.
//!
//! It owns those child processes; it must not touch the in-process runs or the testnet (a
//! child's CPU time is read as the growth of this process's waited-for children, so nothing
//! else may exit meanwhile).

use crate::cpu;
use crate::data::DatasetName;
use crate::model::ModelKind;
use anyhow::Context;
use serde::Serialize;
use std::path::Path;
use std::process::{Command, Stdio};

/// Runs of each epoch count; the one with the least CPU counts (the machine is shared).
pub const RUNS: usize = 2;

/// One `murmur train` process.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProcessRun {
    /// Epochs, with cosine decay from `lr` to 0 over them (`murmur train`'s schedule).
    pub epochs: usize,
    pub lr: f64,
    /// Test accuracy after the last epoch.
    pub accuracy: f32,
    /// Training samples (epochs × the training split).
    pub samples: u64,
    /// User + system CPU seconds of the whole process.
    pub cpu_seconds: f64,
}

/// What every run trains.
#[derive(Debug, Clone, Copy)]
pub struct Setup<'a> {
    pub dataset: DatasetName,
    pub data_dir: Option<&'a Path>,
    pub model: &'a ModelKind,
    pub lr: f64,
}

/// The accuracy and training samples of `murmur train --json`'s report: the last line of
/// `stdout` that parses.
fn parse_report(stdout: &str, epochs: usize) -> anyhow::Result<(f32, u64)> {
    let report: serde_json::Value = stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .context("no JSON report on murmur train's stdout")?;
    let accuracy = report
        .get("accuracy")
        .and_then(serde_json::Value::as_f64)
        .context("the report has no accuracy")?;
    let per_epoch = report
        .get("train_samples")
        .and_then(serde_json::Value::as_u64)
        .context("the report has no train_samples")?;
    Ok((accuracy as f32, per_epoch.saturating_mul(epochs as u64)))
}

/// One `murmur train --epochs E --schedule cosine --threads 1` process of this binary.
pub fn run_once(setup: Setup<'_>, epochs: usize) -> anyhow::Result<ProcessRun> {
    let exe = std::env::current_exe().context("finding the murmur binary")?;
    let mut cmd = Command::new(exe);
    cmd.arg("train")
        .args(["--dataset", &setup.dataset.to_string()])
        .args(["--model", &setup.model.to_string()])
        .args(["--epochs", &epochs.to_string()])
        .args(["--schedule", "cosine", "--lr", &setup.lr.to_string()])
        .args(["--threads", "1", "--json"])
        .stdin(Stdio::null())
        .stderr(Stdio::null());
    if let Some(dir) = setup.data_dir {
        cmd.arg("--data-dir").arg(dir);
    }
    let before = cpu::children_time().context("reading the children's CPU time")?;
    let out = cmd.output().context("running murmur train")?;
    let after = cpu::children_time().context("reading the children's CPU time")?;
    anyhow::ensure!(out.status.success(), "murmur train failed: {}", out.status);
    let (accuracy, samples) = parse_report(&String::from_utf8_lossy(&out.stdout), epochs)?;
    Ok(ProcessRun {
        epochs,
        lr: setup.lr,
        accuracy,
        samples,
        cpu_seconds: after.saturating_sub(before).as_secs_f64(),
    })
}

/// Of `epochs` (each run [`RUNS`] times), the run with the least CPU among those that end
/// at `target` or above; `None` if none does.
pub fn best(setup: Setup<'_>, epochs: &[usize], target: f32) -> anyhow::Result<Option<ProcessRun>> {
    let mut best: Option<ProcessRun> = None;
    for &e in epochs {
        for _ in 0..RUNS {
            let run = run_once(setup, e.max(1))?;
            let better = best
                .as_ref()
                .is_none_or(|b| run.cpu_seconds < b.cpu_seconds);
            if run.accuracy >= target && better {
                best = Some(run);
            }
        }
    }
    Ok(best)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_is_the_last_json_line() {
        let out = "epoch 1/2 ...\n{\"accuracy\":0.5,\"train_samples\":10}\n\
                   {\"accuracy\":0.8521,\"train_samples\":60000,\"epochs\":2}\n";
        let (accuracy, samples) = parse_report(out, 2).unwrap();
        assert_eq!((accuracy, samples), (0.8521, 120_000));
        assert!(parse_report("no json here\n", 1).is_err());
        assert!(
            parse_report("{\"accuracy\":0.9}\n", 1).is_err(),
            "no train_samples"
        );
        assert!(
            parse_report("{\"train_samples\":5}\n", 1).is_err(),
            "no accuracy"
        );
    }

    /// A child that burns CPU shows up in the children's time once it is waited for.
    #[test]
    fn a_waited_for_child_counts() {
        let before = cpu::children_time().unwrap();
        let status = Command::new("sh")
            .args(["-c", "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done"])
            .status()
            .unwrap();
        assert!(status.success());
        let after = cpu::children_time().unwrap();
        assert!(after > before, "{before:?} -> {after:?}");
    }
}
