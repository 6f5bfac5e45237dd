//! Defences of a merge against partner models that are wrong on purpose or by accident, as
//! pure functions on flat weights and losses: the local acceptance check (a partner model
//! whose loss on this peer's held-back slice is far worse than what models usually score
//! there is rejected) and the robust aggregation rules (norm clipping with an adaptive
//! threshold, coordinate-wise median, trimmed mean). It owns the recent losses and norms the
//! bounds are measured against and nothing else; the training thread holds one
//! [`LossHistory`] and one [`NormHistory`] and measures the losses (this module never touches a
//! model).

use std::collections::VecDeque;

/// How a merge combines this peer's model with the partner models that passed the check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Aggregation {
    /// The weighted mean: one partner can move the model anywhere.
    Mean,
    /// The weighted mean of each partner's difference from this peer's model, each difference
    /// clipped to `clip_factor` times the distance scale ([`NormHistory`]; centered clipping):
    /// a partner moves the model at most that far.
    #[default]
    Clip,
    /// The coordinate-wise median of this peer's and the partners' models (weights unused).
    Median,
    /// Per coordinate, the mean after dropping the `t` lowest and `t` highest values of this
    /// peer's and the partners' models, `t = max(1, n / 4)` when `n >= 3` models take part
    /// (weights unused; with 3 models it is the median).
    TrimmedMean,
}

crate::names::named_enum!(Aggregation, "aggregation rule", {
    Mean => "mean",
    Clip => "clip",
    Median => "median",
    TrimmedMean => "trimmed-mean",
});

/// Added to the loss bound of the acceptance check, in nats: with little training behind
/// them, all models have nearly the same loss, and a ratio alone would refuse honest noise.
pub const ACCEPT_SLACK: f32 = 0.5;

/// Why a partner model was not merged.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Rejection {
    #[error("its layout differs from ours")]
    Layout,
    #[error("it holds non-finite values")]
    NonFinite,
    #[error(
        "its loss on our held-back data is {partner:.3}, over the bound {bound:.3} (reference {own:.3})"
    )]
    Loss { partner: f32, own: f32, bound: f32 },
    #[error("it is {norm:.3e} away from our model, over the bound {bound:.3e}")]
    Distance { norm: f32, bound: f32 },
}

/// What became of a model offered to the training thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Taken {
    /// Merged with this peer's model.
    Merged,
    /// Replaced this peer's model (an adoption).
    Adopted,
}

/// Partner losses remembered for the acceptance bound.
const LOSS_WINDOW: usize = 32;

/// The held-back losses of recent partner models, the reference of the acceptance check.
/// On skewed shards an honest partner's model, trained on other classes, does worse on this
/// peer's data than this peer's own model does; what partners usually score here is the
/// fair yardstick, and a minority of hostile partners cannot move its (lower) median.
#[derive(Debug, Clone, Default)]
pub struct LossHistory {
    losses: VecDeque<f32>,
}

impl LossHistory {
    /// The reference loss: the larger of `own` and the lower median of the remembered
    /// partner losses (`own` alone before any is remembered).
    pub fn reference(&self, own: f32) -> f32 {
        lower_median(self.losses.iter().copied()).map_or(own, |m| m.max(own))
    }

    /// Remembers the (finite) losses of the partners of one merge, after they were judged.
    pub fn remember(&mut self, losses: &[f32]) {
        remember(&mut self.losses, losses, LOSS_WINDOW);
    }
}

/// The lower median of the finite values, `None` if there is none.
fn lower_median(values: impl Iterator<Item = f32>) -> Option<f32> {
    let mut all: Vec<f32> = values.filter(|v| v.is_finite()).collect();
    if all.is_empty() {
        return None;
    }
    all.sort_by(f32::total_cmp);
    Some(all[(all.len() - 1) / 2])
}

fn remember(window: &mut VecDeque<f32>, values: &[f32], len: usize) {
    for &v in values.iter().filter(|v| v.is_finite()) {
        if window.len() == len {
            window.pop_front();
        }
        window.push_back(v);
    }
}

/// The acceptance check of a partner for a merge: its loss on the held-back slice must be
/// finite and at most `ratio * reference + ACCEPT_SLACK`, `reference` being
/// [`LossHistory::reference`]. `ratio == 0` turns the bound off (the loss must still be
/// finite).
pub fn accept_for_merge(reference: f32, partner: f32, ratio: f32) -> Result<(), Rejection> {
    let own = reference;
    let bound = ratio * own.max(0.0) + ACCEPT_SLACK;
    if !partner.is_finite() || (ratio > 0.0 && partner > bound) {
        return Err(Rejection::Loss {
            partner,
            own,
            bound,
        });
    }
    Ok(())
}

/// A partner whose loss on one part of the held-back examples is at most this fraction of
/// the acceptance bound is accepted on that part alone ([`passes_screen`]).
pub const SCREEN_MARGIN: f32 = 0.75;

/// The screen before the full acceptance check: whether `part_loss`, a partner's loss on
/// one random part of the held-back examples, is so far inside the bound of
/// [`accept_for_merge`] that the rest need not be measured: at most [`SCREEN_MARGIN`] times
/// the bound. Only a bound can be screened for (`ratio > 0`); a partner that does not pass
/// is judged on every held-back example, so the screen never refuses anyone. The part is
/// drawn from private data and changes every merge, so a partner cannot aim at it.
pub fn passes_screen(reference: f32, part_loss: f32, ratio: f32) -> bool {
    ratio > 0.0
        && part_loss.is_finite()
        && part_loss <= SCREEN_MARGIN * (ratio * reference.max(0.0) + ACCEPT_SLACK)
}

/// The factor [`paired_estimate`] scales a part's loss by is kept within these bounds.
const PAIRED_FACTOR: (f32, f32) = (0.5, 2.0);

/// A partner's loss on all held-back examples, estimated from its loss on one part of them:
/// `partner_part × own_all / own_part`, our own model's losses on that part and on all of
/// them pairing out how hard the part happens to be (the factor kept within 0.5..=2). Losses
/// on 50 examples scatter more, and to the low side, than on 200 (a few hard examples carry
/// much of a mean); the recent partners' lower median, the acceptance check's reference, is
/// kept on this estimate so that it does not sink. `partner_part` itself where our own losses
/// cannot pair it (not finite, or 0).
pub fn paired_estimate(partner_part: f32, own_part: f32, own_all: f32) -> f32 {
    if !(own_part.is_finite() && own_all.is_finite() && own_part > 0.0) {
        return partner_part;
    }
    partner_part * (own_all / own_part).clamp(PAIRED_FACTOR.0, PAIRED_FACTOR.1)
}

/// A model offered for adoption must score below this fraction of this peer's own loss to
/// replace its model outright: at the start every model scores near chance, and a poisoned
/// one (a sign flip of a near-initial model) can beat a fresh model by luck.
pub const ADOPT_RATIO: f32 = 0.8;

/// Whether a model offered for adoption replaces this peer's outright: only if its loss on
/// the held-back slice is below [`ADOPT_RATIO`] times this peer's own model's. One that does not
/// is checked like a partner (distance, then [`accept_for_merge`]) and, if it passes, merged
/// with fixed weights 0.5 and 0.5 (on a skewed shard a good network model may still score
/// worse than a local model on local data).
pub fn adopt_outright(own: f32, partner: f32) -> bool {
    partner.is_finite() && (partner < ADOPT_RATIO * own || !own.is_finite())
}

/// Recent distances between this peer's model and the models it met (partners', and its
/// own progress over a round, which no partner can fake): the scale the distance check and
/// clipping measure against.
#[derive(Debug, Clone, Default)]
pub struct NormHistory {
    norms: VecDeque<f32>,
}

/// Distances remembered for the distance scale.
const NORM_WINDOW: usize = 32;

impl NormHistory {
    /// The lower median of the remembered distances together with `current`: a minority of
    /// outsized distances, even one of two, cannot raise it. `None` before any distance.
    pub fn reference(&self, current: &[f32]) -> Option<f32> {
        lower_median(self.norms.iter().chain(current).copied())
    }

    /// Remembers the (finite) distances of one merge.
    pub fn remember(&mut self, norms: &[f32]) {
        remember(&mut self.norms, norms, NORM_WINDOW);
    }
}

/// The Euclidean norm of a model's weights.
pub fn norm(a: &[f32]) -> f32 {
    lane_sum(a, a, |x, _| x).sqrt() as f32
}

/// The Euclidean distance between two models of one layout (the shorter length counts).
pub fn distance(a: &[f32], b: &[f32]) -> f32 {
    lane_sum(a, b, |x, y| x - y).sqrt() as f32
}

/// Values summed per lane before a block's lanes are added up.
const SUM_BLOCK: usize = 4096;
/// Independent `f64` accumulators, so the sum vectorizes (one running sum is one
/// dependency chain the compiler must keep in order).
const SUM_LANES: usize = 16;

/// `Σ f(a_i, b_i)²` in `f64` over the shorter length, in [`SUM_LANES`] lanes per block of
/// [`SUM_BLOCK`] values (the same sum as one running `f64` sum but for the order of
/// additions).
fn lane_sum(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32) -> f64 {
    let mut total = 0f64;
    for (ba, bb) in a.chunks(SUM_BLOCK).zip(b.chunks(SUM_BLOCK)) {
        let mut lanes = [0f64; SUM_LANES];
        for (xa, xb) in ba.chunks(SUM_LANES).zip(bb.chunks(SUM_LANES)) {
            for ((l, x), y) in lanes.iter_mut().zip(xa).zip(xb) {
                let v = f64::from(f(*x, *y));
                *l += v * v;
            }
        }
        total += lanes.iter().sum::<f64>();
    }
    total
}

/// The distance bound never exceeds this many times this peer's model's norm, however
/// large the scale: a model sign-flipped from one like ours is twice our norm away, and
/// when honest partners are far apart (skewed shards, early rounds) `max_factor` times
/// their distances came within a few percent of that (measured: 23 against 25, and a CI
/// run where the flips got in). An honest partner this far would point away from our
/// model, which two models grown from one initialization do not.
pub const MAX_DISTANCE_OF_NORM: f32 = 1.5;

/// The distance check: a partner model is refused when it is farther from this peer's than
/// `max_factor` times the reference distance, capped at [`MAX_DISTANCE_OF_NORM`] times this
/// peer's model's norm (`own_norm`), and farther than `own_norm` itself. A model scaled,
/// sign-flipped or replaced by noise lands many times the usual distance away and at least
/// as far as the model's own size (a sign flip is twice it); an honest peer that drifted
/// apart, say on the other side of a healed network split, may be many usual distances away
/// but shares most of the model, so it is kept (and clipped). `max_factor == 0` turns the
/// check off.
pub fn accept_distance(
    norm: f32,
    reference: Option<f32>,
    max_factor: f32,
    own_norm: f32,
) -> Result<(), Rejection> {
    match reference {
        Some(r) if max_factor > 0.0 => {
            let bound = (max_factor * r)
                .min(MAX_DISTANCE_OF_NORM * own_norm)
                .max(own_norm);
            if norm.is_nan() || norm > bound {
                Err(Rejection::Distance { norm, bound })
            } else {
                Ok(())
            }
        }
        _ => Ok(()),
    }
}

/// What an aggregation did.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Aggregated {
    /// Partners whose difference was clipped.
    pub clipped: usize,
}

/// Combines `own` (in place) with `partners`. `weights[0]` is own's weight, then one per
/// partner, summing to 1 (used by [`Aggregation::Mean`] and [`Aggregation::Clip`]). With
/// [`Aggregation::Clip`], each partner's difference from `own` is cut to `clip_at` (no cut
/// when `None`). Every partner has own's length (the caller checked layouts).
pub fn aggregate(
    rule: Aggregation,
    own: &mut [f32],
    partners: &[&[f32]],
    weights: &[f32],
    clip_at: Option<f32>,
) -> Aggregated {
    if partners.is_empty() {
        return Aggregated::default();
    }
    match rule {
        Aggregation::Mean => {
            super::policy::merge_into(own, partners, weights);
            Aggregated::default()
        }
        Aggregation::Clip => clipped_mean(own, partners, weights, clip_at),
        Aggregation::Median | Aggregation::TrimmedMean => {
            let n = partners.len() + 1;
            let trim = match rule {
                Aggregation::TrimmedMean if n >= 3 => (n / 4).max(1),
                _ => 0,
            };
            let mut column = Vec::with_capacity(n);
            for (i, v) in own.iter_mut().enumerate() {
                column.clear();
                column.push(*v);
                column.extend(partners.iter().map(|p| p[i]));
                column.sort_by(f32::total_cmp);
                *v = if rule == Aggregation::Median {
                    median(&column)
                } else {
                    let kept = &column[trim..n - trim];
                    kept.iter().sum::<f32>() / kept.len() as f32
                };
            }
            Aggregated::default()
        }
    }
}

/// The median of sorted values (the mean of the middle two for an even count).
fn median(sorted: &[f32]) -> f32 {
    let n = sorted.len();
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    }
}

/// `own += Σ w_i · clip(p_i − own, τ)`.
fn clipped_mean(
    own: &mut [f32],
    partners: &[&[f32]],
    weights: &[f32],
    clip_at: Option<f32>,
) -> Aggregated {
    let mut clipped = 0;
    let scales: Vec<f32> = partners
        .iter()
        .zip(weights.iter().skip(1))
        .map(|(p, &w)| {
            let n = distance(p, own);
            match clip_at {
                Some(t) if n > t && n > 0.0 => {
                    clipped += 1;
                    w * t / n
                }
                _ => w,
            }
        })
        .collect();
    let base = own.to_vec();
    for (p, s) in partners.iter().zip(&scales) {
        for ((o, x), b) in own.iter_mut().zip(p.iter()).zip(&base) {
            *o += s * (x - b);
        }
    }
    Aggregated { clipped }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Own model 0.1 on its own skewed data; honest partners score 0.9 to 1.2 there. The
    /// reference follows the partners, so they pass, while a x100 model (loss 900) and a
    /// sign-flipped one (loss 6) do not; two outsized losses among five cannot lift it
    /// past the honest ones.
    #[test]
    fn the_acceptance_reference_is_what_partners_usually_score() {
        let mut h = LossHistory::default();
        assert_eq!(h.reference(0.1), 0.1, "nothing remembered: our own");
        h.remember(&[0.9, 1.2, 900.0, 1.0, 6.0, f32::NAN]);
        assert_eq!(
            h.reference(0.1),
            1.2,
            "lower median of 0.9, 1.0, 1.2, 6, 900"
        );
        assert_eq!(h.reference(1.5), 1.5, "never below our own");
        let r = h.reference(0.1);
        assert!(accept_for_merge(r, 1.2, 2.0).is_ok());
        assert!(accept_for_merge(r, 6.0, 2.0).is_err());
        assert!(accept_for_merge(r, 900.0, 2.0).is_err());
    }

    #[test]
    fn acceptance_bounds_the_partner_loss_by_ours() {
        assert!(
            accept_for_merge(0.2, 0.85, 2.0).is_ok(),
            "0.85 <= 2*0.2+0.5"
        );
        assert!(matches!(
            accept_for_merge(0.2, 0.95, 2.0),
            Err(Rejection::Loss { .. })
        ));
        assert!(accept_for_merge(0.2, f32::NAN, 2.0).is_err());
        assert!(accept_for_merge(0.2, f32::INFINITY, 0.0).is_err());
        assert!(
            accept_for_merge(0.2, 1e6, 0.0).is_ok(),
            "ratio 0: bound off"
        );
        assert!(adopt_outright(2.3, 0.4));
        assert!(!adopt_outright(0.4, 0.4), "not better");
        assert!(!adopt_outright(2.3, 2.0), "better by luck, not clearly");
        assert!(!adopt_outright(0.4, f32::NAN));
        assert!(adopt_outright(f32::NAN, 0.4));
    }

    /// Distances 1 and 100 with nothing remembered: the lower median is 1, so with factor 6
    /// and a model of norm 50 the 100 is refused (and a 40 is not).
    /// Hand-computed: a partner at 0.6 on a part where our own model scores 0.3 against
    /// 0.4 on all is estimated at 0.8; the factor stops at 2 and 0.5; without a usable own
    /// loss the part's loss stands.
    #[test]
    fn a_part_loss_is_paired_with_our_own() {
        assert!((paired_estimate(0.6, 0.3, 0.4) - 0.8).abs() < 1e-6);
        assert!((paired_estimate(0.6, 0.1, 0.9) - 1.2).abs() < 1e-6);
        assert!((paired_estimate(0.6, 0.9, 0.1) - 0.3).abs() < 1e-6);
        assert_eq!(paired_estimate(0.6, 0.0, 0.4), 0.6);
        assert_eq!(paired_estimate(0.6, f32::NAN, 0.4), 0.6);
        assert_eq!(paired_estimate(0.6, 0.3, f32::INFINITY), 0.6);
        assert!(paired_estimate(f32::NAN, 0.3, 0.4).is_nan());
    }

    /// Norm and distance sum in lanes and blocks: they agree with a plain `f64` sum over
    /// a vector with a tail shorter than a lane and a block, count the shorter length, and
    /// stay finite where a square overflows `f32`.
    #[test]
    fn norms_and_distances_match_a_plain_sum() {
        let a: Vec<f32> = (0..10_007)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 7.0)
            .collect();
        let b: Vec<f32> = (0..10_007)
            .map(|i| ((i * 11 % 53) as f32 - 26.0) / 3.0)
            .collect();
        let plain = |xs: &[f32], ys: &[f32]| {
            xs.iter()
                .zip(ys)
                .map(|(x, y)| f64::from(x - y).powi(2))
                .sum::<f64>()
                .sqrt() as f32
        };
        let close = |x: f32, y: f32| (x - y).abs() <= 1e-6 * y.abs();
        assert!(close(distance(&a, &b), plain(&a, &b)));
        assert!(close(norm(&a), plain(&a, &vec![0.0; a.len()])));
        assert!(close(distance(&a, &b[..3]), plain(&a[..3], &b[..3])));
        assert_eq!(distance(&a, &a), 0.0);
        assert_eq!(norm(&[]), 0.0);
        assert_eq!(norm(&[3.0, 4.0]), 5.0);
        assert_eq!(norm(&[1e20, 0.0]), 1e20);
        assert_eq!(distance(&[1e20], &[-1e20]), 2e20);
    }

    /// The screen passes a part loss up to three quarters of the bound (reference 0.2,
    /// ratio 2: bound 0.9, screen 0.675) and nothing without a bound or not finite.
    #[test]
    fn the_screen_passes_only_losses_well_inside_the_bound() {
        assert!(passes_screen(0.2, 0.67, 2.0));
        assert!(
            !passes_screen(0.2, 0.68, 2.0),
            "inside the bound, not well inside"
        );
        assert!(!passes_screen(0.2, 0.95, 2.0));
        assert!(!passes_screen(0.2, 0.1, 0.0), "no bound to screen for");
        assert!(!passes_screen(0.2, f32::NAN, 2.0));
        assert!(!passes_screen(0.2, f32::INFINITY, 2.0));
        // A negative reference counts as 0: the bound is the slack alone.
        assert!(passes_screen(-1.0, 0.375, 2.0));
        assert!(!passes_screen(-1.0, 0.38, 2.0));
    }

    #[test]
    fn the_distance_scale_is_the_lower_median_and_outliers_are_refused() {
        let mut h = NormHistory::default();
        let r = h.reference(&[1.0, 100.0]);
        assert_eq!(r, Some(1.0));
        assert!(accept_distance(1.0, r, 6.0, 50.0).is_ok());
        assert!(matches!(
            accept_distance(100.0, r, 6.0, 50.0),
            Err(Rejection::Distance { .. })
        ));
        assert!(accept_distance(f32::NAN, r, 6.0, 50.0).is_err());
        assert!(
            accept_distance(100.0, r, 0.0, 50.0).is_ok(),
            "factor 0: off"
        );
        assert!(
            accept_distance(100.0, None, 6.0, 50.0).is_ok(),
            "no scale yet"
        );
        // A drifted honest peer: 40 usual distances away, but nearer than the model's size.
        assert!(accept_distance(40.0, r, 6.0, 50.0).is_ok());
        // A large scale (partners far apart) cannot let a sign flip (twice the norm) in: the
        // bound stops at 1.5 times the norm, and never falls below the norm.
        let wide = Some(20.0);
        assert!(matches!(
            accept_distance(100.0, wide, 6.0, 50.0),
            Err(Rejection::Distance { bound, .. }) if bound == 75.0
        ));
        assert!(accept_distance(74.0, wide, 6.0, 50.0).is_ok());
        assert!(matches!(
            accept_distance(51.0, Some(0.1), 6.0, 50.0),
            Err(Rejection::Distance { bound, .. }) if bound == 50.0
        ));
        h.remember(&[1.0, 100.0, 1.5, f32::INFINITY]);
        assert_eq!(h.reference(&[1e30]), Some(1.5));
        assert_eq!(distance(&[0.0, 3.0], &[4.0, 0.0]), 5.0);
    }

    /// Own 0, partners 1 and 100 in one coordinate, equal weights, clipped at 2: the second
    /// difference is cut to 2: own = 0 + (1 + 2) / 3 = 1.
    #[test]
    fn clipping_cuts_an_outsized_difference() {
        let mut own = vec![0.0];
        let w = [1.0 / 3.0; 3];
        let out = aggregate(
            Aggregation::Clip,
            &mut own,
            &[&[1.0], &[100.0]],
            &w,
            Some(2.0),
        );
        assert_eq!(out.clipped, 1);
        assert!((own[0] - 1.0).abs() < 1e-6, "{own:?}");
    }

    #[test]
    fn clipping_leaves_honest_differences_as_the_mean() {
        let mut own = vec![0.0, 0.0];
        let mut plain = own.clone();
        let partners: [&[f32]; 2] = [&[1.0, 0.0], &[0.0, 1.2]];
        let w = [0.5, 0.25, 0.25];
        let out = aggregate(Aggregation::Clip, &mut own, &partners, &w, Some(2.0));
        super::super::policy::merge_into(&mut plain, &partners, &w);
        assert_eq!(out.clipped, 0);
        assert_eq!(own, plain);
    }

    #[test]
    fn median_and_trimmed_mean_ignore_one_outlier_of_three_or_five() {
        let mut own = vec![1.0, 5.0];
        aggregate(
            Aggregation::Median,
            &mut own,
            &[&[2.0, 1e9], &[-1e9, 6.0]],
            &[],
            None,
        );
        assert_eq!(own, vec![1.0, 6.0]);
        // Five models: t = 1, so the mean of the middle three.
        let mut own = vec![1.0];
        aggregate(
            Aggregation::TrimmedMean,
            &mut own,
            &[&[2.0], &[3.0], &[1e9], &[-1e9]],
            &[],
            None,
        );
        assert_eq!(own, vec![2.0]);
        // Two models: nothing to trim, the mean.
        let mut own = vec![1.0];
        aggregate(Aggregation::TrimmedMean, &mut own, &[&[3.0]], &[], None);
        assert_eq!(own, vec![2.0]);
    }

    #[test]
    fn aggregation_names_round_trip() {
        for rule in Aggregation::ALL {
            assert_eq!(rule.as_str().parse::<Aggregation>(), Ok(*rule));
        }
        assert!("avg".parse::<Aggregation>().is_err());
    }
}
