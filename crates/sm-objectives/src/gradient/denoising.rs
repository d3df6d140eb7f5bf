//! Denoising score matching by autodiff: DSM (FD-SM Eq. 2), its sliced form (App. B.4, Eq. 43),
//! multiscale DSM for deep EBMs (BiSM Eq. 5 with the reference code's weighting, FD-SM App. C.2)
//! and its sliced form, and annealed DSM for NCSN.

use candle_core::{Result, Tensor};

use super::sliced::perturb;
use crate::autodiff::{
    data_dim, ensure_higher_order, input_gradient, per_sample, rowdot, rownorm2,
};
use crate::model::{LogDensity, ScoreModel};
use crate::noise::Projection;
use crate::{validate, NoiseLevels, Reduction};

/// Checks data and standard-normal noise and returns `B`.
pub(crate) fn check_noise(x: &Tensor, z: &Tensor) -> Result<usize> {
    let (batch, _) = validate::batch_and_dim(x, "x")?;
    validate::same_shape(x, z, "the noise z")?;
    validate::finite(x, "x")?;
    validate::finite(z, "the noise z")?;
    Ok(batch)
}

/// Denoising score matching (FD-SM Eq. 2) with `x~ = x + sigma z`, per sample
/// `|grad log p~(x~) + (x~ - x) / sigma^2|^2 / D`.
///
/// Scaling: per dimension and without a `1/2`, exactly Eq. 2; [`crate::fd_dsm`] estimates the
/// same quantity.
///
/// # Shapes
/// * `x`, `z` (standard normal): `[B, ...]`
/// * returns a scalar, or `[B]` with [`Reduction::PerSample`]
///
/// # Errors
/// Higher-order mode off, mismatched shapes, non-finite inputs, `sigma <= 0`.
pub fn dsm<M: LogDensity + ?Sized>(
    model: &M,
    x: &Tensor,
    z: &Tensor,
    sigma: f64,
    reduction: Reduction,
) -> Result<Tensor> {
    ensure_higher_order()?;
    let batch = check_noise(x, z)?;
    validate::positive(sigma, "sigma")?;
    reduction.apply(&denoising(model, x, z, &vec![sigma; batch], sigma, |_| {
        1.0
    })?)
}

/// Sliced DSM (FD-SM App. B.4, Eq. 43), per sample
/// `(v^T grad log p~(x~) + v^T (x~ - x) / sigma^2)^2 / C_v`.
///
/// Its expectation over isotropic `v` equals [`dsm`]; for the same `v` it is the quantity
/// [`crate::fd_dsm`] approximates to `O(eps^2)`.
///
/// # Shapes
/// * `x`, `z`, `proj.v`: `[B, ...]`
/// * returns a scalar, or `[B]` with [`Reduction::PerSample`]
///
/// # Errors
/// As [`dsm`], plus a malformed projection.
pub fn sliced_dsm<M: LogDensity + ?Sized>(
    model: &M,
    x: &Tensor,
    z: &Tensor,
    sigma: f64,
    proj: &Projection,
    reduction: Reduction,
) -> Result<Tensor> {
    ensure_higher_order()?;
    let batch = check_noise(x, z)?;
    validate::positive(sigma, "sigma")?;
    reduction.apply(&sliced_denoising(
        model,
        x,
        z,
        &vec![sigma; batch],
        sigma,
        proj,
        |_| 1.0,
    )?)
}

/// Sliced multiscale DSM, per sample
/// `sigma_0^4 / sigma_b^2 * (v^T grad log p~(x~) + v^T (x~ - x) / sigma_0^2)^2 / C_v` with
/// `x~ = x + sigma_b z`: [`mdsm`] seen along one direction per sample.
///
/// Its expectation over isotropic `v` equals [`mdsm`]; for the same `v` it is the quantity
/// [`crate::fd_mdsm`] approximates to `O(eps^2)`. It separates the two things FD-DSM changes
/// against MDSM: slicing (this loss against [`mdsm`]: more variance, same expectation) and the
/// finite difference (this loss against [`crate::fd_mdsm`]: the same loss without a
/// gradient-of-gradient).
///
/// # Shapes
/// * `x`, `z`, `proj.v`: `[B, ...]`; `sigmas`: `[B]`
/// * returns a scalar, or `[B]` with [`Reduction::PerSample`]
///
/// # Errors
/// As [`mdsm`], plus a malformed projection.
pub fn sliced_mdsm<M: LogDensity + ?Sized>(
    model: &M,
    x: &Tensor,
    z: &Tensor,
    sigmas: &Tensor,
    sigma0: f64,
    proj: &Projection,
    reduction: Reduction,
) -> Result<Tensor> {
    ensure_higher_order()?;
    let batch = check_noise(x, z)?;
    validate::positive(sigma0, "sigma_0")?;
    let sigmas = validate::positive_per_sample(sigmas, batch, "sigmas")?;
    reduction.apply(&sliced_denoising(
        model,
        x,
        z,
        &sigmas,
        sigma0,
        proj,
        |s| sigma0.powi(4) / (s * s),
    )?)
}

/// The shared sliced denoising form, per sample
/// `weight(sigma_b) (v^T grad log p~(x~) + v^T (x~ - x) / target^2)^2 / C_v`,
/// `x~ = x + sigma_b z`.
fn sliced_denoising<M: LogDensity + ?Sized>(
    model: &M,
    x: &Tensor,
    z: &Tensor,
    sigmas: &[f64],
    target: f64,
    proj: &Projection,
    weight: impl Fn(f64) -> f64,
) -> Result<Tensor> {
    super::sliced::check_projection(x, proj)?;
    let x_tilde = perturb(x, z, sigmas)?;
    let ig = input_gradient(model, &x_tilde)?;
    let pull = rowdot(&(&x_tilde - x)?, &proj.v)? / (target * target);
    let t = (rowdot(&ig.score, &proj.v)? + pull?)?;
    let weights: Vec<f64> = sigmas.iter().map(|&s| weight(s) / proj.c_v).collect();
    t.sqr()? * per_sample(&weights, x)?
}

/// Multiscale DSM for deep EBMs (BiSM Eq. 5; FD-SM App. C.2): sample `b` is perturbed with its
/// own `sigma_b` (MDSM: [`crate::noise::linear_sigmas`]`(0.05, 1.2, B)` by batch position), the
/// target uses the fixed `sigma_0`, and the loss is weighted as in the reference code, per sample
/// `sigma_0^4 / sigma_b^2 * |grad log p~(x~) + (x~ - x) / sigma_0^2|^2 / D`.
///
/// Scaling: per dimension (the reference code sums over dimensions: multiply by `D` for its
/// numbers); the `sigma_0^4` factor is the FD-SM code's `1e-4` for `sigma_0 = 0.1`.
/// [`crate::fd_mdsm`] estimates the same quantity.
///
/// # Shapes
/// * `x`, `z`: `[B, ...]`; `sigmas`: `[B]`
/// * returns a scalar, or `[B]` with [`Reduction::PerSample`]
///
/// # Errors
/// As [`dsm`], plus `sigmas` of the wrong shape or with non-positive entries, `sigma_0 <= 0`.
pub fn mdsm<M: LogDensity + ?Sized>(
    model: &M,
    x: &Tensor,
    z: &Tensor,
    sigmas: &Tensor,
    sigma0: f64,
    reduction: Reduction,
) -> Result<Tensor> {
    ensure_higher_order()?;
    let batch = check_noise(x, z)?;
    validate::positive(sigma0, "sigma_0")?;
    let sigmas = validate::positive_per_sample(sigmas, batch, "sigmas")?;
    reduction.apply(&denoising(model, x, z, &sigmas, sigma0, |s| {
        sigma0.powi(4) / (s * s)
    })?)
}

/// The shared denoising form, per sample
/// `weight(sigma_b) |grad log p~(x~) + (x~ - x) / target^2|^2 / D`, `x~ = x + sigma_b z`.
fn denoising<M: LogDensity + ?Sized>(
    model: &M,
    x: &Tensor,
    z: &Tensor,
    sigmas: &[f64],
    target: f64,
    weight: impl Fn(f64) -> f64,
) -> Result<Tensor> {
    let x_tilde = perturb(x, z, sigmas)?;
    let ig = input_gradient(model, &x_tilde)?;
    let residual = (ig.score + ((&x_tilde - x)? / (target * target))?)?;
    let d = data_dim(x)?;
    let weights: Vec<f64> = sigmas.iter().map(|&s| weight(s) / d).collect();
    rownorm2(&residual)? * per_sample(&weights, x)?
}

/// Annealed DSM for noise-conditional score networks (NCSN): `x~ = x + sigma_i z` with the
/// sample's level `i`, weighted by `sigma_i^2`, per sample
/// `sigma_i^2 |s(x~, i) + (x~ - x) / sigma_i^2|^2 / D`.
///
/// Scaling: per dimension and without the `1/2` of the NCSN code (consistent with [`dsm`]).
/// A score network needs no second derivative here, so higher-order mode is not required.
///
/// # Shapes
/// * `x`, `z`: `[B, ...]`; `levels.index`: `[B]`
/// * returns a scalar, or `[B]` with [`Reduction::PerSample`]
///
/// # Errors
/// Mismatched shapes, non-finite inputs, out-of-range levels, non-positive sigmas.
pub fn annealed_dsm<S: ScoreModel + ?Sized>(
    score: &S,
    x: &Tensor,
    z: &Tensor,
    levels: NoiseLevels<'_>,
    reduction: Reduction,
) -> Result<Tensor> {
    let batch = check_noise(x, z)?;
    let sigmas = levels.per_sample_sigmas(batch)?;
    let x_tilde = perturb(x, z, &sigmas)?;
    let s = score.score(&x_tilde, Some(levels.index))?;
    validate::same_shape(x, &s, "the score network output")?;
    let inv: Vec<f64> = sigmas.iter().map(|s| 1.0 / s).collect();
    let shape: Vec<usize> = std::iter::once(batch)
        .chain(std::iter::repeat_n(1, x.rank() - 1))
        .collect();
    let residual = (s + z.broadcast_mul(&per_sample(&inv, x)?.reshape(shape)?)?)?;
    let d = data_dim(x)?;
    let weights: Vec<f64> = sigmas.iter().map(|s| s * s / d).collect();
    reduction.apply(&(rownorm2(&residual)? * per_sample(&weights, x)?)?)
}
