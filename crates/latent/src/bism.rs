//! Bi-level score matching (BiSM, Bao et al. 2020, Sec. 3 and Algorithm 1) for energy-based
//! latent-variable models with a Bernoulli variational posterior:
//!
//! 1. `K` lower-level updates of `q(h | v; phi)` on the minibatch with `theta` frozen, on the
//!    KL divergence in its ELBO form (Eq. 10), `E_q[log q(h|v) - log p~(v, h)]`, with
//!    reparameterised (binary Gumbel-softmax) draws;
//! 2. `N` unrolled, differentiable updates `phi^n = phi^{n-1} - alpha dG/dphi` (Eq. 13) from the
//!    result, so that `phi^N` is a function of `theta`;
//! 3. the higher-level objective on the score estimate
//!    `grad_v log (p~(v, h) / q(h | v; phi^N))` (Eq. 8) with `h` drawn from `q(.|v; phi^N)`
//!    and held fixed; its `theta`-gradient flows through the energy and the unrolled updates
//!    (Eq. 14). BiDSM uses the DSM functional (FD-SM Eq. 2, per dimension).
//!
//! The lower level uses plain gradient steps as in Eqs. 12-13 (the reference code uses Adam).

use candle_core::backprop::GradStore;
use candle_core::{bail, Result, Tensor, Var};
use models::{BernoulliPosterior, ConvGaussianPosterior, GaussianPosterior};
use sm_objectives::{JointLogDensity, NoiseSource, Reduction};

use crate::vages::ScoreEstimate;

/// A variational posterior BiSM can unroll: its parameters as a list, rebuilt from new values
/// (differentiable updates), and its log-density.
pub trait Posterior: Sized {
    /// The parameters, in a fixed order.
    fn parameters(&self) -> Vec<Tensor>;
    /// The same posterior with `params` (same order and shapes) in place of its own.
    ///
    /// # Errors
    /// Wrong count or shapes.
    fn with_parameters(&self, params: Vec<Tensor>) -> Result<Self>;
    /// `log q(h | v)`, `[B]`.
    ///
    /// # Errors
    /// Shape errors.
    fn log_q(&self, v: &Tensor, h: &Tensor) -> Result<Tensor>;
}

impl Posterior for BernoulliPosterior {
    fn parameters(&self) -> Vec<Tensor> {
        let (w, b) = self.params();
        vec![w.clone(), b.clone()]
    }

    fn with_parameters(&self, params: Vec<Tensor>) -> Result<Self> {
        let [w, b]: [Tensor; 2] = params.try_into().map_err(|p: Vec<Tensor>| {
            candle_core::Error::Msg(format!("2 parameters expected, got {}", p.len()))
        })?;
        BernoulliPosterior::from_tensors(w, b)
    }

    fn log_q(&self, v: &Tensor, h: &Tensor) -> Result<Tensor> {
        self.log_prob(v, h)
    }
}

impl Posterior for GaussianPosterior {
    fn parameters(&self) -> Vec<Tensor> {
        self.params().into_iter().cloned().collect()
    }

    fn with_parameters(&self, params: Vec<Tensor>) -> Result<Self> {
        let [a, b, c, d]: [Tensor; 4] = params.try_into().map_err(|p: Vec<Tensor>| {
            candle_core::Error::Msg(format!("4 parameters expected, got {}", p.len()))
        })?;
        GaussianPosterior::from_tensors(a, b, c, d)
    }

    fn log_q(&self, v: &Tensor, h: &Tensor) -> Result<Tensor> {
        self.log_prob(v, h)
    }
}

impl Posterior for ConvGaussianPosterior {
    fn parameters(&self) -> Vec<Tensor> {
        ConvGaussianPosterior::parameters(self).to_vec()
    }

    fn with_parameters(&self, params: Vec<Tensor>) -> Result<Self> {
        ConvGaussianPosterior::from_tensors(self.config(), params)
    }

    fn log_q(&self, v: &Tensor, h: &Tensor) -> Result<Tensor> {
        self.log_prob(v, h)
    }
}

/// A [`Posterior`] over continuous `h` with reparameterised draws and a closed-form
/// `grad_h log q`: what the Fisher lower level (BiSM Eq. 11) needs.
pub trait Reparameterized: Posterior {
    /// A draw `h ~ q(h | v)`, differentiable in the parameters (and `v`).
    ///
    /// # Errors
    /// Shape errors.
    fn sample(&self, v: &Tensor, noise: &mut NoiseSource) -> Result<Tensor>;
    /// `grad_h log q(h | v)`, the shape of `h`.
    ///
    /// # Errors
    /// Shape errors.
    fn grad_h_log_q(&self, v: &Tensor, h: &Tensor) -> Result<Tensor>;
}

impl Reparameterized for GaussianPosterior {
    fn sample(&self, v: &Tensor, noise: &mut NoiseSource) -> Result<Tensor> {
        GaussianPosterior::sample(self, v, noise)
    }

    fn grad_h_log_q(&self, v: &Tensor, h: &Tensor) -> Result<Tensor> {
        self.grad_h_log_prob(v, h)
    }
}

impl Reparameterized for ConvGaussianPosterior {
    fn sample(&self, v: &Tensor, noise: &mut NoiseSource) -> Result<Tensor> {
        ConvGaussianPosterior::sample(self, v, noise)
    }

    fn grad_h_log_q(&self, v: &Tensor, h: &Tensor) -> Result<Tensor> {
        self.grad_h_log_prob(v, h)
    }
}

/// One differentiable update `phi' = phi - lr dG/dphi` of any [`Posterior`] on the lower
/// objective `lower` (Eq. 13), kept on the graph so `phi'` depends on the model's parameters.
/// Gradients are taken at zero-valued variable offsets: Candle keeps gradients only for
/// variables, and `phi` is an intermediate result after the first step. Needs higher-order
/// mode.
///
/// # Errors
/// Higher-order mode off, errors of `lower`.
pub fn unrolled_update<P: Posterior>(
    q: &P,
    lr: f64,
    mut lower: impl FnMut(&P) -> Result<Tensor>,
) -> Result<P> {
    sm_objectives::autodiff::ensure_higher_order()?;
    let params = q.parameters();
    let offsets: Vec<Var> = params
        .iter()
        .map(|p| Var::zeros(p.shape(), p.dtype(), p.device()))
        .collect::<Result<_>>()?;
    let shifted = q.with_parameters(
        params
            .iter()
            .zip(&offsets)
            .map(|(p, o)| p + o.as_tensor())
            .collect::<Result<_>>()?,
    )?;
    let grads = lower(&shifted)?.backward()?;
    let next = params
        .iter()
        .zip(&offsets)
        .map(|(p, o)| match grads.get(o.as_tensor()) {
            Some(g) => p - (g * lr)?,
            None => Ok(p.clone()),
        })
        .collect::<Result<_>>()?;
    q.with_parameters(next)
}

/// Settings of the lower level.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct BismConfig {
    /// Lower-level updates per minibatch, `K` (paper: 5).
    pub lower_steps: usize,
    /// Unrolled differentiable updates, `N` (paper: 0, 1, 5, 10).
    pub unroll: usize,
    /// Lower-level step size `alpha`.
    pub lower_lr: f64,
    /// Gumbel-softmax temperature (reference: 0.1).
    pub tau: f64,
}

impl Default for BismConfig {
    fn default() -> Self {
        Self {
            lower_steps: 5,
            unroll: 5,
            lower_lr: 1e-2,
            tau: 0.1,
        }
    }
}

impl BismConfig {
    /// Checks the settings.
    ///
    /// # Errors
    /// A non-positive or non-finite step size or temperature.
    pub fn validate(&self) -> Result<()> {
        for (name, v) in [("lower_lr", self.lower_lr), ("tau", self.tau)] {
            if !(v.is_finite() && v > 0.0) {
                bail!("BiSM {name} must be finite and > 0, got {v}")
            }
        }
        Ok(())
    }
}

/// The lower-level objective (BiSM Eq. 10, KL up to a constant), batch mean:
/// `E_q[log q(h | v) - log p~(v, h)]` at one relaxed draw per sample.
///
/// # Errors
/// Shape errors, a non-positive temperature.
pub fn lower_kl<M: JointLogDensity + ?Sized>(
    model: &M,
    q: &BernoulliPosterior,
    v: &Tensor,
    tau: f64,
    noise: &mut NoiseSource,
) -> Result<Tensor> {
    let h = q.sample_relaxed(v, tau, noise)?;
    (q.log_prob(v, &h)? - model.joint_log_density(v, &h)?)?.mean_all()
}

/// The Fisher lower-level objective for continuous `h` (BiSM Eq. 11), batch mean at one
/// reparameterised draw: `1/2 |grad_h log q(h | v) - grad_h log p~(v, h)|^2`. Unlike the KL
/// form it is zero exactly when `q` is the true posterior, so it also measures inference
/// accuracy. Needs higher-order mode (its gradient differentiates `grad_h log p~`).
///
/// # Errors
/// Higher-order mode off, shape errors.
pub fn lower_fisher<M: JointLogDensity + ?Sized, P: Reparameterized>(
    model: &M,
    q: &P,
    v: &Tensor,
    noise: &mut NoiseSource,
) -> Result<Tensor> {
    fisher_per_sample(|h| model.joint_log_density(v, h), q, v, noise)?.mean_all()
}

/// The Fisher lower-level objective per sample, `[B]`, with the model's joint log-density at
/// the fixed `v` given as a function of `h` alone (`log_p(h)`, `[B]`): a model whose visible
/// part is expensive computes it once for all `K` lower-level steps (the model is frozen
/// there). Needs higher-order mode.
///
/// # Errors
/// Higher-order mode off, shape errors, errors of `log_p`.
pub fn fisher_per_sample<P: Reparameterized>(
    log_p: impl Fn(&Tensor) -> Result<Tensor>,
    q: &P,
    v: &Tensor,
    noise: &mut NoiseSource,
) -> Result<Tensor> {
    sm_objectives::autodiff::ensure_higher_order()?;
    let h = q.sample(v, noise)?;
    // grad_h log p~ at h, kept differentiable in the model's and q's parameters (through h):
    // differentiate at a zero-valued variable offset, as Candle keeps gradients only for
    // variables.
    let offset = Var::zeros(h.shape(), h.dtype(), h.device())?;
    let at = (&h + offset.as_tensor())?;
    let grad_p = match log_p(&at)?
        .sum_all()?
        .backward()?
        .remove(offset.as_tensor())
    {
        Some(g) => g,
        None => h.zeros_like()?,
    };
    let grad_q = q.grad_h_log_q(v, &at)?;
    (grad_q - grad_p)?.sqr()?.sum(1)? * 0.5
}

/// `K` lower-level updates of the posterior's variables with the model frozen (Algorithm 1,
/// Eq. 12): each computes the gradients of [`lower_kl`] and hands them to `apply`, the
/// optimiser step (plain gradient descent as in Eq. 12, or Adam as the reference code).
///
/// # Errors
/// Shape errors, errors of `apply`.
#[allow(clippy::too_many_arguments)]
pub fn lower_updates<M: JointLogDensity + ?Sized>(
    model: &M,
    weight: &Var,
    bias: &Var,
    v: &Tensor,
    cfg: &BismConfig,
    noise: &mut NoiseSource,
    mut apply: impl FnMut(&GradStore) -> Result<()>,
) -> Result<()> {
    cfg.validate()?;
    let v = v.detach();
    for _ in 0..cfg.lower_steps {
        let q =
            BernoulliPosterior::from_tensors(weight.as_tensor().clone(), bias.as_tensor().clone())?;
        apply(&lower_kl(model, &q, &v, cfg.tau, noise)?.backward()?)?;
    }
    Ok(())
}

/// One unrolled step `phi' = phi - alpha dG/dphi` kept on the graph (Eq. 13), so that `phi'`
/// is differentiable in the model's parameters through `phi` and the gradient. Needs
/// higher-order mode.
///
/// # Errors
/// Higher-order mode off, shape errors.
pub fn unrolled_step<M: JointLogDensity + ?Sized>(
    model: &M,
    q: &BernoulliPosterior,
    v: &Tensor,
    cfg: &BismConfig,
    noise: &mut NoiseSource,
) -> Result<BernoulliPosterior> {
    let v = v.detach();
    unrolled_update(q, cfg.lower_lr, |q| lower_kl(model, q, &v, cfg.tau, noise))
}

/// `phi^N(theta)`: `N` unrolled steps from the (constant) parameters `phi0`.
///
/// # Errors
/// As [`unrolled_step`].
pub fn unroll<M: JointLogDensity + ?Sized>(
    model: &M,
    phi0: &BernoulliPosterior,
    v: &Tensor,
    cfg: &BismConfig,
    noise: &mut NoiseSource,
) -> Result<BernoulliPosterior> {
    let (w, b) = phi0.params();
    let mut q = BernoulliPosterior::from_tensors(w.detach(), b.detach())?;
    for _ in 0..cfg.unroll {
        q = unrolled_step(model, &q, v, cfg, noise)?;
    }
    Ok(q)
}

/// The BiSM score estimate `grad_v [log p~(v, h) - log q(h | v)]` at one relaxed draw from `q`,
/// held fixed (Eq. 8), kept differentiable in the model's and `q`'s parameters.
///
/// # Errors
/// Higher-order mode off, shape errors.
pub fn bism_score<M: JointLogDensity + ?Sized>(
    model: &M,
    q: &BernoulliPosterior,
    v: &Tensor,
    tau: f64,
    noise: &mut NoiseSource,
) -> Result<ScoreEstimate> {
    let h = q.sample_relaxed(&v.detach(), tau, noise)?.detach();
    bism_score_at(model, q, v, &h)
}

/// The BiSM score estimate at a given latent value `h` (`[B, H]`, treated as a constant).
///
/// # Errors
/// Higher-order mode off, shape errors.
pub fn bism_score_at<M: JointLogDensity + ?Sized, P: Posterior>(
    model: &M,
    q: &P,
    v: &Tensor,
    h: &Tensor,
) -> Result<ScoreEstimate> {
    sm_objectives::autodiff::ensure_higher_order()?;
    let x = Var::from_tensor(&v.detach())?;
    let h = h.detach();
    let f = (model.joint_log_density(x.as_tensor(), &h)? - q.log_q(x.as_tensor(), &h)?)?;
    let score = match f.sum_all()?.backward()?.remove(x.as_tensor()) {
        Some(g) => g,
        None => x.as_tensor().zeros_like()?,
    };
    Ok(ScoreEstimate { v: x, score })
}

/// BiDSM: the DSM functional (FD-SM Eq. 2, per dimension) on the BiSM score estimate at
/// `v~ = v + sigma z`, `|s(v~) + (v~ - v) / sigma^2|^2 / D` per sample.
///
/// # Shapes
/// * `v`, `z`: `[B, D]`
/// * returns a scalar, or `[B]` with [`Reduction::PerSample`]
///
/// # Errors
/// `sigma <= 0`, shape errors, higher-order mode off.
#[allow(clippy::too_many_arguments)]
pub fn bidsm<M: JointLogDensity + ?Sized>(
    model: &M,
    q: &BernoulliPosterior,
    v: &Tensor,
    z: &Tensor,
    sigma: f64,
    tau: f64,
    reduction: Reduction,
    noise: &mut NoiseSource,
) -> Result<Tensor> {
    if !(sigma.is_finite() && sigma > 0.0) {
        bail!("sigma must be finite and > 0, got {sigma}")
    }
    if v.dims() != z.dims() {
        bail!(
            "v {:?} and z {:?} must have the same shape",
            v.dims(),
            z.dims()
        )
    }
    let v_tilde = (v + (z * sigma)?)?;
    let est = bism_score(model, q, &v_tilde, tau, noise)?;
    dsm_functional(&est.score, z, sigma, reduction)
}

/// `|s + z / sigma|^2 / D` per sample (the DSM residual with `v~ - v = sigma z`).
///
/// # Errors
/// Shape errors.
pub fn dsm_functional(
    score: &Tensor,
    z: &Tensor,
    sigma: f64,
    reduction: Reduction,
) -> Result<Tensor> {
    let d = score.dim(1)? as f64;
    let per = ((score + (z / sigma)?)?.sqr()?.sum(1)? / d)?;
    reduction.apply(&per)
}

/// The SSM functional (FD-SM Eq. 3) on a score estimate, per sample
/// `1/2 (u . s)^2 + u . grad_v (u . s)` with the estimate's own `v`: BiSSM on a BiSM estimate.
/// Needs higher-order mode (the estimate must be differentiable in `v`).
///
/// # Shapes
/// * `est.score`, `u`: `[B, D]`
/// * returns a scalar, or `[B]` with [`Reduction::PerSample`]
///
/// # Errors
/// Shape errors.
pub fn sliced_functional(est: &ScoreEstimate, u: &Tensor, reduction: Reduction) -> Result<Tensor> {
    if est.score.dims() != u.dims() {
        bail!(
            "projection {:?} must have the score's shape {:?}",
            u.dims(),
            est.score.dims()
        )
    }
    let us = (&est.score * u)?.sum(1)?;
    let hvp = match us.sum_all()?.backward()?.remove(est.v.as_tensor()) {
        Some(g) => g,
        None => u.zeros_like()?,
    };
    let per = ((us.sqr()? * 0.5)? + (hvp * u)?.sum(1)?)?;
    reduction.apply(&per)
}

/// The multiscale DSM functional (BiMDSM; FD-SM App. C.2 weighting) on a score estimate at
/// `v~ = v + sigma_b z`, per sample
/// `sigma_0^4 / sigma_b^2 |s(v~) + sigma_b z / sigma_0^2|^2 / D`, the same per-dimension
/// scaling as `sm_objectives::mdsm`.
///
/// # Shapes
/// * `score`, `z`: `[B, D]`; `sigmas`: `B` values
/// * returns a scalar, or `[B]` with [`Reduction::PerSample`]
///
/// # Errors
/// Shape errors, non-positive noise levels.
pub fn mdsm_functional(
    score: &Tensor,
    z: &Tensor,
    sigmas: &[f64],
    sigma0: f64,
    reduction: Reduction,
) -> Result<Tensor> {
    let (b, d) = score.dims2()?;
    if z.dims() != score.dims() || sigmas.len() != b {
        bail!(
            "score {:?}, noise {:?} and {} noise levels do not fit together",
            score.dims(),
            z.dims(),
            sigmas.len()
        )
    }
    if sigmas
        .iter()
        .chain([&sigma0])
        .any(|s| !(s.is_finite() && *s > 0.0))
    {
        bail!("noise levels must be finite and > 0")
    }
    let per_row =
        |vals: Vec<f64>| Tensor::from_vec(vals, (b, 1), score.device())?.to_dtype(score.dtype());
    let shift = per_row(sigmas.iter().map(|s| s / (sigma0 * sigma0)).collect())?;
    let resid = (score + z.broadcast_mul(&shift)?)?;
    let weights = per_row(
        sigmas
            .iter()
            .map(|s| sigma0.powi(4) / (s * s) / d as f64)
            .collect(),
    )?;
    let per = resid.sqr()?.broadcast_mul(&weights)?.sum(1)?;
    reduction.apply(&per)
}
