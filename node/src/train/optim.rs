//! Optimizers: SGD with momentum and weight decay (candle's `SGD` has neither; this follows
//! PyTorch's `torch.optim.SGD` update exactly), and candle's `AdamW`. Both update the model's
//! `Var`s in place, so weights imported by averaging are picked up at the next step while
//! the optimizer's own state (momentum buffers, Adam moments) is kept.

use candle_core::backprop::GradStore;
use candle_core::{Tensor, Var};
use candle_nn::Optimizer as _;
use std::fmt;
use std::str::FromStr;

/// Which optimizer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OptimizerKind {
    /// Stochastic gradient descent, with optional momentum and weight decay.
    Sgd,
    /// AdamW (decoupled weight decay).
    AdamW,
}

impl FromStr for OptimizerKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "sgd" => Ok(OptimizerKind::Sgd),
            "adamw" => Ok(OptimizerKind::AdamW),
            _ => Err(format!(
                "unknown optimizer {s:?}: expected `sgd` or `adamw`"
            )),
        }
    }
}

impl fmt::Display for OptimizerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OptimizerKind::Sgd => "sgd",
            OptimizerKind::AdamW => "adamw",
        })
    }
}

/// Optimizer settings.
#[derive(Debug, Clone, PartialEq)]
pub struct OptimConfig {
    pub kind: OptimizerKind,
    /// Learning rate.
    pub lr: f64,
    /// SGD momentum (0 = none); ignored by AdamW (which uses beta1 = 0.9).
    pub momentum: f64,
    /// L2 weight decay for SGD, decoupled weight decay for AdamW.
    pub weight_decay: f64,
}

impl Default for OptimConfig {
    fn default() -> Self {
        Self {
            kind: OptimizerKind::Sgd,
            lr: 0.05,
            momentum: 0.9,
            weight_decay: 0.0,
        }
    }
}

/// A configured optimizer over a model's variables.
#[derive(Debug)]
pub enum Optim {
    Sgd(Sgd),
    AdamW(candle_nn::AdamW),
}

impl Optim {
    /// Builds the optimizer for `vars`.
    pub fn new(cfg: &OptimConfig, vars: Vec<Var>) -> candle_core::Result<Self> {
        Ok(match cfg.kind {
            OptimizerKind::Sgd => {
                Optim::Sgd(Sgd::new(vars, cfg.lr, cfg.momentum, cfg.weight_decay))
            }
            OptimizerKind::AdamW => Optim::AdamW(candle_nn::AdamW::new(
                vars,
                candle_nn::ParamsAdamW {
                    lr: cfg.lr,
                    weight_decay: cfg.weight_decay,
                    ..Default::default()
                },
            )?),
        })
    }

    /// Sets the learning rate (for schedules).
    pub fn set_lr(&mut self, lr: f64) {
        match self {
            Optim::Sgd(sgd) => sgd.lr = lr,
            Optim::AdamW(adamw) => adamw.set_learning_rate(lr),
        }
    }

    /// One update from `grads`.
    pub fn step(&mut self, grads: &GradStore) -> candle_core::Result<()> {
        match self {
            Optim::Sgd(sgd) => sgd.step(grads),
            Optim::AdamW(adamw) => adamw.step(grads),
        }
    }
}

/// SGD as in PyTorch: `g = grad + wd * w; buf = momentum * buf + g (buf = g at first);
/// w -= lr * buf`.
#[derive(Debug)]
pub struct Sgd {
    vars: Vec<(Var, Option<Tensor>)>,
    lr: f64,
    momentum: f64,
    weight_decay: f64,
}

impl Sgd {
    /// SGD over `vars`.
    pub fn new(vars: Vec<Var>, lr: f64, momentum: f64, weight_decay: f64) -> Self {
        Self {
            vars: vars.into_iter().map(|v| (v, None)).collect(),
            lr,
            momentum,
            weight_decay,
        }
    }

    /// One update.
    pub fn step(&mut self, grads: &GradStore) -> candle_core::Result<()> {
        for (var, buf) in &mut self.vars {
            let Some(grad) = grads.get(var) else { continue };
            let mut g = grad.clone();
            if self.weight_decay != 0.0 {
                g = (g + (var.as_tensor() * self.weight_decay)?)?;
            }
            if self.momentum != 0.0 {
                let next = match buf.take() {
                    Some(b) => ((b * self.momentum)? + g)?,
                    None => g,
                };
                *buf = Some(next.clone());
                g = next;
            }
            var.set(&(var.as_tensor() - (g * self.lr)?)?)?;
        }
        Ok(())
    }
}

/// How the learning rate moves over a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Schedule {
    /// The same learning rate throughout.
    #[default]
    Constant,
    /// Cosine decay from the base rate to zero over the run's steps.
    Cosine,
}

impl Schedule {
    /// The learning rate at `step` of `total` steps.
    pub fn lr(self, base: f64, step: usize, total: usize) -> f64 {
        match self {
            Schedule::Constant => base,
            Schedule::Cosine => {
                let progress = step as f64 / total.max(1) as f64;
                0.5 * base * (1.0 + (std::f64::consts::PI * progress.min(1.0)).cos())
            }
        }
    }
}

impl FromStr for Schedule {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "constant" => Ok(Schedule::Constant),
            "cosine" => Ok(Schedule::Cosine),
            _ => Err(format!(
                "unknown schedule {s:?}: expected `constant` or `cosine`"
            )),
        }
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Schedule::Constant => "constant",
            Schedule::Cosine => "cosine",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// Minimizing w^2 from w = 1 with lr 0.1, momentum 0.9, weight decay 0.1, three steps:
    /// the values torch.optim.SGD([w], lr=0.1, momentum=0.9, weight_decay=0.1) gives, worked
    /// out by hand from its update rule below.
    #[test]
    fn cosine_schedule_decays_to_zero() {
        assert_eq!(Schedule::Cosine.lr(0.1, 0, 100), 0.1);
        assert!((Schedule::Cosine.lr(0.1, 50, 100) - 0.05).abs() < 1e-12);
        assert!(Schedule::Cosine.lr(0.1, 100, 100).abs() < 1e-12);
        assert_eq!(Schedule::Constant.lr(0.1, 70, 100), 0.1);
    }

    #[test]
    fn sgd_matches_the_pytorch_update() {
        let w = Var::from_tensor(&Tensor::new(&[1.0f32], &Device::Cpu).unwrap()).unwrap();
        let mut sgd = Sgd::new(vec![w.clone()], 0.1, 0.9, 0.1);
        let mut seen = vec![];
        for _ in 0..3 {
            let loss = w.as_tensor().sqr().unwrap().sum_all().unwrap();
            sgd.step(&loss.backward().unwrap()).unwrap();
            seen.push(w.as_tensor().to_vec1::<f32>().unwrap()[0]);
        }
        // step 1: g = 2 + 0.1 = 2.1, buf = 2.1, w = 1 - 0.21 = 0.79
        // step 2: g = 1.58 + 0.079 = 1.659, buf = 1.89 + 1.659 = 3.549, w = 0.79 - 0.3549 = 0.4351
        // step 3: g = 0.8702 + 0.04351 = 0.91371, buf = 3.1941 + 0.91371 = 4.10781, w = 0.024319
        let expected = [0.79, 0.4351, 0.024319];
        for (got, want) in seen.iter().zip(expected) {
            assert!((got - want).abs() < 1e-5, "{seen:?} vs {expected:?}");
        }
    }
}
