//! `codec::decode_manifest` (manifest bytes served by a peer, or read back from a checkpoint)
//! and, through it, `Manifest::validate` and `Layout::from_sorted`.
//!
//! A manifest is asked for by id, so random bytes would almost never reach the decoder past
//! the hash check: the target asks for the id the bytes do hash to. Properties: never
//! panics; bytes asked for under any other id are refused; what decodes is valid, re-encodes
//! to exactly the same bytes (the id is the hash of the canonical encoding, so this must
//! hold), and `encode_with_id` gives back the id it was asked for.
#![no_main]

use libfuzzer_sys::fuzz_target;
use murmur_protocol::ManifestId;
use murmur_protocol::codec::{decode_manifest, encode_manifest};

fuzz_target!(|data: &[u8]| {
    let id = ManifestId::of(data);
    let mut other = *id.as_bytes();
    other[0] ^= 1;
    assert!(decode_manifest(data, &ManifestId::from_bytes(other)).is_err());

    let Ok(manifest) = decode_manifest(data, &id) else {
        return;
    };
    let layout = manifest.validate().unwrap();
    assert_eq!(layout.encoded_len(manifest.encoding), manifest.total_len);
    assert_eq!(layout.tensors(), &manifest.tensors[..]);
    let bytes = encode_manifest(&manifest).unwrap();
    assert_eq!(bytes, data, "manifest re-encodes differently");
    let (_, again) = manifest.encode_with_id().unwrap();
    assert_eq!(again, id);
    // Every chunk length is in 1..=chunk_size and they add up to total_len.
    let mut total = 0u64;
    for i in 0..manifest.chunks.len() {
        let len = manifest.chunk_len(i);
        assert!(len >= 1 && len <= u64::from(manifest.chunk_size));
        total += len;
    }
    assert_eq!(total, manifest.total_len);
});
