//! Noise-contrastive estimation (Gutmann and Hyvarinen 2010; "How to Train Your Energy-Based
//! Models" Sec. 5): an energy model learns to tell data from samples of a tractable noise
//! distribution, with its log-normaliser as a learned parameter. [`NoiseDistribution`] is the
//! noise a user supplies (sampling and exact log-density); [`DiagonalGaussian`] is the usual
//! choice, fitted to the data's moments.

use candle_core::{bail, DType, Device, Result, Tensor};
use layers::softplus;

use crate::{LogDensity, NoiseSource};

/// A tractable noise distribution for NCE: it samples, and evaluates its normalised
/// log-density.
pub trait NoiseDistribution {
    /// `n` samples, `[n, ...]`, from `noise`.
    ///
    /// # Errors
    /// Tensor errors.
    fn sample(&self, n: usize, noise: &mut NoiseSource) -> Result<Tensor>;
    /// The normalised log-density of every row of `x`, `[B]`.
    ///
    /// # Errors
    /// Shape errors.
    fn log_density(&self, x: &Tensor) -> Result<Tensor>;
}

/// `N(mean, diag(std^2))` over `[D]`-vectors.
#[derive(Debug, Clone)]
pub struct DiagonalGaussian {
    /// The mean, length `D`.
    pub mean: Vec<f64>,
    /// The standard deviations, length `D`, all positive.
    pub std: Vec<f64>,
    /// The dtype of the samples.
    pub dtype: DType,
    /// The device of the samples.
    pub device: Device,
}

impl DiagonalGaussian {
    /// The Gaussian with the per-coordinate mean and standard deviation of the rows of `data`,
    /// `[N, D]`, the standard deviations multiplied by `widen` (NCE works best with noise
    /// somewhat wider than the data).
    ///
    /// # Errors
    /// Fewer than two rows, a constant coordinate, a non-positive `widen`.
    pub fn fit(data: &Tensor, widen: f64) -> Result<Self> {
        let (n, _) = data.dims2()?;
        if n < 2 || !(widen.is_finite() && widen > 0.0) {
            bail!("DiagonalGaussian::fit needs >= 2 rows and widen > 0, got {n} rows and widen {widen}")
        }
        let x = data.to_dtype(DType::F64)?;
        let mean = x.mean(0)?;
        let var = (x.broadcast_sub(&mean)?.sqr()?.sum(0)? / (n - 1) as f64)?;
        let std: Vec<f64> = var
            .sqrt()?
            .to_vec1::<f64>()?
            .iter()
            .map(|s| s * widen)
            .collect();
        if std.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
            bail!("DiagonalGaussian::fit: a coordinate of the data is constant or not finite")
        }
        Ok(Self {
            mean: mean.to_vec1::<f64>()?,
            std,
            dtype: data.dtype(),
            device: data.device().clone(),
        })
    }
}

impl NoiseDistribution for DiagonalGaussian {
    fn sample(&self, n: usize, noise: &mut NoiseSource) -> Result<Tensor> {
        let d = self.mean.len();
        let z = noise.gaussian((n, d), DType::F64, &Device::Cpu)?;
        let std = Tensor::new(self.std.as_slice(), &Device::Cpu)?;
        let mean = Tensor::new(self.mean.as_slice(), &Device::Cpu)?;
        z.broadcast_mul(&std)?
            .broadcast_add(&mean)?
            .to_dtype(self.dtype)?
            .to_device(&self.device)
    }

    fn log_density(&self, x: &Tensor) -> Result<Tensor> {
        let d = self.mean.len();
        if x.rank() != 2 || x.dim(1)? != d {
            bail!(
                "DiagonalGaussian over {d} coordinates: x must be [B, {d}], got {:?}",
                x.dims()
            )
        }
        let dev = x.device();
        let std = Tensor::new(self.std.as_slice(), dev)?.to_dtype(x.dtype())?;
        let mean = Tensor::new(self.mean.as_slice(), dev)?.to_dtype(x.dtype())?;
        let log_norm: f64 = self
            .std
            .iter()
            .map(|s| s.ln() + 0.5 * (2.0 * std::f64::consts::PI).ln())
            .sum();
        (x.broadcast_sub(&mean)?.broadcast_div(&std)?.sqr()?.sum(1)? * -0.5)? - log_norm
    }
}

/// Noise-contrastive estimation: with `G(v) = log p~(v) - log_z - log p_n(v) - log nu` (`nu`
/// noise samples per data sample), the loss is
/// `mean softplus(-G(x_data)) + nu mean softplus(G(x_noise))`, the negative log-likelihood of
/// telling data from noise. `log_z` is a learned scalar tensor.
///
/// # Shapes
/// * `x_data`: `[B, D]`, `log_noise_data`: `[B]` (`log p_n` at the data);
///   `x_noise`: `[M, D]`, `log_noise_noise`: `[M]`; `nu = M / B`
///
/// # Errors
/// Shape errors.
pub fn nce_loss<M: LogDensity + ?Sized>(
    model: &M,
    log_z: &Tensor,
    x_data: &Tensor,
    log_noise_data: &Tensor,
    x_noise: &Tensor,
    log_noise_noise: &Tensor,
) -> Result<Tensor> {
    let (b, m) = (x_data.dim(0)?, x_noise.dim(0)?);
    if log_noise_data.dims() != [b] || log_noise_noise.dims() != [m] {
        bail!(
            "noise log-densities must be [{b}] and [{m}], got {:?} and {:?}",
            log_noise_data.dims(),
            log_noise_noise.dims()
        )
    }
    let log_nu = (m as f64 / b as f64).ln();
    let g = |x: &Tensor, ln: &Tensor| -> Result<Tensor> {
        (model.log_density(x)?.broadcast_sub(log_z)? - ln)? - log_nu
    };
    let data_term = softplus(&g(x_data, log_noise_data)?.neg()?)?.mean_all()?;
    let noise_term =
        (softplus(&g(x_noise, log_noise_noise)?)?.mean_all()? * (m as f64 / b as f64))?;
    data_term + noise_term
}

/// [`nce_loss`] with `nu` noise samples per data row drawn from `dist`, whose log-densities
/// it evaluates.
///
/// # Errors
/// `nu` = 0, shape errors.
pub fn nce_loss_with<M: LogDensity + ?Sized, N: NoiseDistribution + ?Sized>(
    model: &M,
    log_z: &Tensor,
    x_data: &Tensor,
    dist: &N,
    nu: usize,
    noise: &mut NoiseSource,
) -> Result<Tensor> {
    if nu == 0 {
        bail!("NCE needs nu >= 1 noise samples per data sample")
    }
    let x_noise = dist.sample(nu * x_data.dim(0)?, noise)?;
    nce_loss(
        model,
        log_z,
        x_data,
        &dist.log_density(x_data)?,
        &x_noise,
        &dist.log_density(&x_noise)?,
    )
}
