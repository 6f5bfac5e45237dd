//! `murmur run`: one peer, from a config file with command-line overrides. Loads and checks
//! the config, starts the node and its dashboard, prints where they are, and shuts down
//! cleanly on Ctrl-C or SIGTERM.

use crate::averaging::fetch::FetchLimits;
use crate::averaging::outer::OuterParams;
use crate::averaging::policy::{Policy, Staleness};
use crate::config::NodeConfig;
use crate::data::ShardSpec;
use crate::network::NetworkConfig;
use crate::node::{self, NodeOptions};
use crate::train::worker::{Defence, LrSchedule, RoundPolicy};
use anyhow::Context;
use libp2p::Multiaddr;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Least time between two evaluations of a running peer's model on the test split.
const EVAL_EVERY: Duration = Duration::from_secs(2);

/// Arguments of `murmur run`. Flags override the config file's keys of the same name.
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// Peer config file (see `murmur init` and docs/config.md). Without one, defaults apply.
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Overrides `data_dir`.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Overrides `network_id`.
    #[arg(long)]
    pub network_id: Option<String>,
    /// Overrides `network.listen` (repeat for several addresses).
    #[arg(long)]
    pub listen: Vec<Multiaddr>,
    /// Overrides `network.bootstrap` (repeat for several peers).
    #[arg(long)]
    pub bootstrap: Vec<Multiaddr>,
    /// Overrides `training.shard` (`i/n`).
    #[arg(long)]
    pub shard: Option<ShardSpec>,
    /// Overrides `training.threads`.
    #[arg(long)]
    pub threads: Option<usize>,
    /// Overrides `dashboard.listen`.
    #[arg(long)]
    pub dashboard_listen: Option<SocketAddr>,
    /// Overrides `averaging.encoding`: f32, f16, bf16, int8 or int8:<block>.
    #[arg(long)]
    pub encoding: Option<murmur_protocol::Encoding>,
    /// Overrides `network.emulate_link`, a test and benchmark aid: manifest and chunk
    /// transfers pass through an emulated link of this rate and/or one-way latency, e.g.
    /// `20mbit,40ms`.
    #[arg(long)]
    pub emulate_link: Option<crate::network::link::LinkSpec>,
    /// Shut down when standard input closes: `murmur testnet` holds every child's stdin, so
    /// its peers stop with it however it ends.
    #[arg(long, hide = true)]
    pub exit_with_parent: bool,
    /// Play a hostile peer, for tests and attack runs only: scale:<factor>, random,
    /// samples-max, version-max, dup-chunks, unservable or layout (docs/security.md).
    #[arg(long, hide = true)]
    pub hostile: Option<crate::hostile::Hostile>,
}

impl RunArgs {
    /// The config file with the flags applied, validated.
    pub fn load(&self) -> anyhow::Result<NodeConfig> {
        let mut cfg = match &self.config {
            Some(path) => NodeConfig::load(path)?,
            None => NodeConfig::default(),
        };
        if let Some(d) = &self.data_dir {
            cfg.data_dir = d.clone();
        }
        if let Some(n) = &self.network_id {
            cfg.network_id = n.clone();
        }
        if !self.listen.is_empty() {
            cfg.network.listen = self.listen.clone();
        }
        if !self.bootstrap.is_empty() {
            cfg.network.bootstrap = self.bootstrap.clone();
        }
        if let Some(s) = self.shard {
            cfg.training.shard = s;
        }
        if let Some(t) = self.threads {
            cfg.training.threads = t;
        }
        if let Some(l) = self.dashboard_listen {
            cfg.dashboard.listen = l;
        }
        if let Some(e) = self.encoding {
            cfg.averaging.encoding = e;
        }
        if let Some(l) = self.emulate_link {
            cfg.network.emulate_link = Some(l);
        }
        cfg.validate()?;
        Ok(cfg)
    }

    /// The compute threads this run will use (0 = one per core), for setting up the thread
    /// pools before anything else runs. A config that does not load yields 0 here and its
    /// error later.
    pub fn threads(&self) -> usize {
        self.threads
            .or_else(|| self.load().ok().map(|c| c.training.threads))
            .unwrap_or(0)
    }
}

/// The node options a config describes.
pub fn options(cfg: &NodeConfig) -> NodeOptions {
    let (t, a) = (&cfg.training, &cfg.averaging);
    NodeOptions {
        data_dir: cfg.data_dir.clone(),
        network: NetworkConfig {
            network_id: cfg.network_id.clone(),
            listen: cfg.network.listen.clone(),
            bootstrap: cfg.network.bootstrap.clone(),
            relays: cfg.network.relays.clone(),
            external_addrs: cfg.network.external_addrs.clone(),
            relay_server: cfg.network.relay_server,
            relay_limits: cfg.network.relay_limits(),
            mdns: cfg.network.mdns,
            kademlia: cfg.network.kademlia,
            max_connections: cfg.network.max_connections,
            idle_timeout: cfg.network.idle_timeout(),
            request_timeout: a.request_timeout(),
            corrupt_served_chunks: false,
            emulate_link: cfg.network.emulate_link,
            never_answer: false,
            serving: cfg.network.serving(),
            psk: cfg.network.psk(),
            access: cfg.network.access(),
        },
        dataset: t.dataset,
        dataset_dir: t.data_dir().map(|p| p.to_path_buf()),
        partition: t.partition,
        shard: t.shard,
        train: t.train_config(),
        round: RoundPolicy {
            steps: a.round_steps as u64,
            max_time: a.round_time_limit(),
            min_time: crate::train::round::MIN_ROUND_TIME,
            eval_every: EVAL_EVERY,
            merge_wait: a.merge_wait(),
            overlap: a.overlap,
            publish_trained: a.staleness == Staleness::SameRound,
            lr_schedule: (t.lr_decay_samples > 0
                || t.warmup_samples > 0
                || t.lr_cosine_samples > 0)
                .then_some(LrSchedule {
                    base: t.lr,
                    warmup_samples: t.warmup_samples,
                    decay_samples: t.lr_decay_samples,
                    cosine_samples: t.lr_cosine_samples,
                }),
            outer: OuterParams {
                lr: a.outer_lr as f32,
                momentum: a.outer_momentum as f32,
            },
            defence: Defence {
                aggregation: a.aggregation,
                clip_factor: a.clip_factor as f32,
                max_distance: a.max_distance as f32,
                accept_loss_ratio: a.accept_loss_ratio as f32,
            },
        },
        policy: Policy {
            fanout: a.fanout,
            freshness: a.freshness(),
            weighting: a.weighting,
            staleness: a.staleness,
            gather: a.gather(),
        },
        chunk_size: a.chunk_size,
        encoding: a.encoding,
        fetch: FetchLimits {
            per_peer_inflight: a.max_inflight_per_peer,
            deadline: a.fetch_timeout(),
        },
        error_budget: a.error_budget,
        store_budget_bytes: cfg.store.memory_budget_bytes(),
        checkpoint_every: cfg.store.checkpoint_every(),
        hostile: None,
    }
}

/// Runs one peer until Ctrl-C or SIGTERM.
pub async fn run(args: &RunArgs) -> anyhow::Result<()> {
    let cfg = args.load()?;
    let mut opts = options(&cfg);
    // Fail closed: a key that did not parse must never mean a public network (validation
    // already refused it; this keeps it so if that ever changes).
    anyhow::ensure!(
        cfg.network.psk.is_empty() || opts.network.psk.is_some(),
        "network.psk is set but is not a valid key"
    );
    if let Some(h) = args.hostile {
        tracing::warn!("playing a hostile peer: {h}");
        opts.hostile = Some(h);
        opts.network.never_answer = h == crate::hostile::Hostile::Unservable;
    }
    let node = node::start(opts).await.context("starting the node")?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let dashboard = crate::api::serve(cfg.dashboard.listen, (&node).into(), stop_rx).await?;
    println!("peer {} on network {}", node.peer_id, cfg.network_id);
    println!("dashboard: http://{dashboard}/");
    if args.exit_with_parent {
        tokio::select! {
            _ = shutdown_signal() => {}
            _ = stdin_closed() => tracing::info!("parent gone"),
        }
    } else {
        shutdown_signal().await;
    }
    tracing::info!("shutting down");
    let _ = stop_tx.send(true);
    node.shutdown().await;
    Ok(())
}

async fn stdin_closed() {
    use tokio::io::AsyncReadExt;
    let mut stdin = tokio::io::stdin();
    let mut buf = [0u8; 64];
    while matches!(stdin.read(&mut buf).await, Ok(n) if n > 0) {}
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
