//! Solving `A X = B` for a symmetric positive-definite `A` by the Cholesky factorisation
//! `A = L L^T` (Golub and Van Loan, Algorithm 4.2.1) and two triangular solves, in f64 whatever
//! the storage type, as the CPU forward pass of [`crate::spd_solve`]; its backward pass is again
//! a solve with `A` and a matrix product (`solve.rs`), so derivatives of every order exist.

use candle_core::{bail, CpuStorage, CustomOp2, Layout, Result, Shape, Tensor};

/// An element type the solve reads and writes (computing in f64).
pub(crate) trait Real: Copy {
    fn to_f64(self) -> f64;
    fn from_f64(v: f64) -> Self;
}

impl Real for f32 {
    fn to_f64(self) -> f64 {
        f64::from(self)
    }
    fn from_f64(v: f64) -> Self {
        v as f32
    }
}

impl Real for f64 {
    fn to_f64(self) -> f64 {
        self
    }
    fn from_f64(v: f64) -> Self {
        v
    }
}

/// The lower Cholesky factor of the `m x m` row-major `a` (its lower triangle is read).
///
/// # Errors
/// A pivot that is not finite and positive: the matrix is not positive definite (numerically).
pub(crate) fn cholesky(a: &[f64], m: usize) -> Result<Vec<f64>> {
    let mut l = vec![0.0; m * m];
    for j in 0..m {
        let mut d = a[j * m + j];
        for k in 0..j {
            d -= l[j * m + k] * l[j * m + k];
        }
        if !(d.is_finite() && d > 0.0) {
            bail!(
                "spd_solve: the matrix is not positive definite (Cholesky pivot {j} of {m} is \
                 {d:e}); add a multiple of the identity (regularisation) or check it for NaN"
            )
        }
        let djj = d.sqrt();
        l[j * m + j] = djj;
        for i in j + 1..m {
            let mut s = a[i * m + j];
            for k in 0..j {
                s -= l[i * m + k] * l[j * m + k];
            }
            l[i * m + j] = s / djj;
        }
    }
    Ok(l)
}

/// Solves `L L^T x = b` in place for every column of the `m x k` row-major `b`.
pub(crate) fn cholesky_solve(l: &[f64], m: usize, b: &mut [f64], k: usize) {
    for c in 0..k {
        // Forward: L y = b.
        for i in 0..m {
            let mut s = b[i * k + c];
            for j in 0..i {
                s -= l[i * m + j] * b[j * k + c];
            }
            b[i * k + c] = s / l[i * m + i];
        }
        // Backward: L^T x = y.
        for i in (0..m).rev() {
            let mut s = b[i * k + c];
            for j in i + 1..m {
                s -= l[j * m + i] * b[j * k + c];
            }
            b[i * k + c] = s / l[i * m + i];
        }
    }
}

fn solve<T: Real>(a: &[T], b: &[T], m: usize, k: usize) -> Result<Vec<T>> {
    let a64: Vec<f64> = a.iter().map(|v| v.to_f64()).collect();
    let mut x: Vec<f64> = b.iter().map(|v| v.to_f64()).collect();
    if x.iter().any(|v| !v.is_finite()) {
        bail!("spd_solve: the right-hand side contains NaN or infinite values")
    }
    let l = cholesky(&a64, m)?;
    cholesky_solve(&l, m, &mut x, k);
    Ok(x.into_iter().map(T::from_f64).collect())
}

/// `A^-1 B` for a symmetric positive-definite `A` `[M, M]` and `B` `[M, K]`.
pub(crate) struct SpdSolve;

impl CustomOp2 for SpdSolve {
    fn name(&self) -> &'static str {
        "spd-solve"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (&[m, m2], &[m3, k]) = (l1.dims(), l2.dims()) else {
            bail!(
                "spd_solve: A [M, M] and B [M, K] expected, got {:?} and {:?}",
                l1.dims(),
                l2.dims()
            )
        };
        if m != m2 || m != m3 || m == 0 {
            bail!(
                "spd_solve: A must be square and B must have as many rows, got A {:?} and B {:?}",
                l1.dims(),
                l2.dims()
            )
        }
        let out = on_float2!(s1, l1, s2, l2, "spd_solve", |a, b| solve(&a, &b, m, k)?);
        Ok((out, Shape::from((m, k))))
    }

    fn bwd(
        &self,
        a: &Tensor,
        _b: &Tensor,
        x: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        // x = A^-1 B with A symmetric: dB = A^-1 G, dA = -(A^-1 G) x^T. Both are built from the
        // solve itself and a product, so they are differentiable again.
        let gb = crate::spd_solve(a, grad)?;
        let ga = gb.matmul(&x.t()?)?.neg()?;
        Ok((Some(ga), Some(gb)))
    }
}
