//! The autoencoders with implicit encoders of FD-SM Sec. 6.3 / Table 6 (Song et al. 2019,
//! Sec. 5.2.2; Shi et al. 2018): an encoder that maps `[x; eps]` (VAE) or `x` (WAE) to a latent
//! code through a dense `tanh` network, so `q(z | x)` has no density; a Bernoulli decoder
//! `z -> logits`; and the score network `s(x, z) ~ grad_z log q(z | x)` (VAE) or
//! `s(z) ~ grad_z log q(z)` (WAE, the aggregated posterior) that supplies the entropy gradient.
//! The MNIST networks of the reference: 784(+eps) -> 256 -> 256 -> z, z -> 256 -> 256 -> 784 and
//! 784(+z) -> 256 -> 256 -> z, all `tanh`.

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

use crate::{DenseNet, MlpActivation};

/// Which autoencoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AutoencoderKind {
    /// Variational autoencoder: stochastic encoder `z = f([x; eps])`, `eps ~ N(0, I)`, and a
    /// score network conditioned on `x`.
    Vae,
    /// Wasserstein autoencoder: deterministic encoder `z = f(x)`, and an unconditional score
    /// network of the aggregated posterior `q(z)`.
    Wae,
}

/// Sizes of an implicit-encoder autoencoder and its score network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImplicitAutoencoderConfig {
    /// Which autoencoder.
    pub kind: AutoencoderKind,
    /// Values per data point (784 for MNIST).
    pub data_dim: usize,
    /// Latent size (reference 32, also 8).
    pub z_dim: usize,
    /// Size of the encoder's noise input (VAE; reference: the latent size).
    pub noise_dim: usize,
    /// Width of the two hidden layers of every network (reference 256).
    pub hidden: usize,
}

impl ImplicitAutoencoderConfig {
    /// The reference's MNIST networks at latent size `z_dim`.
    pub fn mnist(kind: AutoencoderKind, z_dim: usize) -> Self {
        Self {
            kind,
            data_dim: 784,
            z_dim,
            noise_dim: z_dim,
            hidden: 256,
        }
    }

    /// Checks the sizes.
    ///
    /// # Errors
    /// A message naming the zero size.
    pub fn check(&self) -> std::result::Result<(), String> {
        for (name, v) in [
            ("data_dim", self.data_dim),
            ("z_dim", self.z_dim),
            ("hidden", self.hidden),
        ] {
            if v == 0 {
                return Err(format!("the autoencoder's {name} must be >= 1"));
            }
        }
        if self.kind == AutoencoderKind::Vae && self.noise_dim == 0 {
            return Err("the VAE's implicit encoder needs noise_dim >= 1".into());
        }
        Ok(())
    }

    /// Input size of the encoder: `data_dim + noise_dim` (VAE) or `data_dim` (WAE).
    pub fn encoder_input(&self) -> usize {
        match self.kind {
            AutoencoderKind::Vae => self.data_dim + self.noise_dim,
            AutoencoderKind::Wae => self.data_dim,
        }
    }

    /// Input size of the score network: `data_dim + z_dim` (VAE) or `z_dim` (WAE).
    pub fn score_input(&self) -> usize {
        match self.kind {
            AutoencoderKind::Vae => self.data_dim + self.z_dim,
            AutoencoderKind::Wae => self.z_dim,
        }
    }
}

/// Encoder (`encoder.layers.<i>`) and Bernoulli decoder (`decoder.layers.<i>`).
#[derive(Debug, Clone)]
pub struct ImplicitAutoencoder {
    encoder: DenseNet,
    decoder: DenseNet,
    config: ImplicitAutoencoderConfig,
}

fn check_rows(what: &str, t: &Tensor, rows: usize, cols: usize) -> Result<()> {
    if t.dims() != [rows, cols] {
        candle_core::bail!(
            "the {what} must have shape [{rows}, {cols}], got {:?}",
            t.dims()
        )
    }
    Ok(())
}

impl ImplicitAutoencoder {
    /// Builds both networks, creating or loading their weights through `vb`.
    ///
    /// # Errors
    /// Bad sizes, or a `VarBuilder` lacking a weight or holding one of the wrong shape.
    pub fn new(config: &ImplicitAutoencoderConfig, vb: VarBuilder) -> Result<Self> {
        config.check().map_err(candle_core::Error::Msg)?;
        let h = config.hidden;
        let encoder = DenseNet::new(
            &[config.encoder_input(), h, h, config.z_dim],
            MlpActivation::Tanh,
            vb.pp("encoder"),
        )?;
        let decoder = DenseNet::new(
            &[config.z_dim, h, h, config.data_dim],
            MlpActivation::Tanh,
            vb.pp("decoder"),
        )?;
        Ok(Self {
            encoder,
            decoder,
            config: config.clone(),
        })
    }

    /// The configuration it was built with.
    pub fn config(&self) -> &ImplicitAutoencoderConfig {
        &self.config
    }

    /// The latent code `[B, z_dim]` of `x` `[B, data_dim]`: `f([x; eps])` for the VAE, whose
    /// `eps` `[B, noise_dim]` must be given, and `f(x)` for the WAE, which takes none.
    ///
    /// # Errors
    /// Shapes that do not fit, `eps` missing (VAE) or given (WAE).
    pub fn encode(&self, x: &Tensor, eps: Option<&Tensor>) -> Result<Tensor> {
        let b = x.dim(0)?;
        check_rows("data batch", x, b, self.config.data_dim)?;
        match (self.config.kind, eps) {
            (AutoencoderKind::Vae, Some(eps)) => {
                check_rows("encoder noise", eps, b, self.config.noise_dim)?;
                self.encoder.forward(&Tensor::cat(&[x, eps], 1)?)
            }
            (AutoencoderKind::Wae, None) => self.encoder.forward(x),
            (AutoencoderKind::Vae, None) => {
                candle_core::bail!("the VAE's implicit encoder needs its noise input")
            }
            (AutoencoderKind::Wae, Some(_)) => {
                candle_core::bail!("the WAE's encoder is deterministic and takes no noise")
            }
        }
    }

    /// The decoder's Bernoulli logits `[B, data_dim]` at `z` `[B, z_dim]`.
    ///
    /// # Errors
    /// A latent batch of the wrong shape.
    pub fn decode_logits(&self, z: &Tensor) -> Result<Tensor> {
        check_rows("latent batch", z, z.dim(0)?, self.config.z_dim)?;
        self.decoder.forward(z)
    }
}

/// The score network of the encoder's distribution (`score.layers.<i>`): `s(x, z)` on `[x; z]`
/// for the VAE, `s(z)` for the WAE; both `-> 256 -> 256 -> z_dim`.
#[derive(Debug, Clone)]
pub struct LatentScore {
    net: DenseNet,
    config: ImplicitAutoencoderConfig,
}

impl LatentScore {
    /// Builds the network, creating or loading its weights through `vb`.
    ///
    /// # Errors
    /// Bad sizes, or a `VarBuilder` lacking a weight or holding one of the wrong shape.
    pub fn new(config: &ImplicitAutoencoderConfig, vb: VarBuilder) -> Result<Self> {
        config.check().map_err(candle_core::Error::Msg)?;
        let h = config.hidden;
        Ok(Self {
            net: DenseNet::new(
                &[config.score_input(), h, h, config.z_dim],
                MlpActivation::Tanh,
                vb.pp("score"),
            )?,
            config: config.clone(),
        })
    }

    /// The estimated score `[B, z_dim]` at `z` `[B, z_dim]`; `x` `[B, data_dim]` conditions it
    /// for the VAE and must be `None` for the WAE.
    ///
    /// # Errors
    /// Shapes that do not fit, `x` missing (VAE) or given (WAE).
    pub fn score(&self, x: Option<&Tensor>, z: &Tensor) -> Result<Tensor> {
        let b = z.dim(0)?;
        check_rows("latent batch", z, b, self.config.z_dim)?;
        match (self.config.kind, x) {
            (AutoencoderKind::Vae, Some(x)) => {
                check_rows("data batch", x, b, self.config.data_dim)?;
                self.net.forward(&Tensor::cat(&[x, z], 1)?)
            }
            (AutoencoderKind::Wae, None) => self.net.forward(z),
            (AutoencoderKind::Vae, None) => {
                candle_core::bail!("the VAE's score network is conditioned on x; give it")
            }
            (AutoencoderKind::Wae, Some(_)) => candle_core::bail!(
                "the WAE's score network models the aggregated posterior q(z) and takes no x"
            ),
        }
    }
}
