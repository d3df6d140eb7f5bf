//! The convolutional networks of the CelebA half of FD-SM Table 6, as Song et al.'s
//! sliced-score-matching code has them (`models/vae.py`, `models/wae.py`) for 64 x 64 RGB
//! images with `nef = ndf = 64`:
//!
//! - encoder: four 5 x 5 convolutions of stride 2 and padding 2 (`C -> nef -> 2nef -> 4nef ->
//!   8nef`, ReLU), a dense layer to 512 (ReLU) and one to the latent size. The VAE's implicit
//!   encoder first maps its noise through a dense layer to one extra image channel (ReLU) and,
//!   as the reference, has no ReLU after its last convolution; the WAE's deterministic encoder
//!   has one.
//! - decoder: a dense layer to `8ndf x 4 x 4`, three transposed convolutions (5 x 5, stride 2,
//!   padding 2, output padding 1, ReLU) and a fourth to `C` channels, then `tanh`: the mean of
//!   the Gaussian likelihood, in `[-1, 1]`.
//! - score network: the code through a dense layer to one image channel (softplus), joined to
//!   the image (VAE) or alone (WAE), the encoder's convolution stack and dense layer with
//!   softplus, and a dense layer to the latent size.

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;
use layers::{
    conv2d_layer, conv_transpose2d_layer, linear, Conv2d, Conv2dConfig, ConvTranspose2d,
    ConvTranspose2dConfig, DenseActivation, Linear,
};

/// The four strided convolutions of the encoder and the score network, `conv.<i>`.
fn conv_stack(c_in: usize, nef: usize, vb: &VarBuilder) -> Result<Vec<Conv2d>> {
    let cfg = Conv2dConfig {
        padding: 2,
        stride: 2,
        ..Conv2dConfig::default()
    };
    let widths = [c_in, nef, 2 * nef, 4 * nef, 8 * nef];
    widths
        .windows(2)
        .enumerate()
        .map(|(i, w)| conv2d_layer(w[0], w[1], 5, cfg, vb.pp(format!("conv.{i}"))))
        .collect()
}

/// Values per image after the stack: `8nef (S / 16)^2`.
fn flat_size(nef: usize, image_size: usize) -> usize {
    8 * nef * (image_size / 16).pow(2)
}

/// One `[B, 1, S, S]` channel from a `[B, K]` input through `fc` and an activation.
fn as_channel(fc: &Linear, v: &Tensor, image_size: usize, softplus: bool) -> Result<Tensor> {
    let h = if softplus {
        fc.forward_activated(v, DenseActivation::Softplus)?
    } else {
        fc.forward(v)?.relu()?
    };
    h.reshape((v.dim(0)?, 1, image_size, image_size))
}

/// The encoder (`encoder.*`): implicit (with its noise channel, VAE) or deterministic (WAE).
#[derive(Debug, Clone)]
pub(super) struct ConvEncoder {
    noise_fc: Option<Linear>,
    conv: Vec<Conv2d>,
    fc: Linear,
    out: Linear,
    image_size: usize,
}

impl ConvEncoder {
    pub(super) fn new(
        channels: usize,
        image_size: usize,
        nef: usize,
        noise_dim: Option<usize>,
        z_dim: usize,
        vb: VarBuilder,
    ) -> Result<Self> {
        let noise_fc = noise_dim
            .map(|e| linear(e, image_size * image_size, vb.pp("noise_fc")))
            .transpose()?;
        let c_in = channels + usize::from(noise_fc.is_some());
        Ok(Self {
            conv: conv_stack(c_in, nef, &vb)?,
            fc: linear(flat_size(nef, image_size), 512, vb.pp("fc"))?,
            out: linear(512, z_dim, vb.pp("out"))?,
            noise_fc,
            image_size,
        })
    }

    /// `[B, K]` codes of `[B, C, S, S]` images; `eps` `[B, noise_dim]` for the implicit one.
    pub(super) fn forward(&self, x: &Tensor, eps: Option<&Tensor>) -> Result<Tensor> {
        let mut h = match (&self.noise_fc, eps) {
            (Some(fc), Some(eps)) => {
                Tensor::cat(&[x, &as_channel(fc, eps, self.image_size, false)?], 1)?
            }
            (None, None) => x.clone(),
            _ => candle_core::bail!("the convolutional encoder's noise input does not fit"),
        };
        let last = self.conv.len() - 1;
        for (i, conv) in self.conv.iter().enumerate() {
            h = conv.forward(&h)?;
            // The reference's implicit encoder has no ReLU after its last convolution.
            if i < last || self.noise_fc.is_none() {
                h = h.relu()?;
            }
        }
        let h = self.fc.forward(&h.flatten_from(1)?)?.relu()?;
        self.out.forward(&h)
    }
}

/// The decoder (`decoder.*`): the Gaussian mean in `[-1, 1]`.
#[derive(Debug, Clone)]
pub(super) struct ConvDecoder {
    fc: Linear,
    deconv: Vec<ConvTranspose2d>,
    ndf: usize,
    side: usize,
}

impl ConvDecoder {
    pub(super) fn new(
        channels: usize,
        image_size: usize,
        ndf: usize,
        z_dim: usize,
        vb: VarBuilder,
    ) -> Result<Self> {
        let side = image_size / 16;
        let cfg = ConvTranspose2dConfig {
            padding: 2,
            stride: 2,
            output_padding: 1,
        };
        let widths = [8 * ndf, 4 * ndf, 2 * ndf, ndf, channels];
        let deconv = widths
            .windows(2)
            .enumerate()
            .map(|(i, w)| conv_transpose2d_layer(w[0], w[1], 5, cfg, vb.pp(format!("deconv.{i}"))))
            .collect::<Result<_>>()?;
        Ok(Self {
            fc: linear(z_dim, 8 * ndf * side * side, vb.pp("fc"))?,
            deconv,
            ndf,
            side,
        })
    }

    /// `[B, C, S, S]` means of `[B, K]` codes.
    pub(super) fn forward(&self, z: &Tensor) -> Result<Tensor> {
        let mut h = self
            .fc
            .forward(z)?
            .reshape((z.dim(0)?, 8 * self.ndf, self.side, self.side))?;
        let last = self.deconv.len() - 1;
        for (i, deconv) in self.deconv.iter().enumerate() {
            h = deconv.forward(&h)?;
            h = if i < last { h.relu()? } else { h.tanh()? };
        }
        Ok(h)
    }
}

/// The score network (`score.*`), conditioned on the image (VAE) or not (WAE).
#[derive(Debug, Clone)]
pub(super) struct ConvScore {
    z_fc: Linear,
    conv: Vec<Conv2d>,
    fc: Linear,
    out: Linear,
    image_size: usize,
}

impl ConvScore {
    pub(super) fn new(
        channels: Option<usize>,
        image_size: usize,
        nef: usize,
        z_dim: usize,
        vb: VarBuilder,
    ) -> Result<Self> {
        Ok(Self {
            z_fc: linear(z_dim, image_size * image_size, vb.pp("z_fc"))?,
            conv: conv_stack(channels.unwrap_or(0) + 1, nef, &vb)?,
            fc: linear(flat_size(nef, image_size), 512, vb.pp("fc"))?,
            out: linear(512, z_dim, vb.pp("out"))?,
            image_size,
        })
    }

    /// `[B, K]` scores at codes `z` `[B, K]`, joined to images `x` `[B, C, S, S]` if given.
    pub(super) fn forward(&self, x: Option<&Tensor>, z: &Tensor) -> Result<Tensor> {
        let zc = as_channel(&self.z_fc, z, self.image_size, true)?;
        let mut h = match x {
            Some(x) => Tensor::cat(&[x, &zc], 1)?,
            None => zc,
        };
        for conv in &self.conv {
            h = layers::softplus(&conv.forward(&h)?)?;
        }
        let h = self
            .fc
            .forward_activated(&h.flatten_from(1)?, DenseActivation::Softplus)?;
        self.out.forward(&h)
    }
}
