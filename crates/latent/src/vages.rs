//! Variational estimators of the marginal score of an energy-based latent-variable model (the
//! VaGES paper, Sec. 3 and App. A): VaES estimates `grad_v log p(v) = E_{p(h|v)}[grad_v log
//! p~(v, h)]` with draws from `q(h | v)`; VaGES also gets the parameter gradient of that score
//! right, `d/dtheta grad_v log p(v) = E_p[d/dtheta grad_v log p~(v, h)] + Cov_p(grad_v log
//! p~(v, h), grad_theta log p~(v, h))`.
//!
//! VaES-CV (App. H) subtracts the zero-mean control variate `grad_v log q(h | v)`.
//!
//! The covariance term is produced by a surrogate whose value is zero and whose
//! theta-gradient is the (weighted or unbiased sample) covariance:
//! `sum_k c_k stopgrad(s_k - s_bar) (f_k - stopgrad(f_k))`, `s_k = grad_v log p~(v, h_k)`,
//! `f_k = log p~(v, h_k)`. Adding a constant (such as `log Z`) to every `f_k` leaves it
//! unchanged because the `c`-weighted deviations sum to zero.

use candle_core::{bail, Result, Tensor, Var};
use models::BernoulliPosterior;
use sm_objectives::JointLogDensity;

/// An estimated marginal score and the visible variable it was taken at.
#[derive(Debug)]
pub struct ScoreEstimate {
    /// `v` as a differentiable variable (a copy), so that derivatives of the score in `v`
    /// (e.g. for SSM) can be taken in higher-order mode.
    pub v: Var,
    /// The estimated `grad_v log p(v)`, `[B, D]`.
    pub score: Tensor,
}

/// Scores `s_k` and joint log-densities `f_k` at the latent draws, on one shared copy of `v`.
fn per_draw<M: JointLogDensity + ?Sized>(
    model: &M,
    v: &Tensor,
    hs: &[Tensor],
) -> Result<(Var, Vec<Tensor>, Vec<Tensor>)> {
    if hs.is_empty() {
        bail!("at least one latent draw is needed")
    }
    // The score must stay differentiable in the parameters.
    sm_objectives::autodiff::ensure_higher_order()?;
    let batch = v.dim(0)?;
    let x = Var::from_tensor(&v.detach())?;
    let (mut scores, mut logs) = (Vec::new(), Vec::new());
    for (k, h) in hs.iter().enumerate() {
        if h.dim(0)? != batch {
            bail!(
                "latent draw {k} has batch {}, the visible batch is {batch}",
                h.dim(0)?
            )
        }
        let f = model.joint_log_density(x.as_tensor(), &h.detach())?;
        if f.dims() != [batch] {
            bail!(
                "joint_log_density must return [{batch}], got {:?}",
                f.dims()
            )
        }
        let s = match f.sum_all()?.backward()?.remove(x.as_tensor()) {
            Some(g) => g,
            None => x.as_tensor().zeros_like()?,
        };
        scores.push(s);
        logs.push(f);
    }
    Ok((x, scores, logs))
}

/// `[B] -> [B, 1, ..., 1]` to broadcast over the visible shape.
fn per_row(w: &Tensor, like: &Tensor) -> Result<Tensor> {
    let mut shape = vec![like.dim(0)?];
    shape.extend(std::iter::repeat_n(1, like.rank() - 1));
    w.to_dtype(like.dtype())?.reshape(shape)
}

/// The weighted mean of the scores plus the zero-valued covariance surrogate.
fn combine(
    scores: &[Tensor],
    logs: &[Tensor],
    mean_w: &[Tensor],
    cov_w: Option<&[Tensor]>,
) -> Result<Tensor> {
    let mut mean = scores[0].zeros_like()?;
    for (s, w) in scores.iter().zip(mean_w) {
        mean = (mean + s.broadcast_mul(&per_row(w, s)?)?)?;
    }
    let Some(cov_w) = cov_w else {
        return Ok(mean);
    };
    let centre = mean.detach();
    let mut surrogate = mean.zeros_like()?;
    for ((s, f), c) in scores.iter().zip(logs).zip(cov_w) {
        let deviation = (s.detach() - &centre)?;
        let zero_valued = (f - f.detach())?;
        let weight = (per_row(&zero_valued, s)? * per_row(c, s)?)?;
        surrogate = (surrogate + deviation.broadcast_mul(&weight)?)?;
    }
    mean + surrogate
}

fn uniform(batch: usize, k: usize, value: f64, like: &Tensor) -> Result<Vec<Tensor>> {
    (0..k)
        .map(|_| Tensor::full(value, batch, like.device())?.to_dtype(like.dtype()))
        .collect()
}

/// VaES: `1/K sum_k grad_v log p~(v, h_k)` with `h_k ~ q(h | v)` (detached draws).
///
/// Its parameter gradient misses the covariance term; use [`vages_score`] when training by it.
///
/// # Shapes
/// * `v`: `[B, D]`; every `hs[k]`: `[B, H]`
/// * the score: `[B, D]`
///
/// # Errors
/// Higher-order mode off, no draw, mismatched batches, a model that does not return `[B]`.
pub fn vaes_score<M: JointLogDensity + ?Sized>(
    model: &M,
    v: &Tensor,
    hs: &[Tensor],
) -> Result<ScoreEstimate> {
    let (x, scores, logs) = per_draw(model, v, hs)?;
    let w = uniform(v.dim(0)?, hs.len(), 1.0 / hs.len() as f64, v)?;
    Ok(ScoreEstimate {
        v: x,
        score: combine(&scores, &logs, &w, None)?,
    })
}

/// VaGES: the VaES value with the unbiased sample covariance (weights `1/(K-1)`) in its
/// parameter gradient.
///
/// # Errors
/// Fewer than two draws, and as [`vaes_score`].
pub fn vages_score<M: JointLogDensity + ?Sized>(
    model: &M,
    v: &Tensor,
    hs: &[Tensor],
) -> Result<ScoreEstimate> {
    if hs.len() < 2 {
        bail!("VaGES needs at least two latent draws for its covariance term")
    }
    let (x, scores, logs) = per_draw(model, v, hs)?;
    let k = hs.len();
    let batch = v.dim(0)?;
    let w = uniform(batch, k, 1.0 / k as f64, v)?;
    let c = uniform(batch, k, 1.0 / (k - 1) as f64, v)?;
    Ok(ScoreEstimate {
        v: x,
        score: combine(&scores, &logs, &w, Some(&c))?,
    })
}

/// VaGES with explicit per-sample probabilities `weights[k]` (`[B]`, summing to one over `k`)
/// of the latent states `hs[k]`, e.g. every state of a small model with its exact posterior
/// probability: then the value is the exact marginal score and the parameter gradient is the
/// exact `d/dtheta grad_v log p(v)` (population covariance).
///
/// # Errors
/// A weight count different from the draw count, and as [`vaes_score`].
pub fn vages_score_weighted<M: JointLogDensity + ?Sized>(
    model: &M,
    v: &Tensor,
    hs: &[Tensor],
    weights: &[Tensor],
) -> Result<ScoreEstimate> {
    if weights.len() != hs.len() {
        bail!(
            "{} weights given for {} latent states",
            weights.len(),
            hs.len()
        )
    }
    let (x, scores, logs) = per_draw(model, v, hs)?;
    let w: Vec<Tensor> = weights.iter().map(Tensor::detach).collect();
    Ok(ScoreEstimate {
        v: x,
        score: combine(&scores, &logs, &w, Some(&w))?,
    })
}

/// VaES-CV (VaGES App. H): `1/K sum_k grad_v log (p~(v, h_k) / q(h_k | v))` with
/// `h_k ~ q(h | v)` held fixed. Subtracting `grad_v log q`, whose expectation under `q` is zero,
/// keeps the estimate's expectation and removes all of its variance when `q` is the true
/// posterior. Its parameter gradient is VaES's (no covariance term).
///
/// # Errors
/// Higher-order mode off, no draw, mismatched batches, a model that does not return `[B]`.
pub fn vaes_cv_score<M: JointLogDensity + ?Sized>(
    model: &M,
    q: &BernoulliPosterior,
    v: &Tensor,
    hs: &[Tensor],
) -> Result<ScoreEstimate> {
    let (x, scores, logs) = per_draw(model, v, hs)?;
    let w = uniform(v.dim(0)?, hs.len(), 1.0 / hs.len() as f64, v)?;
    let mut score = combine(&scores, &logs, &w, None)?;
    for h in hs {
        let lq = q.log_prob(x.as_tensor(), &h.detach())?;
        let g = match lq.sum_all()?.backward()?.remove(x.as_tensor()) {
            Some(g) => g,
            None => x.as_tensor().zeros_like()?,
        };
        score = (score - (g / hs.len() as f64)?)?;
    }
    Ok(ScoreEstimate { v: x, score })
}

/// Refines latent draws by `steps` Langevin steps on the joint log-density in `h` at a fixed
/// `v` (the VaGES reference's particle refinement): `h <- h + alpha/2 g + sigma eps` with
/// `g = grad_h log p~(v, h)`, optionally clipped element-wise to `[-clip, clip]` (the
/// reference's `grad_max_norm`; reference MNIST: `alpha = 1e-2`, `sigma = 1e-4`, 5 steps, no
/// clip). `log_p(h)` is the joint log-density at the fixed `v`, `[B]`. The result is
/// detached.
///
/// # Errors
/// A negative or non-finite step size, noise level or clip, errors of `log_p`.
pub fn sgld_refine(
    log_p: impl Fn(&Tensor) -> Result<Tensor>,
    h0: &Tensor,
    steps: usize,
    alpha: f64,
    sigma: f64,
    clip: Option<f64>,
    noise: &mut sm_objectives::NoiseSource,
) -> Result<Tensor> {
    if !(alpha.is_finite() && alpha >= 0.0 && sigma.is_finite() && sigma >= 0.0) {
        bail!("SGLD step size and noise must be finite and >= 0, got {alpha} and {sigma}")
    }
    if let Some(c) = clip {
        if !(c.is_finite() && c > 0.0) {
            bail!("the SGLD gradient clip must be finite and > 0, got {c}")
        }
    }
    let mut h = h0.detach();
    for _ in 0..steps {
        let x = Var::from_tensor(&h)?;
        let mut grad = match log_p(x.as_tensor())?
            .sum_all()?
            .backward()?
            .remove(x.as_tensor())
        {
            Some(g) => g,
            None => h.zeros_like()?,
        };
        if let Some(c) = clip {
            grad = grad.clamp(-c, c)?;
        }
        let eps = noise.gaussian_like(&h)?;
        h = ((&h + (grad * (0.5 * alpha))?)? + (eps * sigma)?)?.detach();
    }
    Ok(h)
}
