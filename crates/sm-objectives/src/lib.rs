//! `sm-objectives`: score-matching objectives on Candle tensors, gradient-based and
//! finite-difference, after Pang et al. (2020) "Efficient Learning of Generative Models via
//! Finite-Difference Score Matching" (Secs. 2, 4, App. B.4, C.1-C.2), Song and Kingma (2021)
//! "How to Train Your Energy-Based Models" (Sec. 4) and Bao et al. (2020) "Bi-level Score
//! Matching" (Sec. 2).
//!
//! A model implements [`LogDensity`] (`[B, ...] -> [B]`, e.g. `-E(x)` of an energy model) or
//! [`ScoreModel`] (`[B, ...] -> [B, ...]`, optionally conditioned on a noise level). The
//! objectives are free functions:
//!
//! | objective | gradient-based | finite-difference |
//! | --- | --- | --- |
//! | exact SM (Eq. 1, test loss) | [`sm_exact`] | |
//! | SM from a hand-propagated Hessian diagonal (Approx-BP, CP) | [`sm_from_diagonal`] | |
//! | SSM (Eq. 3 / Eq. 9) | [`ssm`] | [`fd_ssm`] |
//! | SSMVR, log-density (Eq. 11) | [`ssmvr`] | none: [`fd_ssm`] is the FD form of [`ssm`]; for one direction it differs from [`ssmvr`] (they agree only in expectation over `v`) |
//! | SSMVR, score network (Sec. 4) | [`ssmvr_score`] | [`fd_ssmvr`] |
//! | DSM (Eq. 2 / Eq. 10) | [`dsm`], [`sliced_dsm`] (Eq. 43) | [`fd_dsm`] |
//! | multiscale DSM (deep EBMs) | [`mdsm`], [`sliced_mdsm`] | [`fd_mdsm`] |
//! | annealed DSM / SSMVR (NCSN) | [`annealed_dsm`], [`annealed_ssmvr`] | [`annealed_fd_ssmvr`] |
//! | T-th directional derivative | [`autodiff::directional_derivative`] | [`fd_directional_derivative`] |
//!
//! Beside them, two objectives that need neither second derivatives nor the normaliser:
//! noise-contrastive estimation ([`nce`], with a learned `log Z` and any tractable noise) and the
//! kernelized Stein discrepancy ([`ksd`]).
//!
//! # Scaling convention
//! Every training objective is **per dimension**, exactly as the paper writes Eqs. 2, 3, 9, 10
//! and 11: sliced objectives divide by `C_v = E|v|^2` ([`Projection::c_v`]), so for isotropic
//! `v` their expectation is the exact SM loss divided by `D`; DSM divides by `D` and has no
//! `1/2`. Each FD objective estimates exactly the quantity of its gradient-based counterpart,
//! to `O(eps^2)` for the same directions. [`sm_exact`] reports the **total** (no `1/D`), as the
//! reference code's "test SM loss" does. `docs/objectives.md` lists the reference code's
//! scalings and the factor between each.
//!
//! # Higher-order mode
//! The gradient-based objectives need Candle's `CANDLE_GRAD_DO_NOT_DETACH=1`; they check it and
//! fail with an explanation otherwise ([`autodiff::ensure_higher_order`]). The FD objectives
//! need only first-order gradients.
//!
//! # Randomness
//! Noise, directions and noise levels come from a seeded [`NoiseSource`], so a run is
//! reproducible on the CPU, whose Candle RNG cannot be seeded.
//!
//! # Example: FD-SSM against SSM on a Gaussian
//! ```
//! use candle_core::{Device, Tensor};
//! use sm_objectives::{fd_ssm, BatchMode, Directions, NoiseSource, Reduction};
//!
//! # fn main() -> candle_core::Result<()> {
//! // log p(x) = -|x|^2 / 2: score -x, Hessian -I, so SSM with any v is (-|v|^2 + (v.x)^2 / 2) / C_v.
//! let model = |x: &Tensor| -> candle_core::Result<Tensor> { Ok((x.sqr()?.sum(1)? * -0.5)?) };
//! let x = Tensor::new(&[[0.5f64, -1.0, 2.0]], &Device::Cpu)?;
//! let mut noise = NoiseSource::new(0);
//! let proj = noise.projection(&x, Directions::Sphere { radius: 0.1 })?;
//! let loss = fd_ssm(&model, &x, &proj, BatchMode::Concatenated, Reduction::Mean)?.to_scalar::<f64>()?;
//! let v = proj.v.flatten_all()?.to_vec1::<f64>()?;
//! let vx: f64 = v.iter().zip([0.5, -1.0, 2.0]).map(|(a, b)| a * b).sum();
//! let exact = (-0.01 + 0.5 * vx * vx) / 0.01;
//! assert!((loss - exact).abs() < 1e-9); // FD is exact on quadratics
//! # Ok(())
//! # }
//! ```

pub mod autodiff;
mod diagonal;
mod fd;
mod gradient;
pub mod ksd;
mod levels;
mod model;
pub mod nce;
pub mod noise;
mod reduction;
mod validate;

pub use diagonal::sm_from_diagonal;
pub use fd::{
    annealed_fd_ssmvr, fd_directional_derivative, fd_dsm, fd_mdsm, fd_ssm, fd_ssmvr, BatchMode,
};
pub use gradient::{
    annealed_dsm, annealed_ssmvr, dsm, mdsm, sliced_dsm, sliced_mdsm, sm_exact, ssm, ssmvr,
    ssmvr_score, Graph,
};
pub use levels::NoiseLevels;
pub use model::{JointLogDensity, LogDensity, ScoreFn, ScoreModel};
pub use noise::{Directions, NoiseSource, Projection};
pub use reduction::Reduction;
pub use validate::is_non_finite_output;
