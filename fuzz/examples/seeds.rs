//! Writes the seed corpus (`fuzz/corpus/<target>/`): a few valid encodings of every kind,
//! made by the protocol crate's own encoders. Run from `fuzz/`:
//! `cargo run --example seeds` (plain build, no fuzzing flags needed).
//! The `assemble` target's inputs are `arbitrary`-structured, not an encoding: its seeds are
//! a few inputs kept from the long run (`cargo fuzz cmin`), not written here.

use bytes::Bytes;
use murmur_protocol::codec::{encode_announce, encode_request, encode_response, frame_prefix};
use murmur_protocol::limits::{
    MAX_ANNOUNCED_NEIGHBOURS, MAX_CHUNKS_PER_REQUEST, MAX_PROJECTION_DIMS,
};
use murmur_protocol::{
    Announce, ChunkId, ChunkReply, FlatParams, ManifestId, MetricsSummary, Request, Response,
    Snapshot, TensorSpec,
};
use std::fs;
use std::path::Path;

fn model(tensors: &[(&str, &[u64])], scale: f32) -> FlatParams {
    FlatParams::from_named(
        tensors
            .iter()
            .map(|(name, shape)| {
                let spec = TensorSpec::f32(*name, shape);
                let n = spec.numel().unwrap_or(0) as usize;
                (spec, (0..n).map(|i| i as f32 * scale - 1.0).collect())
            })
            .collect(),
    )
    .unwrap()
}

fn write(target: &str, name: &str, bytes: &[u8]) {
    let dir = Path::new("corpus").join(target);
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join(name), bytes).unwrap();
}

fn main() {
    // Manifests: the golden model of protocol/tests/golden.rs (two tensors, chunk size 64,
    // a float straddling nothing) and a three-tensor model cut at 70 bytes.
    let golden = Snapshot::build(
        &model(&[("fc.weight", &[2, 10]), ("fc.bias", &[6])], 0.5),
        64,
    )
    .unwrap();
    let odd = Snapshot::build(
        &model(
            &[("a", &[3, 3]), ("b.bias", &[5]), ("conv.w", &[2, 1, 2, 2])],
            0.25,
        ),
        70,
    )
    .unwrap();
    write("manifest", "golden", &golden.manifest_bytes);
    write("manifest", "three-tensors-chunk-70", &odd.manifest_bytes);
    // The same model in every other encoding (int8 with its smallest block).
    let params = model(&[("fc.weight", &[2, 10]), ("fc.bias", &[6])], 0.5);
    for (name, encoding) in [
        ("golden-f16", murmur_protocol::Encoding::F16Le),
        ("golden-bf16", murmur_protocol::Encoding::Bf16Le),
        ("golden-int8", murmur_protocol::Encoding::Int8 { block: 16 }),
    ] {
        let snap = Snapshot::from_params_encoded(params.clone(), encoding, 64).unwrap();
        write("manifest", name, &snap.manifest_bytes);
    }

    let announce = Announce {
        manifest: golden.id,
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
    let full = Announce {
        projection: (0..MAX_PROJECTION_DIMS).map(|i| i as f32 - 30.0).collect(),
        neighbours: (0..MAX_ANNOUNCED_NEIGHBOURS)
            .map(|i| Bytes::from(vec![i as u8; 38]))
            .collect(),
        ..announce.clone()
    };
    let empty = Announce {
        projection: vec![],
        neighbours: vec![],
        metrics: MetricsSummary::default(),
        ..announce.clone()
    };
    for (name, a) in [("golden", &announce), ("full", &full), ("empty", &empty)] {
        write("announce", name, &encode_announce(a).unwrap());
    }

    let requests = [
        ("manifest", Request::Manifest(golden.id)),
        (
            "one-chunk",
            Request::Chunks(vec![ChunkId::from_bytes([0x11; 32])]),
        ),
        (
            "full",
            Request::Chunks(
                (0..MAX_CHUNKS_PER_REQUEST)
                    .map(|i| ChunkId::from_bytes([i as u8; 32]))
                    .collect(),
            ),
        ),
    ];
    let responses = [
        (
            "manifest",
            Response::Manifest(Some(golden.manifest_bytes.clone())),
        ),
        ("no-manifest", Response::Manifest(None)),
        (
            "chunks",
            Response::Chunks(vec![
                ChunkReply::Data(golden.chunks[1].data.clone()),
                ChunkReply::NotHeld,
                ChunkReply::OverBudget,
            ]),
        ),
        ("busy", Response::Busy),
    ];
    for (name, r) in &requests {
        let body = encode_request(r).unwrap();
        write("request", name, &body);
        for mode in [0u8, 6] {
            let mut frame = vec![mode];
            frame.extend_from_slice(&frame_prefix(body.len()));
            frame.extend_from_slice(&body);
            write("frame", &format!("request-{name}-{mode}"), &frame);
        }
    }
    for (name, r) in &responses {
        let body = encode_response(r).unwrap();
        write("response", name, &body);
        for mode in [1u8, 7] {
            let mut frame = vec![mode];
            frame.extend_from_slice(&frame_prefix(body.len()));
            frame.extend_from_slice(&body);
            write("frame", &format!("response-{name}-{mode}"), &frame);
        }
    }

    write("content_id", "manifest-id", golden.id.to_hex().as_bytes());
    write(
        "content_id",
        "upper-case",
        golden.chunks[0].id.to_hex().to_uppercase().as_bytes(),
    );
    write(
        "content_id",
        "short",
        ManifestId::of(b"x").short().as_bytes(),
    );
}
