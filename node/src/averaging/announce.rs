//! What a peer says about a round it publishes: one builder of the [`Announce`] message,
//! used by the node task and by the simulator, so both announce the same claims with the
//! same clamps (accuracy and shares in `0..=1`, a finite non-negative loss). A hostile peer
//! (tests and attack runs only) lies here about its version or samples. Pure: it must not
//! touch the network or a model.

use crate::hostile::Hostile;
use murmur_protocol::Announce;

/// The announcement of a published round, as it goes out: `round` with its claims replaced
/// by a hostile peer's lies (version or samples), each metric clamped to what the protocol
/// allows (accuracy and shares in `0..=1`, a finite non-negative loss) and at most
/// [`murmur_protocol::limits::MAX_ANNOUNCED_NEIGHBOURS`] neighbours.
pub fn announcement(mut round: Announce, hostile: Option<Hostile>) -> Announce {
    if let Some(h) = hostile {
        (round.version, round.samples) = h.claims(round.version, round.samples);
    }
    let m = &mut round.metrics;
    m.accuracy = m.accuracy.clamp(0.0, 1.0);
    m.loss = if m.loss.is_finite() {
        m.loss.max(0.0)
    } else {
        0.0
    };
    m.train_share = m.train_share.clamp(0.0, 1.0);
    m.comm_share = m.comm_share.clamp(0.0, 1.0);
    round
        .neighbours
        .truncate(murmur_protocol::limits::MAX_ANNOUNCED_NEIGHBOURS);
    round
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use murmur_protocol::{ManifestId, MetricsSummary};

    #[test]
    fn metrics_are_clamped_and_a_hostile_peer_lies_about_its_claims() {
        let round = Announce {
            manifest: ManifestId::of(b"m"),
            version: 7,
            samples: 500,
            metrics: MetricsSummary {
                accuracy: 1.5,
                loss: f32::NAN,
                merges: 3,
                bytes_sent: 1,
                bytes_received: 2,
                train_share: -0.5,
                comm_share: 2.0,
            },
            projection: Vec::new(),
            neighbours: vec![Bytes::from_static(b"x"); 100],
        };
        let a = announcement(round.clone(), None);
        assert_eq!((a.version, a.samples), (7, 500));
        assert_eq!(a.metrics.accuracy, 1.0);
        assert_eq!(a.metrics.loss, 0.0);
        assert_eq!((a.metrics.train_share, a.metrics.comm_share), (0.0, 1.0));
        assert_eq!(
            a.neighbours.len(),
            murmur_protocol::limits::MAX_ANNOUNCED_NEIGHBOURS
        );
        let mut negative = round.clone();
        negative.metrics.loss = -3.0;
        assert_eq!(announcement(negative, None).metrics.loss, 0.0);
        let a = announcement(round.clone(), Some(Hostile::SamplesMax));
        assert_eq!((a.version, a.samples), (7, u64::MAX));
        let a = announcement(round, Some(Hostile::VersionMax));
        assert_eq!((a.version, a.samples), (u64::MAX, 500));
    }
}
