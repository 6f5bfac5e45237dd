//! Local training: a [`Trainer`] owns one model, its optimizer and this peer's training data,
//! and runs minibatch steps and evaluations. It knows nothing of the network: the node runs it
//! on its own thread and talks to it through channels; `murmur train` runs it directly.
//!
//! Batches are drawn by a seeded shuffle per epoch, so a run is reproducible given its seed.

pub mod command;
pub mod holdout;
pub mod merge;
pub mod optim;
pub mod round;
pub mod worker;

use crate::data::Split;
use crate::model::{ConvImpl, ModelError, ModelKind, Network};
use candle_core::{Device, Tensor};
use holdout::{Holdout, LossSum};
use murmur_protocol::FlatParams;
use optim::{Optim, OptimConfig};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

/// Test examples per evaluation batch (memory stays small, matmuls stay large).
const EVAL_BATCH: usize = 1_000;

/// Everything that decides how a model is trained.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainConfig {
    pub model: ModelKind,
    pub optimizer: OptimConfig,
    /// Examples per minibatch.
    pub batch_size: usize,
    /// Seeds the initial weights (shared by every peer of a network) and the batch order.
    pub seed: u64,
    /// How the CNN computes convolutions (no effect on other models).
    pub conv: ConvImpl,
    /// Logit adjustment for label skew: training adds `log p(class)` of this trainer's own
    /// training labels to the logits before the loss (balanced softmax), so a model trained
    /// on a few classes does not learn to favour them; evaluation uses plain logits. No
    /// effect on balanced data.
    pub balance_classes: bool,
    /// Training examples held back (at most a fifth of them, drawn by the seed) to check
    /// models offered by partners on this peer's own data; 0 = none.
    pub holdout: usize,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            model: ModelKind::Mlp {
                hidden: crate::model::DEFAULT_MLP_HIDDEN.to_vec(),
            },
            optimizer: OptimConfig::default(),
            batch_size: 50,
            seed: 1,
            conv: ConvImpl::default(),
            balance_classes: false,
            holdout: 0,
        }
    }
}

/// Accuracy and mean loss on the test split.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Evaluation {
    pub accuracy: f32,
    pub loss: f32,
}

/// Training failed.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("no training data: this peer's shard is empty")]
    NoData,
    #[error("batch size must be at least 1")]
    BatchSize,
    #[error("training diverged: loss is {loss} (lower the learning rate)")]
    Diverged { loss: f32 },
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("candle: {0}")]
    Candle(#[from] candle_core::Error),
    #[error("the training thread panicked")]
    Panicked,
}

/// `log p(class)` of `labels` over `classes`, as a (1, classes) tensor. Counts get one
/// added, so a class absent from the shard has a small prior, not zero.
fn log_prior(labels: &[u8], classes: usize) -> candle_core::Result<Tensor> {
    let mut counts = vec![1f32; classes];
    for &l in labels {
        if let Some(c) = counts.get_mut(usize::from(l)) {
            *c += 1.0;
        }
    }
    let total: f32 = counts.iter().sum();
    let logs: Vec<f32> = counts.iter().map(|c| (c / total).ln()).collect();
    Tensor::from_vec(logs, (1, classes), &Device::Cpu)
}

/// One model being trained on one peer's data.
#[derive(Debug)]
pub struct Trainer {
    net: Network,
    optim: Optim,
    /// How `optim` was built (a rollback builds it afresh).
    optim_cfg: optim::OptimConfig,
    train: Split,
    test: Split,
    /// Held back from `train`: the data partner models are checked on (may be empty).
    holdout: Holdout,
    batch_size: usize,
    rng: ChaCha8Rng,
    /// This epoch's order of training examples, and how far into it we are.
    order: Vec<usize>,
    cursor: usize,
    samples_seen: u64,
    /// `log p(class)` of the training labels, shape (1, classes), when balancing classes.
    logit_adjust: Option<Tensor>,
}

impl Trainer {
    /// A fresh model (weights from `cfg.seed`) for data of `shape` (channels, height, width)
    /// and `classes` labels.
    pub fn new(
        cfg: &TrainConfig,
        shape: [usize; 3],
        classes: usize,
        train: Split,
        test: Split,
    ) -> Result<Self, TrainError> {
        if train.len == 0 {
            return Err(TrainError::NoData);
        }
        if cfg.batch_size == 0 {
            return Err(TrainError::BatchSize);
        }
        let net =
            Network::new(cfg.model.clone(), shape, classes, cfg.seed)?.with_conv_impl(cfg.conv);
        let optim = Optim::new(&cfg.optimizer, net.vars())?;
        // The batch order gets its own stream, apart from the weights' seed.
        let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed ^ 0x6D75_726D_7572_0001);
        let (train, holdout) = hold_back(train, cfg.holdout, &mut rng);
        let holdout = Holdout::new(&holdout)?;
        let order = (0..train.len).collect();
        let logit_adjust = if cfg.balance_classes {
            Some(log_prior(&train.labels, classes)?)
        } else {
            None
        };
        let mut trainer = Self {
            net,
            optim,
            optim_cfg: cfg.optimizer.clone(),
            train,
            test,
            holdout,
            batch_size: cfg.batch_size,
            rng,
            order,
            cursor: 0,
            samples_seen: 0,
            logit_adjust,
        };
        trainer.order.shuffle(&mut trainer.rng);
        Ok(trainer)
    }

    /// The model.
    pub fn network(&self) -> &Network {
        &self.net
    }

    /// Training examples this trainer has stepped over so far.
    pub fn samples_seen(&self) -> u64 {
        self.samples_seen
    }

    /// Sets the sample counter (a node resuming from a checkpoint).
    pub fn set_samples_seen(&mut self, samples: u64) {
        self.samples_seen = samples;
    }

    /// Training examples on this peer.
    pub fn train_len(&self) -> usize {
        self.train.len
    }

    /// Minibatch steps in one pass over the training data.
    pub fn steps_per_epoch(&self) -> usize {
        self.train.len.div_ceil(self.batch_size)
    }

    fn batch(split: &Split, indices: &[usize]) -> candle_core::Result<(Tensor, Tensor)> {
        let mut xs = Vec::with_capacity(indices.len() * split.dim);
        let mut ys = Vec::with_capacity(indices.len());
        for &i in indices {
            xs.extend_from_slice(&split.features[i * split.dim..(i + 1) * split.dim]);
            ys.push(u32::from(split.labels[i]));
        }
        let xs = Tensor::from_vec(xs, (indices.len(), split.dim), &Device::Cpu)?;
        let ys = Tensor::from_vec(ys, indices.len(), &Device::Cpu)?;
        Ok((xs, ys))
    }

    /// One minibatch step; returns its loss. A new shuffled epoch starts when one ends.
    pub fn step(&mut self) -> Result<f32, TrainError> {
        if self.cursor >= self.order.len() {
            self.order.shuffle(&mut self.rng);
            self.cursor = 0;
        }
        let end = (self.cursor + self.batch_size).min(self.order.len());
        let (xs, ys) = Self::batch(&self.train, &self.order[self.cursor..end])?;
        let mut logits = self.net.forward(&xs)?;
        if let Some(adjust) = &self.logit_adjust {
            logits = logits.broadcast_add(adjust)?;
        }
        let loss = candle_nn::loss::cross_entropy(&logits, &ys)?;
        self.optim.step(&loss.backward()?)?;
        let value = loss.to_scalar::<f32>()?;
        if !value.is_finite() {
            return Err(TrainError::Diverged { loss: value });
        }
        self.samples_seen += (end - self.cursor) as u64;
        self.cursor = end;
        Ok(value)
    }

    /// Accuracy and mean cross-entropy on the test split.
    pub fn evaluate(&self) -> Result<Evaluation, TrainError> {
        self.evaluate_on(&self.test)
    }

    /// Accuracy and mean cross-entropy on `split` (the simulator's shared test examples).
    pub fn evaluate_split(&self, split: &Split) -> Result<Evaluation, TrainError> {
        self.evaluate_on(split)
    }

    /// Examples held back from training.
    pub fn holdout_len(&self) -> usize {
        self.holdout.len()
    }

    /// Parts the held-back examples are cut into ([`holdout::PARTS`], fewer if there are
    /// fewer examples; 0 if none).
    pub fn holdout_parts(&self) -> usize {
        self.holdout.parts()
    }

    /// Mean cross-entropy of the current model on the held-back examples (`None` if none
    /// were held back).
    pub fn holdout_loss(&self) -> Result<Option<f32>, TrainError> {
        if self.holdout.is_empty() {
            return Ok(None);
        }
        Ok(Some(self.holdout_loss_except(None)?.mean()))
    }

    /// The current model's summed cross-entropy on held-back part `part` (plain logits).
    pub fn holdout_part_loss(&self, part: usize) -> Result<LossSum, TrainError> {
        Ok(self.holdout.part_loss(part, |xs| self.net.forward(xs))?)
    }

    /// The current model's summed cross-entropy on every held-back part but `skip`.
    pub fn holdout_loss_except(&self, skip: Option<usize>) -> Result<LossSum, TrainError> {
        Ok(self.holdout.loss_except(skip, |xs| self.net.forward(xs))?)
    }

    /// Mean cross-entropy of `params` on the held-back examples, this trainer's own weights
    /// left as they were. Fails (without touching them) on another layout or non-finite
    /// values.
    pub fn holdout_loss_of(&self, params: &FlatParams) -> Result<Option<f32>, TrainError> {
        if self.holdout.is_empty() {
            return Ok(None);
        }
        let own = self.export()?;
        self.net.import(params)?;
        let loss = self.holdout_loss();
        self.net.import(&own)?;
        loss
    }

    fn evaluate_on(&self, split: &Split) -> Result<Evaluation, TrainError> {
        let (mut correct, mut loss_sum) = (0u64, 0f64);
        let all: Vec<usize> = (0..split.len).collect();
        for indices in all.chunks(EVAL_BATCH) {
            let (xs, ys) = Self::batch(split, indices)?;
            let logits = self.net.forward(&xs)?;
            let loss = candle_nn::loss::cross_entropy(&logits, &ys)?.to_scalar::<f32>()?;
            loss_sum += f64::from(loss) * indices.len() as f64;
            let hits = logits
                .argmax(1)?
                .eq(&ys)?
                .to_dtype(candle_core::DType::U32)?
                .sum_all()?;
            correct += u64::from(hits.to_scalar::<u32>()?);
        }
        let n = split.len.max(1) as f64;
        Ok(Evaluation {
            accuracy: (correct as f64 / n) as f32,
            loss: (loss_sum / n) as f32,
        })
    }

    /// The current weights.
    pub fn export(&self) -> Result<FlatParams, TrainError> {
        Ok(self.net.export()?)
    }

    /// Sets the optimizer's learning rate (schedules call this between steps).
    pub fn set_lr(&mut self, lr: f64) {
        self.optim.set_lr(lr);
    }

    /// Replaces the weights in place (a checkpoint); the optimizer state is kept.
    pub fn import(&self, params: &FlatParams) -> Result<(), TrainError> {
        Ok(self.net.import(params)?)
    }

    /// Takes weights from averaging: a merge, or (`replaced`) another model adopted
    /// outright. The optimizer's momentum follows its [`optim::MomentumMode`].
    pub fn absorb(&mut self, params: &FlatParams, replaced: bool) -> Result<(), TrainError> {
        self.net.import(params)?;
        self.optim.imported(replaced);
        Ok(())
    }

    /// Goes back to `params` (the last good weights, after training diverged) with a fresh
    /// optimizer: momentum or Adam moments built on the diverged weights would throw the
    /// model off again.
    pub fn roll_back(&mut self, params: &FlatParams) -> Result<(), TrainError> {
        self.net.import(params)?;
        self.optim = Optim::new(&self.optim_cfg, self.net.vars())?;
        Ok(())
    }
}

/// Splits `holdout` examples (at most a fifth, so none from fewer than five) off `train`,
/// drawn by `rng` and in the random order drawn (so any run of them is a random sample); the
/// rest, in their order, stays for training.
fn hold_back(train: Split, holdout: usize, rng: &mut ChaCha8Rng) -> (Split, Split) {
    let n = holdout.min(train.len / 5);
    let mut picked = vec![false; train.len];
    let mut order: Vec<usize> = (0..train.len).collect();
    order.shuffle(rng);
    for &i in &order[..n] {
        picked[i] = true;
    }
    let kept: Vec<usize> = (0..train.len).filter(|&i| !picked[i]).collect();
    (train.subset(&kept), train.subset(&order[..n]))
}

/// A small trainer for unit tests: an 8-unit MLP on the built-in digits, `holdout`
/// examples held back.
#[cfg(test)]
pub(crate) fn digits_trainer(holdout: usize) -> Trainer {
    let ds = crate::data::load(crate::data::DatasetName::Digits, None).unwrap();
    let cfg = TrainConfig {
        model: "mlp:8".parse().unwrap(),
        holdout,
        ..TrainConfig::default()
    };
    Trainer::new(&cfg, ds.shape, ds.classes, ds.train, ds.test).unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holding_back_takes_at_most_a_fifth_and_keeps_the_rest() {
        let split = Split {
            features: (0..20).map(|i| i as f32).collect(),
            labels: (0..20).map(|i| (i % 3) as u8).collect(),
            len: 20,
            dim: 1,
        };
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let (train, held) = hold_back(split.clone(), 100, &mut rng);
        assert_eq!((train.len, held.len), (16, 4));
        let mut all: Vec<f32> = train
            .features
            .iter()
            .chain(&held.features)
            .copied()
            .collect();
        all.sort_by(f32::total_cmp);
        assert_eq!(all, split.features, "every example exactly once");
        let (train, held) = hold_back(split.clone(), 0, &mut rng);
        assert_eq!((train.len, held.len), (20, 0));
        let (train, held) = hold_back(split.subset(&[0, 1, 2, 3]), 10, &mut rng);
        assert_eq!(
            (train.len, held.len),
            (4, 0),
            "under five: nothing held back"
        );
    }

    #[test]
    fn the_logit_adjustment_is_the_log_of_the_smoothed_label_frequencies() {
        // 3 classes: six 0s, two 1s, no 2: counts +1 = 7, 3, 1 of 11.
        let labels = [0u8, 0, 0, 0, 0, 0, 1, 1];
        let got: Vec<f32> = log_prior(&labels, 3)
            .and_then(|t| t.flatten_all()?.to_vec1::<f32>())
            .unwrap_or_default();
        let want: Vec<f32> = [7.0f32, 3.0, 1.0].iter().map(|c| (c / 11.0).ln()).collect();
        assert_eq!(got.len(), 3);
        for (g, w) in got.iter().zip(&want) {
            assert!((g - w).abs() < 1e-6, "{got:?} vs {want:?}");
        }
        // Balanced labels: every class shifted alike, so the loss's gradients are unchanged.
        let balanced: Vec<f32> = log_prior(&[0, 1, 2, 0, 1, 2], 3)
            .and_then(|t| t.flatten_all()?.to_vec1::<f32>())
            .unwrap_or_default();
        assert!(balanced.windows(2).all(|w| (w[0] - w[1]).abs() < 1e-6));
    }
}
