//! UCI tabular datasets with the preprocessing of the DKEF and sliced-score-matching code
//! (Wenliang et al. 2019; Song et al. 2019), used by FD-SM Table 1: Red / White Wine Quality
//! (drop `quality`, de-quantise) and Parkinsons telemonitoring (drop `subject#, age, sex`, then
//! greedily drop columns with |corr| > 0.98, leaving D = 15); shuffle, PCA-whiten on the whole
//! set, split off test and validation rows, add fixed N(0, 0.05^2) noise.

use std::path::Path;

use candle_core::{Device, Tensor};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;

use crate::error::{DataError, Result};
use crate::{read_file, registry};

/// A parsed numeric table.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    /// Column names from the header.
    pub columns: Vec<String>,
    /// Rows of equal length.
    pub rows: Vec<Vec<f64>>,
}

/// Parses delimited text with one header line and numeric rows; quotes around header names are
/// removed. Exponents such as `3.38e-005` are accepted.
///
/// # Errors
/// [`DataError::Csv`] for an empty file, a row with the wrong number of fields, or a field that
/// is not a finite number.
pub fn parse_table(text: &str, delimiter: char, path: &Path) -> Result<Table> {
    let csv = |line: usize, problem: String| DataError::Csv {
        path: path.to_path_buf(),
        line,
        problem,
    };
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty());
    let (_, header) = lines
        .next()
        .ok_or_else(|| csv(1, "the file is empty".into()))?;
    let columns: Vec<String> = header
        .split(delimiter)
        .map(|c| c.trim().trim_matches('"').to_string())
        .collect();
    let mut rows = Vec::new();
    for (i, line) in lines {
        let fields: Vec<&str> = line.split(delimiter).collect();
        if fields.len() != columns.len() {
            return Err(csv(
                i + 1,
                format!("expected {} fields, found {}", columns.len(), fields.len()),
            ));
        }
        let row = fields
            .iter()
            .enumerate()
            .map(|(j, f)| match f.trim().parse::<f64>() {
                Ok(v) if v.is_finite() => Ok(v),
                _ => Err(csv(
                    i + 1,
                    format!("field {} ({:?}) is not a finite number", j + 1, f.trim()),
                )),
            })
            .collect::<Result<Vec<f64>>>()?;
        rows.push(row);
    }
    if rows.is_empty() {
        return Err(csv(1, "the file has a header but no data rows".into()));
    }
    Ok(Table { columns, rows })
}

/// Which UCI dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UciDataset {
    /// Wine Quality, red (1599 x 11 after dropping `quality`).
    RedWine,
    /// Wine Quality, white (4898 x 11).
    WhiteWine,
    /// Parkinsons telemonitoring (5875 x 15 after the column removal).
    Parkinsons,
}

/// Options of the DKEF preprocessing.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct UciOptions {
    /// Seed of the de-quantisation noise, the shuffle and the split noise (reference code: 2019;
    /// our generator differs from NumPy's, so the draws differ but the procedure is the same).
    pub seed: u64,
    /// Standard deviation of the fixed Gaussian noise added to every split (reference: 0.05).
    pub noise_std: f64,
}

impl Default for UciOptions {
    fn default() -> Self {
        Self {
            seed: 2019,
            noise_std: 0.05,
        }
    }
}

/// A preprocessed UCI dataset: whitened `f64` tensors `[N, D]`.
#[derive(Debug, Clone)]
pub struct TabularSplits {
    /// Names of the kept columns.
    pub columns: Vec<String>,
    /// Training rows.
    pub train: Tensor,
    /// Validation rows.
    pub validation: Tensor,
    /// Test rows.
    pub test: Tensor,
}

/// Columns of the wine-quality files: 11 physico-chemical features and the quality score.
const WINE_COLUMNS: usize = 12;

/// Loads and preprocesses a UCI dataset from `<data_dir>/wine-quality/` or
/// `<data_dir>/parkinsons-telemonitoring/`.
///
/// # Errors
/// [`DataError::Missing`] when the file is absent, [`DataError::Csv`] for malformed rows or a
/// wrong number of columns.
pub fn load_uci(
    data_dir: &Path,
    which: UciDataset,
    options: UciOptions,
    device: &Device,
) -> Result<TabularSplits> {
    let (ds, name, delim) = match which {
        UciDataset::RedWine => (registry::Dataset::WineQuality, "winequality-red.csv", ';'),
        UciDataset::WhiteWine => (registry::Dataset::WineQuality, "winequality-white.csv", ';'),
        UciDataset::Parkinsons => (registry::Dataset::Parkinsons, "parkinsons_updrs.data", ','),
    };
    let path = registry::require(data_dir, ds, name)?;
    let text = String::from_utf8(read_file(&path)?).map_err(|e| DataError::Csv {
        path: path.clone(),
        line: 0,
        problem: format!("not UTF-8 text: {e}"),
    })?;
    let table = parse_table(&text, delim, &path)?;
    let mut rng = StdRng::seed_from_u64(options.seed);
    let (columns, data) = match which {
        UciDataset::RedWine | UciDataset::WhiteWine => {
            if table.columns.len() != WINE_COLUMNS {
                return Err(DataError::Csv {
                    path,
                    line: 1,
                    problem: format!(
                        "expected the {WINE_COLUMNS} wine-quality columns (11 features and \
                         `quality`) separated by {delim:?}, found {}",
                        table.columns.len()
                    ),
                });
            }
            let d = table.columns.len() - 1;
            let mut data: Vec<Vec<f64>> = table.rows.iter().map(|r| r[..d].to_vec()).collect();
            dequantize(&mut data, &mut rng);
            (table.columns[..d].to_vec(), data)
        }
        UciDataset::Parkinsons => {
            if table.columns.len() < 4 {
                return Err(DataError::Csv {
                    path,
                    line: 1,
                    problem: "expected the 22 Parkinsons columns".into(),
                });
            }
            let data: Vec<Vec<f64>> = table.rows.iter().map(|r| r[3..].to_vec()).collect();
            let keep = drop_correlated(&data, 0.98);
            let columns = keep.iter().map(|&j| table.columns[3 + j].clone()).collect();
            (
                columns,
                data.iter()
                    .map(|r| keep.iter().map(|&j| r[j]).collect())
                    .collect(),
            )
        }
    };
    let splits = preprocess(data, options, &mut rng)?;
    let tensor = |rows: Vec<Vec<f64>>| -> Result<Tensor> {
        let (n, d) = (rows.len(), columns_len(&rows));
        Ok(Tensor::from_vec(
            rows.into_iter().flatten().collect::<Vec<f64>>(),
            (n, d),
            device,
        )?)
    };
    Ok(TabularSplits {
        columns,
        train: tensor(splits.0)?,
        validation: tensor(splits.1)?,
        test: tensor(splits.2)?,
    })
}

fn columns_len(rows: &[Vec<f64>]) -> usize {
    rows.first().map_or(0, Vec::len)
}

/// Adds `U(-delta_j, delta_j)` noise to column `j`, `delta_j` the median gap between its sorted
/// distinct values (the reference code's de-quantisation of the wine scores).
pub fn dequantize(data: &mut [Vec<f64>], rng: &mut StdRng) {
    let d = columns_len(data);
    for j in 0..d {
        let mut values: Vec<f64> = data.iter().map(|r| r[j]).collect();
        values.sort_by(f64::total_cmp);
        values.dedup();
        let mut gaps: Vec<f64> = values.windows(2).map(|w| w[1] - w[0]).collect();
        if gaps.is_empty() {
            continue;
        }
        gaps.sort_by(f64::total_cmp);
        let delta = median_sorted(&gaps);
        for row in data.iter_mut() {
            row[j] += (rng.random::<f64>() * 2.0 - 1.0) * delta;
        }
    }
}

fn median_sorted(v: &[f64]) -> f64 {
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}

/// The indices of the columns kept by the reference code's greedy correlation filter: while some
/// column has |corr| > `threshold` with another, drop the first such column.
pub fn drop_correlated(data: &[Vec<f64>], threshold: f64) -> Vec<usize> {
    let d = columns_len(data);
    let corr = correlation(data);
    let mut keep: Vec<usize> = (0..d).collect();
    loop {
        let offender = keep
            .iter()
            .position(|&i| keep.iter().any(|&j| j != i && corr[i][j].abs() > threshold));
        match offender {
            Some(pos) => {
                keep.remove(pos);
            }
            None => return keep,
        }
    }
}

fn correlation(data: &[Vec<f64>]) -> Vec<Vec<f64>> {
    let cov = covariance(data).1;
    let d = cov.len();
    (0..d)
        .map(|i| {
            (0..d)
                .map(|j| cov[i][j] / (cov[i][i] * cov[j][j]).sqrt())
                .collect()
        })
        .collect()
}

/// Column means and the (population) covariance matrix.
fn covariance(data: &[Vec<f64>]) -> (Vec<f64>, Vec<Vec<f64>>) {
    let (n, d) = (data.len() as f64, columns_len(data));
    let mean: Vec<f64> = (0..d)
        .map(|j| data.iter().map(|r| r[j]).sum::<f64>() / n)
        .collect();
    let mut cov = vec![vec![0.0; d]; d];
    for r in data {
        for i in 0..d {
            for j in i..d {
                cov[i][j] += (r[i] - mean[i]) * (r[j] - mean[j]);
            }
        }
    }
    for i in 0..d {
        for j in i..d {
            cov[i][j] /= n;
            cov[j][i] = cov[i][j];
        }
    }
    (mean, cov)
}

type Splits = (Vec<Vec<f64>>, Vec<Vec<f64>>, Vec<Vec<f64>>);

/// Shuffle, PCA-whiten the whole set, split (test: last `min(1000, N/10)` rows; validation: the
/// last `min(1000, N'/10)` of the rest), then add fixed `N(0, noise_std^2)` noise to every split.
fn preprocess(mut data: Vec<Vec<f64>>, options: UciOptions, rng: &mut StdRng) -> Result<Splits> {
    if !(options.noise_std.is_finite() && options.noise_std >= 0.0) {
        return Err(DataError::InvalidArgument(format!(
            "noise_std must be finite and >= 0, got {}",
            options.noise_std
        )));
    }
    data.shuffle(rng);
    let data = whiten(&data)?;
    let n = data.len();
    let n_test = (n / 10).min(1000);
    let n_val = ((n - n_test) / 10).min(1000);
    if n_test == 0 || n_val == 0 {
        return Err(DataError::InvalidArgument(format!(
            "{n} rows are too few to split off test and validation sets"
        )));
    }
    let mut noisy = data;
    for row in noisy.iter_mut() {
        for v in row.iter_mut() {
            *v += options.noise_std * rng.sample::<f64, _>(StandardNormal);
        }
    }
    let test = noisy.split_off(n - n_test);
    let validation = noisy.split_off(n - n_test - n_val);
    Ok((noisy, validation, test))
}

/// PCA whitening: `(x - mean) V diag(lambda)^-1/2` with `cov = V diag(lambda) V^T`, so the result
/// has zero mean and identity covariance.
///
/// # Errors
/// [`DataError::InvalidArgument`] when the covariance is singular (a constant column).
pub fn whiten(data: &[Vec<f64>]) -> Result<Vec<Vec<f64>>> {
    let (mean, cov) = covariance(data);
    let (values, vectors) = symmetric_eigen(cov);
    // Below D * eps * lambda_max an eigenvalue is roundoff: the data lie in a lower-dimensional
    // subspace (e.g. a constant column). Wine's columns legitimately span nine orders of magnitude.
    let floor = values.len() as f64 * f64::EPSILON * values.iter().cloned().fold(0.0, f64::max);
    if let Some(j) = values.iter().position(|&l| l <= floor) {
        return Err(DataError::InvalidArgument(format!(
            "cannot whiten: the covariance is singular (eigenvalue {} at {j})",
            values[j]
        )));
    }
    let d = mean.len();
    Ok(data
        .iter()
        .map(|r| {
            (0..d)
                .map(|k| {
                    (0..d)
                        .map(|i| (r[i] - mean[i]) * vectors[i][k])
                        .sum::<f64>()
                        / values[k].sqrt()
                })
                .collect()
        })
        .collect())
}

/// Eigen-decomposition of a symmetric matrix by cyclic Jacobi rotations: returns the eigenvalues
/// and the matrix whose columns are the eigenvectors.
pub fn symmetric_eigen(mut a: Vec<Vec<f64>>) -> (Vec<f64>, Vec<Vec<f64>>) {
    let d = a.len();
    let mut v: Vec<Vec<f64>> = (0..d)
        .map(|i| (0..d).map(|j| if i == j { 1.0 } else { 0.0 }).collect())
        .collect();
    for _sweep in 0..100 {
        let off: f64 = (0..d)
            .flat_map(|i| (0..d).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| a[i][j] * a[i][j])
            .sum();
        let scale: f64 = (0..d).map(|i| a[i][i] * a[i][i]).sum();
        if off <= 1e-30 * scale.max(1e-300) {
            break;
        }
        for p in 0..d {
            for q in p + 1..d {
                if a[p][q] == 0.0 {
                    continue;
                }
                let theta = (a[q][q] - a[p][p]) / (2.0 * a[p][q]);
                let t = theta.signum().max(0.0).mul_add(2.0, -1.0)
                    / (theta.abs() + (theta * theta + 1.0).sqrt());
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for k in 0..d {
                    let (akp, akq) = (a[k][p], a[k][q]);
                    a[k][p] = c * akp - s * akq;
                    a[k][q] = s * akp + c * akq;
                }
                for k in 0..d {
                    let (apk, aqk) = (a[p][k], a[q][k]);
                    a[p][k] = c * apk - s * aqk;
                    a[q][k] = s * apk + c * aqk;
                }
                for k in 0..d {
                    let (vkp, vkq) = (v[k][p], v[k][q]);
                    v[k][p] = c * vkp - s * vkq;
                    v[k][q] = s * vkp + c * vkq;
                }
            }
        }
    }
    ((0..d).map(|i| a[i][i]).collect(), v)
}
