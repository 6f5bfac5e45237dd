//! The IDX file format of MNIST and Fashion-MNIST, plain or gzipped: a magic number
//! `00 00 08 n` (unsigned bytes, `n` dimensions), `n` big-endian `u32` dimension sizes, then
//! the bytes, row-major. Files are untrusted: the size the header implies is computed with
//! checked arithmetic, capped at [`MAX_IDX_BYTES`], and checked against the file length before
//! anything is allocated; a gzipped payload is read through `take(size + 1)`, so neither a lying
//! header nor a gzip bomb can make us hold more than the header claims.

use super::{DataError, Split};
use flate2::read::GzDecoder;
use std::fs::File;
use std::io::{BufReader, ErrorKind, Read};
use std::path::{Path, PathBuf};

/// The largest payload an IDX header may claim: 1 GiB (MNIST's training images are 47 MB).
pub const MAX_IDX_BYTES: u64 = 1 << 30;
/// The most a DEFLATE stream expands (258 bytes from 2 bits, about 1032:1): a gzip file of
/// `n` bytes holds at most `n` times this.
pub const MAX_DEFLATE_RATIO: u64 = 1032;
/// The most dimensions an IDX header may have (images have 3, labels 1).
pub const MAX_DIMS: usize = 4;
/// The element type byte of unsigned bytes, the only type MNIST-like files use.
pub const TYPE_U8: u8 = 0x08;
/// Height and width of MNIST and Fashion-MNIST images.
pub const MNIST_SIDE: usize = 28;
/// Number of classes of MNIST and Fashion-MNIST.
pub const MNIST_CLASSES: usize = 10;

/// An IDX array of unsigned bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct IdxArray {
    /// Dimension sizes, outermost first; their product is `data.len()`.
    pub dims: Vec<usize>,
    pub data: Vec<u8>,
}

impl std::fmt::Debug for IdxArray {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdxArray")
            .field("dims", &self.dims)
            .finish_non_exhaustive()
    }
}

/// An images file and its labels file, checked to agree.
#[derive(Clone, PartialEq, Eq)]
pub struct LabeledImages {
    pub count: usize,
    pub rows: usize,
    pub cols: usize,
    /// `count * rows * cols` pixels, 0..=255.
    pub pixels: Vec<u8>,
    /// `count` labels, each `< MNIST_CLASSES`.
    pub labels: Vec<u8>,
}

impl std::fmt::Debug for LabeledImages {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LabeledImages")
            .field("count", &self.count)
            .field("rows", &self.rows)
            .field("cols", &self.cols)
            .finish_non_exhaustive()
    }
}

impl LabeledImages {
    /// Checks that `images` holds 28x28 images, `labels` one label `< 10` per image.
    pub fn new(
        images: IdxArray,
        images_path: &Path,
        labels: IdxArray,
        labels_path: &Path,
    ) -> Result<LabeledImages, DataError> {
        let &[count, rows, cols] = images.dims.as_slice() else {
            return Err(format_error(
                images_path,
                "3 dimensions (images, rows, columns) in an images file",
                format!(
                    "{} dimensions ({})",
                    images.dims.len(),
                    show_dims(&images.dims)
                ),
            ));
        };
        if (rows, cols) != (MNIST_SIDE, MNIST_SIDE) {
            return Err(format_error(
                images_path,
                format!("{MNIST_SIDE}x{MNIST_SIDE} images"),
                format!("{rows}x{cols}"),
            ));
        }
        if count == 0 {
            return Err(format_error(images_path, "at least one image", "none"));
        }
        let &[label_count] = labels.dims.as_slice() else {
            return Err(format_error(
                labels_path,
                "1 dimension in a labels file",
                format!(
                    "{} dimensions ({})",
                    labels.dims.len(),
                    show_dims(&labels.dims)
                ),
            ));
        };
        if label_count != count {
            return Err(format_error(
                labels_path,
                format!("{count} labels, one per image in {}", images_path.display()),
                format!("{label_count} labels"),
            ));
        }
        if let Some((i, &label)) = labels
            .data
            .iter()
            .enumerate()
            .find(|&(_, &label)| usize::from(label) >= MNIST_CLASSES)
        {
            return Err(format_error(
                labels_path,
                format!("labels 0..={}", MNIST_CLASSES - 1),
                format!("label {label} at index {i}"),
            ));
        }
        Ok(LabeledImages {
            count,
            rows,
            cols,
            pixels: images.data,
            labels: labels.data,
        })
    }

    /// The images at `indices` (each below `count`; others are skipped), in that order, as a
    /// [`Split`], pixels scaled from 0..=255 to [0, 1].
    pub fn subset_split(&self, indices: &[usize]) -> Split {
        let dim = self.rows * self.cols;
        let kept: Vec<usize> = indices
            .iter()
            .copied()
            .filter(|&i| i < self.count)
            .collect();
        let mut features = Vec::with_capacity(kept.len() * dim);
        let mut labels = Vec::with_capacity(kept.len());
        for &i in &kept {
            let row = &self.pixels[i * dim..(i + 1) * dim];
            features.extend(row.iter().map(|&p| f32::from(p) / 255.0));
            labels.push(self.labels[i]);
        }
        Split {
            features,
            labels,
            len: kept.len(),
            dim,
        }
    }

    /// The images as a [`Split`], pixels scaled from 0..=255 to [0, 1].
    pub fn into_split(self) -> Split {
        let features = self.pixels.iter().map(|&p| f32::from(p) / 255.0).collect();
        Split {
            features,
            labels: self.labels,
            len: self.count,
            dim: self.rows * self.cols,
        }
    }
}

/// The file `base` in `dir`, plain if it exists, else `base.gz`; `hint` says how to get it.
pub fn locate(dir: &Path, base: &str, hint: &str) -> Result<PathBuf, DataError> {
    let plain = dir.join(base);
    if plain.is_file() {
        return Ok(plain);
    }
    let gz = dir.join(format!("{base}.gz"));
    if gz.is_file() {
        return Ok(gz);
    }
    Err(DataError::NotFound {
        path: format!("{}(.gz)", plain.display()),
        hint: hint.to_string(),
    })
}

/// Reads an images file and its labels file (each plain or `.gz`) and checks they agree.
pub fn read_labeled_images(
    images_path: &Path,
    labels_path: &Path,
) -> Result<LabeledImages, DataError> {
    let labels = read_idx(labels_path)?;
    let images = read_idx(images_path)?;
    LabeledImages::new(images, images_path, labels, labels_path)
}

/// Reads one IDX file, gunzipping it if its name ends in `.gz`.
pub fn read_idx(path: &Path) -> Result<IdxArray, DataError> {
    tracing::debug!(path = %path.display(), "reading IDX file");
    let io_error = |source| DataError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = File::open(path).map_err(io_error)?;
    if path.extension().is_some_and(|ext| ext == "gz") {
        // DEFLATE expands at most 1032:1, so the payload a gzip file can hold is bounded by
        // its length: that much may be reserved up front (growing the buffer instead costs
        // more than the inflating, in page faults, for a 47 MB file).
        let compressed = file.metadata().map_err(io_error)?.len();
        let most = compressed.saturating_mul(MAX_DEFLATE_RATIO);
        read_idx_reserving(GzDecoder::new(BufReader::new(file)), path, None, most)
    } else {
        let len = file.metadata().map_err(io_error)?.len();
        read_idx_from(BufReader::new(file), path, Some(len))
    }
}

/// Parses an IDX array from `reader`; `path` is only for error messages. `known_len` is the
/// total length of the stream when known (a plain file): the header is then checked against it
/// before the data is allocated. Without it (a gzip stream) at most the claimed size + 1 bytes
/// are read, and the data must be exactly the claimed size.
pub fn read_idx_from<R: Read>(
    reader: R,
    path: &Path,
    known_len: Option<u64>,
) -> Result<IdxArray, DataError> {
    read_idx_reserving(reader, path, known_len, 0)
}

/// [`read_idx_from`], reserving up front the payload the header claims if it is at most
/// `reserve_up_to` bytes (a bound the caller knows the stream cannot exceed, such as a gzip
/// file's length times [`MAX_DEFLATE_RATIO`]); more is never read in any case.
pub fn read_idx_reserving<R: Read>(
    mut reader: R,
    path: &Path,
    known_len: Option<u64>,
    reserve_up_to: u64,
) -> Result<IdxArray, DataError> {
    let mut magic = [0u8; 4];
    read_header(&mut reader, &mut magic, path, "a 4-byte IDX magic number")?;
    let [zero0, zero1, kind, ndims] = magic;
    if (zero0, zero1) != (0, 0) {
        return Err(format_error(
            path,
            "an IDX magic number 00 00 08 <dims>",
            format!(
                "{zero0:02x} {zero1:02x} {kind:02x} {ndims:02x} (not an IDX file, or still \
                 compressed without a .gz name?)"
            ),
        ));
    }
    if kind != TYPE_U8 {
        return Err(format_error(
            path,
            format!("element type 0x{TYPE_U8:02x} (unsigned byte)"),
            format!("0x{kind:02x}"),
        ));
    }
    let ndims = usize::from(ndims);
    if !(1..=MAX_DIMS).contains(&ndims) {
        return Err(format_error(
            path,
            format!("1 to {MAX_DIMS} dimensions"),
            format!("{ndims}"),
        ));
    }
    let mut sizes = [0u8; 4 * MAX_DIMS];
    let sizes = &mut sizes[..4 * ndims];
    read_header(
        &mut reader,
        sizes,
        path,
        &format!(
            "{ndims} dimension sizes ({} bytes) after the magic number",
            sizes.len()
        ),
    )?;
    let dims: Vec<u64> = sizes
        .chunks_exact(4)
        .map(|size| u64::from(u32::from_be_bytes([size[0], size[1], size[2], size[3]])))
        .collect();
    let payload = dims
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d))
        .filter(|&bytes| bytes <= MAX_IDX_BYTES)
        .ok_or_else(|| {
            format_error(
                path,
                format!("at most {MAX_IDX_BYTES} data bytes"),
                format!(
                    "a header claiming {} = {} bytes",
                    show_dims(&dims),
                    dims.iter().map(|&d| u128::from(d)).product::<u128>()
                ),
            )
        })?;
    let expected = || format!("{payload} data bytes ({})", show_dims(&dims));
    let header_len = 4 + 4 * ndims as u64;
    if let Some(total) = known_len {
        let available = total.saturating_sub(header_len);
        if available != payload {
            return Err(format_error(path, expected(), format!("{available} bytes")));
        }
    }
    let dims = dims
        .iter()
        .map(|&d| usize::try_from(d))
        .collect::<Result<Vec<usize>, _>>();
    let (Ok(dims), Ok(payload_usize)) = (dims, usize::try_from(payload)) else {
        return Err(format_error(
            path,
            expected(),
            "more than this machine can address",
        ));
    };
    // The capacity is only reserved up front when the file length vouched for it.
    let reserve = if known_len.is_some() || payload <= reserve_up_to {
        payload_usize
    } else {
        0
    };
    let mut data = Vec::with_capacity(reserve);
    reader
        .take(payload + 1)
        .read_to_end(&mut data)
        .map_err(|source| DataError::Io {
            path: path.to_path_buf(),
            source,
        })?;
    if data.len() != payload_usize {
        let found = if data.len() > payload_usize {
            format!("more than {payload} bytes")
        } else {
            format!("{} bytes (truncated)", data.len())
        };
        return Err(format_error(path, expected(), found));
    }
    Ok(IdxArray { dims, data })
}

/// Fills `buf` from the header; the end of the stream here means a truncated header.
fn read_header<R: Read>(
    reader: &mut R,
    buf: &mut [u8],
    path: &Path,
    expected: &str,
) -> Result<(), DataError> {
    reader.read_exact(buf).map_err(|source| {
        if source.kind() == ErrorKind::UnexpectedEof {
            format_error(path, expected, "the end of the file")
        } else {
            DataError::Io {
                path: path.to_path_buf(),
                source,
            }
        }
    })
}

fn format_error(path: &Path, expected: impl Into<String>, found: impl Into<String>) -> DataError {
    DataError::Format {
        path: path.to_path_buf(),
        expected: expected.into(),
        found: found.into(),
    }
}

fn show_dims<T: std::fmt::Display>(dims: &[T]) -> String {
    let parts: Vec<String> = dims.iter().map(T::to_string).collect();
    parts.join(" x ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::Compression;
    use flate2::write::GzEncoder;
    use std::io::Write;
    use std::time::{Duration, Instant};

    /// An IDX file of unsigned bytes with the given dims and data.
    fn idx_bytes(dims: &[u32], data: &[u8]) -> Vec<u8> {
        let mut bytes = vec![0, 0, TYPE_U8, dims.len() as u8];
        for d in dims {
            bytes.extend_from_slice(&d.to_be_bytes());
        }
        bytes.extend_from_slice(data);
        bytes
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
        encoder.write_all(bytes).unwrap();
        encoder.finish().unwrap()
    }

    fn parse_plain(bytes: &[u8]) -> Result<IdxArray, DataError> {
        read_idx_from(bytes, Path::new("/data/x-idx"), Some(bytes.len() as u64))
    }

    fn parse_gz(gz: &[u8]) -> Result<IdxArray, DataError> {
        read_idx_from(GzDecoder::new(gz), Path::new("/data/x-idx.gz"), None)
    }

    fn format_parts(err: DataError) -> (PathBuf, String, String) {
        match err {
            DataError::Format {
                path,
                expected,
                found,
            } => (path, expected, found),
            other => panic!("expected a Format error, got {other:?}"),
        }
    }

    fn images(count: u32) -> IdxArray {
        let bytes = idx_bytes(&[count, 28, 28], &vec![7; count as usize * 784]);
        parse_plain(&bytes).unwrap()
    }

    fn labels(values: &[u8]) -> IdxArray {
        parse_plain(&idx_bytes(&[values.len() as u32], values)).unwrap()
    }

    #[test]
    fn parses_a_good_file() {
        let data: Vec<u8> = (0..24).collect();
        let array = parse_plain(&idx_bytes(&[2, 3, 4], &data)).unwrap();
        assert_eq!(array.dims, vec![2, 3, 4]);
        assert_eq!(array.data, data);
    }

    #[test]
    fn parses_a_gzipped_good_file() {
        let data: Vec<u8> = (0..=255).collect();
        let array = parse_gz(&gzip(&idx_bytes(&[256], &data))).unwrap();
        assert_eq!(array.dims, vec![256]);
        assert_eq!(array.data, data);
    }

    #[test]
    fn truncated_data_is_an_error_naming_both_sizes() {
        let bytes = idx_bytes(&[10, 10], &[1; 99]);
        let (path, expected, found) = format_parts(parse_plain(&bytes).unwrap_err());
        assert_eq!(path, Path::new("/data/x-idx"));
        assert!(expected.contains("100 data bytes"), "{expected}");
        assert!(found.contains("99 bytes"), "{found}");
        // Same through gzip, where the length is not known up front.
        let (_, expected, found) = format_parts(parse_gz(&gzip(&bytes)).unwrap_err());
        assert!(expected.contains("100 data bytes"), "{expected}");
        assert!(found.contains("99 bytes"), "{found}");
    }

    #[test]
    fn trailing_data_is_an_error() {
        let bytes = idx_bytes(&[10], &[1; 11]);
        assert!(parse_plain(&bytes).is_err());
        let (_, _, found) = format_parts(parse_gz(&gzip(&bytes)).unwrap_err());
        assert!(found.contains("more than 10 bytes"), "{found}");
    }

    #[test]
    fn truncated_header_is_an_error() {
        for len in [0, 3, 4, 7, 11] {
            let bytes = &idx_bytes(&[2, 3], &[0; 6])[..len];
            let (_, expected, found) = format_parts(parse_plain(bytes).unwrap_err());
            assert!(found.contains("end of the file"), "{len}: {found}");
            assert!(!expected.is_empty());
        }
    }

    #[test]
    fn huge_header_claims_fail_fast_without_allocating() {
        let start = Instant::now();
        // 2^40 bytes claimed by a 100-byte file: over the cap.
        let bytes = idx_bytes(&[1 << 20, 1 << 20], &[0; 92]);
        let (_, expected, found) = format_parts(parse_plain(&bytes).unwrap_err());
        assert!(expected.contains("at most 1073741824"), "{expected}");
        assert!(found.contains("1048576 x 1048576"), "{found}");
        assert!(parse_gz(&gzip(&bytes)).is_err());
        // A product that overflows u64.
        let bytes = idx_bytes(&[u32::MAX; 4], &[0; 10]);
        assert!(parse_plain(&bytes).is_err());
        assert!(parse_gz(&gzip(&bytes)).is_err());
        // Under the cap (10^9 bytes) but a lie: plain files are checked against their length
        // before allocating, gzip streams read only what is there.
        let bytes = idx_bytes(&[1000, 1000, 1000], &[0; 84]);
        let (_, expected, found) = format_parts(parse_plain(&bytes).unwrap_err());
        assert!(expected.contains("1000000000 data bytes"), "{expected}");
        assert_eq!(found, "84 bytes");
        let (_, _, found) = format_parts(parse_gz(&gzip(&bytes)).unwrap_err());
        assert!(found.contains("84 bytes"), "{found}");
        assert!(start.elapsed() < Duration::from_secs(2));
    }

    #[test]
    fn gzip_bomb_is_read_no_further_than_the_header_claims() {
        /// Counts the compressed bytes the decoder pulls.
        struct Counted<'a>(&'a [u8], usize);
        impl Read for Counted<'_> {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                let n = self.0.read(buf)?;
                self.1 += n;
                Ok(n)
            }
        }
        // 100 bytes claimed, 16 MiB of zeros behind them (about 16 KiB compressed).
        let bomb = gzip(&idx_bytes(&[100], &vec![0; 16 << 20]));
        let mut source = std::io::BufReader::with_capacity(256, Counted(&bomb, 0));
        let decoder = flate2::bufread::GzDecoder::new(&mut source);
        let (_, _, found) =
            format_parts(read_idx_from(decoder, Path::new("/bomb.gz"), None).unwrap_err());
        assert_eq!(found, "more than 100 bytes");
        let pulled = source.get_ref().1;
        assert!(
            bomb.len() > 10_000 && pulled < 2_000,
            "{pulled} of {}",
            bomb.len()
        );
    }

    #[test]
    fn a_claim_within_the_bound_is_reserved_and_one_beyond_it_is_not() {
        let bytes = gzip(&idx_bytes(&[1000], &[3; 1000]));
        let read = |bound| {
            read_idx_reserving(
                GzDecoder::new(bytes.as_slice()),
                Path::new("/x.gz"),
                None,
                bound,
            )
        };
        let within = read(1000).unwrap();
        assert_eq!(within.data.len(), 1000);
        assert!(within.data.capacity() == 1000, "{}", within.data.capacity());
        // Beyond the bound nothing is reserved up front (the buffer grows as it is read).
        assert_eq!(read(999).unwrap().data.len(), 1000);
        // A lying header within the bound is still read no further than it claims.
        let lying = gzip(&idx_bytes(&[10], &[3; 1000]));
        let err = read_idx_reserving(
            GzDecoder::new(lying.as_slice()),
            Path::new("/x.gz"),
            None,
            1 << 20,
        )
        .unwrap_err();
        assert_eq!(format_parts(err).2, "more than 10 bytes");
    }

    #[test]
    fn a_subset_converts_only_the_rows_picked_in_their_order() {
        let images = LabeledImages {
            count: 3,
            rows: 1,
            cols: 2,
            pixels: vec![0, 255, 51, 102, 153, 204],
            labels: vec![7, 8, 9],
        };
        let split = images.subset_split(&[2, 0, 3]);
        assert_eq!(split.len, 2, "index 3 is past the images and skipped");
        assert_eq!(split.labels, vec![9, 7]);
        assert_eq!(split.features, vec![0.6, 0.8, 0.0, 1.0]);
        assert_eq!(split.dim, 2);
    }

    #[test]
    fn wrong_magic_is_an_error() {
        let mut bytes = idx_bytes(&[4], &[0; 4]);
        bytes[0] = 0x1f;
        let (_, expected, found) = format_parts(parse_plain(&bytes).unwrap_err());
        assert!(expected.contains("magic"), "{expected}");
        assert!(found.starts_with("1f 00 08 01"), "{found}");
        // An element type other than unsigned bytes (0x0D = float).
        let mut bytes = idx_bytes(&[4], &[0; 4]);
        bytes[2] = 0x0d;
        let (_, expected, found) = format_parts(parse_plain(&bytes).unwrap_err());
        assert!(expected.contains("0x08"), "{expected}");
        assert_eq!(found, "0x0d");
        // Zero and too many dimensions.
        assert!(parse_plain(&[0, 0, 8, 0]).is_err());
        assert!(parse_plain(&idx_bytes(&[1; 5], &[0])).is_err());
    }

    #[test]
    fn corrupt_gzip_is_an_io_error_naming_the_file() {
        let mut gz = gzip(&idx_bytes(&[1000], &[3; 1000]));
        gz.truncate(gz.len() / 2);
        let err = parse_gz(&gz).unwrap_err();
        assert!(err.to_string().contains("/data/x-idx.gz"), "{err}");
    }

    #[test]
    fn images_and_labels_must_agree() {
        let ok = LabeledImages::new(
            images(3),
            Path::new("/d/img"),
            labels(&[0, 9, 5]),
            Path::new("/d/lbl"),
        )
        .unwrap();
        assert_eq!((ok.count, ok.rows, ok.cols), (3, 28, 28));
        let split = ok.into_split();
        assert_eq!((split.len, split.dim), (3, 784));
        assert!((split.features[0] - 7.0 / 255.0).abs() < 1e-7);

        let err = LabeledImages::new(
            images(3),
            Path::new("/d/img"),
            labels(&[0, 9]),
            Path::new("/d/lbl"),
        )
        .unwrap_err();
        let (path, expected, found) = format_parts(err);
        assert_eq!(path, Path::new("/d/lbl"));
        assert!(expected.contains("3 labels") && expected.contains("/d/img"));
        assert_eq!(found, "2 labels");

        let (path, _, found) = format_parts(
            LabeledImages::new(
                images(2),
                Path::new("/d/img"),
                labels(&[1, 10]),
                Path::new("/d/lbl"),
            )
            .unwrap_err(),
        );
        assert_eq!(path, Path::new("/d/lbl"));
        assert_eq!(found, "label 10 at index 1");

        // Wrong image size, and labels where images belong.
        let small = parse_plain(&idx_bytes(&[1, 8, 8], &[0; 64])).unwrap();
        let (_, _, found) = format_parts(
            LabeledImages::new(small, Path::new("/i"), labels(&[1]), Path::new("/l")).unwrap_err(),
        );
        assert_eq!(found, "8x8");
        let err = LabeledImages::new(labels(&[1]), Path::new("/i"), labels(&[1]), Path::new("/l"))
            .unwrap_err();
        assert_eq!(format_parts(err).0, Path::new("/i"));
    }

    #[test]
    fn locate_prefers_plain_then_gz_and_names_both_when_missing() {
        let dir = tempfile::tempdir().unwrap();
        let err = locate(dir.path(), "a-idx1-ubyte", "get it somewhere").unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("a-idx1-ubyte(.gz): not found; get it somewhere"),
            "{text}"
        );
        std::fs::write(dir.path().join("a-idx1-ubyte.gz"), b"").unwrap();
        assert_eq!(
            locate(dir.path(), "a-idx1-ubyte", "").unwrap(),
            dir.path().join("a-idx1-ubyte.gz")
        );
        std::fs::write(dir.path().join("a-idx1-ubyte"), b"").unwrap();
        assert_eq!(
            locate(dir.path(), "a-idx1-ubyte", "").unwrap(),
            dir.path().join("a-idx1-ubyte")
        );
    }

    #[test]
    fn read_idx_reads_plain_and_gzipped_files() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = idx_bytes(&[2, 2], &[1, 2, 3, 4]);
        let plain = dir.path().join("x-idx2-ubyte");
        let gz = dir.path().join("y-idx2-ubyte.gz");
        std::fs::write(&plain, &bytes).unwrap();
        std::fs::write(&gz, gzip(&bytes)).unwrap();
        assert_eq!(read_idx(&plain).unwrap().data, vec![1, 2, 3, 4]);
        assert_eq!(read_idx(&gz).unwrap().dims, vec![2, 2]);
        // A gzipped file without the .gz name is caught by the magic check.
        std::fs::write(&plain, gzip(&bytes)).unwrap();
        let text = read_idx(&plain).unwrap_err().to_string();
        assert!(
            text.contains("x-idx2-ubyte") && text.contains("magic"),
            "{text}"
        );
    }
}
