//! A diagonal-Gaussian variational posterior `q(h | v) = N(mu(v), diag sigma(v)^2)` for
//! continuous latent variables (BiSM Sec. 3, VaGES Sec. 3), with linear heads
//! `mu = v W_mu + a_mu`, `log sigma = v W_s + a_s`, reparameterised draws and the gradient of
//! `log q` in `h` needed by the Fisher lower-level objective (BiSM Eq. 11).

use candle_core::{bail, Result, Tensor, D};
use candle_nn::{Init, VarBuilder};
use sm_objectives::NoiseSource;

/// `q(h | v)` with `H` Gaussian units. Weight names: `mu.weight` (`[D, H]`), `mu.bias`
/// (`[H]`), `log_sigma.weight`, `log_sigma.bias`.
#[derive(Debug, Clone)]
pub struct GaussianPosterior {
    mu_w: Tensor,
    mu_b: Tensor,
    ls_w: Tensor,
    ls_b: Tensor,
}

impl GaussianPosterior {
    /// Builds the heads through `vb` (`U(+-1/sqrt(D))` weights, zero biases where new).
    ///
    /// # Errors
    /// A zero size or weights of the wrong shape.
    pub fn new(visible: usize, hidden: usize, vb: VarBuilder) -> Result<Self> {
        if visible == 0 || hidden == 0 {
            bail!("posterior sizes must be at least 1, got {visible} and {hidden}")
        }
        let bound = 1.0 / (visible as f64).sqrt();
        let init = Init::Uniform {
            lo: -bound,
            up: bound,
        };
        Ok(Self {
            mu_w: vb.get_with_hints((visible, hidden), "mu.weight", init)?,
            mu_b: vb.get_with_hints(hidden, "mu.bias", Init::Const(0.0))?,
            ls_w: vb.get_with_hints((visible, hidden), "log_sigma.weight", init)?,
            ls_b: vb.get_with_hints(hidden, "log_sigma.bias", Init::Const(0.0))?,
        })
    }

    /// A posterior from parameter tensors (e.g. unrolled updates): `(mu weight, mu bias,
    /// log-sigma weight, log-sigma bias)`.
    ///
    /// # Errors
    /// Shapes that do not fit together.
    pub fn from_tensors(mu_w: Tensor, mu_b: Tensor, ls_w: Tensor, ls_b: Tensor) -> Result<Self> {
        let ok = mu_w.rank() == 2
            && mu_w.dims() == ls_w.dims()
            && mu_b.dims() == [mu_w.dim(1)?]
            && ls_b.dims() == mu_b.dims();
        if !ok {
            bail!(
                "Gaussian posterior needs weights [D, H] and biases [H], got {:?}, {:?}, {:?}, {:?}",
                mu_w.dims(),
                mu_b.dims(),
                ls_w.dims(),
                ls_b.dims()
            )
        }
        Ok(Self {
            mu_w,
            mu_b,
            ls_w,
            ls_b,
        })
    }

    /// The parameters `(mu weight, mu bias, log-sigma weight, log-sigma bias)`.
    pub fn params(&self) -> [&Tensor; 4] {
        [&self.mu_w, &self.mu_b, &self.ls_w, &self.ls_b]
    }

    /// The mean and log standard deviation, each `[B, H]`.
    pub fn mean_and_log_sigma(&self, v: &Tensor) -> Result<(Tensor, Tensor)> {
        Ok((
            v.matmul(&self.mu_w)?.broadcast_add(&self.mu_b)?,
            v.matmul(&self.ls_w)?.broadcast_add(&self.ls_b)?,
        ))
    }

    /// A reparameterised draw `mu + sigma eps`, differentiable in the parameters and `v`.
    pub fn sample(&self, v: &Tensor, noise: &mut NoiseSource) -> Result<Tensor> {
        let (mu, ls) = self.mean_and_log_sigma(v)?;
        let eps = noise.gaussian_like(&mu)?;
        mu + (ls.exp()? * eps)?
    }

    /// `log q(h | v)`, `[B]`.
    pub fn log_prob(&self, v: &Tensor, h: &Tensor) -> Result<Tensor> {
        let (mu, ls) = self.mean_and_log_sigma(v)?;
        let z = ((h - mu)? / ls.exp()?)?;
        let half_log_2pi = 0.5 * (2.0 * std::f64::consts::PI).ln();
        ((z.sqr()? * -0.5)? - ls)?.sum(D::Minus1)? - half_log_2pi * h.dim(D::Minus1)? as f64
    }

    /// `grad_h log q(h | v) = -(h - mu) / sigma^2`, `[B, H]`, in closed form.
    pub fn grad_h_log_prob(&self, v: &Tensor, h: &Tensor) -> Result<Tensor> {
        let (mu, ls) = self.mean_and_log_sigma(v)?;
        (mu - h)? / ls.affine(2.0, 0.0)?.exp()?
    }
}
