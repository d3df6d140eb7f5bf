//! Losses of the autoencoders with implicit encoders (FD-SM Sec. 6.3 / Table 6, after Song et
//! al. 2019, Sec. 5.2.2, and Shi et al. 2018). An implicit encoder `z = f_phi(x, eps)` has no
//! density, so the entropy term of the ELBO, `H(q) = -E log q(z | x)`, has no closed form; its
//! gradient through the reparameterisation is `grad_phi H = -E[grad_z log q(z | x)^T dz/dphi]`
//! (the term of `log q`'s own dependence on `phi` has zero mean), and a score network
//! `s(x, z) ~ grad_z log q(z | x)` trained by SSMVR or FD-SSMVR on detached codes supplies it:
//! the surrogate `(s(x, z).detach() . z)` has the gradient `-grad_phi H` per sample.
//!
//! These functions take tensors only (logits, codes, scores); the networks are in `models`.

use candle_core::{bail, Result, Tensor, D};
use serde::{Deserialize, Serialize};
use sm_objectives::Reduction;

/// An error naming `what` unless `a` and `b` are matrices of one shape (`shape`, e.g. `[B, D]`,
/// in the message).
fn same_matrix(
    what: &str,
    shape: &str,
    (a, a_name): (&Tensor, &str),
    (b, b_name): (&Tensor, &str),
) -> Result<()> {
    if a.dims() != b.dims() || a.rank() != 2 {
        bail!(
            "{what}: {a_name} {:?} and {b_name} {:?} must be the same {shape}",
            a.dims(),
            b.dims()
        )
    }
    Ok(())
}

/// `log N(z; 0, I)` per sample.
///
/// # Shapes
/// * `z`: `[B, K]`
/// * returns `[B]`
///
/// # Errors
/// An input that is not 2-D.
pub fn standard_normal_log_density(z: &Tensor) -> Result<Tensor> {
    let (_, k) = z.dims2()?;
    let c = -0.5 * k as f64 * (2.0 * std::f64::consts::PI).ln();
    (z.sqr()?.sum(D::Minus1)? * -0.5)? + c
}

/// An error naming `what` unless the decoder's output and the data are one shape `[B, ...]`.
fn same_data(what: &str, out: &Tensor, x: &Tensor) -> Result<()> {
    if out.dims() != x.dims() || out.rank() < 2 {
        bail!(
            "{what}: the decoder's output {:?} and the data {:?} must be the same [B, ...]",
            out.dims(),
            x.dims()
        )
    }
    Ok(())
}

/// `log p(x | z) = sum_j [x_j l_j - softplus(l_j)]` of a Bernoulli decoder with logits `l`
/// (the negative binary cross-entropy with logits, stable at any logit), summed over every
/// axis but the first.
///
/// # Shapes
/// * `logits`, `x`: `[B, ...]`
/// * returns `[B]`
///
/// # Errors
/// Mismatched shapes.
pub fn bernoulli_log_likelihood(logits: &Tensor, x: &Tensor) -> Result<Tensor> {
    same_data("bernoulli_log_likelihood", logits, x)?;
    ((x * logits)? - layers::softplus(logits)?)?
        .flatten_from(1)?
        .sum(D::Minus1)
}

/// `log N(x; mean, exp(log_std)^2 I)` summed over every axis but the first: the Gaussian
/// decoder of Song et al.'s CelebA autoencoders (`log_std` fixed at -0.602).
///
/// # Shapes
/// * `mean`, `x`: `[B, ...]`
/// * returns `[B]`
///
/// # Errors
/// Mismatched shapes, a non-finite `log_std`.
pub fn gaussian_log_likelihood(mean: &Tensor, x: &Tensor, log_std: f64) -> Result<Tensor> {
    same_data("gaussian_log_likelihood", mean, x)?;
    if !log_std.is_finite() {
        bail!("gaussian_log_likelihood: log_std must be finite, got {log_std}")
    }
    let d = x.elem_count() / x.dim(0)?.max(1);
    let c = -(d as f64) * (log_std + 0.5 * (2.0 * std::f64::consts::PI).ln());
    let scale = -0.5 * (-2.0 * log_std).exp();
    ((x - mean)?.sqr()?.flatten_from(1)?.sum(D::Minus1)? * scale)? + c
}

/// How a decoder's output is read as `p(x | z)`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DecoderLikelihood {
    /// The output is Bernoulli logits (binary data).
    Bernoulli,
    /// The output is the mean of a Gaussian with a fixed standard deviation `exp(log_std)`.
    Gaussian {
        /// Log standard deviation of every value.
        log_std: f64,
    },
}

impl DecoderLikelihood {
    /// `log p(x | z)` per sample from the decoder's output `out` (see
    /// [`bernoulli_log_likelihood`], [`gaussian_log_likelihood`]).
    ///
    /// # Errors
    /// Mismatched shapes.
    pub fn log_likelihood(self, out: &Tensor, x: &Tensor) -> Result<Tensor> {
        match self {
            Self::Bernoulli => bernoulli_log_likelihood(out, x),
            Self::Gaussian { log_std } => gaussian_log_likelihood(out, x, log_std),
        }
    }

    /// The decoder's mean `E[x | z]`: `sigmoid(out)` or `out`.
    ///
    /// # Errors
    /// Tensor errors only.
    pub fn mean(self, out: &Tensor) -> Result<Tensor> {
        match self {
            Self::Bernoulli => layers::sigmoid(out),
            Self::Gaussian { .. } => Ok(out.clone()),
        }
    }
}

/// The entropy surrogate `s . z` per sample, with the score `s` detached: its gradient in the
/// encoder's parameters is `-grad_phi H(q)` when `s = grad_z log q`.
///
/// # Shapes
/// * `z`, `score`: `[B, K]`
/// * returns `[B]`
///
/// # Errors
/// Mismatched shapes.
pub fn entropy_surrogate(z: &Tensor, score: &Tensor) -> Result<Tensor> {
    same_matrix(
        "entropy_surrogate",
        "[B, K]",
        (z, "codes"),
        (score, "scores"),
    )?;
    (score.detach() * z)?.sum(D::Minus1)
}

/// The implicit-encoder VAE's loss, per sample
/// `-log p(x | z) - log N(z; 0, I) + s(x, z).detach() . z` with `z = f_phi(x, eps)`: its
/// gradient is the negative ELBO's (the last term stands in for `log q(z | x)`, whose value it
/// is not, so the loss's value is not the negative ELBO).
///
/// # Shapes
/// * `out` (the decoder's output, read by `likelihood`), `x`: `[B, ...]`; `z`, `score`:
///   `[B, K]`
/// * returns a scalar, or `[B]` with [`Reduction::PerSample`]
///
/// # Errors
/// Mismatched shapes.
pub fn implicit_vae_loss(
    likelihood: DecoderLikelihood,
    out: &Tensor,
    x: &Tensor,
    z: &Tensor,
    score: &Tensor,
    reduction: Reduction,
) -> Result<Tensor> {
    let per = ((likelihood.log_likelihood(out, x)? + standard_normal_log_density(z)?)?.neg()?
        + entropy_surrogate(z, score)?)?;
    reduction.apply(&per)
}

/// The implicit-encoder WAE's loss (Song et al.'s WAE with the KL regulariser of the aggregated
/// posterior), per sample `|x - m|^2 + lambda (-log N(z; 0, I) + s(z).detach() . z)` with `m`
/// the decoder's mean (`sigmoid` of Bernoulli logits, or the Gaussian mean): the
/// reconstruction and `lambda KL(q(z) || p(z))`, whose entropy part's gradient the score of
/// `q(z)` supplies.
///
/// # Shapes
/// * `out` (the decoder's output, read by `likelihood`), `x`: `[B, ...]`; `z`, `score`:
///   `[B, K]`
/// * returns a scalar, or `[B]` with [`Reduction::PerSample`]
///
/// # Errors
/// Mismatched shapes, a negative or non-finite `lambda`.
pub fn implicit_wae_loss(
    likelihood: DecoderLikelihood,
    out: &Tensor,
    x: &Tensor,
    z: &Tensor,
    score: &Tensor,
    lambda: f64,
    reduction: Reduction,
) -> Result<Tensor> {
    if !(lambda.is_finite() && lambda >= 0.0) {
        bail!("implicit_wae_loss: lambda must be finite and >= 0, got {lambda}")
    }
    same_data("implicit_wae_loss", out, x)?;
    let recon = (x - likelihood.mean(out)?)?
        .sqr()?
        .flatten_from(1)?
        .sum(D::Minus1)?;
    let regulariser = (standard_normal_log_density(z)?.neg()? + entropy_surrogate(z, score)?)?;
    reduction.apply(&(recon + (regulariser * lambda)?)?)
}
