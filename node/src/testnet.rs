//! `murmur testnet`: N peers of this binary on this machine, one process each, with
//! generated config files (peer i on shard i/N, bootstrapped from peer 0). Shows live progress
//! from the peers' `/api/status`, stops every child when done or on Ctrl-C (children also stop
//! when this process dies: each watches the stdin pipe this process holds), and prints a
//! per-peer summary, or with `--json` one JSON line.

use crate::config::{NodeConfig, template};
use crate::data::{DatasetName, Partition, ShardSpec};
use crate::hostile::Hostile;
use crate::model::ModelKind;
use crate::status::NodeStatus;
use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};

/// How often the peers are polled.
const POLL_EVERY: Duration = Duration::from_millis(1000);
/// How often the peers are polled with `--until-accuracy`, to catch the moment every peer is
/// at the target more closely.
const POLL_EVERY_UNTIL_ACCURACY: Duration = Duration::from_millis(250);
/// Clock ticks per second of the CPU times in `/proc/<pid>/stat` (USER_HZ, 100 on Linux).
const CLOCK_TICKS_PER_SEC: f64 = 100.0;
/// How long a peer may take to stop after its stdin closes before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// Largest status response read from a peer.
const MAX_STATUS_BYTES: usize = 4 << 20;

/// Arguments of `murmur testnet`.
#[derive(Debug, Clone, clap::Args)]
pub struct TestnetArgs {
    /// Number of peers.
    #[arg(long, default_value_t = 8)]
    pub peers: usize,
    #[arg(long, default_value = "digits")]
    pub dataset: DatasetName,
    /// Directory holding the dataset's IDX files, passed to every peer (default for
    /// fashion-mnist: /usr/share/datasets/fashion-mnist; mnist has none). The dataset is
    /// loaded once before any peer starts, so a missing one is reported with the fix.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    #[arg(long, default_value = "mlp")]
    pub model: ModelKind,
    #[arg(long, default_value = "iid")]
    pub partition: Partition,
    /// Stop after this many seconds (default 60 unless --until-accuracy or --until-samples
    /// is given).
    #[arg(long)]
    pub duration: Option<f64>,
    /// Stop once every peer's test accuracy reaches this (0..1).
    #[arg(long)]
    pub until_accuracy: Option<f32>,
    /// Record when each peer first reports this test accuracy (0..1), without stopping
    /// (`--until-accuracy` records it too).
    #[arg(long)]
    pub target_accuracy: Option<f32>,
    /// Stop once every peer's reported accuracy was measured after at least this many
    /// training samples.
    #[arg(long)]
    pub until_samples: Option<u64>,
    /// Directory for the peers' configs, data and logs (default: a new one under the system
    /// temp dir). It is kept afterwards.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Print the summary as one JSON line, last on stdout.
    #[arg(long)]
    pub json: bool,
    /// `<n>:<behaviour>`: the last n peers play hostile (`murmur run --hostile`, see
    /// docs/security.md), e.g. `2:scale:100`. Accuracies and stop conditions count the
    /// honest peers only.
    #[arg(long)]
    pub hostile: Option<HostileSpec>,
    #[command(flatten)]
    pub tuning: Tuning,
}

/// How many peers of a testnet are hostile, and how.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HostileSpec {
    pub count: usize,
    pub behaviour: Hostile,
}

impl std::str::FromStr for HostileSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (count, behaviour) = s
            .split_once(':')
            .ok_or_else(|| format!("expected <n>:<behaviour>, e.g. 2:scale:100, got {s:?}"))?;
        Ok(Self {
            count: count
                .parse()
                .map_err(|e| format!("hostile peer count {count:?}: {e}"))?,
            behaviour: behaviour.parse()?,
        })
    }
}

/// Training and averaging settings for every peer of a testnet; each left out keeps the
/// peer config's default (see `murmur init`).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Tuning {
    /// `training.lr` of every peer.
    #[arg(long)]
    pub lr: Option<f64>,
    /// `training.momentum` of every peer.
    #[arg(long)]
    pub momentum: Option<f64>,
    /// `training.batch_size` of every peer.
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// `averaging.round_steps` of every peer.
    #[arg(long)]
    pub round_steps: Option<usize>,
    /// `averaging.fanout` of every peer.
    #[arg(long)]
    pub fanout: Option<usize>,
    /// `training.lr_decay_samples` of every peer.
    #[arg(long)]
    pub lr_decay_samples: Option<u64>,
    /// `training.lr_cosine_samples` of every peer.
    #[arg(long)]
    pub lr_cosine_samples: Option<u64>,
    /// `training.balance_classes` of every peer.
    #[arg(long)]
    pub balance_classes: Option<bool>,
    /// `training.momentum_mode` of every peer: local, reset or quasi-global.
    #[arg(long)]
    pub momentum_mode: Option<crate::train::optim::MomentumMode>,
    /// `training.warmup_samples` of every peer.
    #[arg(long)]
    pub warmup_samples: Option<u64>,
    /// `averaging.staleness` of every peer: ignore, prefer-fresh or same-round.
    #[arg(long)]
    pub staleness: Option<crate::averaging::policy::Staleness>,
    /// `averaging.weighting` of every peer: samples or uniform.
    #[arg(long)]
    pub weighting: Option<crate::averaging::policy::Weighting>,
    /// `averaging.merge_wait_secs` of every peer.
    #[arg(long)]
    pub merge_wait_secs: Option<f64>,
    /// `averaging.outer_lr` of every peer.
    #[arg(long)]
    pub outer_lr: Option<f64>,
    /// `averaging.outer_momentum` of every peer.
    #[arg(long)]
    pub outer_momentum: Option<f64>,
    /// `averaging.aggregation` of every peer: mean, clip, median or trimmed-mean.
    #[arg(long)]
    pub aggregation: Option<crate::averaging::robust::Aggregation>,
    /// `averaging.accept_loss_ratio` of every peer (0 = no acceptance bound).
    #[arg(long)]
    pub accept_loss_ratio: Option<f64>,
    /// `averaging.max_distance` of every peer (0 = no distance check).
    #[arg(long)]
    pub max_distance: Option<f64>,
    /// `training.holdout_samples` of every peer (0 = no held-back examples, no loss check).
    #[arg(long)]
    pub holdout_samples: Option<usize>,
    /// `averaging.overlap` of every peer: true or false.
    #[arg(long)]
    pub overlap: Option<bool>,
    /// `averaging.encoding` of every peer: f32, f16, bf16, int8 or int8:<block>.
    #[arg(long)]
    pub encoding: Option<murmur_protocol::Encoding>,
    /// `network.emulate_link` of every peer (a test aid): each peer's manifest and chunk
    /// transfers pass through its own emulated link, e.g. `20mbit,40ms`.
    #[arg(long)]
    pub emulate_link: Option<crate::network::link::LinkSpec>,
}

impl Tuning {
    /// Applies the settings given to `cfg`.
    pub fn apply(&self, cfg: &mut NodeConfig) {
        if let Some(v) = self.lr {
            cfg.training.lr = v;
        }
        if let Some(v) = self.momentum {
            cfg.training.momentum = v;
        }
        if let Some(v) = self.batch_size {
            cfg.training.batch_size = v;
        }
        if let Some(v) = self.round_steps {
            cfg.averaging.round_steps = v;
        }
        if let Some(v) = self.fanout {
            cfg.averaging.fanout = v;
        }
        if let Some(v) = self.lr_decay_samples {
            cfg.training.lr_decay_samples = v;
        }
        if let Some(v) = self.lr_cosine_samples {
            cfg.training.lr_cosine_samples = v;
        }
        if let Some(v) = self.balance_classes {
            cfg.training.balance_classes = v;
        }
        if let Some(v) = self.momentum_mode {
            cfg.training.momentum_mode = v;
        }
        if let Some(v) = self.warmup_samples {
            cfg.training.warmup_samples = v;
        }
        if let Some(v) = self.staleness {
            cfg.averaging.staleness = v;
        }
        if let Some(v) = self.weighting {
            cfg.averaging.weighting = v;
        }
        if let Some(v) = self.merge_wait_secs {
            cfg.averaging.merge_wait_secs = v;
        }
        if let Some(v) = self.outer_lr {
            cfg.averaging.outer_lr = v;
        }
        if let Some(v) = self.outer_momentum {
            cfg.averaging.outer_momentum = v;
        }
        if let Some(v) = self.aggregation {
            cfg.averaging.aggregation = v;
        }
        if let Some(v) = self.accept_loss_ratio {
            cfg.averaging.accept_loss_ratio = v;
        }
        if let Some(v) = self.max_distance {
            cfg.averaging.max_distance = v;
        }
        if let Some(v) = self.holdout_samples {
            cfg.training.holdout_samples = v;
        }
        if let Some(v) = self.overlap {
            cfg.averaging.overlap = v;
        }
        if let Some(v) = self.encoding {
            cfg.averaging.encoding = v;
        }
        if let Some(v) = self.emulate_link {
            cfg.network.emulate_link = Some(v);
        }
    }
}

/// One peer in the summary.
#[derive(Debug, Clone, Serialize)]
pub struct PeerSummary {
    pub peer_id: String,
    /// The behaviour of a hostile peer; `None` for an honest one.
    pub hostile: Option<String>,
    pub accuracy: f32,
    pub loss: f32,
    pub version: u64,
    pub merges: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub chunks_fetched: u64,
    pub chunks_reused: u64,
    /// Training samples folded into its model.
    pub samples: u64,
    /// Training samples folded in when `accuracy` was measured.
    pub eval_samples: u64,
    /// CPU seconds (user + system) its process had used when the testnet stopped; `None`
    /// when unreadable.
    pub cpu_secs: Option<f64>,
    /// CPU seconds its training thread had spent evaluating on the test split.
    pub eval_cpu_secs: f64,
    /// Share of its process CPU time spent on training steps, over the whole run
    /// (docs/api.md); `None` in the simulation, which models no CPU.
    pub resource_utilization: Option<f32>,
    /// Share of its process CPU time spent communicating (the async runtime's threads:
    /// network, serving, fetching, verifying, publishing; and merging), over the whole run.
    pub communication_overhead: Option<f32>,
    /// With `--until-accuracy` or `--target-accuracy`: seconds until this peer first
    /// reported the target accuracy.
    pub reached_target_secs: Option<f64>,
    /// With `--until-accuracy` or `--target-accuracy`: `eval_samples` of the first status
    /// reporting the target.
    pub reached_target_samples: Option<u64>,
    /// With `--until-accuracy` or `--target-accuracy`: bytes it had received over the sync
    /// protocol (manifests and chunks, framing included) by the first status reporting the
    /// target.
    pub reached_target_bytes: Option<u64>,
    /// Partner models it refused.
    pub merges_rejected: u64,
    /// Returns to its last good weights after training diverged.
    pub rollbacks: u64,
    /// Peers it was connected to at the end.
    pub connected: Vec<String>,
    /// Peers it had blocked at the end.
    pub blocked: Vec<String>,
}

/// Why the testnet stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// Every peer reported `--until-accuracy` at the same poll.
    Accuracy,
    /// Every peer had trained on `--until-samples`.
    Samples,
    /// `--duration` ran out.
    Duration,
    /// Ctrl-C.
    Interrupted,
    /// Every honest peer ran its rounds (`murmur sim`).
    Rounds,
}

/// The testnet's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct TestnetSummary {
    pub peers: Vec<PeerSummary>,
    /// Over the honest peers.
    pub mean_accuracy: f32,
    /// Over the honest peers.
    pub min_accuracy: f32,
    pub consensus_distance: Option<f64>,
    pub seconds: f64,
    pub stop: StopReason,
    /// With `--until-accuracy`: seconds until every peer had reported the target at least
    /// once (`seconds` is until all report it at the same time).
    pub each_reached_secs: Option<f64>,
    /// With `--until-accuracy` or `--target-accuracy`: at the first poll where every honest
    /// peer reported the target at once, the most samples behind a peer's reported accuracy
    /// (its `eval_samples`).
    pub all_reached_samples: Option<u64>,
    pub dir: PathBuf,
    pub dashboard: String,
}

struct Peer {
    hostile: Option<Hostile>,
    child: Child,
    dashboard: SocketAddr,
    last: Option<NodeStatus>,
    /// Seconds and `eval_samples` when it first reported the target accuracy.
    /// When it first reported the target: seconds, samples and bytes fetched by then.
    reached: Option<(f64, u64, u64)>,
    cpu_secs: Option<f64>,
}

/// CPU seconds (user + system) process `pid` has used, from `/proc/<pid>/stat`.
fn process_cpu_secs(pid: u32) -> Option<f64> {
    parse_stat_cpu_secs(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// utime + stime (fields 14 and 15) of a `/proc/<pid>/stat` line, in seconds. The fields
/// are counted from after the last `)`, since the command name before it may hold spaces.
fn parse_stat_cpu_secs(stat: &str) -> Option<f64> {
    let rest = stat.get(stat.rfind(')')? + 1..)?;
    // `rest` starts at field 3 (state), so utime is its 12th field.
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) as f64 / CLOCK_TICKS_PER_SEC)
}

/// A port free now and not handed out before by this process: the OS may give a port just
/// released by one probe to the next, and two peers (or a peer's listener and another's
/// dashboard) would then collide.
fn free_port() -> anyhow::Result<u16> {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    for _ in 0..100 {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        if !given.contains(&port) {
            given.push(port);
            return Ok(port);
        }
    }
    anyhow::bail!("no fresh free port after 100 tries")
}

/// Writes peer `i`'s config and returns its path, dashboard address and dial address.
fn write_peer(
    dir: &Path,
    network_id: &str,
    args: &TestnetArgs,
    i: usize,
    bootstrap: Option<&libp2p::Multiaddr>,
) -> anyhow::Result<(PathBuf, SocketAddr, libp2p::Multiaddr)> {
    let data_dir = dir.join(format!("peer{i}"));
    let key = crate::identity::load_or_create(&data_dir)?;
    let port = free_port()?;
    let listen: libp2p::Multiaddr = format!("/ip4/127.0.0.1/tcp/{port}").parse()?;
    let dashboard = SocketAddr::from(([127, 0, 0, 1], free_port()?));
    let mut cfg = NodeConfig {
        network_id: network_id.to_string(),
        data_dir,
        ..NodeConfig::default()
    };
    cfg.network.listen = vec![listen.clone()];
    cfg.network.bootstrap = bootstrap.into_iter().cloned().collect();
    cfg.network.mdns = false;
    cfg.training.dataset = args.dataset;
    cfg.training.data_dir = args.data_dir.clone();
    cfg.training.model = args.model.clone();
    cfg.training.partition = args.partition;
    cfg.training.shard = ShardSpec {
        index: i,
        count: args.peers,
    };
    cfg.training.threads = 1;
    cfg.dashboard.listen = dashboard;
    args.tuning.apply(&mut cfg);
    cfg.validate()
        .with_context(|| format!("config of peer {i}"))?;
    let path = dir.join(format!("peer{i}.toml"));
    std::fs::write(&path, template::render(&cfg))
        .with_context(|| format!("writing {}", path.display()))?;
    let dial = format!("{listen}/p2p/{}", key.public().to_peer_id()).parse()?;
    Ok((path, dashboard, dial))
}

fn spawn_peer(config: &Path, log: &Path, hostile: Option<Hostile>) -> anyhow::Result<Child> {
    let exe = std::env::current_exe().context("finding the murmur binary")?;
    let log_file =
        std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let err_file = log_file.try_clone()?;
    let mut command = Command::new(exe);
    if let Some(h) = hostile {
        command.arg("run").arg("--hostile").arg(h.to_string());
    } else {
        command.arg("run");
    }
    command
        .args(["--exit-with-parent", "--config"])
        .arg(config)
        .env("RAYON_NUM_THREADS", "1")
        .stdin(Stdio::piped())
        .stdout(log_file)
        .stderr(err_file)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting the peer of {}", config.display()))
}

/// GET /api/status from a peer, by hand: one request on loopback needs no HTTP client.
async fn fetch_status(addr: SocketAddr) -> anyhow::Result<NodeStatus> {
    let mut stream =
        tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(addr))
            .await??;
    stream
        .write_all(b"GET /api/status HTTP/1.0\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await?;
    let mut buf = Vec::new();
    tokio::time::timeout(
        Duration::from_secs(2),
        (&mut stream)
            .take(MAX_STATUS_BYTES as u64)
            .read_to_end(&mut buf),
    )
    .await??;
    let start = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("no HTTP header end")?
        + 4;
    Ok(serde_json::from_slice(&buf[start..])?)
}

/// Runs the testnet to completion.
pub async fn run(args: &TestnetArgs) -> anyhow::Result<TestnetSummary> {
    anyhow::ensure!(args.peers >= 1, "--peers must be at least 1");
    let hostile = args.hostile.map_or(0, |h| h.count);
    anyhow::ensure!(
        hostile < args.peers,
        "--hostile: at least one peer (the first) must be honest"
    );
    let dir = match &args.dir {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!("murmur-testnet-{}", std::process::id())),
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    // Every peer loads the dataset itself; one that cannot would only exit with "see log".
    // Load it here first, so that the error and its fix reach the user before any peer
    // starts. The peers' configs live in `dir`, so a relative path is made absolute.
    let data_dir = match &args.data_dir {
        Some(d) => {
            Some(std::path::absolute(d).with_context(|| format!("resolving {}", d.display()))?)
        }
        None => None,
    };
    crate::data::load(args.dataset, data_dir.as_deref()).with_context(|| {
        format!(
            "loading the {} dataset before starting the peers",
            args.dataset
        )
    })?;
    let args = &TestnetArgs {
        data_dir,
        ..args.clone()
    };
    let network_id = format!("testnet-{}", std::process::id());
    let mut peers = Vec::with_capacity(args.peers);
    let mut first = None;
    for i in 0..args.peers {
        let (config, dashboard, dial) = write_peer(&dir, &network_id, args, i, first.as_ref())?;
        first.get_or_insert(dial);
        let role = args
            .hostile
            .filter(|_| i >= args.peers - hostile)
            .map(|h| h.behaviour);
        let child = spawn_peer(&config, &dir.join(format!("peer{i}.log")), role)?;
        peers.push(Peer {
            hostile: role,
            child,
            dashboard,
            last: None,
            reached: None,
            cpu_secs: None,
        });
    }
    let dashboard = format!("http://{}/", peers[0].dashboard);
    eprintln!("testnet of {} peers in {}", args.peers, dir.display());
    eprintln!("dashboard: {dashboard}");

    let duration = args.duration.map(Duration::from_secs_f64).or(
        if args.until_accuracy.is_none() && args.until_samples.is_none() {
            Some(Duration::from_secs(60))
        } else {
            None
        },
    );
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} {elapsed:>4} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    let started = Instant::now();
    let mut ticker = tokio::time::interval(
        if args.until_accuracy.is_some() || args.until_samples.is_some() {
            POLL_EVERY_UNTIL_ACCURACY
        } else {
            POLL_EVERY
        },
    );
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let mut all_reached: Option<u64> = None;
    let stop = loop {
        tokio::select! {
            _ = &mut ctrl_c => { bar.println("interrupted"); break StopReason::Interrupted; }
            _ = ticker.tick() => {}
        }
        for (i, p) in peers.iter_mut().enumerate() {
            if let Ok(Some(exit)) = p.child.try_wait() {
                bar.finish_and_clear();
                stop_all(&mut peers).await;
                anyhow::bail!(
                    "peer {i} exited ({exit}); see {}",
                    dir.join(format!("peer{i}.log")).display()
                );
            }
            if let Ok(s) = fetch_status(p.dashboard).await {
                if p.reached.is_none()
                    && s.version > 0
                    && args
                        .until_accuracy
                        .or(args.target_accuracy)
                        .is_some_and(|a| s.accuracy >= a)
                {
                    p.reached = Some((
                        started.elapsed().as_secs_f64(),
                        s.eval_samples,
                        s.counters.bytes_received,
                    ));
                }
                p.last = Some(s);
            }
        }
        let honest = || peers.iter().filter(|p| p.hostile.is_none());
        let accs: Vec<f32> = honest()
            .filter_map(|p| p.last.as_ref())
            .filter(|s| s.version > 0)
            .map(|s| s.accuracy)
            .collect();
        let (mean, min) = stats(&accs);
        let cd = peers[0].last.as_ref().and_then(|s| s.consensus_distance);
        let merges: u64 = peers
            .iter()
            .filter_map(|p| p.last.as_ref())
            .map(|s| s.counters.merges)
            .sum();
        bar.set_message(format!(
            "{}/{} peers up  mean acc {:.3}  min {:.3}  consensus dist {}  merges {merges}",
            accs.len(),
            peers.len(),
            mean,
            min,
            cd.map_or("-".into(), |d| format!("{d:.3e}"))
        ));
        bar.tick();
        let all_up = accs.len() == peers.len() - hostile;
        // The samples behind each peer's reported accuracy, so that a budget stop reports
        // accuracies measured at (or just past) the budget.
        let min_samples = honest()
            .map(|p| p.last.as_ref().map_or(0, |s| s.eval_samples))
            .min()
            .unwrap_or(0);
        if all_reached.is_none()
            && all_up
            && args
                .until_accuracy
                .or(args.target_accuracy)
                .is_some_and(|a| min >= a)
        {
            all_reached = honest()
                .filter_map(|p| p.last.as_ref().map(|s| s.eval_samples))
                .max();
        }
        if args.until_accuracy.is_some_and(|a| all_up && min >= a) {
            break StopReason::Accuracy;
        }
        if args
            .until_samples
            .is_some_and(|n| all_up && min_samples >= n)
        {
            break StopReason::Samples;
        }
        if duration.is_some_and(|d| started.elapsed() >= d) {
            break StopReason::Duration;
        }
    };
    let seconds = started.elapsed().as_secs_f64();
    for p in peers.iter_mut() {
        p.cpu_secs = p.child.id().and_then(process_cpu_secs);
    }
    bar.finish_and_clear();
    stop_all(&mut peers).await;

    let each_reached_secs = peers
        .iter()
        .filter(|p| p.hostile.is_none())
        .map(|p| p.reached.map(|(secs, _, _)| secs))
        .collect::<Option<Vec<f64>>>()
        .map(|t| t.into_iter().fold(0.0, f64::max));
    let summaries: Vec<PeerSummary> = peers
        .iter()
        .filter_map(|p| p.last.as_ref().map(|s| (s, p)))
        .map(|(s, p)| PeerSummary {
            peer_id: s.peer_id.clone(),
            hostile: p.hostile.map(|h| h.to_string()),
            accuracy: s.accuracy,
            loss: s.loss,
            version: s.version,
            merges: s.counters.merges,
            bytes_sent: s.counters.bytes_sent,
            bytes_received: s.counters.bytes_received,
            chunks_fetched: s.counters.chunks_fetched,
            chunks_reused: s.counters.chunks_reused,
            samples: s.samples,
            eval_samples: s.eval_samples,
            cpu_secs: p.cpu_secs,
            eval_cpu_secs: s.counters.eval_cpu_micros as f64 / 1e6,
            resource_utilization: Some(s.counters.train_share),
            communication_overhead: Some(s.counters.comm_share),
            reached_target_secs: p.reached.map(|(secs, _, _)| secs),
            reached_target_samples: p.reached.map(|(_, samples, _)| samples),
            reached_target_bytes: p.reached.map(|(_, _, bytes)| bytes),
            merges_rejected: s.counters.merges_rejected,
            rollbacks: s.counters.rollbacks,
            connected: s.connected.clone(),
            blocked: s.blocked.clone(),
        })
        .collect();
    let accs: Vec<f32> = summaries
        .iter()
        .filter(|s| s.hostile.is_none())
        .map(|s| s.accuracy)
        .collect();
    let (mean, min) = stats(&accs);
    Ok(TestnetSummary {
        peers: summaries,
        mean_accuracy: mean,
        min_accuracy: min,
        consensus_distance: peers[0].last.as_ref().and_then(|s| s.consensus_distance),
        seconds,
        stop,
        each_reached_secs,
        all_reached_samples: all_reached,
        dir,
        dashboard,
    })
}

fn stats(values: &[f32]) -> (f32, f32) {
    if values.is_empty() {
        return (0.0, 0.0);
    }
    let mean = values.iter().sum::<f32>() / values.len() as f32;
    (mean, values.iter().copied().fold(f32::INFINITY, f32::min))
}

/// Closes every child's stdin (they shut down cleanly), then kills whoever is left.
async fn stop_all(peers: &mut [Peer]) {
    for p in peers.iter_mut() {
        drop(p.child.stdin.take());
    }
    for p in peers.iter_mut() {
        if tokio::time::timeout(STOP_GRACE, p.child.wait())
            .await
            .is_err()
        {
            let _ = p.child.kill().await;
        }
    }
}

impl TestnetSummary {
    /// Prints the per-peer table, or one JSON line.
    pub fn print(&self, json: bool) {
        if json {
            println!("{}", serde_json::to_string(self).unwrap_or_default());
            return;
        }
        println!(
            "{:<54} {:>8} {:>7} {:>7} {:>6} {:>10} {:>10} {:>7} {:>7} {:>10} {:>7} {:>7} {:>7} {:>8}",
            "peer",
            "accuracy",
            "loss",
            "version",
            "merges",
            "sent",
            "received",
            "fetched",
            "reused",
            "samples",
            "cpu s",
            "train %",
            "comm %",
            "target s"
        );
        for p in &self.peers {
            let name = match &p.hostile {
                Some(h) => format!("{} [hostile {h}]", p.peer_id.get(..24).unwrap_or_default()),
                None => p.peer_id.clone(),
            };
            println!(
                "{:<54} {:>8.4} {:>7.4} {:>7} {:>6} {:>10} {:>10} {:>7} {:>7} {:>10} {:>7} {:>7} {:>7} {:>8}",
                name,
                p.accuracy,
                p.loss,
                p.version,
                p.merges,
                p.bytes_sent,
                p.bytes_received,
                p.chunks_fetched,
                p.chunks_reused,
                p.samples,
                p.cpu_secs.map_or("-".into(), |c| format!("{c:.1}")),
                p.resource_utilization
                    .map_or("-".into(), |s| format!("{:.1}", s * 100.0)),
                p.communication_overhead
                    .map_or("-".into(), |s| format!("{:.1}", s * 100.0)),
                p.reached_target_secs
                    .map_or("-".into(), |t| format!("{t:.1}"))
            );
        }
        println!(
            "mean accuracy {:.4}, min {:.4}, consensus distance {}, {:.1}s (stopped: {:?}); configs and logs in {}",
            self.mean_accuracy,
            self.min_accuracy,
            self.consensus_distance
                .map_or("-".into(), |d| format!("{d:.3e}")),
            self.seconds,
            self.stop,
            self.dir.display()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_specs_parse_and_bad_ones_are_refused() {
        let spec: HostileSpec = "2:scale:100".parse().unwrap();
        assert_eq!((spec.count, spec.behaviour), (2, Hostile::Scale(100.0)));
        assert!("scale:100".parse::<HostileSpec>().is_err());
        assert!("x:random".parse::<HostileSpec>().is_err());
        assert!("2".parse::<HostileSpec>().is_err());
    }

    #[test]
    fn cpu_time_is_read_after_the_last_parenthesis() {
        // comm "(a) b" holds a parenthesis and a space; utime 250, stime 50 ticks.
        let stat = "4242 ((a) b) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 3 0";
        assert_eq!(parse_stat_cpu_secs(stat), Some(3.0));
        assert_eq!(parse_stat_cpu_secs("4242 (x) S 1"), None);
    }
}
