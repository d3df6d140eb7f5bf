//! Transposed 2-D convolution (the adjoint of a strided convolution: the upsampling layers of
//! a DCGAN-style decoder, such as the CelebA decoder of Song et al.'s implicit-encoder VAE,
//! FD-SM Table 6), with PyTorch's `ConvTranspose2d` geometry and weight layout.
//!
//! Candle's own `conv_transpose2d` computes the right values, but its backward pass ignores
//! `output_padding` (the gradient comes out the wrong shape), so here the op is composed from
//! [`crate::conv2d`] and reshapes. With `a = s a' + r`, the full (unpadded) transposed
//! convolution's output row `s u + r` is `sum_a' x[u - a'] w[s a' + r]`: a stride-1 full
//! convolution of the input with the sub-kernel of phase `r`. All `s^2` phases are one
//! convolution whose output channels are (channel, row phase, column phase), with
//! `ceil(K / s)`-sided kernels (3 x 3 for K = 5, s = 2), interleaved into rows and columns and
//! cropped by the padding: `ceil(K / s)^2 s^2 / K^2` times the multiply-adds of the transposed
//! convolution, where spreading the input out with zeros would take `s^2`. Every piece has
//! derivatives of every order.

use candle_core::{bail, Module, Result, Tensor};
use candle_nn::{Init, VarBuilder};
use serde::{Deserialize, Serialize};

use crate::{bias_add, conv2d, Conv2dConfig};

/// Geometry of a transposed convolution with a square `K x K` kernel: the output side is
/// `(H - 1) stride - 2 padding + K + output_padding`, as in PyTorch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConvTranspose2dConfig {
    /// Rows and columns removed from each side of the full transposed convolution.
    pub padding: usize,
    /// Upsampling factor (at least 1).
    pub stride: usize,
    /// Rows and columns added after the last (below `stride`).
    pub output_padding: usize,
}

impl ConvTranspose2dConfig {
    /// Output height and width for an `h x w` input and a `k x k` kernel (zero where the
    /// geometry does not fit).
    pub fn output_size(&self, (h, w): (usize, usize), k: usize) -> (usize, usize) {
        let side = |n: usize| {
            ((n.max(1) - 1) * self.stride + k + self.output_padding)
                .saturating_sub(2 * self.padding)
        };
        (side(h), side(w))
    }
}

/// `[C_in, C_out, K, K]` -> `[C_out s^2, C_in, k, k]`, `k = ceil(K / s)`: output channel
/// `(o, r, q)` holds the sub-kernel `w[., o, s a' + r, s b' + q]` (zero beyond the kernel),
/// reversed in `a'` and `b'` so that a correlation computes its convolution.
fn phase_kernels(weight: &Tensor, s: usize) -> Result<Tensor> {
    let (c_in, c_out, k, _) = weight.dims4()?;
    let kp = k.div_ceil(s);
    let reversed: Vec<u32> = (0..kp as u32).rev().collect();
    let idx = Tensor::from_vec(reversed, kp, weight.device())?;
    weight
        .pad_with_zeros(2, 0, s * kp - k)?
        .pad_with_zeros(3, 0, s * kp - k)?
        .reshape((c_in, c_out, kp, s, kp, s))?
        .permute((1, 3, 5, 0, 2, 4))?
        .reshape((c_out * s * s, c_in, kp, kp))?
        .index_select(&idx, 2)?
        .index_select(&idx, 3)
}

/// Rows `start .. start + len` of `dim`, zeros where they run past the end.
fn window(x: &Tensor, dim: usize, start: usize, len: usize) -> Result<Tensor> {
    let have = x.dim(dim)?.saturating_sub(start).min(len);
    x.narrow(dim, start, have)?
        .pad_with_zeros(dim, 0, len - have)
}

/// Transposed convolution of `x` with `weight` in PyTorch's layout, plus `bias`, differentiable
/// at every order (see the module documentation).
///
/// # Shapes
/// * `x`: `[N, C_in, H, W]`; `weight`: `[C_in, C_out, K, K]`; `bias`: `[C_out]`
/// * returns `[N, C_out, H_out, W_out]`, sides as in [`ConvTranspose2dConfig::output_size`]
///
/// # Errors
/// Mismatched channels, a non-square kernel, a zero stride, `padding > K - 1`,
/// `output_padding >= stride`, or a bias of the wrong length.
pub fn conv_transpose2d(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    cfg: &ConvTranspose2dConfig,
) -> Result<Tensor> {
    let (_, c_in, _, _) = x.dims4()?;
    let (w_in, c_out, k, k2) = weight.dims4()?;
    if w_in != c_in || k != k2 {
        bail!(
            "conv_transpose2d: input {:?} and kernel {:?} do not fit (the kernel is \
             [C_in, C_out, K, K] with a square K x K)",
            x.dims(),
            weight.dims()
        )
    }
    if cfg.stride == 0 || cfg.padding + 1 > k || cfg.output_padding >= cfg.stride {
        bail!(
            "conv_transpose2d: {cfg:?} does not fit a {k} x {k} kernel (stride >= 1, \
             padding <= K - 1, output_padding < stride)"
        )
    }
    if let Some(b) = bias {
        if b.dims() != [c_out] {
            bail!(
                "conv_transpose2d: the bias must be [{c_out}], got {:?}",
                b.dims()
            )
        }
    }
    let (n, _, h, w) = x.dims4()?;
    let s = cfg.stride;
    let kp = k.div_ceil(s);
    // Every phase's full convolution: [N, C_out s^2, H + kp - 1, W + kp - 1].
    let phases = conv2d(
        x,
        &phase_kernels(weight, s)?,
        None,
        &Conv2dConfig::padded(kp - 1),
    )?;
    let (hf, wf) = (h + kp - 1, w + kp - 1);
    let full = phases
        .reshape((n, c_out, s, s, hf, wf))?
        .permute((0, 1, 4, 2, 5, 3))?
        .reshape((n, c_out, hf * s, wf * s))?;
    let (ho, wo) = cfg.output_size((h, w), k);
    let y = window(&window(&full, 2, cfg.padding, ho)?, 3, cfg.padding, wo)?;
    match bias {
        Some(b) => bias_add(&y, b),
        None => Ok(y),
    }
}

/// A transposed convolution layer: a `[C_in, C_out, K, K]` kernel (PyTorch's layout, so its
/// weights load unchanged), a `[C_out]` bias and its geometry; [`Module::forward`] is
/// [`conv_transpose2d`].
#[derive(Clone, Debug)]
pub struct ConvTranspose2d {
    weight: Tensor,
    bias: Option<Tensor>,
    config: ConvTranspose2dConfig,
}

impl ConvTranspose2d {
    /// A layer from its tensors.
    pub fn new(weight: Tensor, bias: Option<Tensor>, config: ConvTranspose2dConfig) -> Self {
        Self {
            weight,
            bias,
            config,
        }
    }

    /// The kernel, `[C_in, C_out, K, K]`.
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    /// Its geometry.
    pub fn config(&self) -> &ConvTranspose2dConfig {
        &self.config
    }
}

impl Module for ConvTranspose2d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        conv_transpose2d(x, &self.weight, self.bias.as_ref(), &self.config)
    }
}

/// A [`ConvTranspose2d`] of `c_in -> c_out` channels with a `k x k` kernel and a bias, its
/// weights named `weight` and `bias` under `vb`, initialised as PyTorch's default for the
/// layer (uniform in `±1/sqrt(c_out k^2)`: PyTorch takes the fan-in from the kernel's second
/// axis).
///
/// # Errors
/// A `VarBuilder` that lacks a weight or holds one of the wrong shape.
pub fn conv_transpose2d_layer(
    c_in: usize,
    c_out: usize,
    k: usize,
    config: ConvTranspose2dConfig,
    vb: VarBuilder,
) -> Result<ConvTranspose2d> {
    let bound = 1.0 / ((c_out * k * k).max(1) as f64).sqrt();
    let init = Init::Uniform {
        lo: -bound,
        up: bound,
    };
    let weight = vb.get_with_hints((c_in, c_out, k, k), "weight", init)?;
    let bias = vb.get_with_hints(c_out, "bias", init)?;
    Ok(ConvTranspose2d::new(weight, Some(bias), config))
}
