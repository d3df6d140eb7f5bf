//! `models`: energy models and score networks for fdsm, each a plain struct built by
//! `new(cfg, vb)` from a Candle `VarBuilder` with meaningful weight names, implementing the
//! `LogDensity` / `ScoreModel` traits of `sm-objectives`.
//!
//! * [`ResNetEbm`]: the deep-EBM ResNet with a generalised quadratic head (FD-SM Sec. 6.1,
//!   App. C.2).
//! * [`Dkef`]: the deep kernel exponential family of FD-SM Table 1, with closed-form kernel
//!   weights (exact, sliced and FD forms) and an importance-sampled `log Z`.
//! * [`Grbm`]: the Gaussian RBM of BiSM Sec. 5.1 / VaGES App. F, with exact and AIS `log Z`.
//! * [`BernoulliPosterior`]: its variational posterior `q(h | v)` with relaxed samples.
//! * [`GaussianPosterior`]: a diagonal-Gaussian `q(h | v)` for continuous latent variables.
//! * [`DeepEblvm`]: the deep energy-based latent-variable model of BiSM Sec. 5.2 (ResNet
//!   features coupled additively to a continuous `h`), and [`ConvGaussianPosterior`], its
//!   convolutional diagonal-Gaussian posterior.
//! * [`Mlp`]: a fully connected energy network (the peer benchmark's 784-512-512-1), on the
//!   vector-valued [`DenseNet`].
//! * [`ImplicitAutoencoder`] and [`LatentScore`]: the VAE / WAE with an implicit encoder and
//!   the score network of its entropy gradient (FD-SM Table 6), dense (MNIST) or convolutional
//!   (CelebA).
//! * [`Nice`]: the NICE flow of FD-SM Table 3, with exact `log p`, its inverse, and the
//!   Approx-BP and curvature-propagation Hessian-diagonal estimates.
//! * [`Ncsn`]: the noise-conditional RefineNet score network of NCSN (FD-SM Table 5), with
//!   conditional instance normalisation++ ([`CondInstanceNormPlus`]).
//! * [`LeNet`]: a LeNet-style classifier of 28 x 28 images, the feature network of FID with
//!   LeNet features on the MNIST family.
//!
//! Models use only ops whose higher-order backward is correct in Candle; `tests/forbidden_ops.rs`
//! fails if one of `layers::FORBIDDEN_OPS` appears in this crate.

mod bernoulli_posterior;
mod conv_gaussian_posterior;
mod deep_eblvm;
mod dense_net;
mod dkef;
mod gaussian_posterior;
mod grbm;
mod implicit_autoencoder;
mod lenet;
mod mlp;
mod ncsn;
mod nice;
mod resnet_ebm;

pub use bernoulli_posterior::BernoulliPosterior;
pub use conv_gaussian_posterior::{ConvGaussianPosterior, ConvGaussianPosteriorConfig};
pub use deep_eblvm::{DeepEblvm, DeepEblvmConfig};
pub use dense_net::DenseNet;
pub use dkef::{
    Dkef, DkefConfig, DkefDensity, DkefObjective, KernelDerivatives, KernelTerms, ObjectiveTerms,
    INDUCING, LOG10_LAMBDA,
};
pub use gaussian_posterior::GaussianPosterior;
pub use grbm::{Grbm, GrbmConfig, MAX_EXACT_HIDDEN};
pub use implicit_autoencoder::{
    AutoencoderKind, ImplicitAutoencoder, ImplicitAutoencoderConfig, ImplicitNetworks, LatentScore,
};
pub use lenet::{LeNet, LeNetConfig};
pub use mlp::{Mlp, MlpActivation, MlpConfig};
pub use ncsn::{CondInstanceNormPlus, LevelOneHot, Ncsn, NcsnConfig};
pub use nice::{Nice, NiceConfig, ScoreAndDiagonal};
pub use resnet_ebm::{Activation, ResNetEbm, ResNetEbmConfig, ResNetFeatures};
