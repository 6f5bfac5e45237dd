//! Seeded weight initialization. candle's CPU RNG cannot be seeded, so weights are drawn here
//! from a ChaCha8 stream: the same seed gives the same weights on every machine.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The RNG that initializes a model.
pub(super) fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

/// `n` values uniform in ±1/sqrt(fan_in): PyTorch's default for linear and conv layers
/// (kaiming-uniform with a = sqrt(5) for weights, the same bound for biases).
pub(super) fn uniform_fan_in(rng: &mut ChaCha8Rng, n: usize, fan_in: usize) -> Vec<f32> {
    let bound = 1.0 / (fan_in.max(1) as f32).sqrt();
    (0..n).map(|_| rng.random_range(-bound..bound)).collect()
}
