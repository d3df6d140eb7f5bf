//! The deep energy-based latent-variable model of BiSM Sec. 5.2 (Bao et al. 2020; also the
//! MNIST model of the VaGES paper): `E(v, h) = g3(g2(g1(v), h))` with
//!
//! - `g1(v) = W1 f(v) + b1`, a linear map to the latent size of the features `f(v)` of the
//!   deep-EBM ResNet trunk ([`ResNetFeatures`]; MNIST: Res12 with `n = 64`, images padded to
//!   32 x 32, ELU, three downsamplings);
//! - `g2(g, h) = [g + h; h]`, an additive coupling that ties the latent variable to the features;
//! - `g3(u) = sum_k ELU(W3 u + b3)_k^2`, one dense layer of `(S / 8)^2 4n` units (4096 for
//!   MNIST) squared and summed.
//!
//! The latent `h` is continuous. As a [`JointLogDensity`] it returns `log p~(v, h) = -E(v, h)`.

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;
use layers::{linear, DenseActivation, Linear};
use serde::{Deserialize, Serialize};
use sm_objectives::JointLogDensity;

use crate::resnet_ebm::{ResNetEbmConfig, ResNetFeatures};

/// Architecture of [`DeepEblvm`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeepEblvmConfig {
    /// The feature extractor `f` (its head is not built).
    pub features: ResNetEbmConfig,
    /// Size of the latent variable `h` (BiSM: 20, 50 or 100; default 50).
    pub latent: usize,
    /// Units of the squared dense layer `g3` (reference: `(S / 8)^2 4n`).
    pub head_units: usize,
}

impl DeepEblvmConfig {
    /// The reference's MNIST model at width `n` (reference: 64): Res12 features of 32 x 32
    /// images, `(32 / 8)^2 4n` head units.
    pub fn mnist(width: usize, latent: usize) -> Self {
        let features = ResNetEbmConfig::res12(width);
        let f = features.feature_size();
        Self {
            head_units: f * f * 4 * width,
            features,
            latent,
        }
    }

    /// Checks the sizes.
    ///
    /// # Errors
    /// A zero latent size or head width (the trunk checks its own).
    pub fn validate(&self) -> Result<()> {
        if self.latent == 0 || self.head_units == 0 {
            candle_core::bail!(
                "the deep EBLVM needs latent >= 1 and head_units >= 1, got {} and {}",
                self.latent,
                self.head_units
            )
        }
        Ok(())
    }
}

/// The deep EBLVM energy.
///
/// Weight names: `features.*` (the [`ResNetFeatures`] names), `to_latent`, `head`.
#[derive(Debug, Clone)]
pub struct DeepEblvm {
    features: ResNetFeatures,
    to_latent: Linear,
    head: Linear,
    config: DeepEblvmConfig,
}

impl DeepEblvm {
    /// Builds the network, creating or loading its weights through `vb`.
    ///
    /// # Errors
    /// A bad configuration, or a `VarBuilder` that lacks a weight or holds one of the wrong
    /// shape.
    pub fn new(config: &DeepEblvmConfig, vb: VarBuilder) -> Result<Self> {
        config.validate()?;
        let features = ResNetFeatures::new(&config.features, vb.pp("features"))?;
        let to_latent = linear(features.output_size(), config.latent, vb.pp("to_latent"))?;
        let head = linear(2 * config.latent, config.head_units, vb.pp("head"))?;
        Ok(Self {
            features,
            to_latent,
            head,
            config: config.clone(),
        })
    }

    /// The configuration it was built with.
    pub fn config(&self) -> &DeepEblvmConfig {
        &self.config
    }

    /// `g1(v)`, the visible variable's features at the latent size.
    ///
    /// # Shapes
    /// * `v`: `[B, C, S, S]`
    /// * returns `[B, latent]`
    ///
    /// # Errors
    /// An input of another shape.
    pub fn visible_features(&self, v: &Tensor) -> Result<Tensor> {
        self.to_latent.forward(&self.features.forward(v)?)
    }

    /// `E` from precomputed features `g = g1(v)`: `sum_k ELU(W3 [g + h; h] + b3)_k^2`. With
    /// `v` held fixed (the lower level of BiSM, Langevin steps in `h`) the trunk runs once.
    ///
    /// # Shapes
    /// * `g`, `h`: `[B, latent]`
    /// * returns `[B]`
    ///
    /// # Errors
    /// Shapes that do not match.
    pub fn energy_from_features(&self, g: &Tensor, h: &Tensor) -> Result<Tensor> {
        let latent = self.config.latent;
        if g.rank() != 2 || g.dims() != h.dims() || g.dim(1)? != latent {
            candle_core::bail!(
                "the deep EBLVM needs features and latent values of shape [B, {latent}], got \
                 {:?} and {:?}",
                g.dims(),
                h.dims()
            )
        }
        let coupled = Tensor::cat(&[(g + h)?, h.clone()], 1)?;
        self.head
            .forward_activated(&coupled, DenseActivation::Elu)?
            .sqr()?
            .sum(1)
    }

    /// `E(v, h)`.
    ///
    /// # Shapes
    /// * `v`: `[B, C, S, S]`; `h`: `[B, latent]`
    /// * returns `[B]`
    ///
    /// # Errors
    /// Shapes that do not match.
    pub fn energy(&self, v: &Tensor, h: &Tensor) -> Result<Tensor> {
        if h.rank() != 2 || v.rank() == 0 || h.dim(0)? != v.dim(0)? {
            candle_core::bail!(
                "the deep EBLVM needs v [B, C, S, S] and h [B, {}], got {:?} and {:?}",
                self.config.latent,
                v.dims(),
                h.dims()
            )
        }
        self.energy_from_features(&self.visible_features(v)?, h)
    }
}

impl JointLogDensity for DeepEblvm {
    fn joint_log_density(&self, v: &Tensor, h: &Tensor) -> Result<Tensor> {
        self.energy(v, h)?.neg()
    }
}
