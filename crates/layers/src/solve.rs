//! A linear solve with a symmetric positive-definite matrix, differentiable at every order: the
//! closed-form kernel weights of DKEF (`alpha = -(G + lambda I)^-1 b`, FD-SM Sec. 6.1, Wenliang et
//! al. 2019) need one inside a loss. Candle has no linear solve; this one is a Cholesky
//! factorisation on the CPU (`kernels/cholesky.rs`) whose backward pass is again a solve.

use candle_core::{bail, Device, Result, Tensor};

use crate::kernels::cholesky::SpdSolve;

/// `X = A^-1 B` for a symmetric positive-definite `A`, by Cholesky in f64 (whatever the dtype),
/// differentiable in `A` and `B` to any order (`dB = A^-1 G`, `dA = -(A^-1 G) X^T`).
///
/// `A` is first replaced by its symmetric part `(A + A^T) / 2`, so that the gradient with
/// respect to `A` is that of the matrix actually solved with; an `A` whose asymmetry exceeds
/// `1e-4` of its largest entry is refused as a mistake.
///
/// On other devices than the CPU the operands are copied to the CPU and the result back (the
/// copies are differentiable).
///
/// # Shapes
/// * `a`: `[M, M]`
/// * `b`: `[M, K]` or `[M]`
/// * returns the shape of `b`
///
/// # Errors
/// Shapes that do not fit, a dtype other than f32/f64, NaN or infinite entries, a clearly
/// non-symmetric `A`, or an `A` that is not (numerically) positive definite, each named.
pub fn spd_solve(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let (m, m2) = a.dims2().map_err(|_| {
        candle_core::Error::Msg(format!(
            "spd_solve: A must be a square matrix [M, M], got {:?}",
            a.dims()
        ))
    })?;
    if m != m2 {
        bail!("spd_solve: A must be square, got {:?}", a.dims())
    }
    let vector = b.rank() == 1;
    let b2 = if vector { b.unsqueeze(1)? } else { b.clone() };
    if b2.rank() != 2 || b2.dim(0)? != m {
        bail!(
            "spd_solve: B must be [M] or [M, K] with M = {m} rows, got {:?}",
            b.dims()
        )
    }
    let detached = a.detach();
    let asym = (&detached - detached.t()?)?
        .abs()?
        .flatten_all()?
        .max(0)?
        .to_dtype(candle_core::DType::F64)?
        .to_scalar::<f64>()?;
    let scale = detached
        .abs()?
        .flatten_all()?
        .max(0)?
        .to_dtype(candle_core::DType::F64)?
        .to_scalar::<f64>()?;
    if !(asym.is_finite() && scale.is_finite()) {
        bail!("spd_solve: A contains NaN or infinite values")
    }
    if asym > 1e-4 * scale {
        bail!(
            "spd_solve: A must be symmetric; its largest asymmetry |A - A^T| is {asym:e} for \
             entries up to {scale:e}"
        )
    }
    let sym = ((a + a.t()?)? * 0.5)?;
    let device = a.device().clone();
    let x = if device.is_cpu() && crate::portable::cpu_kernels_enabled() {
        sym.apply_op2(&b2.contiguous()?, SpdSolve)?
    } else {
        let cpu = Device::Cpu;
        sym.to_device(&cpu)?
            .apply_op2(&b2.to_device(&cpu)?.contiguous()?, SpdSolve)?
            .to_device(&device)?
    };
    if vector {
        x.squeeze(1)
    } else {
        Ok(x)
    }
}
