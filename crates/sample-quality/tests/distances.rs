//! The Fréchet distance against closed forms (diagonal covariances; 2 x 2 covariances that do
//! not commute, where `tr((S1 S2)^(1/2)) = sqrt(tr(S1 S2) + 2 sqrt(det(S1 S2)))`) and against an
//! independent f64 computation (the Denman-Beavers square root of the non-symmetric `S1 S2`);
//! sample statistics of known Gaussians; the kernel distance against a direct double sum and
//! near zero between two samples of one distribution; and the errors for bad input.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;
use sample_quality::{
    frechet_distance, kernel_distance, trace_sqrt_product, GaussianStats, QualityError,
};

/// Seeded standard normals.
struct Draws(StdRng);

impl Draws {
    fn new(seed: u64) -> Self {
        Self(StdRng::seed_from_u64(seed))
    }

    fn gaussian(&mut self) -> f64 {
        self.0.sample(StandardNormal)
    }
}

fn stats(mean: Vec<f64>, cov: Vec<f64>) -> GaussianStats {
    GaussianStats {
        dim: mean.len(),
        count: 100,
        mean,
        cov,
    }
}

fn matmul(a: &[f64], b: &[f64], d: usize) -> Vec<f64> {
    let mut c = vec![0.0; d * d];
    for i in 0..d {
        for k in 0..d {
            for j in 0..d {
                c[i * d + j] += a[i * d + k] * b[k * d + j];
            }
        }
    }
    c
}

/// Gauss-Jordan inverse with partial pivoting.
fn inverse(a: &[f64], d: usize) -> Vec<f64> {
    let mut m = a.to_vec();
    let mut inv: Vec<f64> = (0..d * d)
        .map(|k| if k / d == k % d { 1.0 } else { 0.0 })
        .collect();
    for col in 0..d {
        let p = (col..d)
            .max_by(|&i, &j| m[i * d + col].abs().total_cmp(&m[j * d + col].abs()))
            .unwrap();
        for j in 0..d {
            m.swap(col * d + j, p * d + j);
            inv.swap(col * d + j, p * d + j);
        }
        let pivot = m[col * d + col];
        for j in 0..d {
            m[col * d + j] /= pivot;
            inv[col * d + j] /= pivot;
        }
        for i in 0..d {
            if i != col {
                let f = m[i * d + col];
                for j in 0..d {
                    m[i * d + j] -= f * m[col * d + j];
                    inv[i * d + j] -= f * inv[col * d + j];
                }
            }
        }
    }
    inv
}

/// The trace of the principal square root of `p` (eigenvalues real and positive) by the
/// Denman-Beavers iteration `Y <- (Y + Z^-1) / 2`, `Z <- (Z + Y^-1) / 2`, `Y -> p^(1/2)`.
fn trace_sqrt_denman_beavers(p: &[f64], d: usize) -> f64 {
    let mut y = p.to_vec();
    let mut z: Vec<f64> = (0..d * d)
        .map(|k| if k / d == k % d { 1.0 } else { 0.0 })
        .collect();
    for _ in 0..60 {
        let (yi, zi) = (inverse(&y, d), inverse(&z, d));
        y = y.iter().zip(&zi).map(|(a, b)| 0.5 * (a + b)).collect();
        z = z.iter().zip(&yi).map(|(a, b)| 0.5 * (a + b)).collect();
    }
    (0..d).map(|i| y[i * d + i]).sum()
}

/// A random symmetric positive-definite `d x d` matrix `A A^T / d + 0.1 I`.
fn random_spd(d: usize, draws: &mut Draws) -> Vec<f64> {
    let a: Vec<f64> = (0..d * d).map(|_| draws.gaussian()).collect();
    let mut s = vec![0.0; d * d];
    for i in 0..d {
        for j in 0..d {
            for k in 0..d {
                s[i * d + j] += a[i * d + k] * a[j * d + k] / d as f64;
            }
        }
        s[i * d + i] += 0.1;
    }
    s
}

#[test]
fn frechet_of_diagonal_gaussians_is_the_closed_form() -> anyhow::Result<()> {
    let (a, b) = (vec![1.0, 4.0, 0.25], vec![9.0, 1.0, 0.25]);
    let diag = |v: &[f64]| {
        let mut m = vec![0.0; 9];
        for i in 0..3 {
            m[i * 3 + i] = v[i];
        }
        m
    };
    let s1 = stats(vec![0.0, 1.0, 2.0], diag(&a));
    let s2 = stats(vec![1.0, 1.0, 0.0], diag(&b));
    // |mu1 - mu2|^2 = 1 + 0 + 4; sum (sqrt a - sqrt b)^2 = 4 + 1 + 0.
    assert!((frechet_distance(&s1, &s2)? - 10.0).abs() < 1e-12);
    assert!(frechet_distance(&s1, &s1)?.abs() < 1e-12);
    Ok(())
}

#[test]
fn frechet_of_non_commuting_2x2_covariances_is_the_closed_form() -> anyhow::Result<()> {
    let s1 = vec![2.0, 0.7, 0.7, 1.0];
    let s2 = vec![0.5, -0.3, -0.3, 3.0];
    let p = matmul(&s1, &s2, 2);
    assert!((p[1] - p[2]).abs() > 0.1, "S1 S2 is not symmetric");
    let tr = p[0] + p[3];
    let det = p[0] * p[3] - p[1] * p[2];
    let closed = (tr + 2.0 * det.sqrt()).sqrt();
    assert!((trace_sqrt_product(&s1, &s2, 2)? - closed).abs() < 1e-12);
    let d = frechet_distance(&stats(vec![0.0, 0.0], s1), &stats(vec![0.0, 3.0], s2))?;
    assert!((d - (9.0 + 3.0 + 3.5 - 2.0 * closed)).abs() < 1e-12);
    Ok(())
}

#[test]
fn frechet_equals_an_independent_computation_in_f64() -> anyhow::Result<()> {
    let mut draws = Draws::new(5);
    for d in [3, 8, 20] {
        let (s1, s2) = (random_spd(d, &mut draws), random_spd(d, &mut draws));
        let ours = trace_sqrt_product(&s1, &s2, d)?;
        let theirs = trace_sqrt_denman_beavers(&matmul(&s1, &s2, d), d);
        assert!(
            (ours - theirs).abs() < 1e-9 * theirs,
            "d = {d}: {ours} vs {theirs}"
        );
    }
    Ok(())
}

#[test]
fn sample_statistics_of_known_gaussians() -> anyhow::Result<()> {
    let (n, d) = (20_000, 4);
    let mut draws = Draws::new(9);
    let mut sample = |shift: f64| -> Vec<f64> {
        (0..n * d)
            .map(|k| draws.gaussian() * (1.0 + (k % d) as f64) + shift)
            .collect()
    };
    let (x, y, z) = (sample(0.0), sample(0.0), sample(0.5));
    let sx = GaussianStats::from_rows(&x, n, d)?;
    for j in 0..d {
        let var = (1.0 + j as f64).powi(2);
        assert!((sx.cov[j * d + j] - var).abs() < 0.05 * var, "{:?}", sx.cov);
        assert!(sx.mean[j].abs() < 0.05 * (1.0 + j as f64));
    }
    // Two samples of one distribution: about (D + D(D+1)/2) / N from estimation noise alone.
    let same = frechet_distance(&sx, &GaussianStats::from_rows(&y, n, d)?)?;
    assert!(same < 0.02, "{same}");
    // A shift of 0.5 in every coordinate: |mu1 - mu2|^2 = 4 * 0.25 = 1, up to the estimated
    // means' errors: the cross term 2 * 0.5 * (e1 - e2) per coordinate has variance
    // 2 sigma_j^2 / N; within 4 standard deviations.
    let shifted = frechet_distance(&sx, &GaussianStats::from_rows(&z, n, d)?)?;
    let sd = ((0..d).map(|j| 2.0 * (1.0 + j as f64).powi(2)).sum::<f64>() / n as f64).sqrt();
    assert!((shifted - 1.0).abs() < 4.0 * sd, "{shifted} (sd {sd})");
    // The covariance is numpy.cov's: unbiased, N - 1 in the denominator.
    let two = GaussianStats::from_rows(&[0.0, 2.0], 2, 1)?;
    assert_eq!((two.mean[0], two.cov[0]), (1.0, 2.0));
    Ok(())
}

#[test]
fn statistics_round_trip_through_safetensors() -> anyhow::Result<()> {
    let mut draws = Draws::new(2);
    let x: Vec<f64> = (0..50 * 3).map(|_| draws.gaussian()).collect();
    let s = GaussianStats::from_rows(&x, 50, 3)?;
    let path = std::env::temp_dir().join(format!("stats-{}.safetensors", std::process::id()));
    s.save(&path)?;
    assert_eq!(GaussianStats::load(&path)?, s);
    std::fs::write(&path, b"not a safetensors file")?;
    let err = GaussianStats::load(&path).unwrap_err();
    assert!(matches!(err, QualityError::File { .. }), "{err}");
    std::fs::remove_file(&path)?;
    Ok(())
}

/// The unbiased MMD^2 with the cubic kernel, summed directly.
fn direct_mmd(x: &[f64], y: &[f64], d: usize) -> f64 {
    let k = |a: &[f64], b: &[f64]| {
        (a.iter().zip(b).map(|(p, q)| p * q).sum::<f64>() / d as f64 + 1.0).powi(3)
    };
    let rows = |v: &[f64]| v.chunks(d).map(<[f64]>::to_vec).collect::<Vec<_>>();
    let (xs, ys) = (rows(x), rows(y));
    let m = xs.len() as f64;
    let (mut xx, mut yy, mut xy) = (0.0, 0.0, 0.0);
    for i in 0..xs.len() {
        for j in 0..xs.len() {
            if i != j {
                xx += k(&xs[i], &xs[j]);
                yy += k(&ys[i], &ys[j]);
            }
            xy += k(&xs[i], &ys[j]);
        }
    }
    xx / (m * (m - 1.0)) + yy / (m * (m - 1.0)) - 2.0 * xy / (m * m)
}

#[test]
fn kernel_distance_equals_the_direct_sum_and_vanishes_between_samples_of_one_law(
) -> anyhow::Result<()> {
    let mut draws = Draws::new(4);
    let d = 5;
    let mut sample = |n: usize, shift: f64| -> Vec<f64> {
        (0..n * d).map(|_| draws.gaussian() + shift).collect()
    };
    // One subset of every row: the permutation does not matter, the value is the direct sum.
    let (x, y) = (sample(30, 0.0), sample(30, 0.3));
    let one = kernel_distance(&x, &y, d, 1, 30, 0)?;
    assert!((one.mean - direct_mmd(&x, &y, d)).abs() < 1e-10);
    assert_eq!((one.std, one.subsets), (0.0, 1));
    // Unbiased: two samples of one distribution average to 0 within 4 standard errors; a
    // shifted sample is far from 0.
    let (a, b, c) = (sample(2000, 0.0), sample(2000, 0.0), sample(2000, 0.5));
    let same = kernel_distance(&a, &b, d, 50, 200, 1)?;
    assert!(same.mean.abs() < 4.0 * same.std_err, "{same:?}");
    let far = kernel_distance(&a, &c, d, 50, 200, 1)?;
    assert!(far.mean > 20.0 * far.std_err, "{far:?}");
    Ok(())
}

#[test]
fn bad_input_is_refused_with_a_message() {
    let e = GaussianStats::from_rows(&[1.0, 2.0], 1, 2).unwrap_err();
    assert!(e.to_string().contains("at least 2 samples"), "{e}");
    let e = GaussianStats::from_rows(&[1.0, f64::NAN, 0.0, 0.0], 2, 2).unwrap_err();
    assert!(matches!(e, QualityError::NonFinite(_)), "{e}");
    let e = frechet_distance(
        &stats(vec![0.0], vec![1.0]),
        &stats(vec![0.0, 0.0], vec![1.0, 0.0, 0.0, 1.0]),
    )
    .unwrap_err();
    assert!(
        e.to_string().contains("1-dimensional and 2-dimensional"),
        "{e}"
    );
    let e = kernel_distance(&[0.0; 6], &[0.0; 20], 2, 1, 5, 0).unwrap_err();
    assert!(
        e.to_string().contains("needs at least 5 samples, got 3"),
        "{e}"
    );
    let t = candle_core::Tensor::zeros(
        (2, 3, 4),
        candle_core::DType::F32,
        &candle_core::Device::Cpu,
    )
    .unwrap();
    let e = GaussianStats::from_features(&t).unwrap_err();
    assert!(e.to_string().contains("[N, D] matrix"), "{e}");
}
