//! `fd-core`: finite-difference (FD) decomposition of any-order directional derivatives, after
//! Sec. 3 (Lemma 1, Theorem 1, Eq. 5-8) and App. A.1-A.2 of Pang, Xu, Li, Song, Ermon, Zhu,
//! "Efficient Learning of Generative Models via Finite-Difference Score Matching" (NeurIPS 2020).
//!
//! The T-th directional derivative of a scalar function `L` at `x` along `v` (with `|v| = eps`)
//! is a fixed linear combination of plain evaluations of `L`:
//!
//! ```text
//! (v . grad)^T L(x) = eps^T d^T/dv^T L(x) ~ sum_i w_i L(x + gamma_i v)
//! ```
//!
//! A [`Stencil`] holds the offsets `gamma_i` and weights `w_i`. It comes from
//! * [`Stencil::from_offsets`]: Lemma 1, any `T + 1` (or more) distinct offsets, weights from
//!   the transposed Vandermonde system `V^T beta = e_{T+1}`;
//! * [`Stencil::symmetric`]: Theorem 1, `+-alpha_k` pairs (plus the centre for even `T`), weights
//!   from the Vandermonde system in `alpha_k^2`; `O(eps^2)` error with `T + 1` evaluations, and
//!   higher accuracy with more pairs;
//! * [`Stencil::central`]: Theorem 1 with `alpha_k = 1, 2, ...`, the classical central tables.
//!
//! The evaluations are independent, so they can run one by one, on several threads
//! ([`Execution::Parallel`]), or as one batch of shifted points ([`BatchMode::Concatenated`]),
//! which is what makes FD score matching cheap (Sec. 3.3). The systems are solved with an
//! `O(n^2)` Björck–Pereyra scheme ([`vandermonde::solve_transposed`]). This crate depends on no ML
//! framework; `sm-objectives` applies the same stencils to Candle tensors.
//!
//! # Example: `v^T grad L` and `v^T (grad^2 L) v` as in Eq. (8)
//!
//! ```
//! use fd_core::{Execution, Stencil};
//!
//! // L(x) = x0^2 x1 + sin(x1): grad L = (2 x0 x1, x0^2 + cos x1),
//! // Hessian = [[2 x1, 2 x0], [2 x0, -sin x1]].
//! let l = |x: &[f64]| x[0] * x[0] * x[1] + x[1].sin();
//! let x = [0.7, -0.4];
//! let v = [0.6e-3, 0.8e-3]; // |v| = eps = 1e-3
//!
//! // Theorem 1 with K = 1, alpha = 1 (Eq. 8): L(x+v)/2 - L(x-v)/2 and L(x+v) + L(x-v) - 2 L(x).
//! let first = Stencil::symmetric(1, &[1.0])?;
//! let second = Stencil::symmetric(2, &[1.0])?;
//! let vg = first.directional_derivative(l, &x, &v, Execution::Sequential)?;
//! let vhv = second.directional_derivative(l, &x, &v, Execution::Sequential)?;
//!
//! let grad = [2.0 * x[0] * x[1], x[0] * x[0] + x[1].cos()];
//! let hess = [[2.0 * x[1], 2.0 * x[0]], [2.0 * x[0], -x[1].sin()]];
//! let vg_exact = v[0] * grad[0] + v[1] * grad[1];
//! let vhv_exact = (0..2)
//!     .flat_map(|i| (0..2).map(move |j| (i, j)))
//!     .map(|(i, j)| v[i] * hess[i][j] * v[j])
//!     .sum::<f64>();
//! // Both are accurate to O(eps^2) relative to their size.
//! assert!((vg - vg_exact).abs() < 1e-6 * vg_exact.abs());
//! assert!((vhv - vhv_exact).abs() < 1e-4 * vhv_exact.abs());
//! # Ok::<(), fd_core::FdError>(())
//! ```

mod error;
mod estimate;
mod stencil;
pub mod vandermonde;

pub use error::FdError;
pub use estimate::{BatchMode, Execution};
pub use stencil::{Stencil, MAX_ORDER};
