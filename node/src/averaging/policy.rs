//! The averaging policy, as a pure function of what the node knows: whom to pull from this
//! round and with what weights to merge. No I/O, no clock, no global randomness: the caller
//! passes the known announcements, the current time and a seeded RNG, and gets decisions back,
//! so the policy is tested deterministically and can be simulated with thousands of peers.

use murmur_protocol::ManifestId;
use rand::Rng;
use rand::seq::index;
use std::time::Duration;

/// How the merged model weighs each participant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Weighting {
    /// Proportional to the training samples folded into each model, a partner's claim
    /// capped at this node's own count (the only count it can check): a partner can at most
    /// weigh as much as this node.
    Samples,
    /// Every participant (this node included) counts the same.
    #[default]
    Uniform,
}

crate::names::named_enum!(Weighting, "weighting", {
    Samples => "samples",
    Uniform => "uniform",
});

/// How the age of partners' models counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Staleness {
    /// Partners are drawn uniformly among fresh announcements; every model weighs the same
    /// whatever its age.
    #[default]
    Ignore,
    /// Partners are drawn alike among the announcements heard within this node's last round
    /// (then the most recently heard of the others), and a partner's merge weight is
    /// divided by `1 + lag`, its lag counted in this node's rounds on this node's clock
    /// (nothing the partner says about itself).
    PreferFresh,
    /// Each peer announces its model as soon as its round's steps are done, before it
    /// merges, and merges only models heard since its previous averaging (the partners'
    /// rounds that ran alongside its own): it waits up to [`Policy::gather`] for as many
    /// such models as it has partners (`fanout`, at most the peers heard lately), draws its
    /// partners uniformly among them and weighs them alike (by samples with
    /// [`Weighting::Samples`]). A partner's model is then as new as this peer's own, where
    /// the other rules merge models a round old.
    SameRound,
}

crate::names::named_enum!(Staleness, "staleness rule", {
    Ignore => "ignore",
    PreferFresh => "prefer-fresh",
    SameRound => "same-round",
});

/// One partner model as the merge weights see it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PartnerModel {
    /// Training samples the partner claims (capped at this node's own before use).
    pub samples: u64,
    /// How many of this node's rounds ago its announcement arrived.
    pub lag_rounds: f64,
}

/// What the node last heard from one peer.
#[derive(Debug, Clone, PartialEq)]
pub struct Known<P> {
    pub peer: P,
    pub manifest: ManifestId,
    pub version: u64,
    pub samples: u64,
    /// When the announcement arrived, on the caller's monotonic clock.
    pub seen_at: Duration,
}

/// The policy's parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// Peers to pull from per round.
    pub fanout: usize,
    /// Announcements older than this are not chosen.
    pub freshness: Duration,
    pub weighting: Weighting,
    pub staleness: Staleness,
    /// With [`Staleness::SameRound`]: the longest a peer waits, after its steps, for its
    /// partners' models of the same round.
    pub gather: Duration,
}

impl Policy {
    /// Chooses up to `fanout` partners among peers with a fresh announcement of a model
    /// other than ours (`own`); peers listed in `avoid` (over their error budget) are
    /// skipped. [`Staleness::Ignore`] and [`Staleness::SameRound`] (whose caller passes only
    /// the models of the round): uniformly at random, in a random order;
    /// [`Staleness::PreferFresh`]: uniformly at random among the peers heard within the
    /// last `recent` (this node's round time), then, if fewer than `fanout` were, the most
    /// recently heard of the others. Within a round every peer counts once, so a peer
    /// announcing more often than the others is not chosen more often.
    pub fn choose<'a, P: PartialEq>(
        &self,
        known: &'a [Known<P>],
        own: Option<&ManifestId>,
        avoid: &[P],
        now: Duration,
        recent: Duration,
        rng: &mut impl Rng,
    ) -> Vec<&'a Known<P>> {
        let eligible = self.eligible(known, own, avoid, now);
        let n = self.fanout.min(eligible.len());
        let mut chosen: Vec<&Known<P>> = match self.staleness {
            Staleness::Ignore | Staleness::SameRound => index::sample(rng, eligible.len(), n)
                .into_iter()
                .map(|i| eligible[i])
                .collect(),
            Staleness::PreferFresh => {
                // A random order first, so that the stable sort breaks ties at random.
                index::sample(rng, eligible.len(), eligible.len())
                    .into_iter()
                    .map(|i| eligible[i])
                    .collect()
            }
        };
        if self.staleness == Staleness::PreferFresh {
            chosen.sort_by_key(|k| std::cmp::Reverse(k.seen_at));
            let within = chosen
                .iter()
                .take_while(|k| now.saturating_sub(k.seen_at) <= recent)
                .count();
            if within > n {
                chosen = index::sample(rng, within, n)
                    .into_iter()
                    .map(|i| chosen[i])
                    .collect();
            } else {
                chosen.truncate(n);
            }
        }
        chosen
    }

    /// Fresh announcements of models other than ours, from peers not avoided.
    fn eligible<'a, P: PartialEq>(
        &self,
        known: &'a [Known<P>],
        own: Option<&ManifestId>,
        avoid: &[P],
        now: Duration,
    ) -> Vec<&'a Known<P>> {
        known
            .iter()
            .filter(|k| now.saturating_sub(k.seen_at) <= self.freshness)
            .filter(|k| Some(&k.manifest) != own)
            .filter(|k| !avoid.contains(&k.peer))
            .collect()
    }

    /// A fresh node's adoption candidate: one fresh announcement of a model other than ours,
    /// from a peer not avoided, drawn uniformly at random. Nothing the peers claim (version,
    /// samples) decides it: the training thread then adopts the model only if it clearly beats this
    /// node's own on its held-back data, so a peer announcing the highest version is no more
    /// likely to be adopted than any other, and a bad model is refused.
    pub fn adoption_candidate<'a, P: PartialEq>(
        &self,
        known: &'a [Known<P>],
        own: Option<&ManifestId>,
        avoid: &[P],
        now: Duration,
        rng: &mut impl Rng,
    ) -> Option<&'a Known<P>> {
        let eligible = self.eligible(known, own, avoid, now);
        if eligible.is_empty() {
            return None;
        }
        Some(eligible[rng.random_range(0..eligible.len())])
    }

    /// Merge weights: this node's first, then one per partner, summing to 1. With
    /// [`Weighting::Samples`] a partner's claim is capped at `own_samples`, and a model that
    /// has seen no samples still gets a small share (as if it had seen one), so a fresh node
    /// is never weighed at zero. With
    /// [`Staleness::PreferFresh`] each partner's share is divided by `1 + lag_rounds`.
    pub fn weights(&self, own_samples: u64, partners: &[PartnerModel]) -> Vec<f32> {
        let own = PartnerModel {
            samples: own_samples,
            lag_rounds: 0.0,
        };
        let raw: Vec<f64> = std::iter::once(own)
            .chain(partners.iter().copied())
            .map(|m| {
                let base = match self.weighting {
                    Weighting::Uniform => 1.0,
                    Weighting::Samples => m.samples.min(own_samples.max(1)).max(1) as f64,
                };
                match self.staleness {
                    Staleness::Ignore | Staleness::SameRound => base,
                    Staleness::PreferFresh => base / (1.0 + m.lag_rounds.max(0.0)),
                }
            })
            .collect();
        let total: f64 = raw.iter().sum();
        raw.iter().map(|w| (w / total) as f32).collect()
    }
}

/// `own = w0 * own + Σ w_i * partner_i`, in place. `weights[0]` is own's weight; every
/// partner has the length of `own` (the caller checked layouts).
pub fn merge_into(own: &mut [f32], partners: &[&[f32]], weights: &[f32]) {
    let w0 = weights.first().copied().unwrap_or(1.0);
    for v in own.iter_mut() {
        *v *= w0;
    }
    for (p, &w) in partners.iter().zip(weights.iter().skip(1)) {
        for (o, x) in own.iter_mut().zip(p.iter()) {
            *o += w * x;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn known(peer: u32, age_secs: u64, now: u64) -> Known<u32> {
        Known {
            peer,
            manifest: ManifestId::of(&peer.to_le_bytes()),
            version: 1,
            samples: 100 * u64::from(peer),
            seen_at: Duration::from_secs(now - age_secs),
        }
    }

    fn policy(fanout: usize) -> Policy {
        Policy {
            fanout,
            freshness: Duration::from_secs(30),
            weighting: Weighting::Samples,
            staleness: Staleness::Ignore,
            gather: Duration::ZERO,
        }
    }

    fn partners(samples: &[u64]) -> Vec<PartnerModel> {
        samples
            .iter()
            .map(|&samples| PartnerModel {
                samples,
                lag_rounds: 0.0,
            })
            .collect()
    }

    #[test]
    fn chooses_only_fresh_other_models_and_not_avoided_peers() {
        let now = 100;
        let ks = vec![
            known(1, 5, now),
            known(2, 60, now),
            known(3, 10, now),
            known(4, 0, now),
        ];
        let own = ks[3].manifest;
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        for _ in 0..50 {
            let chosen = policy(5).choose(
                &ks,
                Some(&own),
                &[3],
                Duration::from_secs(now),
                Duration::ZERO,
                &mut rng,
            );
            let peers: Vec<u32> = chosen.iter().map(|k| k.peer).collect();
            assert_eq!(peers, vec![1], "stale 2, own model 4, avoided 3");
        }
    }

    #[test]
    fn choice_is_uniform_and_deterministic_per_seed() {
        let now = 100;
        let ks: Vec<_> = (0..10).map(|p| known(p, 1, now)).collect();
        let mut counts = [0u32; 10];
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        for _ in 0..10_000 {
            for k in policy(2).choose(
                &ks,
                None,
                &[],
                Duration::from_secs(now),
                Duration::ZERO,
                &mut rng,
            ) {
                counts[k.peer as usize] += 1;
            }
        }
        // 20,000 picks over 10 peers: 2,000 each, give or take a few percent.
        assert!(
            counts.iter().all(|&c| (1_800..2_200).contains(&c)),
            "{counts:?}"
        );
        let pick = |seed| {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            policy(3)
                .choose(
                    &ks,
                    None,
                    &[],
                    Duration::from_secs(now),
                    Duration::ZERO,
                    &mut rng,
                )
                .iter()
                .map(|k| k.peer)
                .collect::<Vec<_>>()
        };
        assert_eq!(pick(42), pick(42));
        assert_eq!(pick(42).len(), 3);
    }

    #[test]
    fn weights_sum_to_one_and_follow_samples_capped_at_ours() {
        let w = policy(2).weights(600, &partners(&[300, 600]));
        assert!((w.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!((w[0] - 0.4).abs() < 1e-6 && (w[1] - 0.2).abs() < 1e-6);
        // A claim of u64::MAX counts as much as ours, no more: the merge stays a merge.
        let inflated = policy(1).weights(100, &partners(&[u64::MAX]));
        assert_eq!(inflated, vec![0.5, 0.5]);
        let u = Policy {
            weighting: Weighting::Uniform,
            ..policy(2)
        }
        .weights(100, &partners(&[300, 600]));
        assert!(u.iter().all(|x| (x - 1.0 / 3.0).abs() < 1e-6));
        let fresh = policy(1).weights(0, &partners(&[0]));
        assert_eq!(fresh, vec![0.5, 0.5]);
    }

    /// Uniform weights with lags 1 and 3: raw 1, 1/2, 1/4, of 7/4: 4/7, 2/7, 1/7.
    #[test]
    fn prefer_fresh_discounts_stale_partners_by_their_lag() {
        let p = Policy {
            weighting: Weighting::Uniform,
            staleness: Staleness::PreferFresh,
            ..policy(2)
        };
        let lagged = [
            PartnerModel {
                samples: 1,
                lag_rounds: 1.0,
            },
            PartnerModel {
                samples: 1,
                lag_rounds: 3.0,
            },
        ];
        let w = p.weights(5, &lagged);
        for (got, want) in w.iter().zip([4.0 / 7.0, 2.0 / 7.0, 1.0 / 7.0]) {
            assert!((got - want).abs() < 1e-6, "{w:?}");
        }
    }

    #[test]
    fn prefer_fresh_chooses_the_most_recently_heard() {
        let now = 100;
        // Ages 9, 1, 5, 3, 40 (too old), 2 (avoided).
        let ages = [9, 1, 5, 3, 40, 2];
        let ks: Vec<_> = ages
            .iter()
            .enumerate()
            .map(|(i, &a)| known(i as u32, a, now))
            .collect();
        let p = Policy {
            staleness: Staleness::PreferFresh,
            ..policy(2)
        };
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for _ in 0..20 {
            let chosen = p.choose(
                &ks,
                None,
                &[5],
                Duration::from_secs(now),
                Duration::ZERO,
                &mut rng,
            );
            let peers: Vec<u32> = chosen.iter().map(|k| k.peer).collect();
            assert_eq!(peers, vec![1, 3]);
        }
    }

    /// Ages 0.1 s (a peer announcing ten times a second), 0.4, 0.7, 0.9 and 5 s, with a
    /// 1 s round: the four heard within the round are drawn alike, the 5 s one never.
    #[test]
    fn prefer_fresh_draws_alike_among_peers_heard_within_a_round() {
        let now = Duration::from_secs(100);
        let ks: Vec<_> = [100u64, 400, 700, 900, 5_000]
            .iter()
            .enumerate()
            .map(|(i, &ms)| Known {
                seen_at: now - Duration::from_millis(ms),
                ..known(i as u32, 0, 100)
            })
            .collect();
        let p = Policy {
            staleness: Staleness::PreferFresh,
            ..policy(2)
        };
        let mut counts = [0u32; 5];
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        for _ in 0..4_000 {
            for k in p.choose(&ks, None, &[], now, Duration::from_secs(1), &mut rng) {
                counts[k.peer as usize] += 1;
            }
        }
        // 8,000 picks over four peers: 2,000 each, give or take a few percent.
        assert_eq!(counts[4], 0, "{counts:?}");
        assert!(
            counts[..4].iter().all(|&c| (1_800..2_200).contains(&c)),
            "{counts:?}"
        );
    }

    /// The candidate is drawn at random among fresh, non-avoided models: a peer claiming the
    /// highest version is picked about as often as any other.
    #[test]
    fn adoption_does_not_follow_the_highest_claimed_version() {
        let now = 100;
        let mut ks: Vec<_> = (0..4).map(|p| known(p, 1, now)).collect();
        ks[3].version = u64::MAX;
        let own = ks[0].manifest;
        let mut counts = [0u32; 4];
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        for _ in 0..3_000 {
            let k = policy(1)
                .adoption_candidate(&ks, Some(&own), &[2], Duration::from_secs(now), &mut rng)
                .unwrap();
            counts[k.peer as usize] += 1;
        }
        assert_eq!(
            counts[0] + counts[2],
            0,
            "own model, avoided peer: {counts:?}"
        );
        assert!((1_350..1_650).contains(&counts[3]), "{counts:?}");
        assert!(
            policy(1)
                .adoption_candidate(
                    &ks[..1],
                    Some(&own),
                    &[],
                    Duration::from_secs(now),
                    &mut rng
                )
                .is_none()
        );
    }

    #[test]
    fn merge_is_the_weighted_mean() {
        let mut own = vec![1.0, 2.0];
        merge_into(&mut own, &[&[3.0, 6.0]], &[0.25, 0.75]);
        assert_eq!(own, vec![2.5, 5.0]);
    }
}
