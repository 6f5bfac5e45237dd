//! [`Manifest`]: the description of one exact set of weights: format version, encoding,
//! chunk size, total length, tensor layout and the ordered chunk ids. Its canonical encoding
//! (see [`crate::codec::encode_manifest`]) hashes to its [`ManifestId`]. Who made it and when
//! travels beside it in an [`Announce`](crate::Announce), never inside it, so equal weights
//! give equal ids whoever trained them.

pub use crate::encoding::Encoding;
use crate::error::ManifestError;
use crate::id::{ChunkId, ManifestId};
use crate::limits::{MAX_CHUNK_SIZE, MAX_CHUNKS_PER_MANIFEST, MAX_TENSORS, MIN_CHUNK_SIZE};
use crate::tensor::{Layout, TensorSpec};
use serde::{Deserialize, Serialize};

/// The manifest format this crate writes and reads.
pub const MANIFEST_FORMAT_VERSION: u16 = 1;

/// A model, named by content. Fields are in wire order.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Manifest {
    /// Always [`MANIFEST_FORMAT_VERSION`] for manifests this crate accepts.
    pub format_version: u16,
    /// How values are encoded into bytes.
    pub encoding: Encoding,
    /// Size of every chunk but the last, in bytes.
    pub chunk_size: u32,
    /// Length of the whole encoded byte stream: `Layout::encoded_len(encoding)`.
    pub total_len: u64,
    /// The tensors in canonical order (sorted by name).
    #[serde(deserialize_with = "crate::bounded::vec::<MAX_TENSORS, _, _>")]
    pub tensors: Vec<TensorSpec>,
    /// Chunk ids in stream order.
    #[serde(deserialize_with = "crate::bounded::vec::<MAX_CHUNKS_PER_MANIFEST, _, _>")]
    pub chunks: Vec<ChunkId>,
}

impl Manifest {
    /// Checks every invariant a manifest from the network must hold before anything is
    /// fetched for it, and returns its layout.
    pub fn validate(&self) -> Result<Layout, ManifestError> {
        if self.format_version != MANIFEST_FORMAT_VERSION {
            return Err(ManifestError::UnsupportedFormat {
                got: self.format_version,
                supported: MANIFEST_FORMAT_VERSION,
            });
        }
        if !(MIN_CHUNK_SIZE..=MAX_CHUNK_SIZE).contains(&self.chunk_size) {
            return Err(ManifestError::ChunkSize {
                got: self.chunk_size,
                min: MIN_CHUNK_SIZE,
                max: MAX_CHUNK_SIZE,
            });
        }
        if self.chunks.len() > MAX_CHUNKS_PER_MANIFEST {
            return Err(ManifestError::TooManyChunks {
                count: self.chunks.len(),
                max: MAX_CHUNKS_PER_MANIFEST,
            });
        }
        self.encoding.check()?;
        let layout = Layout::from_sorted(self.tensors.clone())?;
        let encoded_len = layout.encoded_len(self.encoding);
        if encoded_len != self.total_len {
            return Err(ManifestError::TotalLen {
                layout: encoded_len,
                manifest: self.total_len,
            });
        }
        let expected = chunk_count(self.total_len, self.chunk_size);
        if self.chunks.len() as u64 != expected {
            return Err(ManifestError::ChunkCount {
                expected,
                got: self.chunks.len(),
            });
        }
        Ok(layout)
    }

    /// The byte length chunk `index` must have.
    pub fn chunk_len(&self, index: usize) -> u64 {
        let start = index as u64 * u64::from(self.chunk_size);
        self.total_len
            .saturating_sub(start)
            .min(u64::from(self.chunk_size))
    }

    /// The canonical encoding of this manifest and its id.
    pub fn encode_with_id(&self) -> Result<(Vec<u8>, ManifestId), crate::EncodeError> {
        let bytes = crate::codec::encode_manifest(self)?;
        let id = ManifestId::of(&bytes);
        Ok((bytes, id))
    }
}

/// Number of chunks a stream of `total_len` bytes is cut into.
pub fn chunk_count(total_len: u64, chunk_size: u32) -> u64 {
    total_len.div_ceil(u64::from(chunk_size.max(1)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunking::Snapshot;
    use crate::params::FlatParams;

    /// A valid manifest of 4 distinct 64-byte chunks.
    fn manifest() -> Manifest {
        let values = (0..64).map(|i| i as f32 * 0.5 - 3.0).collect();
        let params = FlatParams::from_named(vec![(TensorSpec::f32("w", &[64]), values)]).unwrap();
        let snap = Snapshot::build(&params, 64).unwrap();
        assert_eq!(snap.manifest.chunks.len(), 4);
        snap.manifest
    }

    #[test]
    fn distinct_chunks_are_valid() {
        let layout = manifest().validate().unwrap();
        assert_eq!(layout.byte_len(), 256);
    }

    /// Identical regions of a model (zeroed or pruned blocks) give identical chunks: a
    /// manifest may list one id more than once. What a manifest repeating one id thousands
    /// of times could cost a fetcher is capped by the fetcher's layout check instead (the
    /// total length must be its own model's), before any chunk is requested.
    #[test]
    fn repeated_chunk_ids_are_valid() {
        let mut m = manifest();
        m.chunks[3] = m.chunks[1];
        assert!(m.validate().is_ok());
    }
}
