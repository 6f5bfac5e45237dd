//! The node's latest model on disk: one checkpoint file, written atomically, read back
//! trusting nothing. This module owns the file format and nothing else: when to save, and
//! what to do with a loaded model, is the node's business. It uses blocking `std::fs`; callers
//! on the async runtime run it on a blocking thread.
//!
//! ## File format (version 1)
//! All integers little-endian; `m` is `manifest_len`, `s` is `stream_len`.
//!
//! | offset      | size | field                                                          |
//! |-------------|------|----------------------------------------------------------------|
//! | 0           | 8    | magic `b"MURMURCK"`                                            |
//! | 8           | 4    | format `u32`, = 1                                              |
//! | 12          | 8    | `version u64`: the model version the node had reached          |
//! | 20          | 8    | `samples u64`: training samples folded into the model          |
//! | 28          | 4    | `manifest_len u32`                                             |
//! | 32          | m    | the manifest's canonical encoding (`codec::encode_manifest`)   |
//! | 32 + m      | 8    | `stream_len u64`, = the manifest's `total_len`                 |
//! | 40 + m      | s    | the byte stream: the chunks' bytes concatenated in order       |
//! | 40 + m + s  | 32   | blake3 of every byte before it (offsets 0 to 40 + m + s)       |
//!
//! The file is exactly `72 + m + s` bytes. The trailing hash catches truncation and
//! corruption before any parsing; the manifest id and every chunk hash are checked again when
//! the model is reassembled.
//!
//! ## Atomicity
//! [`save`] writes `<path>.tmp` in the same directory, syncs it, renames it over `path` and
//! syncs the directory, so a crash at any point leaves either the old or the new checkpoint
//! at `path` (and perhaps a stale `.tmp`, which [`load`] ignores and the next [`save`]
//! overwrites).

use bytes::Bytes;
use murmur_protocol::codec::decode_manifest;
use murmur_protocol::limits::{MAX_MANIFEST_BYTES, MAX_MODEL_BYTES};
use murmur_protocol::{AssembleError, DecodeError, FlatParams, ManifestId, Snapshot, assemble};
use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// File name of the checkpoint inside the node's data directory.
pub const CHECKPOINT_FILE_NAME: &str = "checkpoint.bin";

/// The first 8 bytes of every checkpoint file.
pub const MAGIC: [u8; 8] = *b"MURMURCK";

/// The checkpoint format this build writes and the only one it reads.
pub const FORMAT: u32 = 1;

/// Bytes before the manifest: magic, format, version, samples, manifest_len.
const HEADER_LEN: u64 = 8 + 4 + 8 + 8 + 4;

/// Bytes of the `stream_len` field.
const STREAM_LEN_LEN: u64 = 8;

/// Bytes of the trailing blake3 hash.
const HASH_LEN: u64 = 32;

/// Size of a checkpoint with an empty manifest and stream: the smallest possible file.
const FIXED_LEN: u64 = HEADER_LEN + STREAM_LEN_LEN + HASH_LEN;

/// A model read back from disk.
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    /// The model version the node had reached.
    pub version: u64,
    /// Training samples folded into the model.
    pub samples: u64,
    /// The id of the model's manifest.
    pub manifest_id: ManifestId,
    /// The weights.
    pub params: FlatParams,
}

/// Saving or loading a checkpoint failed. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("checkpoint {}: {action}: {source}", path.display())]
    Io {
        path: PathBuf,
        action: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("checkpoint {}: bad magic (not a murmur checkpoint)", path.display())]
    BadMagic { path: PathBuf },
    #[error(
        "checkpoint {}: unsupported format {got} (this build reads format {supported})",
        path.display()
    )]
    UnsupportedFormat {
        path: PathBuf,
        got: u32,
        supported: u32,
    },
    #[error("checkpoint {}: {what} of {len} bytes exceeds the limit of {max}", path.display())]
    TooLarge {
        path: PathBuf,
        what: &'static str,
        len: u64,
        max: u64,
    },
    #[error("checkpoint {}: truncated: expected {expected} bytes, found {found}", path.display())]
    Truncated {
        path: PathBuf,
        expected: u64,
        found: u64,
    },
    #[error(
        "checkpoint {}: {found} bytes, more than the {expected} its header describes",
        path.display()
    )]
    TrailingBytes {
        path: PathBuf,
        expected: u64,
        found: u64,
    },
    #[error("checkpoint {}: hash mismatch (the file is corrupt)", path.display())]
    HashMismatch { path: PathBuf },
    #[error("checkpoint {}: manifest invalid: {source}", path.display())]
    ManifestInvalid {
        path: PathBuf,
        #[source]
        source: DecodeError,
    },
    #[error(
        "checkpoint {}: stream of {stream_len} bytes, but the manifest describes {total_len}",
        path.display()
    )]
    StreamLength {
        path: PathBuf,
        stream_len: u64,
        total_len: u64,
    },
    #[error("checkpoint {}: {source}", path.display())]
    Chunks {
        path: PathBuf,
        #[source]
        source: AssembleError,
    },
    #[error("checkpoint {}: cannot save an inconsistent snapshot: {reason}", path.display())]
    InvalidSnapshot { path: PathBuf, reason: String },
}

/// Where the checkpoint lives in a node's data directory.
pub fn checkpoint_path(data_dir: &Path) -> PathBuf {
    data_dir.join(CHECKPOINT_FILE_NAME)
}

/// Writes `snapshot` with its `version` and `samples` to `path`, atomically (see the module
/// doc). Blocking.
pub fn save(
    path: &Path,
    version: u64,
    samples: u64,
    snapshot: &Snapshot,
) -> Result<(), CheckpointError> {
    let (manifest_len, stream_len) = check_snapshot(path, snapshot)?;
    let tmp = tmp_path(path);
    let written =
        write_file(&tmp, version, samples, manifest_len, stream_len, snapshot).and_then(|()| {
            fs::rename(&tmp, path).map_err(io_error(path, "renaming the temporary file"))
        });
    if written.is_err() {
        // Best effort: the next save truncates it anyway, and load never reads it.
        let _ = fs::remove_file(&tmp);
    }
    written?;
    sync_dir(path)
}

/// Reads the checkpoint at `path`; `Ok(None)` if there is none. Checks every size against the
/// header and the protocol limits before allocating, the trailing hash before parsing, and
/// every chunk hash before decoding a value. Never panics, whatever the file holds.
pub fn load(path: &Path) -> Result<Option<Checkpoint>, CheckpointError> {
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_error(path, "opening")(e)),
    };
    let found = file
        .metadata()
        .map_err(io_error(path, "reading metadata"))?
        .len();
    let header = read_header(path, &mut file, found)?;
    let bytes = read_all(path, &mut file, header.total_len())?;
    verify_hash(path, &bytes)?;
    parse(path, &header, &bytes).map(Some)
}

/// Checks what [`save`] is about to write; returns `(manifest_len, stream_len)`.
fn check_snapshot(path: &Path, snapshot: &Snapshot) -> Result<(u32, u64), CheckpointError> {
    let invalid = |reason: String| CheckpointError::InvalidSnapshot {
        path: path.to_path_buf(),
        reason,
    };
    let manifest_len = u32::try_from(snapshot.manifest_bytes.len())
        .ok()
        .filter(|&len| len as usize <= MAX_MANIFEST_BYTES)
        .ok_or_else(|| {
            invalid(format!(
                "manifest of {} bytes",
                snapshot.manifest_bytes.len()
            ))
        })?;
    let stream_len: u64 = snapshot.chunks.iter().map(|c| c.data.len() as u64).sum();
    if stream_len != snapshot.manifest.total_len || stream_len > MAX_MODEL_BYTES {
        return Err(invalid(format!(
            "chunks hold {stream_len} bytes, the manifest describes {}",
            snapshot.manifest.total_len
        )));
    }
    Ok((manifest_len, stream_len))
}

/// `<path>.tmp`, in the same directory as `path`.
fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".tmp");
    PathBuf::from(name)
}

/// Writes and syncs the whole file at `tmp`.
fn write_file(
    tmp: &Path,
    version: u64,
    samples: u64,
    manifest_len: u32,
    stream_len: u64,
    snapshot: &Snapshot,
) -> Result<(), CheckpointError> {
    let io = io_error(tmp, "writing");
    let file = File::create(tmp).map_err(io_error(tmp, "creating"))?;
    let mut out = HashingWriter {
        inner: BufWriter::new(file),
        hasher: blake3::Hasher::new(),
    };
    out.write_all(&MAGIC).map_err(&io)?;
    out.write_all(&FORMAT.to_le_bytes()).map_err(&io)?;
    out.write_all(&version.to_le_bytes()).map_err(&io)?;
    out.write_all(&samples.to_le_bytes()).map_err(&io)?;
    out.write_all(&manifest_len.to_le_bytes()).map_err(&io)?;
    out.write_all(&snapshot.manifest_bytes).map_err(&io)?;
    out.write_all(&stream_len.to_le_bytes()).map_err(&io)?;
    for chunk in &snapshot.chunks {
        out.write_all(&chunk.data).map_err(&io)?;
    }
    let hash = out.hasher.finalize();
    let mut inner = out.inner;
    inner.write_all(hash.as_bytes()).map_err(&io)?;
    let file = inner.into_inner().map_err(|e| io(e.into_error()))?;
    file.sync_all().map_err(io_error(tmp, "syncing"))
}

/// Makes the rename durable: syncs the directory holding `path`.
#[cfg(unix)]
fn sync_dir(path: &Path) -> Result<(), CheckpointError> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_error(dir, "syncing the directory"))
}

/// Directories cannot be opened and synced this way off unix; the rename is still atomic.
#[cfg(not(unix))]
fn sync_dir(_path: &Path) -> Result<(), CheckpointError> {
    Ok(())
}

/// A writer that hashes everything it writes.
struct HashingWriter<W> {
    inner: W,
    hasher: blake3::Hasher,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The fixed fields, checked against the file's size.
#[derive(Debug)]
struct Header {
    version: u64,
    samples: u64,
    manifest_len: u64,
    stream_len: u64,
}

impl Header {
    /// The size of the file this header describes.
    fn total_len(&self) -> u64 {
        FIXED_LEN + self.manifest_len + self.stream_len
    }
}

/// Reads and checks the header and `stream_len`, reading at most 40 bytes, so that a lying
/// header is caught before anything is allocated for it.
fn read_header(path: &Path, file: &mut File, found: u64) -> Result<Header, CheckpointError> {
    let truncated = |expected: u64| CheckpointError::Truncated {
        path: path.to_path_buf(),
        expected,
        found,
    };
    if found < FIXED_LEN {
        return Err(truncated(FIXED_LEN));
    }
    let mut head = [0u8; HEADER_LEN as usize];
    file.read_exact(&mut head)
        .map_err(io_error(path, "reading the header"))?;
    if head[..8] != MAGIC {
        return Err(CheckpointError::BadMagic {
            path: path.to_path_buf(),
        });
    }
    let format = u32::from_le_bytes(field(&head, 8));
    if format != FORMAT {
        return Err(CheckpointError::UnsupportedFormat {
            path: path.to_path_buf(),
            got: format,
            supported: FORMAT,
        });
    }
    let version = u64::from_le_bytes(field(&head, 12));
    let samples = u64::from_le_bytes(field(&head, 20));
    let manifest_len = u64::from(u32::from_le_bytes(field(&head, 28)));
    check_limit(path, "manifest", manifest_len, MAX_MANIFEST_BYTES as u64)?;
    if found < FIXED_LEN + manifest_len {
        return Err(truncated(FIXED_LEN + manifest_len));
    }
    file.seek(SeekFrom::Start(HEADER_LEN + manifest_len))
        .map_err(io_error(path, "seeking"))?;
    let mut len = [0u8; STREAM_LEN_LEN as usize];
    file.read_exact(&mut len)
        .map_err(io_error(path, "reading the stream length"))?;
    let stream_len = u64::from_le_bytes(len);
    check_limit(path, "stream", stream_len, MAX_MODEL_BYTES)?;
    let header = Header {
        version,
        samples,
        manifest_len,
        stream_len,
    };
    let expected = header.total_len();
    if found < expected {
        return Err(truncated(expected));
    }
    if found > expected {
        return Err(CheckpointError::TrailingBytes {
            path: path.to_path_buf(),
            expected,
            found,
        });
    }
    Ok(header)
}

/// `N` bytes of `buf` at `at` (the caller's offsets are within the fixed-size header).
fn field<const N: usize>(buf: &[u8], at: usize) -> [u8; N] {
    let mut out = [0u8; N];
    if let Some(src) = buf.get(at..at + N) {
        out.copy_from_slice(src);
    }
    out
}

fn check_limit(path: &Path, what: &'static str, len: u64, max: u64) -> Result<(), CheckpointError> {
    if len > max {
        return Err(CheckpointError::TooLarge {
            path: path.to_path_buf(),
            what,
            len,
            max,
        });
    }
    Ok(())
}

/// Reads the whole file, exactly `len` bytes (already checked against the size and limits).
fn read_all(path: &Path, file: &mut File, len: u64) -> Result<Bytes, CheckpointError> {
    let too_large = || CheckpointError::TooLarge {
        path: path.to_path_buf(),
        what: "file",
        len,
        max: usize::MAX as u64,
    };
    let size = usize::try_from(len).map_err(|_| too_large())?;
    file.seek(SeekFrom::Start(0))
        .map_err(io_error(path, "seeking"))?;
    let mut buf = vec![0u8; size];
    file.read_exact(&mut buf).map_err(|e| match e.kind() {
        // The file shrank after its size was checked.
        io::ErrorKind::UnexpectedEof => CheckpointError::Truncated {
            path: path.to_path_buf(),
            expected: len,
            found: 0,
        },
        _ => io_error(path, "reading")(e),
    })?;
    Ok(Bytes::from(buf))
}

/// Checks the trailing hash against everything before it.
fn verify_hash(path: &Path, bytes: &[u8]) -> Result<(), CheckpointError> {
    let (body, stored) = bytes.split_at(bytes.len().saturating_sub(HASH_LEN as usize));
    let mut hasher = blake3::Hasher::new();
    // On one thread, hashed here: `update_rayon` would hand the work to rayon's global
    // pool, the training's compute pool.
    if rayon::current_num_threads() > 1 {
        hasher.update_rayon(body);
    } else {
        hasher.update(body);
    }
    if hasher.finalize().as_bytes()[..] != stored[..] {
        return Err(CheckpointError::HashMismatch {
            path: path.to_path_buf(),
        });
    }
    Ok(())
}

/// Decodes the manifest, cuts the stream into chunks and reassembles the weights.
fn parse(path: &Path, header: &Header, bytes: &Bytes) -> Result<Checkpoint, CheckpointError> {
    // Offsets below are within `bytes`, whose length is `header.total_len()`, which fits a
    // usize (`read_all` checked).
    let manifest_start = HEADER_LEN as usize;
    let manifest_end = manifest_start + header.manifest_len as usize;
    let manifest_bytes = bytes.slice(manifest_start..manifest_end);
    let manifest_id = ManifestId::of(&manifest_bytes);
    let manifest = decode_manifest(&manifest_bytes, &manifest_id).map_err(|source| {
        CheckpointError::ManifestInvalid {
            path: path.to_path_buf(),
            source,
        }
    })?;
    if header.stream_len != manifest.total_len {
        return Err(CheckpointError::StreamLength {
            path: path.to_path_buf(),
            stream_len: header.stream_len,
            total_len: manifest.total_len,
        });
    }
    let mut start = manifest_end + STREAM_LEN_LEN as usize;
    let chunks: Vec<Bytes> = (0..manifest.chunks.len())
        .map(|i| {
            // The decoded manifest is valid: its chunk lengths add up to `total_len`.
            let end = start + manifest.chunk_len(i) as usize;
            let chunk = bytes.slice(start..end);
            start = end;
            chunk
        })
        .collect();
    let params = assemble(&manifest, &chunks).map_err(|source| CheckpointError::Chunks {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(Checkpoint {
        version: header.version,
        samples: header.samples,
        manifest_id,
        params,
    })
}

/// Maps an I/O error on `path` during `action`.
fn io_error(path: &Path, action: &'static str) -> impl Fn(io::Error) -> CheckpointError {
    let path = path.to_path_buf();
    move |source| CheckpointError::Io {
        path: path.clone(),
        action,
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use murmur_protocol::TensorSpec;

    fn params(n: u64) -> FlatParams {
        let values = (0..n).map(|i| (i as f32 * 0.37).sin()).collect();
        FlatParams::from_named(vec![
            (TensorSpec::f32("w", &[n]), values),
            (TensorSpec::f32("b", &[3]), vec![1.0, -2.0, 0.5]),
        ])
        .unwrap()
    }

    fn snapshot(n: u64) -> Snapshot {
        Snapshot::build(&params(n), 64).unwrap()
    }

    /// A saved checkpoint in a fresh directory; keep the directory alive.
    fn saved(n: u64) -> (tempfile::TempDir, PathBuf, Snapshot) {
        let dir = tempfile::tempdir().unwrap();
        let path = checkpoint_path(dir.path());
        let snap = snapshot(n);
        save(&path, 7, 12_345, &snap).unwrap();
        (dir, path, snap)
    }

    #[test]
    fn save_then_load_round_trips() {
        let (_dir, path, snap) = saved(50);
        let loaded = load(&path).unwrap().unwrap();
        assert_eq!(loaded.version, 7);
        assert_eq!(loaded.samples, 12_345);
        assert_eq!(loaded.manifest_id, snap.id);
        assert_eq!(loaded.params, params(50));
        let expected_len = FIXED_LEN + snap.manifest_bytes.len() as u64 + snap.manifest.total_len;
        assert_eq!(fs::metadata(&path).unwrap().len(), expected_len);
        assert!(!tmp_path(&path).exists());
    }

    #[test]
    fn header_layout_is_as_documented() {
        let (_dir, path, snap) = saved(10);
        let bytes = fs::read(&path).unwrap();
        assert_eq!(&bytes[..8], b"MURMURCK");
        assert_eq!(bytes[8..12], 1u32.to_le_bytes());
        assert_eq!(bytes[12..20], 7u64.to_le_bytes());
        assert_eq!(bytes[20..28], 12_345u64.to_le_bytes());
        let m = snap.manifest_bytes.len();
        assert_eq!(bytes[28..32], (m as u32).to_le_bytes());
        assert_eq!(bytes[32..32 + m], snap.manifest_bytes[..]);
        assert_eq!(bytes[32 + m..40 + m], snap.manifest.total_len.to_le_bytes());
        let end = bytes.len() - 32;
        assert_eq!(bytes[end..], *blake3::hash(&bytes[..end]).as_bytes());
    }

    #[test]
    fn missing_file_is_none() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load(&checkpoint_path(dir.path())).unwrap().is_none());
    }

    #[test]
    fn save_overwrites_an_older_checkpoint() {
        let (_dir, path, _) = saved(20);
        let newer = snapshot(30);
        save(&path, 8, 99, &newer).unwrap();
        let loaded = load(&path).unwrap().unwrap();
        assert_eq!((loaded.version, loaded.samples), (8, 99));
        assert_eq!(loaded.manifest_id, newer.id);
        assert_eq!(loaded.params, params(30));
    }

    #[test]
    fn every_single_byte_flip_is_an_error() {
        let (_dir, path, _) = saved(40);
        let good = fs::read(&path).unwrap();
        for pos in 0..good.len() {
            for mask in [0x01u8, 0x80, 0xff] {
                let mut bad = good.clone();
                bad[pos] ^= mask;
                fs::write(&path, &bad).unwrap();
                assert!(load(&path).is_err(), "flip {mask:#x} at {pos} was accepted");
            }
        }
        fs::write(&path, &good).unwrap();
        assert!(load(&path).unwrap().is_some());
    }

    #[test]
    fn truncation_at_every_length_is_an_error() {
        let (_dir, path, _) = saved(40);
        let good = fs::read(&path).unwrap();
        for len in 0..good.len() {
            fs::write(&path, &good[..len]).unwrap();
            let err = load(&path).unwrap_err();
            assert!(
                matches!(err, CheckpointError::Truncated { .. }),
                "length {len}: {err}"
            );
        }
    }

    #[test]
    fn trailing_bytes_are_an_error() {
        let (_dir, path, _) = saved(10);
        let mut bytes = fs::read(&path).unwrap();
        bytes.push(0);
        fs::write(&path, &bytes).unwrap();
        assert!(matches!(
            load(&path),
            Err(CheckpointError::TrailingBytes { .. })
        ));
    }

    /// A header with the given fields and nothing after `manifest_len` but `body`.
    fn header(format: u32, manifest_len: u32, body: &[u8]) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&format.to_le_bytes());
        out.extend_from_slice(&1u64.to_le_bytes());
        out.extend_from_slice(&2u64.to_le_bytes());
        out.extend_from_slice(&manifest_len.to_le_bytes());
        out.extend_from_slice(body);
        out
    }

    #[test]
    fn a_huge_claimed_stream_fails_before_allocating() {
        let dir = tempfile::tempdir().unwrap();
        let path = checkpoint_path(dir.path());
        let mut body = vec![0u8; 4]; // a 4-byte "manifest"
        body.extend_from_slice(&(1u64 << 60).to_le_bytes());
        body.extend_from_slice(&[0u8; 64]);
        fs::write(&path, header(FORMAT, 4, &body)).unwrap();
        let err = load(&path).unwrap_err();
        assert!(
            matches!(err, CheckpointError::TooLarge { what: "stream", len, .. } if len == 1 << 60),
            "{err}"
        );
        assert!(err.to_string().contains("checkpoint.bin"), "{err}");
    }

    #[test]
    fn a_huge_claimed_manifest_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = checkpoint_path(dir.path());
        fs::write(&path, header(FORMAT, u32::MAX, &[0u8; 64])).unwrap();
        assert!(matches!(
            load(&path),
            Err(CheckpointError::TooLarge {
                what: "manifest",
                ..
            })
        ));
    }

    #[test]
    fn bad_magic_and_unknown_format_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = checkpoint_path(dir.path());
        let mut bytes = header(FORMAT, 0, &[0u8; 40]);
        bytes[0] = b'X';
        fs::write(&path, &bytes).unwrap();
        assert!(matches!(load(&path), Err(CheckpointError::BadMagic { .. })));
        fs::write(&path, header(2, 0, &[0u8; 40])).unwrap();
        let err = load(&path).unwrap_err();
        assert!(
            matches!(err, CheckpointError::UnsupportedFormat { got: 2, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("unsupported format 2"), "{err}");
    }

    #[test]
    fn a_consistent_file_with_a_corrupt_chunk_is_refused() {
        // Re-hash after corrupting the stream: only the chunk hashes can catch it.
        let (_dir, path, _) = saved(40);
        let mut bytes = fs::read(&path).unwrap();
        let end = bytes.len() - 32;
        bytes[end - 1] ^= 0x10;
        let hash = *blake3::hash(&bytes[..end]).as_bytes();
        bytes[end..].copy_from_slice(&hash);
        fs::write(&path, &bytes).unwrap();
        let err = load(&path).unwrap_err();
        assert!(matches!(err, CheckpointError::Chunks { .. }), "{err}");
        assert!(err.to_string().contains("is corrupt"), "{err}");
    }

    #[test]
    fn a_leftover_tmp_file_is_ignored_and_overwritten() {
        let (_dir, path, snap) = saved(20);
        let tmp = tmp_path(&path);
        assert_eq!(tmp.file_name().unwrap(), "checkpoint.bin.tmp");
        fs::write(&tmp, b"half-written garbage from a crash").unwrap();
        let loaded = load(&path).unwrap().unwrap();
        assert_eq!(loaded.manifest_id, snap.id);

        let newer = snapshot(25);
        save(&path, 9, 1, &newer).unwrap();
        assert!(!tmp.exists());
        let loaded = load(&path).unwrap().unwrap();
        assert_eq!(loaded.manifest_id, newer.id);
        assert_eq!(loaded.params, params(25));
    }

    #[test]
    fn an_inconsistent_snapshot_is_not_saved() {
        let dir = tempfile::tempdir().unwrap();
        let path = checkpoint_path(dir.path());
        let mut snap = snapshot(20);
        snap.chunks.pop();
        let err = save(&path, 1, 1, &snap).unwrap_err();
        assert!(
            matches!(err, CheckpointError::InvalidSnapshot { .. }),
            "{err}"
        );
        assert!(!path.exists());
    }

    #[test]
    fn save_into_a_missing_directory_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("absent").join("checkpoint.bin");
        let err = save(&path, 1, 1, &snapshot(10)).unwrap_err();
        assert!(matches!(err, CheckpointError::Io { .. }), "{err}");
        assert!(err.to_string().contains("checkpoint.bin.tmp"), "{err}");
    }
}
