//! `sample-quality`: how close generated samples are to data, measured on features of a fixed
//! network (Heusel et al. 2017, FID; Binkowski et al. 2018, KID), computed in f64.
//!
//! - [`GaussianStats`]: the mean and covariance of a feature set, saved and loaded as
//!   safetensors (reference statistics are computed once and cached).
//! - [`frechet_distance`]: the Fréchet distance between the Gaussian fits of two feature sets,
//!   `|mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr((S1^(1/2) S2 S1^(1/2))^(1/2))`, with the matrix
//!   square roots from symmetric eigendecompositions (`faer`), so the trace is real and stable.
//! - [`kernel_distance`]: the unbiased squared MMD with the cubic polynomial kernel
//!   `(x.y / d + 1)^3` averaged over random subsets, with its standard error.
//! - [`inception`]: InceptionV3 as FID uses it (pytorch-fid's `pt_inception-2015-12-05`
//!   weights read from their `.pth` file), 2048-d pool features.
//! - [`pth`]: PyTorch state dicts in the zip format and in the pre-1.6 stream format.
//! - [`lenet`]: "FID (LeNet features)" for MNIST and Fashion-MNIST: a classifier trained here,
//!   cached with its settings and test accuracy, and its reference statistics.

mod error;
mod frechet;
pub mod inception;
mod kid;
pub mod lenet;
pub mod pth;
mod stats;

pub use error::{QualityError, Result};
pub use frechet::{frechet_distance, trace_sqrt_product};
pub use kid::{kernel_distance, KernelDistance};
pub use stats::{cached_features, features_matrix, GaussianStats};
