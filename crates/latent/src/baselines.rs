//! Baselines for learning a GRBM (BiSM Sec. 5.1): contrastive divergence CD-k (Hinton 2002) and
//! persistent CD (Tieleman 2008) on the free energy, and noise-contrastive estimation (Gutmann
//! and Hyvarinen 2010) with a learned log-normaliser. DSM and SSM on the exact marginal need no
//! code of their own: [`models::Grbm`] is a `LogDensity` (`-F(v)`), so `sm_objectives::dsm` and
//! `sm_objectives::ssm` apply directly.

use candle_core::{bail, Result, Tensor};
use layers::softplus;
use models::Grbm;
use sm_objectives::{LogDensity, NoiseSource};

/// The contrastive-divergence surrogate `mean F(v_data) - mean F(v_model)` with `v_model`
/// detached: its parameter gradient is the CD estimate of the negative log-likelihood gradient.
///
/// # Errors
/// Shape errors.
pub fn cd_surrogate(model: &Grbm, v_data: &Tensor, v_model: &Tensor) -> Result<Tensor> {
    model.free_energy(v_data)?.mean_all()? - model.free_energy(&v_model.detach())?.mean_all()?
}

/// CD-k: the model samples are `k` Gibbs sweeps started at the data.
///
/// # Errors
/// `k = 0`, shape errors.
pub fn cd_loss(model: &Grbm, v_data: &Tensor, k: usize, noise: &mut NoiseSource) -> Result<Tensor> {
    if k == 0 {
        bail!("CD-k needs k >= 1")
    }
    let v_model = model.gibbs(v_data, k, false, noise)?;
    cd_surrogate(model, v_data, &v_model)
}

/// Persistent CD: `chains` (`[M, D]`, kept by the caller across steps) advance `k` sweeps and
/// serve as the model samples.
///
/// # Errors
/// `k = 0`, shape errors.
pub fn pcd_loss(
    model: &Grbm,
    v_data: &Tensor,
    chains: &mut Tensor,
    k: usize,
    noise: &mut NoiseSource,
) -> Result<Tensor> {
    if k == 0 {
        bail!("PCD needs k >= 1 sweeps per step")
    }
    *chains = model.gibbs(chains, k, false, noise)?;
    cd_surrogate(model, v_data, chains)
}

/// Noise-contrastive estimation: with `G(v) = log p~(v) - log_z - log p_n(v) - log nu` (`nu`
/// noise samples per data sample), the loss is
/// `mean softplus(-G(v_data)) + nu mean softplus(G(v_noise))`, the negative log-likelihood of
/// telling data from noise. `log_z` is a learned scalar tensor.
///
/// # Shapes
/// * `v_data`: `[B, D]`, `log_noise_data`: `[B]` (`log p_n` at the data);
///   `v_noise`: `[M, D]`, `log_noise_noise`: `[M]`; `nu = M / B`
///
/// # Errors
/// Shape errors.
pub fn nce_loss<M: LogDensity + ?Sized>(
    model: &M,
    log_z: &Tensor,
    v_data: &Tensor,
    log_noise_data: &Tensor,
    v_noise: &Tensor,
    log_noise_noise: &Tensor,
) -> Result<Tensor> {
    let (b, m) = (v_data.dim(0)?, v_noise.dim(0)?);
    if log_noise_data.dims() != [b] || log_noise_noise.dims() != [m] {
        bail!(
            "noise log-densities must be [{b}] and [{m}], got {:?} and {:?}",
            log_noise_data.dims(),
            log_noise_noise.dims()
        )
    }
    let log_nu = (m as f64 / b as f64).ln();
    let g = |v: &Tensor, ln: &Tensor| -> Result<Tensor> {
        (model.log_density(v)?.broadcast_sub(log_z)? - ln)? - log_nu
    };
    let data_term = softplus(&g(v_data, log_noise_data)?.neg()?)?.mean_all()?;
    let noise_term =
        (softplus(&g(v_noise, log_noise_noise)?)?.mean_all()? * (m as f64 / b as f64))?;
    data_term + noise_term
}
