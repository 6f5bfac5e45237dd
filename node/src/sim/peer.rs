//! One simulated peer: the real averaging [`Core`], the real [`Trainer`] and [`Merger`], and
//! what the simulated network needs to know of it (its state, its last announced models,
//! its counters). It owns that peer's state; it must not look at other peers (the engine
//! passes what it needs) nor at any clock.

use crate::averaging::budgets::Ledger;
use crate::averaging::core::{Core, CoreConfig, Fate, Plan};
use crate::averaging::offer;
use crate::averaging::rates::Rates;
use crate::data::Split;
use crate::hostile::Hostile;
use crate::train::merge::Merger;
use crate::train::round::Cycle;
use crate::train::worker::{RoundPolicy, local_step};
use crate::train::{Evaluation, TrainError, Trainer};
use murmur_protocol::{FlatParams, ManifestId};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

/// Models a peer keeps serving after announcing newer ones.
pub const KEPT_MODELS: usize = 4;

/// Where a peer is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Life {
    /// Joins later.
    NotYet,
    Up,
    /// Crashed; restarts later.
    Down,
    /// Left for good.
    Gone,
}

/// An averaging whose models are on their way.
#[derive(Debug)]
pub struct Incoming {
    pub plan: Plan<u32>,
    /// Models fetched in time: (index in the plan, model).
    pub models: Vec<(usize, Arc<FlatParams>)>,
}

/// A model this peer announced and serves.
#[derive(Debug, Clone)]
pub struct Served {
    pub manifest: ManifestId,
    /// `None`: a manifest of another layout (or no model at all), refused on arrival.
    pub model: Option<Arc<FlatParams>>,
}

/// An evaluation to run in the next compute batch.
#[derive(Debug)]
pub struct EvalJob {
    pub at: Duration,
    pub round: u64,
    pub samples: u64,
    pub params: FlatParams,
}

/// One line of the per-peer trace.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PeerLine {
    pub t: f64,
    pub peer: u32,
    pub round: u64,
    pub samples: u64,
    pub accuracy: f32,
    pub loss: f32,
    pub merges: u64,
    pub merges_rejected: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
}

/// One simulated peer.
pub struct SimPeer {
    pub id: u32,
    pub hostile: Option<Hostile>,
    pub life: Life,
    /// Bumped at every crash: events of an earlier life are dropped.
    pub epoch: u32,
    /// The round cycle the training thread of a node runs too.
    pub cycle: Cycle,
    /// Steps of the round in progress whose `Trained` event is still to come.
    pub steps_planned: Option<u64>,
    /// The round whose merge wait's end is scheduled.
    pub wait_scheduled: Option<u64>,
    /// While its averaging waits for partners' same-round models: until when.
    pub gathering: Option<Duration>,
    /// With exact averaging: the last round whose steps it finished.
    pub exact_round: u64,
    pub core: Core<u32>,
    pub rng: ChaCha8Rng,
    pub trainer: Trainer,
    pub merger: Merger,
    /// The round's steps are still to be computed.
    pub pending_train: bool,
    pub pending_eval: Option<EvalJob>,
    /// Rounds published.
    pub rounds_done: u64,
    /// Announcements heard up to this time.
    pub heard_until: Duration,
    pub incoming: Option<Incoming>,
    /// A merge that arrived while the peer was training: applied when its steps end.
    pub late: Option<Incoming>,
    pub served: VecDeque<Served>,
    /// The last announced model, version and samples (a restart resumes from it).
    pub checkpoint: Option<(FlatParams, u64, u64)>,
    pub last_eval: Option<(Evaluation, u64)>,
    /// When the last evaluation was due.
    pub last_eval_at: Option<Duration>,
    /// When it first reached the target: virtual time, samples, and bytes received by then.
    pub reached: Option<(Duration, u64, u64)>,
    pub merges: u64,
    pub merges_rejected: u64,
    pub rollbacks: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub chunks_fetched: u64,
    pub blocks: u64,
    /// The measured delivery rate per peer, fed and read by this peer's fetches.
    pub rates: Rates<u32>,
    /// What this peer's fetches charged and forgave, each from when the fetch ended.
    pub ledgers: Vec<(Duration, Ledger<u32>)>,
    /// Announcements ignored for coming too soon after the sender's previous one.
    pub throttled: u64,
    pub trace: Vec<PeerLine>,
}

impl SimPeer {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: u32,
        hostile: Option<Hostile>,
        trainer: Trainer,
        round: &RoundPolicy,
        core: CoreConfig,
        seed: u64,
        life: Life,
    ) -> Result<Self, TrainError> {
        let merger = Merger::new(&trainer, round.outer, round.defence)?;
        Ok(Self {
            id,
            hostile,
            life,
            epoch: 0,
            cycle: Cycle::new(round),
            steps_planned: None,
            wait_scheduled: None,
            gathering: None,
            exact_round: 0,
            core: Core::new(core, 0, false),
            rng: ChaCha8Rng::seed_from_u64(super::net::mix(seed ^ u64::from(id))),
            trainer,
            merger,
            pending_train: false,
            pending_eval: None,
            rounds_done: 0,
            heard_until: Duration::ZERO,
            incoming: None,
            late: None,
            served: VecDeque::new(),
            checkpoint: None,
            last_eval: None,
            last_eval_at: None,
            reached: None,
            merges: 0,
            merges_rejected: 0,
            rollbacks: 0,
            bytes_sent: 0,
            bytes_received: 0,
            chunks_fetched: 0,
            blocks: 0,
            rates: Rates::new(),
            ledgers: Vec::new(),
            throttled: 0,
            trace: Vec::new(),
        })
    }

    /// Applies to the core what fetches that ended by `now` charged and forgave.
    pub fn settle(&mut self, now: Duration) {
        let core = &mut self.core;
        self.ledgers.retain(|(at, ledger)| {
            let due = *at <= now;
            if due {
                core.settle(ledger);
            }
            !due
        });
    }

    /// The model named `manifest`, if this peer still serves it.
    pub fn serves(&self, manifest: &ManifestId) -> Option<&Served> {
        self.served.iter().find(|s| s.manifest == *manifest)
    }

    /// The compute batch's share of this peer: a due evaluation, then (with `train`) the
    /// round's steps.
    pub fn compute(
        &mut self,
        round: &RoundPolicy,
        test: &Split,
        target: f32,
        train: bool,
    ) -> Result<(), TrainError> {
        if let Some(job) = self.pending_eval.take() {
            let current = self.trainer.export()?;
            self.trainer.import(&job.params)?;
            let eval = self.trainer.evaluate_split(test);
            self.trainer.import(&current)?;
            let eval = eval?;
            self.last_eval = Some((eval, job.samples));
            if target > 0.0 && eval.accuracy >= target && self.reached.is_none() {
                self.reached = Some((job.at, job.samples, self.bytes_received));
            }
            self.trace.push(PeerLine {
                t: job.at.as_secs_f64(),
                peer: self.id,
                round: job.round,
                samples: job.samples,
                accuracy: eval.accuracy,
                loss: eval.loss,
                merges: self.merges,
                merges_rejected: self.merges_rejected,
                bytes_sent: self.bytes_sent,
                bytes_received: self.bytes_received,
            });
        }
        if train && self.pending_train {
            self.pending_train = false;
            for _ in 0..self.steps_planned.unwrap_or(0) {
                match local_step(&mut self.trainer, round) {
                    Ok(()) => self.cycle.stepped(),
                    Err(TrainError::Diverged { .. }) => {
                        self.rollbacks += 1;
                        self.merger.roll_back(&mut self.trainer)?;
                        self.cycle.diverged();
                        break;
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(())
    }

    /// Applies an averaging whose models arrived (as the node's averaging task offers them
    /// to its training thread); returns the fates to report to the core.
    pub fn take_in(&mut self, incoming: Incoming) -> Result<(Plan<u32>, Vec<Fate>), TrainError> {
        let Incoming { plan, models } = incoming;
        let fetched = models.into_iter().map(|(i, m)| (i, (*m).clone())).collect();
        let (offer, offered) = offer::offer(&plan, fetched);
        let verdicts = match offer {
            Some(offer) => {
                let applied = self.merger.apply(&mut self.trainer, offer)?;
                if applied.absorbed {
                    self.merges += 1;
                }
                applied.verdicts
            }
            None => Vec::new(),
        };
        self.merges_rejected += verdicts.iter().filter(|v| v.is_err()).count() as u64;
        Ok((plan, offered.judge(&verdicts)))
    }
}
