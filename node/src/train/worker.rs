//! The training thread of a running node. It owns the [`Trainer`] and never waits for the
//! network: it runs rounds of local steps, publishes each round's weights and evaluation on a
//! `watch` channel (a slow reader simply sees the latest round), and applies merges from a
//! bounded queue at step boundaries. Stops when its handle is dropped.

use super::{Evaluation, TrainError, Trainer};
use crate::averaging::policy::merge_into;
use crate::metrics::Counters;
use murmur_protocol::FlatParams;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};

/// Merges waiting for the trainer. The node starts at most one averaging at a time, so two
/// slots are plenty; the trainer drains the queue at every step.
const MERGE_QUEUE: usize = 2;

/// Evaluations take at most about 1/10 of the training thread's time: after an evaluation
/// that took `d`, the next one waits at least `10 d` (and at least `eval_every`).
const EVAL_COST_RATIO: u32 = 10;

/// When a round ends.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RoundPolicy {
    /// Local steps per round.
    pub steps: u64,
    /// If set, a round also ends after this long.
    pub max_time: Option<Duration>,
    /// Least time between two evaluations on the test split; rounds in between report the
    /// last one. Evaluating 10,000 test images every round would cost more than the round.
    pub eval_every: Duration,
    /// If set, the learning rate decays as `lr / (1 + samples / decay)`.
    pub lr_decay: Option<LrDecay>,
}

/// Inverse-time decay of the learning rate over the samples a peer has trained on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LrDecay {
    /// The rate at sample 0.
    pub base: f64,
    /// Samples after which the rate is halved (then a third at twice as many, ...).
    pub samples: u64,
}

impl LrDecay {
    /// The rate after `samples` trained samples.
    pub fn lr(&self, samples: u64) -> f64 {
        self.base / (1.0 + samples as f64 / self.samples.max(1) as f64)
    }
}

/// One finished round.
#[derive(Debug, Clone)]
pub struct RoundResult {
    /// Rounds finished by this thread so far (1 for the first).
    pub round: u64,
    pub params: FlatParams,
    /// Training samples folded in so far (resumed value included).
    pub samples: u64,
    pub eval: Evaluation,
}

/// What the node asks of the trainer.
#[derive(Debug)]
pub enum ToTrainer {
    /// `own = weights[0] * own + Σ weights[i] * partners[i-1]`, on the current weights.
    Merge {
        partners: Vec<FlatParams>,
        weights: Vec<f32>,
    },
    /// Replace the weights outright (a late joiner adopting the network's model).
    Adopt(FlatParams),
}

/// The running thread; dropping it stops and joins the thread.
#[derive(Debug)]
pub struct TrainerHandle {
    pub merges: mpsc::Sender<ToTrainer>,
    pub rounds: watch::Receiver<Option<Arc<RoundResult>>>,
    stop: Arc<AtomicBool>,
    join: Option<JoinHandle<Result<(), TrainError>>>,
}

impl TrainerHandle {
    /// Starts the training thread on `trainer`.
    pub fn spawn(
        mut trainer: Trainer,
        policy: RoundPolicy,
        counters: Arc<Counters>,
    ) -> std::io::Result<Self> {
        let (merges, mut merge_rx) = mpsc::channel(MERGE_QUEUE);
        let (round_tx, rounds) = watch::channel(None);
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let join = std::thread::Builder::new()
            .name("murmur-train".into())
            .spawn(move || {
                let mut round = 0u64;
                let mut last_eval: Option<(Instant, super::Evaluation, Duration)> = None;
                while !stopping.load(Ordering::Relaxed) {
                    let started = Instant::now();
                    for _ in 0..policy.steps.max(1) {
                        while let Ok(msg) = merge_rx.try_recv() {
                            apply(&trainer, msg, &counters)?;
                        }
                        if stopping.load(Ordering::Relaxed) {
                            return Ok(());
                        }
                        if let Some(decay) = policy.lr_decay {
                            trainer.set_lr(decay.lr(trainer.samples_seen()));
                        }
                        trainer.step()?;
                        if policy.max_time.is_some_and(|t| started.elapsed() >= t) {
                            break;
                        }
                    }
                    round += 1;
                    let result = RoundResult {
                        round,
                        params: trainer.export()?,
                        samples: trainer.samples_seen(),
                        eval: match last_eval {
                            Some((at, eval, cost))
                                if at.elapsed() < policy.eval_every.max(cost * EVAL_COST_RATIO) =>
                            {
                                eval
                            }
                            _ => {
                                let started = Instant::now();
                                let eval = trainer.evaluate()?;
                                last_eval = Some((Instant::now(), eval, started.elapsed()));
                                eval
                            }
                        },
                    };
                    round_tx.send_replace(Some(Arc::new(result)));
                }
                Ok(())
            })?;
        Ok(Self {
            merges,
            rounds,
            stop,
            join: Some(join),
        })
    }

    /// True while the thread runs.
    pub fn is_running(&self) -> bool {
        self.join.as_ref().is_some_and(|j| !j.is_finished())
    }

    /// Stops the thread and returns how it ended.
    pub fn stop(mut self) -> Result<(), TrainError> {
        self.finish()
    }

    fn finish(&mut self) -> Result<(), TrainError> {
        self.stop.store(true, Ordering::Relaxed);
        match self.join.take().map(|j| j.join()) {
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(TrainError::Panicked),
            None => Ok(()),
        }
    }
}

impl Drop for TrainerHandle {
    fn drop(&mut self) {
        if let Err(e) = self.finish() {
            tracing::error!("training thread ended with an error: {e}");
        }
    }
}

fn apply(trainer: &Trainer, msg: ToTrainer, counters: &Counters) -> Result<(), TrainError> {
    let params = match msg {
        ToTrainer::Adopt(params) => params,
        ToTrainer::Merge { partners, weights } => {
            let mut own = trainer.export()?;
            if partners.iter().any(|p| p.layout() != own.layout()) {
                Counters::inc(&counters.merges_rejected);
                tracing::warn!("merge refused: a partner's layout differs from ours");
                return Ok(());
            }
            let slices: Vec<&[f32]> = partners.iter().map(|p| p.values()).collect();
            merge_into(own.values_mut(), &slices, &weights);
            own
        }
    };
    match trainer.import(&params) {
        Ok(()) => Counters::inc(&counters.merges),
        Err(e) => {
            Counters::inc(&counters.merges_rejected);
            tracing::warn!("merge refused: {e}");
        }
    }
    Ok(())
}
