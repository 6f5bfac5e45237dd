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
//! Every decision on partners (whom to pull, from which holders, adopt or merge, with what
//! weights, whom to charge, block or disconnect, which version to announce) is made by the
//! IO-less [`crate::averaging::core`]: the node task feeds it real events on its monotonic
//! clock with an OS-seeded RNG and carries out what it returns. The node task owns that core;
//! it never touches the swarm (only the network [`Client`]) nor the model (only the trainer's
//! queue).

mod averaging;

use crate::hostile::{self, Hostile};
use crate::status::{
    AveragingEvent, EVENT_BUFFER, NodeEvent, NodeStatus, PeerView, RECENT_AVERAGINGS,
};

use crate::averaging::announce::Published;
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
use murmur_protocol::{Announce, FlatParams, Layout, ManifestId, Snapshot};
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
    /// Listeners of [`NodeEvent`]s (sending fails only when nobody listens).
    events: broadcast::Sender<NodeEvent>,
}

/// How often the status snapshot is refreshed between events.
const STATUS_EVERY: Duration = Duration::from_millis(500);

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

/// Averaging reports waiting for the node task (an averaging reports once, and once more
/// per straggler fetch; one averaging runs at a time, and the task drains them often).
const AVERAGING_REPORTS: usize = 4;

/// How long an averaging waits for the training thread's verdicts on the models it offered.
const VERDICT_WAIT: Duration = Duration::from_secs(30);

impl NodeTask {
    async fn run(
        mut self,
        trainer: TrainerHandle,
        mut events: mpsc::Receiver<Event>,
        mut averaged: mpsc::Receiver<averaging::Report>,
        mut stop: watch::Receiver<bool>,
    ) {
        let mut rounds = trainer.rounds.clone();
        let mut trained = trainer.trained.clone();
        let mut averaging: Option<JoinHandle<()>> = None;
        let mut tick = tokio::time::interval(STATUS_EVERY);
        let overlap = self.opts.round.overlap;
        if overlap {
            // Nothing was started before the first round: it must not wait for a merge.
            let _ = trainer.merges.try_send(ToTrainer::Skip);
        }
        loop {
            tokio::select! {
                _ = stop.changed() => break,
                Some(event) = events.recv() => self.on_event(event),
                Some(done) = averaged.recv() => self.on_averaged(done),
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
                    if overlap {
                        // The next round's averaging, fetched while that round trains.
                        self.next_averaging(&trainer, &mut averaging, &mut averaged);
                    }
                }
                changed = trained.changed() => {
                    if changed.is_err() {
                        tracing::error!("training thread stopped");
                        break;
                    }
                    trained.borrow_and_update();
                    if !overlap {
                        self.next_averaging(&trainer, &mut averaging, &mut averaged);
                    }
                }
                _ = tick.tick() => {
                    if !trainer.is_running() {
                        tracing::error!("training thread ended");
                        break;
                    }
                    let net = self.client.status().await;
                    self.tick(&net).await;
                    self.publish_status(&net);
                }
            }
        }
        if let Some(task) = averaging {
            task.abort();
        }
        if let Some((params, version, samples)) = self.unsaved.take() {
            self.checkpoint(params, version, samples).await;
        }
        if let Err(e) = trainer.stop() {
            tracing::error!("training thread: {e}");
        }
    }

    /// An averaging task reported: the core applies what its fetches charged and forgave,
    /// charges or forgives its partners and says how it went.
    fn on_averaged(&mut self, report: averaging::Report) {
        let (plan, fates, mut event) = match report {
            averaging::Report::Late(ledger) => {
                self.core.settle(&ledger);
                return;
            }
            averaging::Report::Done {
                plan,
                fates,
                event,
                ledger,
            } => {
                self.core.settle(&ledger);
                (plan, fates, event)
            }
        };
        let outcome = self.core.averaging_done(&plan, &fates);
        event.outcome = outcome.as_str().into();
        tracing::debug!(outcome = outcome.as_str(), "averaging done");
        if self.averagings.len() >= RECENT_AVERAGINGS {
            self.averagings.pop_front();
        }
        let _ = self.events.send(NodeEvent::Averaging(event.clone()));
        if outcome == Outcome::Adopted {
            self.adoption = Some(event.clone());
        }
        self.averagings.push_back(event);
    }

    fn on_event(&mut self, event: Event) {
        match event {
            Event::Announce { from, announce } => {
                if from == self.peer_id {
                    return;
                }
                let (manifest, version, samples, metrics) = (
                    announce.manifest,
                    announce.version,
                    announce.samples,
                    announce.metrics,
                );
                match self.core.hear(self.started.elapsed(), from, *announce) {
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
                self.core.announcement_rejected(from);
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
        let finite = round.params.all_finite() && round.eval.loss.is_finite();
        let version = match self.core.round_finished(self.started.elapsed(), finite) {
            RoundStep::Announce { version } => version,
            RoundStep::TooSoon => return Ok(()),
            RoundStep::NonFinite => {
                // The training thread rolls such a model back before publishing it; never
                // announce or checkpoint one regardless.
                tracing::error!(
                    round = round.round,
                    "round with a non-finite model not announced"
                );
                return Ok(());
            }
        };
        self.layout = Some(round.params.layout().clone());
        Counters::inc(&self.counters.rounds);
        let params = round.params.clone();
        let chunk_size = self.opts.chunk_size;
        let seed = self.opts.network.network_id.clone();
        let encoding = self.opts.encoding;
        // Peers are served the model in the chosen encoding (in f32 when that is f32, or
        // when the encoding cannot carry this round's values); the checkpoint keeps the exact
        // f32 model and builds its own snapshot when one is written.
        let (served, projection) = tokio::task::spawn_blocking(move || {
            crate::cpu::on_comm_pool(move || {
                let projection = project(params.values(), seed.as_bytes());
                let encoded = match encoding {
                    murmur_protocol::Encoding::F32Le => None,
                    e => match Snapshot::from_params_encoded(params.clone(), e, chunk_size) {
                        Ok(s) => Some(s),
                        // A value the encoding cannot carry (f16 past 65,504): this round's
                        // model is served in f32.
                        Err(murmur_protocol::SnapshotError::Quantize(q)) => {
                            tracing::warn!("publishing this round in f32: {q}");
                            None
                        }
                        Err(other) => return Err(other.into()),
                    },
                };
                let served = match encoded {
                    Some(s) => s,
                    None => Snapshot::from_params(params, chunk_size)?,
                };
                anyhow::Ok((served, projection))
            })
        })
        .await??;
        // A hostile node announces and serves a poisoned model; it checkpoints its own.
        let announced = match self.opts.hostile {
            Some(h) => h.snapshot(&round.params, chunk_size, &mut self.rng)?,
            None => served,
        };
        let stats = self.store.insert_own(&announced);
        tracing::debug!(
            version = version,
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
            self.checkpoint(round.params.clone(), version, round.samples)
                .await;
        } else {
            self.unsaved = Some((round.params.clone(), version, round.samples));
        }

        self.core.announced(OwnModel {
            manifest: announced.id,
            samples: round.samples,
        });
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
        let announce = Published {
            manifest: announced.id,
            version,
            samples: round.samples,
            accuracy: round.eval.accuracy,
            loss: round.eval.loss,
            merges: counters.merges,
            bytes_sent: counters.bytes_sent,
            bytes_received: counters.bytes_received,
            train_share: counters.train_share,
            comm_share: counters.comm_share,
            projection,
            neighbours: net
                .connected
                .iter()
                .map(|p| bytes::Bytes::from(p.to_bytes()))
                .collect(),
        }
        .announce(self.opts.hostile);
        let version = announce.version;
        let _ = self.events.send(NodeEvent::Announce {
            at_secs: self.started.elapsed().as_secs_f64(),
            peer_id: self.peer_id.to_string(),
            own: true,
            version,
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
            version = version,
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
    async fn checkpoint(&mut self, params: FlatParams, version: u64, samples: u64) {
        match self.save_checkpoint(params.clone(), version, samples).await {
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
                self.unsaved = Some((params, version, samples));
            }
        }
    }

    /// Writes a checkpoint off the async runtime.
    async fn save_checkpoint(
        &self,
        params: FlatParams,
        version: u64,
        samples: u64,
    ) -> anyhow::Result<()> {
        let path = checkpoint::checkpoint_path(&self.opts.data_dir);
        let chunk_size = self.opts.chunk_size;
        tokio::task::spawn_blocking(move || {
            crate::cpu::on_comm_pool(|| {
                let snapshot = Snapshot::from_params(params, chunk_size)?;
                anyhow::Ok(checkpoint::save(&path, version, samples, &snapshot)?)
            })
        })
        .await??;
        Ok(())
    }

    /// Starts the next averaging, or tells the trainer there is none for its round.
    fn next_averaging(
        &mut self,
        trainer: &TrainerHandle,
        averaging: &mut Option<JoinHandle<()>>,
        averaged: &mut mpsc::Receiver<averaging::Report>,
    ) {
        // Whether the averaging task ended, read before its report is looked for: a task
        // that ended sent its report first, so one still missing after the drain below
        // never comes.
        let ended = averaging.as_ref().is_none_or(|t| t.is_finished());
        while let Ok(done) = averaged.try_recv() {
            self.on_averaged(done);
        }
        if self.core.averaging() && ended {
            tracing::warn!("an averaging task ended without a report");
            self.core.averaging_abandoned();
        }
        // One averaging at a time (the core says); the trainer hears of every round
        // without one.
        match self.start_averaging(trainer) {
            Some(task) => *averaging = Some(task),
            None => {
                let _ = trainer.merges.try_send(ToTrainer::Skip);
            }
        }
    }

    /// Starts the averaging the core plans, if any.
    fn start_averaging(&mut self, trainer: &TrainerHandle) -> Option<JoinHandle<()>> {
        let layout = self.layout.clone()?;
        let plan = self.core.plan(self.started.elapsed(), &mut self.rng)?;
        let job = averaging::Job {
            plan,
            layout,
            client: self.client.clone(),
            store: self.store.clone(),
            budgets: self.core.budgets().clone(),
            rates: self.rates.clone(),
            counters: self.counters.clone(),
            limits: self.opts.fetch,
            merges: trainer.merges.clone(),
            report: self.averaged.clone(),
            node_started: self.started,
        };
        Some(tokio::spawn(averaging::run(job)))
    }

    /// The core's housekeeping, carried out: blocks, gossip scores, disconnects.
    async fn tick(&mut self, net: &network::NetStatus) {
        let now = self.started.elapsed();
        for action in self.core.tick(now, &net.connected) {
            match action {
                Action::Block { peer, until } => {
                    let span = until.saturating_sub(now);
                    tracing::warn!(%peer, "error budget spent: blocking for {span:?}");
                    self.client.block(peer).await;
                }
                Action::Penalize { peer, charges } => self.client.penalize(peer, charges).await,
                Action::Disconnect { peer } => {
                    tracing::info!(%peer, "connected but silent on gossip; reconnecting");
                    self.client.disconnect(peer).await;
                }
                Action::Unblocked { peer } => {
                    tracing::info!(%peer, "block ended");
                    self.client.unblock(peer).await;
                }
            }
        }
    }

    /// Refreshes the status snapshot; `net` is a fresh network status.
    fn publish_status(&self, net: &network::NetStatus) {
        let counters = self.counters.snapshot(&self.traffic);
        let fresh = self.opts.policy.freshness * 4;
        let now = self.started.elapsed();
        let peers: Vec<PeerView> = self
            .core
            .peers()
            .filter(|(_, h)| now.saturating_sub(h.at) <= fresh)
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
                train_share: h.announce.metrics.train_share,
                comm_share: h.announce.metrics.comm_share,
                last_seen_secs: now.saturating_sub(h.at).as_secs_f64(),
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
            .core
            .peers()
            .filter(|(_, h)| now.saturating_sub(h.at) <= fresh)
            .map(|(_, h)| h.announce.projection.as_slice())
            .collect();
        if let Some(o) = own {
            projections.push(&o.projection);
        }
        let status = NodeStatus {
            peer_id: self.peer_id.to_string(),
            network_id: self.opts.network.network_id.clone(),
            listen_addrs: net.listen_addrs.iter().map(|a| a.to_string()).collect(),
            connected: net.connected.iter().map(|p| p.to_string()).collect(),
            version: self.core.version(),
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
                .core
                .budgets()
                .snapshot()
                .into_iter()
                .filter(|(_, n)| *n > 0)
                .map(|(p, n)| (p.to_string(), n))
                .collect(),
            blocked: self.core.blocked().map(|(p, _)| p.to_string()).collect(),
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
