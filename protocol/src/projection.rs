//! A fixed random projection of a model's weights, carried in every announcement so that any
//! peer can estimate how far apart all models are (the consensus distance) without fetching a
//! single chunk.
//!
//! Each of the `dims` output coordinates is `Σ_i r_i · w_i / sqrt(dims)` with signs `r_i = ±1`
//! drawn from a blake3 stream keyed by the network's seed, so every peer of a network uses
//! the same projection. With random signs, `E ||P a - P b||² = ||a - b||²`: distances between
//! projections are unbiased estimates of distances between models.

/// Projection size carried in announcements (at most `limits::MAX_PROJECTION_DIMS`). 32 sign
/// bits are drawn per weight, one `u32` per weight.
pub const PROJECTION_DIMS: usize = 32;

/// Weights per batch of random words read from the stream.
const BLOCK: usize = 4096;

/// Projects `values` to [`PROJECTION_DIMS`] coordinates with the signs of `seed`.
pub fn project(values: &[f32], seed: &[u8]) -> Vec<f32> {
    let mut stream = blake3::Hasher::new_derive_key("murmur 2026 weight projection v1")
        .update(seed)
        .finalize_xof();
    let mut acc = [0f64; PROJECTION_DIMS];
    let mut words = [0u8; BLOCK * 4];
    for block in values.chunks(BLOCK) {
        let bytes = &mut words[..block.len() * 4];
        stream.fill(bytes);
        // Branch-free so that the compiler vectorizes across the 32 coordinates: a clear
        // sign bit flips the weight's sign. Each block sums in f32, blocks in f64.
        let mut part = [0f32; PROJECTION_DIMS];
        for (w, signs) in block.iter().zip(bytes.chunks_exact(4)) {
            let bits = !u32::from_le_bytes([signs[0], signs[1], signs[2], signs[3]]);
            let w = w.to_bits();
            for (d, p) in part.iter_mut().enumerate() {
                *p += f32::from_bits(w ^ ((bits >> d & 1) << 31));
            }
        }
        for (a, p) in acc.iter_mut().zip(part) {
            *a += f64::from(p);
        }
    }
    let scale = 1.0 / (PROJECTION_DIMS as f64).sqrt();
    acc.iter().map(|a| (a * scale) as f32).collect()
}

/// The consensus distance of a set of models from their projections: the mean squared
/// distance of each model to the mean model, `(1/n) Σ ||w_i - w̄||²`. Projections of other
/// lengths than the first are skipped. `None` for fewer than two models.
pub fn consensus_distance<'a>(projections: impl IntoIterator<Item = &'a [f32]>) -> Option<f64> {
    let all: Vec<&[f32]> = projections.into_iter().collect();
    let dims = all.first()?.len();
    let all: Vec<&[f32]> = all.into_iter().filter(|p| p.len() == dims).collect();
    if all.len() < 2 || dims == 0 {
        return None;
    }
    let n = all.len() as f64;
    let mut mean = vec![0f64; dims];
    for p in &all {
        for (m, v) in mean.iter_mut().zip(p.iter()) {
            *m += f64::from(*v) / n;
        }
    }
    let total: f64 = all
        .iter()
        .map(|p| {
            p.iter()
                .zip(&mean)
                .map(|(v, m)| (f64::from(*v) - m).powi(2))
                .sum::<f64>()
        })
        .sum();
    Some(total / n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vector(n: usize, k: u32) -> Vec<f32> {
        (0..n)
            .map(|i| (((i as u32).wrapping_mul(2654435761) ^ k) % 1000) as f32 / 1000.0 - 0.5)
            .collect()
    }

    #[test]
    fn deterministic_and_seed_dependent() {
        let w = vector(10_000, 1);
        assert_eq!(project(&w, b"net-a"), project(&w, b"net-a"));
        assert_ne!(project(&w, b"net-a"), project(&w, b"net-b"));
        assert_eq!(project(&w, b"net-a").len(), PROJECTION_DIMS);
    }

    #[test]
    fn projected_distances_estimate_true_distances() {
        let (a, b) = (vector(50_000, 1), vector(50_000, 2));
        let true_sq: f64 = a
            .iter()
            .zip(&b)
            .map(|(x, y)| f64::from(x - y).powi(2))
            .sum();
        let (pa, pb) = (project(&a, b"s"), project(&b, b"s"));
        let est: f64 = pa
            .iter()
            .zip(&pb)
            .map(|(x, y)| f64::from(x - y).powi(2))
            .sum();
        // 32 coordinates: the estimate's relative standard deviation is about sqrt(2/32) = 0.25.
        assert!(
            (est / true_sq - 1.0).abs() < 0.75,
            "estimate {est}, true {true_sq}"
        );
    }

    #[test]
    fn consensus_distance_is_zero_for_equal_models_and_grows_with_spread() {
        let w = vector(1000, 3);
        let p = project(&w, b"s");
        assert_eq!(consensus_distance([p.as_slice(), p.as_slice()]), Some(0.0));
        let near: Vec<f32> = w.iter().map(|x| x + 0.001).collect();
        let far: Vec<f32> = w.iter().map(|x| x + 0.1).collect();
        let (pn, pf) = (project(&near, b"s"), project(&far, b"s"));
        let d_near = consensus_distance([p.as_slice(), pn.as_slice()]).unwrap();
        let d_far = consensus_distance([p.as_slice(), pf.as_slice()]).unwrap();
        assert!(d_far > 100.0 * d_near);
        assert_eq!(consensus_distance([p.as_slice()]), None);
    }
}
