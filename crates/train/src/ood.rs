//! Out-of-distribution detection with an unnormalised density: the typicality test of Nalisnick
//! et al. (2019) as FD-SM App. C.3 applies it to energy-based models (Eq. 58, where `log Z`
//! cancels), and the area under the ROC curve that scores a detector (Hendrycks and Gimpel 2017).
//!
//! A batch of `M` test inputs scores `| mean(-log p~(x)) - H |`, where `H` is the mean of
//! `-log p~` over training inputs (the model's entropy up to `log Z`). In-distribution batches
//! score near 0; the AUC treats out-of-distribution batches as the positive class.

use candle_core::{DType, Tensor};
use sm_objectives::LogDensity;

use crate::error::{Result, TrainError};

/// `-log p~(x)` of every image of `images` (`[N, ...]`), evaluated `batch` at a time without a
/// graph, as f64.
///
/// # Errors
/// A zero batch size, an empty set, tensor errors, or a non-finite value (the error names the
/// image).
pub fn neg_log_densities<M: LogDensity + ?Sized>(
    model: &M,
    images: &Tensor,
    batch: usize,
) -> Result<Vec<f64>> {
    if batch == 0 {
        return Err(TrainError::Config(
            "the evaluation batch must be >= 1".into(),
        ));
    }
    let n = images.dim(0)?;
    if n == 0 {
        return Err(TrainError::Config("no images to evaluate".into()));
    }
    let mut out = Vec::with_capacity(n);
    for start in (0..n).step_by(batch) {
        let x = images.narrow(0, start, batch.min(n - start))?.detach();
        let values = model
            .log_density(&x)?
            .detach()
            .to_dtype(DType::F64)?
            .neg()?
            .to_vec1::<f64>()?;
        out.extend(values);
    }
    if let Some(i) = out.iter().position(|v| !v.is_finite()) {
        return Err(TrainError::Config(format!(
            "the model's log-density of image {i} is {}; the model is not usable for detection",
            -out[i]
        )));
    }
    Ok(out)
}

/// The typicality test: the training set's mean `-log p~` (the reference `H` of Eq. 55 up to
/// `log Z`) and the score of a batch of test inputs.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Typicality {
    /// Mean `-log p~` over the training inputs it was fitted on.
    pub reference: f64,
    /// How many training inputs that mean is over.
    pub count: usize,
}

impl Typicality {
    /// Fits the reference on the training inputs' `-log p~` values.
    ///
    /// # Errors
    /// An empty or non-finite set.
    pub fn fit(train_neg_log_p: &[f64]) -> Result<Self> {
        check_values("the training values", train_neg_log_p)?;
        let n = train_neg_log_p.len();
        Ok(Self {
            reference: train_neg_log_p.iter().sum::<f64>() / n as f64,
            count: n,
        })
    }

    /// The typicality scores of consecutive batches of `m` test inputs (Eq. 58):
    /// `| mean over the batch of -log p~ - reference |`, one per complete batch (a last partial
    /// batch is left out, so every score is over exactly `m` inputs).
    ///
    /// # Errors
    /// `m == 0`, fewer than `m` values, or a non-finite value.
    pub fn scores(&self, test_neg_log_p: &[f64], m: usize) -> Result<Vec<f64>> {
        if m == 0 {
            return Err(TrainError::Config(
                "the typicality batch size M must be >= 1".into(),
            ));
        }
        check_values("the test values", test_neg_log_p)?;
        if test_neg_log_p.len() < m {
            return Err(TrainError::Config(format!(
                "{} test values are fewer than one batch of M = {m}",
                test_neg_log_p.len()
            )));
        }
        Ok(test_neg_log_p
            .chunks_exact(m)
            .map(|c| (c.iter().sum::<f64>() / m as f64 - self.reference).abs())
            .collect())
    }
}

fn check_values(what: &str, values: &[f64]) -> Result<()> {
    if values.is_empty() {
        return Err(TrainError::Config(format!("{what} are empty")));
    }
    if let Some(i) = values.iter().position(|v| !v.is_finite()) {
        return Err(TrainError::Config(format!(
            "{what} hold a non-finite value at {i}: {}",
            values[i]
        )));
    }
    Ok(())
}

/// Both classes' scores, checked, tagged (`true` for a positive) and sorted ascending.
fn pooled(negatives: &[f64], positives: &[f64]) -> Result<Vec<(f64, bool)>> {
    check_values("the negative scores", negatives)?;
    check_values("the positive scores", positives)?;
    let mut all: Vec<(f64, bool)> = negatives
        .iter()
        .map(|&s| (s, false))
        .chain(positives.iter().map(|&s| (s, true)))
        .collect();
    all.sort_by(|a, b| a.0.total_cmp(&b.0));
    Ok(all)
}

/// The area under the ROC curve of a detector that flags large scores, with `positives` the
/// scores of the class to detect (out of distribution) and `negatives` the others: the
/// probability that a positive outscores a negative, ties counting one half (the Mann-Whitney
/// statistic, computed from mid-ranks in `O(n log n)`).
///
/// # Errors
/// An empty class or a non-finite score.
pub fn roc_auc(negatives: &[f64], positives: &[f64]) -> Result<f64> {
    let all = pooled(negatives, positives)?;
    // The sum of the positives' mid-ranks (1-based).
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < all.len() {
        let mut j = i;
        while j < all.len() && all[j].0 == all[i].0 {
            j += 1;
        }
        let mid_rank = (i + 1 + j) as f64 / 2.0;
        rank_sum += mid_rank * all[i..j].iter().filter(|e| e.1).count() as f64;
        i = j;
    }
    let (n_neg, n_pos) = (negatives.len() as f64, positives.len() as f64);
    Ok((rank_sum - n_pos * (n_pos + 1.0) / 2.0) / (n_pos * n_neg))
}

/// The ROC curve of the same detector: `(false-positive rate, true-positive rate)` from `(0, 0)`
/// to `(1, 1)` as the threshold falls through every distinct score (tied scores make one
/// diagonal step, so the trapezoid area under the curve is [`roc_auc`]).
///
/// # Errors
/// As [`roc_auc`].
pub fn roc_curve(negatives: &[f64], positives: &[f64]) -> Result<Vec<(f64, f64)>> {
    let mut all = pooled(negatives, positives)?;
    all.reverse();
    let (n_neg, n_pos) = (negatives.len() as f64, positives.len() as f64);
    let (mut fp, mut tp) = (0usize, 0usize);
    let mut curve = vec![(0.0, 0.0)];
    let mut i = 0;
    while i < all.len() {
        let mut j = i;
        while j < all.len() && all[j].0 == all[i].0 {
            if all[j].1 {
                tp += 1;
            } else {
                fp += 1;
            }
            j += 1;
        }
        curve.push((fp as f64 / n_neg, tp as f64 / n_pos));
        i = j;
    }
    Ok(curve)
}
