//! Gradient-based score-matching objectives on Candle autodiff: exact SM (FD-SM Eq. 1), SSM
//! (Eq. 3), SSMVR (Eq. 11), DSM (Eq. 2), sliced DSM (Eq. 43), multiscale DSM (BiSM Eq. 5, FD-SM
//! App. C.2) and the annealed NCSN forms. All of them differentiate through a gradient and need
//! Candle's higher-order mode (see [`crate::autodiff`]).

mod denoising;
mod sliced;
mod sm;

pub use denoising::{annealed_dsm, dsm, mdsm, sliced_dsm, sliced_mdsm};
pub use sliced::{annealed_ssmvr, ssm, ssmvr, ssmvr_score};
pub use sm::{sm_exact, Graph};

pub(crate) use denoising::check_noise;
pub(crate) use sliced::{check_projection, perturb};
