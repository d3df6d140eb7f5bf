//! Score matching from a score and an estimate of the Hessian diagonal (FD-SM Eq. 1, Hyvärinen
//! 2005): the objective of the baselines that propagate second-order quantities by hand,
//! approximate back-propagation (Kingma and LeCun 2010) and curvature propagation (Martens et
//! al. 2012), whose models return both (e.g. NICE in `models`).

use candle_core::{bail, Result, Tensor};

use crate::{validate, Reduction};

/// Per sample `1/2 |s|^2 + sum_i h_i`, with `s = grad_x log p~(x)` and `h` an estimate of
/// `diag grad_x^2 log p~(x)`: the exact SM loss when `h` is the exact diagonal, unbiased for it
/// when `h` is (curvature propagation).
///
/// Scaling: the **total** over dimensions, as [`crate::sm_exact`] (not per dimension).
///
/// # Shapes
/// * `score`, `hessian_diag`: `[B, ...]`, the same shape
/// * returns a scalar, or `[B]` with [`Reduction::PerSample`]
///
/// # Errors
/// Mismatched shapes, a dtype other than F32/F64, or non-finite values (the model's, as a
/// trainer's divergence guard recognises them: [`crate::is_non_finite_output`]).
pub fn sm_from_diagonal(
    score: &Tensor,
    hessian_diag: &Tensor,
    reduction: Reduction,
) -> Result<Tensor> {
    let (batch, dim) = validate::batch_and_dim(score, "the score")?;
    validate::same_shape(score, hessian_diag, "the Hessian diagonal")?;
    let score = score.reshape((batch, dim))?;
    let diag = hessian_diag.reshape((batch, dim))?;
    let per_sample = ((score.sqr()?.sum(1)? * 0.5)? + diag.sum(1)?)?;
    if validate::finite(&per_sample, "the per-sample loss").is_err() {
        bail!(
            "{}: the score or the Hessian-diagonal estimate is not finite",
            validate::NON_FINITE_OUTPUT
        )
    }
    reduction.apply(&per_sample)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn gaussian_closed_form() {
        // log p = -|x|^2 / 2: s = -x, diag = -1, SM = |x|^2 / 2 - D.
        let x = Tensor::new(&[[1.0f64, -2.0, 0.5], [0.0, 3.0, 1.0]], &Device::Cpu).unwrap();
        let diag = Tensor::ones((2, 3), candle_core::DType::F64, &Device::Cpu)
            .unwrap()
            .neg()
            .unwrap();
        let per = sm_from_diagonal(&x.neg().unwrap(), &diag, Reduction::PerSample)
            .unwrap()
            .to_vec1::<f64>()
            .unwrap();
        assert!((per[0] - (5.25 / 2.0 - 3.0)).abs() < 1e-12);
        assert!((per[1] - (10.0 / 2.0 - 3.0)).abs() < 1e-12);
    }

    #[test]
    fn bad_input_is_named() {
        let a = Tensor::zeros((2, 3), candle_core::DType::F32, &Device::Cpu).unwrap();
        let b = Tensor::zeros((2, 4), candle_core::DType::F32, &Device::Cpu).unwrap();
        let e = sm_from_diagonal(&a, &b, Reduction::Mean).unwrap_err();
        assert!(e.to_string().contains("Hessian diagonal"), "{e}");
        let nan = (a.clone() / 0.0).unwrap();
        let e = sm_from_diagonal(&a, &nan, Reduction::Mean).unwrap_err();
        assert!(crate::is_non_finite_output(&e), "{e}");
    }
}
