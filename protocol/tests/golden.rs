//! Determinism: the same weights give the same bytes and the same ids on every machine, today
//! and after any refactor. The hex strings below were produced once and must never change
//! unless the wire format's version changes (see docs/protocol.md, "Versioning").
#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::Bytes;
use murmur_protocol::codec::{encode_announce, encode_request, encode_response};
use murmur_protocol::{
    Announce, ChunkId, ChunkReply, FlatParams, ManifestId, MetricsSummary, Request, Response,
    Snapshot, TensorSpec,
};

/// A fixed small model: two tensors given out of canonical order, 26 values, 104 bytes.
fn golden_model() -> FlatParams {
    let w: Vec<f32> = (0..20).map(|i| i as f32 * 0.5 - 4.0).collect();
    let b: Vec<f32> = vec![0.125, -0.25, 1.0, 3.5, -7.75, 1e-3];
    FlatParams::from_named(vec![
        (TensorSpec::f32("fc.weight", &[2, 10]), w),
        (TensorSpec::f32("fc.bias", &[6]), b),
    ])
    .unwrap()
}

const GOLDEN_MANIFEST_ID: &str = "8b60c2938bd75341e960d70db5a81df880bda0c32798a97d9e691e2e593df4d8";
const GOLDEN_CHUNK_0: &str = "4a14e2d2dea4b616e15e6cabd091a18a04372e77c2c7f0a2a2070f763d97e932";

#[test]
fn manifest_id_is_pinned() {
    let snap = Snapshot::build(&golden_model(), 64).unwrap();
    assert_eq!(snap.chunks.len(), 2);
    assert_eq!(snap.chunks[0].id.to_hex(), GOLDEN_CHUNK_0);
    assert_eq!(snap.id.to_hex(), GOLDEN_MANIFEST_ID);
    // Building twice, or from tensors given in another order, changes nothing.
    let again = Snapshot::build(&golden_model(), 64).unwrap();
    assert_eq!(again.id, snap.id);
    assert_eq!(again.manifest_bytes, snap.manifest_bytes);
}

#[test]
fn manifest_bytes_are_pinned() {
    let snap = Snapshot::build(&golden_model(), 64).unwrap();
    assert_eq!(
        hex::encode(&snap.manifest_bytes),
        "0100000000004000000068000000000000000200000000000000070000000000000066632e626961730100000000000000060000000000000000000000090000000000000066632e776569676874020000000000000002000000000000000a000000000000000000000002000000000000004a14e2d2dea4b616e15e6cabd091a18a04372e77c2c7f0a2a2070f763d97e93235c85c5abb9feef1ad6a5309635bec1db9ce95d66acd686913b25fa928b53e4f"
    );
}

#[test]
fn announce_bytes_are_pinned() {
    let announce = Announce {
        manifest: ManifestId::from_bytes([0xAB; 32]),
        version: 7,
        samples: 1_000,
        metrics: MetricsSummary {
            accuracy: 0.5,
            loss: 1.25,
            merges: 3,
            bytes_sent: 10,
            bytes_received: 20,
        },
        projection: vec![1.0, -2.0],
        neighbours: vec![Bytes::from_static(&[1, 2, 3])],
    };
    assert_eq!(
        hex::encode(encode_announce(&announce).unwrap()),
        "01abababababababababababababababababababababababababababababababab0700000000000000e8030000000000000000003f0000a03f03000000000000000a00000000000000140000000000000002000000000000000000803f000000c001000000000000000300000000000000010203"
    );
}

#[test]
fn request_and_response_bytes_are_pinned() {
    let req = Request::Chunks(vec![ChunkId::from_bytes([0x11; 32])]);
    assert_eq!(
        hex::encode(encode_request(&req).unwrap()),
        "010100000001000000000000001111111111111111111111111111111111111111111111111111111111111111"
    );
    let resp = Response::Chunks(vec![
        ChunkReply::Data(Bytes::from_static(b"hi")),
        ChunkReply::NotHeld,
    ]);
    assert_eq!(
        hex::encode(encode_response(&resp).unwrap()),
        "01010000000200000000000000000000000200000000000000686901000000"
    );
}
