//! `murmur train`: trains one model centrally, or on one peer's shard, with a progress bar
//! per epoch and an evaluation after each. This is the centralized baseline the network is
//! measured against.

use super::optim::{OptimConfig, OptimizerKind, Schedule};
use super::{Evaluation, TrainConfig, Trainer};
use crate::data::{self, DatasetName, Partition, ShardSpec};
use crate::model::{ConvImpl, ModelKind};
use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Arguments of `murmur train`.
#[derive(Debug, Clone, clap::Args)]
pub struct TrainArgs {
    /// Dataset: `digits` (built in), `fashion-mnist` or `mnist` (IDX files).
    #[arg(long, default_value = "digits")]
    pub dataset: DatasetName,
    /// Directory holding the IDX files (default for fashion-mnist:
    /// /usr/share/datasets/fashion-mnist, from `apt-get install dataset-fashion-mnist`).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Model: `logreg`, `mlp` (200-200), `mlp:<h1>-<h2>...` or `cnn`.
    #[arg(long, default_value = "mlp")]
    pub model: ModelKind,
    /// Passes over the training data.
    #[arg(long, default_value_t = 10)]
    pub epochs: usize,
    /// How the training data is split among peers: `iid`, `dirichlet:<alpha>`, `shards:<k>`.
    #[arg(long, default_value = "iid")]
    pub partition: Partition,
    /// Train on shard `i` of `n` (0-based, e.g. `2/8`) instead of on all the data.
    #[arg(long)]
    pub shard: Option<ShardSpec>,
    /// Optimizer: `sgd` or `adamw`.
    #[arg(long, default_value = "sgd")]
    pub optimizer: OptimizerKind,
    /// Learning rate.
    #[arg(long, default_value_t = OptimConfig::default().lr)]
    pub lr: f64,
    /// Learning-rate schedule over the run: `cosine` (decay to zero) or `constant`.
    #[arg(long, default_value = "cosine")]
    pub schedule: Schedule,
    /// SGD momentum (0 for plain SGD).
    #[arg(long, default_value_t = OptimConfig::default().momentum)]
    pub momentum: f64,
    /// Weight decay.
    #[arg(long, default_value_t = 0.0)]
    pub weight_decay: f64,
    /// Examples per minibatch.
    #[arg(long, default_value_t = 50)]
    pub batch_size: usize,
    /// Seed for the initial weights, the partition and the batch order.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Compute threads (0 = one per core). Use 1 when several peers share a machine.
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// How the CNN computes convolutions: `im2col` (ours) or `candle` (candle's conv2d, for
    /// comparison; its max-pool gradient is scaled by 1/4, see docs/benchmarks.md).
    #[arg(long, value_enum, default_value_t = ConvImpl::Im2col, hide = true)]
    pub conv: ConvImpl,
    /// Print the result as one JSON line, last on stdout.
    #[arg(long)]
    pub json: bool,
}

/// The outcome of `murmur train`, as printed with `--json`.
#[derive(Debug, Clone, Serialize)]
pub struct TrainReport {
    pub dataset: String,
    pub model: String,
    pub partition: String,
    pub shard: Option<String>,
    pub epochs: usize,
    pub params: u64,
    pub train_samples: usize,
    pub accuracy: f32,
    pub loss: f32,
    /// Wall time of the whole run, evaluations included.
    pub seconds: f64,
    /// Wall time spent in training steps only.
    pub train_seconds: f64,
    /// Training examples per second of training-step time.
    pub samples_per_sec: f64,
    pub threads: usize,
    /// Test accuracy after each epoch.
    pub history: Vec<Evaluation>,
}

/// Runs `murmur train`.
pub fn run(args: &TrainArgs) -> anyhow::Result<TrainReport> {
    let started = Instant::now();
    let dataset = data::load(args.dataset, args.data_dir.as_deref())
        .with_context(|| format!("loading dataset {}", args.dataset))?;
    let train = match args.shard {
        None => dataset.train.clone(),
        Some(shard) => {
            let parts = data::partition(
                &dataset.train.labels,
                dataset.classes,
                shard.count,
                &args.partition,
                args.seed,
            )
            .with_context(|| format!("partitioning {} with {}", args.dataset, args.partition))?;
            let indices = parts.get(shard.index).context("shard index out of range")?;
            dataset.train.subset(indices)
        }
    };
    let cfg = TrainConfig {
        model: args.model.clone(),
        optimizer: OptimConfig {
            kind: args.optimizer,
            lr: args.lr,
            momentum: args.momentum,
            weight_decay: args.weight_decay,
            ..OptimConfig::default()
        },
        batch_size: args.batch_size,
        seed: args.seed,
        conv: args.conv,
        balance_classes: false,
        holdout: 0,
    };
    let train_samples = train.len;
    let mut trainer = Trainer::new(
        &cfg,
        dataset.shape,
        dataset.classes,
        train,
        dataset.test.clone(),
    )
    .context("building the model")?;
    tracing::info!(
        dataset = %args.dataset, model = %args.model, params = trainer.network().param_count(),
        train_samples, test_samples = dataset.test.len, threads = rayon::current_num_threads(),
        "training"
    );

    let mut train_time = Duration::ZERO;
    let mut history = Vec::with_capacity(args.epochs);
    let steps = trainer.steps_per_epoch() as u64;
    let total_steps = steps as usize * args.epochs;
    let mut done = 0usize;
    for epoch in 1..=args.epochs {
        let bar = epoch_bar(steps, epoch, args.epochs);
        let t = Instant::now();
        let mut loss_sum = 0.0;
        for step in 1..=steps {
            trainer.set_lr(args.schedule.lr(args.lr, done, total_steps));
            done += 1;
            let loss = trainer
                .step()
                .with_context(|| format!("training epoch {epoch}"))?;
            loss_sum += f64::from(loss);
            bar.set_message(format!("loss {:.4}", loss_sum / step as f64));
            bar.inc(1);
        }
        train_time += t.elapsed();
        bar.finish_and_clear();
        let eval = trainer.evaluate().context("evaluating on the test split")?;
        let line = format!(
            "epoch {epoch:>3}/{}  train loss {:.4}  test loss {:.4}  test accuracy {:.2}%  {:.0} samples/s",
            args.epochs,
            loss_sum / steps.max(1) as f64,
            eval.loss,
            eval.accuracy * 100.0,
            (train_samples as f64 * epoch as f64) / train_time.as_secs_f64().max(1e-9),
        );
        if args.json {
            tracing::info!("{line}");
        } else {
            println!("{line}");
        }
        history.push(eval);
    }
    let last = history.last().copied().unwrap_or(Evaluation {
        accuracy: 0.0,
        loss: 0.0,
    });
    Ok(TrainReport {
        dataset: args.dataset.to_string(),
        model: args.model.to_string(),
        partition: args.partition.to_string(),
        shard: args.shard.map(|s| format!("{}/{}", s.index, s.count)),
        epochs: args.epochs,
        params: trainer.network().param_count(),
        train_samples,
        accuracy: last.accuracy,
        loss: last.loss,
        seconds: started.elapsed().as_secs_f64(),
        train_seconds: train_time.as_secs_f64(),
        samples_per_sec: trainer.samples_seen() as f64 / train_time.as_secs_f64().max(1e-9),
        threads: rayon::current_num_threads(),
        history,
    })
}

fn epoch_bar(steps: u64, epoch: usize, epochs: usize) -> ProgressBar {
    let bar = ProgressBar::new(steps);
    let style = ProgressStyle::with_template("epoch {prefix} [{bar:30}] {pos}/{len} {msg} ({eta})")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    bar.set_style(style);
    bar.set_prefix(format!("{epoch}/{epochs}"));
    bar
}
