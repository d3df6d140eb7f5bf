//! FD-DSM (FD-SM Eq. 10) and its multiscale form for deep EBMs (App. C.2, the reference code's
//! FD-MDSM).

use candle_core::{Result, Tensor};

use super::eval::{combine, eq8_stencils, log_density_at};
use crate::autodiff::{per_sample, rowdot};
use crate::gradient::{check_noise, check_projection, perturb};
use crate::model::LogDensity;
use crate::noise::Projection;
use crate::{validate, BatchMode, Reduction};

/// FD-DSM (FD-SM Eq. 10) with `x~ = x + sigma z`, per sample
/// `[(L(x~+v) - L(x~-v)) / 2 + v^T (x~ - x) / sigma^2]^2 / C_v`, `L = log p~`.
///
/// With `v` on the sphere of radius `eps` this is Eq. 10; for the same `v` it equals
/// [`crate::sliced_dsm`] up to `O(eps^2)`, whose expectation over `v` is [`crate::dsm`].
/// Scaling: per dimension, like [`crate::dsm`].
///
/// # Shapes
/// * `x`, `z` (standard normal), `proj.v`: `[B, ...]`
/// * returns a scalar, or `[B]` with [`Reduction::PerSample`]
///
/// # Errors
/// Mismatched shapes, non-finite inputs, `sigma <= 0`, `C_v <= 0`.
pub fn fd_dsm<M: LogDensity + ?Sized>(
    model: &M,
    x: &Tensor,
    z: &Tensor,
    sigma: f64,
    proj: &Projection,
    mode: BatchMode,
    reduction: Reduction,
) -> Result<Tensor> {
    let batch = check_noise(x, z)?;
    validate::positive(sigma, "sigma")?;
    let sigmas = vec![sigma; batch];
    let per = fd_denoising(model, x, z, &sigmas, sigma, proj, mode, |_| 1.0)?;
    reduction.apply(&per)
}

/// FD multiscale DSM (the FD-SM deep-EBM code), per sample
/// `sigma_0^4 / sigma_b^2 * [(L(x~+v) - L(x~-v)) / 2 + v^T (x~ - x) / sigma_0^2]^2 / C_v`
/// with `x~ = x + sigma_b z`; the FD counterpart of [`crate::mdsm`] (same per-dimension scaling).
///
/// # Shapes
/// * `x`, `z`, `proj.v`: `[B, ...]`; `sigmas`: `[B]`
/// * returns a scalar, or `[B]` with [`Reduction::PerSample`]
///
/// # Errors
/// As [`fd_dsm`], plus `sigmas` of the wrong shape or with non-positive entries, `sigma_0 <= 0`.
#[allow(clippy::too_many_arguments)]
pub fn fd_mdsm<M: LogDensity + ?Sized>(
    model: &M,
    x: &Tensor,
    z: &Tensor,
    sigmas: &Tensor,
    sigma0: f64,
    proj: &Projection,
    mode: BatchMode,
    reduction: Reduction,
) -> Result<Tensor> {
    let batch = check_noise(x, z)?;
    validate::positive(sigma0, "sigma_0")?;
    let sigmas = validate::positive_per_sample(sigmas, batch, "sigmas")?;
    let per = fd_denoising(model, x, z, &sigmas, sigma0, proj, mode, |s| {
        sigma0.powi(4) / (s * s)
    })?;
    reduction.apply(&per)
}

/// The shared FD denoising form, per sample
/// `weight(sigma_b) [(L(x~+v) - L(x~-v)) / 2 + v^T (x~ - x) / target^2]^2 / C_v`,
/// `x~ = x + sigma_b z`.
#[allow(clippy::too_many_arguments)]
fn fd_denoising<M: LogDensity + ?Sized>(
    model: &M,
    x: &Tensor,
    z: &Tensor,
    sigmas: &[f64],
    target: f64,
    proj: &Projection,
    mode: BatchMode,
    weight: impl Fn(f64) -> f64,
) -> Result<Tensor> {
    check_projection(x, proj)?;
    let x_tilde = perturb(x, z, sigmas)?;
    let vg = fd_first_order(model, &x_tilde, &proj.v, mode)?;
    let t = (vg + (rowdot(&(&x_tilde - x)?, &proj.v)? / (target * target))?)?;
    let weights: Vec<f64> = sigmas.iter().map(|&s| weight(s) / proj.c_v).collect();
    t.sqr()? * per_sample(&weights, x)?
}

/// `v^T grad L(x) ~ (L(x+v) - L(x-v)) / 2` (Eq. 8), `[B]`.
fn fd_first_order<M: LogDensity + ?Sized>(
    model: &M,
    x: &Tensor,
    v: &Tensor,
    mode: BatchMode,
) -> Result<Tensor> {
    let (first, _) = eq8_stencils()?;
    let offsets = first.offsets().to_vec();
    let values = log_density_at(model, x, v, &offsets, mode)?;
    combine(&first, &offsets, &values)
}
