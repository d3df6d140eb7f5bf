//! A fully connected energy network: `E(x) = W_L s(... s(W_1 x + b_1) ...) + b_L` with a smooth
//! activation `s`, one energy per sample. The small dense network of the peer benchmark
//! (784-512-512-1, softplus) and the building block of the dense models of the papers' second
//! half (NICE's coupling nets, DKEF's feature nets, the VAE/WAE score networks).

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};
use sm_objectives::LogDensity;

use crate::DenseNet;

/// The hidden-layer nonlinearity of an [`Mlp`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MlpActivation {
    /// `log(1 + e^z)` (the peer benchmark's, NICE's).
    Softplus,
    /// ELU with `alpha = 1`.
    Elu,
    /// `tanh` (the implicit-encoder autoencoders of FD-SM Table 6).
    Tanh,
}

impl MlpActivation {
    /// The same activation as the fused dense layer of `layers` applies it.
    pub fn dense(self) -> layers::DenseActivation {
        match self {
            MlpActivation::Softplus => layers::DenseActivation::Softplus,
            MlpActivation::Elu => layers::DenseActivation::Elu,
            MlpActivation::Tanh => layers::DenseActivation::Tanh,
        }
    }
}

/// Architecture of an [`Mlp`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MlpConfig {
    /// Layer widths from the input to the output, e.g. `[784, 512, 512, 1]`.
    pub sizes: Vec<usize>,
    /// Hidden-layer nonlinearity (none after the last layer).
    pub activation: MlpActivation,
}

impl MlpConfig {
    /// The peer benchmark's network: 784-512-512-1 with softplus.
    pub fn peer() -> Self {
        Self {
            sizes: vec![784, 512, 512, 1],
            activation: MlpActivation::Softplus,
        }
    }

    /// Checks the sizes: at least an input and an output, all `>= 1`, ending in one output (the
    /// energy).
    ///
    /// # Errors
    /// A message naming the sizes.
    pub fn check(&self) -> std::result::Result<(), String> {
        if self.sizes.len() < 2 || self.sizes.contains(&0) {
            return Err(format!(
                "an MLP needs at least an input and an output size, all >= 1, got {:?}",
                self.sizes
            ));
        }
        if self.sizes.last() != Some(&1) {
            return Err(format!(
                "an energy MLP ends in one output (the energy), got sizes {:?}",
                self.sizes
            ));
        }
        Ok(())
    }

    /// Trainable parameters: `sum (in + 1) out` over the layers (saturating).
    pub fn parameter_count(&self) -> u64 {
        self.sizes
            .windows(2)
            .map(|w| (w[0] as u64 + 1).saturating_mul(w[1] as u64))
            .fold(0u64, u64::saturating_add)
    }

    /// Multiply-accumulates of one forward pass of one sample: `sum in out`.
    pub fn forward_macs_per_sample(&self) -> u64 {
        self.sizes.windows(2).map(|w| (w[0] * w[1]) as u64).sum()
    }
}

/// A fully connected energy network; `log p~(x) = -E(x)` with `E` its scalar output. Weights
/// `layers.<i>.weight` `[out, in]` and `layers.<i>.bias` `[out]`, initialised as PyTorch does
/// (`U(+-1/sqrt(in))`).
#[derive(Debug, Clone)]
pub struct Mlp {
    net: DenseNet,
    config: MlpConfig,
}

impl Mlp {
    /// Builds the network, creating or loading its weights through `vb`.
    ///
    /// # Errors
    /// Fewer than two sizes, a zero size, an output that is not one energy, or a `VarBuilder`
    /// lacking a weight or holding one of the wrong shape.
    pub fn new(config: &MlpConfig, vb: VarBuilder) -> Result<Self> {
        config.check().map_err(candle_core::Error::Msg)?;
        Ok(Self {
            net: DenseNet::new(&config.sizes, config.activation, vb)?,
            config: config.clone(),
        })
    }

    /// The configuration it was built with.
    pub fn config(&self) -> &MlpConfig {
        &self.config
    }

    /// `E(x)`, `[B]`, for `x` of shape `[B, sizes[0]]` (or `[B, ...]` with that many values per
    /// sample, flattened).
    ///
    /// # Errors
    /// An input whose samples do not hold `sizes[0]` values.
    pub fn energy(&self, x: &Tensor) -> Result<Tensor> {
        self.net.forward(x)?.squeeze(1)
    }
}

impl LogDensity for Mlp {
    fn log_density(&self, x: &Tensor) -> Result<Tensor> {
        self.energy(x)?.neg()
    }
}
