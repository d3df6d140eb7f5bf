//! The test score-matching loss of a log-density (FD-SM Table 2's "SM loss", Eq. 1, total over
//! dimensions): exact, with one reverse pass per dimension, or a Hutchinson estimate with
//! Rademacher projections (unbiased, reported with its standard error) for cheap profiles.

use candle_core::{DType, Result, Tensor};
use sm_objectives::{sm_exact, ssmvr, Directions, Graph, LogDensity, NoiseSource, Reduction};

/// How the test SM loss is computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case", tag = "method")]
pub enum SmEstimate {
    /// `tr(grad^2 log p) + |grad log p|^2 / 2` exactly (`D + 1` reverse passes per batch).
    Exact,
    /// `v^T (grad^2 log p) v + |grad log p|^2 / 2` averaged over Rademacher `v` (unbiased).
    Hutchinson {
        /// Projections per image.
        projections: usize,
    },
}

/// A test SM loss with its standard error over images.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SmValue {
    /// Mean over the test images.
    pub mean: f64,
    /// Standard error of the mean (over images; includes the projection noise for Hutchinson).
    pub std_err: f64,
    /// Number of images.
    pub images: usize,
}

/// A `[B]` tensor of any float dtype as f64 values, detached.
fn per_sample_f64(t: &Tensor) -> Result<Vec<f64>> {
    t.detach().to_dtype(DType::F64)?.to_vec1::<f64>()
}

/// Evaluates the test SM loss on `images` (`[N, ...]`, any float dtype the model takes) in
/// batches of `batch`.
pub fn test_sm<M: LogDensity + ?Sized>(
    model: &M,
    images: &Tensor,
    batch: usize,
    estimate: SmEstimate,
    noise: &mut NoiseSource,
) -> Result<SmValue> {
    let n = images.dim(0)?;
    let d = images.elem_count() / n.max(1);
    let mut per_image = Vec::with_capacity(n);
    for start in (0..n).step_by(batch.max(1)) {
        let x = images.narrow(0, start, batch.min(n - start))?;
        let values = match estimate {
            SmEstimate::Exact => {
                per_sample_f64(&sm_exact(model, &x, Graph::Detach, Reduction::PerSample)?)?
            }
            SmEstimate::Hutchinson { projections } => {
                let mut acc = vec![0.0; x.dim(0)?];
                for _ in 0..projections.max(1) {
                    let proj = noise.projection(&x, Directions::Rademacher)?;
                    // With C_v = D, D * SSMVR = v^T H v + |s|^2 / 2.
                    let v = per_sample_f64(&ssmvr(model, &x, &proj, Reduction::PerSample)?)?;
                    for (a, b) in acc.iter_mut().zip(v) {
                        *a += b * d as f64 / projections.max(1) as f64;
                    }
                }
                acc
            }
        };
        per_image.extend(values);
    }
    let mean = per_image.iter().sum::<f64>() / n as f64;
    let var = per_image.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n.max(2) - 1) as f64;
    Ok(SmValue {
        mean,
        std_err: (var / n as f64).sqrt(),
        images: n,
    })
}
