//! The score-estimation losses of Table 6 on the score network of the encoder's codes
//! (FD-SM Sec. 6.3): SSMVR (Song et al. 2019, Eq. 8 with the full norm, Gaussian directions) and
//! FD-SSMVR (FD-SM Sec. 4, directions on the sphere of radius `eps`), both on the scale of Song
//! et al.'s code (a sum over the latent dimensions, `|s|^2 / 2 + v^T (grad s) v`); and the exact
//! score-matching loss `tr(grad_z s) + |s|^2 / 2` that measures a trained network on test codes.

use candle_core::{Tensor, Var, D};
use models::{AutoencoderKind, LatentScore};
use sm_objectives::{
    fd_ssmvr, ssmvr_score, BatchMode, Directions, NoiseSource, Reduction, ScoreFn,
};

use super::Estimator;

/// The score network as a function of the codes alone: conditioned on `x` for the VAE, on
/// nothing for the WAE. A batch of codes `r` times as long as `x` (FD-SSMVR's `[z + v; z - v]`
/// in one pass) is conditioned on `x` repeated `r` times.
fn score_of<'a>(
    net: &'a LatentScore,
    kind: AutoencoderKind,
    x: &'a Tensor,
) -> impl Fn(&Tensor, Option<&Tensor>) -> candle_core::Result<Tensor> + 'a {
    move |z: &Tensor, _level: Option<&Tensor>| match kind {
        AutoencoderKind::Vae => {
            let (rows, b) = (z.dim(0)?, x.dim(0)?);
            if rows == b || b == 0 || rows % b != 0 {
                net.score(Some(x), z)
            } else {
                let copies: Vec<&Tensor> = std::iter::repeat_n(x, rows / b).collect();
                net.score(Some(&Tensor::cat(&copies, 0)?), z)
            }
        }
        AutoencoderKind::Wae => net.score(None, z),
    }
}

/// The estimator's loss on detached codes `z` `[B, K]` of the images `x` `[B, 784]`, mean over
/// the batch, summed over the `K` latent dimensions.
///
/// # Errors
/// Tensor errors; higher-order mode off for SSMVR.
pub fn score_loss(
    net: &LatentScore,
    kind: AutoencoderKind,
    estimator: Estimator,
    x: &Tensor,
    z: &Tensor,
    noise: &mut NoiseSource,
    eps: f64,
) -> candle_core::Result<Tensor> {
    let k = z.dim(1)? as f64;
    let z = z.detach();
    let score = ScoreFn(score_of(net, kind, x));
    let per_dim = match estimator {
        Estimator::Ssmvr => {
            let proj = noise.projection(&z, Directions::Gaussian)?;
            ssmvr_score(&score, &z, &proj, Reduction::Mean)?
        }
        Estimator::FdSsmvr => {
            let proj = noise.projection(&z, Directions::Sphere { radius: eps })?;
            fd_ssmvr(&score, &z, &proj, BatchMode::Concatenated, Reduction::Mean)?
        }
    };
    per_dim * k
}

/// The exact score-matching loss of the network at codes `z` `[B, K]`, per sample
/// `sum_k d s_k / d z_k + |s|^2 / 2`, the trace by `K` first-order reverse passes (one row of
/// the Jacobian each), so it needs no higher-order mode. Lower is better: it is the Fisher
/// divergence to the codes' distribution up to a constant.
///
/// # Shapes
/// * `x`: `[B, 784]`, `z`: `[B, K]`; returns `[B]`
///
/// # Errors
/// Tensor errors.
pub fn exact_sm(
    net: &LatentScore,
    kind: AutoencoderKind,
    x: &Tensor,
    z: &Tensor,
) -> candle_core::Result<Tensor> {
    let zv = Var::from_tensor(&z.detach())?;
    let s = score_of(net, kind, x)(zv.as_tensor(), None)?;
    let k = z.dim(1)?;
    let mut trace = Tensor::zeros(z.dim(0)?, z.dtype(), z.device())?;
    for j in 0..k {
        let grads = s.narrow(1, j, 1)?.sum_all()?.backward()?;
        let g = grads
            .get(zv.as_tensor())
            .ok_or_else(|| candle_core::Error::Msg("the score does not depend on z".into()))?;
        trace = (trace + g.narrow(1, j, 1)?.squeeze(1)?)?;
    }
    let norm = (s.detach().sqr()?.sum(D::Minus1)? * 0.5)?;
    trace + norm
}
