//! Evaluating a model at the shifted points `x + gamma_i v` of a stencil, as one concatenated
//! batch or one forward pass per offset, and combining the results with stencil weights.

use candle_core::{bail, Result, Tensor};
use fd_core::{BatchMode, Stencil};

use crate::model::{LogDensity, ScoreModel};
use crate::validate;

/// `x + gamma v` for every offset, each `[B, ...]`.
fn shifted(x: &Tensor, v: &Tensor, offsets: &[f64]) -> Result<Vec<Tensor>> {
    offsets
        .iter()
        .map(|&g| {
            if g == 0.0 {
                Ok(x.clone())
            } else {
                x + (v * g)?
            }
        })
        .collect()
}

/// `log p~(x + gamma_i v)` for every offset, each `[B]`.
pub(crate) fn log_density_at<M: LogDensity + ?Sized>(
    model: &M,
    x: &Tensor,
    v: &Tensor,
    offsets: &[f64],
    mode: BatchMode,
) -> Result<Vec<Tensor>> {
    let batch = x.dim(0)?;
    let points = shifted(x, v, offsets)?;
    match mode {
        BatchMode::Concatenated => {
            let out = model.log_density(&Tensor::cat(&points, 0)?)?;
            validate::per_sample_output(&out, batch * offsets.len())?;
            (0..offsets.len())
                .map(|i| out.narrow(0, i * batch, batch))
                .collect()
        }
        BatchMode::PerOffset => points
            .iter()
            .map(|p| {
                let out = model.log_density(p)?;
                validate::per_sample_output(&out, batch)?;
                Ok(out)
            })
            .collect(),
    }
}

/// `s(x + gamma_i v, level)` for every offset, each the shape of `x`.
pub(crate) fn score_at<S: ScoreModel + ?Sized>(
    score: &S,
    x: &Tensor,
    v: &Tensor,
    offsets: &[f64],
    level: Option<&Tensor>,
    mode: BatchMode,
) -> Result<Vec<Tensor>> {
    let batch = x.dim(0)?;
    let points = shifted(x, v, offsets)?;
    let outs = match mode {
        BatchMode::Concatenated => {
            let levels = match level {
                Some(l) => Some(Tensor::cat(&vec![l.clone(); offsets.len()], 0)?),
                None => None,
            };
            let out = score.score(&Tensor::cat(&points, 0)?, levels.as_ref())?;
            (0..offsets.len())
                .map(|i| out.narrow(0, i * batch, batch))
                .collect::<Result<Vec<_>>>()?
        }
        BatchMode::PerOffset => points
            .iter()
            .map(|p| score.score(p, level))
            .collect::<Result<Vec<_>>>()?,
    };
    for out in &outs {
        validate::same_shape(x, out, "the score network output")?;
    }
    Ok(outs)
}

/// `sum_i w_i values[j(i)]` where `j(i)` is the position of the stencil's offset `i` among
/// `offsets` (so several stencils can share one set of evaluations).
pub(crate) fn combine(stencil: &Stencil, offsets: &[f64], values: &[Tensor]) -> Result<Tensor> {
    let mut acc: Option<Tensor> = None;
    for (&gamma, &w) in stencil.offsets().iter().zip(stencil.weights()) {
        let Some(j) = offsets.iter().position(|&o| o == gamma) else {
            bail!("internal error: offset {gamma} of the stencil was not evaluated")
        };
        if w == 0.0 {
            continue;
        }
        let term = (&values[j] * w)?;
        acc = Some(match acc {
            Some(a) => (a + term)?,
            None => term,
        });
    }
    match acc {
        Some(a) => Ok(a),
        None => values[0].zeros_like(),
    }
}

/// The stencils of Eq. (8) (Theorem 1 with `K = 1`, `alpha = 1`): first order on `+-v`, second
/// order on `0, +-v`.
pub(crate) fn eq8_stencils() -> Result<(Stencil, Stencil)> {
    let first = Stencil::symmetric(1, &[1.0]).map_err(candle_core::Error::wrap)?;
    let second = Stencil::symmetric(2, &[1.0]).map_err(candle_core::Error::wrap)?;
    Ok((first, second))
}
