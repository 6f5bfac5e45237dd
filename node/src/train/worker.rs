//! The training thread of a running node. It owns the [`Trainer`] and never waits for the
//! network: it runs rounds of local steps, says on a `watch` channel when a round's steps are
//! done (the node then starts averaging), and applies merges from a bounded queue at step
//! boundaries. With a merge wait, it idles until that round's merge (or word that there is
//! none) arrives, at most that long, so the round ends on the merged model; then it
//! publishes the round's weights and evaluation on another `watch` channel (a slow reader
//! simply sees the latest round). Stops when its handle is dropped.
//!
//! It is also where partner models are checked, since only it holds a model to check them
//! with ([`super::merge`] checks and combines them; the simulator calls the same code), and
//! the verdicts go back to the node (whose averaging core charges the peers). When
//! training diverges it goes back to the weights of its last published round with a fresh
//! optimizer and keeps going, so a poisoned merge costs a round, never the thread.
//!
//! It counts the CPU time of its steps, merges and evaluations apart
//! ([`Counters::train_cpu_micros`], [`Counters::merge_cpu_micros`],
//! [`Counters::eval_cpu_micros`]), each on its own clock plus that of candle's compute pool
//! ([`ComputeClock`]).

pub use super::merge::Defence;
use super::merge::Merger;
use super::round::{Cycle, Next, publishable};
use super::{Evaluation, TrainError, Trainer};
use crate::averaging::offer::Offer;
use crate::averaging::outer::OuterParams;
use crate::averaging::robust::{Rejection, Taken};
use crate::cpu::{ComputeClock, micros};
use crate::metrics::Counters;
use murmur_protocol::FlatParams;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, watch};

/// Merges waiting for the trainer. The node starts at most one averaging at a time, so two
/// slots are plenty; the trainer drains the queue at every step.
const MERGE_QUEUE: usize = 2;

/// Evaluations take at most about 1/10 of the training thread's time: after an evaluation
/// that took `d`, the next one waits at least `10 d` (and at least `eval_every`).
const EVAL_COST_RATIO: u32 = 10;

/// How long an idle trainer sleeps between two looks at its stop flag and merge queue.
const IDLE_SLICE: Duration = Duration::from_millis(10);

/// How often a trainer waiting for its round's merge looks for it.
const MERGE_POLL: Duration = Duration::from_millis(1);

/// When a round ends.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RoundPolicy {
    /// Local steps per round.
    pub steps: u64,
    /// If set, a round also ends after this long.
    pub max_time: Option<Duration>,
    /// Least time from one round's start to the next: a round done sooner idles for the
    /// rest (merges go on being applied), so that a fast trainer does not run ahead of what
    /// it can exchange (gossip announces a model at most every few hundred milliseconds).
    pub min_time: Duration,
    /// Least time between two evaluations on the test split; rounds in between report the
    /// last one. Evaluating 10,000 test images every round would cost more than the round.
    pub eval_every: Duration,
    /// How long a round may wait, idle, after its steps for its merge, so that the round
    /// ends on the merged model; zero: the round ends after its steps and merges are
    /// applied whenever they arrive.
    pub merge_wait: Duration,
    /// The node starts each round's averaging when the round before it ends, so that its
    /// fetches overlap this round's steps: a merge or `Skip` that arrived during the steps is
    /// this round's, and the round does not wait for another.
    pub overlap: bool,
    /// Publish each round's trained model before its merge, and evaluate the merged model
    /// after it (the same-round exchange, [`crate::averaging::policy::Staleness::SameRound`]):
    /// partners merge this round's model rather than the last round's merged one.
    pub publish_trained: bool,
    /// If set, the learning rate follows this schedule over the samples trained.
    pub lr_schedule: Option<LrSchedule>,
    /// The outer step applied to every merge ([`OuterParams::PLAIN`]: the merge as is).
    pub outer: OuterParams,
    /// How offered models are checked and combined.
    pub defence: Defence,
}

/// The learning rate over the samples a peer has trained on: linear warm-up from 0, then
/// inverse-time decay, each optional.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LrSchedule {
    /// The rate after warm-up, before decay.
    pub base: f64,
    /// Samples over which the rate rises linearly to `base` (0 = none).
    pub warmup_samples: u64,
    /// Samples after which the rate is halved (then a third at twice as many, ...); 0 = none.
    pub decay_samples: u64,
    /// Samples over which a cosine factor takes the rate to 0 (where it stays); 0 = none.
    pub cosine_samples: u64,
}

impl LrSchedule {
    /// The rate after `samples` trained samples.
    pub fn lr(&self, samples: u64) -> f64 {
        let warm = if self.warmup_samples == 0 {
            1.0
        } else {
            ((samples + 1) as f64 / self.warmup_samples as f64).min(1.0)
        };
        let decay = if self.decay_samples == 0 {
            1.0
        } else {
            1.0 + samples as f64 / self.decay_samples as f64
        };
        let cosine = if self.cosine_samples == 0 {
            1.0
        } else {
            let progress = (samples as f64 / self.cosine_samples as f64).min(1.0);
            0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
        };
        self.base * warm * cosine / decay
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
    /// `samples` when `eval` was measured (an earlier round's, between evaluations).
    pub eval_samples: u64,
}

/// Where the trainer says which offered models it took: one entry per model, in order
/// (`None`: nobody listens).
pub type Verdicts = Option<oneshot::Sender<Vec<Result<Taken, Rejection>>>>;

/// What the node asks of the trainer.
#[derive(Debug)]
pub enum ToTrainer {
    /// Take in partner models ([`Offer`], built from the averaging's plan); the verdicts
    /// say which were taken.
    Offer { offer: Offer, verdicts: Verdicts },
    /// No merge is coming for the round just trained (no partner, or every fetch failed).
    Skip,
}

/// The running thread; dropping it stops and joins the thread.
#[derive(Debug)]
pub struct TrainerHandle {
    pub merges: mpsc::Sender<ToTrainer>,
    /// The number of the latest round whose local steps are done (its merge is due).
    pub trained: watch::Receiver<u64>,
    pub rounds: watch::Receiver<Option<Arc<RoundResult>>>,
    stop: Arc<AtomicBool>,
    join: Option<JoinHandle<Result<(), TrainError>>>,
}

impl TrainerHandle {
    /// Starts the training thread on `trainer`.
    pub fn spawn(
        trainer: Trainer,
        policy: RoundPolicy,
        counters: Arc<Counters>,
    ) -> std::io::Result<Self> {
        let (merges, merge_rx) = mpsc::channel(MERGE_QUEUE);
        let (round_tx, rounds) = watch::channel(None);
        let (trained_tx, trained) = watch::channel(0u64);
        let stop = Arc::new(AtomicBool::new(false));
        let worker = Worker {
            trainer,
            policy,
            counters,
            merge_rx,
            round_tx,
            trained_tx,
            stopping: stop.clone(),
            merger: None,
            last_eval: None,
            clock: None,
        };
        let join = std::thread::Builder::new()
            .name("murmur-train".into())
            .spawn(move || worker.run())?;
        Ok(Self {
            merges,
            trained,
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

/// The last evaluation: when, its result, what it cost, and the samples it was measured at.
type LastEval = (Instant, Evaluation, Duration, u64);

/// The training thread's state; only that thread touches it.
struct Worker {
    trainer: Trainer,
    policy: RoundPolicy,
    counters: Arc<Counters>,
    merge_rx: mpsc::Receiver<ToTrainer>,
    round_tx: watch::Sender<Option<Arc<RoundResult>>>,
    trained_tx: watch::Sender<u64>,
    stopping: Arc<AtomicBool>,
    /// Checks and takes partner models (built when the thread starts).
    merger: Option<Merger>,
    last_eval: Option<LastEval>,
    /// This thread's CPU clock plus the compute pool's (built when the thread starts).
    clock: Option<ComputeClock>,
}

impl Worker {
    /// Runs rounds until told to stop (or the handle is gone): carries out the steps of the
    /// round [`Cycle`], on this thread's monotonic clock.
    fn run(mut self) -> Result<(), TrainError> {
        self.clock = Some(ComputeClock::current());
        self.merger = Some(Merger::new(
            &self.trainer,
            self.policy.outer,
            self.policy.defence,
        )?);
        let origin = Instant::now();
        let mut cycle = Cycle::new(&self.policy);
        while !self.stopped() {
            let now = origin.elapsed();
            match cycle.next(now) {
                Next::Train => {
                    self.drain(&mut cycle)?;
                    if self.stopped() {
                        break;
                    }
                    let (stepped, spent) =
                        measure(&self.clock, || local_step(&mut self.trainer, &self.policy));
                    Counters::add(&self.counters.train_cpu_micros, micros(spent));
                    match stepped {
                        Ok(()) => cycle.stepped(),
                        Err(TrainError::Diverged { loss }) => {
                            self.roll_back(&format!("training diverged (loss {loss})"))?;
                            cycle.diverged();
                        }
                        Err(e) => return Err(e),
                    }
                }
                Next::Trained { round } => {
                    self.trained_tx.send_replace(round);
                }
                Next::Wait { until } => match self.merge_rx.try_recv() {
                    Ok(msg) => {
                        self.apply(msg)?;
                        cycle.answered();
                    }
                    Err(mpsc::error::TryRecvError::Disconnected) => break,
                    Err(mpsc::error::TryRecvError::Empty) => {
                        std::thread::sleep(MERGE_POLL.min(until.saturating_sub(now)));
                    }
                },
                Next::Publish { round } => {
                    self.publish(round)?;
                    cycle.published(origin.elapsed());
                }
                Next::Evaluate { .. } => {
                    self.evaluation()?;
                    cycle.evaluated();
                }
                Next::Pace { until } => {
                    self.drain(&mut cycle)?;
                    std::thread::sleep(until.saturating_sub(now).min(IDLE_SLICE));
                }
            }
        }
        Ok(())
    }

    fn stopped(&self) -> bool {
        self.stopping.load(Ordering::Relaxed)
    }

    /// Evaluates (when due; with `publish_trained` only before the first evaluation),
    /// checks and publishes the round's model; a model that may not
    /// be published ([`publishable`]) sends the trainer back to its last published weights,
    /// which are published instead.
    fn publish(&mut self, round: u64) -> Result<(), TrainError> {
        // A round that publishes its trained model evaluates the merged one later
        // (`Next::Evaluate`); it publishes the last evaluation, an earlier model's.
        let (mut eval, mut eval_samples, fresh) = match self.last_eval {
            Some((_, eval, _, samples)) if self.policy.publish_trained => (eval, samples, false),
            _ => self.evaluation()?,
        };
        let mut params = self.trainer.export()?;
        if !publishable(&params, fresh.then_some(eval.loss)) {
            self.roll_back("the round's model has a non-finite loss or weights")?;
            self.last_eval = None;
            (eval, eval_samples, _) = self.evaluation()?;
            params = self.trainer.export()?;
        }
        if let Some(merger) = &mut self.merger {
            merger.published(params.clone());
        }
        let result = RoundResult {
            round,
            params,
            samples: self.trainer.samples_seen(),
            eval,
            eval_samples,
        };
        self.round_tx.send_replace(Some(Arc::new(result)));
        Ok(())
    }

    /// Goes back to the last good weights with a fresh optimizer.
    fn roll_back(&mut self, why: &str) -> Result<(), TrainError> {
        Counters::inc(&self.counters.rollbacks);
        tracing::warn!("{why}: back to the last published weights");
        match &self.merger {
            Some(merger) => merger.roll_back(&mut self.trainer),
            None => Ok(()),
        }
    }

    /// Applies every answer waiting in the queue, each one an answer for the cycle.
    fn drain(&mut self, cycle: &mut Cycle) -> Result<(), TrainError> {
        while let Ok(msg) = self.merge_rx.try_recv() {
            self.apply(msg)?;
            cycle.answered();
        }
        Ok(())
    }

    /// Applies one message from the node ([`Merger::apply`]) and says which models were
    /// taken.
    fn apply(&mut self, msg: ToTrainer) -> Result<(), TrainError> {
        let (offer, sender) = match msg {
            ToTrainer::Skip => return Ok(()),
            ToTrainer::Offer { offer, verdicts } => (offer, verdicts),
        };
        let Some(merger) = &mut self.merger else {
            return Ok(());
        };
        let (applied, spent) = measure(&self.clock, || merger.apply(&mut self.trainer, offer));
        Counters::add(&self.counters.merge_cpu_micros, micros(spent));
        let applied = applied?;
        for rejected in applied.verdicts.iter().filter_map(|v| v.as_ref().err()) {
            Counters::inc(&self.counters.merges_rejected);
            tracing::warn!("partner model refused: {rejected}");
        }
        Counters::add(&self.counters.merges_clipped, applied.clipped as u64);
        Counters::add(&self.counters.merges_screened, applied.screened as u64);
        if applied.absorbed {
            Counters::inc(&self.counters.merges);
        }
        if let Some(e) = &applied.absorb_error {
            Counters::inc(&self.counters.merges_rejected);
            tracing::warn!("merge refused: {e}");
        }
        if let Some(sender) = sender {
            let _ = sender.send(applied.verdicts);
        }
        Ok(())
    }

    /// A fresh evaluation when one is due, else the last one; with the samples it was
    /// measured at, and whether it is fresh (of the current weights). Its CPU time is
    /// counted apart.
    fn evaluation(&mut self) -> Result<(Evaluation, u64, bool), TrainError> {
        if let Some((at, eval, cost, samples)) = self.last_eval
            && at.elapsed() < self.policy.eval_every.max(cost * EVAL_COST_RATIO)
        {
            return Ok((eval, samples, false));
        }
        let started = Instant::now();
        let (eval, spent) = measure(&self.clock, || self.trainer.evaluate());
        Counters::add(&self.counters.eval_cpu_micros, micros(spent));
        let eval = eval?;
        let samples = self.trainer.samples_seen();
        self.last_eval = Some((Instant::now(), eval, started.elapsed(), samples));
        Ok((eval, samples, true))
    }
}

/// Runs `f`, with the CPU time it took on `clock` (zero without one).
fn measure<T>(clock: &Option<ComputeClock>, f: impl FnOnce() -> T) -> (T, Duration) {
    match clock {
        Some(c) => c.measure(f),
        None => (f(), Duration::ZERO),
    }
}

/// One minibatch step at the rate the schedule gives.
pub fn local_step(trainer: &mut Trainer, policy: &RoundPolicy) -> Result<(), TrainError> {
    if let Some(schedule) = policy.lr_schedule {
        trainer.set_lr(schedule.lr(trainer.samples_seen()));
    }
    trainer.step()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The schedule's factors, hand-computed: inverse-time decay halves the rate at
    /// `decay_samples`, the cosine factor is 1/2 halfway and 0 at its end and after it,
    /// warm-up scales linearly.
    #[test]
    fn the_learning_rate_schedule_multiplies_warm_up_decay_and_cosine() {
        let close = |a: f64, b: f64| assert!((a - b).abs() < 1e-12, "{a} != {b}");
        let decay = LrSchedule {
            base: 0.1,
            warmup_samples: 0,
            decay_samples: 30_000,
            cosine_samples: 0,
        };
        close(decay.lr(0), 0.1);
        close(decay.lr(30_000), 0.05);
        close(decay.lr(60_000), 0.1 / 3.0);
        let cosine = LrSchedule {
            decay_samples: 0,
            cosine_samples: 60_000,
            ..decay
        };
        close(
            cosine.lr(15_000),
            0.05 * (1.0 + std::f64::consts::FRAC_1_SQRT_2),
        );
        close(cosine.lr(30_000), 0.05);
        close(cosine.lr(60_000), 0.0);
        close(cosine.lr(90_000), 0.0);
        let all = LrSchedule {
            warmup_samples: 1_000,
            decay_samples: 30_000,
            ..cosine
        };
        // Warm-up (500 / 1000) x decay (1 / (1 + 499 / 30000)) x cosine.
        let c = 0.5 * (1.0 + (std::f64::consts::PI * 499.0 / 60_000.0).cos());
        close(all.lr(499), 0.1 * 0.5 * c / (1.0 + 499.0 / 30_000.0));
        close(all.lr(30_000), 0.1 * 0.5 / 2.0);
    }
    use crate::averaging::robust::Aggregation;
    use crate::train::digits_trainer as trainer_with;

    fn trainer() -> Trainer {
        trainer_with(0)
    }

    fn policy(merge_wait: Duration, defence: Defence) -> RoundPolicy {
        RoundPolicy {
            steps: 2,
            max_time: None,
            min_time: Duration::ZERO,
            eval_every: Duration::ZERO,
            merge_wait,
            overlap: false,
            publish_trained: false,
            lr_schedule: None,
            outer: OuterParams::PLAIN,
            defence,
        }
    }

    fn spawn(merge_wait: Duration) -> TrainerHandle {
        let policy = policy(merge_wait, Defence::NONE);
        TrainerHandle::spawn(trainer(), policy, Arc::new(Counters::default())).unwrap()
    }

    /// A trained model (30 steps on all the digits), the honest partner of the tests.
    fn trained() -> FlatParams {
        let mut t = trainer();
        for _ in 0..30 {
            t.step().unwrap();
        }
        t.export().unwrap()
    }

    /// A merge with an honest partner and a x100 one: the x100 model's held-back loss is far
    /// over the bound, so it is refused (and said so), and the honest one is still merged.
    #[test]
    fn a_poisoned_partner_is_refused_and_the_honest_one_merged() {
        let defence = Defence {
            aggregation: Aggregation::Mean,
            clip_factor: 2.0,
            max_distance: 0.0,
            accept_loss_ratio: 2.0,
        };
        let counters = Arc::new(Counters::default());
        let handle = TrainerHandle::spawn(
            trainer_with(200),
            policy(Duration::from_secs(600), defence),
            counters.clone(),
        )
        .unwrap();
        wait_until("round 1 trained", || *handle.trained.borrow() >= 1);
        let honest = trained();
        let mut poisoned = honest.clone();
        poisoned.values_mut().iter_mut().for_each(|v| *v *= 100.0);
        let (tx, mut rx) = oneshot::channel();
        handle
            .merges
            .try_send(ToTrainer::Offer {
                offer: Offer::Merge {
                    partners: vec![honest, poisoned],
                    weights: vec![1.0 / 3.0; 3],
                },
                verdicts: Some(tx),
            })
            .unwrap();
        wait_until("verdicts", || !rx.is_empty());
        let verdicts = rx.try_recv().unwrap();
        assert_eq!(verdicts[0], Ok(Taken::Merged), "{verdicts:?}");
        assert!(
            matches!(verdicts[1], Err(Rejection::Loss { .. })),
            "{verdicts:?}"
        );
        wait_until("round 1 published", || handle.rounds.borrow().is_some());
        let s = counters.snapshot(&crate::network::Traffic::default());
        assert_eq!((s.merges, s.merges_rejected), (1, 1));
        // The steps, the merge and the evaluation each took CPU time, counted apart.
        assert!(s.train_cpu_micros > 0, "{s:?}");
        assert!(s.merge_cpu_micros > 0, "{s:?}");
        assert!(s.eval_cpu_micros > 0, "{s:?}");
        // Another layout is refused before any loss is computed.
        wait_until("round 2 trained", || *handle.trained.borrow() >= 2);
        let other = FlatParams::from_named(vec![(
            murmur_protocol::tensor::TensorSpec::f32("w", &[2]),
            vec![0.0, 0.0],
        )])
        .unwrap();
        let (tx, mut rx) = oneshot::channel();
        handle
            .merges
            .try_send(ToTrainer::Offer {
                offer: Offer::Adopt { model: other },
                verdicts: Some(tx),
            })
            .unwrap();
        wait_until("verdict", || !rx.is_empty());
        assert_eq!(rx.try_recv().unwrap(), vec![Err(Rejection::Layout)]);
    }

    /// With no defence at all, a x1e30 partner is merged, training diverges, and the
    /// thread goes back to its last published weights and keeps going: every published
    /// round is finite, and the rollback is counted.
    #[test]
    fn a_diverged_trainer_rolls_back_and_keeps_going() {
        let counters = Arc::new(Counters::default());
        let handle = TrainerHandle::spawn(
            trainer(),
            policy(Duration::from_secs(600), Defence::NONE),
            counters.clone(),
        )
        .unwrap();
        wait_until("round 1 trained", || *handle.trained.borrow() >= 1);
        let mut huge = trained();
        huge.values_mut().iter_mut().for_each(|v| *v = 1e30);
        handle
            .merges
            .try_send(ToTrainer::Offer {
                offer: Offer::Merge {
                    partners: vec![huge],
                    weights: vec![0.5, 0.5],
                },
                verdicts: None,
            })
            .unwrap();
        for round in 2..=4 {
            wait_until("a round trained", || *handle.trained.borrow() >= round);
            handle.merges.try_send(ToTrainer::Skip).unwrap();
        }
        wait_until("round 4 published", || {
            handle
                .rounds
                .borrow()
                .as_ref()
                .is_some_and(|r| r.round >= 4)
        });
        let round = handle.rounds.borrow().clone().unwrap();
        assert!(round.params.all_finite() && round.eval.loss.is_finite());
        assert!(round.params.values().iter().all(|v| v.abs() < 1e6));
        let s = counters.snapshot(&crate::network::Traffic::default());
        assert!(s.rollbacks >= 1, "{s:?}");
        assert!(handle.is_running());
    }

    fn wait_until(what: &str, cond: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !cond() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// With a merge wait, the round's result is the merged model: nothing is published
    /// until the merge arrives, and the published weights are exactly the adopted ones.
    #[test]
    fn a_round_ends_on_its_merge() {
        let handle = spawn(Duration::from_secs(600));
        wait_until("round 1 trained", || *handle.trained.borrow() >= 1);
        assert!(
            handle.rounds.borrow().is_none(),
            "published before its merge"
        );
        let mut adopted = trainer().export().unwrap();
        adopted.values_mut().iter_mut().for_each(|v| *v += 0.25);
        handle
            .merges
            .try_send(ToTrainer::Offer {
                offer: Offer::Adopt {
                    model: adopted.clone(),
                },
                verdicts: None,
            })
            .unwrap();
        wait_until("round 1 published", || handle.rounds.borrow().is_some());
        let round = handle.rounds.borrow().clone().unwrap();
        assert_eq!(round.round, 1);
        assert_eq!(round.params.values(), adopted.values());
    }

    /// The wait is bounded: with no answer at all the round ends after the wait, without
    /// training meanwhile; a `Skip` ends it at once.
    #[test]
    fn the_merge_wait_is_bounded_and_skip_ends_it() {
        let handle = spawn(Duration::from_millis(300));
        let started = Instant::now();
        wait_until("round 1 published", || handle.rounds.borrow().is_some());
        assert!(started.elapsed() >= Duration::from_millis(300));
        let round = handle.rounds.borrow().clone().unwrap();
        assert_eq!(round.samples, 2 * 50, "trained while waiting");

        let handle = spawn(Duration::from_secs(600));
        wait_until("round 1 trained", || *handle.trained.borrow() >= 1);
        handle.merges.try_send(ToTrainer::Skip).unwrap();
        wait_until("round 1 published", || handle.rounds.borrow().is_some());
    }

    /// With `overlap`, a merge (or `Skip`) that arrived while the round trained, or while the
    /// round before it idled out its least time, is the round's: the round ends without
    /// waiting for another, even with a long merge wait; without `overlap` it waits for one
    /// more.
    #[test]
    fn with_overlap_an_answer_during_the_steps_ends_the_round() {
        for overlap in [true, false] {
            let mut policy = policy(Duration::from_secs(600), Defence::NONE);
            policy.overlap = overlap;
            policy.steps = 200;
            let handle =
                TrainerHandle::spawn(trainer(), policy, Arc::new(Counters::default())).unwrap();
            // Sent before the first round's 200 steps are done: applied between two of them.
            handle.merges.try_send(ToTrainer::Skip).unwrap();
            wait_until("round 1 trained", || *handle.trained.borrow() >= 1);
            if overlap {
                wait_until("round 1 published", || handle.rounds.borrow().is_some());
            } else {
                std::thread::sleep(Duration::from_millis(200));
                assert!(
                    handle.rounds.borrow().is_none(),
                    "without overlap, the round waits for an answer sent after its steps"
                );
                handle.merges.try_send(ToTrainer::Skip).unwrap();
                wait_until("round 1 published", || handle.rounds.borrow().is_some());
            }
        }
    }

    /// An answer sent when a round is published arrives while that round idles out its
    /// least time: with `overlap` it is the next round's, which then does not wait.
    #[test]
    fn with_overlap_an_answer_during_the_pacing_is_the_next_rounds() {
        let mut policy = policy(Duration::from_secs(600), Defence::NONE);
        policy.overlap = true;
        policy.min_time = Duration::from_millis(300);
        let handle =
            TrainerHandle::spawn(trainer(), policy, Arc::new(Counters::default())).unwrap();
        handle.merges.try_send(ToTrainer::Skip).unwrap();
        wait_until("round 1 published", || handle.rounds.borrow().is_some());
        // Round 1 is still idling out its 300 ms: this answer is round 2's.
        handle.merges.try_send(ToTrainer::Skip).unwrap();
        wait_until("round 2 published", || {
            handle
                .rounds
                .borrow()
                .as_ref()
                .is_some_and(|r| r.round >= 2)
        });
    }
}
