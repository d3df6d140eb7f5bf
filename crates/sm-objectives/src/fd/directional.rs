//! The general FD estimate of the T-th directional derivative of a log-density on Candle tensors
//! (FD-SM Lemma 1 / Theorem 1), with the stencil taken from `fd-core`.

use candle_core::{Result, Tensor};
use fd_core::{BatchMode, Stencil};

use super::eval::{combine, log_density_at};
use crate::model::LogDensity;
use crate::validate;

/// Estimates `(v . grad)^T log p~(x)` for every sample as `sum_i w_i log p~(x + gamma_i v)`
/// with the offsets and weights of `stencil` (order `T = stencil.order()`).
///
/// The counterpart of [`crate::autodiff::directional_derivative`]: `T + 1` plain forward
/// evaluations (one concatenated batch, or one pass per offset) instead of `T` nested reverse
/// passes. Divide by `|v|^T` for the derivative along the unit direction.
///
/// # Shapes
/// * `x`, `v`: `[B, ...]`
/// * returns `[B]`
///
/// # Errors
/// Mismatched shapes, non-finite inputs, a model that does not return `[B]`.
pub fn fd_directional_derivative<M: LogDensity + ?Sized>(
    model: &M,
    x: &Tensor,
    v: &Tensor,
    stencil: &Stencil,
    mode: BatchMode,
) -> Result<Tensor> {
    validate::batch_and_dim(x, "x")?;
    validate::same_shape(x, v, "v")?;
    validate::finite(x, "x")?;
    validate::finite(v, "v")?;
    let offsets = stencil.offsets().to_vec();
    let values = log_density_at(model, x, v, &offsets, mode)?;
    combine(stencil, &offsets, &values)
}
