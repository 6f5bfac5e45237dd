//! The outer step on a merge (SlowMo / DiLoCo form, as NoLoCo applies it to gossip): the
//! merge's displacement from the model after the previous merge is treated as a gradient and
//! stepped along with Nesterov momentum. Pure arithmetic on flat weights; it owns the anchor
//! and the outer velocity and nothing else (the training thread holds one).
//!
//! With `lr = 1` and `momentum = 0` the step is the plain merge. The velocity restarts from
//! zero whenever a merge's displacement points against it (O'Donoghue and Candès' adaptive
//! restart): momentum that overshoots, as when peers' models pull each other back and forth,
//! is dropped instead of amplified.

/// Outer learning rate and momentum.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OuterParams {
    /// `η`, > 0.
    pub lr: f32,
    /// `μ`, in `[0, 1)`.
    pub momentum: f32,
}

impl OuterParams {
    /// The plain merge.
    pub const PLAIN: OuterParams = OuterParams {
        lr: 1.0,
        momentum: 0.0,
    };

    /// True when the step is the plain merge (nothing to keep).
    pub fn is_plain(&self) -> bool {
        *self == Self::PLAIN
    }
}

/// The outer optimizer's state: the model after the previous merge (`φ`) and the velocity.
#[derive(Debug, Clone, Default)]
pub struct OuterStep {
    anchor: Vec<f32>,
    velocity: Vec<f32>,
}

impl OuterStep {
    /// Starts from `model` with no velocity.
    pub fn new(model: &[f32]) -> Self {
        Self {
            anchor: model.to_vec(),
            velocity: vec![0.0; model.len()],
        }
    }

    /// `merged` is the weighted mean of this model and its partners. With `Δ = φ − merged`:
    /// `u = 0` if `Δ · u < 0`; then `u = μ u + Δ; φ = φ − η (Δ + μ u)`; `merged` becomes the
    /// new `φ`. A model of another length (a new layout) restarts the state from `merged`.
    pub fn apply(&mut self, merged: &mut [f32], p: OuterParams) {
        if self.anchor.len() != merged.len() {
            *self = Self::new(merged);
            return;
        }
        let alignment: f64 = merged
            .iter()
            .zip(&self.anchor)
            .zip(&self.velocity)
            .map(|((m, a), u)| f64::from(a - m) * f64::from(*u))
            .sum();
        if alignment < 0.0 {
            self.velocity.iter_mut().for_each(|u| *u = 0.0);
        }
        for ((m, a), u) in merged
            .iter_mut()
            .zip(self.anchor.iter_mut())
            .zip(self.velocity.iter_mut())
        {
            let delta = *a - *m;
            *u = p.momentum * *u + delta;
            *a -= p.lr * (delta + p.momentum * *u);
            *m = *a;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plain_step_is_the_merge() {
        let mut outer = OuterStep::new(&[1.0, 2.0]);
        let mut merged = vec![0.5, 3.0];
        outer.apply(&mut merged, OuterParams::PLAIN);
        assert_eq!(merged, vec![0.5, 3.0]);
    }

    /// η = 1, μ = 0.5 on one weight, worked by hand.
    #[test]
    fn nesterov_outer_steps_by_hand() {
        let p = OuterParams {
            lr: 1.0,
            momentum: 0.5,
        };
        let mut outer = OuterStep::new(&[1.0]);
        // Δ = 1 − 0.8 = 0.2; u = 0.2; φ = 1 − (0.2 + 0.1) = 0.7
        let mut merged = vec![0.8];
        outer.apply(&mut merged, p);
        assert!((merged[0] - 0.7).abs() < 1e-6, "{merged:?}");
        // Δ = 0.7 − 0.6 = 0.1; u = 0.1 + 0.1 = 0.2; φ = 0.7 − (0.1 + 0.1) = 0.5
        let mut merged = vec![0.6];
        outer.apply(&mut merged, p);
        assert!((merged[0] - 0.5).abs() < 1e-6, "{merged:?}");
        // A displacement against the velocity (Δ = 0.5 − 0.9 = −0.4, u = 0.2) restarts it:
        // u = −0.4; φ = 0.5 − (−0.4 − 0.2) = 1.1 (with the old velocity it would be 1.05).
        let mut merged = vec![0.9];
        outer.apply(&mut merged, p);
        assert!((merged[0] - 1.1).abs() < 1e-6, "{merged:?}");
        // A different length restarts from the merged model.
        let mut merged = vec![3.0, 4.0];
        outer.apply(&mut merged, p);
        assert_eq!(merged, vec![3.0, 4.0]);
    }
}
