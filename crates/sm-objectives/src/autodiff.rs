//! Candle autodiff plumbing for the gradient-based objectives: the higher-order mode check,
//! input gradients (scores) of a log-density, and T-th directional derivatives by T nested
//! reverse passes (the "exact" curve of FD-SM Fig. 2).
//!
//! # Higher-order mode
//! Candle detaches every intermediate gradient during `backward()` unless the environment
//! variable `CANDLE_GRAD_DO_NOT_DETACH` is set to a non-empty value other than `0` **before the
//! first backward pass on a thread** (the value is read once per thread). Without it, the
//! gradient of a loss built from a score comes out silently wrong (zero through the score).
//! Every objective that differentiates through a gradient (SM, SSM, SSMVR, DSM and their
//! annealed forms) therefore calls [`ensure_higher_order`] first and fails with an explanation
//! if the mode is off. Turn it on with `CANDLE_GRAD_DO_NOT_DETACH=1 cargo run ...`, or call
//! [`enable_higher_order`] at the very start of `main`, before any thread runs Candle code. The
//! FD objectives need only first-order gradients and do not require it; it costs them 2.5-3.4x
//! memory (measured with Candle 0.11.1), so leave it off for FD-only training.

use candle_core::{bail, DType, Result, Tensor, Var};
pub use layers::grad_mode::{
    enable_higher_order, higher_order_enabled, HigherOrder, HIGHER_ORDER_ENV,
};

use crate::model::LogDensity;
use crate::validate;

/// The proof that this thread computes correct second derivatives, or an error explaining how to
/// turn the mode on.
pub fn ensure_higher_order() -> Result<HigherOrder> {
    if let Some(token) = HigherOrder::current() {
        return Ok(token);
    }
    bail!(
        "this objective differentiates through a gradient, which Candle computes correctly only \
         in higher-order mode: set the environment variable {HIGHER_ORDER_ENV}=1 before the \
         program starts (or call sm_objectives::autodiff::enable_higher_order() first thing in \
         main, before any thread runs Candle code). The finite-difference objectives (fd_*) do \
         not need it."
    )
}

/// The input gradient of a log-density, kept attached to the graph in higher-order mode.
#[derive(Debug)]
pub struct InputGradient {
    /// The input as a differentiable variable (a copy of `x`).
    pub x: Var,
    /// `log p~(x)`, `[B]`.
    pub log_density: Tensor,
    /// `grad_x log p~(x)`, the shape of `x`.
    pub score: Tensor,
}

/// Evaluates `log p~(x)` and its input gradient (the model score `grad_x log p~(x)`).
///
/// The gradient store is dropped before returning so that only the score's own graph stays
/// alive.
pub fn input_gradient<M: LogDensity + ?Sized>(model: &M, x: &Tensor) -> Result<InputGradient> {
    let (batch, _) = validate::batch_and_dim(x, "x")?;
    let x = Var::from_tensor(&x.detach())?;
    let log_density = model.log_density(x.as_tensor())?;
    validate::per_sample_output(&log_density, batch)?;
    let score = grad_or_zeros(&log_density.sum_all()?, x.as_tensor())?;
    Ok(InputGradient {
        x,
        log_density,
        score,
    })
}

/// `d(sum output)/d wrt`, or zeros when `output` does not depend on `wrt`.
///
/// Only the gradient with respect to `wrt` is kept, so the pass runs inside
/// [`layers::grad_mode::input_gradients_only`]: fused layers skip their parameter gradients.
pub(crate) fn grad_or_zeros(output: &Tensor, wrt: &Tensor) -> Result<Tensor> {
    let mut grads = layers::grad_mode::input_gradients_only(|| output.backward())?;
    match grads.remove(wrt) {
        Some(g) => Ok(g),
        None => wrt.zeros_like(),
    }
}

/// Row-wise dot product of two `[B, ...]` tensors, `[B]`.
pub(crate) fn rowdot(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    (a * b)?.flatten_from(1)?.sum(1)
}

/// Row-wise squared norm of a `[B, ...]` tensor, `[B]`.
pub(crate) fn rownorm2(a: &Tensor) -> Result<Tensor> {
    a.sqr()?.flatten_from(1)?.sum(1)
}

/// The T-th directional derivative `(v . grad)^T log p~(x)` by T nested reverse passes.
///
/// This is the exact computation whose cost grows exponentially with `T` (FD-SM Sec. 3.3,
/// Fig. 2); [`crate::fd_directional_derivative`] is its FD counterpart. Orders above 1 need
/// higher-order mode ([`ensure_higher_order`]).
///
/// # Shapes
/// * `x`, `v`: `[B, ...]`
/// * returns `[B]`
pub fn directional_derivative<M: LogDensity + ?Sized>(
    model: &M,
    x: &Tensor,
    v: &Tensor,
    order: u32,
) -> Result<Tensor> {
    let (batch, _) = validate::batch_and_dim(x, "x")?;
    validate::same_shape(x, v, "v")?;
    if order == 0 {
        bail!("the derivative order must be at least 1")
    }
    if order > 1 {
        ensure_higher_order()?;
    }
    let xv = Var::from_tensor(&x.detach())?;
    let mut g = model.log_density(xv.as_tensor())?;
    validate::per_sample_output(&g, batch)?;
    for _ in 0..order {
        let grad = grad_or_zeros(&g.sum_all()?, xv.as_tensor())?;
        g = rowdot(&grad, v)?;
    }
    Ok(g)
}

/// `D`, the number of data dimensions of `[B, ...]`, as `f64`.
pub(crate) fn data_dim(x: &Tensor) -> Result<f64> {
    Ok(validate::batch_and_dim(x, "x")?.1 as f64)
}

/// A `[B]` tensor of per-sample scalars in `x`'s dtype and device.
pub(crate) fn per_sample(values: &[f64], like: &Tensor) -> Result<Tensor> {
    Tensor::from_vec(values.to_vec(), values.len(), like.device())?.to_dtype(like.dtype())
}

/// Reads a `[B]` tensor of `u32` level indices into host indices, checking their range.
pub(crate) fn level_indices(levels: &Tensor, batch: usize, n_levels: usize) -> Result<Vec<usize>> {
    if levels.dims() != [batch] {
        bail!(
            "noise-level indices must have shape [{batch}], got {:?}",
            levels.dims()
        )
    }
    let idx = levels.to_dtype(DType::U32)?.to_vec1::<u32>()?;
    if let Some((b, i)) = idx
        .iter()
        .enumerate()
        .find(|(_, &i)| i as usize >= n_levels)
    {
        bail!("noise-level index {i} of sample {b} is out of range for {n_levels} levels")
    }
    Ok(idx.into_iter().map(|i| i as usize).collect())
}
