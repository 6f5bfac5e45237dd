//! `murmur bench hostile`: the attack matrix. One all-honest testnet, then for each hostile
//! behaviour the same testnet with the last `--hostile` peers playing it, once with the
//! peers' default defences and once with the plain mean (no acceptance check, no robust
//! rule), one run after the other. Each run lasts the same fixed time. Reported per run,
//! over the honest peers: final accuracy (mean and worst) and loss (worst), the accuracy of
//! their checkpoints read back from disk, their merges against the all-honest run's, models
//! refused, rollbacks, and how many honest-hostile pairs are still connected at the end.

use crate::averaging::robust::Aggregation;
use crate::data::{self, DatasetName, Partition};
use crate::hostile::Hostile;
use crate::model::ModelKind;
use crate::store::checkpoint;
use crate::testnet::{self, HostileSpec, TestnetArgs, TestnetSummary, Tuning};
use crate::train::Trainer;
use anyhow::Context;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// Arguments of `murmur bench hostile`.
#[derive(Debug, Clone, clap::Args)]
pub struct HostileArgs {
    #[arg(long, default_value_t = 8)]
    pub peers: usize,
    /// Hostile peers in each attacked run.
    #[arg(long, default_value_t = 2)]
    pub hostile: usize,
    #[arg(long, default_value = "digits")]
    pub dataset: DatasetName,
    /// Directory holding the dataset's IDX files, used to read the checkpoints back and passed to every peer (default for
    /// fashion-mnist: /usr/share/datasets/fashion-mnist; mnist has none). The dataset is
    /// loaded once before any peer starts, so a missing one is reported with the fix.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    #[arg(long, default_value = "mlp")]
    pub model: ModelKind,
    #[arg(long, default_value = "dirichlet:0.5")]
    pub partition: Partition,
    /// Seconds each run lasts.
    #[arg(long, default_value_t = 40.0)]
    pub duration: f64,
    /// Behaviours to run, comma-separated (default: all of them).
    #[arg(long, value_delimiter = ',')]
    pub behaviours: Vec<Hostile>,
    /// Skip the plain-mean runs (only the default defences).
    #[arg(long)]
    pub no_plain_mean: bool,
    /// Directory for the runs (default: a new one under the system temp dir); kept.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub tuning: Tuning,
}

/// One run of the matrix, over its honest peers.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// `none` for the all-honest run.
    pub behaviour: String,
    /// `default` (the peers' default defences) or `mean` (plain mean, no check: aggregation
    /// `mean`, `accept_loss_ratio` and `max_distance` 0).
    pub rule: String,
    pub mean_accuracy: f32,
    pub min_accuracy: f32,
    pub max_loss: f32,
    /// The worst accuracy of an honest peer's checkpoint, read back from disk.
    pub min_checkpoint_accuracy: f32,
    /// Mean merges per honest peer over this run's merges in the all-honest run.
    pub pace: Option<f64>,
    pub merges_rejected: u64,
    pub rollbacks: u64,
    /// Honest-hostile pairs still connected at the end, of all such pairs.
    pub hostile_links: (usize, usize),
    /// Honest peers whose training had stopped (none ever should).
    pub stopped: usize,
    pub seconds: f64,
}

/// The matrix.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub rows: Vec<Row>,
    pub dir: PathBuf,
}

/// Runs the matrix.
pub async fn run(args: &HostileArgs) -> anyhow::Result<Report> {
    anyhow::ensure!(
        args.hostile < args.peers,
        "--hostile must leave at least one honest peer"
    );
    let dir = match &args.dir {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!("murmur-hostile-{}", std::process::id())),
    };
    let behaviours = if args.behaviours.is_empty() {
        Hostile::ALL.to_vec()
    } else {
        args.behaviours.clone()
    };
    let dataset =
        data::load(args.dataset, args.data_dir.as_deref()).context("loading the dataset")?;
    let mut runs: Vec<(Option<Hostile>, bool)> = vec![(None, false)];
    for h in &behaviours {
        runs.push((Some(*h), false));
        if !args.no_plain_mean {
            runs.push((Some(*h), true));
        }
    }
    let mut rows: Vec<Row> = Vec::new();
    let mut honest_merges = None;
    for (i, (behaviour, plain)) in runs.into_iter().enumerate() {
        let name = behaviour.map_or("none".to_string(), |h| h.to_string());
        let rule = if plain { "mean" } else { "default" };
        eprintln!("run {}: hostile {name}, rule {rule}", i + 1);
        let mut tuning = args.tuning.clone();
        if plain {
            tuning.aggregation = Some(Aggregation::Mean);
            tuning.accept_loss_ratio = Some(0.0);
            tuning.max_distance = Some(0.0);
        }
        let run_dir = dir.join(format!("run{}-{}-{rule}", i + 1, name.replace(':', "")));
        let summary = testnet::run(&TestnetArgs {
            peers: args.peers,
            dataset: args.dataset,
            data_dir: args.data_dir.clone(),
            model: args.model.clone(),
            partition: args.partition,
            duration: Some(args.duration),
            until_accuracy: None,
            target_accuracy: None,
            until_samples: None,
            dir: Some(run_dir.clone()),
            json: false,
            hostile: behaviour.map(|behaviour| HostileSpec {
                count: args.hostile,
                behaviour,
            }),
            tuning,
        })
        .await?;
        let merges = mean_merges(&summary);
        if behaviour.is_none() {
            honest_merges = Some(merges);
        }
        let min_checkpoint_accuracy = checkpoint_accuracy(&summary, &run_dir, args, &dataset)?;
        rows.push(row(
            &summary,
            name,
            rule,
            honest_merges,
            min_checkpoint_accuracy,
            args.peers,
        ));
    }
    Ok(Report { rows, dir })
}

fn mean_merges(s: &TestnetSummary) -> f64 {
    let honest: Vec<u64> = s
        .peers
        .iter()
        .filter(|p| p.hostile.is_none())
        .map(|p| p.merges)
        .collect();
    honest.iter().sum::<u64>() as f64 / honest.len().max(1) as f64
}

fn row(
    s: &TestnetSummary,
    behaviour: String,
    rule: &str,
    honest_merges: Option<f64>,
    min_checkpoint_accuracy: f32,
    peers: usize,
) -> Row {
    let honest: Vec<_> = s.peers.iter().filter(|p| p.hostile.is_none()).collect();
    let hostile: Vec<&String> = s
        .peers
        .iter()
        .filter(|p| p.hostile.is_some())
        .map(|p| &p.peer_id)
        .collect();
    let linked = honest
        .iter()
        .map(|p| hostile.iter().filter(|h| p.connected.contains(h)).count())
        .sum();
    Row {
        behaviour,
        rule: rule.into(),
        mean_accuracy: s.mean_accuracy,
        min_accuracy: s.min_accuracy,
        max_loss: honest.iter().map(|p| p.loss).fold(0.0, f32::max),
        min_checkpoint_accuracy,
        pace: honest_merges
            .filter(|m| *m > 0.0)
            .map(|m| mean_merges(s) / m),
        merges_rejected: honest.iter().map(|p| p.merges_rejected).sum(),
        rollbacks: honest.iter().map(|p| p.rollbacks).sum(),
        hostile_links: (linked, honest.len() * hostile.len()),
        // A peer whose status could not be read at the end is missing from the summary.
        stopped: peers - hostile.len() - honest.len(),
        seconds: s.seconds,
    }
}

/// The worst test accuracy of the honest peers' checkpoints, each loaded from disk.
fn checkpoint_accuracy(
    s: &TestnetSummary,
    run_dir: &Path,
    args: &HostileArgs,
    dataset: &data::Dataset,
) -> anyhow::Result<f32> {
    let cfg = crate::train::TrainConfig {
        model: args.model.clone(),
        ..crate::train::TrainConfig::default()
    };
    let trainer = Trainer::new(
        &cfg,
        dataset.shape,
        dataset.classes,
        dataset.test.clone(),
        dataset.test.clone(),
    )?;
    let mut worst = f32::INFINITY;
    for (i, p) in s.peers.iter().enumerate() {
        if p.hostile.is_some() {
            continue;
        }
        let path = checkpoint::checkpoint_path(&run_dir.join(format!("peer{i}")));
        let accuracy = match checkpoint::load(&path)? {
            Some(ck) if trainer.import(&ck.params).is_ok() => trainer.evaluate()?.accuracy,
            // No checkpoint, or one that does not load into the model: as bad as it gets.
            _ => 0.0,
        };
        worst = worst.min(accuracy);
    }
    Ok(if worst.is_finite() { worst } else { 0.0 })
}

impl Report {
    /// Prints the matrix as a table, or one JSON line.
    pub fn print(&self, json: bool) {
        if json {
            println!("{}", serde_json::to_string(self).unwrap_or_default());
            return;
        }
        println!(
            "{:<14} {:<8} {:>9} {:>8} {:>9} {:>10} {:>6} {:>8} {:>9} {:>7}",
            "hostile",
            "rule",
            "mean acc",
            "min acc",
            "max loss",
            "ckpt acc",
            "pace",
            "refused",
            "rollbacks",
            "links"
        );
        for r in &self.rows {
            println!(
                "{:<14} {:<8} {:>9.4} {:>8.4} {:>9.3e} {:>10.4} {:>6} {:>8} {:>9} {:>7}",
                r.behaviour,
                r.rule,
                r.mean_accuracy,
                r.min_accuracy,
                r.max_loss,
                r.min_checkpoint_accuracy,
                r.pace.map_or("-".into(), |p| format!("{p:.2}")),
                r.merges_rejected,
                r.rollbacks,
                format!("{}/{}", r.hostile_links.0, r.hostile_links.1)
            );
        }
        println!("runs kept in {}", self.dir.display());
    }
}
