//! Exact score matching (FD-SM Eq. 1): `tr(grad_x^2 log p) + 1/2 |grad_x log p|^2`, the Hessian
//! trace by one extra reverse pass per data dimension. This is the "test SM loss" of Table 2.

use candle_core::{Result, Tensor};

use crate::autodiff::{ensure_higher_order, grad_or_zeros, input_gradient, rownorm2};
use crate::model::LogDensity;
use crate::{validate, Reduction};

/// Whether the exact SM loss stays differentiable with respect to the parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Graph {
    /// Keep the graph: the loss can be back-propagated (training with exact SM).
    #[default]
    Keep,
    /// Detach each trace term as soon as it is computed: evaluation only, with memory of one
    /// reverse pass instead of `D`.
    Detach,
}

/// The exact score-matching loss, per sample `tr(grad_x s(x)) + 1/2 |s(x)|^2` with
/// `s = grad_x log p~`.
///
/// Scaling: the **total** over dimensions (no `1/D`, no `eps`), as the reference code reports
/// the test SM loss (Table 2: about `-9.5e4` on MNIST). The sliced and denoising objectives of
/// this crate are per dimension: their expectation is `sm_exact / D` (plus a constant for DSM).
/// It can be negative. Cost: `D + 1` reverse passes.
///
/// # Shapes
/// * `x`: `[B, ...]`
/// * returns a scalar, or `[B]` with [`Reduction::PerSample`]
///
/// # Errors
/// Higher-order mode off, malformed or non-finite `x`, a model that does not return `[B]`.
pub fn sm_exact<M: LogDensity + ?Sized>(
    model: &M,
    x: &Tensor,
    graph: Graph,
    reduction: Reduction,
) -> Result<Tensor> {
    ensure_higher_order()?;
    let (_, dim) = validate::batch_and_dim(x, "x")?;
    validate::finite(x, "x")?;
    let ig = input_gradient(model, x)?;
    let score = ig.score.flatten_from(1)?;
    let mut trace: Option<Tensor> = None;
    for i in 0..dim {
        let column = score.narrow(1, i, 1)?.sum_all()?;
        let d_column = grad_or_zeros(&column, ig.x.as_tensor())?;
        let mut diag = d_column.flatten_from(1)?.narrow(1, i, 1)?.squeeze(1)?;
        if graph == Graph::Detach {
            diag = diag.detach();
        }
        trace = Some(match trace {
            Some(t) => (t + diag)?,
            None => diag,
        });
    }
    let trace = trace.expect("dim >= 1 is validated");
    let half_norm = (rownorm2(&score)? * 0.5)?;
    let half_norm = if graph == Graph::Detach {
        half_norm.detach()
    } else {
        half_norm
    };
    reduction.apply(&(trace + half_norm)?)
}
