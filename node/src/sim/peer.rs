//! One simulated peer: the real averaging [`Core`], the real [`Trainer`] and [`Merger`], and
//! what the simulated network needs to know of it (its state, its last announced models,
//! its counters). It owns that peer's state; it must not look at other peers (the engine
//! passes what it needs) nor at any clock.

use crate::averaging::core::{Core, CoreConfig, Fate, Plan};
use crate::data::Split;
use crate::node::Hostile;
use crate::train::merge::{Merger, Offer};
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

/// Where a live peer is in its round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Local steps (computed in a batch with other peers').
    Training,
    /// Steps done, waiting for the round's merge (at most the merge wait).
    Waiting,
    /// Round published, idling out the least round time.
    Idle,
}

/// An averaging whose models are on their way.
#[derive(Debug)]
pub struct Incoming {
    pub plan: Plan<u32>,
    /// Fetched models: (index in the plan, model).
    pub models: Vec<(usize, Arc<FlatParams>)>,
    /// Every partner's fate so far (`Refused` for a fetched one until judged).
    pub fates: Vec<Fate>,
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
    pub phase: Phase,
    pub core: Core<u32>,
    pub rng: ChaCha8Rng,
    pub trainer: Trainer,
    pub merger: Merger,
    /// The round's steps are still to be computed.
    pub pending_train: bool,
    pub pending_eval: Option<EvalJob>,
    pub round_started: Duration,
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
            phase: Phase::Idle,
            core: Core::new(core, 0, false),
            rng: ChaCha8Rng::seed_from_u64(super::net::mix(seed ^ u64::from(id))),
            trainer,
            merger,
            pending_train: false,
            pending_eval: None,
            round_started: Duration::ZERO,
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
            throttled: 0,
            trace: Vec::new(),
        })
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
            for _ in 0..round.steps.max(1) {
                match local_step(&mut self.trainer, round) {
                    Ok(()) => {}
                    Err(TrainError::Diverged { .. }) => {
                        self.rollbacks += 1;
                        self.merger.roll_back(&mut self.trainer)?;
                        break;
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(())
    }

    /// Applies an averaging whose models arrived; returns the fates to report to the core.
    pub fn take_in(&mut self, incoming: Incoming) -> Result<(Plan<u32>, Vec<Fate>), TrainError> {
        let Incoming {
            plan,
            models,
            mut fates,
        } = incoming;
        if models.is_empty() {
            return Ok((plan, fates));
        }
        let indices: Vec<usize> = models.iter().map(|(i, _)| *i).collect();
        let offer = if plan.adopt {
            Offer::Adopt {
                model: (*models[0].1).clone(),
            }
        } else {
            Offer::Merge {
                partners: models.iter().map(|(_, m)| (**m).clone()).collect(),
                weights: plan.weights(&indices),
            }
        };
        let applied = self.merger.apply(&mut self.trainer, offer)?;
        if applied.absorbed {
            self.merges += 1;
        }
        for (index, verdict) in indices.iter().zip(&applied.verdicts) {
            let fate = match verdict {
                Ok(crate::averaging::robust::Taken::Adopted) => Fate::Adopted,
                Ok(crate::averaging::robust::Taken::Merged) => Fate::Merged,
                Err(_) => {
                    self.merges_rejected += 1;
                    Fate::Refused
                }
            };
            if let Some(slot) = fates.get_mut(*index) {
                *slot = fate;
            }
        }
        Ok((plan, fates))
    }
}
