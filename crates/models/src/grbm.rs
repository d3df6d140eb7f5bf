//! The Gaussian restricted Boltzmann machine of BiSM Sec. 5.1 and the VaGES appendix (App. F),
//! in the reference code's convention
//! `E(v, h) = 1/2 |(v - b) / sigma|^2 - c.h - v.W h`, `h in {0, 1}^H`, with a learnable
//! per-dimension `log sigma`: free energy, exact conditionals, block Gibbs sampling, and the
//! log-partition function exactly (enumerating `h`) or by annealed importance sampling.
//!
//! The paper writes the coupling as `v.W' h / sigma`; the two are the same family with
//! `W = W' / sigma` (row `i` of `W'` divided by `sigma_i`).

use candle_core::{bail, DType, Result, Tensor, D};
use candle_nn::{Init, VarBuilder};
use layers::softplus;
use serde::{Deserialize, Serialize};
use sm_objectives::{JointLogDensity, LogDensity, NoiseSource};

/// Sizes of a [`Grbm`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrbmConfig {
    /// Visible dimension `D`.
    pub visible: usize,
    /// Number of binary hidden units `H`.
    pub hidden: usize,
}

/// Largest `H` for which [`Grbm::log_partition_exact`] enumerates `2^H` states.
pub const MAX_EXACT_HIDDEN: usize = 20;

/// A Gaussian RBM. Weight names: `w` (`[D, H]`), `b` (`[D]`), `c` (`[H]`), `log_sigma` (`[D]`).
#[derive(Debug, Clone)]
pub struct Grbm {
    w: Tensor,
    b: Tensor,
    c: Tensor,
    log_sigma: Tensor,
    config: GrbmConfig,
}

impl Grbm {
    /// Builds the model through `vb`: `W ~ N(0, 0.01^2)`, `b = c = 0`, `log sigma = 0` where new.
    ///
    /// # Errors
    /// A zero size, or a `VarBuilder` holding a weight of the wrong shape.
    pub fn new(config: GrbmConfig, vb: VarBuilder) -> Result<Self> {
        if config.visible == 0 || config.hidden == 0 {
            bail!("invalid GRBM config {config:?}: both sizes must be at least 1")
        }
        let (d, h) = (config.visible, config.hidden);
        Ok(Self {
            w: vb.get_with_hints(
                (d, h),
                "w",
                Init::Randn {
                    mean: 0.0,
                    stdev: 0.01,
                },
            )?,
            b: vb.get_with_hints(d, "b", Init::Const(0.0))?,
            c: vb.get_with_hints(h, "c", Init::Const(0.0))?,
            log_sigma: vb.get_with_hints(d, "log_sigma", Init::Const(0.0))?,
            config,
        })
    }

    /// The sizes.
    pub fn config(&self) -> GrbmConfig {
        self.config
    }

    fn check_v(&self, v: &Tensor) -> Result<usize> {
        match v.dims() {
            [b, d] if *d == self.config.visible => Ok(*b),
            other => bail!(
                "GRBM expects visible input [B, {}], got {other:?}",
                self.config.visible
            ),
        }
    }

    fn inv_var(&self) -> Result<Tensor> {
        (self.log_sigma.affine(-2.0, 0.0))?.exp()
    }

    /// `(v - b) / sigma^2`-weighted quadratic `1/2 |(v - b)/sigma|^2`, `[B]`.
    fn quadratic(&self, v: &Tensor) -> Result<Tensor> {
        (v.broadcast_sub(&self.b)?
            .sqr()?
            .broadcast_mul(&self.inv_var()?)?
            * 0.5)?
            .sum(D::Minus1)
    }

    /// The hidden pre-activations `c + v W`, `[B, H]`.
    fn hidden_logits(&self, v: &Tensor) -> Result<Tensor> {
        v.matmul(&self.w)?.broadcast_add(&self.c)
    }

    /// `E(v, h)`, `[B]`.
    ///
    /// # Shapes
    /// * `v`: `[B, D]`; `h`: `[B, H]` (binary, or relaxed values in `[0, 1]`)
    pub fn energy(&self, v: &Tensor, h: &Tensor) -> Result<Tensor> {
        self.check_v(v)?;
        let coupling = (v.matmul(&self.w)? * h)?.sum(D::Minus1)?;
        let bias = h.broadcast_mul(&self.c)?.sum(D::Minus1)?;
        (self.quadratic(v)? - bias)? - coupling
    }

    /// The free energy `F(v) = -log sum_h exp(-E(v, h)) = 1/2 |(v - b)/sigma|^2 -
    /// sum_j softplus(c_j + (v W)_j)`, `[B]`.
    pub fn free_energy(&self, v: &Tensor) -> Result<Tensor> {
        self.check_v(v)?;
        self.quadratic(v)? - softplus(&self.hidden_logits(v)?)?.sum(D::Minus1)?
    }

    /// `p(h_j = 1 | v) = sigmoid(c + v W)_j`, `[B, H]`.
    pub fn hidden_probs(&self, v: &Tensor) -> Result<Tensor> {
        self.check_v(v)?;
        candle_nn::ops::sigmoid(&self.hidden_logits(v)?)
    }

    /// The mean of `p(v | h) = N(b + sigma^2 (W h), diag sigma^2)`, `[B, D]`.
    pub fn visible_mean(&self, h: &Tensor) -> Result<Tensor> {
        let var = self.log_sigma.affine(2.0, 0.0)?.exp()?;
        h.matmul(&self.w.t()?)?
            .broadcast_mul(&var)?
            .broadcast_add(&self.b)
    }

    /// The exact marginal score `grad_v log p(v) = -(v - b)/sigma^2 + W sigmoid(c + v W)`,
    /// `[B, D]`.
    pub fn marginal_score(&self, v: &Tensor) -> Result<Tensor> {
        let p = self.hidden_probs(v)?;
        let centred = v.broadcast_sub(&self.b)?.broadcast_mul(&self.inv_var()?)?;
        p.matmul(&self.w.t()?)? - centred
    }

    /// The exact score-matching loss of the marginal (Hyvarinen's objective, the "test Fisher
    /// divergence" of BiSM Table 1 up to a data constant), per sample
    /// `1/2 |s(v)|^2 + tr grad_v s(v)` with
    /// `tr grad_v s = -sum_i 1/sigma_i^2 + sum_ij W_ij^2 p_j (1 - p_j)`, `p = sigmoid(c + v W)`;
    /// `[B]`, in closed form.
    pub fn score_matching_loss(&self, v: &Tensor) -> Result<Tensor> {
        let p = self.hidden_probs(v)?;
        let s = self.marginal_score(v)?;
        let curvature = (&p * p.affine(-1.0, 1.0)?)?
            .matmul(&self.w.sqr()?.t()?)?
            .sum(D::Minus1)?;
        // Kept on the graph (and in the input's dtype) so that the loss trains log sigma too.
        let trace = curvature.broadcast_sub(&self.inv_var()?.sum_all()?)?;
        (s.sqr()?.sum(D::Minus1)? * 0.5)? + trace
    }

    /// Draws `h ~ p(h | v)`, `[B, H]` of 0/1 in `v`'s dtype.
    pub fn sample_hidden(&self, v: &Tensor, noise: &mut NoiseSource) -> Result<Tensor> {
        let p = self.hidden_probs(v)?;
        noise.uniform_like(&p)?.lt(&p)?.to_dtype(v.dtype())
    }

    /// Draws `v ~ p(v | h)`, `[B, D]`.
    pub fn sample_visible(&self, h: &Tensor, noise: &mut NoiseSource) -> Result<Tensor> {
        let mean = self.visible_mean(h)?;
        let eps = noise.gaussian_like(&mean)?;
        mean + eps.broadcast_mul(&self.log_sigma.exp()?)?
    }

    /// `sweeps` rounds of block Gibbs sampling from `v0` (`h ~ p(h|v)`, then `v ~ p(v|h)`);
    /// returns the last visible state and, when `mean_last` is set, `E[v | h]` for the last `h`
    /// instead of a draw (the reference code's samples). Detached from the graph.
    pub fn gibbs(
        &self,
        v0: &Tensor,
        sweeps: usize,
        mean_last: bool,
        noise: &mut NoiseSource,
    ) -> Result<Tensor> {
        self.check_v(v0)?;
        let mut v = v0.detach();
        for s in 0..sweeps {
            let h = self.sample_hidden(&v, noise)?;
            v = if mean_last && s + 1 == sweeps {
                self.visible_mean(&h)?
            } else {
                self.sample_visible(&h, noise)?
            }
            .detach();
        }
        Ok(v)
    }

    /// `log Z` by enumerating the `2^H` hidden states:
    /// `log Z = sum_i log(sqrt(2 pi) sigma_i) + logsumexp_h [c.h + b.W h + 1/2 sum_i sigma_i^2
    /// (W h)_i^2]` (the Gaussian integral over `v` for each `h`), computed in f64.
    ///
    /// # Errors
    /// `H >` [`MAX_EXACT_HIDDEN`].
    pub fn log_partition_exact(&self) -> Result<f64> {
        let h_count = self.config.hidden;
        if h_count > MAX_EXACT_HIDDEN {
            bail!(
                "exact log Z enumerates 2^H states; H = {h_count} exceeds {MAX_EXACT_HIDDEN}, use AIS"
            )
        }
        let w = self.w.to_dtype(DType::F64)?.detach();
        let b = self.b.to_dtype(DType::F64)?.detach();
        let c = self.c.to_dtype(DType::F64)?.detach();
        let log_sigma = self.log_sigma.to_dtype(DType::F64)?.detach();
        let var = log_sigma.affine(2.0, 0.0)?.exp()?;
        let n = 1usize << h_count;
        let states: Vec<f64> = (0..n)
            .flat_map(|s| (0..h_count).map(move |j| ((s >> j) & 1) as f64))
            .collect();
        let hs = Tensor::from_vec(states, (n, h_count), w.device())?;
        let wh = hs.matmul(&w.t()?)?; // [n, D]
        let terms = ((hs.broadcast_mul(&c)?.sum(1)? + wh.broadcast_mul(&b)?.sum(1)?)?
            + (wh.sqr()?.broadcast_mul(&var)?.sum(1)? * 0.5)?)?;
        let lse = log_sum_exp(&terms.to_vec1::<f64>()?);
        let gauss: f64 = log_sigma
            .to_vec1::<f64>()?
            .iter()
            .map(|ls| ls + 0.5 * (2.0 * std::f64::consts::PI).ln())
            .sum();
        Ok(gauss + lse)
    }

    /// `log Z` by annealed importance sampling (Salakhutdinov and Murray 2008) with `chains`
    /// independent runs over `steps` intermediate distributions
    /// `p_beta(v, h) ~ exp(-1/2 |(v - b)/sigma|^2 + c.h + beta v.W h)`, `beta` linear in
    /// `[0, 1]`, one Gibbs sweep per distribution, from the tractable `beta = 0` model (a
    /// Gaussian times independent Bernoullis). Computed in f64.
    ///
    /// Returns the estimate and the standard error of `log Z` (delta method on the weights).
    ///
    /// # Errors
    /// `chains` or `steps` zero.
    pub fn log_partition_ais(
        &self,
        chains: usize,
        steps: usize,
        noise: &mut NoiseSource,
    ) -> Result<(f64, f64)> {
        if chains == 0 || steps == 0 {
            bail!("AIS needs at least one chain and one step, got {chains} and {steps}")
        }
        let m = Grbm {
            w: self.w.to_dtype(DType::F64)?.detach(),
            b: self.b.to_dtype(DType::F64)?.detach(),
            c: self.c.to_dtype(DType::F64)?.detach(),
            log_sigma: self.log_sigma.to_dtype(DType::F64)?.detach(),
            config: self.config,
        };
        let sigma = m.log_sigma.exp()?;
        // beta = 0: v ~ N(b, sigma^2) exactly.
        let mut v = (noise
            .gaussian((chains, m.config.visible), DType::F64, m.w.device())?
            .broadcast_mul(&sigma)?)
        .broadcast_add(&m.b)?;
        // log f_beta(v) = -1/2 |(v - b)/sigma|^2 + sum_j softplus(c_j + beta (v W)_j).
        let log_f = |v: &Tensor, beta: f64| -> Result<Tensor> {
            let logits = (v.matmul(&m.w)? * beta)?.broadcast_add(&m.c)?;
            softplus(&logits)?.sum(D::Minus1)? - m.quadratic(v)?
        };
        let mut log_w = Tensor::zeros(chains, DType::F64, m.w.device())?;
        for k in 1..=steps {
            let (prev, beta) = ((k - 1) as f64 / steps as f64, k as f64 / steps as f64);
            log_w = (log_w + (log_f(&v, beta)? - log_f(&v, prev)?)?)?;
            if k < steps {
                // One Gibbs sweep that leaves p_beta invariant.
                let p = candle_nn::ops::sigmoid(&(v.matmul(&m.w)? * beta)?.broadcast_add(&m.c)?)?;
                let h = noise.uniform_like(&p)?.lt(&p)?.to_dtype(DType::F64)?;
                let var = m.log_sigma.affine(2.0, 0.0)?.exp()?;
                let mean =
                    ((h.matmul(&m.w.t()?)? * beta)?.broadcast_mul(&var)?).broadcast_add(&m.b)?;
                v = (mean + noise.gaussian_like(&v)?.broadcast_mul(&sigma)?)?;
            }
        }
        let log_z0: f64 = m
            .log_sigma
            .to_vec1::<f64>()?
            .iter()
            .map(|ls| ls + 0.5 * (2.0 * std::f64::consts::PI).ln())
            .sum::<f64>()
            + softplus(&m.c)?.sum_all()?.to_scalar::<f64>()?;
        let lw = log_w.to_vec1::<f64>()?;
        let lse = log_sum_exp(&lw);
        let n = lw.len() as f64;
        // Standard error of log(mean w) by the delta method: sd(w) / (sqrt(n) mean(w)).
        let max = lw.iter().cloned().fold(f64::MIN, f64::max);
        let rel: Vec<f64> = lw.iter().map(|l| (l - max).exp()).collect();
        let mean = rel.iter().sum::<f64>() / n;
        let var = rel.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
        Ok((log_z0 + lse - n.ln(), var.sqrt() / (n.sqrt() * mean)))
    }
}

fn log_sum_exp(xs: &[f64]) -> f64 {
    let max = xs.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    max + xs.iter().map(|x| (x - max).exp()).sum::<f64>().ln()
}

impl LogDensity for Grbm {
    /// The exact marginal `log p~(v) = -F(v)`.
    fn log_density(&self, v: &Tensor) -> Result<Tensor> {
        self.free_energy(v)?.neg()
    }
}

impl JointLogDensity for Grbm {
    fn joint_log_density(&self, v: &Tensor, h: &Tensor) -> Result<Tensor> {
        self.energy(v, h)?.neg()
    }
}
