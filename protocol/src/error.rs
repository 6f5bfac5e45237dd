//! Typed errors of the protocol crate. Each names what was being checked, the limit or the
//! expected value, and what was found, so a log line is enough to act on.

use crate::codec::MessageKind;
use crate::id::{ChunkId, ManifestId};

/// A tensor layout that breaks an invariant of [`Layout`](crate::Layout).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LayoutError {
    #[error("a model needs at least one tensor")]
    Empty,
    #[error("{count} tensors, more than the limit of {max}")]
    TooManyTensors { count: usize, max: usize },
    #[error("tensor #{index} has an empty name")]
    EmptyName { index: usize },
    #[error("tensor name {name:?}… is {len} bytes, more than the limit of {max}")]
    NameTooLong {
        name: String,
        len: usize,
        max: usize,
    },
    #[error("tensor name {name:?} appears twice")]
    DuplicateName { name: String },
    #[error("tensors not in canonical order: {before:?} comes before {after:?}")]
    NotSorted { before: String, after: String },
    #[error("tensor {name:?} has rank {rank}, more than the limit of {max}")]
    RankTooHigh {
        name: String,
        rank: usize,
        max: usize,
    },
    #[error("tensor {name:?} has a zero dimension")]
    ZeroDim { name: String },
    #[error("model larger than the limit of {max_bytes} bytes")]
    TooLarge { max_bytes: u64 },
    #[error("layout holds {expected} values but {got} were given")]
    ValueCount { expected: u64, got: u64 },
    #[error("tensor {name:?} holds {expected} values but {got} were given")]
    TensorValueCount {
        name: String,
        expected: u64,
        got: u64,
    },
}

/// A manifest that decodes but describes no valid model.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    #[error("manifest format {got} is not supported (this build reads format {supported})")]
    UnsupportedFormat { got: u16, supported: u16 },
    #[error("chunk size {got} outside the allowed {min}..={max} bytes")]
    ChunkSize { got: u32, min: u32, max: u32 },
    #[error("{count} chunks, more than the limit of {max}")]
    TooManyChunks { count: usize, max: usize },
    #[error("bad layout: {0}")]
    Layout(#[from] LayoutError),
    #[error("layout needs {layout} bytes in this encoding but the manifest says {manifest}")]
    TotalLen { layout: u64, manifest: u64 },
    #[error("manifest lists {got} chunks but its length and chunk size need {expected}")]
    ChunkCount { expected: u64, got: usize },
    #[error("int8 block size {got} outside the allowed {min}..={max} values")]
    Int8Block { got: u32, min: u32, max: u32 },
}

/// Reassembling weights from a manifest and chunks failed; nothing was returned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AssembleError {
    #[error("invalid manifest: {0}")]
    Manifest(#[from] ManifestError),
    #[error("{got} chunks given, the manifest lists {expected}")]
    ChunkCount { expected: usize, got: usize },
    #[error("chunk #{index} ({id}) is {got} bytes, the manifest needs {expected}")]
    ChunkLength {
        index: usize,
        id: ChunkId,
        expected: u64,
        got: u64,
    },
    #[error("chunk #{index} is corrupt: expected hash {expected}, got {actual}")]
    ChunkHash {
        index: usize,
        expected: ChunkId,
        actual: ChunkId,
    },
    #[error("encoded stream is {got} bytes, the layout and encoding need {expected}")]
    StreamLength { expected: u64, got: u64 },
    #[error(
        "tensor {tensor:?} int8 block #{block} has scale {scale}: not a finite non-negative number whose 127 multiple is finite",
        scale = f32::from_bits(*.scale_bits)
    )]
    BadScale {
        tensor: String,
        block: u64,
        /// The scale's bits (an `f32`; kept as bits so the error stays `Eq`).
        scale_bits: u32,
    },
    #[error("tensor {tensor:?} int8 value #{index} is -128, outside -127..=127")]
    Int8Value { tensor: String, index: u64 },
}

/// Bytes that are not a valid message of the expected kind.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("{kind} of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        kind: MessageKind,
        len: u64,
        max: usize,
    },
    #[error("empty {kind}")]
    Empty { kind: MessageKind },
    #[error("{kind} has wire version {got}; this build speaks version {supported}")]
    UnsupportedVersion {
        kind: MessageKind,
        got: u8,
        supported: u8,
    },
    #[error("malformed {kind}: {source}")]
    Malformed {
        kind: MessageKind,
        #[source]
        source: bincode::error::DecodeError,
    },
    #[error("{kind} has {extra} trailing bytes")]
    TrailingBytes { kind: MessageKind, extra: usize },
    #[error("invalid {kind}: {reason}")]
    Invalid { kind: MessageKind, reason: String },
    #[error("manifest bytes hash to {actual}, expected {expected}")]
    ManifestId {
        expected: ManifestId,
        actual: ManifestId,
    },
}

/// A message that cannot be encoded within its limit (a bug or a misconfiguration on the
/// sending side, never a peer's fault).
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    #[error("{kind} would be {len} bytes, over the limit of {max}")]
    TooLarge {
        kind: MessageKind,
        len: usize,
        max: usize,
    },
    #[error("cannot encode {kind}: {source}")]
    Bincode {
        kind: MessageKind,
        #[source]
        source: bincode::error::EncodeError,
    },
    #[error("invalid {kind}: {reason}")]
    Invalid { kind: MessageKind, reason: String },
}
