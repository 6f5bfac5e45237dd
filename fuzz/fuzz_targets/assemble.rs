//! `chunking::assemble` (chunks fetched from peers, checked against a manifest and decoded
//! into weights), with `Manifest::validate`, `Manifest::chunk_len` and `ChunkId::verify`.
//!
//! Random manifests and chunks would almost never get past the hash checks, so the input is
//! structured: a layout (names, shapes, possibly unsorted, empty or oversized), a chunk size,
//! a total length (the layout's own, or any), the stream's bytes, and a list of tamperings
//! (drop, add, cut, grow, flip a chunk, swap two, change an id), in any encoding (f32, f16,
//! bf16, int8 with any block size, valid or not). The manifest lists the hashes of the chunks
//! as cut before tampering. Properties: never panics and allocates at most what the chunks
//! hold (libFuzzer's malloc limit); every value decoded is finite unless the encoding carries
//! non-finite values (f32, f16, bf16); for f32, on success the weights' bytes are exactly the
//! chunks' bytes in order, and `Snapshot::build` of those weights gives back the same
//! manifest.
#![no_main]

use arbitrary::Arbitrary;
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use murmur_protocol::chunking::chunk_stream;
use murmur_protocol::manifest::MANIFEST_FORMAT_VERSION;
use murmur_protocol::{ChunkId, Encoding, Layout, Manifest, Snapshot, TensorSpec, assemble};

/// Largest stream the target builds, and most chunks it cuts (so one run stays fast).
const MAX_STREAM: u64 = 1 << 16;
const MAX_CHUNKS: u64 = 4096;

#[derive(Debug, Arbitrary)]
enum Tamper {
    Drop(u16),
    Append(Vec<u8>),
    Cut(u16, u16),
    Grow(u16, u8),
    Flip(u16, u16, u8),
    Swap(u16, u16),
    WrongId(u16, u8),
    DropId(u16),
}

#[derive(Debug, Arbitrary)]
struct Input {
    tensors: Vec<(String, Vec<u64>)>,
    sort: bool,
    chunk_size: u32,
    small_chunks: bool,
    /// `None`: the layout's own length; `Some`: this one (usually wrong).
    total_len: Option<u64>,
    /// 0: f32, 1: f16, 2: bf16, else int8 with `block`.
    encoding: u8,
    block: u16,
    fill: Vec<u8>,
    tamper: Vec<Tamper>,
}

fn pick(index: u16, len: usize) -> Option<usize> {
    (len > 0).then(|| usize::from(index) % len)
}

fuzz_target!(|input: Input| {
    let mut tensors: Vec<TensorSpec> = input
        .tensors
        .into_iter()
        .take(8)
        .map(|(name, shape)| TensorSpec::f32(name, &shape))
        .collect();
    if input.sort {
        tensors.sort_by(|a, b| a.name.cmp(&b.name));
    }
    // Chunk sizes around the valid range (64..=4 MiB) are the interesting ones.
    let chunk_size = if input.small_chunks {
        input.chunk_size % 300
    } else {
        input.chunk_size
    };
    let encoding = match input.encoding {
        0 => Encoding::F32Le,
        1 => Encoding::F16Le,
        2 => Encoding::Bf16Le,
        _ => Encoding::Int8 {
            block: u32::from(input.block),
        },
    };
    let own_len = Layout::from_sorted(tensors.clone())
        .map(|l| l.encoded_len(encoding))
        .unwrap_or(0);
    let total_len = input.total_len.unwrap_or(own_len);
    let cut = chunk_size.max(1);
    let stream_len = total_len.min(MAX_STREAM).min(MAX_CHUNKS * u64::from(cut)) as usize;
    let stream: Vec<u8> = if input.fill.is_empty() {
        vec![0; stream_len]
    } else {
        input
            .fill
            .iter()
            .copied()
            .cycle()
            .take(stream_len)
            .collect()
    };
    let chunks = chunk_stream(&Bytes::from(stream), cut as usize);
    let mut manifest = Manifest {
        format_version: MANIFEST_FORMAT_VERSION,
        encoding,
        chunk_size,
        total_len,
        tensors,
        chunks: chunks.iter().map(|c| c.id).collect(),
    };
    let mut data: Vec<Vec<u8>> = chunks.iter().map(|c| c.data.to_vec()).collect();
    for t in input.tamper.into_iter().take(4) {
        match t {
            Tamper::Drop(i) => {
                if let Some(i) = pick(i, data.len()) {
                    data.remove(i);
                }
            }
            Tamper::Append(bytes) => data.push(bytes),
            Tamper::Cut(i, n) => {
                if let Some(i) = pick(i, data.len()) {
                    let keep = data[i].len().saturating_sub(usize::from(n));
                    data[i].truncate(keep);
                }
            }
            Tamper::Grow(i, b) => {
                if let Some(i) = pick(i, data.len()) {
                    data[i].push(b);
                }
            }
            Tamper::Flip(i, at, mask) => {
                if let Some(i) = pick(i, data.len()) {
                    if let Some(at) = pick(at, data[i].len()) {
                        data[i][at] ^= mask;
                    }
                }
            }
            Tamper::Swap(i, j) => {
                if let (Some(i), Some(j)) = (pick(i, data.len()), pick(j, data.len())) {
                    data.swap(i, j);
                }
            }
            Tamper::WrongId(i, b) => {
                if let Some(i) = pick(i, manifest.chunks.len()) {
                    let mut raw = *manifest.chunks[i].as_bytes();
                    raw[0] ^= b;
                    manifest.chunks[i] = ChunkId::from_bytes(raw);
                }
            }
            Tamper::DropId(i) => {
                if let Some(i) = pick(i, manifest.chunks.len()) {
                    manifest.chunks.remove(i);
                }
            }
        }
    }
    let data: Vec<Bytes> = data.into_iter().map(Bytes::from).collect();
    let Ok(params) = assemble(&manifest, &data) else {
        return;
    };
    if let Encoding::Int8 { .. } = encoding {
        assert!(params.all_finite(), "int8 decoded a non-finite value");
    }
    if encoding != Encoding::F32Le {
        return;
    }
    let joined: Vec<u8> = data.iter().flat_map(|d| d.iter().copied()).collect();
    assert_eq!(&params.to_le_bytes()[..], &joined[..]);
    let snap = Snapshot::build(&params, manifest.chunk_size).unwrap();
    assert_eq!(snap.manifest, manifest);
});
