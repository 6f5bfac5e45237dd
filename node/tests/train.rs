//! Real candle training on the real built-in digits: loss falls, accuracy rises, weights
//! move in and out of a model being trained, and `murmur train --json` reports it all.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use murmur_node::data::{self, DatasetName, Partition};
use murmur_node::model::ModelKind;
use murmur_node::train::optim::{OptimConfig, OptimizerKind};
use murmur_node::train::{TrainConfig, Trainer};

fn digits_trainer(model: &str, optimizer: OptimConfig) -> Trainer {
    let ds = data::load(DatasetName::Digits, None).unwrap();
    let cfg = TrainConfig {
        model: model.parse().unwrap(),
        optimizer,
        batch_size: 32,
        seed: 3,
        ..Default::default()
    };
    Trainer::new(&cfg, ds.shape, ds.classes, ds.train, ds.test).unwrap()
}

fn epoch_loss(t: &mut Trainer) -> f32 {
    let steps = t.steps_per_epoch();
    (0..steps).map(|_| t.step().unwrap()).sum::<f32>() / steps as f32
}

#[test]
fn mlp_loss_falls_and_accuracy_rises() {
    let mut t = digits_trainer("mlp", OptimConfig::default());
    let before = t.evaluate().unwrap();
    let first = epoch_loss(&mut t);
    let mut last = first;
    for _ in 0..4 {
        last = epoch_loss(&mut t);
    }
    let after = t.evaluate().unwrap();
    assert!(last < first * 0.5, "loss {first} -> {last}");
    assert!(
        before.accuracy < 0.3,
        "untrained accuracy {}",
        before.accuracy
    );
    assert!(after.accuracy > 0.9, "trained accuracy {}", after.accuracy);
    assert!(after.loss < before.loss);
    assert_eq!(t.samples_seen(), 5 * 1437);
}

#[test]
fn cnn_and_adamw_train_too() {
    let adamw = OptimConfig {
        kind: OptimizerKind::AdamW,
        lr: 1e-3,
        momentum: 0.0,
        weight_decay: 0.01,
        ..OptimConfig::default()
    };
    for (model, optim) in [("cnn", OptimConfig::default()), ("logreg", adamw)] {
        let mut t = digits_trainer(model, optim);
        let first = epoch_loss(&mut t);
        let second = epoch_loss(&mut t);
        assert!(second < first, "{model}: loss {first} -> {second}");
    }
}

#[test]
fn imported_weights_take_effect_and_training_continues() {
    let mut a = digits_trainer("mlp", OptimConfig::default());
    let b = digits_trainer("mlp", OptimConfig::default());
    for _ in 0..3 {
        epoch_loss(&mut a);
    }
    let trained = a.export().unwrap();
    assert_ne!(trained, b.export().unwrap());
    b.import(&trained).unwrap();
    assert_eq!(b.export().unwrap(), trained);
    assert_eq!(b.evaluate().unwrap(), a.evaluate().unwrap());
    // Averaging two models and importing the mean keeps the optimizer usable.
    let mut mean = trained.clone();
    let fresh = digits_trainer("mlp", OptimConfig::default())
        .export()
        .unwrap();
    for (m, f) in mean.values_mut().iter_mut().zip(fresh.values()) {
        *m = 0.5 * *m + 0.5 * f;
    }
    a.import(&mean).unwrap();
    assert!(a.step().unwrap().is_finite());
}

#[test]
fn a_shard_trains_on_its_part_only() {
    let ds = data::load(DatasetName::Digits, None).unwrap();
    let parts = data::partition(&ds.train.labels, ds.classes, 4, &Partition::Iid, 1).unwrap();
    let shard = ds.train.subset(&parts[2]);
    assert!((359..=360).contains(&shard.len), "{}", shard.len);
    let t = Trainer::new(
        &TrainConfig::default(),
        ds.shape,
        ds.classes,
        shard,
        ds.test,
    )
    .unwrap();
    assert_eq!(t.train_len(), parts[2].len());
    assert_eq!(t.steps_per_epoch(), parts[2].len().div_ceil(50));
}

#[test]
fn a_bad_model_name_is_a_clear_error() {
    let err = "transformer".parse::<ModelKind>().unwrap_err().to_string();
    assert!(err.contains("logreg") && err.contains("cnn"), "{err}");
}

#[test]
fn train_command_prints_a_json_summary() {
    let (report, _) = common::run_json([
        "train",
        "--dataset",
        "digits",
        "--model",
        "mlp",
        "--epochs",
        "10",
        "--threads",
        "1",
        "--partition",
        "iid",
        "--shard",
        "1/3",
        "--json",
    ]);
    for key in [
        "dataset",
        "model",
        "epochs",
        "accuracy",
        "loss",
        "seconds",
        "samples_per_sec",
    ] {
        assert!(report.get(key).is_some(), "missing {key} in {report}");
    }
    assert_eq!(report["dataset"], "digits");
    assert_eq!(report["epochs"], 10);
    assert_eq!(report["shard"], "1/3");
    assert!(report["accuracy"].as_f64().unwrap() > 0.8, "{report}");
}
