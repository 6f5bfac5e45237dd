//! Determinism: the same weights give the same bytes and the same ids on every machine, today
//! and after any refactor. The hex strings below were produced once and must never change
//! unless the wire format's version changes (see docs/protocol.md, "Versioning").
#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::Bytes;
use murmur_protocol::codec::{encode_announce, encode_request, encode_response};
use murmur_protocol::{
    Announce, ChunkId, ChunkReply, Encoding, FlatParams, ManifestId, MetricsSummary, Request,
    Response, Snapshot, TensorSpec, assemble, quantize,
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

/// One manifest id per encoding, golden model, chunk size 64 (`F32Le` is the id above).
const GOLDEN_ENCODED: [(Encoding, &str); 4] = [
    (Encoding::F32Le, GOLDEN_MANIFEST_ID),
    (
        Encoding::F16Le,
        "5a31be3bb1ecac93a5e9244ea6a70e964f31d8aa4afa25068a1d8431a2ca0a6f",
    ),
    (
        Encoding::Bf16Le,
        "3c20ada6a2f673d7792a12a3a1e1c79e3e07c3ae75926119110bedfb65470bf1",
    ),
    (
        Encoding::Int8 { block: 16 },
        "79800bad3fea64595ad25144cca94f452e1a23c2bac28509b9c58f460d062d16",
    ),
];

#[test]
fn manifest_id_per_encoding_is_pinned() {
    for (encoding, hex) in GOLDEN_ENCODED {
        let snap = Snapshot::from_params_encoded(golden_model(), encoding, 64).unwrap();
        assert_eq!(snap.manifest.encoding, encoding);
        assert_eq!(
            snap.manifest.total_len,
            snap.manifest.validate().unwrap().encoded_len(encoding)
        );
        assert_eq!(snap.id.to_hex(), hex, "{encoding}");
        let data: Vec<Bytes> = snap.chunks.iter().map(|c| c.data.clone()).collect();
        assert_eq!(
            assemble(&snap.manifest, &data).unwrap(),
            quantize(&golden_model(), encoding).unwrap()
        );
    }
}

/// The byte streams themselves, computed independently of this crate (Python's `struct`:
/// `<e` for f16, bfloat16 by rounding the f32 bits to nearest even, int8 by the formula in
/// docs/protocol.md with f32 arithmetic).
#[test]
fn encoded_streams_are_pinned() {
    let streams = [
        (
            Encoding::F16Le,
            "003000b4003c0043c0c7191400c400c300c200c100c000be00bc00b800000038003c003e00400041004200430044804400458045",
        ),
        (
            Encoding::Bf16Le,
            "003e80be803f6040f8c0833a80c060c040c020c000c0c0bf80bf00bf0000003f803fc03f004020404040604080409040a040b040",
        ),
        // fc.bias: one block of 6 (scale 7.75/127, then 2 -4 16 57 -127 0);
        // fc.weight: a block of 16 (scale 4/127) and a block of 4 (scale 5.5/127).
        (
            Encoding::Int8 { block: 16 },
            "e8f3793d02fc103981000402013d8191a1b1c0d0e0f000102030404f5f6fc662313d5c68737f",
        ),
    ];
    for (encoding, hex) in streams {
        let snap = Snapshot::from_params_encoded(golden_model(), encoding, 64).unwrap();
        let stream: Vec<u8> = snap.chunks.iter().flat_map(|c| c.data.to_vec()).collect();
        assert_eq!(hex::encode(stream), hex, "{encoding}");
    }
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
            train_share: 0.75,
            comm_share: 0.125,
        },
        projection: vec![1.0, -2.0],
        neighbours: vec![Bytes::from_static(&[1, 2, 3])],
    };
    assert_eq!(
        hex::encode(encode_announce(&announce).unwrap()),
        "02abababababababababababababababababababababababababababababababab0700000000000000e8030000000000000000003f0000a03f03000000000000000a0000000000000014000000000000000000403f0000003e02000000000000000000803f000000c001000000000000000300000000000000010203"
    );
}

#[test]
fn request_and_response_bytes_are_pinned() {
    let req = Request::Chunks(vec![ChunkId::from_bytes([0x11; 32])]);
    assert_eq!(
        hex::encode(encode_request(&req).unwrap()),
        "020100000001000000000000001111111111111111111111111111111111111111111111111111111111111111"
    );
    let resp = Response::Chunks(vec![
        ChunkReply::Data(Bytes::from_static(b"hi")),
        ChunkReply::NotHeld,
    ]);
    assert_eq!(
        hex::encode(encode_response(&resp).unwrap()),
        "02010000000200000000000000000000000200000000000000686901000000"
    );
}
