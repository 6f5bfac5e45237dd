//! Tampering: flip any one byte of any chunk or of the manifest and reassembly fails with an
//! error that names what was wrong; nothing corrupted is ever returned as weights.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::Bytes;
use murmur_protocol::codec::decode_manifest;
use murmur_protocol::{AssembleError, DecodeError, FlatParams, Snapshot, TensorSpec, assemble};

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
