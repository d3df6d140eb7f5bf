//! `latent`: learning energy-based latent-variable models, after Bao et al. "Bi-level Score
//! Matching" (BiSM) and the VaES / VaGES estimators of the marginal score, on top of `models`
//! (the GRBM and its Bernoulli posterior) and `sm-objectives`.
//!
//! * [`vages`]: VaES and VaGES score estimates (exactly weighted or sampled), whose parameter
//!   gradients include the covariance term of the VaGES decomposition.
//! * [`bism`]: Algorithm 1 of BiSM: lower-level updates of `q`, unrolled differentiable
//!   updates, the BiSM score estimate and BiDSM.
//! * [`ksd`]: the kernelized Stein discrepancy on a (possibly estimated) score, for VaGES-KSD.
//! * [`baselines`]: CD-k, persistent CD and NCE for the GRBM.
//! * [`sampling`]: the joint and conditional densities of an EBLVM as Langevin targets.
//! * [`implicit`]: the losses of the VAE / WAE with implicit encoders (FD-SM Table 6), whose
//!   entropy gradient comes from a score network.

pub mod baselines;
pub mod bism;
pub mod implicit;
pub mod sampling;
/// The kernelized Stein discrepancy, which lives beside the other objectives.
pub use sm_objectives::ksd;
pub mod vages;
