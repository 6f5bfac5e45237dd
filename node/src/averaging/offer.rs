//! One averaging's models, from its plan to its partners' fates: which fetched models go to
//! the trainer, as what and with which weights (an [`Offer`]), and what became of each
//! partner once the trainer judged them ([`Fate`]). The node's averaging task and the
//! simulator both call it, so an averaging ends the same way in both. Pure: it owns no
//! state past one averaging and must not touch a model's values, a channel or a clock.

use super::core::{Fate, Plan};
use super::robust::{Rejection, Taken};
use murmur_protocol::FlatParams;
use std::time::Duration;

/// Once one partner's model is fetched, how much longer the others are waited for: a
/// partner that does not answer must not hold up the merge of one that did. A fetch still
/// running then goes on (its charges still count), and its model is not merged.
pub const STRAGGLER_WAIT: Duration = Duration::from_millis(500);

/// Models offered to a trainer.
#[derive(Debug, Clone)]
pub enum Offer {
    /// Combine the current weights with `partners`, `weights[0]` being own's weight and one
    /// per partner after it; partners that fail a check are left out (the others' weights
    /// renormalized).
    Merge {
        partners: Vec<FlatParams>,
        weights: Vec<f32>,
    },
    /// Replace the weights outright if `model` scores below
    /// [`super::robust::ADOPT_RATIO`] times them on the held-back data; else merge with it
    /// as with a partner, with weights 0.5 and 0.5.
    Adopt { model: FlatParams },
}

/// An offer on its way to the trainer: which partners it carries, to turn the verdicts into
/// fates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offered {
    /// Index in the plan of each offered model, in the offer's order.
    indices: Vec<usize>,
    /// Partners in the plan.
    partners: usize,
}

/// The offer for the models of `plan` that were fetched in time (`fetched`: each with its
/// index in the plan), `None` when there is none (the trainer is told to go on without):
/// the single fetched model for adoption when the plan adopts, else a merge of all of them
/// with the plan's weights.
pub fn offer<P>(plan: &Plan<P>, mut fetched: Vec<(usize, FlatParams)>) -> (Option<Offer>, Offered) {
    fetched.sort_by_key(|(i, _)| *i);
    fetched.dedup_by_key(|(i, _)| *i);
    fetched.retain(|(i, _)| *i < plan.partners.len());
    if plan.adopt {
        fetched.truncate(1);
    }
    let indices: Vec<usize> = fetched.iter().map(|(i, _)| *i).collect();
    let offered = Offered {
        indices: indices.clone(),
        partners: plan.partners.len(),
    };
    let offer = match fetched.len() {
        0 => None,
        _ if plan.adopt => fetched.pop().map(|(_, model)| Offer::Adopt { model }),
        _ => Some(Offer::Merge {
            weights: plan.weights(&indices),
            partners: fetched.into_iter().map(|(_, m)| m).collect(),
        }),
    };
    (offer, offered)
}

impl Offered {
    /// Index in the plan of each offered model, in the offer's order.
    pub fn indices(&self) -> &[usize] {
        &self.indices
    }

    /// Every partner's fate, in the plan's order, from the trainer's verdicts (one per
    /// offered model, in the offer's order): taken or refused as judged; an offered model
    /// with no verdict (the trainer never answered) is [`Fate::Unjudged`], a partner whose
    /// model was not offered [`Fate::Unfetched`].
    pub fn judge(&self, verdicts: &[Result<Taken, Rejection>]) -> Vec<Fate> {
        let mut fates = vec![Fate::Unfetched; self.partners];
        for (n, index) in self.indices.iter().enumerate() {
            if let Some(slot) = fates.get_mut(*index) {
                *slot = verdicts.get(n).map_or(Fate::Unjudged, fate);
            }
        }
        fates
    }
}

/// The fate a verdict gives a partner.
pub fn fate(verdict: &Result<Taken, Rejection>) -> Fate {
    match verdict {
        Ok(Taken::Adopted) => Fate::Adopted,
        Ok(Taken::Merged) => Fate::Merged,
        Err(_) => Fate::Refused,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::averaging::core::{Core, CoreConfig, OwnModel};
    use crate::averaging::policy::{Policy, Staleness, Weighting};
    use murmur_protocol::{Announce, ManifestId, MetricsSummary, TensorSpec};
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    const S: Duration = Duration::from_secs(1);

    fn model(v: f32) -> FlatParams {
        FlatParams::from_named(vec![(TensorSpec::f32("w", &[1]), vec![v])]).unwrap()
    }

    /// A plan of `partners` partners (an adoption when `fresh`).
    fn plan(partners: usize, fresh: bool) -> Plan<u32> {
        let config = CoreConfig {
            policy: Policy {
                fanout: partners,
                freshness: Duration::from_secs(30),
                weighting: Weighting::Uniform,
                staleness: Staleness::Ignore,
                gather: std::time::Duration::ZERO,
            },
            error_budget: 8,
        };
        let mut core = Core::new(config, 0, !fresh);
        core.round_finished(S, true);
        core.announced(OwnModel {
            manifest: ManifestId::of(b"own"),
            samples: 100,
        });
        for p in 1..=partners as u32 {
            core.hear(
                S,
                p,
                Announce {
                    manifest: ManifestId::of(&p.to_le_bytes()),
                    version: 10,
                    samples: 100,
                    metrics: MetricsSummary::default(),
                    projection: Vec::new(),
                    neighbours: Vec::new(),
                },
            );
        }
        let plan = core.plan(S, &mut ChaCha8Rng::seed_from_u64(1)).unwrap();
        assert_eq!(plan.adopt, fresh);
        plan
    }

    #[test]
    fn fetched_models_are_merged_with_the_plans_weights_and_judged() {
        let plan = plan(3, false);
        let (made, offered) = offer(&plan, vec![(2, model(2.0)), (0, model(0.0))]);
        match made {
            Some(Offer::Merge { partners, weights }) => {
                assert_eq!(partners, vec![model(0.0), model(2.0)]);
                assert_eq!(weights, plan.weights(&[0, 2]));
            }
            other => panic!("expected a merge, got {other:?}"),
        }
        assert_eq!(offered.indices(), &[0, 2]);
        let fates = offered.judge(&[Ok(Taken::Merged), Err(Rejection::NonFinite)]);
        assert_eq!(fates, vec![Fate::Merged, Fate::Unfetched, Fate::Refused]);
        // The trainer never answered: offered models are unjudged, not refused.
        assert_eq!(
            offered.judge(&[]),
            vec![Fate::Unjudged, Fate::Unfetched, Fate::Unjudged]
        );
    }

    #[test]
    fn an_adoption_offers_its_one_model_and_nothing_fetched_offers_nothing() {
        let plan = plan(1, true);
        let (made, offered) = offer(&plan, vec![(0, model(1.0))]);
        assert!(matches!(made, Some(Offer::Adopt { model: m }) if m == model(1.0)));
        assert_eq!(offered.judge(&[Ok(Taken::Adopted)]), vec![Fate::Adopted]);
        let (none, offered) = offer(&plan, Vec::new());
        assert!(none.is_none());
        assert_eq!(offered.judge(&[]), vec![Fate::Unfetched]);
        // An index the plan does not have is dropped.
        let (none, _) = offer(&plan, vec![(5, model(1.0))]);
        assert!(none.is_none());
    }
}
