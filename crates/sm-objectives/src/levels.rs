//! Noise-level conditioning for noise-conditional score networks (NCSN): which level each sample
//! uses and the sigma of every level.

use candle_core::{Result, Tensor};

use crate::autodiff::level_indices;
use crate::validate;

/// The noise level of every sample of a batch.
///
/// # Shapes
/// * `index`: `[B]`, `u32`, each in `0..sigmas.len()`
#[derive(Debug, Clone, Copy)]
pub struct NoiseLevels<'a> {
    /// The level index of every sample, passed on to the score network.
    pub index: &'a Tensor,
    /// The sigma of each level (e.g. [`crate::noise::geometric_sigmas`]).
    pub sigmas: &'a [f64],
}

impl NoiseLevels<'_> {
    /// The sigma of every sample, validated (indices in range, sigmas finite and positive).
    pub(crate) fn per_sample_sigmas(&self, batch: usize) -> Result<Vec<f64>> {
        for (i, &s) in self.sigmas.iter().enumerate() {
            validate::positive(s, &format!("noise level sigma[{i}]"))?;
        }
        let idx = level_indices(self.index, batch, self.sigmas.len())?;
        Ok(idx.into_iter().map(|i| self.sigmas[i]).collect())
    }
}
