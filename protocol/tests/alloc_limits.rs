//! Measures what decoding hostile bytes allocates, with a counting global allocator (this
//! file is its own test binary, so the allocator sees only this test). A 21-byte response
//! that claims a 1 TiB chunk must not allocate more than its kind's limit.
#![allow(clippy::unwrap_used, clippy::expect_used, unsafe_code)]

use bytes::Bytes;
use murmur_protocol::codec::{
    WIRE_VERSION, decode_announce, decode_manifest, decode_request, decode_response,
};
use murmur_protocol::limits::{
    MAX_ANNOUNCE_BYTES, MAX_CHUNKS_PER_MANIFEST, MAX_MANIFEST_BYTES, MAX_REQUEST_BYTES,
    MAX_RESPONSE_BYTES,
};
use murmur_protocol::manifest::MANIFEST_FORMAT_VERSION;
use murmur_protocol::{
    AssembleError, ChunkId, Encoding, Manifest, ManifestId, TensorSpec, assemble,
};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

struct Counting;
static LARGEST: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator and only records the largest request.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        unsafe { System.alloc(layout) }
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

/// Held by each test for its whole run: the allocator is global, and a test running on
/// another thread would add its own allocations to what one measures.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn largest_allocation_of(f: impl FnOnce()) -> usize {
    LARGEST.store(0, Ordering::Relaxed);
    f();
    LARGEST.load(Ordering::Relaxed)
}

/// An announce's `MetricsSummary`, all zero: 2 f32, 3 u64, 2 f32.
const METRICS: [u8; 40] = [0; 40];

fn body(parts: &[&[u8]]) -> Vec<u8> {
    let mut out = vec![WIRE_VERSION];
    for p in parts {
        out.extend_from_slice(p);
    }
    out
}

#[test]
fn hostile_length_claims_allocate_at_most_the_kind_limit() {
    let _serial = serial();
    let huge = (1u64 << 40).to_le_bytes();
    let one = 1u64.to_le_bytes();
    let v0 = 0u32.to_le_bytes();
    let v1 = 1u32.to_le_bytes();
    // Response::Chunks([Data(<1 TiB>)]) and Response::Manifest(Some(<1 TiB>)).
    let chunk = body(&[&v1, &one, &v0, &huge]);
    let manifest = body(&[&v0, &[1u8], &huge]);
    for bytes in [chunk, manifest] {
        let largest = largest_allocation_of(|| assert!(decode_response(&bytes).is_err()));
        assert!(largest <= MAX_RESPONSE_BYTES, "allocated {largest} bytes");
    }
    // Request::Chunks(<2^40 ids>).
    let req = body(&[&v1, &huge]);
    let largest = largest_allocation_of(|| assert!(decode_request(&req).is_err()));
    assert!(largest <= MAX_REQUEST_BYTES, "allocated {largest} bytes");
    // An announce whose projection claims 2^40 floats.
    let ann = body(&[&[0u8; 32], &one, &one, &METRICS, &huge]);
    let largest = largest_allocation_of(|| assert!(decode_announce(&ann).is_err()));
    assert!(largest <= MAX_ANNOUNCE_BYTES, "allocated {largest} bytes");
}

/// Claims just under the kind's limit pass bincode's limit check, so the decoder must not
/// allocate from them either: a tiny body allocates a few KiB at most. Found by the fuzz
/// targets (fuzz/regressions/response/oom-manifest-bytes-claim-13mb, a 16-byte response that
/// allocated 13 MB for a manifest it did not hold, and
/// fuzz/regressions/manifest/oom-chunk-list-claim-55040, a 57-byte manifest that preallocated
/// 1.7 MB of chunk ids).
#[test]
fn claims_under_the_limit_allocate_only_what_is_there() {
    let _serial = serial();
    const SMALL: usize = 8 * 1024;
    let claim = ((MAX_RESPONSE_BYTES - 64) as u64).to_le_bytes();
    let one = 1u64.to_le_bytes();
    let v0 = 0u32.to_le_bytes();
    let v1 = 1u32.to_le_bytes();
    // Response::Manifest(Some(<16 MiB>)) and Response::Chunks([Data(<16 MiB>)]), 8 bytes each.
    let manifest = body(&[&v0, &[1u8], &claim, b"8 bytes!"]);
    let chunk = body(&[&v1, &one, &v0, &claim, b"8 bytes!"]);
    for bytes in [manifest, chunk] {
        let largest = largest_allocation_of(|| assert!(decode_response(&bytes).is_err()));
        assert!(
            largest <= SMALL,
            "allocated {largest} bytes for {} bytes",
            bytes.len()
        );
    }
    // An announce whose one neighbour claims 4,000 bytes.
    let ann = body(&[
        &[0u8; 32],
        &one,
        &one,
        &METRICS,
        &0u64.to_le_bytes(),
        &one,
        &4000u64.to_le_bytes(),
    ]);
    let largest = largest_allocation_of(|| assert!(decode_announce(&ann).is_err()));
    assert!(largest <= SMALL, "allocated {largest} bytes");

    // Manifests: format 1, F32Le, chunk size 64, total length 4, then a tensor list.
    let head: Vec<u8> = [
        &1u16.to_le_bytes()[..],
        &v0,
        &64u32.to_le_bytes(),
        &4u64.to_le_bytes(),
    ]
    .concat();
    // One tensor whose name claims 4 MiB less a little.
    let name = [
        &head[..],
        &one,
        &((MAX_MANIFEST_BYTES - 256) as u64).to_le_bytes(),
        b"w",
    ]
    .concat();
    // One tensor `w` of shape [1], then a chunk list claiming the limit of 65,536 ids.
    let ids = [
        &head[..],
        &one,
        &one,
        b"w",
        &one,
        &one,
        &v0,
        &(MAX_CHUNKS_PER_MANIFEST as u64).to_le_bytes(),
        &[7u8; 32],
    ]
    .concat();
    for bytes in [name, ids] {
        let id = ManifestId::of(&bytes);
        let largest = largest_allocation_of(|| assert!(decode_manifest(&bytes, &id).is_err()));
        assert!(
            largest <= SMALL,
            "allocated {largest} bytes for {} bytes",
            bytes.len()
        );
    }
}

/// A valid int8 manifest for the largest model (2^29 values, 640 MiB as int8 with block 16)
/// given chunks of one byte each: refused on the first chunk's length, before the stream or
/// the values are allocated.
#[test]
fn assembling_checks_chunk_lengths_before_allocating_the_stream() {
    let _serial = serial();
    let tensors = vec![TensorSpec::f32("w", &[1 << 29])];
    let layout = murmur_protocol::Layout::new(tensors.clone()).unwrap();
    let encoding = Encoding::Int8 { block: 16 };
    let total_len = layout.encoded_len(encoding);
    assert_eq!(total_len, (1 << 29) + (1 << 29) / 4);
    let chunk_size = 4 * 1024 * 1024;
    let count = total_len.div_ceil(chunk_size) as usize;
    let manifest = Manifest {
        format_version: MANIFEST_FORMAT_VERSION,
        encoding,
        chunk_size: chunk_size as u32,
        total_len,
        tensors,
        chunks: vec![ChunkId::from_bytes([7; 32]); count],
    };
    assert!(manifest.validate().is_ok());
    let chunks = vec![Bytes::from_static(&[0]); count];
    let largest = largest_allocation_of(|| {
        assert!(matches!(
            assemble(&manifest, &chunks),
            Err(AssembleError::ChunkLength { index: 0, .. })
        ))
    });
    assert!(largest <= 64 * 1024, "allocated {largest} bytes");
}
