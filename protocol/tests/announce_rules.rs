//! Announce sanity rules: every metric a decoded announcement carries out of its range is
//! refused by `decode_announce` (and by `encode_announce`), with a reason naming the field.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use murmur_protocol::codec::{decode_announce, encode_announce};
use murmur_protocol::{Announce, DecodeError, EncodeError, ManifestId, MetricsSummary};

fn announce() -> Announce {
    Announce {
        manifest: ManifestId::from_bytes([1; 32]),
        version: 1,
        samples: 10,
        metrics: MetricsSummary {
            accuracy: 0.5,
            loss: 0.5,
            merges: 0,
            bytes_sent: 0,
            bytes_received: 0,
            train_share: 0.5,
            comm_share: 0.5,
        },
        projection: vec![],
        neighbours: vec![],
    }
}

/// Byte offset of each `f32` metric in an encoded announce: wire version, manifest id,
/// version, samples, then the metrics in field order.
const FIELDS: [(&str, usize); 4] = [
    ("accuracy", 1 + 32 + 8 + 8),
    ("loss", 1 + 32 + 8 + 8 + 4),
    ("train_share", 1 + 32 + 8 + 8 + 4 + 4 + 3 * 8),
    ("comm_share", 1 + 32 + 8 + 8 + 4 + 4 + 3 * 8 + 4),
];

fn set(a: &mut Announce, field: &str, v: f32) {
    let m = &mut a.metrics;
    match field {
        "accuracy" => m.accuracy = v,
        "loss" => m.loss = v,
        "train_share" => m.train_share = v,
        "comm_share" => m.comm_share = v,
        _ => unreachable!(),
    }
}

#[test]
fn offsets_point_at_the_fields() {
    let bytes = encode_announce(&announce()).unwrap();
    for (field, at) in FIELDS {
        let mut a = announce();
        set(&mut a, field, 0.25);
        let mut patched = bytes.clone();
        patched[at..at + 4].copy_from_slice(&0.25f32.to_le_bytes());
        assert_eq!(encode_announce(&a).unwrap(), patched, "{field}");
    }
}

#[test]
fn out_of_range_metrics_are_refused() {
    let bytes = encode_announce(&announce()).unwrap();
    for (field, at) in FIELDS {
        let mut bad = vec![-0.01f32, f32::NAN, f32::INFINITY, f32::NEG_INFINITY];
        if field != "loss" {
            bad.push(1.01);
        }
        for v in bad {
            let mut patched = bytes.clone();
            patched[at..at + 4].copy_from_slice(&v.to_le_bytes());
            match decode_announce(&patched) {
                Err(DecodeError::Invalid { reason, .. }) => {
                    assert!(reason.starts_with(field), "{field} = {v}: {reason}")
                }
                other => panic!("{field} = {v}: {other:?}"),
            }
            let mut a = announce();
            set(&mut a, field, v);
            assert!(matches!(
                encode_announce(&a),
                Err(EncodeError::Invalid { .. })
            ));
        }
        // The ends of each range are accepted.
        let ends: &[f32] = if field == "loss" {
            &[0.0, 1e30]
        } else {
            &[0.0, 1.0]
        };
        for &v in ends {
            let mut a = announce();
            set(&mut a, field, v);
            assert_eq!(decode_announce(&encode_announce(&a).unwrap()).unwrap(), a);
        }
    }
}
