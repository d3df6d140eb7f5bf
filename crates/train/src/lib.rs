//! `train`: training, sampling and evaluation for energy-based and score-based models trained
//! by score matching (FD-SM, Pang et al. 2020; "How to Train Your Energy-Based Models", Song
//! and Kingma 2021), for any model and any loss.
//!
//! - [`trainer`]: the training loop: Adam, learning-rate schedules, gradient clipping, a guard
//!   that stops on a non-finite or exploding loss, optional atomic checkpoints with exact
//!   resume, a progress bar. [`TrainOptions::new`] needs only the step count and learning rate.
//! - [`optim`]: Adam (also as a `candle_nn::Optimizer`), the cosine schedule, clipping.
//! - [`checkpoint`]: safetensors checkpoints with the optimiser's named state, written
//!   atomically.
//! - [`langevin`]: annealed Langevin dynamics for energy models.
//! - [`linear_probe`]: multinomial logistic regression on learned features (the accuracy of
//!   an EBLVM's posterior means).
//! - [`mcmc`]: Langevin dynamics (SGLD), Hamiltonian Monte Carlo, a replay buffer of persistent
//!   chains and the maximum-likelihood loss, for MLE, CD and PCD training of any energy model.
//! - [`eval`]: the test score-matching loss, exact or by Hutchinson's estimator.
//! - [`ood`]: out-of-distribution detection by the typicality test, and the ROC-AUC.
//! - [`ais`]: annealed importance sampling with HMC of a latent-variable model's marginal
//!   likelihood (the test NLL of FD-SM Table 6).
//!
//! ```no_run
//! use candle_core::{DType, Device, Tensor};
//! use candle_nn::{VarBuilder, VarMap};
//! use sm_objectives::{fd_ssm, BatchMode, Directions, NoiseSource, Reduction};
//! use train::{step_seed, train, TrainOptions};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let data = Tensor::randn(0f32, 1.0, (512, 2), &Device::Cpu)?;
//! let vm = VarMap::new();
//! let vb = VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu);
//! let net = candle_nn::seq()
//!     .add(candle_nn::linear(2, 64, vb.pp("l1"))?)
//!     .add(candle_nn::Activation::Silu)
//!     .add(candle_nn::linear(64, 1, vb.pp("l2"))?);
//! // log p~(x) = -E(x), one value per sample.
//! let model = |x: &Tensor| candle_core::Module::forward(&net, x)?.squeeze(1)?.neg();
//! let opts = TrainOptions::new(500, 1e-3);
//! train(&vm, &opts, &mut |step| {
//!     let mut noise = NoiseSource::new(step_seed(0, step));
//!     let proj = noise.projection(&data, Directions::Sphere { radius: 0.1 })?;
//!     fd_ssm(&model, &data, &proj, BatchMode::Concatenated, Reduction::Mean)
//! }, &mut |_| Ok(()))?;
//! # Ok(())
//! # }
//! ```

pub mod ais;
pub mod checkpoint;
mod error;
pub mod eval;
pub mod langevin;
pub mod linear_probe;
pub mod mcmc;
pub mod ood;
pub mod optim;
pub mod trainer;

pub use error::{io_err, Result, TrainError};
pub use optim::{Adam, AdamConfig, LrSchedule, RmsPropConfig};
pub use trainer::{named_vars, train, train_with_state, StepRecord, TrainOptions, TrainSummary};

/// The seed of the noise drawn at training step `step`: a pure function of `(seed, step)`, so a
/// resumed run draws exactly the noise it would have drawn (SplitMix64 finaliser).
pub fn step_seed(seed: u64, step: u64) -> u64 {
    let mut z = seed ^ step.wrapping_add(1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
