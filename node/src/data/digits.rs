//! The UCI optical digits dataset (1,797 8x8 images of handwritten digits, pixels 0..=16), as
//! built into smartcore: no files to read, so it is the dataset of tests and quick runs. The
//! train/test split is a shuffle seeded with a fixed constant, the same on every machine:
//! the first [`TRAIN_LEN`] shuffled samples train, the last [`TEST_LEN`] test.

use super::{DataError, Dataset, Split};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

/// Number of samples.
pub const SAMPLES: usize = 1797;
/// Samples in the training split (80%).
pub const TRAIN_LEN: usize = 1437;
/// Samples in the test split (the other 20%).
pub const TEST_LEN: usize = SAMPLES - TRAIN_LEN;
/// Height and width of an image.
pub const SIDE: usize = 8;
/// Number of classes (the digits 0 to 9).
pub const CLASSES: usize = 10;
/// The largest pixel value; pixels are divided by it.
pub const MAX_PIXEL: f32 = 16.0;
/// Seed of the train/test shuffle. Changing it changes every digits experiment: don't.
const SPLIT_SEED: u64 = 0x6d75_726d_7572_6469;

const NAME: &str = "digits";

/// Loads the digits from smartcore and splits them.
pub fn load() -> Result<Dataset, DataError> {
    let raw = smartcore::dataset::digits::load_dataset();
    from_raw(&raw.data, &raw.target, raw.num_samples, raw.num_features)
}

/// Checks smartcore's arrays (row-major pixels 0..=16, labels 0..=9 as `f32`) and splits them.
fn from_raw(
    data: &[f32],
    target: &[f32],
    num_samples: usize,
    num_features: usize,
) -> Result<Dataset, DataError> {
    let dim = SIDE * SIDE;
    if (num_samples, num_features, data.len(), target.len())
        != (SAMPLES, dim, SAMPLES * dim, SAMPLES)
    {
        return Err(built_in_error(
            format!("{SAMPLES} samples of {dim} features"),
            format!(
                "{num_samples} samples of {num_features} features, {} values, {} labels",
                data.len(),
                target.len()
            ),
        ));
    }
    if let Some((i, v)) = data
        .iter()
        .enumerate()
        .find(|&(_, v)| !(0.0..=MAX_PIXEL).contains(v))
    {
        return Err(built_in_error(
            format!("pixels in 0..={MAX_PIXEL}"),
            format!("{v} at value {i}"),
        ));
    }
    let labels = target
        .iter()
        .enumerate()
        .map(|(i, &t)| {
            let class = t as u8;
            if f32::from(class) == t && usize::from(class) < CLASSES {
                Ok(class)
            } else {
                Err(built_in_error(
                    format!("labels 0..={}", CLASSES - 1),
                    format!("{t} at sample {i}"),
                ))
            }
        })
        .collect::<Result<Vec<u8>, _>>()?;
    let all = Split {
        features: data.iter().map(|&v| v / MAX_PIXEL).collect(),
        labels,
        len: SAMPLES,
        dim,
    };
    let mut order: Vec<usize> = (0..SAMPLES).collect();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(SPLIT_SEED));
    let (train, test) = order.split_at(TRAIN_LEN);
    Ok(Dataset {
        name: NAME.to_string(),
        train: all.subset(train),
        test: all.subset(test),
        classes: CLASSES,
        shape: [1, SIDE, SIDE],
    })
}

fn built_in_error(expected: String, found: String) -> DataError {
    DataError::BuiltIn {
        dataset: NAME,
        expected,
        found,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Synthetic raw digits: sample `s` has every pixel `s % 17` and label `s % 10`.
    fn raw() -> (Vec<f32>, Vec<f32>) {
        let data = (0..SAMPLES * 64).map(|v| ((v / 64) % 17) as f32).collect();
        let target = (0..SAMPLES).map(|s| (s % 10) as f32).collect();
        (data, target)
    }

    #[test]
    fn split_is_a_fixed_disjoint_shuffle() {
        let (data, target) = raw();
        let a = from_raw(&data, &target, SAMPLES, 64).unwrap();
        let b = from_raw(&data, &target, SAMPLES, 64).unwrap();
        assert_eq!(a, b);
        assert_eq!((a.train.len, a.test.len), (TRAIN_LEN, TEST_LEN));
        assert_eq!(a.shape, [1, 8, 8]);
        // Recover each row's sample number from its first pixel and label: pixel = s % 17 and
        // label = s % 10 pin s down modulo 170, enough to see the rows were shuffled.
        let first_rows: Vec<(u8, f32)> = (0..20)
            .map(|i| (a.train.labels[i], a.train.row(i)[0] * MAX_PIXEL))
            .collect();
        let unshuffled: Vec<(u8, f32)> =
            (0..20).map(|s| ((s % 10) as u8, (s % 17) as f32)).collect();
        assert_ne!(first_rows, unshuffled);
        // Scaled to [0, 1], and each row's pixels still agree with each other.
        assert!(a.train.features.iter().all(|v| (0.0..=1.0).contains(v)));
        for i in 0..a.test.len {
            let row = a.test.row(i);
            assert!(row.iter().all(|&v| v == row[0]));
        }
        // Every class count adds up across the two splits.
        for class in 0..10u8 {
            let count = |s: &Split| s.labels.iter().filter(|&&l| l == class).count();
            let expected = (0..SAMPLES)
                .filter(|s| s % 10 == usize::from(class))
                .count();
            assert_eq!(count(&a.train) + count(&a.test), expected);
        }
    }

    #[test]
    fn bad_raw_data_is_an_error_not_a_panic() {
        let (data, target) = raw();
        assert!(from_raw(&data[1..], &target, SAMPLES, 64).is_err());
        assert!(from_raw(&data, &target, SAMPLES, 63).is_err());
        let mut bad = data.clone();
        bad[5] = 17.0;
        let err = from_raw(&bad, &target, SAMPLES, 64)
            .unwrap_err()
            .to_string();
        assert!(err.contains("17 at value 5"), "{err}");
        bad[5] = f32::NAN;
        assert!(from_raw(&bad, &target, SAMPLES, 64).is_err());
        let mut bad = target.clone();
        bad[3] = 2.5;
        let err = from_raw(&data, &bad, SAMPLES, 64).unwrap_err().to_string();
        assert!(err.contains("2.5 at sample 3"), "{err}");
        bad[3] = 10.0;
        assert!(from_raw(&data, &bad, SAMPLES, 64).is_err());
        bad[3] = -1.0;
        assert!(from_raw(&data, &bad, SAMPLES, 64).is_err());
    }
}
