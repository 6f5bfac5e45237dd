//! From weights to content-addressed chunks and back.
//!
//! [`Snapshot::build`] serializes [`FlatParams`] as little-endian `f32` into one byte stream
//! ([`Snapshot::from_params_encoded`]: in any [`Encoding`]), cuts it into `chunk_size` pieces
//! (the last may be shorter), hashes each piece (in parallel: the pieces are independent, so
//! this is deterministic) and writes the [`Manifest`]. [`assemble`] does the reverse and
//! trusts nothing: it validates the manifest and checks every chunk's length and hash before
//! decoding a single value.

use crate::encoding::{self, QuantizeError};
use crate::error::{AssembleError, EncodeError, LayoutError};
use crate::id::{ChunkId, ManifestId};
use crate::manifest::{Encoding, MANIFEST_FORMAT_VERSION, Manifest};
use crate::params::FlatParams;
use bytes::Bytes;
use rayon::prelude::*;

/// One chunk: its id and its bytes (a zero-copy slice of the snapshot's stream).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// blake3 of `data`.
    pub id: ChunkId,
    /// The bytes.
    pub data: Bytes,
}

/// A model cut into chunks, with its manifest, the manifest's canonical bytes and its id.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The manifest.
    pub manifest: Manifest,
    /// The manifest's canonical encoding (what peers are served and what `id` hashes).
    pub manifest_bytes: Bytes,
    /// blake3 of `manifest_bytes`.
    pub id: ManifestId,
    /// The chunks in stream order.
    pub chunks: Vec<Chunk>,
}

/// Building a snapshot failed (a bad chunk size, a model over the limits, or values the
/// encoding cannot carry).
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("chunk size {got} outside the allowed {min}..={max} bytes")]
    ChunkSize { got: u32, min: u32, max: u32 },
    #[error("model has {chunks} chunks at this chunk size, more than the limit of {max}")]
    TooManyChunks { chunks: usize, max: usize },
    #[error(transparent)]
    Layout(#[from] LayoutError),
    #[error(transparent)]
    Encode(#[from] EncodeError),
    #[error(transparent)]
    Quantize(#[from] QuantizeError),
}

impl Snapshot {
    /// Serializes, chunks and hashes a copy of `params` with `chunk_size`-byte chunks.
    pub fn build(params: &FlatParams, chunk_size: u32) -> Result<Self, SnapshotError> {
        Self::from_params(params.clone(), chunk_size)
    }

    /// Like [`Snapshot::build`], taking the parameters by value: their buffer becomes the
    /// chunks' byte stream without a copy.
    pub fn from_params(params: FlatParams, chunk_size: u32) -> Result<Self, SnapshotError> {
        check_chunk_size(chunk_size)?;
        let tensors = params.layout().tensors().to_vec();
        Self::from_stream(tensors, Encoding::F32Le, params.into_le_bytes(), chunk_size)
    }

    /// Encodes `params` in `encoding`, then chunks and hashes the stream. `F32Le` is
    /// [`Snapshot::from_params`]. A peer assembling the snapshot gets
    /// [`quantize(&params, encoding)`](crate::quantize). Refuses an invalid encoding, and
    /// values it cannot carry with [`QuantizeError::Unrepresentable`]: a finite value that
    /// would become infinite in `F16Le` or `Bf16Le` (a magnitude of at least 65,520 or about
    /// 3.3961e38: the largest finite value plus half a step), or in `Int8` a non-finite value or a block whose largest magnitude is so
    /// close to `f32::MAX` that 127 times its scale overflows.
    pub fn from_params_encoded(
        params: FlatParams,
        encoding: Encoding,
        chunk_size: u32,
    ) -> Result<Self, SnapshotError> {
        if encoding == Encoding::F32Le {
            return Self::from_params(params, chunk_size);
        }
        check_chunk_size(chunk_size)?;
        let stream = Bytes::from(encoding::encode(&params, encoding)?);
        let tensors = params.layout().tensors().to_vec();
        Self::from_stream(tensors, encoding, stream, chunk_size)
    }

    fn from_stream(
        tensors: Vec<crate::TensorSpec>,
        encoding: Encoding,
        stream: Bytes,
        chunk_size: u32,
    ) -> Result<Self, SnapshotError> {
        use crate::limits::MAX_CHUNKS_PER_MANIFEST;
        let chunks = chunk_stream(&stream, chunk_size as usize);
        if chunks.len() > MAX_CHUNKS_PER_MANIFEST {
            return Err(SnapshotError::TooManyChunks {
                chunks: chunks.len(),
                max: MAX_CHUNKS_PER_MANIFEST,
            });
        }
        let manifest = Manifest {
            format_version: MANIFEST_FORMAT_VERSION,
            encoding,
            chunk_size,
            total_len: stream.len() as u64,
            tensors,
            chunks: chunks.iter().map(|c| c.id).collect(),
        };
        let (bytes, id) = manifest.encode_with_id()?;
        Ok(Self {
            manifest,
            manifest_bytes: Bytes::from(bytes),
            id,
            chunks,
        })
    }
}

fn check_chunk_size(chunk_size: u32) -> Result<(), SnapshotError> {
    use crate::limits::{MAX_CHUNK_SIZE, MIN_CHUNK_SIZE};
    if !(MIN_CHUNK_SIZE..=MAX_CHUNK_SIZE).contains(&chunk_size) {
        return Err(SnapshotError::ChunkSize {
            got: chunk_size,
            min: MIN_CHUNK_SIZE,
            max: MAX_CHUNK_SIZE,
        });
    }
    Ok(())
}

/// Cuts `stream` into `chunk_size`-byte chunks and hashes them (in parallel when rayon has
/// more than one thread).
pub fn chunk_stream(stream: &Bytes, chunk_size: usize) -> Vec<Chunk> {
    let size = chunk_size.max(1);
    let count = stream.len().div_ceil(size);
    let one = |i: usize| {
        let data = stream.slice(i * size..((i + 1) * size).min(stream.len()));
        Chunk {
            id: ChunkId::of(&data),
            data,
        }
    };
    if encoding::parallel() {
        (0..count).into_par_iter().map(one).collect()
    } else {
        (0..count).map(one).collect()
    }
}

/// Rebuilds the weights a manifest names from its chunks (in manifest order), checking the
/// manifest, then every chunk's length and hash, before decoding any value. `F32Le` is
/// decoded chunk by chunk; other encodings are decoded from one copy of the stream
/// (`total_len` bytes, validated against the layout). `Int8` refuses a block scale that is
/// negative (sign bit set, -0.0 included), infinite, NaN or overflowing when multiplied by
/// 127, and a quantized value of -128; so every value it returns is finite.
pub fn assemble(manifest: &Manifest, chunks: &[Bytes]) -> Result<FlatParams, AssembleError> {
    let layout = manifest.validate()?;
    if chunks.len() != manifest.chunks.len() {
        return Err(AssembleError::ChunkCount {
            expected: manifest.chunks.len(),
            got: chunks.len(),
        });
    }
    for (index, (id, data)) in manifest.chunks.iter().zip(chunks).enumerate() {
        let expected = manifest.chunk_len(index);
        if data.len() as u64 != expected {
            return Err(AssembleError::ChunkLength {
                index,
                id: *id,
                expected,
                got: data.len() as u64,
            });
        }
    }
    let verify = |(index, (id, data)): (usize, (&ChunkId, &Bytes))| {
        id.verify(data).map_err(|actual| AssembleError::ChunkHash {
            index,
            expected: *id,
            actual,
        })
    };
    if encoding::parallel() {
        manifest
            .chunks
            .par_iter()
            .zip(chunks)
            .enumerate()
            .try_for_each(verify)?;
    } else {
        manifest
            .chunks
            .iter()
            .zip(chunks)
            .enumerate()
            .try_for_each(verify)?;
    }
    if manifest.encoding != Encoding::F32Le {
        let mut stream = Vec::with_capacity(manifest.total_len as usize);
        for data in chunks {
            stream.extend_from_slice(data);
        }
        let values = encoding::decode(&layout, manifest.encoding, &stream)?;
        return Ok(FlatParams::new(layout, values).map_err(crate::ManifestError::from)?);
    }
    let mut values = Vec::with_capacity(layout.numel() as usize);
    let mut carry = [0u8; 4];
    let mut carried = 0usize;
    for data in chunks {
        let mut rest: &[u8] = data;
        if carried > 0 {
            let take = (4 - carried).min(rest.len());
            carry[carried..carried + take].copy_from_slice(&rest[..take]);
            carried += take;
            rest = &rest[take..];
            if carried == 4 {
                values.push(f32::from_le_bytes(carry));
                carried = 0;
            }
        }
        let mut words = rest.chunks_exact(4);
        values.extend(
            words
                .by_ref()
                .map(|w| f32::from_le_bytes([w[0], w[1], w[2], w[3]])),
        );
        let tail = words.remainder();
        if !tail.is_empty() {
            carry[..tail.len()].copy_from_slice(tail);
            carried = tail.len();
        }
    }
    // total_len == layout.byte_len() was validated, so the values fill the layout exactly.
    Ok(FlatParams::new(layout, values).map_err(crate::ManifestError::from)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::TensorSpec;

    fn params(n: u64) -> FlatParams {
        let values = (0..n).map(|i| i as f32 * 0.25 - 3.0).collect();
        FlatParams::from_named(vec![(TensorSpec::f32("w", &[n]), values)]).unwrap()
    }

    #[test]
    fn round_trip_with_chunks_that_split_floats() {
        // 70 bytes per chunk: floats straddle chunk boundaries.
        let p = params(101);
        let snap = Snapshot::build(&p, 70).unwrap();
        assert_eq!(snap.chunks.len(), 404usize.div_ceil(70));
        assert_eq!(snap.chunks.last().unwrap().data.len(), 404 % 70);
        let data: Vec<Bytes> = snap.chunks.iter().map(|c| c.data.clone()).collect();
        assert_eq!(assemble(&snap.manifest, &data).unwrap(), p);
    }

    /// Hashing runs sequentially in a one-thread pool and in parallel in a larger one: the
    /// same chunks, and the same corrupted chunk named.
    #[test]
    fn one_thread_and_several_chunk_and_verify_alike() {
        let run = |threads: usize| {
            encoding::in_pool(threads, || {
                let snap = Snapshot::build(&params(5_000), 1024).unwrap();
                let mut data: Vec<Bytes> = snap.chunks.iter().map(|c| c.data.clone()).collect();
                assert_eq!(assemble(&snap.manifest, &data).unwrap(), params(5_000));
                let mut bad = data[13].to_vec();
                bad[7] ^= 0x80;
                data[13] = Bytes::from(bad);
                let refused = assemble(&snap.manifest, &data);
                assert!(
                    matches!(refused, Err(AssembleError::ChunkHash { index: 13, .. })),
                    "{refused:?}"
                );
                snap.chunks
            })
        };
        assert_eq!(run(1), run(3));
    }

    #[test]
    fn unchanged_regions_keep_their_chunk_ids() {
        let p = params(1000);
        let mut q = p.clone();
        q.values_mut()[999] = 42.0;
        let a = Snapshot::build(&p, 1024).unwrap();
        let b = Snapshot::build(&q, 1024).unwrap();
        assert_ne!(a.id, b.id);
        assert_eq!(a.chunks[..3], b.chunks[..3]);
        assert_ne!(a.chunks[3].id, b.chunks[3].id);
    }

    #[test]
    fn encoded_snapshots_round_trip_to_quantize() {
        let p = params(101);
        for encoding in [
            Encoding::F32Le,
            Encoding::F16Le,
            Encoding::Bf16Le,
            Encoding::Int8 { block: 16 },
        ] {
            // 70-byte chunks: values and int8 blocks straddle chunk boundaries.
            let snap = Snapshot::from_params_encoded(p.clone(), encoding, 70).unwrap();
            assert_eq!(snap.manifest.encoding, encoding);
            let data: Vec<Bytes> = snap.chunks.iter().map(|c| c.data.clone()).collect();
            let got = assemble(&snap.manifest, &data).unwrap();
            assert_eq!(got, crate::quantize(&p, encoding).unwrap(), "{encoding}");
        }
        assert!(matches!(
            Snapshot::from_params_encoded(p.clone(), Encoding::F16Le, 8),
            Err(SnapshotError::ChunkSize { .. })
        ));
        let mut big = p;
        big.values_mut()[7] = 1e6;
        assert!(matches!(
            Snapshot::from_params_encoded(big, Encoding::F16Le, 64),
            Err(SnapshotError::Quantize(QuantizeError::Unrepresentable {
                index: 7,
                ..
            }))
        ));
    }

    #[test]
    fn bad_chunk_size_is_refused() {
        assert!(matches!(
            Snapshot::build(&params(4), 8),
            Err(SnapshotError::ChunkSize { .. })
        ));
    }
}
