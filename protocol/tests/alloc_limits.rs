//! Measures what decoding hostile bytes allocates, with a counting global allocator (this
//! file is its own test binary, so the allocator sees only this test). A 21-byte response
//! that claims a 1 TiB chunk must not allocate more than its kind's limit.
#![allow(clippy::unwrap_used, clippy::expect_used, unsafe_code)]

use murmur_protocol::codec::{WIRE_VERSION, decode_announce, decode_request, decode_response};
use murmur_protocol::limits::{MAX_ANNOUNCE_BYTES, MAX_REQUEST_BYTES, MAX_RESPONSE_BYTES};
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

fn largest_allocation_of(f: impl FnOnce()) -> usize {
    LARGEST.store(0, Ordering::Relaxed);
    f();
    LARGEST.load(Ordering::Relaxed)
}

fn body(parts: &[&[u8]]) -> Vec<u8> {
    let mut out = vec![WIRE_VERSION];
    for p in parts {
        out.extend_from_slice(p);
    }
    out
}

#[test]
fn hostile_length_claims_allocate_at_most_the_kind_limit() {
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
    let ann = body(&[&[0u8; 32], &one, &one, &[0u8; 32], &huge]);
    let largest = largest_allocation_of(|| assert!(decode_announce(&ann).is_err()));
    assert!(largest <= MAX_ANNOUNCE_BYTES, "allocated {largest} bytes");
}
