//! The held-back examples a trainer checks partner models on, kept as ready tensors in
//! [`PARTS`] parts of a random order, so that a check can look at one part first (a screen)
//! and at the rest only when it must ([`super::merge`] decides when).
//!
//! It owns those tensors and the loss arithmetic over them; it must not touch the model's
//! weights (the [`super::Trainer`] swaps them in and out around a measurement).

use crate::data::Split;
use candle_core::{Device, Tensor};

/// Parts the held-back examples are cut into (fewer when there are fewer examples).
pub const PARTS: usize = 4;

/// A loss summed over some held-back examples, and how many.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LossSum {
    pub sum: f64,
    pub count: usize,
}

impl LossSum {
    /// The mean (`NaN` over no example, which every bound refuses).
    pub fn mean(self) -> f32 {
        if self.count == 0 {
            return f32::NAN;
        }
        (self.sum / self.count as f64) as f32
    }

    /// Both sums together.
    pub fn plus(self, other: LossSum) -> LossSum {
        LossSum {
            sum: self.sum + other.sum,
            count: self.count + other.count,
        }
    }
}

/// The held-back examples, in parts of a random order.
#[derive(Debug)]
pub struct Holdout {
    /// Features `(n, dim)` and labels `(n,)` of each part.
    parts: Vec<(Tensor, Tensor)>,
    len: usize,
}

impl Holdout {
    /// `split`'s rows, whose order must already be random (each part is a random sample),
    /// cut into at most [`PARTS`] parts of near-equal size.
    pub fn new(split: &Split) -> candle_core::Result<Self> {
        let mut parts = Vec::new();
        if split.len > 0 {
            let per = split.len.div_ceil(PARTS.min(split.len));
            for (xs, ys) in split
                .features
                .chunks((per * split.dim).max(1))
                .zip(split.labels.chunks(per))
            {
                let ys: Vec<u32> = ys.iter().map(|&y| u32::from(y)).collect();
                let n = ys.len();
                parts.push((
                    Tensor::from_vec(xs.to_vec(), (n, split.dim), &Device::Cpu)?,
                    Tensor::from_vec(ys, n, &Device::Cpu)?,
                ));
            }
        }
        Ok(Self {
            parts,
            len: split.len,
        })
    }

    /// Examples held back.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is held back.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Number of parts (0 when nothing is held back).
    pub fn parts(&self) -> usize {
        self.parts.len()
    }

    /// The summed cross-entropy of `forward`'s logits on part `part` (an empty sum past the
    /// last part).
    pub fn part_loss(
        &self,
        part: usize,
        forward: impl Fn(&Tensor) -> candle_core::Result<Tensor>,
    ) -> candle_core::Result<LossSum> {
        let Some((xs, ys)) = self.parts.get(part) else {
            return Ok(LossSum::default());
        };
        let count = ys.dims1()?;
        let mean = candle_nn::loss::cross_entropy(&forward(xs)?, ys)?.to_scalar::<f32>()?;
        Ok(LossSum {
            sum: f64::from(mean) * count as f64,
            count,
        })
    }

    /// The summed cross-entropy over every part but `skip` (`None`: every part).
    pub fn loss_except(
        &self,
        skip: Option<usize>,
        forward: impl Fn(&Tensor) -> candle_core::Result<Tensor>,
    ) -> candle_core::Result<LossSum> {
        let mut total = LossSum::default();
        for part in (0..self.parts.len()).filter(|p| Some(*p) != skip) {
            total = total.plus(self.part_loss(part, &forward)?);
        }
        Ok(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(len: usize) -> Split {
        Split {
            features: (0..len * 2).map(|v| v as f32).collect(),
            labels: (0..len).map(|i| (i % 3) as u8).collect(),
            len,
            dim: 2,
        }
    }

    /// Parts cover every row once, in order, at near-equal sizes; a part's loss and the
    /// rest's add up to the whole.
    #[test]
    fn parts_cover_every_example_once() {
        for (len, sizes) in [
            (0, vec![]),
            (1, vec![1]),
            (3, vec![1, 1, 1]),
            (10, vec![3, 3, 3, 1]),
            (200, vec![50, 50, 50, 50]),
        ] {
            let h = Holdout::new(&split(len)).unwrap();
            assert_eq!(h.len(), len);
            let got: Vec<usize> = h.parts.iter().map(|(_, y)| y.dims1().unwrap()).collect();
            assert_eq!(got, sizes, "{len}");
            let firsts: Vec<f32> = h
                .parts
                .iter()
                .flat_map(|(x, _)| x.flatten_all().unwrap().to_vec1::<f32>().unwrap())
                .collect();
            assert_eq!(firsts, split(len).features, "{len}");
        }
        // Uniform logits over 3 classes: every example costs ln 3.
        let h = Holdout::new(&split(10)).unwrap();
        let flat =
            |xs: &Tensor| Tensor::zeros((xs.dims2()?.0, 3), candle_core::DType::F32, &Device::Cpu);
        let one = h.part_loss(1, flat).unwrap();
        let rest = h.loss_except(Some(1), flat).unwrap();
        let all = h.loss_except(None, flat).unwrap();
        assert_eq!((one.count, rest.count, all.count), (3, 7, 10));
        assert!((one.plus(rest).sum - all.sum).abs() < 1e-9);
        assert!((all.mean() - 3f32.ln()).abs() < 1e-6);
        assert_eq!(h.part_loss(9, flat).unwrap(), LossSum::default());
        assert!(LossSum::default().mean().is_nan());
    }
}
