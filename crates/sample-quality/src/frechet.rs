//! The Fréchet distance between two Gaussians (Dowson and Landau 1982) as FID uses it (Heusel
//! et al. 2017): `|mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^(1/2))`, with
//! `tr((S1 S2)^(1/2)) = tr((S1^(1/2) S2 S1^(1/2))^(1/2))`: the inner matrix is symmetric
//! positive semi-definite, so both square roots come from symmetric eigendecompositions and the
//! trace is real, unlike a general matrix square root of the non-symmetric `S1 S2`.

use faer::{Mat, Side};

use crate::error::{QualityError, Result};
use crate::stats::GaussianStats;

fn square(v: &[f64], d: usize) -> Mat<f64> {
    Mat::from_fn(d, d, |i, j| v[i * d + j])
}

/// `tr((S1 S2)^(1/2))` for symmetric positive semi-definite `D x D` row-major matrices
/// (eigenvalues below zero from rounding are treated as zero).
///
/// # Errors
/// [`QualityError::Shape`] for matrices that are not `D x D`, [`QualityError::Eigen`] when an
/// eigendecomposition fails.
pub fn trace_sqrt_product(s1: &[f64], s2: &[f64], d: usize) -> Result<f64> {
    if s1.len() != d * d || s2.len() != d * d {
        return Err(QualityError::Shape(format!(
            "covariances of {} and {} values are not {d} x {d}",
            s1.len(),
            s2.len()
        )));
    }
    let a = square(s1, d);
    let eig = a
        .self_adjoint_eigen(Side::Lower)
        .map_err(|_| QualityError::Eigen("the first covariance"))?;
    let (u, lambda) = (eig.U(), eig.S().column_vector());
    let root: Vec<f64> = (0..d).map(|i| lambda[i].max(0.0).sqrt()).collect();
    let scaled = Mat::from_fn(d, d, |i, j| u[(i, j)] * root[j]);
    let a_half = &scaled * u.transpose();
    let inner = &a_half * square(s2, d) * &a_half;
    let sym = Mat::from_fn(d, d, |i, j| 0.5 * (inner[(i, j)] + inner[(j, i)]));
    let mu = sym
        .self_adjoint_eigenvalues(Side::Lower)
        .map_err(|_| QualityError::Eigen("S1^(1/2) S2 S1^(1/2)"))?;
    Ok(mu.iter().map(|m| m.max(0.0).sqrt()).sum())
}

/// The Fréchet distance between the Gaussian fits `a` and `b` (the squared 2-Wasserstein
/// distance between the Gaussians; FID when the features are Inception's).
///
/// # Errors
/// [`QualityError::Shape`] for different dimensions, [`QualityError::Eigen`].
pub fn frechet_distance(a: &GaussianStats, b: &GaussianStats) -> Result<f64> {
    if a.dim != b.dim {
        return Err(QualityError::Shape(format!(
            "statistics of {}-dimensional and {}-dimensional features",
            a.dim, b.dim
        )));
    }
    let d = a.dim;
    let mean_term: f64 = a
        .mean
        .iter()
        .zip(&b.mean)
        .map(|(x, y)| (x - y).powi(2))
        .sum();
    let trace = |c: &[f64]| (0..d).map(|i| c[i * d + i]).sum::<f64>();
    let cross = trace_sqrt_product(&a.cov, &b.cov, d)?;
    Ok((mean_term + trace(&a.cov) + trace(&b.cov) - 2.0 * cross).max(0.0))
}
