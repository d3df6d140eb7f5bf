//! FD-SSM (FD-SM Eq. 9) for log-densities and FD-SSMVR (Sec. 4) for score networks, plain and
//! annealed (NCSN).

use candle_core::{Result, Tensor};

use super::eval::{combine, eq8_stencils, log_density_at, score_at};
use crate::autodiff::{data_dim, per_sample, rowdot, rownorm2};
use crate::gradient::{check_noise, check_projection, perturb};
use crate::model::{LogDensity, ScoreModel};
use crate::noise::Projection;
use crate::{validate, BatchMode, NoiseLevels, Reduction};

/// FD-SSM (FD-SM Eq. 9), per sample
/// `[L(x+v) + L(x-v) - 2 L(x) + (L(x+v) - L(x-v))^2 / 8] / C_v` with `L = log p~`.
///
/// With `v` on the sphere of radius `eps` (`C_v = eps^2`) this is Eq. 9 exactly; for the same `v`
/// it equals [`crate::ssm`] up to `O(eps^2)`. Scaling: per dimension, like [`crate::ssm`].
/// Evaluations use the Eq. 8 stencils of `fd-core` at offsets `0, +1, -1`.
///
/// # Shapes
/// * `x`, `proj.v`: `[B, ...]`
/// * returns a scalar, or `[B]` with [`Reduction::PerSample`]
///
/// # Errors
/// Mismatched shapes, non-finite inputs, `C_v <= 0`, a model that does not return `[B]`.
pub fn fd_ssm<M: LogDensity + ?Sized>(
    model: &M,
    x: &Tensor,
    proj: &Projection,
    mode: BatchMode,
    reduction: Reduction,
) -> Result<Tensor> {
    check_projection(x, proj)?;
    let (first, second) = eq8_stencils()?;
    let offsets = second.offsets().to_vec(); // [0, +1, -1]
    let values = log_density_at(model, x, &proj.v, &offsets, mode)?;
    let vhv = combine(&second, &offsets, &values)?;
    let vg = combine(&first, &offsets, &values)?;
    reduction.apply(&((vhv + (vg.sqr()? * 0.5)?)? / proj.c_v)?)
}

/// FD-SSMVR for a score network (FD-SM Sec. 4), per sample
/// `|s(x+v) + s(x-v)|^2 / (8 D) + v^T (s(x+v) - s(x-v)) / (2 C_v)`.
///
/// With `v` on the sphere of radius `eps` this is the paper's FD-SSMVR; for the same `v` it
/// equals [`crate::ssmvr_score`] up to `O(eps^2)`. Scaling: per dimension.
///
/// # Shapes
/// * `x`, `proj.v`: `[B, ...]`
/// * returns a scalar, or `[B]` with [`Reduction::PerSample`]
///
/// # Errors
/// Mismatched shapes, non-finite inputs, `C_v <= 0`, a score of the wrong shape.
pub fn fd_ssmvr<S: ScoreModel + ?Sized>(
    score: &S,
    x: &Tensor,
    proj: &Projection,
    mode: BatchMode,
    reduction: Reduction,
) -> Result<Tensor> {
    check_projection(x, proj)?;
    reduction.apply(&fd_ssmvr_per_sample(score, x, proj, None, mode)?)
}

/// Annealed FD-SSMVR for NCSN: `x~ = x + sigma_i z`, FD-SSMVR at `x~` with the level `i`,
/// weighted by `sigma_i^2`; the FD counterpart of [`crate::annealed_ssmvr`].
///
/// # Shapes
/// * `x`, `z`, `proj.v`: `[B, ...]`; `levels.index`: `[B]`
/// * returns a scalar, or `[B]` with [`Reduction::PerSample`]
///
/// # Errors
/// As [`fd_ssmvr`], plus out-of-range level indices and non-positive sigmas.
pub fn annealed_fd_ssmvr<S: ScoreModel + ?Sized>(
    score: &S,
    x: &Tensor,
    z: &Tensor,
    proj: &Projection,
    levels: NoiseLevels<'_>,
    mode: BatchMode,
    reduction: Reduction,
) -> Result<Tensor> {
    let batch = check_noise(x, z)?;
    check_projection(x, proj)?;
    let sigmas = levels.per_sample_sigmas(batch)?;
    let x_tilde = perturb(x, z, &sigmas)?;
    let per = fd_ssmvr_per_sample(score, &x_tilde, proj, Some(levels.index), mode)?;
    let weights: Vec<f64> = sigmas.iter().map(|s| s * s).collect();
    reduction.apply(&(per * per_sample(&weights, x)?)?)
}

fn fd_ssmvr_per_sample<S: ScoreModel + ?Sized>(
    score: &S,
    x: &Tensor,
    proj: &Projection,
    level: Option<&Tensor>,
    mode: BatchMode,
) -> Result<Tensor> {
    validate::finite(x, "x")?;
    let (first, _) = eq8_stencils()?;
    let offsets = first.offsets().to_vec(); // [+1, -1]
    let s = score_at(score, x, &proj.v, &offsets, level, mode)?;
    // (s+ - s-)/2 = (grad s) v + O(eps^3): the Eq. 8 first-order stencil applied to the score.
    let jv = combine(&first, &offsets, &s)?;
    let mean = ((&s[0] + &s[1])? * 0.5)?;
    let norm_term = (rownorm2(&mean)? * (0.5 / data_dim(x)?))?;
    norm_term + (rowdot(&jv, &proj.v)? / proj.c_v)?
}
