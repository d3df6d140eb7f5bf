//! Baselines for learning a GRBM (BiSM Sec. 5.1): contrastive divergence CD-k (Hinton 2002) and
//! persistent CD (Tieleman 2008) on the free energy, and noise-contrastive estimation (Gutmann
//! and Hyvarinen 2010) with a learned log-normaliser. DSM and SSM on the exact marginal need no
//! code of their own: [`models::Grbm`] is a `LogDensity` (`-F(v)`), so `sm_objectives::dsm` and
//! `sm_objectives::ssm` apply directly.

use candle_core::{bail, Result, Tensor};
use models::Grbm;
use sm_objectives::NoiseSource;

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

pub use sm_objectives::nce::nce_loss;
