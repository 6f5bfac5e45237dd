//! The discrete-event engine: virtual time, one queue of events ordered by (time, sequence),
//! gossip delivered over the simulated links, fetches timed and charged as the real fetch
//! does, churn and partitions. Every decision is the peers' real [`Core`]'s; every step and
//! merge their real trainer's. Training and evaluation are computed in batches, in parallel
//! over peers: a peer's steps depend only on its own state, which nothing touches between
//! the start of its round and the end of its steps, so the batch gives the same bits
//! whatever the thread count. It owns the world's state; it must not read a clock or do I/O.

use super::net::{Links, mix};
use super::peer::{EvalJob, Incoming, Life, Served, SimPeer};
use crate::averaging::announce::announcement;
use crate::averaging::budgets::{Ledger, Tally};
use crate::averaging::core::{Core, Partner, RoundStep};
use crate::averaging::fetch::FetchLimits;
use crate::averaging::fetch::state::{
    Action, Ask, ChunkOutcome, ChunksAnswer, Fetch, Got, ManifestAnswer,
};
use crate::averaging::offer::STRAGGLER_WAIT;
use crate::averaging::peers::Heed;
use crate::data::Split;
use crate::hostile::Hostile;
use crate::train::TrainError;
use crate::train::round::{Cycle, Next, Phase, publishable};
use crate::train::worker::RoundPolicy;
use murmur_protocol::{Announce, ChunkId, FlatParams, ManifestId, MetricsSummary};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

/// Announcements kept per sender for delivery (a peer hears at most a few per round).
const LOG_PER_SENDER: usize = 8;

/// Bytes of a request and of a manifest answer, besides the model's values.
const REQUEST_OVERHEAD: u64 = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Start,
    NextRound,
    Trained,
    MergeReady,
    /// The end of a round's merge wait.
    RoundEnd,
    FetchFailed,
    /// An announcement reached a peer waiting for same-round models, or its wait ended.
    Gather,
    Restart,
    Sample,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Event {
    at: Duration,
    seq: u64,
    peer: u32,
    epoch: u32,
    kind: Kind,
}

/// The scenario's timing and rules, as the engine uses them.
#[derive(Debug, Clone)]
pub struct Rules {
    pub round: RoundPolicy,
    pub rounds: u64,
    pub step: Duration,
    pub request_timeout: Duration,
    /// The fetch's in-flight limit per holder and deadline (`averaging.*`).
    pub fetch: FetchLimits,
    pub eval_every: u64,
    /// If set, evaluations are this far apart in virtual time instead (see the scenario).
    pub eval_every_secs: Option<Duration>,
    pub trace_every: Duration,
    pub crash_per_round: f64,
    pub down: Duration,
    pub leave_share: f64,
    pub target: f32,
    /// Exact averaging instead of gossip (the scenario's `exact_averaging`).
    pub exact: bool,
    pub core: crate::averaging::core::CoreConfig,
    /// Virtual time after which the run stops even if rounds are left.
    pub give_up: Duration,
}

/// A network-wide line of the trace.
#[derive(Debug, Clone, serde::Serialize)]
pub struct NetLine {
    pub t: f64,
    pub kind: &'static str,
    pub live: usize,
    pub mean_accuracy: f32,
    pub min_accuracy: f32,
    /// Mean squared distance of the live peers' models from their mean, `(1/n) Σ ||w_i -
    /// w̄||²`: what a real node estimates from projections, here computed exactly.
    pub consensus_distance: f64,
    /// Per split group (empty when none is active): the same distance within each group,
    /// and between the groups' means.
    pub group_distances: Vec<f64>,
    pub between_groups: Option<f64>,
    pub bytes: u64,
    pub merges: u64,
}

pub struct World {
    pub peers: Vec<SimPeer>,
    pub links: Links,
    pub rules: Rules,
    pub test: Split,
    /// Bytes of one published model in the peers' encoding (`averaging.encoding`).
    pub model_bytes: u64,
    /// Values of one model: a served model of another count is another layout.
    pub model_values: u64,
    /// How honest peers encode what they publish: they serve the values a fetcher decodes.
    pub encoding: murmur_protocol::Encoding,
    /// `averaging.chunk_size`.
    pub chunk_size: u32,
    /// The chunks of one model and each one's bytes (every fetch moves all of them: the
    /// simulation keeps no chunk store). Their ids are made up, the same for every model.
    pub chunks: BTreeMap<ChunkId, u64>,
    pub now: Duration,
    pub net_lines: Vec<NetLine>,
    /// The network samples as the dashboard's history points (virtual seconds).
    pub history: Vec<crate::history::HistoryPoint>,
    pub stop_reason: &'static str,
    /// Every live honest peer has run its rounds.
    done: bool,
    rng: ChaCha8Rng,
    queue: BinaryHeap<Reverse<Event>>,
    seq: u64,
    /// Per sender: (sent at, announcement), oldest first.
    log: Vec<VecDeque<(Duration, Announce)>>,
    progress: Option<indicatif::ProgressBar>,
}

impl World {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        peers: Vec<SimPeer>,
        links: Links,
        rules: Rules,
        test: Split,
        model_bytes: u64,
        rng: ChaCha8Rng,
        progress: Option<indicatif::ProgressBar>,
    ) -> Self {
        let n = peers.len();
        Self {
            peers,
            links,
            rules,
            test,
            model_bytes,
            model_values: model_bytes / 4,
            encoding: murmur_protocol::Encoding::F32Le,
            chunk_size: u32::MAX,
            chunks: chunk_table(model_bytes, u32::MAX),
            now: Duration::ZERO,
            net_lines: Vec::new(),
            history: Vec::new(),
            stop_reason: "rounds",
            done: false,
            rng,
            queue: BinaryHeap::new(),
            seq: 0,
            log: vec![VecDeque::new(); n],
            progress,
        }
    }

    fn push(&mut self, at: Duration, peer: u32, kind: Kind) {
        let epoch = self.peers.get(peer as usize).map_or(0, |p| p.epoch);
        self.seq += 1;
        self.queue.push(Reverse(Event {
            at,
            seq: self.seq,
            peer,
            epoch,
            kind,
        }));
    }

    /// Schedules the first events: each peer's start, and the trace's samples.
    pub fn schedule_starts(&mut self, starts: &[Duration]) {
        for (i, at) in starts.iter().enumerate() {
            self.push(*at, i as u32, Kind::Start);
        }
        self.push(Duration::ZERO, 0, Kind::Sample);
    }

    /// Runs until every live honest peer has done its rounds (or the time limit).
    pub fn run(&mut self) -> Result<(), TrainError> {
        while let Some(Reverse(ev)) = self.queue.pop() {
            if self.done {
                break;
            }
            self.now = ev.at;
            if ev.at > self.rules.give_up {
                self.stop_reason = "time limit";
                break;
            }
            if ev.kind == Kind::Sample {
                self.sample()?;
                let next = self.now + self.rules.trace_every;
                self.push(next, 0, Kind::Sample);
                continue;
            }
            let Some(peer) = self.peers.get(ev.peer as usize) else {
                continue;
            };
            if peer.epoch != ev.epoch {
                continue;
            }
            let p = ev.peer as usize;
            match ev.kind {
                Kind::Start => self.start(p)?,
                Kind::NextRound | Kind::RoundEnd => self.drive(p)?,
                Kind::Restart => self.restart(p)?,
                Kind::Trained => self.trained(p)?,
                Kind::MergeReady => self.merge_ready(p)?,
                Kind::Gather => {
                    if self.peers[p].gathering.is_some() {
                        self.average(p)?;
                        if self.peers[p].cycle.phase() == Phase::Waiting {
                            self.drive(p)?;
                        }
                    }
                }
                Kind::FetchFailed => {
                    // The node's averaging task tells its trainer `Skip` when every fetch
                    // failed.
                    if let Some(incoming) = self.peers[p].incoming.take() {
                        self.report(p, incoming)?;
                        self.peers[p].cycle.answered();
                        self.drive(p)?;
                    }
                }
                Kind::Sample => {}
            }
        }
        self.compute_batch(false)?;
        self.sample()
    }

    /// True once every honest peer that is not gone has done its rounds.
    fn finished(&self) -> bool {
        self.peers
            .iter()
            .filter(|p| p.hostile.is_none() && p.life != Life::Gone)
            .all(|p| p.rounds_done >= self.rules.rounds)
    }

    fn start(&mut self, p: usize) -> Result<(), TrainError> {
        self.peers[p].life = Life::Up;
        self.peers[p].heard_until = self.now;
        if self.rules.round.overlap {
            // As the node does: nothing was started before the first round, which must not
            // wait for a merge.
            self.peers[p].cycle.answered();
        }
        self.drive(p)
    }

    fn restart(&mut self, p: usize) -> Result<(), TrainError> {
        let peer = &mut self.peers[p];
        let (version, resumed) = match &peer.checkpoint {
            Some((params, version, samples)) => {
                peer.trainer.roll_back(params)?;
                peer.trainer.set_samples_seen(*samples);
                (*version, true)
            }
            None => (0, false),
        };
        peer.core = Core::new(self.rules.core.clone(), version, resumed);
        peer.merger = crate::train::merge::Merger::new(
            &peer.trainer,
            self.rules.round.outer,
            self.rules.round.defence,
        )?;
        peer.cycle = Cycle::new(&self.rules.round);
        peer.steps_planned = None;
        peer.wait_scheduled = None;
        peer.incoming = None;
        peer.late = None;
        peer.ledgers.clear();
        peer.rates = crate::averaging::rates::Rates::new();
        peer.pending_eval = None;
        peer.pending_train = false;
        self.start(p)
    }

    /// Carries out peer `p`'s round [`Cycle`] at the current time, as the training thread
    /// does on its clock: schedules the round's steps (computed in a batch), starts the
    /// averaging when they are done (or, with overlap, when the round is published), waits
    /// for the merge until its deadline, publishes and paces.
    fn drive(&mut self, p: usize) -> Result<(), TrainError> {
        loop {
            let now = self.now;
            let peer = &mut self.peers[p];
            // Steps scheduled and not done yet: the `Trained` event goes on from there.
            if peer.life != Life::Up || peer.steps_planned.is_some() {
                return Ok(());
            }
            match peer.cycle.next(now) {
                Next::Train => {
                    let steps = peer.cycle.steps_taking(self.rules.step);
                    peer.steps_planned = Some(steps);
                    peer.pending_train = true;
                    let at = now + self.rules.step * u32::try_from(steps).unwrap_or(u32::MAX);
                    self.push(at, p as u32, Kind::Trained);
                    return Ok(());
                }
                Next::Trained { round } => {
                    if self.rules.exact {
                        self.exact_average(p, round)?;
                    } else if !self.rules.round.overlap {
                        self.average(p)?;
                    }
                }
                Next::Wait { until } => {
                    let round = peer.cycle.round();
                    if peer.wait_scheduled != Some(round) {
                        peer.wait_scheduled = Some(round);
                        self.push(until, p as u32, Kind::RoundEnd);
                    }
                    return Ok(());
                }
                Next::Publish { .. } => {
                    if !self.publish(p)? {
                        return Ok(());
                    }
                    self.peers[p].cycle.published(now);
                    if self.rules.round.overlap {
                        // The next round's averaging, fetched while that round trains.
                        self.average(p)?;
                    }
                }
                Next::Evaluate { .. } => {
                    let params = self.peers[p].trainer.export()?;
                    self.evaluate_if_due(p, params);
                    self.peers[p].cycle.evaluated();
                }
                Next::Pace { until } => {
                    self.push(until, p as u32, Kind::NextRound);
                    return Ok(());
                }
            }
        }
    }

    /// Runs every due evaluation and (with `train`) every pending round's steps, in
    /// parallel.
    fn compute_batch(&mut self, train: bool) -> Result<(), TrainError> {
        let round = &self.rules.round;
        let test = &self.test;
        let target = self.rules.target;
        self.peers
            .par_iter_mut()
            .filter(|p| (train && p.pending_train) || p.pending_eval.is_some())
            .map(|p| p.compute(round, test, target, train))
            .collect::<Result<Vec<()>, TrainError>>()?;
        Ok(())
    }

    /// Hands peer `p` the announcements that reached it since it last listened.
    fn deliver(&mut self, p: usize) {
        let now = self.now;
        let since = self.peers[p].heard_until;
        let me = p as u32;
        let mut arrived: Vec<(Duration, u32, &Announce)> = Vec::new();
        for (s, log) in self.log.iter().enumerate() {
            if s == p {
                continue;
            }
            let lat = self.links.latency(s as u32, me);
            for (sent, announce) in log.iter().rev() {
                let at = *sent + lat;
                if at <= since {
                    break;
                }
                if at > now
                    || !self.links.connected(s as u32, me, *sent)
                    || self
                        .links
                        .lost(mix(u64::from(me)) ^ message_key(s as u32, announce))
                {
                    continue;
                }
                arrived.push((at, s as u32, announce));
            }
        }
        arrived.sort_by_key(|(at, s, _)| (*at, *s));
        let heard: Vec<(Duration, u32, Announce)> = arrived
            .into_iter()
            .map(|(at, s, a)| (at, s, a.clone()))
            .collect();
        let peer = &mut self.peers[p];
        for (at, s, announce) in heard {
            if peer.core.hear(at, s, announce) == Heed::Throttled {
                peer.throttled += 1;
            }
        }
        peer.heard_until = now;
    }

    /// Peer `p`'s round steps are done (computed in this batch if not yet): a merge that
    /// arrived during them is applied (the training thread applies it between two steps),
    /// then the cycle goes on.
    fn trained(&mut self, p: usize) -> Result<(), TrainError> {
        if self.peers[p].pending_train {
            self.compute_batch(true)?;
        }
        self.peers[p].steps_planned = None;
        if let Some(late) = self.peers[p].late.take() {
            self.report(p, late)?;
            self.peers[p].cycle.answered();
        }
        self.drive(p)
    }

    /// The exact-averaging reference: peer `p` finished round `round`'s steps; once every
    /// live peer has, each one's model becomes the exact mean of all of them (optimizer state
    /// kept, as a merge keeps it) and each round goes on to be published.
    fn exact_average(&mut self, p: usize, round: u64) -> Result<(), TrainError> {
        self.peers[p].exact_round = round;
        let live: Vec<usize> = (0..self.peers.len())
            .filter(|&i| self.peers[i].life == Life::Up)
            .collect();
        if live.iter().any(|&i| self.peers[i].exact_round < round) {
            return Ok(());
        }
        let models: Vec<FlatParams> = live
            .iter()
            .map(|&i| self.peers[i].trainer.export())
            .collect::<Result<_, _>>()?;
        let Some(first) = models.first() else {
            return Ok(());
        };
        let mut sum = vec![0f64; first.values().len()];
        for m in &models {
            for (a, v) in sum.iter_mut().zip(m.values()) {
                *a += f64::from(*v);
            }
        }
        let n = models.len() as f64;
        let mut mean = first.clone();
        for (v, a) in mean.values_mut().iter_mut().zip(&sum) {
            *v = (a / n) as f32;
        }
        for &i in &live {
            let peer = &mut self.peers[i];
            peer.trainer.absorb(&mean, false)?;
            peer.merges += 1;
            peer.cycle.answered();
        }
        // The others wait for their merge; `p` goes on in its own drive.
        for &i in live.iter().filter(|&&i| i != p) {
            self.drive(i)?;
        }
        Ok(())
    }

    /// Plans peer `p`'s averaging and times its fetches: the merge is ready when every
    /// fetch has ended or [`STRAGGLER_WAIT`] after the first model arrived, whichever comes
    /// first, with the models in by then; with no plan the trainer is told at once that no
    /// merge is coming, with every fetch failed when the last one gave up.
    fn average(&mut self, p: usize) -> Result<(), TrainError> {
        self.deliver(p);
        let now = self.now;
        self.peers[p].settle(now);
        for action in self.peers[p].core.tick(now, &[]) {
            if matches!(action, crate::averaging::core::Action::Block { .. }) {
                self.peers[p].blocks += 1;
            }
        }
        // The same-round exchange waits (bounded) for partners' models of this round: every
        // announcement reaching this peer meanwhile, and the wait's end, try again.
        if let Some(until) = self.peers[p].core.gather(now) {
            if self.peers[p].gathering.is_none() {
                // Announcements on their way now look again when they arrive (later
                // ones are pushed when they are published); so does the wait's end.
                let me = p as u32;
                let mut arrivals = vec![until];
                for (s, log) in self.log.iter().enumerate().filter(|(s, _)| *s != p) {
                    let lat = self.links.latency(s as u32, me);
                    arrivals.extend(
                        log.iter()
                            .map(|(sent, _)| *sent + lat)
                            .filter(|at| *at > now),
                    );
                }
                for at in arrivals {
                    self.push(at, me, Kind::Gather);
                }
            }
            self.peers[p].gathering = Some(until);
            return Ok(());
        }
        self.peers[p].gathering = None;
        let plan = {
            let peer = &mut self.peers[p];
            peer.core.plan(now, &mut peer.rng)
        };
        let Some(plan) = plan else {
            self.peers[p].cycle.answered();
            return Ok(());
        };
        let mut got: Vec<(Duration, usize, Arc<FlatParams>)> = Vec::new();
        let mut ledgers = Vec::new();
        // When the last fetch ended, whatever its result.
        let mut last_end = now;
        for (i, partner) in plan.partners.iter().enumerate() {
            let fetched = self.fetch(p, partner);
            last_end = last_end.max(fetched.at);
            ledgers.push((fetched.at, fetched.ledger));
            if let Some((stats, model)) = fetched.got {
                self.peers[p].bytes_received += stats.bytes;
                self.peers[p].chunks_fetched += stats.chunks_fetched as u64;
                let per_chunk = stats.bytes / stats.chunks_fetched.max(1) as u64;
                for (holder, n) in stats.sources {
                    if let Some(h) = self.peers.get_mut(holder as usize) {
                        h.bytes_sent += per_chunk * n as u64;
                    }
                }
                got.push((fetched.at, i, model));
            }
        }
        // What each fetch charged counts from when it ended.
        self.peers[p].ledgers.extend(ledgers);
        let Some(first) = got.iter().map(|(at, _, _)| *at).min() else {
            self.peers[p].incoming = Some(Incoming {
                plan,
                models: Vec::new(),
            });
            self.push(last_end, p as u32, Kind::FetchFailed);
            return Ok(());
        };
        // As the node's averaging task: the merge goes ahead when every fetch has ended, or
        // STRAGGLER_WAIT after the first model arrived, whichever comes first.
        let ready = last_end.min(first + STRAGGLER_WAIT);
        got.retain(|(at, _, _)| *at <= ready);
        self.peers[p].incoming = Some(Incoming {
            plan,
            models: got.into_iter().map(|(_, i, m)| (i, m)).collect(),
        });
        self.push(ready, p as u32, Kind::MergeReady);
        Ok(())
    }

    /// Runs the fetch of `partner`'s model by peer `p` with the node's own fetch state
    /// ([`Fetch`]: its holder choice, chunk batches, in-flight limit, charges and deadline)
    /// over the simulated links, in virtual time from now. A request to a peer that is down,
    /// cut off, lost or never answers times out; a holder that no longer serves the model
    /// answers that it does not hold it; chunk answers share `p`'s downlink, one after the
    /// other. Holders never answer `Busy` (the simulation has no serving limits).
    fn fetch(&mut self, p: usize, partner: &Partner<u32>) -> SimFetch {
        let me = p as u32;
        let start = self.now;
        let manifest = partner.known.manifest;
        let mut state = Fetch::new(
            manifest,
            partner.holders.clone(),
            self.rules.fetch,
            Tally::new(self.peers[p].core.budgets().clone()),
            start,
        );
        let rates = self.peers[p].rates.clone();
        let mut arrivals: BinaryHeap<Reverse<(Duration, u64)>> = BinaryHeap::new();
        let mut answers: BTreeMap<u64, Answer> = BTreeMap::new();
        let mut downlink_free = start;
        let mut model: Option<Arc<FlatParams>> = None;
        let mut t = start;
        loop {
            match state.poll(t, &rates) {
                Action::Send { token, peer, ask } => {
                    let (at, answer) =
                        self.answer(me, peer, &manifest, &ask, t, token, &mut downlink_free);
                    if let Answer::Manifest(ManifestAnswer::Valid { .. }, Some(m)) = &answer {
                        model = Some(m.clone());
                    }
                    arrivals.push(Reverse((at, token)));
                    answers.insert(token, answer);
                }
                Action::Wait { until } => match arrivals.peek() {
                    Some(&Reverse((at, token))) if at <= until => {
                        arrivals.pop();
                        t = at;
                        match answers.remove(&token) {
                            Some(Answer::Manifest(answer, _)) => {
                                state.manifest_answered(token, answer, t)
                            }
                            Some(Answer::Chunks(answer)) => {
                                state.chunks_answered(token, answer, t, &rates)
                            }
                            None => {}
                        }
                    }
                    _ => t = until,
                },
                Action::Done => break,
            }
        }
        let (result, tally) = state.finish(Ok(()));
        let got = match (result, model) {
            (Some(Ok(got)), Some(model)) => Some((got, model)),
            _ => None,
        };
        SimFetch {
            at: t,
            got,
            ledger: tally.into_ledger(),
        }
    }

    /// When `me`'s request `ask` (for `manifest`) sent to `h` at `t` is answered, and the
    /// answer; a chunk answer takes `downlink_free` (when `me`'s link is free) forward.
    #[allow(clippy::too_many_arguments)]
    fn answer(
        &self,
        me: u32,
        h: u32,
        manifest: &ManifestId,
        ask: &Ask,
        t: Duration,
        token: u64,
        downlink_free: &mut Duration,
    ) -> (Duration, Answer) {
        let Some(holder) = self.peers.get(h as usize) else {
            return (t.saturating_add(self.rules.request_timeout), failed(ask));
        };
        let rtt = self.links.latency(me, h) * 2;
        let key = mix(u64::from(me) << 32 | u64::from(h)) ^ token ^ t.as_nanos() as u64;
        let reachable = holder.life == Life::Up
            && self.links.connected(me, h, t)
            && !self.links.lost(key)
            && holder.hostile != Some(Hostile::Unservable);
        if !reachable {
            return (t.saturating_add(self.rules.request_timeout), failed(ask));
        }
        let served = holder.serves(manifest);
        match ask {
            Ask::Manifest => {
                let Some(served) = served else {
                    return (t + rtt, Answer::Manifest(ManifestAnswer::NotHeld, None));
                };
                let layout = |got: u64, detail: &str| {
                    Answer::Manifest(
                        ManifestAnswer::Layout {
                            expected: self.model_bytes,
                            got,
                            detail: detail.into(),
                        },
                        None,
                    )
                };
                let answer = match &served.model {
                    None => layout(0, "not a model"),
                    Some(m) if m.values().len() as u64 != self.model_values => {
                        layout(m.values().len() as u64 * 4, "another layout")
                    }
                    Some(m) => Answer::Manifest(
                        ManifestAnswer::Valid {
                            chunk_size: self.chunk_size,
                            chunks: self.chunks.len(),
                            missing: self.chunks.keys().copied().collect(),
                        },
                        Some(m.clone()),
                    ),
                };
                (t + rtt + self.links.transfer(REQUEST_OVERHEAD), answer)
            }
            Ask::Chunks(batch) => {
                if served.is_none() {
                    let replies = vec![ChunkOutcome::NotHeld; batch.len()];
                    return (t + rtt, Answer::Chunks(ChunksAnswer::Replies(replies)));
                }
                let lens: Vec<u64> = batch
                    .iter()
                    .map(|c| self.chunks.get(c).copied().unwrap_or(0))
                    .collect();
                let bytes: u64 = lens.iter().sum::<u64>() + REQUEST_OVERHEAD;
                let at = (t + rtt).max(*downlink_free) + self.links.transfer(bytes);
                *downlink_free = at;
                let replies = lens.into_iter().map(ChunkOutcome::Stored).collect();
                (at, Answer::Chunks(ChunksAnswer::Replies(replies)))
            }
        }
    }

    fn merge_ready(&mut self, p: usize) -> Result<(), TrainError> {
        let Some(incoming) = self.peers[p].incoming.take() else {
            return Ok(());
        };
        if self.peers[p].cycle.phase() == Phase::Training {
            self.peers[p].late = Some(incoming);
            return Ok(());
        }
        self.report(p, incoming)?;
        self.peers[p].cycle.answered();
        self.drive(p)
    }

    /// Takes in an averaging's models and tells the core what became of each.
    fn report(&mut self, p: usize, incoming: Incoming) -> Result<(), TrainError> {
        let now = self.now;
        let peer = &mut self.peers[p];
        peer.settle(now);
        let (plan, fates) = peer.take_in(incoming)?;
        peer.core.averaging_done(now, &plan, &fates);
        Ok(())
    }

    /// Publishes peer `p`'s round as the node does: rolled back if it may not be published,
    /// evaluated when due, announced with the shared builder, served and checkpointed.
    /// Returns false if the peer crashed at the end of the round.
    fn publish(&mut self, p: usize) -> Result<bool, TrainError> {
        self.deliver(p);
        let now = self.now;
        let peer = &mut self.peers[p];
        let mut params = peer.trainer.export()?;
        // The round's model is evaluated later, in a batch: only its weights can be judged
        // now (the node judges a loss too when it evaluated this very model).
        if !publishable(&params, None) {
            peer.rollbacks += 1;
            peer.merger.roll_back(&mut peer.trainer)?;
            params = peer.trainer.export()?;
        }
        peer.rounds_done += 1;
        let reached_rounds = peer.rounds_done == self.rules.rounds;
        let samples = peer.trainer.samples_seen();
        if !self.rules.round.publish_trained {
            self.evaluate_if_due(p, params.clone());
        }
        let peer = &mut self.peers[p];
        let mut announced = false;
        if let RoundStep::Announce { version } =
            peer.core.round_finished(now, publishable(&params, None))
        {
            let manifest = ManifestId::of(
                &[
                    peer.id.to_le_bytes().as_slice(),
                    &version.to_le_bytes(),
                    &peer.epoch.to_le_bytes(),
                ]
                .concat(),
            );
            let served = match peer.hostile {
                Some(h) => h
                    .poisoned(&params, &mut peer.rng)
                    .ok()
                    .flatten()
                    .map(Arc::new),
                // A model the encoding cannot carry (f16 past 65,504) is served in f32, as
                // the node does.
                None => Some(Arc::new(match self.encoding {
                    murmur_protocol::Encoding::F32Le => params.clone(),
                    e => murmur_protocol::quantize(&params, e).unwrap_or_else(|_| params.clone()),
                })),
            };
            let (accuracy, loss) = peer
                .last_eval
                .map_or((0.0, 0.0), |(e, _)| (e.accuracy, e.loss));
            let announce = announcement(
                Announce {
                    manifest,
                    version,
                    samples,
                    metrics: MetricsSummary {
                        accuracy,
                        loss,
                        merges: peer.merges,
                        bytes_sent: peer.bytes_sent,
                        bytes_received: peer.bytes_received,
                        // The simulation models time, not CPU: no shares to report.
                        train_share: 0.0,
                        comm_share: 0.0,
                    },
                    projection: Vec::new(),
                    neighbours: Vec::new(),
                },
                peer.hostile,
            );
            peer.core
                .announced(crate::averaging::core::OwnModel { manifest, samples });
            peer.served.push_back(Served {
                manifest,
                model: served,
            });
            if peer.served.len() > super::peer::KEPT_MODELS {
                peer.served.pop_front();
            }
            peer.checkpoint = Some((params.clone(), version, samples));
            let log = &mut self.log[p];
            log.push_back((now, announce));
            if log.len() > LOG_PER_SENDER {
                log.pop_front();
            }
            announced = true;
        }
        peer.merger.published(params);
        if announced {
            // Peers waiting for same-round models look again when this one reaches them.
            let waiting: Vec<u32> = (0..self.peers.len())
                .filter(|&g| g != p && self.peers[g].gathering.is_some())
                .map(|g| g as u32)
                .collect();
            for g in waiting {
                let at = now + self.links.latency(p as u32, g);
                self.push(at, g, Kind::Gather);
            }
        }
        if reached_rounds && self.finished() {
            self.done = true;
        }
        // Churn: a crash at the end of a round.
        if self.rules.crash_per_round > 0.0 && self.rng.random::<f64>() < self.rules.crash_per_round
        {
            let leaves = self.rng.random::<f64>() < self.rules.leave_share;
            let peer = &mut self.peers[p];
            peer.epoch += 1;
            peer.life = if leaves { Life::Gone } else { Life::Down };
            peer.served.clear();
            self.log[p].clear();
            if leaves {
                self.done |= self.finished();
            } else {
                let at = now + self.rules.down;
                self.push(at, p as u32, Kind::Restart);
            }
            return Ok(false);
        }
        Ok(true)
    }

    /// Queues an evaluation of `params`, peer `p`'s model after its latest round, when one
    /// is due (and after its last round): the trained model's, or with `publish_trained`
    /// the merged one's.
    fn evaluate_if_due(&mut self, p: usize, params: FlatParams) {
        let now = self.now;
        let peer = &mut self.peers[p];
        let round = peer.rounds_done;
        let due = match self.rules.eval_every_secs {
            Some(every) => peer
                .last_eval_at
                .is_none_or(|at| now.saturating_sub(at) >= every),
            None => round.is_multiple_of(self.rules.eval_every),
        };
        if due || round == self.rules.rounds {
            peer.last_eval_at = Some(now);
            peer.pending_eval = Some(EvalJob {
                at: now,
                round,
                samples: peer.trainer.samples_seen(),
                params,
            });
        }
    }

    /// A network-wide trace line: accuracies, consensus distance (also within and between
    /// the groups of an active split), bytes and merges. A peer in the middle of its steps
    /// counts with the model its last compute batch left (its steps may be done already).
    fn sample(&mut self) -> Result<(), TrainError> {
        self.compute_batch(false)?;
        let live: Vec<usize> = (0..self.peers.len())
            .filter(|&i| self.peers[i].life == Life::Up && self.peers[i].hostile.is_none())
            .collect();
        let accs: Vec<f32> = live
            .iter()
            .filter_map(|&i| self.peers[i].last_eval.map(|(e, _)| e.accuracy))
            .collect();
        let models: Vec<FlatParams> = live
            .iter()
            .map(|&i| self.peers[i].trainer.export())
            .collect::<Result<_, _>>()?;
        let all: Vec<&[f32]> = models.iter().map(|m| m.values()).collect();
        let (consensus, _) = spread(&all);
        let active = self.links.active_split(self.now);
        let (group_distances, between_groups) = match active {
            Some(groups) => {
                let mut within = Vec::new();
                let mut means = Vec::new();
                for g in 0..groups {
                    let members: Vec<&[f32]> = live
                        .iter()
                        .zip(&all)
                        .filter(|(i, _)| **i % groups == g)
                        .map(|(_, m)| *m)
                        .collect();
                    let (d, mean) = spread(&members);
                    within.push(d);
                    means.push(mean);
                }
                let refs: Vec<&[f32]> = means.iter().map(Vec::as_slice).collect();
                let (between, _) = spread(&refs);
                (within, Some(between))
            }
            None => (Vec::new(), None),
        };
        let bytes: u64 = self.peers.iter().map(|p| p.bytes_received).sum();
        let merges: u64 = self.peers.iter().map(|p| p.merges).sum();
        let (prev_t, prev_bytes) = self.net_lines.last().map_or((0.0, 0), |l| (l.t, l.bytes));
        let span = (self.now.as_secs_f64() - prev_t).max(1e-9);
        let rate = bytes.saturating_sub(prev_bytes) as f64 / span;
        self.history.push(crate::history::HistoryPoint {
            t: self.now.as_secs_f64(),
            peers: self
                .peers
                .iter()
                .filter(|p| p.life == Life::Up)
                .filter_map(|p| {
                    p.last_eval.map(|(e, _)| {
                        (
                            super::peer_name(p.id),
                            crate::history::PeerPoint {
                                accuracy: e.accuracy,
                                loss: e.loss,
                                version: p.core.version(),
                            },
                        )
                    })
                })
                .collect(),
            consensus_distance: Some(consensus),
            bytes_in_rate: rate,
            bytes_out_rate: rate,
            merges,
        });
        self.net_lines.push(NetLine {
            t: self.now.as_secs_f64(),
            kind: "network",
            live: live.len(),
            mean_accuracy: if accs.is_empty() {
                0.0
            } else {
                accs.iter().sum::<f32>() / accs.len() as f32
            },
            min_accuracy: accs.iter().copied().fold(f32::INFINITY, f32::min).min(1.0),
            consensus_distance: consensus,
            group_distances,
            between_groups,
            bytes,
            merges,
        });
        if let Some(bar) = &self.progress {
            let done = self
                .peers
                .iter()
                .filter(|p| p.hostile.is_none())
                .map(|p| p.rounds_done.min(self.rules.rounds))
                .min()
                .unwrap_or(0);
            bar.set_position(done);
            bar.set_message(format!(
                "t={:.0}s mean accuracy {:.3}",
                self.now.as_secs_f64(),
                self.net_lines.last().map_or(0.0, |l| l.mean_accuracy)
            ));
        }
        Ok(())
    }

    /// Evaluates every live peer's last published model, what a user would take from it
    /// (the summary's accuracies).
    pub fn final_evaluation(&mut self) -> Result<(), TrainError> {
        let now = self.now;
        for peer in &mut self.peers {
            if peer.life != Life::Up {
                continue;
            }
            let (params, samples) = match &peer.checkpoint {
                Some((params, _, samples)) => (params.clone(), *samples),
                None => (peer.trainer.export()?, peer.trainer.samples_seen()),
            };
            peer.pending_eval = Some(EvalJob {
                at: now,
                round: peer.rounds_done,
                samples,
                params,
            });
        }
        self.compute_batch(false)
    }
}

/// One simulated fetch: when it ended, what it got (with the model), and what it charged
/// and forgave.
struct SimFetch {
    at: Duration,
    got: Option<(Got<u32>, Arc<FlatParams>)>,
    ledger: Ledger<u32>,
}

/// A simulated holder's answer (a manifest answer carries the model it describes).
enum Answer {
    Manifest(ManifestAnswer, Option<Arc<FlatParams>>),
    Chunks(ChunksAnswer),
}

/// A request that timed out.
fn failed(ask: &Ask) -> Answer {
    match ask {
        Ask::Manifest => Answer::Manifest(ManifestAnswer::Failed { timeout: true }, None),
        Ask::Chunks(_) => Answer::Chunks(ChunksAnswer::Failed { timeout: true }),
    }
}

/// The chunks of a model of `bytes` cut every `chunk_size` bytes, with made-up ids.
pub fn chunk_table(bytes: u64, chunk_size: u32) -> BTreeMap<ChunkId, u64> {
    let size = u64::from(chunk_size.max(1));
    (0..bytes.div_ceil(size).max(1))
        .map(|i| {
            let len = bytes.saturating_sub(i * size).min(size);
            (ChunkId::of(&i.to_le_bytes()), len)
        })
        .collect()
}

/// A message's name for the loss draw: its sender and version.
fn message_key(sender: u32, announce: &Announce) -> u64 {
    mix(u64::from(sender) << 40
        ^ announce.version
        ^ u64::from_le_bytes(
            announce.manifest.as_bytes()[..8]
                .try_into()
                .unwrap_or([0; 8]),
        ))
}

/// The mean squared distance of `models` from their mean, and the mean.
fn spread(models: &[&[f32]]) -> (f64, Vec<f32>) {
    let Some(first) = models.first() else {
        return (0.0, Vec::new());
    };
    let n = models.len() as f64;
    let mut mean = vec![0f64; first.len()];
    for m in models {
        for (a, v) in mean.iter_mut().zip(m.iter()) {
            *a += f64::from(*v);
        }
    }
    mean.iter_mut().for_each(|a| *a /= n);
    let mut total = 0f64;
    for m in models {
        total += m
            .iter()
            .zip(&mean)
            .map(|(v, a)| (f64::from(*v) - a).powi(2))
            .sum::<f64>();
    }
    (total / n, mean.into_iter().map(|a| a as f32).collect())
}
