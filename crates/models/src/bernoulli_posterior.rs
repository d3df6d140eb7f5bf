//! The variational posterior `q(h | v)` of the GRBM experiments (BiSM Sec. 5.1, VaGES App. F):
//! independent Bernoullis with logits from one fully connected layer, `q(h_j = 1 | v) =
//! sigmoid(v W + a)_j`, with binary Gumbel-softmax (logistic) relaxed samples for
//! reparameterised gradients (temperature 0.1 in the reference code).
//!
//! The parameters are plain tensors so that BiSM can evaluate the posterior at unrolled,
//! differentiable parameter values ([`BernoulliPosterior::from_tensors`]).

use candle_core::{bail, Result, Tensor, D};
use candle_nn::{Init, VarBuilder};
use layers::softplus;
use sm_objectives::NoiseSource;

/// `q(h | v)`: `[B, D] -> ` probabilities of `H` binary units. Weight names: `weight`
/// (`[D, H]`), `bias` (`[H]`).
#[derive(Debug, Clone)]
pub struct BernoulliPosterior {
    weight: Tensor,
    bias: Tensor,
}

impl BernoulliPosterior {
    /// Builds the layer through `vb` (`U(+-1/sqrt(D))` where new, as PyTorch's default).
    ///
    /// # Errors
    /// A zero size or a weight of the wrong shape.
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
            weight: vb.get_with_hints((visible, hidden), "weight", init)?,
            bias: vb.get_with_hints(hidden, "bias", init)?,
        })
    }

    /// A posterior from parameter tensors `weight` (`[D, H]`) and `bias` (`[H]`), e.g. the
    /// unrolled, differentiable updates of BiSM.
    ///
    /// # Errors
    /// Shapes that do not fit together.
    pub fn from_tensors(weight: Tensor, bias: Tensor) -> Result<Self> {
        match (weight.dims(), bias.dims()) {
            ([_, h], [hb]) if h == hb => Ok(Self { weight, bias }),
            (w, b) => bail!("posterior weight [D, H] and bias [H] expected, got {w:?} and {b:?}"),
        }
    }

    /// The parameters `(weight, bias)`.
    pub fn params(&self) -> (&Tensor, &Tensor) {
        (&self.weight, &self.bias)
    }

    /// Logits `v W + a`, `[B, H]`.
    pub fn logits(&self, v: &Tensor) -> Result<Tensor> {
        v.matmul(&self.weight)?.broadcast_add(&self.bias)
    }

    /// `q(h_j = 1 | v)`, `[B, H]`.
    pub fn probs(&self, v: &Tensor) -> Result<Tensor> {
        candle_nn::ops::sigmoid(&self.logits(v)?)
    }

    /// `log q(h | v) = sum_j h_j l_j - softplus(l_j)` (the Bernoulli log-likelihood, also used
    /// at relaxed `h` in `[0, 1]`), `[B]`.
    pub fn log_prob(&self, v: &Tensor, h: &Tensor) -> Result<Tensor> {
        let l = self.logits(v)?;
        ((h * &l)? - softplus(&l)?)?.sum(D::Minus1)
    }

    /// A relaxed sample `sigmoid((l + log u - log(1 - u)) / tau)`, differentiable in the
    /// parameters and in `v` (binary Gumbel-softmax), `[B, H]`.
    ///
    /// # Errors
    /// `tau <= 0`.
    pub fn sample_relaxed(&self, v: &Tensor, tau: f64, noise: &mut NoiseSource) -> Result<Tensor> {
        if !(tau.is_finite() && tau > 0.0) {
            bail!("the Gumbel-softmax temperature must be > 0, got {tau}")
        }
        let l = self.logits(v)?;
        let u = noise.uniform_like(&l)?.clamp(1e-7, 1.0 - 1e-7)?;
        let logistic = (u.log()? - u.affine(-1.0, 1.0)?.log()?)?;
        candle_nn::ops::sigmoid(&((l + logistic)? / tau)?)
    }

    /// An exact binary sample `h ~ q(h | v)` (no gradient), `[B, H]`.
    pub fn sample(&self, v: &Tensor, noise: &mut NoiseSource) -> Result<Tensor> {
        let p = self.probs(v)?.detach();
        noise.uniform_like(&p)?.lt(&p)?.to_dtype(v.dtype())
    }
}
