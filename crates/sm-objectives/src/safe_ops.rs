//! Building blocks whose backward passes stay correct at every order in Candle, for models
//! trained by score matching, and the list of Candle ops that must not appear in them.
//!
//! Measured with Candle 0.11.1: the backward passes of `max_pool2d` (wrong even at first
//! order), `upsample_nearest2d` (overwrites instead of accumulating when its input has another
//! consumer), `gather` (fails at second order), `avg_pool2d` with kernel != stride,
//! `upsample_bilinear2d`, the fused `softmax_last_dim` / `LayerNorm` / `RmsNorm` kernels (no
//! gradient at all, silently) and `conv1d` beyond first order are unusable here. Everything in
//! this module is composed of reshapes, reductions and elementwise ops whose derivatives Candle
//! builds from differentiable ops.

use candle_core::{bail, Result, Tensor, D};

/// Source patterns of Candle calls whose higher-order backward is broken, with the reason.
/// Model crates scan their sources for these in a test (see `crates/models/tests`).
pub const FORBIDDEN_OPS: &[(&str, &str)] = &[
    ("max_pool2d", "wrong gradient even at first order"),
    (
        "upsample_nearest",
        "backward overwrites instead of accumulating",
    ),
    ("upsample_bilinear", "no usable backward"),
    (".gather(", "backward fails at second order"),
    ("softmax_last_dim", "fused kernel without gradient"),
    (
        "LayerNorm",
        "fused kernel without gradient; use group/instance norm from safe_ops",
    ),
    (
        "layer_norm",
        "fused kernel without gradient; use group/instance norm from safe_ops",
    ),
    ("RmsNorm", "fused kernel without gradient"),
    ("rms_norm", "fused kernel without gradient"),
    ("conv1d", "wrong beyond first order"),
    (
        "avg_pool2d_with_stride",
        "kernel != stride has no backward; use safe_ops::avg_pool2d",
    ),
    (
        ".avg_pool2d(",
        "backward goes through upsample_nearest2d; use safe_ops::avg_pool2d",
    ),
];

/// Average pooling with kernel = stride = `k` (floor mode: trailing rows and columns that do not
/// fill a window are dropped), built from `narrow`, `reshape` and `mean`.
///
/// # Shapes
/// * `x`: `[N, C, H, W]` with `H, W >= k`
/// * returns `[N, C, H / k, W / k]`
pub fn avg_pool2d(x: &Tensor, k: usize) -> Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    if k == 0 || h < k || w < k {
        bail!("avg_pool2d: kernel {k} does not fit an input of height {h} and width {w}")
    }
    let (ho, wo) = (h / k, w / k);
    let x = if ho * k != h || wo * k != w {
        x.narrow(2, 0, ho * k)?.narrow(3, 0, wo * k)?
    } else {
        x.clone()
    };
    x.reshape((n, c, ho, k, wo, k))?.mean(5)?.mean(3)
}

/// Numerically stable softplus `log(1 + e^z) = relu(z) + log(1 + e^-|z|)`, smooth at every
/// order (its derivatives are those of the textbook form away from `z = 0`, where both pieces
/// are smooth and agree).
pub fn softplus(z: &Tensor) -> Result<Tensor> {
    let tail = (z.abs()?.neg()?.exp()? + 1.0)?.log()?;
    z.relu()? + tail
}

/// `softplus(z) - log 2`, zero at the origin: the activation of the deep-EBM runs of the
/// reference code.
pub fn shifted_softplus(z: &Tensor) -> Result<Tensor> {
    softplus(z)? - std::f64::consts::LN_2
}

/// Group normalisation without affine parameters: the channels are split into `groups`
/// groups, each normalised to zero mean and unit variance over its channels and positions.
///
/// # Shapes
/// * `x`: `[N, C, ...]` with `C` divisible by `groups`
/// * returns the shape of `x`
pub fn group_norm(x: &Tensor, groups: usize, eps: f64) -> Result<Tensor> {
    let dims = x.dims().to_vec();
    if dims.len() < 2 || groups == 0 || dims[1] % groups != 0 {
        bail!(
            "group_norm: {groups} groups do not divide the channels of an input of shape {dims:?}"
        )
    }
    if !(eps.is_finite() && eps > 0.0) {
        bail!("group_norm: eps must be finite and > 0, got {eps}")
    }
    let grouped = x.reshape((dims[0], groups, ()))?;
    let mean = grouped.mean_keepdim(D::Minus1)?;
    let centred = grouped.broadcast_sub(&mean)?;
    let var = centred.sqr()?.mean_keepdim(D::Minus1)?;
    centred.broadcast_div(&(var + eps)?.sqrt()?)?.reshape(dims)
}

/// Instance normalisation (each channel of each sample normalised over its positions), as
/// group normalisation with one channel per group.
///
/// # Shapes
/// * `x`: `[N, C, ...]`
/// * returns the shape of `x`
pub fn instance_norm(x: &Tensor, eps: f64) -> Result<Tensor> {
    let channels = x.dims().get(1).copied().unwrap_or(0);
    group_norm(x, channels.max(1), eps)
}
