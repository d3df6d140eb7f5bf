//! Sliced score matching by autodiff: SSM (FD-SM Eq. 3), SSM with variance reduction (Eq. 11)
//! for log-densities and for score networks, and annealed SSMVR for NCSN.

use candle_core::{Result, Tensor, Var};

use crate::autodiff::{
    data_dim, ensure_higher_order, grad_or_zeros, input_gradient, per_sample, rowdot, rownorm2,
};
use crate::model::{LogDensity, ScoreModel};
use crate::noise::Projection;
use crate::{validate, NoiseLevels, Reduction};

/// Checks `x` and a projection and returns `(B, C_v)`.
pub(crate) fn check_projection(x: &Tensor, proj: &Projection) -> Result<usize> {
    let (batch, _) = validate::batch_and_dim(x, "x")?;
    validate::same_shape(x, &proj.v, "the projection v")?;
    validate::positive(proj.c_v, "the projection constant C_v")?;
    validate::finite(x, "x")?;
    validate::finite(&proj.v, "the projection v")?;
    Ok(batch)
}

/// Sliced score matching (FD-SM Eq. 3), per sample
/// `[v^T (grad_x^2 log p~) v + 1/2 (v^T grad_x log p~)^2] / C_v`.
///
/// Scaling: **per dimension**: for isotropic `v` the expectation is the exact SM loss divided
/// by `D` ([`crate::sm_exact`]` / D`); [`crate::fd_ssm`] estimates the same quantity.
///
/// # Shapes
/// * `x`, `proj.v`: `[B, ...]`
/// * returns a scalar, or `[B]` with [`Reduction::PerSample`]
///
/// # Errors
/// Higher-order mode off, mismatched shapes, non-finite inputs, `C_v <= 0`.
pub fn ssm<M: LogDensity + ?Sized>(
    model: &M,
    x: &Tensor,
    proj: &Projection,
    reduction: Reduction,
) -> Result<Tensor> {
    sliced_log_density(model, x, proj, SecondTerm::Projected, reduction)
}

/// SSM with variance reduction for a log-density (FD-SM Eq. 11 with `s = grad_x log p~`), per
/// sample `v^T (grad_x^2 log p~) v / C_v + |grad_x log p~|^2 / (2 D)`.
///
/// Scaling: per dimension, the same expectation as [`ssm`].
///
/// # Shapes
/// As [`ssm`].
///
/// # Errors
/// As [`ssm`].
pub fn ssmvr<M: LogDensity + ?Sized>(
    model: &M,
    x: &Tensor,
    proj: &Projection,
    reduction: Reduction,
) -> Result<Tensor> {
    sliced_log_density(model, x, proj, SecondTerm::FullNorm, reduction)
}

#[derive(Clone, Copy)]
enum SecondTerm {
    Projected,
    FullNorm,
}

fn sliced_log_density<M: LogDensity + ?Sized>(
    model: &M,
    x: &Tensor,
    proj: &Projection,
    second: SecondTerm,
    reduction: Reduction,
) -> Result<Tensor> {
    ensure_higher_order()?;
    check_projection(x, proj)?;
    let ig = input_gradient(model, x)?;
    let vg = rowdot(&ig.score, &proj.v)?;
    let hv = grad_or_zeros(&vg.sum_all()?, ig.x.as_tensor())?;
    let vhv = rowdot(&hv, &proj.v)?;
    let second = match second {
        SecondTerm::Projected => (vg.sqr()? * (0.5 / proj.c_v))?,
        SecondTerm::FullNorm => (rownorm2(&ig.score)? * (0.5 / data_dim(x)?))?,
    };
    reduction.apply(&((vhv / proj.c_v)? + second)?)
}

/// SSMVR for a score network (FD-SM Eq. 11), per sample
/// `v^T (grad_x s(x)) v / C_v + |s(x)|^2 / (2 D)`; `v^T (grad s) v` by one reverse pass.
///
/// Scaling: per dimension; [`crate::fd_ssmvr`] estimates the same quantity.
///
/// # Shapes
/// * `x`, `proj.v`: `[B, ...]`
/// * returns a scalar, or `[B]` with [`Reduction::PerSample`]
///
/// # Errors
/// Higher-order mode off, mismatched shapes, non-finite inputs, a score of the wrong shape.
pub fn ssmvr_score<S: ScoreModel + ?Sized>(
    score: &S,
    x: &Tensor,
    proj: &Projection,
    reduction: Reduction,
) -> Result<Tensor> {
    ensure_higher_order()?;
    check_projection(x, proj)?;
    reduction.apply(&score_ssmvr_per_sample(score, x, proj, None)?)
}

/// Annealed SSMVR for NCSN: perturb `x~ = x + sigma_i z` and weight SSMVR at `x~` by `sigma_i^2`,
/// per sample `sigma_i^2 [v^T (grad s(x~, i)) v / C_v + |s(x~, i)|^2 / (2 D)]`.
///
/// # Shapes
/// * `x`, `z`, `proj.v`: `[B, ...]`; `levels.index`: `[B]`
/// * returns a scalar, or `[B]` with [`Reduction::PerSample`]
///
/// # Errors
/// As [`ssmvr_score`], plus out-of-range level indices and non-positive sigmas.
pub fn annealed_ssmvr<S: ScoreModel + ?Sized>(
    score: &S,
    x: &Tensor,
    z: &Tensor,
    proj: &Projection,
    levels: NoiseLevels<'_>,
    reduction: Reduction,
) -> Result<Tensor> {
    ensure_higher_order()?;
    let batch = check_projection(x, proj)?;
    validate::same_shape(x, z, "the noise z")?;
    validate::finite(z, "the noise z")?;
    let sigmas = levels.per_sample_sigmas(batch)?;
    let x_tilde = perturb(x, z, &sigmas)?;
    let per = score_ssmvr_per_sample(score, &x_tilde, proj, Some(levels.index))?;
    let weights: Vec<f64> = sigmas.iter().map(|s| s * s).collect();
    reduction.apply(&(per * per_sample(&weights, x)?)?)
}

fn score_ssmvr_per_sample<S: ScoreModel + ?Sized>(
    score: &S,
    x: &Tensor,
    proj: &Projection,
    level: Option<&Tensor>,
) -> Result<Tensor> {
    let xv = Var::from_tensor(&x.detach())?;
    let s = score.score(xv.as_tensor(), level)?;
    validate::same_shape(x, &s, "the score network output")?;
    let sv = rowdot(&s, &proj.v)?;
    let jtv = grad_or_zeros(&sv.sum_all()?, xv.as_tensor())?;
    let vjv = rowdot(&jtv, &proj.v)?;
    (vjv / proj.c_v)? + (rownorm2(&s)? * (0.5 / data_dim(x)?))?
}

/// `x + sigma_b z_b` for per-sample sigmas.
pub(crate) fn perturb(x: &Tensor, z: &Tensor, sigmas: &[f64]) -> Result<Tensor> {
    let shape: Vec<usize> = std::iter::once(sigmas.len())
        .chain(std::iter::repeat_n(1, x.rank() - 1))
        .collect();
    let s = per_sample(sigmas, x)?.reshape(shape)?;
    x + z.broadcast_mul(&s)?
}
