//! Finite-difference stencils for the T-th directional derivative: Lemma 1 (Eq. 6, 14-16),
//! Theorem 1 (Eq. 7, 17-23) and its higher-accuracy generalisation, of the FD score-matching
//! paper (Pang et al. 2020, Sec. 3.2 and App. A.1-A.2).

use crate::vandermonde::{solve_transposed, validate_nodes};
use crate::FdError;

/// The largest derivative order a stencil may have.
///
/// Orders above this gain nothing in `f64`: the stencil weights grow like `T!` while the
/// admissible step shrinks, so roundoff swamps the estimate. Fig. 2 of the paper stops at 6.
pub const MAX_ORDER: u32 = 16;

/// A finite-difference stencil: offsets `gamma_i` and weights `w_i` such that
///
/// ```text
/// (v . grad)^T L(x)  =  eps^T d^T/dv^T L(x)  ~  sum_i w_i L(x + gamma_i v),      |v| = eps,
/// ```
///
/// where `d/dv` is the derivative along the unit vector `v / eps`. In the paper's notation
/// (Lemma 1, Eq. 6) `w_i = T! beta_i`; Theorem 1 (Eq. 7) folds its `1/2`, `alpha_k^-1` or
/// `alpha_k^-2` factors into `w_i` as well. The weights therefore give `v^T grad L` and
/// `v^T (grad^2 L) v` directly for `T = 1, 2`, which is how the score-matching objectives use
/// them (Eq. 8).
///
/// The approximation is exact for every polynomial of degree up to [`Stencil::exact_degree`]
/// along the line, so the error of the *derivative* `d^T/dv^T L` is
/// `O(eps^accuracy)` with [`Stencil::accuracy`] `= exact_degree + 1 - T`.
#[derive(Debug, Clone, PartialEq)]
pub struct Stencil {
    order: u32,
    offsets: Vec<f64>,
    weights: Vec<f64>,
    exact_degree: u32,
}

impl Stencil {
    /// Lemma 1 (Eq. 6, proof Eq. 14-16) and its generalisation to more points: any `n >= T + 1`
    /// distinct finite offsets `gamma_i`.
    ///
    /// The coefficients solve `V^T beta = e_{T+1}` with `V[i][j] = gamma_i^j`, `j = 0..n-1`,
    /// i.e. the moment conditions `sum_i beta_i gamma_i^t = [t == T]` for `t < n`, so the
    /// stencil is exact for polynomials of degree `n - 1` and its derivative error is
    /// `O(eps^(n - T))` (one order more if the offsets happen to be symmetric about 0). With
    /// `n = T + 1` this is exactly Lemma 1's `o(1)` estimator.
    ///
    /// # Errors
    /// [`FdError::ZeroOrder`], [`FdError::OrderTooLarge`], [`FdError::TooFewPoints`],
    /// [`FdError::NonFinitePoint`], [`FdError::DuplicatePoint`], [`FdError::IllConditioned`].
    pub fn from_offsets(order: u32, offsets: &[f64]) -> Result<Self, FdError> {
        check_order(order)?;
        let needed = order as usize + 1;
        if offsets.len() < needed {
            return Err(FdError::TooFewPoints {
                order,
                what: "offsets",
                needed,
                got: offsets.len(),
            });
        }
        validate_nodes(offsets, "offsets")?;
        let mut rhs = vec![0.0; offsets.len()];
        rhs[order as usize] = factorial(order);
        let weights = solve_transposed(offsets, &rhs)?;
        Ok(Self::finish(order, offsets.to_vec(), weights))
    }

    /// Theorem 1 (Eq. 7, proof Eq. 17-23): the symmetric stencil built from distinct positive
    /// `alpha_k`, and its generalisation to more pairs than the theorem needs.
    ///
    /// With `K0 = ceil(T / 2)` the theorem takes exactly `K0` alphas:
    /// * `T = 2 K0` (even) evaluates `L(x)` and `L(x +- alpha_k v)`:
    ///   `(T! / 2) sum_k beta_k alpha_k^-2 [L(x + alpha_k v) + L(x - alpha_k v) - 2 L(x)]`;
    /// * `T = 2 K0 - 1` (odd) evaluates only the pairs:
    ///   `(T! / 2) sum_k beta_k alpha_k^-1 [L(x + alpha_k v) - L(x - alpha_k v)]`;
    ///
    /// where `beta` solves `V^T beta = e_{K0}` for the Vandermonde matrix of the `alpha_k^2`
    /// (Eq. 20). These `T + 1` evaluations give derivative error `O(eps^2)` (the theorem's
    /// `o(eps)`, App. B.3). Passing `K > K0` alphas cancels `K - K0` further even (or odd)
    /// Taylor terms: `T + N` evaluations with `N = 2 (K - K0) + 1` give error `O(eps^(N+1))`,
    /// the `o(eps^N)` generalisation stated after Theorem 1. `K0 = 1, alpha = 1` is Eq. (8).
    ///
    /// Offsets are ordered: the centre `0` first (even `T` only), then `+alpha_k, -alpha_k`
    /// for each `k` in the given order.
    ///
    /// # Errors
    /// [`FdError::ZeroOrder`], [`FdError::OrderTooLarge`], [`FdError::TooFewPoints`],
    /// [`FdError::NonFinitePoint`], [`FdError::NonPositiveAlpha`],
    /// [`FdError::DuplicatePoint`], [`FdError::IllConditioned`].
    pub fn symmetric(order: u32, alphas: &[f64]) -> Result<Self, FdError> {
        check_order(order)?;
        let k0 = order.div_ceil(2) as usize;
        if alphas.len() < k0 {
            return Err(FdError::TooFewPoints {
                order,
                what: "alphas",
                needed: k0,
                got: alphas.len(),
            });
        }
        validate_nodes(alphas, "alphas")?;
        if let Some((index, &value)) = alphas.iter().enumerate().find(|(_, a)| **a <= 0.0) {
            return Err(FdError::NonPositiveAlpha { index, value });
        }
        let squares: Vec<f64> = alphas.iter().map(|a| a * a).collect();
        let mut rhs = vec![0.0; alphas.len()];
        rhs[k0 - 1] = 1.0;
        let beta = solve_transposed(&squares, &rhs)?;
        let half_fact = factorial(order) / 2.0;
        let even = order % 2 == 0;
        let mut offsets = Vec::with_capacity(2 * alphas.len() + 1);
        let mut weights = Vec::with_capacity(2 * alphas.len() + 1);
        if even {
            let centre: f64 = beta.iter().zip(&squares).map(|(b, s)| b / s).sum();
            offsets.push(0.0);
            weights.push(-2.0 * half_fact * centre);
        }
        for ((&alpha, &b), &sq) in alphas.iter().zip(&beta).zip(&squares) {
            let (plus, minus) = if even {
                let w = half_fact * b / sq;
                (w, w)
            } else {
                let w = half_fact * b / alpha;
                (w, -w)
            };
            offsets.extend([alpha, -alpha]);
            weights.extend([plus, minus]);
        }
        Ok(Self::finish(order, offsets, weights))
    }

    /// The classical central-difference stencil: [`Stencil::symmetric`] with
    /// `alpha_k = 1, 2, ..., ceil(T / 2) + extra_pairs`.
    ///
    /// `central(2, 0)` is `[1, -2, 1]`, `central(2, 1)` is `[-1/12, 4/3, -5/2, 4/3, -1/12]`,
    /// `central(1, 0)` is `[-1/2, 1/2]` and `central(4, 0)` is `[1, -4, 6, -4, 1]`.
    ///
    /// # Errors
    /// As [`Stencil::symmetric`].
    pub fn central(order: u32, extra_pairs: usize) -> Result<Self, FdError> {
        check_order(order)?;
        let k = order.div_ceil(2) as usize + extra_pairs;
        let alphas: Vec<f64> = (1..=k).map(|a| a as f64).collect();
        Self::symmetric(order, &alphas)
    }

    fn finish(order: u32, offsets: Vec<f64>, weights: Vec<f64>) -> Self {
        let exact_degree = measured_exact_degree(order, &offsets, &weights);
        Self {
            order,
            offsets,
            weights,
            exact_degree,
        }
    }

    /// The derivative order `T`.
    pub fn order(&self) -> u32 {
        self.order
    }

    /// The offsets `gamma_i`: evaluation `i` is at `x + gamma_i v`.
    pub fn offsets(&self) -> &[f64] {
        &self.offsets
    }

    /// The weights `w_i` (with `T!` and Theorem 1's factors folded in).
    pub fn weights(&self) -> &[f64] {
        &self.weights
    }

    /// The number of function evaluations the stencil needs.
    pub fn len(&self) -> usize {
        self.offsets.len()
    }

    /// Always `false`: a stencil has at least `T + 1 >= 2` points (or `T >= 1` pairs).
    pub fn is_empty(&self) -> bool {
        self.offsets.is_empty()
    }

    /// The highest polynomial degree along the line for which the stencil is exact, measured
    /// from the moments `sum_i w_i gamma_i^t` when the stencil is built.
    pub fn exact_degree(&self) -> u32 {
        self.exact_degree
    }

    /// The order `p` of the derivative error: `d^T/dv^T L` is estimated to `O(eps^p)`.
    /// Lemma 1 stencils with `T + 1` points have `p = 1`, Theorem 1 stencils `p = 2`.
    pub fn accuracy(&self) -> u32 {
        self.exact_degree + 1 - self.order
    }

    /// The moment `sum_i w_i gamma_i^t`; it equals `T!` for `t = T` and `0` for the other
    /// `t <= exact_degree`. The first nonzero moment past that sets the leading error term
    /// `moment(t) / t! * (v . grad)^t L(x)`.
    pub fn moment(&self, t: u32) -> f64 {
        self.offsets
            .iter()
            .zip(&self.weights)
            .map(|(g, w)| w * g.powi(t as i32))
            .sum()
    }

    /// Combines evaluations `values[i] = L(x + gamma_i v)` (in offset order) into the estimate
    /// of `(v . grad)^T L(x)`.
    ///
    /// # Errors
    /// [`FdError::LengthMismatch`] when `values.len() != self.len()`.
    pub fn apply(&self, values: &[f64]) -> Result<f64, FdError> {
        if values.len() != self.len() {
            return Err(FdError::LengthMismatch {
                what: "stencil evaluations",
                expected: self.len(),
                got: values.len(),
            });
        }
        Ok(self.weights.iter().zip(values).map(|(w, f)| w * f).sum())
    }
}

fn check_order(order: u32) -> Result<(), FdError> {
    if order == 0 {
        return Err(FdError::ZeroOrder);
    }
    if order > MAX_ORDER {
        return Err(FdError::OrderTooLarge {
            order,
            max: MAX_ORDER,
        });
    }
    Ok(())
}

/// `T!` in `f64` (exact for `T <= MAX_ORDER`).
pub(crate) fn factorial(order: u32) -> f64 {
    (1..=order).map(f64::from).product()
}

/// The largest `m` such that the moments `t = 0..=m` equal `T! [t == T]` up to roundoff.
fn measured_exact_degree(order: u32, offsets: &[f64], weights: &[f64]) -> u32 {
    let target_scale = factorial(order);
    let mut degree = None;
    // A stencil of n points cannot be exact past degree n (symmetry buys at most one order).
    for t in 0..=offsets.len() as u32 + 1 {
        let (sum, scale) = offsets
            .iter()
            .zip(weights)
            .fold((0.0, 0.0), |(s, a), (g, w)| {
                let term = w * g.powi(t as i32);
                (s + term, a + term.abs())
            });
        let target = if t == order { target_scale } else { 0.0 };
        if (sum - target).abs() > 1e-9 * scale.max(target_scale) {
            break;
        }
        degree = Some(t);
    }
    // Construction guarantees the moments up to T hold; fall back to T if roundoff says
    // otherwise so that `accuracy()` never underflows.
    degree.unwrap_or(order).max(order)
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_relative_eq;

    fn assert_weights(stencil: &Stencil, expected: &[(f64, f64)]) {
        assert_eq!(stencil.len(), expected.len(), "{stencil:?}");
        for &(offset, weight) in expected {
            let i = stencil
                .offsets()
                .iter()
                .position(|&g| g == offset)
                .unwrap_or_else(|| panic!("offset {offset} missing from {stencil:?}"));
            assert_relative_eq!(
                stencil.weights()[i],
                weight,
                epsilon = 1e-12,
                max_relative = 1e-12
            );
        }
    }

    #[test]
    fn theorem1_k1_alpha1_is_eq8() {
        // Eq. (8): v.grad L = L(x+v)/2 - L(x-v)/2,  v^T H v = L(x+v) + L(x-v) - 2 L(x).
        let first = Stencil::symmetric(1, &[1.0]).unwrap();
        assert_weights(&first, &[(1.0, 0.5), (-1.0, -0.5)]);
        let second = Stencil::symmetric(2, &[1.0]).unwrap();
        assert_weights(&second, &[(0.0, -2.0), (1.0, 1.0), (-1.0, 1.0)]);
        assert_eq!(first.accuracy(), 2);
        assert_eq!(second.accuracy(), 2);
    }

    #[test]
    fn classical_central_difference_tables() {
        // Standard tables (Fornberg 1988), unit spacing.
        assert_weights(
            &Stencil::central(2, 0).unwrap(),
            &[(-1.0, 1.0), (0.0, -2.0), (1.0, 1.0)],
        );
        assert_weights(
            &Stencil::central(2, 1).unwrap(),
            &[
                (-2.0, -1.0 / 12.0),
                (-1.0, 4.0 / 3.0),
                (0.0, -2.5),
                (1.0, 4.0 / 3.0),
                (2.0, -1.0 / 12.0),
            ],
        );
        assert_weights(
            &Stencil::central(1, 1).unwrap(),
            &[
                (-2.0, 1.0 / 12.0),
                (-1.0, -2.0 / 3.0),
                (1.0, 2.0 / 3.0),
                (2.0, -1.0 / 12.0),
            ],
        );
        assert_weights(
            &Stencil::central(3, 0).unwrap(),
            &[(-2.0, -0.5), (-1.0, 1.0), (1.0, -1.0), (2.0, 0.5)],
        );
        assert_weights(
            &Stencil::central(4, 0).unwrap(),
            &[
                (-2.0, 1.0),
                (-1.0, -4.0),
                (0.0, 6.0),
                (1.0, -4.0),
                (2.0, 1.0),
            ],
        );
        assert_weights(
            &Stencil::central(6, 0).unwrap(),
            &[
                (-3.0, 1.0),
                (-2.0, -6.0),
                (-1.0, 15.0),
                (0.0, -20.0),
                (1.0, 15.0),
                (2.0, -6.0),
                (3.0, 1.0),
            ],
        );
        // Forward differences from Lemma 1 with offsets 0, 1, 2: f'' ~ f0 - 2 f1 + f2.
        assert_weights(
            &Stencil::from_offsets(2, &[0.0, 1.0, 2.0]).unwrap(),
            &[(0.0, 1.0), (1.0, -2.0), (2.0, 1.0)],
        );
    }

    #[test]
    fn moments_and_accuracy_follow_theory() {
        for order in 1..=6u32 {
            let lemma1: Vec<f64> = (0..=order).map(|i| f64::from(i) * 0.5 - 0.3).collect();
            let s = Stencil::from_offsets(order, &lemma1).unwrap();
            assert_eq!(s.len(), order as usize + 1);
            assert_eq!(s.exact_degree(), order, "Lemma 1, T = {order}");
            assert_eq!(s.accuracy(), 1);
            assert_relative_eq!(s.moment(order), factorial(order), max_relative = 1e-10);

            let t1 = Stencil::central(order, 0).unwrap();
            assert_eq!(
                t1.len(),
                order as usize + 1,
                "Theorem 1 uses T + 1 evaluations"
            );
            assert_eq!(t1.accuracy(), 2, "Theorem 1, T = {order}");

            // Generalisation: one extra pair adds two evaluations and two orders.
            let t2 = Stencil::central(order, 1).unwrap();
            assert_eq!(t2.len(), order as usize + 3);
            assert_eq!(t2.accuracy(), 4, "T + 3 evaluations, T = {order}");

            // Lemma 1 with T + N generic points: exact to degree T + N - 1, error O(eps^N).
            let generic: Vec<f64> = (0..order + 3).map(|i| f64::from(i) * 0.37 - 0.5).collect();
            let g = Stencil::from_offsets(order, &generic).unwrap();
            assert_eq!(g.accuracy(), 3);
        }
    }

    #[test]
    fn errors_are_typed() {
        assert!(matches!(
            Stencil::from_offsets(0, &[0.0, 1.0]),
            Err(FdError::ZeroOrder)
        ));
        assert!(matches!(
            Stencil::symmetric(0, &[1.0]),
            Err(FdError::ZeroOrder)
        ));
        assert!(matches!(
            Stencil::central(MAX_ORDER + 1, 0),
            Err(FdError::OrderTooLarge { order, max: MAX_ORDER }) if order == MAX_ORDER + 1
        ));
        assert!(matches!(
            Stencil::from_offsets(3, &[0.0, 1.0, 2.0]),
            Err(FdError::TooFewPoints {
                needed: 4,
                got: 3,
                what: "offsets",
                ..
            })
        ));
        assert!(matches!(
            Stencil::symmetric(4, &[1.0]),
            Err(FdError::TooFewPoints {
                needed: 2,
                got: 1,
                what: "alphas",
                ..
            })
        ));
        assert!(matches!(
            Stencil::from_offsets(1, &[0.5, 0.5]),
            Err(FdError::DuplicatePoint {
                first: 0,
                second: 1,
                ..
            })
        ));
        assert!(matches!(
            Stencil::symmetric(3, &[1.0, 1.0]),
            Err(FdError::DuplicatePoint { what: "alphas", .. })
        ));
        assert!(matches!(
            Stencil::from_offsets(1, &[0.0, f64::INFINITY]),
            Err(FdError::NonFinitePoint { index: 1, .. })
        ));
        assert!(matches!(
            Stencil::symmetric(2, &[f64::NAN]),
            Err(FdError::NonFinitePoint {
                what: "alphas",
                index: 0,
                ..
            })
        ));
        assert!(matches!(
            Stencil::symmetric(2, &[-1.0]),
            Err(FdError::NonPositiveAlpha { index: 0, .. })
        ));
        assert!(matches!(
            Stencil::symmetric(4, &[1.0, 0.0]),
            Err(FdError::NonPositiveAlpha { index: 1, .. })
        ));
        assert!(matches!(
            Stencil::from_offsets(2, &[0.0, 1e-300, 2e-300]),
            Err(FdError::IllConditioned { .. })
        ));
        let s = Stencil::central(2, 0).unwrap();
        assert!(matches!(
            s.apply(&[1.0]),
            Err(FdError::LengthMismatch {
                expected: 3,
                got: 1,
                ..
            })
        ));
        // Error messages name the problem.
        let msg = Stencil::symmetric(2, &[-1.0]).unwrap_err().to_string();
        assert!(msg.contains("positive"), "{msg}");
    }
}
