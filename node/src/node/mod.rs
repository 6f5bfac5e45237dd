//! A running murmur node: [`start`] loads the data, identity and checkpoint, binds the
//! network and starts the training thread, the network event loop and the node task, which
//! publishes a [`crate::status::NodeStatus`] snapshot. It owns [`NodeOptions`],
//! [`RunningNode`] and the node task's state; the task's work is split by concern:
//!
//! - `task`: the loop over events (announcements, rounds trained and published, averaging
//!   reports, the housekeeping tick), driving the averaging core and carrying out its plans
//!   and actions;
//! - `publish`: a published round → snapshot in the chosen encoding → store → checkpoint →
//!   announcement (the shared [`crate::averaging::announce`] builder);
//! - `checkpoints`: when a checkpoint is due and what a failed write does;
//! - `averaging`: one averaging task (fetch the plan's models, offer them to the trainer,
//!   report the fates and the fetches' ledgers);
//! - `view`: the status snapshot.
//!
//! Every decision on partners (whom to pull, from which holders, adopt or merge, with what
//! weights, whom to charge, block or disconnect, which version to announce) is made by the
//! IO-less [`crate::averaging::core`]: the node task feeds it real events on its monotonic
//! clock with an OS-seeded RNG and carries out what it returns. The node task owns that core;
//! it never touches the swarm (only the network [`Client`]) nor the model (only the trainer's
//! queue).

mod averaging;
mod checkpoints;
mod publish;
mod task;
mod view;

pub use checkpoints::CHECKPOINT_MAX_BACKOFF;

use crate::hostile::{self, Hostile};
use crate::status::{
    AveragingEvent, EVENT_BUFFER, NodeEvent, NodeStatus, PeerView, RECENT_AVERAGINGS,
};

use crate::averaging::announce::announcement;
use crate::averaging::core::{Action, Core, CoreConfig, Outcome, OwnModel, RoundStep};
use crate::averaging::fetch::FetchLimits;
use crate::averaging::peers::Heed;
use crate::averaging::policy::Policy;
use crate::data::{self, DatasetName, Partition, ShardSpec};
use crate::metrics::Counters;
use crate::network::{self, Client, Event, NetworkConfig, Traffic};
use crate::store::{ChunkStore, checkpoint};
use crate::train::worker::{RoundPolicy, RoundResult, ToTrainer, TrainerHandle};
use crate::train::{TrainConfig, Trainer};
use anyhow::Context;
use libp2p::PeerId;
use murmur_protocol::projection::project;
use murmur_protocol::{Announce, FlatParams, Layout, ManifestId, MetricsSummary, Snapshot};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::JoinHandle;

/// Everything a node needs to start.
#[derive(Debug, Clone)]
pub struct NodeOptions {
    pub data_dir: PathBuf,
    pub network: NetworkConfig,
    pub dataset: DatasetName,
    pub dataset_dir: Option<PathBuf>,
    pub partition: Partition,
    pub shard: ShardSpec,
    pub train: TrainConfig,
    pub round: RoundPolicy,
    pub policy: Policy,
    pub chunk_size: u32,
    /// How the published model is encoded (the checkpoint always keeps `f32`).
    pub encoding: murmur_protocol::Encoding,
    pub fetch: FetchLimits,
    pub error_budget: u32,
    pub store_budget_bytes: u64,
    /// Least time between two checkpoints; after failures in a row the wait doubles each
    /// time, up to [`CHECKPOINT_MAX_BACKOFF`].
    pub checkpoint_every: Duration,
    /// Play a hostile peer (tests and attack runs only).
    pub hostile: Option<Hostile>,
}

/// A started node. Dropping it stops it (prefer [`RunningNode::shutdown`]).
#[derive(Debug)]
#[must_use = "dropping a RunningNode stops it"]
pub struct RunningNode {
    pub peer_id: PeerId,
    pub client: Client,
    pub status: watch::Receiver<NodeStatus>,
    pub store: ChunkStore,
    /// Announcements, averagings and rejections as they happen (subscribe to listen).
    pub events: broadcast::Sender<NodeEvent>,
    /// What this node saw of the network over time.
    pub history: crate::history::History,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
    network: Option<JoinHandle<()>>,
    recorder: Option<JoinHandle<()>>,
}

impl RunningNode {
    /// The latest status snapshot.
    pub fn snapshot(&self) -> NodeStatus {
        self.status.borrow().clone()
    }

    /// Stops training and networking and waits for both.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        if let Some(net) = self.network.take() {
            net.abort();
            let _ = net.await;
        }
        if let Some(recorder) = self.recorder.take() {
            let _ = recorder.await;
        }
    }
}

impl Drop for RunningNode {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(net) = self.network.take() {
            net.abort();
        }
        if let Some(recorder) = self.recorder.take() {
            recorder.abort();
        }
    }
}

/// Starts a node: loads data, identity and checkpoint, binds the network, starts training.
pub async fn start(opts: NodeOptions) -> anyhow::Result<RunningNode> {
    std::fs::create_dir_all(&opts.data_dir)
        .with_context(|| format!("creating data dir {}", opts.data_dir.display()))?;
    let key = crate::identity::load_or_create(&opts.data_dir)?;
    let peer_id = key.public().to_peer_id();

    // Only this peer's shard of the training split is converted to features.
    let dataset = data::load_picked(
        opts.dataset,
        opts.dataset_dir.as_deref(),
        |labels, classes| {
            opts.shard
                .indices(labels, classes, &opts.partition, opts.train.seed)
        },
    )
    .with_context(|| {
        format!(
            "loading dataset {}, shard {} of {} with {}",
            opts.dataset, opts.shard.index, opts.shard.count, opts.partition
        )
    })?;
    let mut trainer = Trainer::new(
        &opts.train,
        dataset.shape,
        dataset.classes,
        dataset.train,
        dataset.test,
    )
    .context("building the model")?;

    let ck_path = checkpoint::checkpoint_path(&opts.data_dir);
    let checkpoint = checkpoint::load(&ck_path)
        .with_context(|| format!("loading checkpoint {}", ck_path.display()))?;
    let mut version = 0;
    if let Some(ck) = &checkpoint {
        trainer.import(&ck.params).with_context(|| {
            format!(
                "resuming from {} (was the model changed?)",
                ck_path.display()
            )
        })?;
        trainer.set_samples_seen(ck.samples);
        version = ck.version;
        tracing::info!(version, samples = ck.samples, manifest = %ck.manifest_id.short(), "resumed from checkpoint");
    }

    let store = ChunkStore::new(opts.store_budget_bytes);
    let traffic = Arc::new(Traffic::default());
    let counters = Arc::new(Counters::default());
    let (client, events, event_loop) =
        network::new(key, opts.network.clone(), store.clone(), traffic.clone())?;
    let network = tokio::spawn(event_loop.run());
    let trainer = TrainerHandle::spawn(trainer, opts.round, counters.clone())
        .context("starting the training thread")?;

    let (status_tx, status) = watch::channel(NodeStatus {
        peer_id: peer_id.to_string(),
        network_id: opts.network.network_id.clone(),
        version,
        resumed: checkpoint.is_some(),
        checkpoint_version: checkpoint.as_ref().map(|ck| ck.version),
        ..NodeStatus::default()
    });
    let (stop, stop_rx) = watch::channel(false);
    let (averaged, averaged_rx) = mpsc::channel(AVERAGING_REPORTS);
    let (events_tx, _) = broadcast::channel(EVENT_BUFFER);
    let history = crate::history::History::new(crate::history::HISTORY_POINTS);
    let recorder = crate::history::spawn_recorder(
        history.clone(),
        status.clone(),
        stop_rx.clone(),
        crate::history::HISTORY_EVERY,
    );
    let core = Core::new(
        CoreConfig {
            policy: opts.policy.clone(),
            error_budget: opts.error_budget,
        },
        version,
        checkpoint.is_some(),
    );
    let state = NodeTask {
        opts,
        peer_id,
        client: client.clone(),
        store: store.clone(),
        counters,
        traffic,
        core,
        rates: crate::averaging::rates::Rates::new(),
        layout: None,
        own: None,
        started: Instant::now(),
        rng: ChaCha8Rng::from_os_rng(),
        status: status_tx,
        last_checkpoint: None,
        checkpoint_failing: 0,
        checkpoint_version: checkpoint.as_ref().map(|ck| ck.version),
        checkpoint_error: None,
        unsaved: None,
        averaged,
        averagings: VecDeque::new(),
        adoption: None,
        gathering: None,
        events: events_tx.clone(),
    };
    let task = tokio::spawn(state.run(trainer, events, averaged_rx, stop_rx));
    Ok(RunningNode {
        peer_id,
        client,
        status,
        store,
        events: events_tx,
        history,
        stop,
        task: Some(task),
        network: Some(network),
        recorder: Some(recorder),
    })
}

/// This node's current model, as announced.
#[derive(Debug, Clone)]
struct Own {
    manifest: ManifestId,
    samples: u64,
    accuracy: f32,
    loss: f32,
    eval_samples: u64,
    projection: Vec<f32>,
}

struct NodeTask {
    opts: NodeOptions,
    peer_id: PeerId,
    client: Client,
    store: ChunkStore,
    counters: Arc<Counters>,
    traffic: Arc<Traffic>,
    /// Every partner decision: peers heard, plans, charges, blocks, the version counter.
    core: Core<PeerId>,
    /// Measured delivery rate per peer, fed and read by every fetch.
    rates: crate::averaging::rates::Rates,
    /// This node's model layout (known after its first round): a partner model of another
    /// is refused before any chunk of it is fetched.
    layout: Option<Layout>,
    own: Option<Own>,
    started: Instant,
    rng: ChaCha8Rng,
    status: watch::Sender<NodeStatus>,
    last_checkpoint: Option<Instant>,
    /// Checkpoint writes failed in a row (0 after a success): each doubles the wait before
    /// the next attempt.
    checkpoint_failing: u32,
    /// The version in the latest checkpoint written (or loaded at start).
    checkpoint_version: Option<u64>,
    /// The latest checkpoint write's error, until one succeeds.
    checkpoint_error: Option<String>,
    /// The latest announced model if it has not been checkpointed yet (written at shutdown).
    unsaved: Option<(FlatParams, u64, u64)>,
    /// Where averaging tasks report what they did.
    averaged: mpsc::Sender<averaging::Report>,
    /// The latest averagings, oldest first.
    averagings: VecDeque<AveragingEvent>,
    /// How this node joined the network, if it adopted a model.
    adoption: Option<AveragingEvent>,
    /// While the round's averaging waits for partners' same-round models
    /// ([`Core::gather`]): until when (on `started`'s clock).
    gathering: Option<Duration>,
    /// Listeners of [`NodeEvent`]s (sending fails only when nobody listens).
    events: broadcast::Sender<NodeEvent>,
}

/// How often the status snapshot is refreshed between events.
const STATUS_EVERY: Duration = Duration::from_millis(500);

/// Averaging reports waiting for the node task (an averaging reports once, and once more
/// per straggler fetch; one averaging runs at a time, and the task drains them often).
const AVERAGING_REPORTS: usize = 4;

/// How long an averaging waits for the training thread's verdicts on the models it offered.
const VERDICT_WAIT: Duration = Duration::from_secs(30);
