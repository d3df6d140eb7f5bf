//! O(n^2) Björck–Pereyra solver for the transposed Vandermonde systems `V^T beta = e` of
//! Lemma 1 (Eq. 14-16) and Theorem 1 (Eq. 20) of the FD score-matching paper.
//!
//! With nodes `x_0..x_{n-1}` and `V[i][j] = x_i^j`, the system `V^T z = b` is the *moment*
//! problem `sum_i z_i x_i^k = b_k` for `k = 0..n-1`. The Björck–Pereyra scheme (Björck and
//! Pereyra 1970; Golub and Van Loan, Algorithm 4.6.2) factors `V^T` into bidiagonal matrices
//! and applies their inverses in `O(n^2)` flops without forming `V`. For the right-hand sides
//! used here (unit vectors) it is far more accurate than Gaussian elimination on `V`, whose
//! condition number grows exponentially with `n`.

use crate::FdError;

/// Solves `sum_i z_i * nodes[i]^k = rhs[k]` for `k = 0..n-1` and returns `z`.
///
/// The nodes must be finite and pairwise distinct and `rhs.len() == nodes.len()`; callers in
/// this crate validate that first. A non-finite result (nodes too close for `f64`) is reported
/// as [`FdError::IllConditioned`].
pub fn solve_transposed(nodes: &[f64], rhs: &[f64]) -> Result<Vec<f64>, FdError> {
    if rhs.len() != nodes.len() {
        return Err(FdError::LengthMismatch {
            what: "Vandermonde right-hand side",
            expected: nodes.len(),
            got: rhs.len(),
        });
    }
    validate_nodes(nodes, "nodes")?;
    let n = nodes.len();
    let mut z = rhs.to_vec();
    if n == 0 {
        return Ok(z);
    }
    let last = n - 1;
    // Forward sweep: apply the inverses of the lower-bidiagonal factors.
    for k in 0..last {
        for i in (k + 1..=last).rev() {
            z[i] -= nodes[k] * z[i - 1];
        }
    }
    // Backward sweep: divided differences, then the upper-bidiagonal factors.
    for k in (0..last).rev() {
        for i in k + 1..=last {
            z[i] /= nodes[i] - nodes[i - k - 1];
        }
        for i in k..last {
            z[i] -= z[i + 1];
        }
    }
    if let Some((index, &value)) = z.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        return Err(FdError::IllConditioned { index, value });
    }
    Ok(z)
}

/// Checks that every node is finite and that no two coincide.
pub(crate) fn validate_nodes(nodes: &[f64], what: &'static str) -> Result<(), FdError> {
    for (index, &value) in nodes.iter().enumerate() {
        if !value.is_finite() {
            return Err(FdError::NonFinitePoint { what, index, value });
        }
    }
    for second in 0..nodes.len() {
        for first in 0..second {
            if nodes[first] == nodes[second] {
                return Err(FdError::DuplicatePoint {
                    what,
                    first,
                    second,
                    value: nodes[first],
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Residual of the moment equations, relative to the size of the terms.
    fn relative_residual(nodes: &[f64], z: &[f64], rhs: &[f64]) -> f64 {
        (0..nodes.len())
            .map(|k| {
                let (sum, scale) = nodes.iter().zip(z).fold((0.0, 0.0), |(s, a), (x, zi)| {
                    let term = zi * x.powi(k as i32);
                    (s + term, a + term.abs())
                });
                (sum - rhs[k]).abs() / scale.max(1.0)
            })
            .fold(0.0, f64::max)
    }

    #[test]
    fn last_unit_vector_gives_divided_difference_weights() {
        // Oracle: for b = e_{n-1} the solution is z_i = 1 / prod_{j != i} (x_i - x_j),
        // the weights of the (n-1)-th divided difference.
        let nodes = [-1.5, -0.25, 0.0, 0.7, 2.0, 3.1];
        let mut rhs = vec![0.0; nodes.len()];
        rhs[nodes.len() - 1] = 1.0;
        let z = solve_transposed(&nodes, &rhs).unwrap();
        for (i, &xi) in nodes.iter().enumerate() {
            let expected: f64 = 1.0
                / nodes
                    .iter()
                    .enumerate()
                    .filter(|&(j, _)| j != i)
                    .map(|(_, &xj)| xi - xj)
                    .product::<f64>();
            approx::assert_relative_eq!(z[i], expected, max_relative = 1e-12);
        }
    }

    #[test]
    fn general_right_hand_side_satisfies_the_moment_equations() {
        let nodes = [0.1, 0.9, -0.4, 1.7, -2.2, 0.55, 3.0, -1.1];
        let rhs = [0.3, -1.0, 2.5, 0.0, 4.0, -0.7, 1.25, 9.0];
        let z = solve_transposed(&nodes, &rhs).unwrap();
        assert!(relative_residual(&nodes, &z, &rhs) < 1e-12);
    }

    #[test]
    fn two_nodes_closed_form() {
        // z0 + z1 = 0, x0 z0 + x1 z1 = 1  =>  z1 = 1/(x1 - x0), z0 = -z1.
        let z = solve_transposed(&[2.0, 5.0], &[0.0, 1.0]).unwrap();
        approx::assert_relative_eq!(z[1], 1.0 / 3.0, max_relative = 1e-15);
        approx::assert_relative_eq!(z[0], -1.0 / 3.0, max_relative = 1e-15);
    }

    #[test]
    fn rejects_mismatched_lengths_and_bad_nodes() {
        assert!(matches!(
            solve_transposed(&[1.0, 2.0], &[1.0]),
            Err(FdError::LengthMismatch {
                expected: 2,
                got: 1,
                ..
            })
        ));
        assert!(matches!(
            solve_transposed(&[1.0, 1.0], &[0.0, 1.0]),
            Err(FdError::DuplicatePoint {
                first: 0,
                second: 1,
                ..
            })
        ));
        assert!(matches!(
            solve_transposed(&[1.0, f64::NAN], &[0.0, 1.0]),
            Err(FdError::NonFinitePoint { index: 1, .. })
        ));
    }

    #[test]
    fn nearly_coincident_nodes_are_reported_as_ill_conditioned() {
        let nodes = [0.0, 1e-300, 2e-300];
        let rhs = [0.0, 0.0, 1.0];
        assert!(matches!(
            solve_transposed(&nodes, &rhs),
            Err(FdError::IllConditioned { .. })
        ));
    }
}
