//! The Gaussian fit of a feature set (mean and unbiased covariance, in f64), the form FID
//! compares; saved and loaded as safetensors so that reference statistics are computed once.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use faer::Mat;

use crate::error::{QualityError, Result};

/// A `[N, D]` feature tensor of any float dtype as row-major f64 values with `(N, D)`.
///
/// # Errors
/// [`QualityError::Shape`] for another rank, [`QualityError::NonFinite`] for NaN or infinite
/// features.
pub fn features_matrix(features: &Tensor) -> Result<(Vec<f64>, usize, usize)> {
    let (n, d) = features.dims2().map_err(|_| {
        QualityError::Shape(format!(
            "features must be a [N, D] matrix, got {:?}",
            features.dims()
        ))
    })?;
    let v: Vec<f64> = features.to_dtype(DType::F64)?.flatten_all()?.to_vec1()?;
    if let Some(i) = v.iter().position(|x| !x.is_finite()) {
        return Err(QualityError::NonFinite(format!(
            "the features (sample {}, feature {})",
            i / d.max(1),
            i % d.max(1)
        )));
    }
    Ok((v, n, d))
}

/// A feature matrix cached as safetensors (one `features` tensor): read from `path` unless
/// `fresh` is set or the file is missing or unreadable, else computed by `compute` and written
/// there atomically (a temporary file renamed into place).
///
/// # Errors
/// `compute`'s errors; [`QualityError::File`] when the cache cannot be written.
pub fn cached_features(
    path: &Path,
    fresh: bool,
    compute: impl FnOnce() -> Result<Tensor>,
) -> Result<Tensor> {
    if !fresh {
        if let Some(f) = candle_core::safetensors::load(path, &Device::Cpu)
            .ok()
            .and_then(|t| t.get("features").cloned())
        {
            return Ok(f);
        }
    }
    let features = compute()?;
    let bad = |problem: String| QualityError::File {
        path: path.to_path_buf(),
        problem,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| bad(format!("cannot create its folder: {e}")))?;
    }
    let tmp = path.with_extension("safetensors.partial");
    features
        .save_safetensors("features", &tmp)
        .map_err(|e| bad(format!("cannot be written: {e}")))?;
    std::fs::rename(&tmp, path).map_err(|e| bad(format!("cannot be renamed into place: {e}")))?;
    Ok(features)
}

/// Mean and covariance of `count` feature vectors of dimension `dim`.
#[derive(Debug, Clone, PartialEq)]
pub struct GaussianStats {
    /// Feature dimension `D`.
    pub dim: usize,
    /// Number of samples the statistics are over.
    pub count: usize,
    /// Mean, `D` values.
    pub mean: Vec<f64>,
    /// Covariance with the `N - 1` normalisation (as `numpy.cov`), `D x D` row-major.
    pub cov: Vec<f64>,
}

impl GaussianStats {
    /// The statistics of `n` row-major feature vectors of dimension `d`.
    ///
    /// # Errors
    /// [`QualityError::TooFewSamples`] for fewer than 2 samples (a covariance needs two; an
    /// estimate of rank `D` needs more than `D`), [`QualityError::Shape`] when `x` is not
    /// `n * d` values, [`QualityError::NonFinite`].
    pub fn from_rows(x: &[f64], n: usize, d: usize) -> Result<Self> {
        if x.len() != n * d || d == 0 {
            return Err(QualityError::Shape(format!(
                "{} values are not {n} rows of {d} features",
                x.len()
            )));
        }
        if n < 2 {
            return Err(QualityError::TooFewSamples {
                what: "a covariance",
                needed: 2,
                got: n,
            });
        }
        if x.iter().any(|v| !v.is_finite()) {
            return Err(QualityError::NonFinite("the features".into()));
        }
        let mut mean = vec![0.0; d];
        for row in x.chunks_exact(d) {
            for (m, v) in mean.iter_mut().zip(row) {
                *m += v;
            }
        }
        mean.iter_mut().for_each(|m| *m /= n as f64);
        let centred = Mat::<f64>::from_fn(n, d, |i, j| x[i * d + j] - mean[j]);
        let gram = centred.transpose() * &centred;
        let scale = 1.0 / (n - 1) as f64;
        let mut cov = vec![0.0; d * d];
        for i in 0..d {
            for j in 0..d {
                // Symmetric by construction; averaging the two triangles removes rounding skew.
                cov[i * d + j] = 0.5 * (gram[(i, j)] + gram[(j, i)]) * scale;
            }
        }
        Ok(Self {
            dim: d,
            count: n,
            mean,
            cov,
        })
    }

    /// The statistics of a `[N, D]` feature tensor.
    ///
    /// # Errors
    /// As [`features_matrix`] and [`GaussianStats::from_rows`].
    pub fn from_features(features: &Tensor) -> Result<Self> {
        let (x, n, d) = features_matrix(features)?;
        Self::from_rows(&x, n, d)
    }

    /// Writes the statistics as safetensors (`mean` `[D]`, `cov` `[D, D]`, `count` `[1]`, f64),
    /// atomically: a temporary file renamed over `path`.
    ///
    /// # Errors
    /// [`QualityError::File`] when it cannot be written.
    pub fn save(&self, path: &Path) -> Result<()> {
        let bad = |problem: String| QualityError::File {
            path: path.to_path_buf(),
            problem,
        };
        let cpu = Device::Cpu;
        let tensors: HashMap<String, Tensor> = [
            ("mean", Tensor::from_slice(&self.mean, self.dim, &cpu)?),
            (
                "cov",
                Tensor::from_slice(&self.cov, (self.dim, self.dim), &cpu)?,
            ),
            ("count", Tensor::from_slice(&[self.count as f64], 1, &cpu)?),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| bad(format!("cannot create its folder: {e}")))?;
        }
        let tmp = path.with_extension("safetensors.partial");
        candle_core::safetensors::save(&tensors, &tmp)
            .map_err(|e| bad(format!("cannot be written: {e}")))?;
        std::fs::rename(&tmp, path).map_err(|e| bad(format!("cannot be renamed into place: {e}")))
    }

    /// Reads statistics written by [`GaussianStats::save`].
    ///
    /// # Errors
    /// [`QualityError::File`] for a missing, corrupt or different file.
    pub fn load(path: &Path) -> Result<Self> {
        let bad = |problem: String| QualityError::File {
            path: path.to_path_buf(),
            problem,
        };
        let t = candle_core::safetensors::load(path, &Device::Cpu)
            .map_err(|e| bad(format!("not readable as feature statistics: {e}")))?;
        let get = |k: &str| -> Result<Vec<f64>> {
            t.get(k)
                .ok_or_else(|| bad(format!("no `{k}` tensor: not a statistics file")))?
                .to_dtype(DType::F64)?
                .flatten_all()?
                .to_vec1()
                .map_err(QualityError::from)
        };
        let (mean, cov, count) = (get("mean")?, get("cov")?, get("count")?);
        let dim = mean.len();
        if cov.len() != dim * dim || count.len() != 1 || count[0] < 2.0 {
            return Err(bad(format!(
                "inconsistent statistics: mean of {dim}, covariance of {} values, count {count:?}",
                cov.len()
            )));
        }
        if mean.iter().chain(&cov).any(|v| !v.is_finite()) {
            return Err(QualityError::NonFinite(format!("{}", path.display())));
        }
        Ok(Self {
            dim,
            count: count[0] as usize,
            mean,
            cov,
        })
    }
}
