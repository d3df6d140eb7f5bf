//! The convolutional diagonal-Gaussian posterior `q(h | v)` of the deep EBLVM (BiSM Sec. 5.2,
//! the reference's `Conv3GaussQ`): three 3 x 3 convolutions of stride 2 and padding 1
//! (`C -> 64 -> 128 -> 256` channels, LeakyReLU with slope 0.2 after each) and two dense heads
//! on the flattened `256 (S / 8)^2` features, for the mean and the log standard deviation.
//!
//! The posterior keeps its parameters as plain tensors, so that BiSM can rebuild it from
//! updated values (unrolled lower-level steps) and freeze it (detached copies).

use candle_core::{bail, Module, Result, Tensor, D};
use candle_nn::{Init, VarBuilder};
use layers::{conv2d, Conv2dConfig, Linear};
use serde::{Deserialize, Serialize};
use sm_objectives::NoiseSource;

/// Architecture of [`ConvGaussianPosterior`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConvGaussianPosteriorConfig {
    /// Image channels.
    pub in_channels: usize,
    /// Image height and width (a multiple of 8).
    pub image_size: usize,
    /// Channels of the three convolutions (reference: 64, 128, 256).
    pub channels: [usize; 3],
    /// Size of `h`.
    pub latent: usize,
}

impl ConvGaussianPosteriorConfig {
    /// The reference's network for 32 x 32 grey images, `channels` scaled by `width / 64`
    /// (`width = 64` is the reference).
    pub fn mnist(width: usize, latent: usize) -> Self {
        Self {
            in_channels: 1,
            image_size: 32,
            channels: [width, 2 * width, 4 * width],
            latent,
        }
    }

    /// Values per image after the convolutions.
    pub fn flat_size(&self) -> usize {
        self.channels[2] * (self.image_size / 8).pow(2)
    }

    /// The parameter shapes in [`ConvGaussianPosterior::parameters`] order.
    pub fn parameter_shapes(&self) -> Vec<Vec<usize>> {
        let [c1, c2, c3] = self.channels;
        let flat = self.flat_size();
        vec![
            vec![c1, self.in_channels, 3, 3],
            vec![c1],
            vec![c2, c1, 3, 3],
            vec![c2],
            vec![c3, c2, 3, 3],
            vec![c3],
            vec![self.latent, flat],
            vec![self.latent],
            vec![self.latent, flat],
            vec![self.latent],
        ]
    }

    /// Checks the sizes.
    ///
    /// # Errors
    /// A zero size, or an image size that is not a positive multiple of 8.
    pub fn validate(&self) -> Result<()> {
        if self.in_channels == 0
            || self.latent == 0
            || self.channels.contains(&0)
            || self.image_size == 0
            || self.image_size % 8 != 0
        {
            bail!(
                "the convolutional posterior needs nonzero sizes and an image size that is a \
                 multiple of 8, got {self:?}"
            )
        }
        Ok(())
    }
}

/// The parameter names in [`ConvGaussianPosterior::parameters`] order.
const NAMES: [&str; 10] = [
    "conv1.weight",
    "conv1.bias",
    "conv2.weight",
    "conv2.bias",
    "conv3.weight",
    "conv3.bias",
    "mean.weight",
    "mean.bias",
    "log_std.weight",
    "log_std.bias",
];

/// `q(h | v) = N(mu(v), diag(exp(2 log_std(v))))`.
///
/// Weight names: `conv{1,2,3}.{weight,bias}`, `mean.{weight,bias}`, `log_std.{weight,bias}`.
#[derive(Debug, Clone)]
pub struct ConvGaussianPosterior {
    params: Vec<Tensor>,
    config: ConvGaussianPosteriorConfig,
}

fn leaky_relu(x: &Tensor) -> Result<Tensor> {
    // max(x, 0.2 x), written with `relu` so that its derivatives are Candle's.
    (x.relu()? * 0.8)? + (x * 0.2)?
}

impl ConvGaussianPosterior {
    /// Builds the network, creating or loading its weights through `vb` (PyTorch's default
    /// initialisation, uniform in `+-1/sqrt(fan_in)`).
    ///
    /// # Errors
    /// A bad configuration, or a `VarBuilder` that lacks a weight or holds one of the wrong
    /// shape.
    pub fn new(config: &ConvGaussianPosteriorConfig, vb: VarBuilder) -> Result<Self> {
        config.validate()?;
        let shapes = config.parameter_shapes();
        let params = NAMES
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let weight_shape = &shapes[i - i % 2];
                let fan_in: usize = weight_shape[1..].iter().product();
                let bound = 1.0 / (fan_in.max(1) as f64).sqrt();
                vb.get_with_hints(
                    shapes[i].clone(),
                    name,
                    Init::Uniform {
                        lo: -bound,
                        up: bound,
                    },
                )
            })
            .collect::<Result<_>>()?;
        Self::from_tensors(config, params)
    }

    /// The posterior with the given parameters, in [`ConvGaussianPosterior::parameters`]
    /// order.
    ///
    /// # Errors
    /// A bad configuration, a wrong count or shape.
    pub fn from_tensors(config: &ConvGaussianPosteriorConfig, params: Vec<Tensor>) -> Result<Self> {
        config.validate()?;
        let shapes = config.parameter_shapes();
        if params.len() != shapes.len() {
            bail!(
                "the convolutional posterior has {} parameters, got {}",
                shapes.len(),
                params.len()
            )
        }
        for ((p, shape), name) in params.iter().zip(&shapes).zip(NAMES) {
            if p.dims() != shape.as_slice() {
                bail!(
                    "posterior parameter {name} must have shape {shape:?}, got {:?}",
                    p.dims()
                )
            }
        }
        Ok(Self {
            params,
            config: *config,
        })
    }

    /// The parameter names, in [`ConvGaussianPosterior::parameters`] order.
    pub fn parameter_names() -> [&'static str; 10] {
        NAMES
    }

    /// The parameters: `conv1..3` weight and bias, then the `mean` and `log_std` heads.
    pub fn parameters(&self) -> &[Tensor] {
        &self.params
    }

    /// The same posterior on detached parameters: a constant of the graph.
    pub fn detached(&self) -> Self {
        Self {
            params: self.params.iter().map(Tensor::detach).collect(),
            config: self.config,
        }
    }

    /// The configuration it was built with.
    pub fn config(&self) -> &ConvGaussianPosteriorConfig {
        &self.config
    }

    /// The mean and log standard deviation.
    ///
    /// # Shapes
    /// * `v`: `[B, C, S, S]`
    /// * returns two `[B, latent]`
    ///
    /// # Errors
    /// An input of another shape.
    pub fn moments(&self, v: &Tensor) -> Result<(Tensor, Tensor)> {
        let c = &self.config;
        if v.rank() != 4 || v.dims()[1..] != [c.in_channels, c.image_size, c.image_size] {
            bail!(
                "the convolutional posterior expects [B, {}, {}, {}], got {:?}",
                c.in_channels,
                c.image_size,
                c.image_size,
                v.dims()
            )
        }
        let cfg = Conv2dConfig {
            padding: 1,
            stride: 2,
            ..Conv2dConfig::default()
        };
        let p = &self.params;
        let mut x = v.clone();
        for i in 0..3 {
            x = leaky_relu(&conv2d(&x, &p[2 * i], Some(&p[2 * i + 1]), &cfg)?)?;
        }
        let x = x.flatten_from(1)?;
        let mean = Linear::new(p[6].clone(), Some(p[7].clone())).forward(&x)?;
        let log_std = Linear::new(p[8].clone(), Some(p[9].clone())).forward(&x)?;
        Ok((mean, log_std))
    }

    /// A reparameterised draw `mu + sigma eps`, differentiable in the parameters and `v`.
    ///
    /// # Errors
    /// As [`ConvGaussianPosterior::moments`].
    pub fn sample(&self, v: &Tensor, noise: &mut NoiseSource) -> Result<Tensor> {
        let (mu, ls) = self.moments(v)?;
        let eps = noise.gaussian_like(&mu)?;
        mu + (ls.exp()? * eps)?
    }

    /// `log q(h | v)`, `[B]`.
    ///
    /// # Errors
    /// As [`ConvGaussianPosterior::moments`], and an `h` of another shape than the moments.
    pub fn log_prob(&self, v: &Tensor, h: &Tensor) -> Result<Tensor> {
        let (mu, ls) = self.moments(v)?;
        if h.dims() != mu.dims() {
            bail!("h must have shape {:?}, got {:?}", mu.dims(), h.dims())
        }
        let z = ((h - mu)? * ls.neg()?.exp()?)?;
        let half_log_2pi = 0.5 * (2.0 * std::f64::consts::PI).ln();
        ((z.sqr()? * -0.5)? - ls)?.sum(D::Minus1)? - half_log_2pi * h.dim(D::Minus1)? as f64
    }

    /// `grad_h log q(h | v) = -(h - mu) / sigma^2`, `[B, latent]`, in closed form.
    ///
    /// # Errors
    /// As [`ConvGaussianPosterior::log_prob`].
    pub fn grad_h_log_prob(&self, v: &Tensor, h: &Tensor) -> Result<Tensor> {
        let (mu, ls) = self.moments(v)?;
        if h.dims() != mu.dims() {
            bail!("h must have shape {:?}, got {:?}", mu.dims(), h.dims())
        }
        (mu - h)? * (ls * -2.0)?.exp()?
    }
}
