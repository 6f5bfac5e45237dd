//! What a peer says about a round it publishes: one builder of the [`Announce`] message,
//! used by the node task and by the simulator, so both announce the same claims with the
//! same clamps (accuracy and shares in `0..=1`, a finite non-negative loss). A hostile peer
//! (tests and attack runs only) lies here about its version or samples. Pure: it must not
//! touch the network or a model.

use crate::hostile::Hostile;
use bytes::Bytes;
use murmur_protocol::{Announce, ManifestId, MetricsSummary};

/// A published round, as its peer announces it.
#[derive(Debug, Clone)]
pub struct Published {
    pub manifest: ManifestId,
    pub version: u64,
    /// Training samples folded into the model.
    pub samples: u64,
    /// The evaluation published with the round.
    pub accuracy: f32,
    pub loss: f32,
    /// The peer's counters so far.
    pub merges: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub train_share: f32,
    pub comm_share: f32,
    /// The model's fixed random projection (empty where none is computed).
    pub projection: Vec<f32>,
    /// Peer ids of connected peers, as bytes.
    pub neighbours: Vec<Bytes>,
}

impl Published {
    /// The announcement: the round's claims (a hostile peer's lies in place of its version
    /// or samples), each metric clamped to what the protocol allows.
    pub fn announce(self, hostile: Option<Hostile>) -> Announce {
        let (version, samples) = match hostile {
            Some(h) => h.claims(self.version, self.samples),
            None => (self.version, self.samples),
        };
        Announce {
            manifest: self.manifest,
            version,
            samples,
            metrics: MetricsSummary {
                accuracy: self.accuracy.clamp(0.0, 1.0),
                loss: if self.loss.is_finite() {
                    self.loss.max(0.0)
                } else {
                    0.0
                },
                merges: self.merges,
                bytes_sent: self.bytes_sent,
                bytes_received: self.bytes_received,
                train_share: self.train_share.clamp(0.0, 1.0),
                comm_share: self.comm_share.clamp(0.0, 1.0),
            },
            projection: self.projection,
            neighbours: self
                .neighbours
                .into_iter()
                .take(murmur_protocol::limits::MAX_ANNOUNCED_NEIGHBOURS)
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_are_clamped_and_a_hostile_peer_lies_about_its_claims() {
        let round = Published {
            manifest: ManifestId::of(b"m"),
            version: 7,
            samples: 500,
            accuracy: 1.5,
            loss: f32::NAN,
            merges: 3,
            bytes_sent: 1,
            bytes_received: 2,
            train_share: -0.5,
            comm_share: 2.0,
            projection: Vec::new(),
            neighbours: vec![Bytes::from_static(b"x"); 100],
        };
        let a = round.clone().announce(None);
        assert_eq!((a.version, a.samples), (7, 500));
        assert_eq!(a.metrics.accuracy, 1.0);
        assert_eq!(a.metrics.loss, 0.0);
        assert_eq!((a.metrics.train_share, a.metrics.comm_share), (0.0, 1.0));
        assert_eq!(
            a.neighbours.len(),
            murmur_protocol::limits::MAX_ANNOUNCED_NEIGHBOURS
        );
        let negative = Published {
            loss: -3.0,
            ..round.clone()
        };
        assert_eq!(negative.announce(None).metrics.loss, 0.0);
        let a = round.clone().announce(Some(Hostile::SamplesMax));
        assert_eq!((a.version, a.samples), (7, u64::MAX));
        let a = round.announce(Some(Hostile::VersionMax));
        assert_eq!((a.version, a.samples), (u64::MAX, 500));
    }
}
