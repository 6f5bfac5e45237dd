//! Tampering: flip any one byte of any chunk or of the manifest and reassembly fails with an
//! error that names what was wrong; nothing corrupted is ever returned as weights. A
//! publisher that hashes bad data consistently (an int8 scale that is negative or not
//! finite, a length that does not fit the encoding, a block size out of limits) is refused
//! too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::Bytes;
use murmur_protocol::chunking::{SnapshotError, chunk_stream};
use murmur_protocol::codec::{decode_manifest, encode_manifest};
use murmur_protocol::limits::{MAX_INT8_BLOCK, MIN_INT8_BLOCK};
use murmur_protocol::{
    AssembleError, DecodeError, Encoding, FlatParams, Manifest, ManifestError, QuantizeError,
    Snapshot, TensorSpec, assemble,
};

fn model() -> FlatParams {
    let values: Vec<f32> = (0..300).map(|i| (i as f32).sin()).collect();
    FlatParams::from_named(vec![
        (TensorSpec::f32("a", &[100]), values[..100].to_vec()),
        (TensorSpec::f32("b", &[20, 10]), values[100..].to_vec()),
    ])
    .unwrap()
}

#[test]
fn every_flipped_chunk_byte_is_caught_and_named() {
    let snap = Snapshot::build(&model(), 256).unwrap();
    let clean: Vec<Bytes> = snap.chunks.iter().map(|c| c.data.clone()).collect();
    assert_eq!(assemble(&snap.manifest, &clean).unwrap(), model());
    for index in 0..clean.len() {
        for pos in 0..clean[index].len() {
            let mut chunks = clean.clone();
            let mut bad = chunks[index].to_vec();
            bad[pos] ^= 0x01;
            chunks[index] = Bytes::from(bad);
            match assemble(&snap.manifest, &chunks) {
                Err(AssembleError::ChunkHash {
                    index: i,
                    expected,
                    actual,
                }) => {
                    assert_eq!(i, index);
                    assert_eq!(expected, snap.chunks[index].id);
                    assert_ne!(actual, expected);
                    let msg = AssembleError::ChunkHash {
                        index: i,
                        expected,
                        actual,
                    }
                    .to_string();
                    assert!(msg.contains(&format!("chunk #{index}")), "{msg}");
                }
                other => panic!("chunk {index} byte {pos}: expected a hash error, got {other:?}"),
            }
        }
    }
}

#[test]
fn truncated_or_missing_chunks_are_caught() {
    let snap = Snapshot::build(&model(), 256).unwrap();
    let mut chunks: Vec<Bytes> = snap.chunks.iter().map(|c| c.data.clone()).collect();
    chunks[1] = chunks[1].slice(..10);
    assert!(matches!(
        assemble(&snap.manifest, &chunks),
        Err(AssembleError::ChunkLength {
            index: 1,
            expected: 256,
            got: 10,
            ..
        })
    ));
    chunks.pop();
    assert!(matches!(
        assemble(&snap.manifest, &chunks),
        Err(AssembleError::ChunkCount { .. })
    ));
}

#[test]
fn every_flipped_manifest_byte_is_caught() {
    let snap = Snapshot::build(&model(), 256).unwrap();
    assert_eq!(
        decode_manifest(&snap.manifest_bytes, &snap.id).unwrap(),
        snap.manifest
    );
    for pos in 0..snap.manifest_bytes.len() {
        let mut bad = snap.manifest_bytes.to_vec();
        bad[pos] ^= 0x80;
        match decode_manifest(&bad, &snap.id) {
            Err(DecodeError::ManifestId { expected, actual }) => {
                assert_eq!(expected, snap.id);
                assert_ne!(actual, snap.id);
            }
            other => panic!("manifest byte {pos}: expected an id mismatch, got {other:?}"),
        }
    }
}

/// The stream of `snap`, rewritten by `edit`, re-chunked and re-hashed into a manifest that
/// matches it: what a dishonest publisher could serve.
fn republish(snap: &Snapshot, edit: impl FnOnce(&mut Vec<u8>)) -> (Manifest, Vec<Bytes>) {
    let mut stream: Vec<u8> = snap.chunks.iter().flat_map(|c| c.data.to_vec()).collect();
    edit(&mut stream);
    let chunks = chunk_stream(&Bytes::from(stream), snap.manifest.chunk_size as usize);
    let mut manifest = snap.manifest.clone();
    manifest.total_len = chunks.iter().map(|c| c.data.len() as u64).sum();
    manifest.chunks = chunks.iter().map(|c| c.id).collect();
    (manifest, chunks.into_iter().map(|c| c.data).collect())
}

#[test]
fn bad_int8_scales_and_values_are_refused() {
    let encoding = Encoding::Int8 { block: 16 };
    let snap = Snapshot::from_params_encoded(model(), encoding, 256).unwrap();
    // Tensor `a` has 100 values: 7 blocks of 20 bytes (6 whole, one of 4 values); block 2 of
    // tensor `a` starts at byte 40, block 1 of tensor `b` at 100 + 7 * 4 + 20 = 148.
    let (m, c) = republish(&snap, |_| {});
    assert_eq!(m, snap.manifest);
    assert!(assemble(&m, &c).is_ok());
    for (at, tensor, block) in [(40, "a", 2), (148, "b", 1)] {
        for scale in [
            -1.0f32,
            -0.0,
            f32::NAN,
            f32::INFINITY,
            f32::MAX,
            f32::MAX / 100.0,
        ] {
            let (m, c) = republish(&snap, |s| {
                s[at..at + 4].copy_from_slice(&scale.to_le_bytes())
            });
            match assemble(&m, &c) {
                Err(e @ AssembleError::BadScale { .. }) => {
                    assert_eq!(
                        e,
                        AssembleError::BadScale {
                            tensor: tensor.into(),
                            block,
                            scale_bits: scale.to_bits()
                        }
                    );
                    assert!(e.to_string().contains(&format!("block #{block}")), "{e}");
                }
                other => panic!("scale {scale} at {at}: {other:?}"),
            }
        }
    }
    // The largest scale whose 127 multiple is finite is accepted.
    let (m, c) = republish(&snap, |s| {
        s[40..44].copy_from_slice(&(f32::MAX / 127.0 * 0.999).to_le_bytes())
    });
    assert!(assemble(&m, &c).unwrap().all_finite());
    // -128 is outside the quantized range: value 5 of block 2 of `a` is value #37.
    let (m, c) = republish(&snap, |s| s[40 + 4 + 5] = 0x80);
    assert_eq!(
        assemble(&m, &c),
        Err(AssembleError::Int8Value {
            tensor: "a".into(),
            index: 37
        })
    );
}

#[test]
fn a_length_that_does_not_fit_the_encoding_is_refused() {
    // f32 chunks under a manifest that says f16 (and the reverse).
    for (built, claimed) in [
        (Encoding::F32Le, Encoding::F16Le),
        (Encoding::F16Le, Encoding::F32Le),
        (Encoding::Bf16Le, Encoding::Int8 { block: 16 }),
        (Encoding::Int8 { block: 16 }, Encoding::Int8 { block: 32 }),
    ] {
        let snap = Snapshot::from_params_encoded(model(), built, 256).unwrap();
        let mut manifest = snap.manifest.clone();
        manifest.encoding = claimed;
        let layout = manifest.validate().err();
        assert!(
            matches!(layout, Some(ManifestError::TotalLen { manifest, .. }) if manifest == snap.manifest.total_len),
            "{built} as {claimed}: {layout:?}"
        );
        let chunks: Vec<Bytes> = snap.chunks.iter().map(|c| c.data.clone()).collect();
        assert!(matches!(
            assemble(&manifest, &chunks),
            Err(AssembleError::Manifest(ManifestError::TotalLen { .. }))
        ));
    }
}

#[test]
fn int8_block_sizes_outside_the_limits_are_refused() {
    let snap = Snapshot::from_params_encoded(model(), Encoding::Int8 { block: 16 }, 256).unwrap();
    for block in [0, 1, MIN_INT8_BLOCK - 1, MAX_INT8_BLOCK + 1, u32::MAX] {
        let expected = ManifestError::Int8Block {
            got: block,
            min: MIN_INT8_BLOCK,
            max: MAX_INT8_BLOCK,
        };
        let mut manifest = snap.manifest.clone();
        manifest.encoding = Encoding::Int8 { block };
        assert_eq!(manifest.validate(), Err(expected.clone()));
        // Decoding such manifest bytes refuses them too.
        assert!(encode_manifest(&manifest).is_err());
        let mut bytes = snap.manifest_bytes.to_vec();
        bytes[6..10].copy_from_slice(&block.to_le_bytes());
        let id = murmur_protocol::ManifestId::of(&bytes);
        assert!(matches!(
            decode_manifest(&bytes, &id),
            Err(DecodeError::Invalid { .. })
        ));
        match Snapshot::from_params_encoded(model(), Encoding::Int8 { block }, 256) {
            Err(SnapshotError::Quantize(QuantizeError::Encoding(e))) => assert_eq!(e, expected),
            other => panic!("block {block}: {other:?}"),
        }
    }
    for block in [MIN_INT8_BLOCK, MAX_INT8_BLOCK] {
        let snap = Snapshot::from_params_encoded(model(), Encoding::Int8 { block }, 256).unwrap();
        assert!(snap.manifest.validate().is_ok());
    }
}
