//! Group and instance normalisation without affine parameters, composed of reductions and
//! elementwise ops (Candle's fused `LayerNorm` kernels have no gradient).

use candle_core::{bail, Result, Tensor, D};

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
