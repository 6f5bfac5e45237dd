//! `murmur sim`: N peers in one process, in virtual time, over a simulated network. Each
//! peer runs the real averaging core ([`crate::averaging::core`]), the real trainer and the
//! real merge ([`crate::train::merge`]); the network (latency, bandwidth, loss, partitions),
//! churn and hostile peers are simulated ([`engine`], [`net`]). The dataset is loaded once;
//! each peer holds its shard. The same seed and scenario give the same trace, bit for bit,
//! on one machine whatever the thread count (see `docs/simulation.md` for across machines).
//!
//! This module owns the command: arguments, scenario, setup, the trace file and the
//! summary (the one `murmur testnet` prints). It must not touch sockets or the wall clock
//! for anything but the progress bar and the run's own timing.

mod engine;
mod net;
mod peer;
pub mod scenario;

use crate::averaging::core::CoreConfig;
use crate::data::{self, Split};
use crate::run::options;
use crate::testnet::{PeerSummary, StopReason, TestnetSummary};
use crate::train::Trainer;
use anyhow::Context;
use engine::{Rules, World};
use peer::{Life, SimPeer};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use scenario::Scenario;
use serde::Serialize;
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Arguments of `murmur sim`; each flag given overrides the scenario file's value.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct SimArgs {
    /// Number of peers.
    #[arg(long)]
    pub peers: Option<usize>,
    /// digits, fashion-mnist or mnist.
    #[arg(long)]
    pub dataset: Option<String>,
    /// Directory holding the dataset's IDX files.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// logreg, mlp, mlp:<h1>-<h2>-... or cnn.
    #[arg(long)]
    pub model: Option<String>,
    /// iid, dirichlet:<alpha> or shards:<k>.
    #[arg(long)]
    pub partition: Option<String>,
    /// Rounds every honest peer runs.
    #[arg(long)]
    pub rounds: Option<u64>,
    /// Seed of everything random in the run.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Record when each peer first reports this test accuracy (0..1).
    #[arg(long)]
    pub target_accuracy: Option<f32>,
    /// The exact-averaging reference instead of gossip: every round ends with every peer
    /// on the exact mean of all peers' models (see docs/simulation.md).
    #[arg(long)]
    pub exact_averaging: bool,
    /// A scenario file (TOML; see testnet/scenarios/ and docs/simulation.md).
    #[arg(long)]
    pub scenario: Option<PathBuf>,
    /// Write the trace here as JSON lines (per-peer evaluations and network samples).
    #[arg(long)]
    pub trace: Option<PathBuf>,
    /// Threads running peers in parallel (0 = one per core; candle itself runs each op on
    /// one thread). The result does not depend on it.
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Print the summary as one JSON line, last on stdout.
    #[arg(long)]
    pub json: bool,
    /// After the run, serve the dashboard on this address (e.g. 127.0.0.1:8080) with the
    /// simulation's network samples as its history (virtual seconds), until Ctrl-C.
    #[arg(long)]
    pub serve: Option<std::net::SocketAddr>,
}

impl SimArgs {
    /// The scenario: the file's (or the defaults), with the flags given over it.
    pub fn scenario(&self) -> anyhow::Result<Scenario> {
        let mut s = match &self.scenario {
            Some(path) => Scenario::load(path)?,
            None => Scenario::default(),
        };
        if let Some(v) = self.peers {
            s.peers = v;
        }
        if let Some(v) = &self.dataset {
            s.dataset = v.clone();
        }
        if let Some(v) = &self.data_dir {
            s.data_dir = Some(v.clone());
        }
        if let Some(v) = &self.model {
            s.model = v.clone();
        }
        if let Some(v) = &self.partition {
            s.partition = v.clone();
        }
        if let Some(v) = self.rounds {
            s.rounds = v;
        }
        if let Some(v) = self.seed {
            s.seed = v;
        }
        if let Some(v) = self.target_accuracy {
            s.target_accuracy = v;
        }
        if self.exact_averaging {
            s.exact_averaging = true;
        }
        Ok(s)
    }
}

/// What `murmur sim` prints: the testnet's summary (virtual seconds) and the run's cost.
#[derive(Debug, Clone, Serialize)]
pub struct SimSummary {
    #[serde(flatten)]
    pub testnet: TestnetSummary,
    pub rounds: u64,
    pub seed: u64,
    /// Wall-clock seconds the simulation took.
    pub wall_secs: f64,
    /// Peak resident memory of the process, in MiB (Linux; `None` elsewhere).
    pub peak_rss_mib: Option<f64>,
    /// Mean virtual seconds until an honest peer first reported `target_accuracy`.
    pub mean_reached_target_secs: Option<f64>,
    /// Mean training samples at which an honest peer first reported `target_accuracy`.
    pub mean_reached_target_samples: Option<f64>,
    /// Honest peers that reached `target_accuracy`.
    pub reached_target: usize,
    /// blake3 of the trace's bytes (equal for equal runs).
    pub trace_digest: String,
    pub trace: Option<PathBuf>,
    /// The last network sample's consensus distance (mean squared distance of the live
    /// honest models from their mean).
    pub final_consensus_distance: f64,
    /// Peers blocked by some peer over the run, announcements throttled.
    pub blocks: u64,
    pub throttled: u64,
    /// The network samples as dashboard history points (served by `--serve`).
    #[serde(skip)]
    pub history: Vec<crate::history::HistoryPoint>,
}

/// A simulated peer's name in the summary, the trace and the dashboard.
pub fn peer_name(id: u32) -> String {
    format!("sim-{id:05}")
}

/// About `n` indices of `labels`, each class in its share of them, drawn at random by
/// `seed` (sorted, so the subset keeps the split's order).
fn stratified(labels: &[u8], n: usize, seed: u64) -> Vec<usize> {
    use rand::seq::SliceRandom;
    let mut rng = ChaCha8Rng::seed_from_u64(net::mix(seed ^ 0x7465_7374));
    let mut by_class: std::collections::BTreeMap<u8, Vec<usize>> = Default::default();
    for (i, l) in labels.iter().enumerate() {
        by_class.entry(*l).or_default().push(i);
    }
    let total = labels.len().max(1);
    let mut picked: Vec<usize> = by_class
        .into_values()
        .flat_map(|mut rows| {
            let take = (rows.len() * n).div_ceil(total).min(rows.len());
            rows.shuffle(&mut rng);
            rows.truncate(take);
            rows
        })
        .collect();
    picked.sort_unstable();
    picked
}

/// At the first evaluation after which every honest peer that did not leave has its latest
/// evaluation at `target` or above, the most samples behind those evaluations (as
/// `murmur testnet` reports for its first poll with every peer at the target).
fn all_reached_samples(peers: &[SimPeer], target: f32) -> Option<u64> {
    if target <= 0.0 {
        return None;
    }
    let honest: Vec<&SimPeer> = peers
        .iter()
        .filter(|p| p.hostile.is_none() && p.life != Life::Gone)
        .collect();
    let mut lines: Vec<&peer::PeerLine> = honest.iter().flat_map(|p| &p.trace).collect();
    lines.sort_by(|a, b| a.t.total_cmp(&b.t).then(a.peer.cmp(&b.peer)));
    let mut latest: std::collections::BTreeMap<u32, (f32, u64)> = Default::default();
    for line in lines {
        latest.insert(line.peer, (line.accuracy, line.samples));
        if latest.len() == honest.len() && latest.values().all(|(a, _)| *a >= target) {
            return latest.values().map(|(_, s)| *s).max();
        }
    }
    None
}

/// Peak resident set size of this process, from `/proc/self/status`.
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// Runs the simulation the arguments describe.
pub fn run(args: &SimArgs) -> anyhow::Result<SimSummary> {
    run_scenario(args.scenario()?, args)
}

/// Runs `scenario` (the arguments give only the threads and the trace file).
pub fn run_scenario(scenario: Scenario, args: &SimArgs) -> anyhow::Result<SimSummary> {
    let wall = Instant::now();
    let checked = scenario.check()?;
    let s = &checked.scenario;
    let cfg = &checked.node;
    let dataset = data::load(checked.dataset, s.data_dir.as_deref()).with_context(|| {
        format!(
            "loading dataset {} (give its IDX directory with --data-dir)",
            checked.dataset
        )
    })?;
    let shards = data::partition(
        &dataset.train.labels,
        dataset.classes,
        s.peers,
        &checked.partition,
        cfg.training.seed,
    )?;
    let test = if s.eval.test_samples == 0 || s.eval.test_samples >= dataset.test.len {
        dataset.test.clone()
    } else {
        dataset.test.subset(&stratified(
            &dataset.test.labels,
            s.eval.test_samples,
            s.seed,
        ))
    };
    let empty = Split {
        features: Vec::new(),
        labels: Vec::new(),
        len: 0,
        dim: dataset.train.dim,
    };
    let opts = options(cfg);
    let core = CoreConfig {
        policy: opts.policy.clone(),
        error_budget: opts.error_budget,
    };
    let mut rng = ChaCha8Rng::seed_from_u64(s.seed);
    let honest = s.peers - s.hostile.count(s.peers);
    let bar = indicatif::ProgressBar::new(s.peers as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} {elapsed:>4} building peers {pos}/{len}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
    );
    let mut peers = Vec::with_capacity(s.peers);
    let mut starts = Vec::with_capacity(s.peers);
    for (i, indices) in shards.iter().enumerate() {
        let trainer = Trainer::new(
            &opts.train,
            dataset.shape,
            dataset.classes,
            dataset.train.subset(indices),
            empty.clone(),
        )
        .with_context(|| format!("building peer {i}'s model"))?;
        let late = i < honest
            && s.churn.late_join_share > 0.0
            && rng.random::<f64>() < s.churn.late_join_share;
        let start = if late {
            Duration::from_secs_f64(rng.random::<f64>() * s.churn.join_within_secs)
        } else {
            Duration::ZERO
        };
        let hostile = (i >= honest).then_some(checked.hostile).flatten();
        let id = u32::try_from(i).context("too many peers")?;
        peers.push(SimPeer::new(
            id,
            hostile,
            trainer,
            &opts.round,
            core.clone(),
            s.seed,
            if late { Life::NotYet } else { Life::Up },
        )?);
        starts.push(start);
        bar.inc(1);
    }
    bar.finish_and_clear();
    let encoding = cfg.averaging.encoding;
    let (model_values, model_bytes) = peers
        .first()
        .map(|p| {
            p.trainer
                .export()
                .map(|m| (m.values().len() as u64, m.layout().encoded_len(encoding)))
        })
        .transpose()?
        .unwrap_or((0, 0));
    let nominal_round = (checked.step * u32::try_from(opts.round.steps).unwrap_or(u32::MAX))
        .max(crate::train::round::MIN_ROUND_TIME)
        + opts.round.merge_wait;
    let last_event = s
        .partitions
        .iter()
        .map(|p| p.heal_secs)
        .chain([s.churn.join_within_secs])
        .fold(0.0, f64::max);
    let rules = Rules {
        round: opts.round,
        rounds: s.rounds,
        step: checked.step,
        request_timeout: cfg.averaging.request_timeout(),
        fetch: opts.fetch,
        eval_every: s.eval.every_rounds,
        eval_every_secs: (s.eval.every_secs > 0.0)
            .then(|| Duration::from_secs_f64(s.eval.every_secs)),
        trace_every: Duration::from_secs_f64(s.eval.trace_every_secs),
        crash_per_round: s.churn.crash_per_round,
        down: Duration::from_secs_f64(s.churn.down_secs),
        leave_share: s.churn.leave_share,
        target: s.target_accuracy,
        exact: s.exact_averaging,
        core,
        give_up: nominal_round * u32::try_from(s.rounds.saturating_mul(4)).unwrap_or(u32::MAX)
            + Duration::from_secs_f64(last_event + s.churn.down_secs),
    };
    let progress = indicatif::ProgressBar::new(s.rounds);
    progress.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} {elapsed:>4} rounds {pos}/{len} (slowest peer) {msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
    );
    let links = net::Links::new(s.seed, &s.network, &s.partitions);
    let mut world = World::new(
        peers,
        links,
        rules,
        test,
        model_bytes,
        rng,
        Some(progress.clone()),
    );
    world.model_values = model_values;
    world.encoding = encoding;
    world.chunk_size = cfg.averaging.chunk_size;
    world.chunks = engine::chunk_table(model_bytes, cfg.averaging.chunk_size);
    world.schedule_starts(&starts);
    let threads = if args.threads == 0 {
        std::thread::available_parallelism().map_or(1, usize::from)
    } else {
        args.threads
    };
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("murmur-sim-{i}"))
        .build()
        .context("starting the simulation's threads")?;
    pool.install(|| -> anyhow::Result<()> {
        world.run().context("simulating")?;
        world.final_evaluation().context("evaluating")?;
        Ok(())
    })?;
    progress.finish_and_clear();

    // The trace: every peer line and network line, ordered by time (then peer).
    let mut lines: Vec<(f64, u32, String)> = Vec::new();
    for p in &world.peers {
        for l in &p.trace {
            lines.push((l.t, l.peer, serde_json::to_string(l)?));
        }
    }
    for l in &world.net_lines {
        lines.push((l.t, u32::MAX, serde_json::to_string(l)?));
    }
    lines.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let mut hasher = blake3::Hasher::new();
    let mut out: Option<std::io::BufWriter<std::fs::File>> = match &args.trace {
        Some(path) => Some(std::io::BufWriter::new(
            std::fs::File::create(path)
                .with_context(|| format!("creating trace {}", path.display()))?,
        )),
        None => None,
    };
    for (_, _, line) in &lines {
        hasher.update(line.as_bytes());
        hasher.update(b"\n");
        if let Some(out) = &mut out {
            writeln!(out, "{line}")?;
        }
    }
    if let Some(mut out) = out {
        out.flush()?;
    }
    let summary = summarize(
        &world,
        s,
        args,
        hasher.finalize().to_hex().to_string(),
        wall,
    );
    Ok(summary)
}

fn summarize(
    world: &World,
    s: &Scenario,
    args: &SimArgs,
    digest: String,
    wall: Instant,
) -> SimSummary {
    let peers: Vec<PeerSummary> = world
        .peers
        .iter()
        .map(|p| {
            let (accuracy, loss) = p
                .last_eval
                .map_or((0.0, 0.0), |(e, _)| (e.accuracy, e.loss));
            PeerSummary {
                peer_id: peer_name(p.id),
                hostile: p.hostile.map(|h| h.to_string()),
                accuracy,
                loss,
                version: p.core.version(),
                merges: p.merges,
                bytes_sent: p.bytes_sent,
                bytes_received: p.bytes_received,
                chunks_fetched: p.chunks_fetched,
                chunks_reused: 0,
                samples: p.trainer.samples_seen(),
                eval_samples: p.last_eval.map_or(0, |(_, s)| s),
                cpu_secs: None,
                eval_cpu_secs: 0.0,
                resource_utilization: None,
                communication_overhead: None,
                reached_target_secs: p.reached.map(|(t, _, _)| t.as_secs_f64()),
                reached_target_samples: p.reached.map(|(_, s, _)| s),
                reached_target_bytes: p.reached.map(|(_, _, b)| b),
                merges_rejected: p.merges_rejected,
                rollbacks: p.rollbacks,
                connected: Vec::new(),
                blocked: p.core.blocked().map(|(b, _)| peer_name(*b)).collect(),
            }
        })
        .collect();
    let honest: Vec<&PeerSummary> = peers
        .iter()
        .zip(&world.peers)
        .filter(|(_, p)| p.hostile.is_none() && p.life == Life::Up)
        .map(|(s, _)| s)
        .collect();
    let accs: Vec<f32> = honest.iter().map(|p| p.accuracy).collect();
    let mean = |v: &[f64]| (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64);
    let reached_secs: Vec<f64> = honest
        .iter()
        .filter_map(|p| p.reached_target_secs)
        .collect();
    let reached_samples: Vec<f64> = honest
        .iter()
        .filter_map(|p| p.reached_target_samples.map(|s| s as f64))
        .collect();
    let testnet = TestnetSummary {
        mean_accuracy: if accs.is_empty() {
            0.0
        } else {
            accs.iter().sum::<f32>() / accs.len() as f32
        },
        min_accuracy: accs.iter().copied().fold(f32::INFINITY, f32::min).min(1.0),
        consensus_distance: world.net_lines.last().map(|l| l.consensus_distance),
        seconds: world.now.as_secs_f64(),
        stop: if world.stop_reason == "rounds" {
            StopReason::Rounds
        } else {
            StopReason::Duration
        },
        each_reached_secs: None,
        all_reached_samples: all_reached_samples(&world.peers, s.target_accuracy),
        dir: args.trace.clone().unwrap_or_default(),
        dashboard: String::new(),
        peers,
    };
    SimSummary {
        rounds: s.rounds,
        seed: s.seed,
        wall_secs: wall.elapsed().as_secs_f64(),
        peak_rss_mib: peak_rss_mib(),
        mean_reached_target_secs: mean(&reached_secs),
        mean_reached_target_samples: mean(&reached_samples),
        reached_target: reached_secs.len(),
        trace_digest: digest,
        trace: args.trace.clone(),
        final_consensus_distance: world.net_lines.last().map_or(0.0, |l| l.consensus_distance),
        blocks: world.peers.iter().map(|p| p.blocks).sum(),
        throttled: world.peers.iter().map(|p| p.throttled).sum(),
        history: world.history.clone(),
        testnet,
    }
}

impl SimSummary {
    /// Prints the testnet's per-peer table (at most 20 peers, then a count) and the run's
    /// cost, or one JSON line.
    pub fn print(&self, json: bool) {
        if json {
            println!("{}", serde_json::to_string(self).unwrap_or_default());
            return;
        }
        let mut shown = self.testnet.clone();
        let hidden = shown.peers.len().saturating_sub(20);
        shown.peers.truncate(20);
        shown.print(false);
        if hidden > 0 {
            println!("({hidden} more peers not shown; --json lists them all)");
        }
        println!(
            "simulated {} peers for {} rounds: {:.1} virtual s in {:.1} wall s, peak memory {}; \
             consensus distance {:.4e}; target reached by {} honest peers (mean {} samples); \
             trace digest {}",
            self.testnet.peers.len(),
            self.rounds,
            self.testnet.seconds,
            self.wall_secs,
            self.peak_rss_mib
                .map_or("-".into(), |m| format!("{m:.0} MiB")),
            self.final_consensus_distance,
            self.reached_target,
            self.mean_reached_target_samples
                .map_or("-".into(), |s| format!("{s:.0}")),
            self.trace_digest.get(..16).unwrap_or_default(),
        );
    }
}

/// Serves the dashboard on `addr` with the simulation's history until Ctrl-C.
pub async fn serve(addr: std::net::SocketAddr, summary: &SimSummary) -> anyhow::Result<()> {
    let history = crate::history::History::new(summary.history.len());
    for point in &summary.history {
        history.record(point.clone());
    }
    let status = crate::status::NodeStatus {
        peer_id: "simulation".into(),
        network_id: "murmur-sim".into(),
        accuracy: summary.testnet.mean_accuracy,
        uptime_secs: summary.testnet.seconds,
        consensus_distance: summary.testnet.consensus_distance,
        ..crate::status::NodeStatus::default()
    };
    let (_status_tx, status_rx) = tokio::sync::watch::channel(status);
    let (events, _) = tokio::sync::broadcast::channel(16);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let bound = crate::api::serve(
        addr,
        crate::api::Sources {
            status: status_rx,
            history,
            events,
        },
        stop_rx,
    )
    .await?;
    eprintln!("dashboard of the simulation: http://{bound}/ (Ctrl-C to stop)");
    tokio::signal::ctrl_c().await?;
    let _ = stop_tx.send(true);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stratified_subset_keeps_each_class_share_and_depends_on_the_seed() {
        // 600 of class 0, 300 of class 1, 100 of class 2.
        let labels: Vec<u8> = (0..1000)
            .map(|i| match i % 10 {
                0..=5 => 0,
                6..=8 => 1,
                _ => 2,
            })
            .collect();
        let picked = stratified(&labels, 100, 1);
        let count = |c: u8| picked.iter().filter(|&&i| labels[i] == c).count();
        assert_eq!((count(0), count(1), count(2)), (60, 30, 10));
        assert!(picked.windows(2).all(|w| w[0] < w[1]), "sorted, no repeats");
        assert_eq!(picked, stratified(&labels, 100, 1));
        assert_ne!(picked, stratified(&labels, 100, 2));
    }
}
