//! `murmur bench converge`: time to a target test accuracy, centralized against the gossip
//! network, on the same machine in one run. First one model is trained on all the data (the
//! centralized baseline, every core); then `murmur testnet` runs N peer processes on the
//! same cores, each on its shard, until every peer reaches the target. Both clocks include
//! their evaluations; the network's also includes starting its processes.

use crate::data::{self, DatasetName, Partition};
use crate::model::ModelKind;
use crate::testnet::{self, TestnetArgs};
use crate::train::{TrainConfig, Trainer};
use anyhow::Context;
use serde::Serialize;
use std::time::Instant;

/// Arguments of `murmur bench converge`.
#[derive(Debug, Clone, clap::Args)]
pub struct ConvergeArgs {
    #[arg(long, default_value_t = 8)]
    pub peers: usize,
    #[arg(long, default_value = "fashion-mnist")]
    pub dataset: DatasetName,
    #[arg(long, default_value = "mlp")]
    pub model: ModelKind,
    #[arg(long, default_value = "dirichlet:0.5")]
    pub partition: Partition,
    /// Target test accuracy (0..1).
    #[arg(long, default_value_t = 0.85)]
    pub target: f32,
    /// Give up after this many seconds (each side).
    #[arg(long, default_value_t = 900.0)]
    pub timeout: f64,
    /// Print the report as one JSON line on stdout.
    #[arg(long)]
    pub json: bool,
    /// The peers' settings (the centralized baseline keeps `murmur train`'s defaults).
    #[command(flatten)]
    pub tuning: testnet::Tuning,
}

/// What the benchmark measured.
#[derive(Debug, Clone, Serialize)]
pub struct ConvergeReport {
    pub target: f32,
    pub centralized_seconds: f64,
    pub centralized_accuracy: f32,
    /// Until every peer reports the target at the same time.
    pub network_seconds: f64,
    /// Until every peer has reported the target at least once.
    pub network_each_reached_seconds: Option<f64>,
    pub network_mean_accuracy: f32,
    pub network_min_accuracy: f32,
    /// network time / centralized time.
    pub ratio: f64,
    /// Mean over peers of bytes sent plus received.
    pub bytes_per_peer: f64,
    /// Training samples per second, centralized and summed over the network's peers.
    pub centralized_samples_per_sec: f64,
    pub network_samples_per_sec: f64,
    pub peers: usize,
}

impl ConvergeReport {
    /// Prints the report: lines, or one JSON line.
    pub fn print(&self, json: bool) {
        if json {
            println!("{}", serde_json::to_string(self).unwrap_or_default());
            return;
        }
        println!("time to {:.1}% test accuracy", self.target * 100.0);
        println!(
            "  centralized          {:>8.1} s  (accuracy {:.4})",
            self.centralized_seconds, self.centralized_accuracy
        );
        println!(
            "  {} peers, gossip     {:>8.1} s  (mean {:.4}, min {:.4}, {:.1} MB per peer)",
            self.peers,
            self.network_seconds,
            self.network_mean_accuracy,
            self.network_min_accuracy,
            self.bytes_per_peer / 1e6
        );
        if let Some(each) = self.network_each_reached_seconds {
            println!("  every peer had reached it at least once after {each:.1} s");
        }
        println!(
            "  training throughput: centralized {:.0} samples/s, network {:.0} samples/s in all",
            self.centralized_samples_per_sec, self.network_samples_per_sec
        );
        println!("  ratio network / centralized {:.2}x", self.ratio);
    }
}

/// Trains centrally, evaluating every `eval_steps` steps, until `target` or `timeout`.
fn centralized(args: &ConvergeArgs) -> anyhow::Result<(f64, f32, f64)> {
    let ds = data::load(args.dataset, None).with_context(|| format!("loading {}", args.dataset))?;
    let started = Instant::now();
    let cfg = TrainConfig {
        model: args.model.clone(),
        ..TrainConfig::default()
    };
    let mut trainer = Trainer::new(&cfg, ds.shape, ds.classes, ds.train, ds.test)?;
    // Evaluate about ten times per epoch.
    let eval_steps = (trainer.steps_per_epoch() / 10).max(1);
    let bar = super::progress(0, "centralized");
    loop {
        for _ in 0..eval_steps {
            trainer.step()?;
        }
        let eval = trainer.evaluate()?;
        bar.set_message(format!("centralized: accuracy {:.4}", eval.accuracy));
        bar.tick();
        if eval.accuracy >= args.target || started.elapsed().as_secs_f64() > args.timeout {
            bar.finish_and_clear();
            let secs = started.elapsed().as_secs_f64();
            return Ok((secs, eval.accuracy, trainer.samples_seen() as f64 / secs));
        }
    }
}

/// Runs the benchmark.
pub async fn run(args: &ConvergeArgs) -> anyhow::Result<ConvergeReport> {
    let cargs = args.clone();
    let (centralized_seconds, centralized_accuracy, centralized_samples_per_sec) =
        tokio::task::spawn_blocking(move || centralized(&cargs)).await??;
    let summary = testnet::run(&TestnetArgs {
        peers: args.peers,
        dataset: args.dataset,
        model: args.model.clone(),
        partition: args.partition,
        duration: Some(args.timeout),
        until_accuracy: Some(args.target),
        dir: None,
        json: false,
        tuning: args.tuning.clone(),
    })
    .await?;
    let bytes: f64 = summary
        .peers
        .iter()
        .map(|p| (p.bytes_sent + p.bytes_received) as f64)
        .sum::<f64>()
        / summary.peers.len().max(1) as f64;
    let samples: u64 = summary.peers.iter().map(|p| p.samples).sum();
    Ok(ConvergeReport {
        target: args.target,
        centralized_seconds,
        centralized_accuracy,
        network_seconds: summary.seconds,
        network_each_reached_seconds: summary.each_reached_secs,
        centralized_samples_per_sec,
        network_samples_per_sec: samples as f64 / summary.seconds.max(1e-9),
        network_mean_accuracy: summary.mean_accuracy,
        network_min_accuracy: summary.min_accuracy,
        ratio: summary.seconds / centralized_seconds.max(1e-9),
        bytes_per_peer: bytes,
        peers: args.peers,
    })
}
