//! The round cycle of one peer, as a pure state machine: train the round's local steps, say
//! they are done (its averaging starts), wait at most the merge wait for the round's merge
//! (or word that there is none), publish, idle out the round's least time, and start over.
//! With `publish_trained` (the same-round exchange) the round publishes its trained model
//! before the wait, and evaluates the merged one after it.
//! Time in, steps out: the caller passes the time (a `Duration` since its own start) and
//! carries out the [`Next`] step it is given. The training thread ([`super::worker`]) drives
//! it on the monotonic clock; the simulator ([`crate::sim`]) on virtual time, so both run the
//! same rounds. It also holds the rule for what may be published ([`publishable`]).
//!
//! It owns the round counter and where the round is; it must not touch a model, a channel,
//! a clock or a thread.

use super::worker::RoundPolicy;
use murmur_protocol::FlatParams;
use std::time::Duration;

/// Least time a round takes: a small model on a fast core finishes a round in a few
/// milliseconds, and local steps that no partner sees before the next merge only drift
/// toward this peer's own data.
pub const MIN_ROUND_TIME: Duration = Duration::from_millis(250);

/// True if a round's model may be published: finite weights, and a finite loss if this
/// model was evaluated (`loss`: `None` when the evaluation published with the round is an
/// earlier model's, or comes later, as in the simulator). Otherwise the trainer goes back to
/// its last published weights (never published, so never announced nor checkpointed).
pub fn publishable(params: &FlatParams, loss: Option<f32>) -> bool {
    params.all_finite() && loss.is_none_or(f32::is_finite)
}

/// What the driver does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Take one local step, then call [`Cycle::stepped`] (or [`Cycle::diverged`]). Apply
    /// the answers waiting first.
    Train,
    /// The round's local steps are done: say so (the node starts its averaging, unless
    /// averagings overlap the steps), then ask again.
    Trained { round: u64 },
    /// Idle until `until` or until an answer (a merge or `Skip`) arrives; apply it and call
    /// [`Cycle::answered`].
    Wait { until: Duration },
    /// Evaluate (when due, unless the round publishes its trained model), check and publish
    /// the round, then call [`Cycle::published`].
    Publish { round: u64 },
    /// With `publish_trained` only: the round's merge is in (or was given up): evaluate the
    /// model when due, then call [`Cycle::evaluated`].
    Evaluate { round: u64 },
    /// Idle until `until`, applying answers as they come; then the next round starts.
    Pace { until: Duration },
}

/// Where a round is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Training,
    /// Steps done, waiting for the round's merge.
    Waiting,
    /// Merged (or given up waiting), to be published.
    Publishing,
    /// Published, idling out the least round time.
    Pacing,
}

// With `publish_trained` the phases run Training, Publishing, Waiting, (evaluating),
// Pacing; without it Training, Waiting, Publishing, Pacing.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Training {
        done: u64,
        over: bool,
    },
    /// The steps are over and [`Next::Trained`] was returned: the wait starts at the next
    /// call.
    Trained,
    Waiting {
        until: Duration,
    },
    Publishing,
    /// With `publish_trained`: the merge is in, the model is to be evaluated.
    Evaluating,
    Pacing {
        until: Duration,
    },
}

/// One peer's round cycle.
#[derive(Debug, Clone)]
pub struct Cycle {
    steps: u64,
    max_time: Option<Duration>,
    min_time: Duration,
    merge_wait: Duration,
    overlap: bool,
    publish_trained: bool,
    state: State,
    /// Rounds whose steps are done (the current one included once it is trained).
    round: u64,
    /// When the current round started.
    started: Duration,
    /// An answer was applied that counts for the current round: with `overlap` any since
    /// the last publication, without it only one after the round's steps.
    answered: bool,
}

impl Cycle {
    /// A cycle whose first round starts at the first call of [`Cycle::next`].
    pub fn new(policy: &RoundPolicy) -> Self {
        Self {
            steps: policy.steps.max(1),
            max_time: policy.max_time,
            min_time: policy.min_time,
            merge_wait: policy.merge_wait,
            overlap: policy.overlap,
            publish_trained: policy.publish_trained,
            state: State::Pacing {
                until: Duration::ZERO,
            },
            round: 0,
            started: Duration::ZERO,
            answered: false,
        }
    }

    /// What to do at `now`.
    pub fn next(&mut self, now: Duration) -> Next {
        loop {
            match self.state {
                State::Pacing { until } => {
                    if now < until {
                        return Next::Pace { until };
                    }
                    self.state = State::Training {
                        done: 0,
                        over: false,
                    };
                    self.started = now;
                }
                State::Training { done, over } => {
                    let timed_out = done > 0
                        && self
                            .max_time
                            .is_some_and(|t| now.saturating_sub(self.started) >= t);
                    if !(over || done >= self.steps || timed_out) {
                        return Next::Train;
                    }
                    self.round += 1;
                    if !self.overlap {
                        // Without overlap only an answer to this round's averaging, which
                        // starts now, counts.
                        self.answered = false;
                    }
                    self.state = State::Trained;
                    return Next::Trained { round: self.round };
                }
                State::Trained => {
                    self.state = if self.publish_trained {
                        State::Publishing
                    } else {
                        State::Waiting {
                            until: now + self.merge_wait,
                        }
                    };
                }
                State::Waiting { until } => {
                    if !self.answered && now < until {
                        return Next::Wait { until };
                    }
                    self.state = if self.publish_trained {
                        State::Evaluating
                    } else {
                        State::Publishing
                    };
                }
                State::Publishing => return Next::Publish { round: self.round },
                State::Evaluating => return Next::Evaluate { round: self.round },
            }
        }
    }

    /// One local step was taken.
    pub fn stepped(&mut self) {
        if let State::Training { done, .. } = &mut self.state {
            *done += 1;
        }
    }

    /// Training diverged (and was rolled back): the round's steps end here.
    pub fn diverged(&mut self) {
        if let State::Training { over, .. } = &mut self.state {
            *over = true;
        }
    }

    /// An answer (a merge or `Skip`) was applied.
    pub fn answered(&mut self) {
        self.answered = true;
    }

    /// The round was published: it paces out its least time (with `publish_trained`, it
    /// waits for its merge first, from `now`). From here on an answer is the next round's
    /// (with `publish_trained`, once the round is evaluated).
    pub fn published(&mut self, now: Duration) {
        if self.publish_trained {
            if self.state == State::Publishing {
                self.state = State::Waiting {
                    until: now + self.merge_wait,
                };
            }
            return;
        }
        self.answered = false;
        self.state = State::Pacing {
            until: self.started + self.min_time,
        };
    }

    /// With `publish_trained`: the merged model was evaluated (when due); the round paces
    /// out its least time, and from here on an answer is the next round's.
    pub fn evaluated(&mut self) {
        if self.state == State::Evaluating {
            self.answered = false;
            self.state = State::Pacing {
                until: self.started + self.min_time,
            };
        }
    }

    /// Where the current round is.
    pub fn phase(&self) -> Phase {
        match self.state {
            State::Training { .. } => Phase::Training,
            State::Trained | State::Waiting { .. } => Phase::Waiting,
            State::Publishing | State::Evaluating => Phase::Publishing,
            State::Pacing { .. } => Phase::Pacing,
        }
    }

    /// Rounds whose local steps are done.
    pub fn round(&self) -> u64 {
        self.round
    }

    /// The steps a round takes when each takes `step` (fewer than the policy's when its
    /// longest time comes first; at least one): for a driver that computes a round's steps
    /// in one go and knows their time.
    pub fn steps_taking(&self, step: Duration) -> u64 {
        match self.max_time {
            Some(t) if !step.is_zero() => {
                let fit = t.as_nanos().div_ceil(step.as_nanos()).max(1);
                u64::try_from(fit).unwrap_or(u64::MAX).min(self.steps)
            }
            _ => self.steps,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::averaging::outer::OuterParams;
    use crate::train::merge::Defence;

    const MS: Duration = Duration::from_millis(1);

    fn policy(steps: u64, merge_wait: Duration, overlap: bool) -> RoundPolicy {
        RoundPolicy {
            steps,
            max_time: None,
            min_time: MS * 100,
            eval_every: Duration::ZERO,
            merge_wait,
            overlap,
            publish_trained: false,
            lr_schedule: None,
            outer: OuterParams::PLAIN,
            defence: Defence::NONE,
        }
    }

    /// Takes the round's steps at `now`, returning the trained round.
    fn train(c: &mut Cycle, now: Duration) -> u64 {
        loop {
            match c.next(now) {
                Next::Train => c.stepped(),
                Next::Trained { round } => return round,
                other => panic!("expected steps, got {other:?}"),
            }
        }
    }

    #[test]
    fn a_round_trains_waits_for_its_merge_publishes_and_paces() {
        let mut c = Cycle::new(&policy(3, MS * 50, false));
        let mut steps = 0;
        while c.next(MS) == Next::Train {
            c.stepped();
            steps += 1;
        }
        assert_eq!(steps, 3);
        assert_eq!(c.round(), 1);
        assert_eq!(c.next(MS * 2), Next::Wait { until: MS * 52 });
        assert_eq!(c.phase(), Phase::Waiting);
        c.answered();
        assert_eq!(c.next(MS * 10), Next::Publish { round: 1 });
        c.published(Duration::ZERO);
        // The round started at 1 ms: it lasts at least 100 ms.
        assert_eq!(c.next(MS * 20), Next::Pace { until: MS * 101 });
        assert_eq!(c.next(MS * 101), Next::Train);
        assert_eq!(c.phase(), Phase::Training);
    }

    #[test]
    fn publishing_the_trained_model_comes_before_the_wait_and_evaluation_after_it() {
        let mut p = policy(2, MS * 50, false);
        p.publish_trained = true;
        let mut c = Cycle::new(&p);
        assert_eq!(train(&mut c, MS), 1);
        assert_eq!(c.next(MS * 2), Next::Publish { round: 1 });
        assert_eq!(c.phase(), Phase::Publishing);
        // An answer that came while publishing counts: the averaging began with the steps.
        c.answered();
        c.published(MS * 3);
        assert_eq!(c.next(MS * 4), Next::Evaluate { round: 1 });
        c.evaluated();
        assert_eq!(c.next(MS * 5), Next::Pace { until: MS * 101 });
        // Without an answer the wait runs from the publication to its deadline.
        assert_eq!(train(&mut c, MS * 101), 2);
        assert_eq!(c.next(MS * 102), Next::Publish { round: 2 });
        c.published(MS * 110);
        assert_eq!(c.next(MS * 111), Next::Wait { until: MS * 160 });
        assert_eq!(c.phase(), Phase::Waiting);
        assert_eq!(c.next(MS * 160), Next::Evaluate { round: 2 });
    }

    #[test]
    fn the_wait_ends_at_its_deadline_and_a_zero_wait_does_not_wait() {
        let mut c = Cycle::new(&policy(1, MS * 50, false));
        assert_eq!(train(&mut c, Duration::ZERO), 1);
        assert_eq!(c.next(MS), Next::Wait { until: MS * 51 });
        assert_eq!(c.next(MS * 51), Next::Publish { round: 1 });

        let mut c = Cycle::new(&policy(1, Duration::ZERO, false));
        train(&mut c, Duration::ZERO);
        assert_eq!(c.next(Duration::ZERO), Next::Publish { round: 1 });
    }

    /// Without overlap an answer applied during the steps is not this round's (its
    /// averaging starts when the steps end); with overlap it is, and so is one applied while
    /// the round before paced.
    #[test]
    fn with_overlap_an_earlier_answer_ends_the_wait() {
        for overlap in [false, true] {
            let mut c = Cycle::new(&policy(2, MS * 500, overlap));
            assert_eq!(c.next(Duration::ZERO), Next::Train);
            c.answered();
            train(&mut c, Duration::ZERO);
            let expected = if overlap {
                Next::Publish { round: 1 }
            } else {
                Next::Wait { until: MS * 500 }
            };
            assert_eq!(c.next(Duration::ZERO), expected, "overlap {overlap}");
        }
        let mut c = Cycle::new(&policy(1, MS * 500, true));
        c.answered();
        train(&mut c, Duration::ZERO);
        assert_eq!(c.next(MS), Next::Publish { round: 1 });
        c.published(Duration::ZERO);
        assert!(matches!(c.next(MS), Next::Pace { .. }));
        c.answered();
        train(&mut c, MS * 100);
        assert_eq!(c.next(MS * 100), Next::Publish { round: 2 });
        // Publishing forgets an answer from before it.
        c.published(Duration::ZERO);
        train(&mut c, MS * 200);
        assert_eq!(c.next(MS * 200), Next::Wait { until: MS * 700 });
    }

    #[test]
    fn divergence_and_the_longest_time_end_the_steps_early() {
        let mut c = Cycle::new(&policy(10, MS, false));
        assert_eq!(c.next(Duration::ZERO), Next::Train);
        c.stepped();
        c.diverged();
        assert_eq!(c.next(MS), Next::Trained { round: 1 });

        let mut p = policy(10, MS, false);
        p.max_time = Some(MS * 30);
        let mut c = Cycle::new(&p);
        assert_eq!(c.steps_taking(MS * 10), 3);
        assert_eq!(c.steps_taking(MS * 7), 5);
        assert_eq!(c.steps_taking(MS * 100), 1);
        assert_eq!(c.steps_taking(Duration::ZERO), 10);
        assert_eq!(c.next(Duration::ZERO), Next::Train);
        c.stepped();
        assert_eq!(c.next(MS * 29), Next::Train);
        c.stepped();
        assert_eq!(c.next(MS * 30), Next::Trained { round: 1 });
    }

    #[test]
    fn only_finite_models_and_losses_are_published() {
        let ok = FlatParams::from_named(vec![(
            murmur_protocol::TensorSpec::f32("w", &[2]),
            vec![1.0, 2.0],
        )])
        .unwrap();
        let mut bad = ok.clone();
        bad.values_mut()[1] = f32::NAN;
        assert!(publishable(&ok, Some(0.5)));
        assert!(publishable(&ok, None));
        assert!(!publishable(&bad, Some(0.5)));
        assert!(!publishable(&bad, None));
        assert!(!publishable(&ok, Some(f32::INFINITY)));
    }
}
