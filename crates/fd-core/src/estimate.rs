//! Applying a [`Stencil`] to a function along a direction: the FD decomposition of Sec. 3.2-3.3
//! of the FD score-matching paper, with the independent evaluations run sequentially, in
//! parallel (rayon), or as one concatenated batch (App. C.1).

use std::error::Error as StdError;

use rayon::prelude::*;

use crate::{FdError, Stencil};

/// How a scalar closure's independent evaluations `L(x + gamma_i v)` are scheduled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Execution {
    /// One after another on the calling thread.
    #[default]
    Sequential,
    /// Concurrently on rayon's global pool (worth it when one evaluation is expensive).
    Parallel,
}

/// How a batched evaluator is called on the shifted points.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BatchMode {
    /// One call on all `n_offsets * batch` rows, offset-major: the parallel form of App. C.1
    /// (`concatenate([x + gamma_1 v, x + gamma_2 v, ...])`).
    #[default]
    Concatenated,
    /// One call per offset on `batch` rows: the sequential form (the starred rows of the
    /// paper's tables).
    PerOffset,
}

impl Stencil {
    /// Estimates `(v . grad)^T L(x) = eps^T d^T/dv^T L(x)` (with `eps = |v|`) from the
    /// evaluations `L(x + gamma_i v)`.
    ///
    /// Divide the result by `eps^T` for the derivative along the unit vector `v / eps`.
    ///
    /// # Errors
    /// [`FdError::LengthMismatch`] if `x` and `v` differ in length, [`FdError::NonFiniteInput`]
    /// for NaN or infinite inputs, [`FdError::NonFiniteEvaluation`] if `f` returns one.
    pub fn directional_derivative<F>(
        &self,
        f: F,
        x: &[f64],
        v: &[f64],
        execution: Execution,
    ) -> Result<f64, FdError>
    where
        F: Fn(&[f64]) -> f64 + Sync,
    {
        check_pair(x, v, x.len())?;
        let eval = |gamma: &f64| -> f64 {
            let shifted: Vec<f64> = x.iter().zip(v).map(|(xi, vi)| xi + gamma * vi).collect();
            f(&shifted)
        };
        let values: Vec<f64> = match execution {
            Execution::Sequential => self.offsets().iter().map(eval).collect(),
            Execution::Parallel => self.offsets().par_iter().map(eval).collect(),
        };
        check_values(self, &values, 1)?;
        self.apply(&values)
    }

    /// The shifted points for a batch, row-major `[n_offsets * batch, dim]`, offset-major:
    /// row `i * batch + b` is `x_b + gamma_i v_b`.
    ///
    /// `xs` and `vs` are row-major `[batch, dim]`.
    ///
    /// # Errors
    /// [`FdError::LengthMismatch`] for a zero `dim`, lengths that are not a multiple of `dim`
    /// or `xs`/`vs` of different lengths; [`FdError::NonFiniteInput`] for NaN or infinity.
    pub fn shifted_batch(&self, xs: &[f64], vs: &[f64], dim: usize) -> Result<Vec<f64>, FdError> {
        check_pair(xs, vs, dim)?;
        let mut out = Vec::with_capacity(self.len() * xs.len());
        for &gamma in self.offsets() {
            out.extend(xs.iter().zip(vs).map(|(x, v)| x + gamma * v));
        }
        Ok(out)
    }

    /// Combines offset-major evaluations (`values[i * batch + b] = L(x_b + gamma_i v_b)`) into
    /// one estimate of `(v_b . grad)^T L(x_b)` per batch element.
    ///
    /// # Errors
    /// [`FdError::LengthMismatch`] unless `values.len() == self.len() * batch`.
    pub fn combine(&self, values: &[f64], batch: usize) -> Result<Vec<f64>, FdError> {
        if values.len() != self.len() * batch {
            return Err(FdError::LengthMismatch {
                what: "offset-major evaluations",
                expected: self.len() * batch,
                got: values.len(),
            });
        }
        let mut out = vec![0.0; batch];
        for (w, block) in self.weights().iter().zip(values.chunks_exact(batch.max(1))) {
            for (o, f) in out.iter_mut().zip(block) {
                *o += w * f;
            }
        }
        Ok(out)
    }

    /// Estimates `(v_b . grad)^T L(x_b)` for every row `b` of a batch with an evaluator that
    /// receives many points at once, so a caller can run them as one batched forward pass.
    ///
    /// `eval(points, rows)` gets row-major points `[rows, dim]` and must return `rows` values.
    /// In [`BatchMode::Concatenated`] it is called once with all `n_offsets * batch` rows (see
    /// [`Stencil::shifted_batch`] for the order); in [`BatchMode::PerOffset`] once per offset.
    ///
    /// # Errors
    /// Input errors as [`Stencil::shifted_batch`]; [`FdError::Evaluator`] if `eval` fails,
    /// [`FdError::LengthMismatch`] if it returns the wrong number of values,
    /// [`FdError::NonFiniteEvaluation`] if one is NaN or infinite.
    pub fn directional_derivative_batched<E, G>(
        &self,
        xs: &[f64],
        vs: &[f64],
        dim: usize,
        mode: BatchMode,
        mut eval: G,
    ) -> Result<Vec<f64>, FdError>
    where
        G: FnMut(&[f64], usize) -> Result<Vec<f64>, E>,
        E: Into<Box<dyn StdError + Send + Sync>>,
    {
        let points = self.shifted_batch(xs, vs, dim)?;
        let batch = xs.len() / dim;
        let mut call = |rows: &[f64]| -> Result<Vec<f64>, FdError> {
            let n = rows.len() / dim;
            let out = eval(rows, n).map_err(|e| FdError::Evaluator(e.into()))?;
            if out.len() != n {
                return Err(FdError::LengthMismatch {
                    what: "batch evaluator output",
                    expected: n,
                    got: out.len(),
                });
            }
            Ok(out)
        };
        let values = match mode {
            BatchMode::Concatenated => call(&points)?,
            BatchMode::PerOffset => {
                let mut values = Vec::with_capacity(self.len() * batch);
                for block in points.chunks_exact((batch * dim).max(1)) {
                    values.extend(call(block)?);
                }
                values
            }
        };
        check_values(self, &values, batch)?;
        self.combine(&values, batch)
    }
}

fn check_pair(x: &[f64], v: &[f64], dim: usize) -> Result<(), FdError> {
    if dim == 0 || x.len() % dim != 0 {
        return Err(FdError::LengthMismatch {
            what: "points (a whole number of rows of length dim >= 1)",
            expected: dim.max(1) * (x.len() / dim.max(1)).max(1),
            got: x.len(),
        });
    }
    if v.len() != x.len() {
        return Err(FdError::LengthMismatch {
            what: "direction v (same shape as x)",
            expected: x.len(),
            got: v.len(),
        });
    }
    for (what, data) in [("x", x), ("v", v)] {
        if let Some(index) = data.iter().position(|a| !a.is_finite()) {
            return Err(FdError::NonFiniteInput { what, index });
        }
    }
    Ok(())
}

fn check_values(stencil: &Stencil, values: &[f64], batch: usize) -> Result<(), FdError> {
    match values.iter().position(|f| !f.is_finite()) {
        Some(index) => Err(FdError::NonFiniteEvaluation {
            index,
            offset: stencil.offsets()[index / batch.max(1)],
        }),
        None => Ok(()),
    }
}
