//! Convolution and pooling for the CNN, in two implementations with the same results:
//!
//! - [`ConvImpl::Im2col`] (default): activations kept channels-last (NHWC); a 5x5 "same"
//!   convolution gathers the 25 shifted views of the padded input into one patch matrix and
//!   does a single matmul with the weights. Its backward pass is two matmuls plus copies.
//! - [`ConvImpl::Candle`]: candle's own `conv2d` and `max_pool2d` on NCHW activations. Its
//!   backward pass (a convolution of the input with the output gradient) is the known hot spot
//!   on CPU; see docs/benchmarks.md for the measured difference.
//!
//! Weights are stored `[out, in, k, k]` in both cases, and the CNN flattens NCHW before its
//! first dense layer, so a model's parameters mean the same thing whichever is used.

use candle_core::{Result, Tensor};

/// How the CNN computes convolutions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ConvImpl {
    /// Channels-last, patches gathered with views, one matmul per layer.
    #[default]
    Im2col,
    /// candle's `conv2d` / `max_pool2d`.
    Candle,
}

/// From NCHW (how batches arrive) to the layout `imp` computes in.
pub(super) fn to_internal(imp: ConvImpl, x: &Tensor) -> Result<Tensor> {
    match imp {
        ConvImpl::Im2col => x.permute((0, 2, 3, 1))?.contiguous(),
        ConvImpl::Candle => Ok(x.clone()),
    }
}

/// From the internal layout back to NCHW (before flattening).
pub(super) fn to_nchw(imp: ConvImpl, x: &Tensor) -> Result<Tensor> {
    match imp {
        ConvImpl::Im2col => x.permute((0, 3, 1, 2))?.contiguous(),
        ConvImpl::Candle => Ok(x.clone()),
    }
}

/// A stride-1 convolution with "same" zero padding (odd kernel), plus bias.
pub(super) fn conv2d_same(
    imp: ConvImpl,
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
) -> Result<Tensor> {
    let (out_ch, in_ch, k, _) = weight.dims4()?;
    let pad = k / 2;
    match imp {
        ConvImpl::Candle => x
            .conv2d(weight, pad, 1, 1, 1)?
            .broadcast_add(&bias.reshape((1, out_ch, 1, 1))?),
        ConvImpl::Im2col => {
            let (batch, h, w, _) = x.dims4()?; // [batch, h, w, in]
            let padded = x.pad_with_zeros(1, pad, pad)?.pad_with_zeros(2, pad, pad)?;
            let mut views = Vec::with_capacity(k * k);
            for ky in 0..k {
                for kx in 0..k {
                    views.push(padded.narrow(1, ky, h)?.narrow(2, kx, w)?);
                }
            }
            let patches = Tensor::stack(&views, 3)?.reshape((batch * h * w, k * k * in_ch))?; // [b*h*w, k*k*in]
            let wmat = weight
                .permute((0, 2, 3, 1))?
                .contiguous()?
                .reshape((out_ch, k * k * in_ch))?;
            patches
                .matmul(&wmat.t()?)?
                .broadcast_add(bias)?
                .reshape((batch, h, w, out_ch)) // [b, h, w, out]
        }
    }
}

/// 2x2 max pooling with stride 2.
pub(super) fn max_pool2(imp: ConvImpl, x: &Tensor) -> Result<Tensor> {
    match imp {
        ConvImpl::Candle => x.max_pool2d(2),
        ConvImpl::Im2col => {
            let (b, h, w, c) = x.dims4()?;
            x.reshape((b, h / 2, 2, w / 2, 2, c))?.max(4)?.max(2) // [b, h/2, w/2, c]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    fn seq(shape: &[usize], scale: f32) -> Tensor {
        let n: usize = shape.iter().product();
        // Distinct values, so that max pooling has no ties (tied maxima split their gradient
        // differently in the two implementations, which is fine but not comparable).
        let v: Vec<f32> = (0..n).map(|i| (i as f32 * 0.731).sin() * scale).collect();
        Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
    }

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
    }

    /// d(sum(y^2))/dw for one weight, by central finite differences.
    fn numeric_grad(imp: ConvImpl, x: &Tensor, w: &[f32], b: &Tensor, i: usize, pool: bool) -> f32 {
        let loss = |w: Vec<f32>| {
            let w = Tensor::from_vec(w, (4, 3, 5, 5), &Device::Cpu).unwrap();
            let mut y = conv2d_same(imp, &to_internal(imp, x).unwrap(), &w, b)
                .unwrap()
                .relu()
                .unwrap();
            if pool {
                y = max_pool2(imp, &y).unwrap();
            }
            // Summed in f64: the change being measured is far below f32 precision of the sum.
            let y = y.to_dtype(candle_core::DType::F64).unwrap();
            (&y * &y)
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f64>()
                .unwrap()
        };
        // Small enough that no ReLU or pooling choice flips between the two probes.
        let eps = 1e-4;
        let (mut up, mut down) = (w.to_vec(), w.to_vec());
        up[i] += eps;
        down[i] -= eps;
        ((loss(up) - loss(down)) / (2.0 * f64::from(eps))) as f32
    }

    fn analytic_grad(
        imp: ConvImpl,
        x: &Tensor,
        w: &Var,
        b: &Tensor,
        pool: bool,
    ) -> (Tensor, Vec<f32>) {
        let mut y = conv2d_same(imp, &to_internal(imp, x).unwrap(), w.as_tensor(), b)
            .unwrap()
            .relu()
            .unwrap();
        if pool {
            y = max_pool2(imp, &y).unwrap();
        }
        let y = to_nchw(imp, &y).unwrap();
        let grads = (&y * &y).unwrap().sum_all().unwrap().backward().unwrap();
        (
            y,
            grads
                .get(w)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap(),
        )
    }

    /// Input, weights (as values and as a variable) and bias of a 3-to-4 channel 5x5 layer.
    fn fixture() -> (Tensor, Vec<f32>, Var, Tensor) {
        let x = seq(&[2, 3, 8, 8], 0.1);
        let wv: Vec<f32> = seq(&[4, 3, 5, 5], 0.01)
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let w =
            Var::from_tensor(&Tensor::from_vec(wv.clone(), (4, 3, 5, 5), &Device::Cpu).unwrap());
        (x, wv, w.unwrap(), seq(&[4], 0.5))
    }

    #[test]
    fn im2col_matches_candle_values_and_finite_difference_gradients() {
        let (x, wv, w, b) = fixture();
        let (ya, grad) = analytic_grad(ConvImpl::Im2col, &x, &w, &b, true);
        let (yb, _) = analytic_grad(ConvImpl::Candle, &x, &w, &b, true);
        assert_eq!(ya.dims(), [2, 4, 4, 4]);
        assert!(
            max_diff(&ya, &yb) < 1e-5,
            "values differ by {}",
            max_diff(&ya, &yb)
        );
        for i in [0, 7, 42, 150, 299] {
            let num = numeric_grad(ConvImpl::Im2col, &x, &wv, &b, i, true);
            assert!(
                (grad[i] - num).abs() <= 0.01 * num.abs().max(1e-3),
                "w[{i}]: {} vs {num}",
                grad[i]
            );
        }
    }

    /// candle 0.11.1's `max_pool2d` backward multiplies the gradient of each window's maximum
    /// by (maxima in the window / window size), i.e. by 1/4 for a unique maximum in a 2x2
    /// window, instead of dividing by the number of maxima. This test pins that behaviour:
    /// if it starts failing, candle fixed it and ConvImpl::Candle becomes a fair comparison.
    #[test]
    fn candle_max_pool_backward_scales_gradients_by_a_quarter() {
        let (x, wv, w, b) = fixture();
        let (_, no_pool) = analytic_grad(ConvImpl::Candle, &x, &w, &b, false);
        let num = numeric_grad(ConvImpl::Candle, &x, &wv, &b, 7, false);
        assert!(
            (no_pool[7] - num).abs() <= 0.01 * num.abs(),
            "conv alone: {} vs {num}",
            no_pool[7]
        );
        let (_, pooled) = analytic_grad(ConvImpl::Candle, &x, &w, &b, true);
        let num = numeric_grad(ConvImpl::Candle, &x, &wv, &b, 7, true);
        assert!(
            (pooled[7] * 4.0 - num).abs() <= 0.01 * num.abs(),
            "pooled: {} vs {num}",
            pooled[7]
        );
    }
}
