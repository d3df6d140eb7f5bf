//! The loss of each Table 3 method on a NICE flow, on the reference code's scale (the total over
//! the 784 dimensions, so that its learning rates apply): our sliced and denoising objectives
//! are per dimension and are multiplied back (`docs/objectives.md`).

use candle_core::{Result, Tensor};
use models::Nice;
use sm_objectives::{
    dsm, fd_ssm, sm_exact, sm_from_diagonal, ssm, ssmvr, BatchMode, Directions, Graph, LogDensity,
    NoiseSource, Reduction,
};

use super::{Method, Table3Config};

/// The loss of `method` on the batch `x` (`[B, 784]`, logit space), averaged over the batch,
/// with its noise from `noise`:
///
/// | method | per sample |
/// | --- | --- |
/// | Approx-BP, CP | `1/2 |s|^2 + sum h` with `h` the method's Hessian-diagonal estimate |
/// | DSM | `1/2 |s(x~) + (x~ - x) / sigma^2|^2` (`D / 2` times [`dsm`]) |
/// | SSM | `v^T H v + 1/2 (v^T s)^2`, Rademacher `v` (`D` times [`ssm`]) |
/// | SSMVR | `v^T H v + 1/2 |s|^2` (`D` times [`ssmvr`]) |
/// | FD-SSM | `D` times [`fd_ssm`] with `v` on the sphere of radius `eps` |
/// | MLE | `-log p(x)` |
/// | exact SM | `tr H + 1/2 |s|^2` |
///
/// # Errors
/// The objectives' own errors (higher-order mode off, shapes, non-finite model output).
pub fn loss(
    method: Method,
    nice: &Nice,
    x: &Tensor,
    noise: &mut NoiseSource,
    cfg: &Table3Config,
) -> Result<Tensor> {
    let d = cfg.model.dim as f64;
    let r = Reduction::Mean;
    match method {
        Method::ApproxBp => {
            let a = nice.approx_bp(x)?;
            sm_from_diagonal(&a.score, &a.hessian_diag, r)
        }
        Method::Cp => {
            let a = nice.curvature_propagation(x, noise)?;
            sm_from_diagonal(&a.score, &a.hessian_diag, r)
        }
        Method::DsmSmall | Method::DsmLarge => {
            let sigma = if method == Method::DsmSmall {
                cfg.sigma_small
            } else {
                cfg.sigma_large
            };
            dsm(nice, x, &noise.gaussian_like(x)?, sigma, r)? * (d / 2.0)
        }
        Method::Ssm => ssm(nice, x, &noise.projection(x, Directions::Rademacher)?, r)? * d,
        Method::Ssmvr => ssmvr(nice, x, &noise.projection(x, Directions::Rademacher)?, r)? * d,
        Method::FdSsm => {
            let proj = noise.projection(x, Directions::Sphere { radius: cfg.eps })?;
            fd_ssm(nice, x, &proj, BatchMode::Concatenated, r)? * d
        }
        Method::Mle => nice.log_density(x)?.neg()?.mean_all(),
        Method::Sm => sm_exact(nice, x, Graph::Keep, r),
    }
}
