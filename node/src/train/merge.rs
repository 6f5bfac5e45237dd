//! Taking partner models into a trainer: each offered model is checked (layout, finite
//! values, distance from our model, then loss on the held-back examples: on one part of them
//! first, a different part each merge, and on all of them unless that part's loss is well
//! inside the bound; [`robust`] decides), the ones that pass are combined by the configured
//! rule, then the outer step. An adoption
//! replaces the model only if the candidate clearly does better on held-back data, else it
//! is merged like a partner. It owns the histories those checks measure against and the
//! weights of the last published round (where a divergence goes back to).
//!
//! It must not touch threads, channels or counters: the training thread ([`super::worker`])
//! and the simulator ([`crate::sim`]) both call it, one per trainer, and report what it says.

use super::holdout::LossSum;
use super::{TrainError, Trainer};
use crate::averaging::offer::Offer;
use crate::averaging::outer::{OuterParams, OuterStep};
use crate::averaging::robust::{self, Aggregation, LossHistory, NormHistory, Rejection, Taken};
use murmur_protocol::FlatParams;

/// Clipping never cuts below `clip_factor` times the model's norm over this.
const CLIP_FLOOR_DIVISOR: f32 = 10.0;

/// The checks on partner models and the rule that combines them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Defence {
    pub aggregation: Aggregation,
    /// [`Aggregation::Clip`]'s multiple of the distance scale.
    pub clip_factor: f32,
    /// Partners farther than this multiple of the distance scale are refused; 0 = no check.
    pub max_distance: f32,
    /// The acceptance bound's ratio (see [`robust::accept_for_merge`]); 0 = finite only.
    pub accept_loss_ratio: f32,
}

impl Defence {
    /// No defence: the weighted mean of whatever finite model is offered.
    pub const NONE: Defence = Defence {
        aggregation: Aggregation::Mean,
        clip_factor: 1.0,
        max_distance: 0.0,
        accept_loss_ratio: 0.0,
    };
}

/// What became of an offer.
#[derive(Debug, Clone, PartialEq)]
pub struct Applied {
    /// One per offered model, in order.
    pub verdicts: Vec<Result<Taken, Rejection>>,
    /// The trainer's weights changed (a merge or an adoption went in).
    pub absorbed: bool,
    /// The trainer refused the combined weights (it should not happen: they have its layout).
    pub absorb_error: Option<String>,
    /// Partners whose difference was clipped.
    pub clipped: usize,
    /// Partners accepted on one part of the held-back examples (the screen) without the
    /// rest being measured.
    pub screened: usize,
}

/// Our own model's held-back losses a merge screens against.
#[derive(Debug, Clone, Copy)]
struct OwnLoss {
    /// The part partners are screened on this merge.
    part: usize,
    on_part: f32,
    on_all: f32,
}

/// A partner's held-back loss as measured for the acceptance check.
#[derive(Debug, Clone, Copy)]
struct Measured {
    /// The paired estimate from the screen's part, or the loss on every example.
    loss: f32,
    /// It passed the screen: taken on the part alone.
    screened: bool,
}

/// What [`Merger::merge`] made of the partners.
struct Merged {
    /// The merged weights, `None` if no partner passed.
    params: Option<FlatParams>,
    /// One per partner, in order.
    verdicts: Vec<Result<Taken, Rejection>>,
    clipped: usize,
    screened: usize,
}

/// One trainer's merge state.
#[derive(Debug)]
pub struct Merger {
    outer_params: OuterParams,
    defence: Defence,
    outer: OuterStep,
    /// The distance scale the distance check and clipping measure partners against.
    norms: NormHistory,
    /// Recent partners' held-back losses: the acceptance check's reference.
    losses: LossHistory,
    /// The weights of the last published round (or the start): where a divergence goes back.
    last_good: Option<FlatParams>,
    /// The held-back part the next merge screens partners on.
    screen_turn: usize,
}

impl Merger {
    /// A merger for `trainer`, whose current weights count as published.
    pub fn new(
        trainer: &Trainer,
        outer_params: OuterParams,
        defence: Defence,
    ) -> Result<Self, TrainError> {
        let start = trainer.export()?;
        let outer = if outer_params.is_plain() {
            OuterStep::default()
        } else {
            OuterStep::new(start.values())
        };
        Ok(Self {
            outer_params,
            defence,
            outer,
            norms: NormHistory::default(),
            losses: LossHistory::default(),
            last_good: Some(start),
            screen_turn: 0,
        })
    }

    /// The round's weights were published: a later divergence goes back to them.
    pub fn published(&mut self, params: FlatParams) {
        self.last_good = Some(params);
    }

    /// Sends `trainer` back to the last published weights with a fresh optimizer.
    pub fn roll_back(&self, trainer: &mut Trainer) -> Result<(), TrainError> {
        match &self.last_good {
            Some(good) => trainer.roll_back(good),
            None => Ok(()),
        }
    }

    /// Whether an offered model can be measured at all: our layout, finite values.
    fn valid(model: &FlatParams, own: &FlatParams) -> Result<(), Rejection> {
        if model.layout() != own.layout() {
            return Err(Rejection::Layout);
        }
        if !model.all_finite() {
            return Err(Rejection::NonFinite);
        }
        Ok(())
    }

    /// The held-back loss of an offered model, or why it cannot be used at all.
    fn check(
        trainer: &Trainer,
        model: &FlatParams,
        own: &FlatParams,
    ) -> Result<Option<f32>, Rejection> {
        Self::valid(model, own)?;
        trainer
            .holdout_loss_of(model)
            .map_err(|_| Rejection::NonFinite)
    }

    /// Measures `model` (already [`Self::valid`]) on held-back part `part` and, when it is
    /// to be `judged` and its [paired estimate](robust::paired_estimate) does not [pass the
    /// screen](robust::passes_screen) against `reference`, on every held-back example.
    /// Leaves `model` in `trainer`: the caller puts its own weights back.
    fn measure(
        &self,
        trainer: &Trainer,
        model: &FlatParams,
        reference: f32,
        own: OwnLoss,
        judged: bool,
    ) -> Result<Measured, Rejection> {
        let measured = || -> Result<Measured, super::TrainError> {
            trainer.import(model)?;
            let first = trainer.holdout_part_loss(own.part)?;
            let estimate = robust::paired_estimate(first.mean(), own.on_part, own.on_all);
            let ratio = self.defence.accept_loss_ratio;
            if !judged || robust::passes_screen(reference, estimate, ratio) {
                return Ok(Measured {
                    loss: estimate,
                    screened: judged,
                });
            }
            let all = first.plus(trainer.holdout_loss_except(Some(own.part))?);
            Ok(Measured {
                loss: all.mean(),
                screened: false,
            })
        };
        measured().map_err(|_| Rejection::NonFinite)
    }

    /// Applies an offer to `trainer`: a merge of the partners that pass the checks (then
    /// the outer step), or an adoption if the model clearly does better (else a merge with
    /// it). A model that fails leaves the weights as they were.
    pub fn apply(&mut self, trainer: &mut Trainer, offer: Offer) -> Result<Applied, TrainError> {
        let (merged, replaced) = match offer {
            Offer::Adopt { model } => {
                let own = trainer.export()?;
                let own_loss = trainer.holdout_loss()?;
                let better = match Self::check(trainer, &model, &own) {
                    Ok(loss) => match (own_loss, loss) {
                        (Some(o), Some(p)) => robust::adopt_outright(o, p),
                        _ => true,
                    },
                    Err(_) => false,
                };
                if better {
                    if !self.outer_params.is_plain() {
                        self.outer = OuterStep::new(model.values());
                    }
                    let adopted = Merged {
                        params: Some(model),
                        verdicts: vec![Ok(Taken::Adopted)],
                        clipped: 0,
                        screened: 0,
                    };
                    (adopted, true)
                } else {
                    (self.merge(trainer, vec![model], &[0.5, 0.5])?, false)
                }
            }
            Offer::Merge { partners, weights } => (self.merge(trainer, partners, &weights)?, false),
        };
        let mut applied = Applied {
            verdicts: merged.verdicts,
            absorbed: false,
            absorb_error: None,
            clipped: merged.clipped,
            screened: merged.screened,
        };
        if let Some(params) = merged.params {
            match trainer.absorb(&params, replaced) {
                Ok(()) => applied.absorbed = true,
                Err(e) => applied.absorb_error = Some(e.to_string()),
            }
        }
        Ok(applied)
    }

    /// Merges the partners that pass the checks into our weights (in `trainer` nothing
    /// changes).
    fn merge(
        &mut self,
        trainer: &Trainer,
        partners: Vec<FlatParams>,
        weights: &[f32],
    ) -> Result<Merged, TrainError> {
        let mut own = trainer.export()?;
        // Our own model's loss on each held-back part (the screen pairs a partner's loss on
        // one part with ours there), and on all of them.
        let own_parts = (0..trainer.holdout_parts())
            .map(|p| trainer.holdout_part_loss(p))
            .collect::<Result<Vec<_>, _>>()?;
        let own_all = own_parts.iter().fold(LossSum::default(), |a, b| a.plus(*b));
        let own_loss = (!own_parts.is_empty()).then(|| own_all.mean());
        let ratio = self.defence.accept_loss_ratio;
        let valid: Vec<Result<(), Rejection>> =
            partners.iter().map(|p| Self::valid(p, &own)).collect();
        let reference = own_loss.map(|o| self.losses.reference(o));
        // Distances: each partner's from our model, and our own progress since the last
        // published round (a distance no partner can fake).
        let norms: Vec<Option<f32>> = partners
            .iter()
            .zip(&valid)
            .map(|(p, v)| {
                v.is_ok()
                    .then(|| robust::distance(p.values(), own.values()))
            })
            .collect();
        let own_step = self
            .last_good
            .as_ref()
            .filter(|g| g.layout() == own.layout())
            .map(|g| robust::distance(own.values(), g.values()))
            .filter(|d| *d > 0.0);
        let current: Vec<f32> = norms.iter().flatten().copied().chain(own_step).collect();
        let scale = self.norms.reference(&current);
        let own_norm = robust::norm(own.values());
        self.norms.remember(&current);
        let defence = self.defence;
        // The held-back part this merge screens on: the next one each merge.
        let parts = own_parts.len().max(1);
        let part = self.screen_turn % parts;
        self.screen_turn = (part + 1) % parts;
        let own_losses = OwnLoss {
            part,
            on_part: own_parts.get(part).map_or(f32::NAN, |l| l.mean()),
            on_all: own_all.mean(),
        };
        let mut seen: Vec<f32> = Vec::new();
        let (mut swapped, mut screened) = (false, 0);
        let verdicts: Vec<Result<Taken, Rejection>> = partners
            .iter()
            .zip(valid)
            .zip(&norms)
            .map(|((p, v), norm)| {
                v?;
                let near = match norm {
                    Some(n) => robust::accept_distance(*n, scale, defence.max_distance, own_norm),
                    None => Ok(()),
                };
                // No held-back examples: no loss to bound.
                let Some(r) = reference else {
                    return near.map(|()| Taken::Merged);
                };
                // A partner the distance check refuses is measured on the part only, for
                // the reference of later checks.
                swapped = true;
                let measured = self.measure(trainer, p, r, own_losses, near.is_ok())?;
                seen.push(measured.loss);
                near?;
                if measured.screened {
                    screened += 1;
                    return Ok(Taken::Merged);
                }
                robust::accept_for_merge(r, measured.loss, ratio).map(|()| Taken::Merged)
            })
            .collect();
        if swapped {
            trainer.import(&own)?;
        }
        self.losses.remember(&seen);
        let taken: Vec<usize> = (0..partners.len())
            .filter(|&i| verdicts[i].is_ok())
            .collect();
        if taken.is_empty() {
            return Ok(Merged {
                params: None,
                verdicts,
                clipped: 0,
                screened,
            });
        }
        // Own weight, then the taken partners', renormalized.
        let mut kept: Vec<f32> = std::iter::once(0)
            .chain(taken.iter().map(|i| i + 1))
            .map(|i| weights.get(i).copied().unwrap_or(0.0))
            .collect();
        let total: f32 = kept.iter().sum();
        if total > 0.0 {
            kept.iter_mut().for_each(|w| *w /= total);
        } else {
            let even = 1.0 / kept.len() as f32;
            kept.fill(even);
        }
        let slices: Vec<&[f32]> = taken.iter().map(|&i| partners[i].values()).collect();
        let done = robust::aggregate(
            defence.aggregation,
            own.values_mut(),
            &slices,
            &kept,
            // At least a tenth of the model's norm: when most partners are near (a network
            // just healed from a split, whose halves converged apart), the lower median
            // shrinks to the near ones' distance, and the far honest half would be merged
            // in slivers. Models much farther than the model's norm are refused above.
            scale.map(|s| s.max(own_norm / CLIP_FLOOR_DIVISOR) * defence.clip_factor),
        );
        if !self.outer_params.is_plain() {
            self.outer.apply(own.values_mut(), self.outer_params);
        }
        Ok(Merged {
            params: Some(own),
            verdicts,
            clipped: done.clipped,
            screened,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::digits_trainer as trainer;

    /// A model with a non-finite value is refused before any loss is computed, whether it
    /// is offered for a merge or for adoption, and the weights stay as they were.
    #[test]
    fn a_non_finite_model_is_refused() {
        for holdout in [0, 100] {
            let mut t = trainer(holdout);
            let before = t.export().unwrap();
            let mut merger = Merger::new(&t, OuterParams::PLAIN, Defence::NONE).unwrap();
            let mut bad = before.clone();
            bad.values_mut()[3] = f32::NAN;
            let merged = merger
                .apply(
                    &mut t,
                    Offer::Merge {
                        partners: vec![bad.clone()],
                        weights: vec![0.5, 0.5],
                    },
                )
                .unwrap();
            assert_eq!(merged.verdicts, vec![Err(Rejection::NonFinite)]);
            assert!(!merged.absorbed);
            let adopted = merger.apply(&mut t, Offer::Adopt { model: bad }).unwrap();
            assert_eq!(adopted.verdicts, vec![Err(Rejection::NonFinite)]);
            assert!(!adopted.absorbed);
            assert_eq!(t.export().unwrap().values(), before.values());
        }
    }

    /// The screen changes what is measured, not who is taken: over partners from our own
    /// model to one scaled far off, a partner whose paired estimate on the first part clears
    /// the screen is merged having been measured there only; any other is taken exactly when its loss on
    /// every held-back example is within the bound; a refusal leaves our weights as they
    /// were. Both a screened and a refused partner occur.
    #[test]
    fn the_screen_takes_the_partners_the_full_check_takes() {
        let mut t = trainer(100);
        assert_eq!(t.holdout_parts(), 4);
        for _ in 0..40 {
            t.step().unwrap();
        }
        let own = t.export().unwrap();
        let own_loss = t.holdout_loss().unwrap().unwrap();
        let defence = Defence {
            aggregation: Aggregation::Mean,
            clip_factor: 1.0,
            max_distance: 0.0,
            accept_loss_ratio: 2.0,
        };
        let bound = 2.0 * own_loss + robust::ACCEPT_SLACK;
        let (mut screened, mut on_all, mut refused) = (0, 0, 0);
        for scale in [1.0f32, 1.2, 1.5, 2.0, 2.5, 3.0, 4.0, 6.0, 10.0] {
            let mut partner = own.clone();
            partner.values_mut().iter_mut().for_each(|v| *v *= scale);
            let all = t.holdout_loss_of(&partner).unwrap().unwrap();
            let own_first = t.holdout_part_loss(0).unwrap().mean();
            t.import(&partner).unwrap();
            let first = t.holdout_part_loss(0).unwrap().mean();
            t.import(&own).unwrap();
            let estimate = robust::paired_estimate(first, own_first, own_loss);
            let mut merger = Merger::new(&t, OuterParams::PLAIN, defence).unwrap();
            let applied = merger
                .apply(
                    &mut t,
                    Offer::Merge {
                        partners: vec![partner],
                        weights: vec![0.5, 0.5],
                    },
                )
                .unwrap();
            if robust::passes_screen(own_loss, estimate, 2.0) {
                assert_eq!(applied.verdicts, vec![Ok(Taken::Merged)], "scale {scale}");
                assert_eq!(applied.screened, 1);
                screened += 1;
            } else if all <= bound {
                assert_eq!(applied.verdicts, vec![Ok(Taken::Merged)], "scale {scale}");
                assert_eq!(applied.screened, 0);
                on_all += 1;
            } else {
                assert!(
                    matches!(applied.verdicts[..], [Err(Rejection::Loss { .. })]),
                    "scale {scale}: {:?}",
                    applied.verdicts
                );
                assert_eq!(applied.screened, 0);
                assert!(!applied.absorbed);
                assert_eq!(t.export().unwrap().values(), own.values());
                refused += 1;
            }
            t.import(&own).unwrap();
        }
        assert!(screened > 0 && refused > 0, "{screened} {on_all} {refused}");
    }

    /// With no held-back examples there is no loss to compare: a finite model of our layout
    /// offered for adoption replaces the weights outright.
    #[test]
    fn an_adoption_without_held_back_data_is_taken() {
        let mut t = trainer(0);
        let mut merger = Merger::new(&t, OuterParams::PLAIN, Defence::NONE).unwrap();
        let mut model = t.export().unwrap();
        model.values_mut().iter_mut().for_each(|v| *v += 0.5);
        let applied = merger
            .apply(
                &mut t,
                Offer::Adopt {
                    model: model.clone(),
                },
            )
            .unwrap();
        assert_eq!(applied.verdicts, vec![Ok(Taken::Adopted)]);
        assert!(applied.absorbed);
        assert_eq!(t.export().unwrap().values(), model.values());
    }
}
