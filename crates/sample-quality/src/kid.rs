//! The kernel inception distance (Binkowski et al. 2018): the unbiased estimate of the squared
//! maximum mean discrepancy with the cubic polynomial kernel `k(x, y) = (x.y / D + 1)^3`,
//! averaged over random subsets of both feature sets, with its spread over the subsets.

use faer::Mat;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::error::{QualityError, Result};

/// The kernel distance over subsets.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KernelDistance {
    /// Mean over subsets of the unbiased squared MMD.
    pub mean: f64,
    /// Standard deviation over subsets (0 for one subset).
    pub std: f64,
    /// Standard error of the mean (`std / sqrt(subsets)`).
    pub std_err: f64,
    /// Subsets averaged.
    pub subsets: usize,
    /// Samples per subset from each set.
    pub subset_size: usize,
}

/// `m` distinct indices of `0..n` (a partial Fisher-Yates shuffle).
fn subset(rng: &mut StdRng, n: usize, m: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..n).collect();
    for i in 0..m {
        idx.swap(i, rng.random_range(i..n));
    }
    idx.truncate(m);
    idx
}

/// The kernel distance between feature sets `x` (`nx` rows) and `y` (`ny` rows) of dimension
/// `d` (row-major f64): `subsets` subsets of `subset_size` rows from each (all rows when
/// `subset_size` is the smaller count and `subsets` is 1), drawn with `seed`.
///
/// # Errors
/// [`QualityError::Shape`] for mismatched sizes, [`QualityError::TooFewSamples`] when a set
/// has fewer rows than `subset_size` or `subset_size < 2`, [`QualityError::NonFinite`].
pub fn kernel_distance(
    x: &[f64],
    y: &[f64],
    d: usize,
    subsets: usize,
    subset_size: usize,
    seed: u64,
) -> Result<KernelDistance> {
    if d == 0 || x.len() % d != 0 || y.len() % d != 0 {
        return Err(QualityError::Shape(format!(
            "{} and {} values are not rows of {d} features",
            x.len(),
            y.len()
        )));
    }
    let (nx, ny) = (x.len() / d, y.len() / d);
    let m = subset_size;
    if m < 2 || nx < m || ny < m {
        return Err(QualityError::TooFewSamples {
            what: "the kernel distance (per subset, from each set)",
            needed: m.max(2),
            got: nx.min(ny),
        });
    }
    if subsets == 0 {
        return Err(QualityError::Shape("at least one subset is needed".into()));
    }
    if x.iter().chain(y).any(|v| !v.is_finite()) {
        return Err(QualityError::NonFinite("the features".into()));
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let kernel = |a: &Mat<f64>, b: &Mat<f64>| -> Mat<f64> {
        let g = a * b.transpose();
        Mat::from_fn(g.nrows(), g.ncols(), |i, j| {
            (g[(i, j)] / d as f64 + 1.0).powi(3)
        })
    };
    let pick =
        |rows: &[usize], src: &[f64]| Mat::from_fn(rows.len(), d, |i, j| src[rows[i] * d + j]);
    let mf = m as f64;
    let mut values = Vec::with_capacity(subsets);
    for _ in 0..subsets {
        let (ix, iy) = (subset(&mut rng, nx, m), subset(&mut rng, ny, m));
        let (a, b) = (pick(&ix, x), pick(&iy, y));
        let (kxx, kyy, kxy) = (kernel(&a, &a), kernel(&b, &b), kernel(&a, &b));
        let off_diagonal = |k: &Mat<f64>| -> f64 {
            let mut s = 0.0;
            for i in 0..m {
                for j in 0..m {
                    if i != j {
                        s += k[(i, j)];
                    }
                }
            }
            s
        };
        let mut cross = 0.0;
        for i in 0..m {
            for j in 0..m {
                cross += kxy[(i, j)];
            }
        }
        values.push(
            (off_diagonal(&kxx) + off_diagonal(&kyy)) / (mf * (mf - 1.0)) - 2.0 * cross / (mf * mf),
        );
    }
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let std = if values.len() > 1 {
        (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
    } else {
        0.0
    };
    Ok(KernelDistance {
        mean,
        std,
        std_err: std / n.sqrt(),
        subsets,
        subset_size: m,
    })
}
