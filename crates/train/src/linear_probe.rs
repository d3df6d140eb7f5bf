//! A linear probe of learned features: multinomial logistic regression with an L2 penalty,
//! fitted full-batch by Adam on standardised features. BiSM App. C.2 measures the posterior
//! means of the deep EBLVM this way (the reference uses a linear SVM or a logistic regression
//! on the features of the training split and reports the accuracy on the test split).
//!
//! The objective `1/N sum_n [logsumexp(z_n) - z_{n,y_n}] + l2/2 |W|^2`, `z = x W + b`, is
//! convex, so the fit is checked by its gradient norm at the end.

use candle_core::{DType, Device, Result as CResult, Tensor, Var, D};

use crate::optim::{Adam, AdamConfig};
use crate::{Result, TrainError};

/// How the probe is fitted.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LinearProbeSettings {
    /// Full-batch Adam steps.
    pub steps: usize,
    /// Adam's learning rate.
    pub lr: f64,
    /// L2 penalty on the weights (not the biases).
    pub l2: f64,
}

impl Default for LinearProbeSettings {
    fn default() -> Self {
        Self {
            steps: 500,
            lr: 0.05,
            l2: 1e-4,
        }
    }
}

/// A fitted probe.
#[derive(Debug, Clone)]
pub struct LinearProbe {
    mean: Tensor,
    scale: Tensor,
    weight: Tensor,
    bias: Tensor,
    /// The objective's gradient norm after the last step (near zero at the optimum).
    pub final_gradient_norm: f64,
    /// The training objective after the last step.
    pub final_objective: f64,
}

/// The probe's objective at `(weight [F, K], bias [K])` on standardised features `x`
/// (`[N, F]`) and one-hot labels (`[N, K]`): mean cross-entropy plus `l2/2 |W|^2`.
///
/// # Errors
/// Shape errors.
pub fn softmax_regression_objective(
    weight: &Tensor,
    bias: &Tensor,
    x: &Tensor,
    one_hot: &Tensor,
    l2: f64,
) -> CResult<Tensor> {
    let z = x.matmul(weight)?.broadcast_add(bias)?;
    let m = z.max_keepdim(D::Minus1)?.detach();
    let lse = (z.broadcast_sub(&m)?.exp()?.sum_keepdim(D::Minus1)?.log()? + m)?;
    let picked = (&z * one_hot)?.sum_keepdim(D::Minus1)?;
    let ce = (lse - picked)?.mean_all()?;
    ce + (weight.sqr()?.sum_all()? * (0.5 * l2))?
}

fn check_features(x: &Tensor, what: &str) -> Result<(usize, usize)> {
    let (n, f) = x
        .dims2()
        .map_err(|_| TrainError::Config(format!("{what} must be [N, F], got {:?}", x.dims())))?;
    let values: Vec<f64> = x.to_dtype(DType::F64)?.flatten_all()?.to_vec1()?;
    if let Some(i) = values.iter().position(|v| !v.is_finite()) {
        return Err(TrainError::Config(format!(
            "{what} holds a non-finite value (row {}, column {})",
            i / f.max(1),
            i % f.max(1)
        )));
    }
    Ok((n, f))
}

fn check_labels(labels: &[u32], n: usize, classes: usize, what: &str) -> Result<()> {
    if labels.len() != n {
        return Err(TrainError::Config(format!(
            "{what}: {n} feature rows but {} labels",
            labels.len()
        )));
    }
    if let Some(l) = labels.iter().find(|&&l| l as usize >= classes) {
        return Err(TrainError::Config(format!(
            "{what}: label {l} is not below the class count {classes}"
        )));
    }
    Ok(())
}

fn one_hot(labels: &[u32], classes: usize, device: &Device) -> CResult<Tensor> {
    let mut data = vec![0f64; labels.len() * classes];
    for (i, &l) in labels.iter().enumerate() {
        data[i * classes + l as usize] = 1.0;
    }
    Tensor::from_vec(data, (labels.len(), classes), device)
}

impl LinearProbe {
    /// Fits the probe on features `x` (`[N, F]`, any float type) with labels in
    /// `0..classes`. Features are standardised by their training mean and standard deviation
    /// (a constant column is left centred). Deterministic: the weights start at zero.
    ///
    /// # Errors
    /// [`TrainError::Config`] for mismatched lengths, a label out of range, a non-finite
    /// feature, fewer than two classes or bad settings.
    pub fn fit(
        x: &Tensor,
        labels: &[u32],
        classes: usize,
        settings: &LinearProbeSettings,
    ) -> Result<Self> {
        if classes < 2 {
            return Err(TrainError::Config(format!(
                "a linear probe needs at least two classes, got {classes}"
            )));
        }
        if settings.steps == 0
            || !(settings.lr.is_finite() && settings.lr > 0.0)
            || !(settings.l2.is_finite() && settings.l2 >= 0.0)
        {
            return Err(TrainError::Config(format!(
                "linear probe settings need steps >= 1, lr > 0 and l2 >= 0, got {settings:?}"
            )));
        }
        let (n, f) = check_features(x, "probe features")?;
        if n == 0 {
            return Err(TrainError::Config(
                "no training features for the probe".into(),
            ));
        }
        check_labels(labels, n, classes, "probe training set")?;
        let device = x.device();
        let x = x.to_dtype(DType::F64)?;
        let mean = x.mean_keepdim(0)?;
        let centred = x.broadcast_sub(&mean)?;
        let std = centred.sqr()?.mean_keepdim(0)?.sqrt()?;
        // A constant column has zero spread; dividing it by 1 keeps it at zero.
        let scale = (std.clone() + std.eq(0.0)?.to_dtype(DType::F64)?)?;
        let xs = centred.broadcast_div(&scale)?;
        let targets = one_hot(labels, classes, device)?;
        let weight = Var::zeros((f, classes), DType::F64, device)?;
        let bias = Var::zeros(classes, DType::F64, device)?;
        let mut adam = Adam::new(
            vec![weight.clone(), bias.clone()],
            AdamConfig {
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
            },
        )?;
        let objective = || {
            softmax_regression_objective(
                weight.as_tensor(),
                bias.as_tensor(),
                &xs,
                &targets,
                settings.l2,
            )
        };
        for _ in 0..settings.steps {
            adam.step_with_lr(&objective()?.backward()?, settings.lr)?;
        }
        let loss = objective()?;
        let grads = loss.backward()?;
        let mut sq = 0.0;
        for v in [&weight, &bias] {
            if let Some(g) = grads.get(v.as_tensor()) {
                sq += g.sqr()?.sum_all()?.to_scalar::<f64>()?;
            }
        }
        Ok(Self {
            mean,
            scale,
            weight: weight.as_tensor().detach(),
            bias: bias.as_tensor().detach(),
            final_gradient_norm: sq.sqrt(),
            final_objective: loss.to_scalar::<f64>()?,
        })
    }

    /// The predicted class of every row of `x` (`[N, F]`).
    ///
    /// # Errors
    /// Features of another width, non-finite features.
    pub fn predict(&self, x: &Tensor) -> Result<Vec<u32>> {
        let (_, f) = check_features(x, "features to classify")?;
        if f != self.weight.dim(0)? {
            return Err(TrainError::Config(format!(
                "the probe was fitted on {} features, got {f}",
                self.weight.dim(0)?
            )));
        }
        let xs = x
            .to_dtype(DType::F64)?
            .broadcast_sub(&self.mean)?
            .broadcast_div(&self.scale)?;
        let z = xs.matmul(&self.weight)?.broadcast_add(&self.bias)?;
        Ok(z.argmax(D::Minus1)?.to_vec1::<u32>()?)
    }

    /// The fraction of rows of `x` whose predicted class is their label.
    ///
    /// # Errors
    /// As [`LinearProbe::predict`], and labels that do not match the rows or the fitted classes.
    pub fn accuracy(&self, x: &Tensor, labels: &[u32]) -> Result<f64> {
        let predicted = self.predict(x)?;
        check_labels(
            labels,
            predicted.len(),
            self.weight.dim(1)?,
            "probe test set",
        )?;
        if labels.is_empty() {
            return Err(TrainError::Config("no test features for the probe".into()));
        }
        let right = predicted.iter().zip(labels).filter(|(p, l)| p == l).count();
        Ok(right as f64 / labels.len() as f64)
    }
}
