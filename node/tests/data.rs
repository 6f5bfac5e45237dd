//! The `data` module on real files: the built-in digits, Fashion-MNIST as the Debian package
//! `dataset-fashion-mnist` installs it, corrupt and missing copies, and MNIST-like files
//! written here. A counting allocator checks that a lying IDX header makes us allocate no more
//! than the data actually present.
#![allow(clippy::unwrap_used, clippy::expect_used, unsafe_code)]

use flate2::Compression;
use flate2::write::GzEncoder;
use murmur_node::data::{
    self, DataError, DatasetName, FASHION_MNIST_DIR, IDX_FILES, Partition, Split, idx,
};
use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

struct Counting;
/// The largest single allocation of this test binary so far.
static LARGEST: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator and only records the largest request.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LARGEST.fetch_max(new_size, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn check_split(split: &Split, len: usize, dim: usize) {
    assert_eq!((split.len, split.dim), (len, dim));
    assert_eq!(split.features.len(), len * dim);
    assert_eq!(split.labels.len(), len);
    assert!(split.labels.iter().all(|&l| l < 10));
    assert!(split.features.iter().all(|v| (0.0..=1.0).contains(v)));
    // Really scaled, not all zero: some pixels are at full intensity.
    assert!(split.features.contains(&1.0));
}

fn class_counts(labels: &[u8]) -> [usize; 10] {
    let mut counts = [0; 10];
    for &l in labels {
        counts[usize::from(l)] += 1;
    }
    counts
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::fast());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

fn idx_bytes(dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut bytes = vec![0, 0, 0x08, dims.len() as u8];
    for d in dims {
        bytes.extend_from_slice(&d.to_be_bytes());
    }
    bytes.extend_from_slice(data);
    bytes
}

/// The installed Fashion-MNIST file `base`, decompressed.
fn fashion_file(base: &str) -> Vec<u8> {
    let path = Path::new(FASHION_MNIST_DIR).join(format!("{base}.gz"));
    let gz = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gz[..]), &mut bytes).unwrap();
    bytes
}

/// A temporary copy of the installed Fashion-MNIST (the four .gz files).
fn fashion_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for base in IDX_FILES {
        let name = format!("{base}.gz");
        std::fs::copy(
            Path::new(FASHION_MNIST_DIR).join(&name),
            dir.path().join(&name),
        )
        .unwrap();
    }
    dir
}

fn load_err(name: DatasetName, dir: &Path) -> DataError {
    match data::load(name, Some(dir)) {
        Ok(_) => panic!("{name} from {} loaded", dir.display()),
        Err(err) => err,
    }
}

#[test]
fn digits_load_with_a_fixed_80_20_split() {
    let digits = data::load(DatasetName::Digits, None).unwrap();
    assert_eq!(digits.name, "digits");
    assert_eq!((digits.classes, digits.shape), (10, [1, 8, 8]));
    check_split(&digits.train, 1437, 64);
    check_split(&digits.test, 360, 64);
    // Every class on both sides (the UCI set has ~180 of each).
    assert!(class_counts(&digits.train.labels).iter().all(|&n| n > 100));
    assert!(class_counts(&digits.test.labels).iter().all(|&n| n > 15));
    // Same split every time; `data_dir` is ignored.
    let again = data::load(DatasetName::Digits, Some(Path::new("/nonexistent"))).unwrap();
    assert_eq!(again, digits);
    // And it partitions.
    let parts = data::partition(&digits.train.labels, 10, 5, &Partition::Iid, 1).unwrap();
    assert_eq!(parts.iter().map(Vec::len).sum::<usize>(), 1437);
}

#[test]
fn fashion_mnist_loads_from_the_debian_package() {
    let fashion = data::load(DatasetName::FashionMnist, None).unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(fashion.name, "fashion-mnist");
    assert_eq!((fashion.classes, fashion.shape), (10, [1, 28, 28]));
    check_split(&fashion.train, 60_000, 784);
    check_split(&fashion.test, 10_000, 784);
    // Fashion-MNIST is balanced.
    assert_eq!(class_counts(&fashion.train.labels), [6000; 10]);
    assert_eq!(class_counts(&fashion.test.labels), [1000; 10]);
    // The first training label of Fashion-MNIST is 9 (ankle boot), then 0 (T-shirt).
    assert_eq!(&fashion.train.labels[..2], &[9, 0]);
    let scheme: Partition = "dirichlet:0.5".parse().unwrap();
    let parts = data::partition(&fashion.train.labels, 10, 10, &scheme, 3).unwrap();
    assert_eq!(parts.iter().map(Vec::len).sum::<usize>(), 60_000);
}

#[test]
fn truncated_gzip_copy_names_the_file() {
    let dir = fashion_copy();
    let path = dir.path().join("t10k-labels-idx1-ubyte.gz");
    let gz = std::fs::read(&path).unwrap();
    std::fs::write(&path, &gz[..gz.len() / 2]).unwrap();
    let message = load_err(DatasetName::FashionMnist, dir.path()).to_string();
    assert!(message.contains(&path.display().to_string()), "{message}");
}

#[test]
fn flipped_magic_names_the_file() {
    // A plain file is preferred to the .gz next to it.
    let dir = fashion_copy();
    let mut labels = fashion_file("train-labels-idx1-ubyte");
    labels[0] ^= 0xff;
    let path = dir.path().join("train-labels-idx1-ubyte");
    std::fs::write(&path, labels).unwrap();
    let err = load_err(DatasetName::FashionMnist, dir.path());
    let message = err.to_string();
    assert!(
        matches!(&err, DataError::Format { path: p, .. } if *p == path),
        "{err:?}"
    );
    assert!(
        message.contains("magic") && message.contains("ff 00 08 01"),
        "{message}"
    );
}

#[test]
fn truncated_plain_copy_says_how_much_is_missing() {
    let dir = fashion_copy();
    let mut images = fashion_file("t10k-images-idx3-ubyte");
    images.truncate(images.len() - 100);
    let path = dir.path().join("t10k-images-idx3-ubyte");
    std::fs::write(&path, images).unwrap();
    let message = load_err(DatasetName::FashionMnist, dir.path()).to_string();
    assert!(
        message.starts_with(&path.display().to_string()),
        "{message}"
    );
    assert!(
        message.contains("expected 7840000 data bytes (10000 x 28 x 28)"),
        "{message}"
    );
    assert!(message.contains("found 7839900 bytes"), "{message}");
}

#[test]
fn missing_fashion_mnist_gives_the_install_hint() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope");
    let message = load_err(DatasetName::FashionMnist, &missing).to_string();
    assert!(
        message.contains(&missing.display().to_string()),
        "{message}"
    );
    assert!(
        message.contains("apt-get install dataset-fashion-mnist"),
        "{message}"
    );
    assert!(message.contains("--data-dir DIR"), "{message}");
    // An existing directory without the files names the first one missing.
    let err = load_err(DatasetName::FashionMnist, dir.path());
    assert!(matches!(err, DataError::NotFound { .. }), "{err:?}");
    let message = err.to_string();
    let expected = format!(
        "cannot read {}(.gz): not found; install it with `apt-get install \
         dataset-fashion-mnist` or pass --data-dir DIR",
        dir.path().join("train-images-idx3-ubyte").display()
    );
    assert!(message.starts_with(&expected), "{message}");
}

/// Writes a small MNIST-like dataset: `train` and `test` images where image `i` has every pixel
/// `i % 256` and label `i % 10`; images gzipped, labels plain.
fn write_small_mnist(dir: &Path, train: u32, test: u32) -> Vec<PathBuf> {
    let mut paths = Vec::new();
    for (prefix, count) in [("train", train), ("t10k", test)] {
        let pixels: Vec<u8> = (0..count).flat_map(|i| [(i % 256) as u8; 784]).collect();
        let labels: Vec<u8> = (0..count).map(|i| (i % 10) as u8).collect();
        let images_path = dir.join(format!("{prefix}-images-idx3-ubyte.gz"));
        let labels_path = dir.join(format!("{prefix}-labels-idx1-ubyte"));
        std::fs::write(&images_path, gzip(&idx_bytes(&[count, 28, 28], &pixels))).unwrap();
        std::fs::write(&labels_path, idx_bytes(&[count], &labels)).unwrap();
        paths.extend([images_path, labels_path]);
    }
    paths
}

#[test]
fn mnist_loads_from_a_data_dir_of_mixed_plain_and_gz_files() {
    let dir = tempfile::tempdir().unwrap();
    write_small_mnist(dir.path(), 300, 260);
    let mnist = data::load(DatasetName::Mnist, Some(dir.path())).unwrap();
    assert_eq!(mnist.name, "mnist");
    assert_eq!(mnist.shape, [1, 28, 28]);
    check_split(&mnist.train, 300, 784);
    check_split(&mnist.test, 260, 784);
    assert_eq!(mnist.train.row(255)[0], 1.0);
    assert_eq!(mnist.train.row(51)[783], 51.0 / 255.0);
    assert_eq!(mnist.test.labels[..3], [0, 1, 2]);

    let message = data::load(DatasetName::Mnist, None)
        .unwrap_err()
        .to_string();
    assert!(message.contains("--data-dir"), "{message}");
    let message = load_err(DatasetName::Mnist, &dir.path().join("none")).to_string();
    assert!(
        message.contains("--data-dir") && !message.contains("apt-get"),
        "{message}"
    );
}

#[test]
fn images_and_labels_count_mismatch_names_the_labels_file() {
    let dir = tempfile::tempdir().unwrap();
    let paths = write_small_mnist(dir.path(), 30, 10);
    let labels: Vec<u8> = (0..29).map(|i| (i % 10) as u8).collect();
    std::fs::write(&paths[1], idx_bytes(&[29], &labels)).unwrap();
    let message = load_err(DatasetName::Mnist, dir.path()).to_string();
    assert!(
        message.starts_with(&paths[1].display().to_string()),
        "{message}"
    );
    assert!(
        message.contains("expected 30 labels") && message.contains("found 29"),
        "{message}"
    );
}

#[test]
fn lying_gzip_header_allocates_only_what_is_there() {
    // The header claims 10^9 bytes (under the 1 GiB cap); the stream holds 1 MB.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("liar-idx3-ubyte.gz");
    std::fs::write(&path, gzip(&idx_bytes(&[1000, 1000, 1000], &[0; 1 << 20]))).unwrap();
    let message = idx::read_idx(&path).unwrap_err().to_string();
    assert!(
        message.contains("found 1048576 bytes (truncated)"),
        "{message}"
    );
    // Other tests in this binary allocate at most ~190 MB at once (Fashion-MNIST features).
    let largest = LARGEST.load(Ordering::Relaxed);
    assert!(largest < 512 << 20, "an allocation of {largest} bytes");
}
