//! Optimizers: SGD with momentum and weight decay (candle's `SGD` has neither; this follows
//! PyTorch's `torch.optim.SGD` update exactly), and candle's `AdamW`. Both update the model's
//! `Var`s in place, so weights imported by averaging are picked up at the next step. What
//! SGD's momentum does across such an import is its [`MomentumMode`]: kept as is, reset, or
//! quasi-global (fed by the model's whole displacement, merges included).

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

/// What SGD's momentum buffer does when averaging moves the weights between two steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MomentumMode {
    /// The buffer only ever sees this peer's own gradients (PyTorch's SGD): after a merge it
    /// keeps pushing in the direction of the peer's own data.
    #[default]
    Local,
    /// The buffer is emptied whenever weights are imported.
    Reset,
    /// Quasi-global momentum (Lin et al., ICML 2021): the buffer is fed the model's actual
    /// displacement per step, merges included, instead of the local gradient:
    /// `m = β m + (1 − β) (x_prev − x) / lr_prev`, then `x -= lr (β m + g)`. Alone it is
    /// heavy-ball momentum; merged, the buffer carries the network's direction.
    QuasiGlobal,
}

crate::names::named_enum!(MomentumMode, "momentum mode", {
    Local => "local",
    Reset => "reset",
    QuasiGlobal => "quasi-global",
});

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
    /// SGD's momentum across imported weights; ignored by AdamW.
    pub momentum_mode: MomentumMode,
}

impl Default for OptimConfig {
    fn default() -> Self {
        Self {
            kind: OptimizerKind::Sgd,
            lr: 0.05,
            momentum: 0.9,
            weight_decay: 0.0,
            momentum_mode: MomentumMode::Local,
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
            OptimizerKind::Sgd => Optim::Sgd(
                Sgd::new(vars, cfg.lr, cfg.momentum, cfg.weight_decay).with_mode(cfg.momentum_mode),
            ),
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

    /// Weights were imported by averaging (`replaced`: by another model outright, as when
    /// adopting one). SGD empties its momentum in [`MomentumMode::Reset`], and in every mode
    /// when the model was replaced (the buffer belonged to another trajectory).
    pub fn imported(&mut self, replaced: bool) {
        if let Optim::Sgd(sgd) = self
            && (replaced || sgd.mode == MomentumMode::Reset)
        {
            sgd.reset();
        }
    }
}

/// One parameter's SGD state.
#[derive(Debug)]
struct SgdVar {
    var: Var,
    /// The momentum buffer.
    buf: Option<Tensor>,
    /// Quasi-global mode: the weights at the start of the previous step.
    prev: Option<Tensor>,
}

/// SGD. In [`MomentumMode::Local`] and [`MomentumMode::Reset`] it is PyTorch's: `g = grad +
/// wd * w; buf = momentum * buf + g (buf = g at first); w -= lr * buf`. In
/// [`MomentumMode::QuasiGlobal`], see there.
#[derive(Debug)]
pub struct Sgd {
    vars: Vec<SgdVar>,
    lr: f64,
    momentum: f64,
    weight_decay: f64,
    mode: MomentumMode,
    /// The rate of the previous step (quasi-global mode divides its displacement by it).
    prev_lr: f64,
}

impl Sgd {
    /// SGD over `vars`, with local momentum.
    pub fn new(vars: Vec<Var>, lr: f64, momentum: f64, weight_decay: f64) -> Self {
        Self {
            vars: vars
                .into_iter()
                .map(|var| SgdVar {
                    var,
                    buf: None,
                    prev: None,
                })
                .collect(),
            lr,
            momentum,
            weight_decay,
            mode: MomentumMode::Local,
            prev_lr: lr,
        }
    }

    /// The same with momentum mode `mode`.
    pub fn with_mode(mut self, mode: MomentumMode) -> Self {
        self.mode = mode;
        self
    }

    /// Empties the momentum buffers (and forgets the previous weights).
    pub fn reset(&mut self) {
        for v in &mut self.vars {
            v.buf = None;
            v.prev = None;
        }
    }

    /// One update.
    pub fn step(&mut self, grads: &GradStore) -> candle_core::Result<()> {
        let (lr, beta) = (self.lr, self.momentum);
        for SgdVar { var, buf, prev } in &mut self.vars {
            let Some(grad) = grads.get(var) else { continue };
            // Detached: the optimizer's arithmetic must not join the autograd graph (a
            // buffer built from tracked tensors would keep every earlier step alive).
            let x = var.as_tensor().detach();
            let x = &x;
            let mut g = grad.detach();
            if self.weight_decay != 0.0 {
                g = (g + (x * self.weight_decay)?)?;
            }
            if beta != 0.0 && self.mode == MomentumMode::QuasiGlobal {
                // Fold the previous step's whole displacement (merges included) into the
                // buffer, then step along beta * buffer + gradient.
                if let Some(p) = prev.take() {
                    let displacement = ((p - x)? / self.prev_lr)?;
                    let m = match buf.take() {
                        Some(b) => ((b * beta)? + (displacement * (1.0 - beta))?)?,
                        None => (displacement * (1.0 - beta))?,
                    };
                    *buf = Some(m);
                }
                *prev = Some(x.copy()?);
                if let Some(m) = buf.as_ref() {
                    g = ((m * beta)? + g)?;
                }
            } else if beta != 0.0 {
                let next = match buf.take() {
                    Some(b) => ((b * beta)? + g)?,
                    None => g,
                };
                *buf = Some(next.clone());
                g = next;
            }
            var.set(&(x - (g * lr)?)?)?;
        }
        self.prev_lr = lr;
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

    /// Quasi-global momentum on w^2 from w = 1, lr 0.1, momentum 0.5, with a merge that
    /// moves w between steps 2 and 3; every number worked out by hand from the rule
    /// `m = β m + (1 − β)(x_prev − x)/lr; x -= lr (β m + g)`.
    #[test]
    fn quasi_global_momentum_follows_the_displacement_merges_included() {
        let w = Var::from_tensor(&Tensor::new(&[1.0f32], &Device::Cpu).unwrap()).unwrap();
        let mut sgd = Sgd::new(vec![w.clone()], 0.1, 0.5, 0.0).with_mode(MomentumMode::QuasiGlobal);
        let value = |w: &Var| w.as_tensor().to_vec1::<f32>().unwrap()[0];
        let step = |sgd: &mut Sgd| {
            let loss = w.as_tensor().sqr().unwrap().sum_all().unwrap();
            sgd.step(&loss.backward().unwrap()).unwrap();
        };
        // step 1: no previous step, m = none: w = 1 - 0.1 * 2 = 0.8
        step(&mut sgd);
        assert!((value(&w) - 0.8).abs() < 1e-6);
        // step 2: displacement (1 - 0.8)/0.1 = 2, m = 0.5 * 2 = 1;
        //         g = 1.6, w = 0.8 - 0.1 * (0.5 * 1 + 1.6) = 0.59
        step(&mut sgd);
        assert!((value(&w) - 0.59).abs() < 1e-6);
        // A merge moves w from 0.59 to 0.29 before step 3.
        w.set(&Tensor::new(&[0.29f32], &Device::Cpu).unwrap())
            .unwrap();
        // step 3: displacement (0.8 - 0.29)/0.1 = 5.1, m = 0.5 * 1 + 0.5 * 5.1 = 3.05;
        //         g = 0.58, w = 0.29 - 0.1 * (0.5 * 3.05 + 0.58) = 0.0795
        step(&mut sgd);
        assert!((value(&w) - 0.0795).abs() < 1e-6, "{}", value(&w));
        // Reset empties the buffer: the next step is plain SGD from where it is.
        sgd.reset();
        step(&mut sgd);
        assert!((value(&w) - 0.0795 * (1.0 - 0.2)).abs() < 1e-6);
    }

    #[test]
    fn momentum_modes_parse_and_print() {
        for &m in MomentumMode::ALL {
            assert_eq!(m.as_str().parse::<MomentumMode>(), Ok(m));
        }
        assert!("global".parse::<MomentumMode>().is_err());
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
