//! `murmur bench converge`: samples, CPU time and wall time to a target test accuracy,
//! centralized against the gossip network, on the same machine in one run. The command runs
//! on one compute thread. First one model is trained on all the data with batch 50 (lr 0.05,
//! momentum 0.9, constant), then with batch N×50 at each learning rate of a small sweep
//! (linear warm-up, then constant); each evaluates on the test split every `--eval-samples`
//! samples, and its clocks count training steps only. Then `murmur train` runs as a process of
//! its own with cosine decay over each of the `--cosine-epochs` ([`one_machine`]), its whole
//! CPU time counted as each peer's is. Then `murmur testnet` runs N peer
//! processes on the same cores, each on its shard, until every peer reports the target at
//! the same poll; its clock includes starting the processes and every peer's evaluations.
//! Before the network, the simulator runs the exact-averaging reference with the peers'
//! settings (every round, every peer on the mean of all: the ceiling of any averaging rule).
//! From these it derives the parallel speedups (CPU time and samples), the averaging
//! efficiency (exact averaging's samples per peer over the network's), the large-batch
//! efficiency and the wall-clock ratio. With `--budget-epochs E` it then trains E epochs
//! centrally (`murmur train`'s cosine schedule) and runs a fresh testnet until each peer has
//! trained on its share of E epochs, and compares their final accuracies.

use super::one_machine::{self, ProcessRun};
use crate::config::NodeConfig;
use crate::data::{self, Dataset, DatasetName, Partition};
use crate::metrics::thread_cpu_time;
use crate::model::ModelKind;
use crate::sim::SimArgs;
use crate::sim::scenario::{Eval, Scenario};
use crate::testnet::{self, PeerSummary, StopReason, TestnetArgs, TestnetSummary};
use crate::train::command::TrainArgs;
use crate::train::optim::{OptimConfig, Schedule};
use crate::train::{TrainConfig, TrainError, Trainer};
use anyhow::Context;
use serde::Serialize;
use std::path::PathBuf;
use std::time::Instant;

/// Minibatch of the batch-50 baseline, and of each peer's share of the large batch.
const BASE_BATCH: usize = 50;

/// Arguments of `murmur bench converge`.
#[derive(Debug, Clone, clap::Args)]
pub struct ConvergeArgs {
    #[arg(long, default_value_t = 8)]
    pub peers: usize,
    #[arg(long, default_value = "fashion-mnist")]
    pub dataset: DatasetName,
    /// Directory holding the dataset's IDX files, used by the baselines and passed to every peer (default for
    /// fashion-mnist: /usr/share/datasets/fashion-mnist; mnist has none). The dataset is
    /// loaded once before any peer starts, so a missing one is reported with the fix.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    #[arg(long, default_value = "mlp")]
    pub model: ModelKind,
    #[arg(long, default_value = "dirichlet:0.5")]
    pub partition: Partition,
    /// Target test accuracy (0..1).
    #[arg(long, default_value_t = 0.85)]
    pub target: f32,
    /// Give up after this many seconds (each centralized run, each testnet).
    #[arg(long, default_value_t = 900.0)]
    pub timeout: f64,
    /// Centralized runs evaluate on the test split every this many training samples.
    #[arg(long, default_value_t = 4000)]
    pub eval_samples: u64,
    /// Centralized runs stop after this many epochs if the target is not reached.
    #[arg(long, default_value_t = 50)]
    pub max_epochs: u64,
    /// Epoch counts of the centralized batch-50 runs with cosine decay (lr 0.05 to 0 over
    /// that many epochs), beside the constant-rate one: the baseline is the one of them that
    /// reaches the target in the fewest CPU seconds.
    #[arg(long, value_delimiter = ',', default_value = "1,2,3")]
    pub cosine_epochs: Vec<usize>,
    /// Learning rates of the centralized batch N×50 runs.
    #[arg(long, value_delimiter = ',', default_value = "0.05,0.1,0.2,0.4")]
    pub sweep_lrs: Vec<f64>,
    /// Steps of linear learning-rate warm-up from 0 in the batch N×50 runs.
    #[arg(long, default_value_t = 50)]
    pub warmup_steps: usize,
    /// After the target runs: train E epochs centrally and each peer on its share of E
    /// epochs, and compare final accuracies.
    #[arg(long)]
    pub budget_epochs: Option<usize>,
    /// Print the report as one JSON line on stdout.
    #[arg(long)]
    pub json: bool,
    /// The peers' settings (the centralized runs keep `murmur train`'s defaults).
    #[command(flatten)]
    pub tuning: testnet::Tuning,
}

/// One centralized run towards the target.
#[derive(Debug, Clone, Serialize)]
pub struct CentralizedRun {
    pub batch_size: usize,
    pub lr: f64,
    /// `constant`, or `cosine over E epochs`.
    pub schedule: String,
    pub warmup_steps: usize,
    pub reached_target: bool,
    /// The loss became infinite or NaN.
    pub diverged: bool,
    /// Training samples until the target (or until it stopped).
    pub samples: u64,
    /// CPU seconds of the training thread in training steps.
    pub cpu_seconds: f64,
    /// Wall seconds in training steps.
    pub train_seconds: f64,
    /// Test accuracy at the last evaluation.
    pub accuracy: f32,
}

impl CentralizedRun {
    /// Samples to the target, if it was reached.
    fn samples_to_target(&self) -> Option<u64> {
        self.reached_target.then_some(self.samples)
    }
}

/// The fixed-budget comparison, one peer.
#[derive(Debug, Clone, Serialize)]
pub struct BudgetPeer {
    pub peer_id: String,
    pub accuracy: f32,
    /// Training samples folded in when `accuracy` was measured.
    pub eval_samples: u64,
    pub samples: u64,
    /// Centralized accuracy minus this peer's, in percentage points.
    pub gap_points: f64,
}

/// The fixed-budget comparison.
#[derive(Debug, Clone, Serialize)]
pub struct BudgetReport {
    pub epochs: usize,
    pub centralized_accuracy: f32,
    pub centralized_train_seconds: f64,
    /// Each peer's share: epochs × training examples / peers.
    pub samples_per_peer: u64,
    /// The peers' learning rate and schedule keys in this run.
    pub peer_schedule: String,
    pub network_seconds: f64,
    pub network_stop: StopReason,
    pub peers: Vec<BudgetPeer>,
}

/// What the benchmark measured.
#[derive(Debug, Clone, Serialize)]
pub struct ConvergeReport {
    pub target: f32,
    pub peers: usize,
    pub eval_samples: u64,
    /// Batch 50, lr 0.05, momentum 0.9, constant.
    pub centralized: CentralizedRun,
    /// Batch 50 with cosine decay over each of `--cosine-epochs`.
    pub cosine: Vec<CentralizedRun>,
    /// The batch-50 run (constant or cosine) that reached the target in the fewest CPU
    /// seconds: the baseline of the speedups (the constant-rate run if none reached it).
    pub baseline: CentralizedRun,
    /// `murmur train` as its own process, the fewest CPU seconds (loading, training,
    /// evaluating) among the `--cosine-epochs` runs that end at the target; `None` if none
    /// does.
    pub baseline_process: Option<ProcessRun>,
    /// Batch N×50, one run per learning rate.
    pub sweep: Vec<CentralizedRun>,
    /// Index in `sweep` of the run with the fewest samples to the target.
    pub sweep_best: Option<usize>,
    /// Until every peer reports the target at the same time.
    pub network_seconds: f64,
    pub network_stop: StopReason,
    /// Until every peer has reported the target at least once.
    pub network_each_reached_seconds: Option<f64>,
    pub network_mean_accuracy: f32,
    pub network_min_accuracy: f32,
    /// Mean over peers of bytes sent plus received.
    pub bytes_per_peer: f64,
    /// At the stop: the largest process CPU seconds of a peer, the largest `eval_samples` of
    /// a peer, and the sum of `eval_samples` over peers.
    pub network_max_peer_cpu_seconds: Option<f64>,
    pub network_max_peer_samples: u64,
    pub network_total_samples: u64,
    /// Training samples per second: centralized batch 50 (training time), and summed over
    /// the network's peers (network time).
    pub centralized_samples_per_sec: f64,
    pub network_samples_per_sec: f64,
    /// The baseline's training CPU seconds / the largest peer's CPU seconds (ideal N).
    pub speedup_cpu: Option<f64>,
    /// The same with each peer's evaluation CPU taken out, as the centralized clock leaves
    /// its evaluations out.
    pub speedup_cpu_without_eval: Option<f64>,
    /// `baseline_process`'s CPU seconds / the largest peer's: whole processes on both sides.
    pub speedup_cpu_process: Option<f64>,
    /// The baseline's samples / the largest peer's samples (ideal N).
    pub speedup_samples: Option<f64>,
    /// Samples per peer the simulated exact averaging (`murmur sim --exact-averaging`, the
    /// peers' settings, the whole test split, evaluated every round) needs until every peer
    /// is at the target at once.
    pub exact_samples: Option<u64>,
    /// The lowest and the mean over peers of the share of a peer's process CPU time spent
    /// on training steps (`resource_utilization`).
    pub train_share_min: Option<f32>,
    pub train_share_mean: Option<f32>,
    /// Exact averaging's samples per peer / the network's (the largest peer's), ideal 1.
    pub averaging_efficiency: Option<f64>,
    /// Best centralized batch N×50 samples / the network's total samples (ideal 1).
    pub large_batch_efficiency: Option<f64>,
    /// Network seconds / the baseline's training seconds.
    pub wall_ratio: Option<f64>,
    pub network_peers: Vec<PeerSummary>,
    pub budget: Option<BudgetReport>,
}

impl ConvergeReport {
    /// Prints the report: lines, or one JSON line.
    pub fn print(&self, json: bool) {
        if json {
            println!("{}", serde_json::to_string(self).unwrap_or_default());
            return;
        }
        println!(
            "to {:.1}% test accuracy; centralized on one thread, evaluating every {} samples, \
             clocks count training steps only",
            self.target * 100.0,
            self.eval_samples
        );
        print_run("centralized", &self.centralized, false);
        for run in &self.cosine {
            print_run("centralized", run, false);
        }
        println!(
            "  baseline of the speedups: batch {BASE_BATCH}, {} ({} samples, {:.1} CPU s)",
            self.baseline.schedule, self.baseline.samples, self.baseline.cpu_seconds
        );
        match &self.baseline_process {
            Some(p) => println!(
                "  one machine as its own process (`murmur train --epochs {} --schedule cosine --lr {} \
                 --threads 1`): accuracy {:.4} after {} samples, {:.1} CPU s (loading, training, \
                 evaluating)",
                p.epochs, p.lr, p.accuracy, p.samples, p.cpu_seconds
            ),
            None => println!(
                "  one machine as its own process: no `murmur train` run reached the target"
            ),
        }
        for (i, run) in self.sweep.iter().enumerate() {
            print_run("centralized", run, self.sweep_best == Some(i));
        }
        println!(
            "  {} peers, gossip: {:.1} s until all at once ({:?}); mean {:.4}, min {:.4}, {:.1} MB per peer",
            self.peers,
            self.network_seconds,
            self.network_stop,
            self.network_mean_accuracy,
            self.network_min_accuracy,
            self.bytes_per_peer / 1e6
        );
        if let Some(each) = self.network_each_reached_seconds {
            println!("  every peer had reached it at least once after {each:.1} s");
        }
        println!(
            "    {:<10} {:>8} {:>12} {:>12} {:>12} {:>8} {:>8} {:>7} {:>9}",
            "peer",
            "accuracy",
            "first at",
            "at stop",
            "trained",
            "cpu s",
            "train %",
            "comm %",
            "MB"
        );
        let pct = |v: Option<f32>| v.map_or("-".into(), |v| format!("{:.1}", v * 100.0));
        for p in &self.network_peers {
            println!(
                "    {:<10} {:>8.4} {:>12} {:>12} {:>12} {:>8} {:>8} {:>7} {:>9.1}",
                short_id(&p.peer_id),
                p.accuracy,
                p.reached_target_samples
                    .map_or("-".into(), |s| s.to_string()),
                p.eval_samples,
                p.samples,
                p.cpu_secs.map_or("-".into(), |c| format!("{c:.1}")),
                pct(p.resource_utilization),
                pct(p.communication_overhead),
                (p.bytes_sent + p.bytes_received) as f64 / 1e6
            );
        }
        println!(
            "  training share of each peer's process CPU: lowest {}%, mean {}%",
            pct(self.train_share_min),
            pct(self.train_share_mean)
        );
        println!(
            "  (first at, at stop: samples when the accuracy was measured; trained: samples at the stop)"
        );
        let fig = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.2}"));
        println!(
            "  parallel speedup (CPU)      {:>7}  (ideal {})",
            fig(self.speedup_cpu),
            self.peers
        );
        println!(
            "  parallel speedup (CPU, evaluations excluded) {:>7}",
            fig(self.speedup_cpu_without_eval)
        );
        println!(
            "  parallel speedup (CPU, whole processes on both sides: murmur train's against the \
             largest peer's) {:>7}",
            fig(self.speedup_cpu_process)
        );
        println!(
            "  parallel speedup (samples)  {:>7}  (ideal {})",
            fig(self.speedup_samples),
            self.peers
        );
        println!(
            "  simulated exact averaging   {:>7}  samples per peer (every peer on the mean of all each round)",
            self.exact_samples.map_or("-".into(), |s| s.to_string())
        );
        println!(
            "  averaging efficiency        {:>7}  (exact averaging's samples / the network's; ideal 1)",
            fig(self.averaging_efficiency)
        );
        println!(
            "  large-batch efficiency      {:>7}  (best centralized batch {}x{BASE_BATCH} samples / the network's total)",
            fig(self.large_batch_efficiency),
            self.peers
        );
        println!(
            "  wall-clock ratio            {:>7}  (network / the baseline)",
            fig(self.wall_ratio)
        );
        println!(
            "  training throughput: centralized {:.0} samples/s, network {:.0} samples/s in all",
            self.centralized_samples_per_sec, self.network_samples_per_sec
        );
        if let Some(b) = &self.budget {
            println!(
                "fixed budget of {} epochs: centralized (batch {BASE_BATCH}, cosine) accuracy {:.4} \
                 ({:.1} s training); network {:.1} s ({:?}), {} samples per peer ({})",
                b.epochs,
                b.centralized_accuracy,
                b.centralized_train_seconds,
                b.network_seconds,
                b.network_stop,
                b.samples_per_peer,
                b.peer_schedule
            );
            println!(
                "    {:<10} {:>8} {:>8} {:>12} {:>12}",
                "peer", "accuracy", "gap pts", "measured at", "trained"
            );
            for p in &b.peers {
                println!(
                    "    {:<10} {:>8.4} {:>8.2} {:>12} {:>12}",
                    short_id(&p.peer_id),
                    p.accuracy,
                    p.gap_points,
                    p.eval_samples,
                    p.samples
                );
            }
        }
    }
}

/// One line of a centralized run.
fn print_run(name: &str, run: &CentralizedRun, best: bool) {
    let outcome = match (run.reached_target, run.diverged) {
        (true, _) => "reached",
        (false, true) => "DIVERGED",
        (false, false) => "not reached",
    };
    println!(
        "  {name} batch {:>4}, lr {:<5} {:<22} warm-up {:>3}: {outcome:<11} {:>9} samples, \
         {:>7.1} CPU s, {:>7.1} s, accuracy {:.4}{}",
        run.batch_size,
        run.lr,
        run.schedule,
        run.warmup_steps,
        run.samples,
        run.cpu_seconds,
        run.train_seconds,
        run.accuracy,
        if best { "  (best lr)" } else { "" }
    );
}

/// The last 8 characters of a peer id.
fn short_id(id: &str) -> &str {
    id.get(id.len().saturating_sub(8)..).unwrap_or(id)
}

/// When a centralized run evaluates and stops.
#[derive(Debug, Clone, Copy)]
struct Goal {
    /// Evaluate every this many training samples.
    eval_samples: u64,
    /// Stop at this test accuracy,
    target: f32,
    /// or after this many training samples,
    cap: u64,
    /// or after this many seconds.
    timeout: f64,
}

/// Trains one model on all of `ds` with `cfg` at `batch` and `lr` (linear warm-up from 0
/// over `warmup` steps, constant after), evaluating on the test split as `goal` says, until
/// it reaches the target or a limit. Only the training steps are timed: wall time, and the
/// CPU time of this thread (its wall time where that cannot be read).
fn centralized_run(
    ds: &Dataset,
    cfg: &TrainConfig,
    batch: usize,
    lr: f64,
    warmup: usize,
    cosine_epochs: Option<usize>,
    goal: Goal,
) -> anyhow::Result<CentralizedRun> {
    let Goal {
        eval_samples,
        target,
        cap,
        timeout,
    } = goal;
    let cfg = TrainConfig {
        batch_size: batch,
        optimizer: OptimConfig {
            lr,
            ..cfg.optimizer.clone()
        },
        // One machine with all the data checks nobody's models: it trains on every example.
        holdout: 0,
        ..cfg.clone()
    };
    let mut trainer = Trainer::new(
        &cfg,
        ds.shape,
        ds.classes,
        ds.train.clone(),
        ds.test.clone(),
    )
    .context("building the model")?;
    let total_steps = cosine_epochs.map(|e| e * ds.train.len / batch.max(1));
    let mut run = CentralizedRun {
        batch_size: batch,
        lr,
        schedule: cosine_epochs.map_or("constant".into(), |e| format!("cosine over {e} epochs")),
        warmup_steps: warmup,
        reached_target: false,
        diverged: false,
        samples: 0,
        cpu_seconds: 0.0,
        train_seconds: 0.0,
        accuracy: 0.0,
    };
    let bar = super::progress(cap, &format!("batch {batch} lr {lr}"));
    let started = Instant::now();
    let mut step = 0usize;
    let mut next_eval = eval_samples.max(1);
    while !run.reached_target && trainer.samples_seen() < cap {
        if started.elapsed().as_secs_f64() > timeout {
            break;
        }
        let (wall, cpu) = (Instant::now(), thread_cpu_time());
        while trainer.samples_seen() < next_eval {
            trainer.set_lr(match total_steps {
                Some(total) => Schedule::Cosine.lr(lr, step, total),
                None => lr * ((step + 1) as f64 / warmup.max(1) as f64).min(1.0),
            });
            step += 1;
            match trainer.step() {
                Ok(_) => {}
                Err(TrainError::Diverged { .. }) => {
                    run.diverged = true;
                    break;
                }
                Err(e) => return Err(e).context("training"),
            }
        }
        let wall = wall.elapsed();
        run.train_seconds += wall.as_secs_f64();
        run.cpu_seconds += match (cpu, thread_cpu_time()) {
            (Some(before), Some(after)) => after.saturating_sub(before),
            _ => wall,
        }
        .as_secs_f64();
        run.samples = trainer.samples_seen();
        if run.diverged {
            break;
        }
        next_eval += eval_samples.max(1);
        run.accuracy = trainer.evaluate().context("evaluating")?.accuracy;
        run.reached_target = run.accuracy >= target;
        bar.set_position(run.samples);
        bar.set_message(format!("batch {batch} lr {lr}: acc {:.4}", run.accuracy));
    }
    bar.finish_and_clear();
    Ok(run)
}

/// The testnet of the benchmark, in its own directory under `dir`.
fn testnet_args(args: &ConvergeArgs, dir: PathBuf) -> TestnetArgs {
    TestnetArgs {
        peers: args.peers,
        dataset: args.dataset,
        data_dir: args.data_dir.clone(),
        model: args.model.clone(),
        partition: args.partition,
        duration: Some(args.timeout),
        until_accuracy: None,
        target_accuracy: None,
        until_samples: None,
        dir: Some(dir),
        json: false,
        hostile: None,
        tuning: args.tuning.clone(),
    }
}

/// Rounds the exact-averaging reference runs: about 150,000 samples per peer at the
/// default round (exact averaging needs well under half of that to 85% on Fashion-MNIST).
const EXACT_ROUNDS: u64 = 150;

/// The exact-averaging reference in the simulator with the peers' own settings (round
/// length, optimizer, schedule): samples per peer at the first round where every peer is at
/// the target, evaluated every round on the whole test split; `None` if it never got there.
fn exact_reference(args: &ConvergeArgs) -> anyhow::Result<Option<u64>> {
    let config = tuned_keys(&args.tuning)?;
    let scenario = Scenario {
        peers: args.peers,
        dataset: args.dataset.to_string(),
        data_dir: args.data_dir.clone(),
        model: args.model.to_string(),
        partition: args.partition.to_string(),
        rounds: EXACT_ROUNDS,
        seed: 1,
        target_accuracy: args.target,
        exact_averaging: true,
        eval: Eval {
            every_rounds: 1,
            test_samples: 0,
            ..Eval::default()
        },
        config,
        ..Scenario::default()
    };
    let sim_args = SimArgs {
        exact_averaging: true,
        json: true,
        ..SimArgs::default()
    };
    let summary = crate::sim::run_scenario(scenario, &sim_args)
        .context("the simulated exact-averaging reference")?;
    Ok(summary.testnet.all_reached_samples)
}

/// The peer config keys `tuning` sets (those whose value differs from a peer config's
/// default), as a scenario's `[config]` table.
fn tuned_keys(tuning: &testnet::Tuning) -> anyhow::Result<toml::Table> {
    let base = toml::Table::try_from(NodeConfig::default())?;
    let mut tuned = NodeConfig::default();
    tuning.apply(&mut tuned);
    let tuned = toml::Table::try_from(tuned)?;
    let mut out = toml::Table::new();
    for (section, values) in &tuned {
        let (Some(values), Some(defaults)) = (
            values.as_table(),
            base.get(section).and_then(|v| v.as_table()),
        ) else {
            continue;
        };
        let changed: toml::Table = values
            .iter()
            .filter(|(k, v)| defaults.get(*k) != Some(*v))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if !changed.is_empty() {
            out.insert(section.clone(), toml::Value::Table(changed));
        }
    }
    Ok(out)
}

/// `a / b` when both are known and `b` is positive.
fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    }
}

/// Trains E epochs centrally as `murmur train` does by default, then runs a testnet until
/// every peer has trained on its share of E epochs.
async fn budget(
    args: &ConvergeArgs,
    epochs: usize,
    train_len: usize,
    dir: PathBuf,
) -> anyhow::Result<BudgetReport> {
    let train_args = TrainArgs {
        dataset: args.dataset,
        data_dir: args.data_dir.clone(),
        model: args.model.clone(),
        epochs,
        partition: Partition::Iid,
        shard: None,
        optimizer: OptimConfig::default().kind,
        lr: OptimConfig::default().lr,
        schedule: Schedule::Cosine,
        momentum: OptimConfig::default().momentum,
        weight_decay: 0.0,
        batch_size: BASE_BATCH,
        seed: TrainConfig::default().seed,
        threads: 1,
        conv: TrainConfig::default().conv,
        // Keeps its per-epoch lines off stdout.
        json: true,
    };
    let central =
        tokio::task::spawn_blocking(move || crate::train::command::run(&train_args)).await??;
    let samples_per_peer = (epochs * train_len / args.peers.max(1)) as u64;
    let net = TestnetArgs {
        until_samples: Some(samples_per_peer),
        ..testnet_args(args, dir)
    };
    let defaults = NodeConfig::default().training;
    let peer_schedule = format!(
        "peers: lr {}, lr_decay_samples {}, lr_cosine_samples {}",
        net.tuning.lr.unwrap_or(defaults.lr),
        net.tuning
            .lr_decay_samples
            .unwrap_or(defaults.lr_decay_samples),
        net.tuning
            .lr_cosine_samples
            .unwrap_or(defaults.lr_cosine_samples),
    );
    let summary = testnet::run(&net).await?;
    let peers = summary
        .peers
        .iter()
        .map(|p| BudgetPeer {
            peer_id: p.peer_id.clone(),
            accuracy: p.accuracy,
            eval_samples: p.eval_samples,
            samples: p.samples,
            gap_points: f64::from(central.accuracy - p.accuracy) * 100.0,
        })
        .collect();
    Ok(BudgetReport {
        epochs,
        peer_schedule,
        centralized_accuracy: central.accuracy,
        centralized_train_seconds: central.train_seconds,
        samples_per_peer,
        network_seconds: summary.seconds,
        network_stop: summary.stop,
        peers,
    })
}

/// The network's figures at the stop: the largest process CPU seconds of a peer (when every
/// peer's is known), the largest and the summed `eval_samples`.
fn network_at_stop(summary: &TestnetSummary) -> (Option<f64>, u64, u64) {
    let cpu = summary
        .peers
        .iter()
        .map(|p| p.cpu_secs)
        .collect::<Option<Vec<f64>>>()
        .map(|c| c.into_iter().fold(0.0, f64::max));
    let max = summary
        .peers
        .iter()
        .map(|p| p.eval_samples)
        .max()
        .unwrap_or(0);
    let total = summary.peers.iter().map(|p| p.eval_samples).sum();
    (cpu, max, total)
}

/// Runs the benchmark.
pub async fn run(args: &ConvergeArgs) -> anyhow::Result<ConvergeReport> {
    anyhow::ensure!(args.peers >= 1, "--peers must be at least 1");
    let cargs = args.clone();
    let (centralized, cosine, sweep, train_len) = tokio::task::spawn_blocking(move || {
        let args = cargs;
        let ds = data::load(args.dataset, args.data_dir.as_deref())
            .with_context(|| format!("loading {}", args.dataset))?;
        let cfg = TrainConfig {
            model: args.model.clone(),
            ..TrainConfig::default()
        };
        let goal = Goal {
            eval_samples: args.eval_samples,
            target: args.target,
            cap: args.max_epochs.saturating_mul(ds.train.len as u64),
            timeout: args.timeout,
        };
        let central =
            |batch, lr, warmup, cosine| centralized_run(&ds, &cfg, batch, lr, warmup, cosine, goal);
        let base = central(BASE_BATCH, cfg.optimizer.lr, 0, None)?;
        let cosine = args
            .cosine_epochs
            .iter()
            .map(|&e| central(BASE_BATCH, cfg.optimizer.lr, 0, Some(e.max(1))))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let sweep = args
            .sweep_lrs
            .iter()
            .map(|&lr| central(BASE_BATCH * args.peers, lr, args.warmup_steps, None))
            .collect::<anyhow::Result<Vec<_>>>()?;
        anyhow::Ok((base, cosine, sweep, ds.train.len))
    })
    .await??;
    let sweep_best = sweep
        .iter()
        .enumerate()
        .filter_map(|(i, r)| r.samples_to_target().map(|s| (s, i)))
        .min()
        .map(|(_, i)| i);

    let alone = args.clone();
    let baseline_process = tokio::task::spawn_blocking(move || {
        let setup = one_machine::Setup {
            dataset: alone.dataset,
            data_dir: alone.data_dir.as_deref(),
            model: &alone.model,
            lr: TrainConfig::default().optimizer.lr,
        };
        one_machine::best(setup, &alone.cosine_epochs, alone.target)
    })
    .await??;

    let reference = args.clone();
    let exact_samples = tokio::task::spawn_blocking(move || exact_reference(&reference)).await??;

    let dir = std::env::temp_dir().join(format!("murmur-converge-{}", std::process::id()));
    let summary = testnet::run(&TestnetArgs {
        until_accuracy: Some(args.target),
        ..testnet_args(args, dir.join("target"))
    })
    .await?;
    let (max_cpu, max_samples, total_samples) = network_at_stop(&summary);
    let max_cpu_without_eval = summary
        .peers
        .iter()
        .map(|p| p.cpu_secs.map(|c| c - p.eval_cpu_secs))
        .collect::<Option<Vec<f64>>>()
        .map(|c| c.into_iter().fold(0.0, f64::max));
    let at_target = summary.stop == StopReason::Accuracy;
    let known = |v: u64| (at_target && v > 0).then_some(v as f64);
    // The baseline: the batch-50 run that reached the target in the fewest CPU seconds.
    let baseline = std::iter::once(&centralized)
        .chain(&cosine)
        .filter(|r| r.reached_target)
        .min_by(|a, b| a.cpu_seconds.total_cmp(&b.cpu_seconds))
        .unwrap_or(&centralized)
        .clone();
    let central_samples = baseline.samples_to_target().map(|s| s as f64);
    let central_reached = |v: f64| baseline.reached_target.then_some(v);
    let best_samples = sweep_best
        .and_then(|i| sweep.get(i))
        .and_then(CentralizedRun::samples_to_target)
        .map(|s| s as f64);
    let bytes = summary
        .peers
        .iter()
        .map(|p| (p.bytes_sent + p.bytes_received) as f64)
        .sum::<f64>()
        / summary.peers.len().max(1) as f64;
    let trained: u64 = summary.peers.iter().map(|p| p.samples).sum();
    let shares: Option<Vec<f32>> = summary
        .peers
        .iter()
        .map(|p| p.resource_utilization)
        .collect::<Option<Vec<f32>>>()
        .filter(|v| !v.is_empty());

    let budget = match args.budget_epochs {
        Some(epochs) => Some(budget(args, epochs, train_len, dir.join("budget")).await?),
        None => None,
    };
    Ok(ConvergeReport {
        target: args.target,
        peers: args.peers,
        eval_samples: args.eval_samples,
        speedup_cpu: ratio(
            central_reached(baseline.cpu_seconds),
            max_cpu.filter(|_| at_target),
        ),
        speedup_cpu_without_eval: ratio(
            central_reached(baseline.cpu_seconds),
            max_cpu_without_eval.filter(|_| at_target),
        ),
        speedup_cpu_process: ratio(
            baseline_process.as_ref().map(|p| p.cpu_seconds),
            max_cpu.filter(|_| at_target),
        ),
        speedup_samples: ratio(central_samples, known(max_samples)),
        exact_samples,
        train_share_min: shares
            .as_ref()
            .map(|v| v.iter().copied().fold(1.0, f32::min)),
        train_share_mean: shares
            .as_ref()
            .map(|v| v.iter().sum::<f32>() / v.len().max(1) as f32),
        averaging_efficiency: ratio(exact_samples.map(|s| s as f64), known(max_samples)),
        large_batch_efficiency: ratio(best_samples, known(total_samples)),
        wall_ratio: ratio(
            at_target.then_some(summary.seconds),
            central_reached(baseline.train_seconds),
        ),
        centralized_samples_per_sec: centralized.samples as f64
            / centralized.train_seconds.max(1e-9),
        centralized,
        cosine,
        baseline,
        baseline_process,
        sweep,
        sweep_best,
        network_seconds: summary.seconds,
        network_stop: summary.stop,
        network_each_reached_seconds: summary.each_reached_secs,
        network_mean_accuracy: summary.mean_accuracy,
        network_min_accuracy: summary.min_accuracy,
        bytes_per_peer: bytes,
        network_max_peer_cpu_seconds: max_cpu,
        network_max_peer_samples: max_samples,
        network_total_samples: total_samples,
        network_samples_per_sec: trained as f64 / summary.seconds.max(1e-9),
        network_peers: summary.peers,
        budget,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_keys_tuned_go_to_the_reference() {
        assert!(tuned_keys(&testnet::Tuning::default()).unwrap().is_empty());
        let tuning = testnet::Tuning {
            round_steps: Some(10),
            lr: Some(0.2),
            // The default: not a tuned key.
            lr_decay_samples: Some(crate::config::NETWORK_LR_DECAY_SAMPLES),
            ..testnet::Tuning::default()
        };
        let keys = tuned_keys(&tuning).unwrap();
        assert_eq!(
            keys.to_string(),
            "[averaging]\nround_steps = 10\n\n[training]\nlr = 0.2\n"
        );
    }

    #[test]
    fn thread_cpu_time_grows_with_work() {
        let before = thread_cpu_time();
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
        }
        let after = thread_cpu_time();
        if let (Some(before), Some(after)) = (before, after) {
            assert!(after > before, "{before:?} -> {after:?} ({x})");
        }
    }
}
