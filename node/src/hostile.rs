//! Hostile behaviours, for tests and attack runs only (`murmur run --hostile <behaviour>`, a
//! hidden flag; never on by default). A hostile node trains and averages like any other, so
//! its own model follows the network's; what it announces and serves is derived afresh from
//! that model each round and poisoned as the behaviour says, and it announces in bursts.
//! This module only computes the poisoned model and claims; the node task publishes them.

use bytes::Bytes;
use murmur_protocol::tensor::{Layout, TensorSpec};
use murmur_protocol::{Chunk, ChunkId, FlatParams, Manifest, Snapshot};
use rand::Rng;
use std::str::FromStr;
use std::time::Duration;

/// What a hostile node does.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Hostile {
    /// Announces its model times the factor (`scale:100`).
    Scale(f32),
    /// Announces noise of the same layout and per-tensor spread as its model.
    Random,
    /// Announces its model sign-flipped, claiming `samples = u64::MAX`.
    SamplesMax,
    /// Announces its model sign-flipped, claiming `version = u64::MAX` (the adoption attack).
    VersionMax,
    /// Announces a manifest of `DUP_COPIES` (10,000) copies of one chunk id.
    DupChunks,
    /// Announces its model and accepts every request without ever answering.
    Unservable,
    /// Announces a model of another shape (one extra tensor).
    Layout,
}

/// Copies of one chunk id in a `dup-chunks` manifest.
pub const DUP_COPIES: usize = 10_000;

/// Announcements a hostile node sends per round, [`BURST_EVERY`] apart (each with a higher
/// version, so that gossip does not drop them as duplicates).
pub const BURST: u64 = 10;

/// Time between two announcements of a burst (10 a second).
pub const BURST_EVERY: Duration = Duration::from_millis(100);

impl FromStr for Hostile {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "random" => Hostile::Random,
            "samples-max" => Hostile::SamplesMax,
            "version-max" => Hostile::VersionMax,
            "dup-chunks" => Hostile::DupChunks,
            "unservable" => Hostile::Unservable,
            "layout" => Hostile::Layout,
            _ => match s.strip_prefix("scale:").map(str::parse::<f32>) {
                Some(Ok(k)) if k.is_finite() => Hostile::Scale(k),
                _ => {
                    return Err(format!(
                        "unknown hostile behaviour {s:?}: expected scale:<factor>, random, \
                         samples-max, version-max, dup-chunks, unservable or layout"
                    ));
                }
            },
        })
    }
}

impl std::fmt::Display for Hostile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Hostile::Scale(k) => write!(f, "scale:{k}"),
            Hostile::Random => f.write_str("random"),
            Hostile::SamplesMax => f.write_str("samples-max"),
            Hostile::VersionMax => f.write_str("version-max"),
            Hostile::DupChunks => f.write_str("dup-chunks"),
            Hostile::Unservable => f.write_str("unservable"),
            Hostile::Layout => f.write_str("layout"),
        }
    }
}

impl Hostile {
    /// Every behaviour, as the attack matrix runs them.
    pub const ALL: [Hostile; 7] = [
        Hostile::Scale(100.0),
        Hostile::Random,
        Hostile::SamplesMax,
        Hostile::VersionMax,
        Hostile::DupChunks,
        Hostile::Unservable,
        Hostile::Layout,
    ];

    /// The model to announce and serve instead of `own` (this round's real model); `None`
    /// for [`Hostile::DupChunks`], whose manifest is no model at all.
    pub fn poisoned(
        &self,
        own: &FlatParams,
        rng: &mut impl Rng,
    ) -> anyhow::Result<Option<FlatParams>> {
        Ok(Some(match self {
            Hostile::Scale(k) => map(own, |v| v * k),
            Hostile::SamplesMax | Hostile::VersionMax => map(own, |v| -v),
            Hostile::Random => random_like(own, rng)?,
            Hostile::Unservable => own.clone(),
            Hostile::Layout => {
                let mut named: Vec<(TensorSpec, Vec<f32>)> = own
                    .tensors()
                    .map(|(spec, values)| (spec.clone(), values.to_vec()))
                    .collect();
                named.push((TensorSpec::f32("zz.hostile", &[16]), vec![0.5; 16]));
                FlatParams::from_named(named)?
            }
            Hostile::DupChunks => return Ok(None),
        }))
    }

    /// The snapshot to announce and serve instead of `own` (this round's real model), cut
    /// into `chunk_size` chunks.
    pub fn snapshot(
        &self,
        own: &FlatParams,
        chunk_size: u32,
        rng: &mut impl Rng,
    ) -> anyhow::Result<Snapshot> {
        match self.poisoned(own, rng)? {
            Some(poisoned) => Ok(Snapshot::from_params(poisoned, chunk_size)?),
            None => dup_chunks(),
        }
    }

    /// The `version` and `samples` claimed for the announcement of a round that really has
    /// these.
    pub fn claims(&self, version: u64, samples: u64) -> (u64, u64) {
        match self {
            Hostile::SamplesMax => (version, u64::MAX),
            Hostile::VersionMax => (u64::MAX, samples),
            _ => (version, samples),
        }
    }
}

fn map(own: &FlatParams, f: impl Fn(f32) -> f32) -> FlatParams {
    let mut out = own.clone();
    out.values_mut().iter_mut().for_each(|v| *v = f(*v));
    out
}

/// Uniform noise with each tensor's mean and spread.
fn random_like(own: &FlatParams, rng: &mut impl Rng) -> anyhow::Result<FlatParams> {
    let named = own
        .tensors()
        .map(|(spec, values)| {
            let n = values.len().max(1) as f32;
            let mean = values.iter().sum::<f32>() / n;
            let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / n;
            // Uniform on [-a, a] has variance a^2 / 3.
            let a = (3.0 * var).sqrt().max(1e-3);
            let noise = values
                .iter()
                .map(|_| mean + rng.random_range(-a..=a))
                .collect();
            (spec.clone(), noise)
        })
        .collect();
    Ok(FlatParams::from_named(named)?)
}

/// A manifest of [`DUP_COPIES`] copies of one 64 KiB chunk of zeros (a claimed model of
/// 655 MB), holding that one chunk.
fn dup_chunks() -> anyhow::Result<Snapshot> {
    const CHUNK: u32 = 64 * 1024;
    let data = Bytes::from(vec![0u8; CHUNK as usize]);
    let id = ChunkId::of(&data);
    let values = u64::from(CHUNK) / 4 * DUP_COPIES as u64;
    let layout = Layout::from_sorted(vec![TensorSpec::f32("w", &[values])])?;
    let manifest = Manifest {
        format_version: murmur_protocol::manifest::MANIFEST_FORMAT_VERSION,
        encoding: murmur_protocol::manifest::Encoding::F32Le,
        chunk_size: CHUNK,
        total_len: layout.byte_len(),
        tensors: layout.tensors().to_vec(),
        chunks: vec![id; DUP_COPIES],
    };
    let (bytes, manifest_id) = manifest.encode_with_id()?;
    Ok(Snapshot {
        manifest,
        manifest_bytes: Bytes::from(bytes),
        id: manifest_id,
        chunks: vec![Chunk { id, data }],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn model() -> FlatParams {
        FlatParams::from_named(vec![
            (TensorSpec::f32("a", &[3]), vec![1.0, -2.0, 3.0]),
            (TensorSpec::f32("b", &[1]), vec![0.5]),
        ])
        .unwrap()
    }

    #[test]
    fn names_round_trip_and_unknown_ones_are_refused() {
        for h in Hostile::ALL {
            assert_eq!(h.to_string().parse::<Hostile>(), Ok(h));
        }
        assert!("scale:x".parse::<Hostile>().is_err());
        assert!("scale:inf".parse::<Hostile>().is_err());
        assert!("nice".parse::<Hostile>().is_err());
    }

    #[test]
    fn poisoned_models_are_what_each_behaviour_says() {
        let own = model();
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let params = |h: Hostile, rng: &mut ChaCha8Rng| {
            let s = h.snapshot(&own, 64, rng).unwrap();
            let chunks: Vec<Bytes> = s.chunks.iter().map(|c| c.data.clone()).collect();
            murmur_protocol::assemble(&s.manifest, &chunks).unwrap()
        };
        assert_eq!(
            params(Hostile::Scale(100.0), &mut rng).values(),
            &[100.0, -200.0, 300.0, 50.0]
        );
        assert_eq!(
            params(Hostile::SamplesMax, &mut rng).values(),
            &[-1.0, 2.0, -3.0, -0.5]
        );
        let noise = params(Hostile::Random, &mut rng);
        assert_eq!(noise.layout(), own.layout());
        assert_ne!(noise.values(), own.values());
        assert_ne!(params(Hostile::Layout, &mut rng).layout(), own.layout());
        assert_eq!(Hostile::SamplesMax.claims(3, 7), (3, u64::MAX));
        assert_eq!(Hostile::VersionMax.claims(3, 7), (u64::MAX, 7));
        assert_eq!(Hostile::Random.claims(3, 7), (3, 7));
        let dup = Hostile::DupChunks.snapshot(&own, 64, &mut rng).unwrap();
        assert_eq!(dup.manifest.chunks.len(), DUP_COPIES);
        assert_eq!(dup.chunks.len(), 1);
    }
}
