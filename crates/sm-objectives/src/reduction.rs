//! How per-sample losses `[B]` are reduced: the `Reduction` choice shared by every objective.

use candle_core::{Result, Tensor};

/// Reduction over the batch of per-sample losses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Reduction {
    /// Mean over the batch (a scalar); the training default.
    #[default]
    Mean,
    /// Sum over the batch (a scalar).
    Sum,
    /// No reduction: one value per sample, shape `[B]`.
    PerSample,
}

impl Reduction {
    /// Applies the reduction to per-sample losses of shape `[B]`.
    pub fn apply(self, per_sample: &Tensor) -> Result<Tensor> {
        match self {
            Reduction::Mean => per_sample.mean_all(),
            Reduction::Sum => per_sample.sum_all(),
            Reduction::PerSample => Ok(per_sample.clone()),
        }
    }
}
