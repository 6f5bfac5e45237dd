//! Datasets and partitions. Owns loading a dataset into memory (the built-in `digits`, or
//! Fashion-MNIST / MNIST from their IDX files) and splitting its training set among peers
//! (`iid`, Dirichlet label skew, FedAvg shards), deterministically from a seed so every peer
//! computes the same split. It does no training and no I/O besides reading dataset files:
//! the model and training code receive [`Split`]s and index lists and nothing else.
//!
//! Every file is untrusted: sizes in headers are checked against the data before anything is
//! allocated ([`idx`]), and every failure is a [`DataError`] naming the file, what was expected
//! and what was found.

pub mod digits;
pub mod idx;
pub mod partition;

pub use partition::{Partition, ShardSpec, partition};

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// Where the Debian package `dataset-fashion-mnist` installs the four IDX files.
pub const FASHION_MNIST_DIR: &str = "/usr/share/datasets/fashion-mnist";

/// The four IDX files of an MNIST-like dataset, without the optional `.gz`.
pub const IDX_FILES: [&str; 4] = [
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
];

/// Everything that can go wrong loading a dataset or splitting it.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("cannot read {path}: not found; {hint}")]
    NotFound { path: String, hint: String },
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: expected {expected}, found {found}")]
    Format {
        path: PathBuf,
        expected: String,
        found: String,
    },
    #[error("built-in {dataset} dataset: expected {expected}, found {found}")]
    BuiltIn {
        dataset: &'static str,
        expected: String,
        found: String,
    },
    #[error(
        "the {dataset} dataset has no default location; pass --data-dir DIR holding the four \
         IDX files ({files}, each plain or .gz)",
        files = IDX_FILES.join(", ")
    )]
    MissingDataDir { dataset: String },
    #[error("unknown dataset {name:?}; allowed: digits, fashion-mnist, mnist")]
    UnknownDataset { name: String },
    #[error(
        "invalid partition {spec:?}: {reason}; allowed: iid, dirichlet:<alpha> (alpha > 0, \
         e.g. dirichlet:0.5), shards:<k> (k >= 1 shards per peer, e.g. shards:2)"
    )]
    BadPartition { spec: String, reason: String },
    #[error("invalid shard {spec:?}: {reason}; expected i/n with 0 <= i < n, e.g. 0/4")]
    BadShard { spec: String, reason: String },
    #[error("cannot partition {samples} samples among {peers} peers with {scheme}: {reason}")]
    CannotPartition {
        samples: usize,
        peers: usize,
        scheme: String,
        reason: String,
    },
}

/// One split (train or test) of a dataset: `len` rows of `dim` features each.
#[derive(Clone, PartialEq)]
pub struct Split {
    /// Row-major, `len * dim` values, each in `[0, 1]`.
    pub features: Vec<f32>,
    /// One label per row, each `< classes` of the dataset.
    pub labels: Vec<u8>,
    pub len: usize,
    pub dim: usize,
}

impl Split {
    /// The rows at `indices`, in that order (an index may repeat).
    ///
    /// # Panics
    /// If an index is `>= self.len`: indices come from [`partition`] of this split, so one out
    /// of range is a bug in the caller, not bad input.
    pub fn subset(&self, indices: &[usize]) -> Split {
        let mut features = Vec::with_capacity(indices.len() * self.dim);
        let mut labels = Vec::with_capacity(indices.len());
        for &i in indices {
            features.extend_from_slice(self.row(i));
            labels.push(self.labels[i]);
        }
        Split {
            features,
            labels,
            len: indices.len(),
            dim: self.dim,
        }
    }

    /// The features of row `i`.
    ///
    /// # Panics
    /// If `i >= self.len`.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.features[i * self.dim..(i + 1) * self.dim]
    }
}

// Not derived: a derived Debug would print every feature of 60,000 images.
impl fmt::Debug for Split {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Split")
            .field("len", &self.len)
            .field("dim", &self.dim)
            .finish_non_exhaustive()
    }
}

/// A dataset in memory, ready to partition and train on.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    /// The name it was loaded by (`digits`, `fashion-mnist`, `mnist`).
    pub name: String,
    pub train: Split,
    pub test: Split,
    pub classes: usize,
    /// Channels, height, width; their product is the `dim` of both splits.
    pub shape: [usize; 3],
}

/// The datasets [`load`] knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DatasetName {
    /// UCI optical digits, 8x8, built into smartcore: no files needed.
    Digits,
    /// Zalando's Fashion-MNIST, 28x28, from IDX files (`dataset-fashion-mnist` on Debian).
    FashionMnist,
    /// LeCun's MNIST, 28x28, from IDX files in `--data-dir`.
    Mnist,
}

impl DatasetName {
    /// Every dataset, in the order the error messages list them.
    pub const ALL: [DatasetName; 3] = [
        DatasetName::Digits,
        DatasetName::FashionMnist,
        DatasetName::Mnist,
    ];

    /// The name on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            DatasetName::Digits => "digits",
            DatasetName::FashionMnist => "fashion-mnist",
            DatasetName::Mnist => "mnist",
        }
    }
}

impl fmt::Display for DatasetName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DatasetName {
    type Err = DataError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DatasetName::ALL
            .into_iter()
            .find(|name| name.as_str() == s)
            .ok_or_else(|| DataError::UnknownDataset {
                name: s.to_string(),
            })
    }
}

/// Loads a dataset. `data_dir` is where the IDX files are; it is ignored for `digits` (built
/// in), optional for `fashion-mnist` (default [`FASHION_MNIST_DIR`]) and required for `mnist`.
pub fn load(name: DatasetName, data_dir: Option<&Path>) -> Result<Dataset, DataError> {
    load_picked(name, data_dir, |labels, _| Ok((0..labels.len()).collect()))
}

/// Loads dataset `name` keeping only the training examples `pick` chooses from the
/// training labels and the number of classes (a peer's shard): an IDX dataset converts only
/// those images to features, so a peer never holds the whole training split as `f32` (60,000
/// Fashion-MNIST images are 188 MB; a shard of 8 is an eighth of that, and memory first touched
/// costs more CPU than decoding here).
pub fn load_picked(
    name: DatasetName,
    data_dir: Option<&Path>,
    pick: impl FnOnce(&[u8], usize) -> Result<Vec<usize>, DataError>,
) -> Result<Dataset, DataError> {
    let dir = match name {
        DatasetName::Digits => {
            let full = digits::load()?;
            let indices = pick(&full.train.labels, full.classes)?;
            return Ok(Dataset {
                train: full.train.subset(&indices),
                ..full
            });
        }
        DatasetName::FashionMnist => data_dir.unwrap_or(Path::new(FASHION_MNIST_DIR)),
        DatasetName::Mnist => data_dir.ok_or_else(|| DataError::MissingDataDir {
            dataset: name.to_string(),
        })?,
    };
    let hint = idx_hint(name);
    let (train, test) = read_idx_dataset(dir, &hint)?;
    let indices = pick(&train.labels, idx::MNIST_CLASSES)?;
    Ok(Dataset {
        name: name.to_string(),
        train: train.subset_split(&indices),
        test: test.into_split(),
        classes: idx::MNIST_CLASSES,
        shape: [1, idx::MNIST_SIDE, idx::MNIST_SIDE],
    })
}

/// How to get an IDX dataset's files.
fn idx_hint(name: DatasetName) -> String {
    match name {
        DatasetName::FashionMnist => format!(
            "install it with `apt-get install dataset-fashion-mnist` or pass --data-dir DIR \
             holding the four IDX files ({}, each plain or .gz)",
            IDX_FILES.join(", ")
        ),
        _ => format!(
            "pass --data-dir DIR holding the four IDX files ({}, each plain or .gz)",
            IDX_FILES.join(", ")
        ),
    }
}

/// The training and test images of the MNIST-like dataset in `dir`, as bytes.
fn read_idx_dataset(
    dir: &Path,
    hint: &str,
) -> Result<(idx::LabeledImages, idx::LabeledImages), DataError> {
    if !dir.is_dir() {
        return Err(DataError::NotFound {
            path: dir.display().to_string(),
            hint: hint.to_string(),
        });
    }
    let [train_images, train_labels, test_images, test_labels] = IDX_FILES;
    let locate = |base: &str| idx::locate(dir, base, hint);
    let train = idx::read_labeled_images(&locate(train_images)?, &locate(train_labels)?)?;
    let test = idx::read_labeled_images(&locate(test_images)?, &locate(test_labels)?)?;
    Ok((train, test))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(len: usize, dim: usize) -> Split {
        Split {
            features: (0..len * dim).map(|v| v as f32).collect(),
            labels: (0..len).map(|v| (v % 10) as u8).collect(),
            len,
            dim,
        }
    }

    #[test]
    fn subset_keeps_the_given_order_and_repeats() {
        let s = split(5, 3);
        let sub = s.subset(&[4, 0, 4]);
        assert_eq!(sub.len, 3);
        assert_eq!(sub.dim, 3);
        assert_eq!(
            sub.features,
            vec![12.0, 13.0, 14.0, 0.0, 1.0, 2.0, 12.0, 13.0, 14.0]
        );
        assert_eq!(sub.labels, vec![4, 0, 4]);
        assert_eq!(s.subset(&[]).len, 0);
    }

    #[test]
    fn split_debug_does_not_print_the_data() {
        let text = format!("{:?}", split(1000, 10));
        assert!(text.contains("len: 1000"), "{text}");
        assert!(text.len() < 100, "{text}");
    }

    #[test]
    fn dataset_names_parse_and_round_trip() {
        for name in DatasetName::ALL {
            assert_eq!(name.to_string().parse::<DatasetName>().unwrap(), name);
        }
        assert_eq!(
            "fashion-mnist".parse::<DatasetName>().unwrap(),
            DatasetName::FashionMnist
        );
        let err = "cifar10".parse::<DatasetName>().unwrap_err().to_string();
        assert!(err.contains("cifar10"), "{err}");
        assert!(err.contains("digits, fashion-mnist, mnist"), "{err}");
    }

    #[test]
    fn mnist_without_data_dir_says_to_pass_it() {
        let err = load(DatasetName::Mnist, None).unwrap_err();
        assert!(matches!(err, DataError::MissingDataDir { .. }), "{err:?}");
        assert!(err.to_string().contains("--data-dir"), "{err}");
    }
}
