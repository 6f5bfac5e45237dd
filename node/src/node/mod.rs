//! A running murmur node: wires the training thread, the network event loop, the chunk
//! store and the averaging policy together, and publishes a [`NodeStatus`] snapshot.
//!
//! Data flow of one round: the training thread finishes K local steps and publishes its
//! weights → the node task snapshots them into chunks (unchanged chunks are reused by the
//! store), checkpoints them atomically and announces the new `ManifestId` over gossip → if no
//! averaging is running, it picks `fanout` fresh peers at random (the pure
//! [`crate::averaging::policy`]) and a background task (`averaging`) fetches their models
//! chunk by chunk and hands them to the training thread, which checks them, merges those
//! that pass at its next step boundary and says which it refused; their peers are charged,
//! and peers over their error budget are blocked.
//!
//! The node task owns the per-peer table (`peers`), the version counter and the blocks; it
//! never touches the swarm (only the network [`Client`]) nor the model (only the trainer's
//! queue).

mod averaging;
mod events;
mod hostile;
mod peers;
mod status;

pub use events::{EVENT_BUFFER, NodeEvent};
pub use hostile::Hostile;
pub use status::{AveragingEvent, ModelFetch, NodeStatus, PeerView, RECENT_AVERAGINGS};

use crate::averaging::fetch::{ErrorBudgets, FetchLimits};
use crate::averaging::policy::{Known, Policy};
use crate::data::{self, DatasetName, Partition, ShardSpec};
use crate::metrics::Counters;
use crate::network::{self, Client, Event, NetworkConfig, Traffic};
use crate::store::{ChunkStore, checkpoint};
use crate::train::worker::{RoundPolicy, RoundResult, ToTrainer, TrainerHandle};
use crate::train::{TrainConfig, Trainer};
use anyhow::Context;
use libp2p::PeerId;
use murmur_protocol::projection::project;
use murmur_protocol::{Announce, Layout, ManifestId, MetricsSummary, Snapshot};
use peers::{Heed, PeerTable};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::collections::{HashMap, HashSet, VecDeque};
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

    let dataset = data::load(opts.dataset, opts.dataset_dir.as_deref())
        .with_context(|| format!("loading dataset {}", opts.dataset))?;
    let indices = opts
        .shard
        .indices(
            &dataset.train.labels,
            dataset.classes,
            &opts.partition,
            opts.train.seed,
        )
        .with_context(|| {
            format!(
                "taking shard {} of {} with {}",
                opts.shard.index, opts.shard.count, opts.partition
            )
        })?;
    let train = dataset.train.subset(&indices);
    let mut trainer = Trainer::new(
        &opts.train,
        dataset.shape,
        dataset.classes,
        train,
        dataset.test.clone(),
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
    let budgets = ErrorBudgets::new(opts.error_budget);
    let (averaged, averaged_rx) = mpsc::channel(4);
    let (events_tx, _) = broadcast::channel(EVENT_BUFFER);
    let history = crate::history::History::new(crate::history::HISTORY_POINTS);
    let recorder = crate::history::spawn_recorder(
        history.clone(),
        status.clone(),
        stop_rx.clone(),
        crate::history::HISTORY_EVERY,
    );
    let state = NodeTask {
        opts,
        peer_id,
        client: client.clone(),
        store: store.clone(),
        counters,
        traffic,
        budgets,
        peers: PeerTable::default(),
        penalized: HashMap::new(),
        last_decay: Instant::now(),
        layout: None,
        version,
        own: None,
        started: Instant::now(),
        rng: ChaCha8Rng::from_os_rng(),
        status: status_tx,
        adopted: checkpoint.is_some(),
        last_announce: None,
        round_time: None,
        last_checkpoint: None,
        checkpoint_failing: 0,
        checkpoint_version: checkpoint.as_ref().map(|ck| ck.version),
        checkpoint_error: None,
        unsaved: None,
        averaged,
        averagings: VecDeque::new(),
        adoption: None,
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
    budgets: ErrorBudgets,
    /// Peers heard from, models taken from them, blocked peers.
    peers: PeerTable,
    /// The charges last turned into each peer's gossip score.
    penalized: HashMap<PeerId, u32>,
    /// When charges last faded.
    last_decay: Instant,
    /// This node's model layout (known after its first round): a partner model of another
    /// is refused before any chunk of it is fetched.
    layout: Option<Layout>,
    version: u64,
    own: Option<Own>,
    started: Instant,
    rng: ChaCha8Rng,
    status: watch::Sender<NodeStatus>,
    /// True once this node has a model of the network's (resumed, adopted or merged): until
    /// then it offers one fresh model at a time for adoption instead of averaging.
    adopted: bool,
    last_announce: Option<Instant>,
    /// This node's recent time per announced round (moving average), the unit of a
    /// partner model's lag.
    round_time: Option<Duration>,
    last_checkpoint: Option<Instant>,
    /// Checkpoint writes failed in a row (0 after a success): each doubles the wait before
    /// the next attempt.
    checkpoint_failing: u32,
    /// The version in the latest checkpoint written (or loaded at start).
    checkpoint_version: Option<u64>,
    /// The latest checkpoint write's error, until one succeeds.
    checkpoint_error: Option<String>,
    /// The latest announced model if it has not been checkpointed yet (written at shutdown).
    unsaved: Option<(Snapshot, u64, u64)>,
    /// Where averaging tasks report what they did.
    averaged: mpsc::Sender<AveragingEvent>,
    /// The latest averagings, oldest first.
    averagings: VecDeque<AveragingEvent>,
    /// How this node joined the network, if it adopted a model.
    adoption: Option<AveragingEvent>,
    /// Listeners of [`NodeEvent`]s (sending fails only when nobody listens).
    events: broadcast::Sender<NodeEvent>,
}

/// How often the status snapshot is refreshed between events.
const STATUS_EVERY: Duration = Duration::from_millis(500);

/// Least time between two announced models: announcing faster would flood gossip with
/// models nobody has time to fetch. Rounds finished sooner are not announced (training goes
/// on; the next one is). It is below [`MIN_ROUND_TIME`], so that only rounds bunched up by
/// a late merge are skipped.
const MIN_ANNOUNCE_INTERVAL: Duration = Duration::from_millis(200);

/// Least time a round of the training thread takes: a small model on a fast core finishes
/// a round in a few milliseconds, and local steps that no partner will see before the next
/// merge only drift toward this peer's own data.
pub const MIN_ROUND_TIME: Duration = Duration::from_millis(250);

/// A connected peer silent on gossip for this long, and for three of its own rounds, has a
/// connection whose gossip stream died (seen after a container's network was cut and
/// reconnected: pings still pass, no announcement does); it is disconnected so that a fresh
/// connection is made. A peer whose rounds are slow is given three of them.
const GOSSIP_SILENCE: Duration = Duration::from_secs(15);

/// Longest wait between two checkpoint attempts after failures in a row (a full disk or a
/// read-only data dir): the wait doubles from `checkpoint_every` after each failure, up to
/// this (or `checkpoint_every`, if longer).
pub const CHECKPOINT_MAX_BACKOFF: Duration = Duration::from_secs(60);

/// The wait before the next checkpoint attempt after `failing` failures in a row: `every`,
/// doubled per failure, at most [`CHECKPOINT_MAX_BACKOFF`] (or `every`, if longer).
fn checkpoint_backoff(every: Duration, failing: u32) -> Duration {
    let backoff = every.saturating_mul(1 << failing.min(16));
    backoff.min(CHECKPOINT_MAX_BACKOFF.max(every))
}

/// How long a peer whose charges reached the error budget stays blocked (disconnected, its
/// connections refused, its announcements ignored). Afterwards half its charges are forgiven.
pub const BLOCK_FOR: Duration = Duration::from_secs(120);

/// A peer over its budget is blocked only if it was heard this recently.
const BLOCK_IF_HEARD_WITHIN: Duration = Duration::from_secs(5);

/// Every this long, one charge of every charged peer is forgiven.
const CHARGE_DECAY: Duration = Duration::from_secs(10);

/// Charges for a model that failed a check (a bad chunk costs one). Fetching it forgave its
/// peer up to two (a good manifest answer, and its chunks once the fetch completed), so a
/// refusal must cost more than that: each refused model moves its peer at least two charges
/// closer to a block, each accepted one forgives one more.
const REJECTED_MODEL_CHARGES: u32 = 4;

/// Announcements older than this many freshness windows are forgotten.
const FORGET_AFTER_FRESHNESS: u32 = 4;

/// How long an averaging waits for the training thread's verdicts on the models it offered.
const VERDICT_WAIT: Duration = Duration::from_secs(30);

impl NodeTask {
    async fn run(
        mut self,
        trainer: TrainerHandle,
        mut events: mpsc::Receiver<Event>,
        mut averaged: mpsc::Receiver<AveragingEvent>,
        mut stop: watch::Receiver<bool>,
    ) {
        let mut rounds = trainer.rounds.clone();
        let mut trained = trainer.trained.clone();
        let mut averaging: Option<JoinHandle<()>> = None;
        let mut tick = tokio::time::interval(STATUS_EVERY);
        loop {
            tokio::select! {
                _ = stop.changed() => break,
                Some(event) = events.recv() => self.on_event(event),
                Some(done) = averaged.recv() => {
                    if self.averagings.len() >= RECENT_AVERAGINGS {
                        self.averagings.pop_front();
                    }
                    let _ = self.events.send(NodeEvent::Averaging(done.clone()));
                    if done.kind == "adopt" && done.outcome != "failed" && done.outcome != "rejected" {
                        // Adopted outright, or merged with: either way it has joined.
                        self.adopted = true;
                    }
                    if done.outcome == "adopted" {
                        self.adoption = Some(done.clone());
                    }
                    self.averagings.push_back(done);
                }
                changed = rounds.changed() => {
                    if changed.is_err() {
                        tracing::error!("training thread stopped");
                        break;
                    }
                    let round = rounds.borrow_and_update().clone();
                    if let Some(round) = round
                        && let Err(e) = self.on_round(&round).await
                    {
                        tracing::error!("round {}: {e:#}", round.round);
                    }
                }
                changed = trained.changed() => {
                    if changed.is_err() {
                        tracing::error!("training thread stopped");
                        break;
                    }
                    trained.borrow_and_update();
                    // One averaging at a time; the trainer hears of every round without one.
                    let idle = averaging.as_ref().is_none_or(|t| t.is_finished());
                    if idle {
                        averaging = self.start_averaging(&trainer);
                    }
                    if !idle || averaging.is_none() {
                        let _ = trainer.merges.try_send(ToTrainer::Skip);
                    }
                }
                _ = tick.tick() => {
                    if !trainer.is_running() {
                        tracing::error!("training thread ended");
                        break;
                    }
                    let net = self.client.status().await;
                    self.drop_silent(&net).await;
                    self.enforce_budgets().await;
                    self.publish_status(&net);
                }
            }
        }
        if let Some(task) = averaging {
            task.abort();
        }
        if let Some((snapshot, version, samples)) = self.unsaved.take() {
            self.checkpoint(snapshot, version, samples).await;
        }
        if let Err(e) = trainer.stop() {
            tracing::error!("training thread: {e}");
        }
    }

    fn on_event(&mut self, event: Event) {
        match event {
            Event::Announce { from, announce } => {
                if from == self.peer_id {
                    return;
                }
                // A peer is heard at most once per half of this node's round: announcing in
                // bursts does not make it look fresher than the others.
                let min_interval =
                    MIN_ANNOUNCE_INTERVAL.max(self.round_time.unwrap_or_default() / 2);
                let (manifest, version, samples, metrics) = (
                    announce.manifest,
                    announce.version,
                    announce.samples,
                    announce.metrics,
                );
                match self
                    .peers
                    .hear(from, *announce, Instant::now(), min_interval)
                {
                    Heed::Recorded => {}
                    Heed::Throttled => {
                        Counters::inc(&self.counters.announces_throttled);
                        return;
                    }
                    Heed::Blocked => return,
                }
                self.store.touch(&manifest);
                let _ = self.events.send(NodeEvent::Announce {
                    at_secs: self.started.elapsed().as_secs_f64(),
                    peer_id: from.to_string(),
                    own: false,
                    version,
                    manifest: manifest.to_hex(),
                    samples,
                    accuracy: metrics.accuracy,
                    loss: metrics.loss,
                });
            }
            Event::Rejected { from, reason } => {
                Counters::inc(&self.counters.announces_rejected);
                self.budgets.charge(from);
                tracing::debug!(%from, "announcement rejected: {reason}");
                let _ = self.events.send(NodeEvent::Rejected {
                    at_secs: self.started.elapsed().as_secs_f64(),
                    peer_id: from.to_string(),
                    reason,
                });
            }
            Event::Listening(_) => {}
        }
    }

    /// Snapshots, checkpoints and announces a finished round (unless the last announcement
    /// was too recent).
    async fn on_round(&mut self, round: &RoundResult) -> anyhow::Result<()> {
        if self
            .last_announce
            .is_some_and(|t| t.elapsed() < MIN_ANNOUNCE_INTERVAL)
        {
            return Ok(());
        }
        if !round.params.all_finite() || !round.eval.loss.is_finite() {
            // The training thread rolls such a model back before publishing it; never
            // announce or checkpoint one regardless.
            tracing::error!(
                round = round.round,
                "round with a non-finite model not announced"
            );
            return Ok(());
        }
        self.layout = Some(round.params.layout().clone());
        if let Some(last) = self.last_announce {
            let t = last.elapsed();
            self.round_time = Some(self.round_time.map_or(t, |avg| (avg * 3 + t) / 4));
        }
        self.last_announce = Some(Instant::now());
        self.version += 1;
        Counters::inc(&self.counters.rounds);
        let params = round.params.clone();
        let chunk_size = self.opts.chunk_size;
        let seed = self.opts.network.network_id.clone();
        let (snapshot, projection) = tokio::task::spawn_blocking(move || {
            let projection = project(params.values(), seed.as_bytes());
            Snapshot::from_params(params, chunk_size).map(|s| (s, projection))
        })
        .await??;
        // A hostile node announces and serves a poisoned model; it checkpoints its own.
        let announced = match self.opts.hostile {
            Some(h) => h.snapshot(&round.params, chunk_size, &mut self.rng)?,
            None => snapshot.clone(),
        };
        let stats = self.store.insert_own(&announced);
        tracing::debug!(
            version = self.version,
            new = stats.new_chunks,
            reused = stats.reused_chunks,
            "snapshot"
        );
        if self
            .last_checkpoint
            .is_none_or(|t| t.elapsed() >= self.checkpoint_wait())
        {
            self.last_checkpoint = Some(Instant::now());
            self.unsaved = None;
            // A failed write is logged, counted and retried later: training, serving and
            // announcing go on.
            self.checkpoint(snapshot.clone(), self.version, round.samples)
                .await;
        } else {
            self.unsaved = Some((snapshot.clone(), self.version, round.samples));
        }

        self.own = Some(Own {
            manifest: announced.id,
            samples: round.samples,
            accuracy: round.eval.accuracy,
            loss: round.eval.loss,
            eval_samples: round.eval_samples,
            projection: projection.clone(),
        });
        let counters = self.counters.snapshot(&self.traffic);
        let net = self.client.status().await;
        let (version, samples) = match self.opts.hostile {
            Some(h) => h.claims(self.version, round.samples),
            None => (self.version, round.samples),
        };
        let announce = Announce {
            manifest: announced.id,
            version,
            samples,
            metrics: MetricsSummary {
                accuracy: round.eval.accuracy.clamp(0.0, 1.0),
                loss: if round.eval.loss.is_finite() {
                    round.eval.loss.max(0.0)
                } else {
                    0.0
                },
                merges: counters.merges,
                bytes_sent: counters.bytes_sent,
                bytes_received: counters.bytes_received,
            },
            projection,
            neighbours: net
                .connected
                .iter()
                .take(murmur_protocol::limits::MAX_ANNOUNCED_NEIGHBOURS)
                .map(|p| bytes::Bytes::from(p.to_bytes()))
                .collect(),
        };
        let _ = self.events.send(NodeEvent::Announce {
            at_secs: self.started.elapsed().as_secs_f64(),
            peer_id: self.peer_id.to_string(),
            own: true,
            version: self.version,
            manifest: announced.id.to_hex(),
            samples: round.samples,
            accuracy: announce.metrics.accuracy,
            loss: announce.metrics.loss,
        });
        if self.opts.hostile.is_some() {
            spawn_burst(self.client.clone(), announce.clone());
        }
        if let Err(e) = self.client.publish(announce).await {
            // Nobody subscribed yet (alone, or the mesh is still forming): not an error.
            tracing::debug!("announce not published: {e}");
        }
        tracing::info!(
            version = self.version,
            accuracy = format!("{:.4}", round.eval.accuracy),
            loss = format!("{:.4}", round.eval.loss),
            samples = round.samples,
            manifest = %announced.id.short(),
            "round"
        );
        self.publish_status(&net);
        Ok(())
    }

    /// How long after the last checkpoint attempt the next one is due: `checkpoint_every`,
    /// doubled for each failure in a row, up to [`CHECKPOINT_MAX_BACKOFF`].
    fn checkpoint_wait(&self) -> Duration {
        checkpoint_backoff(self.opts.checkpoint_every, self.checkpoint_failing)
    }

    /// Writes a checkpoint; on failure logs the path and the cause, counts it, keeps the
    /// model to write at shutdown and backs off. Never fails the caller: a full disk or a
    /// read-only data dir must not stop training or serving.
    async fn checkpoint(&mut self, snapshot: Snapshot, version: u64, samples: u64) {
        match self
            .save_checkpoint(snapshot.clone(), version, samples)
            .await
        {
            Ok(()) => {
                Counters::inc(&self.counters.checkpoints);
                if self.checkpoint_failing > 0 {
                    tracing::info!(
                        version,
                        failed = self.checkpoint_failing,
                        "checkpoint written again after failures"
                    );
                }
                self.checkpoint_failing = 0;
                self.checkpoint_error = None;
                self.checkpoint_version = Some(version);
                tracing::debug!(version, "checkpoint written");
            }
            Err(e) => {
                Counters::inc(&self.counters.checkpoint_failures);
                self.checkpoint_failing = self.checkpoint_failing.saturating_add(1);
                // The error's own text names the file and the cause (its source chain would
                // repeat the cause).
                let error = e.to_string();
                tracing::error!(
                    version,
                    failed_in_a_row = self.checkpoint_failing,
                    retry_in_secs = self.checkpoint_wait().as_secs_f64(),
                    "checkpoint not written (training and serving go on; the previous checkpoint stays): {error}"
                );
                self.checkpoint_error = Some(error);
                self.unsaved = Some((snapshot, version, samples));
            }
        }
    }

    /// Writes a checkpoint off the async runtime.
    async fn save_checkpoint(
        &self,
        snapshot: Snapshot,
        version: u64,
        samples: u64,
    ) -> anyhow::Result<()> {
        let path = checkpoint::checkpoint_path(&self.opts.data_dir);
        tokio::task::spawn_blocking(move || checkpoint::save(&path, version, samples, &snapshot))
            .await??;
        Ok(())
    }

    /// Peers with a model this node has not merged yet, as the policy sees them.
    fn known(&self) -> Vec<Known<PeerId>> {
        let now = self.started.elapsed();
        self.peers
            .known
            .iter()
            .filter(|(p, h)| self.peers.merged.get(*p) != Some(&h.announce.manifest))
            .map(|(peer, h)| Known {
                peer: *peer,
                manifest: h.announce.manifest,
                version: h.announce.version,
                samples: h.announce.samples,
                seen_at: now.saturating_sub(h.at.elapsed()),
            })
            .collect()
    }

    /// Who to ask for model `id`: `first` (its announcer), then every other peer whose latest
    /// announcement names it. Peers that never announced it are not asked (nor charged).
    fn holders(&self, id: &ManifestId, first: PeerId) -> Vec<PeerId> {
        std::iter::once(first)
            .chain(
                self.peers
                    .known
                    .iter()
                    .filter(|(p, h)| **p != first && h.announce.manifest == *id)
                    .map(|(p, _)| *p),
            )
            .collect()
    }

    fn start_averaging(&mut self, trainer: &TrainerHandle) -> Option<JoinHandle<()>> {
        let own = self.own.clone()?;
        let layout = self.layout.clone()?;
        let known = self.known();
        let now = self.started.elapsed();
        let avoid: Vec<PeerId> = known
            .iter()
            .map(|k| k.peer)
            .filter(|p| self.budgets.exhausted(p))
            .collect();
        // A fresh node that hears the network has moved on (some announcement claims a
        // later version than its own) tries to adopt a model instead of averaging: a fresh
        // model drawn at random, which the training thread takes only if it clearly beats its own
        // on held-back data. The claim only starts the attempt; it picks nothing.
        let recent = self.round_time.unwrap_or(MIN_ANNOUNCE_INTERVAL);
        let candidate = if self.adopted || !known.iter().any(|k| k.version > self.version) {
            None
        } else {
            self.opts
                .policy
                .adoption_candidate(&known, Some(&own.manifest), &avoid, now, &mut self.rng)
                .cloned()
        };
        let adopt = candidate.is_some();
        let chosen: Vec<Known<PeerId>> = match candidate {
            Some(k) => vec![k],
            None => self
                .opts
                .policy
                .choose(
                    &known,
                    Some(&own.manifest),
                    &avoid,
                    now,
                    recent,
                    &mut self.rng,
                )
                .into_iter()
                .cloned()
                .collect(),
        };
        if chosen.is_empty() {
            return None;
        }
        // Averaging with the network joins it; an adoption joins it once it succeeds.
        if !adopt {
            self.adopted = true;
        }
        let round = self
            .round_time
            .unwrap_or(MIN_ANNOUNCE_INTERVAL)
            .max(Duration::from_millis(1));
        let partners: Vec<averaging::Partner> = chosen
            .into_iter()
            .map(|k| averaging::Partner {
                holders: self.holders(&k.manifest, k.peer),
                lag_rounds: now.saturating_sub(k.seen_at).as_secs_f64() / round.as_secs_f64(),
                known: k,
            })
            .collect();
        for p in &partners {
            self.peers.merged.insert(p.known.peer, p.known.manifest);
        }
        let job = averaging::Job {
            partners,
            adopt,
            own_samples: own.samples,
            layout,
            client: self.client.clone(),
            store: self.store.clone(),
            budgets: self.budgets.clone(),
            counters: self.counters.clone(),
            limits: self.opts.fetch,
            policy: self.opts.policy.clone(),
            merges: trainer.merges.clone(),
            report: self.averaged.clone(),
            node_started: self.started,
        };
        Some(tokio::spawn(averaging::run(job)))
    }

    /// Blocks peers whose charges reached the error budget (for [`BLOCK_FOR`]), forgives
    /// half the charges of those whose block ended, forgets old announcements, and turns
    /// every peer's charges into its gossip score.
    async fn enforce_budgets(&mut self) {
        let now = Instant::now();
        let keep = self.opts.policy.freshness * FORGET_AFTER_FRESHNESS;
        for peer in self.peers.prune(now, keep) {
            tracing::info!(%peer, "block ended");
            self.budgets.pardon(&peer);
        }
        // Charges fade: one forgiven per peer every CHARGE_DECAY, so a peer charged for
        // timeouts while a network split cut it off is chosen again some time after the heal.
        if self.last_decay.elapsed() >= CHARGE_DECAY {
            self.last_decay = Instant::now();
            for (peer, _) in self.budgets.snapshot() {
                self.budgets.forgive(peer);
            }
        }
        let charges = self.budgets.snapshot();
        for (peer, n) in &charges {
            // Only a peer heard just now is blocked: one that is present and misbehaving. A
            // peer cut off by a split (its requests time out, it is not heard) is only
            // avoided while over its budget.
            let present = self
                .peers
                .known
                .get(peer)
                .is_some_and(|h| h.at.elapsed() <= BLOCK_IF_HEARD_WITHIN);
            if present && self.budgets.exhausted(peer) && !self.peers.blocked.contains_key(peer) {
                tracing::warn!(%peer, charges = n, "error budget spent: blocking for {BLOCK_FOR:?}");
                self.peers.block(*peer, now + BLOCK_FOR);
                self.client.block(*peer, BLOCK_FOR).await;
            }
            if self.penalized.get(peer) != Some(n) {
                self.client.penalize(*peer, *n).await;
                self.penalized.insert(*peer, *n);
            }
        }
        let charged: HashSet<PeerId> = charges.iter().map(|(p, _)| *p).collect();
        self.penalized.retain(|p, _| charged.contains(p));
        self.budgets.prune();
    }

    /// Disconnects connected peers heard from before but silent for [`GOSSIP_SILENCE`] and
    /// for three of their rounds.
    async fn drop_silent(&mut self, net: &network::NetStatus) {
        for peer in &net.connected {
            if let Some(h) = self.peers.known.get(peer)
                && h.at.elapsed() > GOSSIP_SILENCE.max(h.interval.unwrap_or_default() * 3)
            {
                tracing::info!(%peer, "connected but silent for {:?}; reconnecting", h.at.elapsed());
                // Forget it until it is heard again, so it is not dropped twice.
                self.peers.known.remove(peer);
                self.client.disconnect(*peer).await;
            }
        }
    }

    /// Refreshes the status snapshot; `net` is a fresh network status.
    fn publish_status(&self, net: &network::NetStatus) {
        let counters = self.counters.snapshot(&self.traffic);
        let fresh = self.opts.policy.freshness * 4;
        let peers: Vec<PeerView> = self
            .peers
            .known
            .iter()
            .filter(|(_, h)| h.at.elapsed() <= fresh)
            .map(|(p, h)| PeerView {
                peer_id: p.to_string(),
                manifest: h.announce.manifest.to_hex(),
                version: h.announce.version,
                samples: h.announce.samples,
                accuracy: h.announce.metrics.accuracy,
                loss: h.announce.metrics.loss,
                merges: h.announce.metrics.merges,
                bytes_sent: h.announce.metrics.bytes_sent,
                bytes_received: h.announce.metrics.bytes_received,
                last_seen_secs: h.at.elapsed().as_secs_f64(),
                neighbours: h
                    .announce
                    .neighbours
                    .iter()
                    .filter_map(|b| PeerId::from_bytes(b).ok())
                    .map(|p| p.to_string())
                    .collect(),
            })
            .collect();
        let own = self.own.as_ref();
        let mut projections: Vec<&[f32]> = self
            .peers
            .known
            .values()
            .filter(|h| h.at.elapsed() <= fresh)
            .map(|h| h.announce.projection.as_slice())
            .collect();
        if let Some(o) = own {
            projections.push(&o.projection);
        }
        let status = NodeStatus {
            peer_id: self.peer_id.to_string(),
            network_id: self.opts.network.network_id.clone(),
            listen_addrs: net.listen_addrs.iter().map(|a| a.to_string()).collect(),
            connected: net.connected.iter().map(|p| p.to_string()).collect(),
            version: self.version,
            manifest: own.map(|o| o.manifest.to_hex()).unwrap_or_default(),
            accuracy: own.map_or(0.0, |o| o.accuracy),
            loss: own.map_or(0.0, |o| o.loss),
            samples: own.map_or(0, |o| o.samples),
            eval_samples: own.map_or(0, |o| o.eval_samples),
            uptime_secs: self.started.elapsed().as_secs_f64(),
            resumed: self.status.borrow().resumed,
            checkpoint_version: self.checkpoint_version,
            checkpoint_error: self.checkpoint_error.clone(),
            counters,
            peers,
            consensus_distance: murmur_protocol::projection::consensus_distance(projections),
            error_charges: self
                .budgets
                .snapshot()
                .into_iter()
                .filter(|(_, n)| *n > 0)
                .map(|(p, n)| (p.to_string(), n))
                .collect(),
            blocked: self.peers.blocked.keys().map(|p| p.to_string()).collect(),
            averagings: self.averagings.iter().cloned().collect(),
            adoption: self.adoption.clone(),
        };
        self.status.send_replace(status);
    }
}

/// A hostile node's burst: the round's announcement again, [`hostile::BURST`] times in all,
/// [`hostile::BURST_EVERY`] apart, each with a higher version (gossip drops exact repeats).
fn spawn_burst(client: Client, announce: Announce) {
    tokio::spawn(async move {
        for i in 1..hostile::BURST {
            tokio::time::sleep(hostile::BURST_EVERY).await;
            // Distinct even at version u64::MAX: gossip ids are content hashes.
            let mut again = announce.clone();
            again.version = announce.version.saturating_add(i);
            again.metrics.merges = announce.metrics.merges.wrapping_add(i);
            let _ = client.publish(again).await;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoint_retries_back_off_to_a_ceiling() {
        let every = Duration::from_secs(2);
        let waits: Vec<u64> = (0..8)
            .map(|n| checkpoint_backoff(every, n).as_secs())
            .collect();
        assert_eq!(waits, [2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(checkpoint_backoff(every, u32::MAX), CHECKPOINT_MAX_BACKOFF);
        // An interval longer than the ceiling is kept as it is.
        let hour = Duration::from_secs(3600);
        assert_eq!(checkpoint_backoff(hour, 5), hour);
        let fast = Duration::from_millis(10);
        assert_eq!(checkpoint_backoff(fast, 0), fast);
        assert_eq!(checkpoint_backoff(fast, 3), Duration::from_millis(80));
    }
}
