//! The autoencoders with implicit encoders of FD-SM Sec. 6.3 / Table 6 (Song et al. 2019,
//! Sec. 5.2.2; Shi et al. 2018): an encoder that maps `[x; eps]` (VAE) or `x` (WAE) to a latent
//! code, so `q(z | x)` has no density; a decoder `z -> p(x | z)`; and the score network
//! `s(x, z) ~ grad_z log q(z | x)` (VAE) or `s(z) ~ grad_z log q(z)` (WAE, the aggregated
//! posterior) that supplies the entropy gradient. Two sets of networks, the reference's:
//!
//! - [`ImplicitNetworks::Dense`] (MNIST): 784(+eps) -> 256 -> 256 -> z, z -> 256 -> 256 -> 784
//!   Bernoulli logits, and 784(+z) -> 256 -> 256 -> z, all `tanh`.
//! - [`ImplicitNetworks::Conv`] (CelebA, 64 x 64 RGB): strided convolutions, transposed
//!   convolutions to a Gaussian mean in `[-1, 1]` (see `conv.rs`).

mod conv;

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

use crate::{DenseNet, MlpActivation};
use conv::{ConvDecoder, ConvEncoder, ConvScore};

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

/// The networks' architecture and sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ImplicitNetworks {
    /// Dense `tanh` networks on flat data; the decoder gives Bernoulli logits.
    Dense {
        /// Values per data point (784 for MNIST).
        data_dim: usize,
        /// Width of the two hidden layers of every network (reference 256).
        hidden: usize,
    },
    /// Convolutional networks on square images; the decoder gives a Gaussian mean in
    /// `[-1, 1]`.
    Conv {
        /// Image channels (3).
        channels: usize,
        /// Image side, a multiple of 16 (reference 64).
        image_size: usize,
        /// Channels of the encoder's and score network's first convolution (reference 64).
        nef: usize,
        /// Channels of the decoder's last hidden layer (reference 64).
        ndf: usize,
    },
}

/// Sizes of an implicit-encoder autoencoder and its score network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImplicitAutoencoderConfig {
    /// Which autoencoder.
    pub kind: AutoencoderKind,
    /// Latent size (reference 32, also 8).
    pub z_dim: usize,
    /// Size of the encoder's noise input (VAE; reference: the latent size).
    pub noise_dim: usize,
    /// The networks.
    pub networks: ImplicitNetworks,
}

impl ImplicitAutoencoderConfig {
    /// The reference's MNIST networks at latent size `z_dim`.
    pub fn mnist(kind: AutoencoderKind, z_dim: usize) -> Self {
        Self {
            kind,
            z_dim,
            noise_dim: z_dim,
            networks: ImplicitNetworks::Dense {
                data_dim: 784,
                hidden: 256,
            },
        }
    }

    /// The reference's CelebA networks (64 x 64 RGB, `nef = ndf = 64`) at latent size `z_dim`.
    pub fn celeba(kind: AutoencoderKind, z_dim: usize) -> Self {
        Self {
            kind,
            z_dim,
            noise_dim: z_dim,
            networks: ImplicitNetworks::Conv {
                channels: 3,
                image_size: 64,
                nef: 64,
                ndf: 64,
            },
        }
    }

    /// Checks the sizes.
    ///
    /// # Errors
    /// A message naming the bad size.
    pub fn check(&self) -> std::result::Result<(), String> {
        let sizes: Vec<(&str, usize)> = match self.networks {
            ImplicitNetworks::Dense { data_dim, hidden } => {
                vec![("data_dim", data_dim), ("hidden", hidden)]
            }
            ImplicitNetworks::Conv {
                channels,
                image_size,
                nef,
                ndf,
            } => {
                if image_size % 16 != 0 {
                    return Err(format!(
                        "the convolutional autoencoder's image_size must be a multiple of 16 \
                         (four halvings), got {image_size}"
                    ));
                }
                vec![
                    ("channels", channels),
                    ("image_size", image_size),
                    ("nef", nef),
                    ("ndf", ndf),
                ]
            }
        };
        for (name, v) in sizes.into_iter().chain([("z_dim", self.z_dim)]) {
            if v == 0 {
                return Err(format!("the autoencoder's {name} must be >= 1"));
            }
        }
        if self.kind == AutoencoderKind::Vae && self.noise_dim == 0 {
            return Err("the VAE's implicit encoder needs noise_dim >= 1".into());
        }
        Ok(())
    }

    /// The shape of one data point: `[data_dim]` or `[channels, image_size, image_size]`.
    pub fn data_shape(&self) -> Vec<usize> {
        match self.networks {
            ImplicitNetworks::Dense { data_dim, .. } => vec![data_dim],
            ImplicitNetworks::Conv {
                channels,
                image_size,
                ..
            } => vec![channels, image_size, image_size],
        }
    }

    /// The VAE's noise size, or `None` for the WAE.
    fn encoder_noise(&self) -> Option<usize> {
        (self.kind == AutoencoderKind::Vae).then_some(self.noise_dim)
    }
}

/// An error unless `t` is `[rows, shape...]`.
fn check_shape(what: &str, t: &Tensor, rows: usize, shape: &[usize]) -> Result<()> {
    let want: Vec<usize> = std::iter::once(rows).chain(shape.iter().copied()).collect();
    if t.dims() != want.as_slice() {
        candle_core::bail!("the {what} must have shape {want:?}, got {:?}", t.dims())
    }
    Ok(())
}

#[derive(Debug, Clone)]
enum Encoder {
    Dense(DenseNet),
    Conv(ConvEncoder),
}

#[derive(Debug, Clone)]
enum Decoder {
    Dense(DenseNet),
    Conv(ConvDecoder),
}

/// Encoder (`encoder.*`) and decoder (`decoder.*`).
#[derive(Debug, Clone)]
pub struct ImplicitAutoencoder {
    encoder: Encoder,
    decoder: Decoder,
    config: ImplicitAutoencoderConfig,
}

impl ImplicitAutoencoder {
    /// Builds both networks, creating or loading their weights through `vb`.
    ///
    /// # Errors
    /// Bad sizes, or a `VarBuilder` lacking a weight or holding one of the wrong shape.
    pub fn new(config: &ImplicitAutoencoderConfig, vb: VarBuilder) -> Result<Self> {
        config.check().map_err(candle_core::Error::Msg)?;
        let z = config.z_dim;
        let (encoder, decoder) = match config.networks {
            ImplicitNetworks::Dense { data_dim, hidden } => {
                let input = data_dim + config.encoder_noise().unwrap_or(0);
                (
                    Encoder::Dense(DenseNet::new(
                        &[input, hidden, hidden, z],
                        MlpActivation::Tanh,
                        vb.pp("encoder"),
                    )?),
                    Decoder::Dense(DenseNet::new(
                        &[z, hidden, hidden, data_dim],
                        MlpActivation::Tanh,
                        vb.pp("decoder"),
                    )?),
                )
            }
            ImplicitNetworks::Conv {
                channels,
                image_size,
                nef,
                ndf,
            } => (
                Encoder::Conv(ConvEncoder::new(
                    channels,
                    image_size,
                    nef,
                    config.encoder_noise(),
                    z,
                    vb.pp("encoder"),
                )?),
                Decoder::Conv(ConvDecoder::new(
                    channels,
                    image_size,
                    ndf,
                    z,
                    vb.pp("decoder"),
                )?),
            ),
        };
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

    /// The latent code `[B, z_dim]` of `x` (`[B, ...data_shape]`): `f(x, eps)` for the VAE,
    /// whose `eps` `[B, noise_dim]` must be given, and `f(x)` for the WAE, which takes none.
    ///
    /// # Errors
    /// Shapes that do not fit, `eps` missing (VAE) or given (WAE).
    pub fn encode(&self, x: &Tensor, eps: Option<&Tensor>) -> Result<Tensor> {
        let b = x.dim(0)?;
        check_shape("data batch", x, b, &self.config.data_shape())?;
        match (self.config.kind, eps) {
            (AutoencoderKind::Vae, Some(eps)) => {
                check_shape("encoder noise", eps, b, &[self.config.noise_dim])?
            }
            (AutoencoderKind::Wae, None) => {}
            (AutoencoderKind::Vae, None) => {
                candle_core::bail!("the VAE's implicit encoder needs its noise input")
            }
            (AutoencoderKind::Wae, Some(_)) => {
                candle_core::bail!("the WAE's encoder is deterministic and takes no noise")
            }
        }
        match (&self.encoder, eps) {
            (Encoder::Dense(net), Some(eps)) => net.forward(&Tensor::cat(&[x, eps], 1)?),
            (Encoder::Dense(net), None) => net.forward(x),
            (Encoder::Conv(net), eps) => net.forward(x, eps),
        }
    }

    /// The decoder's output at `z` `[B, z_dim]`, `[B, ...data_shape]`: Bernoulli logits (dense
    /// networks) or the Gaussian mean in `[-1, 1]` (convolutional ones).
    ///
    /// # Errors
    /// A latent batch of the wrong shape.
    pub fn decode(&self, z: &Tensor) -> Result<Tensor> {
        check_shape("latent batch", z, z.dim(0)?, &[self.config.z_dim])?;
        match &self.decoder {
            Decoder::Dense(net) => net.forward(z),
            Decoder::Conv(net) => net.forward(z),
        }
    }
}

#[derive(Debug, Clone)]
enum ScoreNet {
    Dense(DenseNet),
    Conv(ConvScore),
}

/// The score network of the encoder's distribution (`score.*`): `s(x, z)` for the VAE, `s(z)`
/// for the WAE.
#[derive(Debug, Clone)]
pub struct LatentScore {
    net: ScoreNet,
    config: ImplicitAutoencoderConfig,
}

impl LatentScore {
    /// Builds the network, creating or loading its weights through `vb`.
    ///
    /// # Errors
    /// Bad sizes, or a `VarBuilder` lacking a weight or holding one of the wrong shape.
    pub fn new(config: &ImplicitAutoencoderConfig, vb: VarBuilder) -> Result<Self> {
        config.check().map_err(candle_core::Error::Msg)?;
        let z = config.z_dim;
        let conditioned = config.kind == AutoencoderKind::Vae;
        let net = match config.networks {
            ImplicitNetworks::Dense { data_dim, hidden } => {
                let input = if conditioned { data_dim + z } else { z };
                ScoreNet::Dense(DenseNet::new(
                    &[input, hidden, hidden, z],
                    MlpActivation::Tanh,
                    vb.pp("score"),
                )?)
            }
            ImplicitNetworks::Conv {
                channels,
                image_size,
                nef,
                ..
            } => ScoreNet::Conv(ConvScore::new(
                conditioned.then_some(channels),
                image_size,
                nef,
                z,
                vb.pp("score"),
            )?),
        };
        Ok(Self {
            net,
            config: config.clone(),
        })
    }

    /// The estimated score `[B, z_dim]` at `z` `[B, z_dim]`; `x` `[B, ...data_shape]`
    /// conditions it for the VAE and must be `None` for the WAE.
    ///
    /// # Errors
    /// Shapes that do not fit, `x` missing (VAE) or given (WAE).
    pub fn score(&self, x: Option<&Tensor>, z: &Tensor) -> Result<Tensor> {
        let b = z.dim(0)?;
        check_shape("latent batch", z, b, &[self.config.z_dim])?;
        match (self.config.kind, x) {
            (AutoencoderKind::Vae, Some(x)) => {
                check_shape("data batch", x, b, &self.config.data_shape())?
            }
            (AutoencoderKind::Wae, None) => {}
            (AutoencoderKind::Vae, None) => {
                candle_core::bail!("the VAE's score network is conditioned on x; give it")
            }
            (AutoencoderKind::Wae, Some(_)) => candle_core::bail!(
                "the WAE's score network models the aggregated posterior q(z) and takes no x"
            ),
        }
        match (&self.net, x) {
            (ScoreNet::Dense(net), Some(x)) => net.forward(&Tensor::cat(&[x, z], 1)?),
            (ScoreNet::Dense(net), None) => net.forward(z),
            (ScoreNet::Conv(net), x) => net.forward(x, z),
        }
    }
}
