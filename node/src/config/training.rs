//! `[training]`: [`TrainingConfig`], its defaults, the trainer settings it describes, and its
//! checks (shard, partition, optimizer values, batch size).
//!
//! Owns the keys and their ranges; it loads no data and trains nothing (`crate::data` and
//! `crate::train` do, with these values and [`TrainingConfig::train_config`]).

use super::check::{at_least, positive, quoted, unit_fraction};
use super::{ConfigError, MomentumMode, text};
use crate::data::{DatasetName, Partition, ShardSpec};
use crate::model::{ConvImpl, DEFAULT_MLP_HIDDEN, ModelKind};
use crate::train::TrainConfig;
use crate::train::optim::{OptimConfig, OptimizerKind};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// `[training]`: this peer's data and how it trains locally. A key that `murmur train` has a
/// flag for defaults as that flag does, except `threads` (1: several peers often share a
/// machine). `murmur train` has no flag for `balance_classes` or `holdout_samples` and trains
/// with neither; a peer's defaults are `balance_classes = true` (peers' shards are often
/// skewed) and `holdout_samples = 200`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainingConfig {
    /// Dataset: `digits` (built in), `fashion-mnist` or `mnist`. Every peer of a network must
    /// use the same one. Omitted: `digits`.
    #[serde(with = "text")]
    pub dataset: DatasetName,
    /// Directory holding the dataset's IDX files; `None` (written `""`) = the dataset's default
    /// (`/usr/share/datasets/fashion-mnist` for fashion-mnist; mnist has none). A relative path
    /// is relative to the config file's directory. Omitted: `""`.
    #[serde(with = "text::optional_path")]
    pub data_dir: Option<PathBuf>,
    /// Model: `logreg`, `mlp` (hidden 200-200), `mlp:<h1>-<h2>-...` or `cnn`. Same on every
    /// peer. Omitted: `mlp`.
    #[serde(with = "text")]
    pub model: ModelKind,
    /// How the training set is split among the peers: `iid`, `dirichlet:<alpha>` or
    /// `shards:<k>`. Same on every peer. Omitted: `iid`.
    #[serde(with = "text")]
    pub partition: Partition,
    /// This peer's part of the split: `i/n` keeps part `i` (0-based) of `n`. Omitted: `0/1`
    /// (all of the data).
    #[serde(with = "text")]
    pub shard: ShardSpec,
    /// Optimizer: `sgd` or `adamw`. Omitted: `sgd`.
    #[serde(with = "text")]
    pub optimizer: OptimizerKind,
    /// Learning rate, finite and > 0. Omitted: 0.1 ([`NETWORK_LR`]).
    pub lr: f64,
    /// SGD momentum, in `[0, 1)` (0 = plain SGD); ignored by AdamW. Omitted: 0.9.
    pub momentum: f64,
    /// What SGD's momentum does across merges: `local` (kept, fed only by this peer's
    /// gradients), `reset` (emptied at each merge) or `quasi-global` (fed by the model's
    /// whole displacement, merges included). Omitted: `local`.
    #[serde(with = "text")]
    pub momentum_mode: MomentumMode,
    /// Samples over which the learning rate rises linearly from 0 to `lr` (0 = none).
    /// Omitted: 0.
    pub warmup_samples: u64,
    /// Weight decay, >= 0 (L2 for SGD, decoupled for AdamW). Omitted: 0.
    pub weight_decay: f64,
    /// Inverse-time learning-rate decay: the rate is `lr / (1 + samples / lr_decay_samples)`,
    /// `samples` being those this peer has trained on (it continues after a restart); 0 =
    /// constant. Omitted: 30,000 ([`NETWORK_LR_DECAY_SAMPLES`]).
    pub lr_decay_samples: u64,
    /// Cosine annealing over a known budget: the rate (after warm-up and decay) is also
    /// multiplied by `(1 + cos(pi * samples / lr_cosine_samples)) / 2`, reaching 0 after
    /// `lr_cosine_samples` samples of this peer and staying there (the peer then only
    /// averages); 0 = none. For a run with a planned number of samples per peer, as a
    /// centralized run anneals over its epochs. Omitted: 0.
    pub lr_cosine_samples: u64,
    /// Logit adjustment for label skew: train with `log p(class)` of this peer's own labels
    /// added to the logits (balanced softmax), so a peer holding mostly a few classes does not
    /// learn to predict mostly those. No effect on a balanced shard. Omitted: true.
    pub balance_classes: bool,
    /// Examples per minibatch, >= 1. Omitted: 50.
    pub batch_size: usize,
    /// Examples of this peer's shard held back from training, on which partner models are
    /// checked before they are merged or adopted (at most a fifth of the shard); 0 = no check.
    /// Omitted: 200.
    pub holdout_samples: usize,
    /// Seeds the initial weights (so it must be the same on every peer of a network), the
    /// partition and the batch order. Omitted: 1.
    pub seed: u64,
    /// Compute threads (0 = one per core). Omitted: 1, right when several peers share a
    /// machine.
    pub threads: usize,
}

/// A peer's learning rate when the config names none: twice `murmur train`'s 0.05. With
/// every peer on the mean of its partners each round, the network steps like one learner on
/// a batch several times larger, which takes a larger rate; the inverse-time decay
/// ([`NETWORK_LR_DECAY_SAMPLES`]) then anneals it. Chosen in the simulator against exact
/// averaging (docs/benchmarks.md, "Learning-rate schedule": 8 Fashion-MNIST peers reach
/// 85% after 24,000 samples per peer on iid shards and 31,970 on Dirichlet 0.5, against
/// 30,000 and 39,961 at a constant 0.05). One machine alone does better at 0.05.
pub const NETWORK_LR: f64 = 0.1;

/// `training.lr_decay_samples` when the config names none: the rate halves after 30,000
/// samples of this peer, is a third after 60,000, and so on.
pub const NETWORK_LR_DECAY_SAMPLES: u64 = 30_000;

impl Default for TrainingConfig {
    fn default() -> Self {
        let optim = OptimConfig::default();
        Self {
            dataset: DatasetName::Digits,
            data_dir: None,
            model: ModelKind::Mlp {
                hidden: DEFAULT_MLP_HIDDEN.to_vec(),
            },
            partition: Partition::Iid,
            shard: ShardSpec { index: 0, count: 1 },
            optimizer: optim.kind,
            lr: NETWORK_LR,
            momentum: optim.momentum,
            momentum_mode: optim.momentum_mode,
            warmup_samples: 0,
            weight_decay: optim.weight_decay,
            lr_decay_samples: NETWORK_LR_DECAY_SAMPLES,
            lr_cosine_samples: 0,
            balance_classes: true,
            batch_size: 50,
            holdout_samples: 200,
            seed: 1,
            threads: 1,
        }
    }
}

impl TrainingConfig {
    /// What the trainer needs: model, optimizer, batch size, seed, `balance_classes` and
    /// `holdout_samples` (default convolutions).
    pub fn train_config(&self) -> TrainConfig {
        TrainConfig {
            model: self.model.clone(),
            optimizer: OptimConfig {
                kind: self.optimizer,
                lr: self.lr,
                momentum: self.momentum,
                weight_decay: self.weight_decay,
                momentum_mode: self.momentum_mode,
            },
            batch_size: self.batch_size,
            seed: self.seed,
            conv: ConvImpl::default(),
            balance_classes: self.balance_classes,
            holdout: self.holdout_samples,
        }
    }

    /// The IDX directory, or `None` for the dataset's default.
    pub fn data_dir(&self) -> Option<&Path> {
        self.data_dir.as_deref()
    }
}

impl TrainingConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let ShardSpec { index, count } = self.shard;
        if count == 0 || index >= count {
            return Err(ConfigError::invalid(
                "training.shard",
                quoted(self.shard),
                "index must be below count, e.g. 0/4 (indices are 0-based)",
            ));
        }
        match self.partition {
            Partition::Dirichlet { alpha } if !(alpha.is_finite() && alpha > 0.0) => {
                return Err(ConfigError::invalid(
                    "training.partition",
                    quoted(self.partition),
                    "alpha must be a finite number greater than 0",
                ));
            }
            Partition::Shards { per_peer: 0 } => {
                return Err(ConfigError::invalid(
                    "training.partition",
                    quoted(self.partition),
                    "shards per peer must be at least 1",
                ));
            }
            _ => {}
        }
        positive("training.lr", self.lr)?;
        unit_fraction("training.momentum", self.momentum)?;
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return Err(ConfigError::invalid(
                "training.weight_decay",
                self.weight_decay,
                "must be a finite number, at least 0",
            ));
        }
        at_least("training.batch_size", self.batch_size, 1)
    }
}

#[cfg(test)]
mod tests {
    use crate::config::NodeConfig;
    use crate::train::TrainConfig;

    #[test]
    fn config_defaults_match_murmur_train() {
        // Except for the logit adjustment (peers' shards are often skewed, one machine's
        // whole dataset is not), the held-back examples (one machine checks no partner) and
        // the learning rate (peers that average every round take twice one machine's).
        let ours = NodeConfig::default().training.train_config();
        assert!(ours.balance_classes);
        let mut theirs = TrainConfig {
            balance_classes: true,
            holdout: 200,
            ..TrainConfig::default()
        };
        assert_eq!(theirs.optimizer.lr, 0.05);
        theirs.optimizer.lr = crate::config::NETWORK_LR;
        assert_eq!(ours, theirs);
    }
}
