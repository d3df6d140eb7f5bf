//! Finite-difference score-matching objectives (FD-SM Sec. 4): FD-SSM (Eq. 9), FD-DSM (Eq. 10)
//! and its multiscale form, FD-SSMVR for score networks, and the general T-th order FD estimate
//! of a directional derivative (Theorem 1), all built from `fd-core` stencils.
//!
//! They need only plain evaluations of the model, so their parameter gradients are ordinary
//! first-order backpropagation: no higher-order mode. Each takes a [`BatchMode`]:
//! [`BatchMode::Concatenated`] runs one forward pass over the concatenated shifted batch (the
//! parallel form of App. C.1), [`BatchMode::PerOffset`] one forward pass per offset (the starred,
//! non-parallel rows of the paper's tables). Directions should be drawn uniformly on the sphere
//! of radius `eps` ([`crate::noise::Directions::Sphere`]), as in the paper.

mod denoising;
mod directional;
mod eval;
mod sliced;

pub use denoising::{fd_dsm, fd_mdsm};
pub use directional::fd_directional_derivative;
pub use fd_core::BatchMode;
pub use sliced::{annealed_fd_ssmvr, fd_ssm, fd_ssmvr};
