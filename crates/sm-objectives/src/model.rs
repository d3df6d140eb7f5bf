//! The two small traits a model implements to be trained by the objectives: an unnormalised
//! log-density `log p~(x)` (energy models, flows, DKEF) and a score network `s(x) ~ grad log p`
//! (NCSN), optionally conditioned on a noise-level index.

use candle_core::{Result, Tensor};

/// An unnormalised log-density `log p~(x) = -E(x)`.
///
/// Implementations must treat batch elements independently (no batch statistics), because the
/// objectives obtain per-sample input gradients by differentiating the batch sum.
///
/// # Shapes
/// * `x`: `[B, ...]` (any trailing shape, e.g. `[B, D]` or `[B, C, H, W]`)
/// * returns `[B]`
pub trait LogDensity {
    /// Evaluates `log p~(x)` for every batch element.
    fn log_density(&self, x: &Tensor) -> Result<Tensor>;
}

impl<F> LogDensity for F
where
    F: Fn(&Tensor) -> Result<Tensor>,
{
    fn log_density(&self, x: &Tensor) -> Result<Tensor> {
        self(x)
    }
}

/// A score network `s(x, i) ~ grad_x log p_{sigma_i}(x)`.
///
/// # Shapes
/// * `x`: `[B, ...]`
/// * `level`: `None`, or the noise-level index of every sample, `[B]` of `u32`
/// * returns the same shape as `x`
pub trait ScoreModel {
    /// Evaluates the score at every batch element.
    fn score(&self, x: &Tensor, level: Option<&Tensor>) -> Result<Tensor>;
}

/// Wraps a closure `Fn(&Tensor, Option<&Tensor>) -> Result<Tensor>` as a [`ScoreModel`].
pub struct ScoreFn<F>(pub F);

impl<F> ScoreModel for ScoreFn<F>
where
    F: Fn(&Tensor, Option<&Tensor>) -> Result<Tensor>,
{
    fn score(&self, x: &Tensor, level: Option<&Tensor>) -> Result<Tensor> {
        (self.0)(x, level)
    }
}

/// The unnormalised joint log-density `log p~(v, h) = -E(v, h)` of an energy-based
/// latent-variable model (BiSM Eq. 6); the marginal `log p(v)` is in general intractable.
///
/// # Shapes
/// * `v`: `[B, ...]` visible variables; `h`: `[B, H]` latent variables
/// * returns `[B]`
pub trait JointLogDensity {
    /// Evaluates `log p~(v, h)` for every batch element.
    fn joint_log_density(&self, v: &Tensor, h: &Tensor) -> Result<Tensor>;
}
