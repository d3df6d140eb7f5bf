//! The noise-conditional score network of NCSN (Song and Ermon 2019), the score model of FD-SM
//! Sec. 6.4 / Table 5: the reference's `CondRefineNetDilated`. Input mapped to `2x - 1`; a 3x3
//! stem; four stages of two conditional residual blocks (`ngf`, `2ngf` halving the resolution
//! by a convolution and mean pooling, then `2ngf` with dilation 2 and `2ngf` with dilation 4,
//! which keep it); four RefineBlocks from the coarsest stage back up (`2ngf`, `2ngf`, `ngf`,
//! `ngf` features); conditional instance normalisation++, ELU and a 3x3 convolution to the
//! image's channels. The output is the score `s(x, sigma_i)`, the shape of `x`.
//!
//! Every op is correct at every derivative order (annealed SSMVR differentiates the score's
//! Jacobian-vector product): the convolutions, pooling and bilinear upsampling are the
//! `layers` crate's, the noise level selects its normalisation rows by a one-hot product.
//! Weights: `begin_conv`, `res<k>.<j>.{norm1,conv1,norm2,conv2,shortcut}`,
//! `refine<k>.{adapt<i>,msf,crp,output}...`, `normalizer`, `end_conv`.

mod blocks;
mod cond_norm;

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;
use layers::{conv2d_layer, Conv2d, Conv2dConfig};
use serde::{Deserialize, Serialize};
use sm_objectives::ScoreModel;

use blocks::{CondRefineBlock, CondResBlock, Resample};
pub use cond_norm::{CondInstanceNormPlus, LevelOneHot};

/// Sizes of the score network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct NcsnConfig {
    /// Image channels (1 for MNIST, 3 for CIFAR-10).
    pub channels: usize,
    /// Image side (even: the second stage halves it).
    pub image_size: usize,
    /// Channels of the first stage (reference 64 on MNIST, 128 on CIFAR-10; at least 2).
    pub ngf: usize,
    /// Noise levels the network is conditioned on (reference 10).
    pub levels: usize,
}

impl NcsnConfig {
    /// The reference's MNIST network: 1 x 28 x 28, `ngf` 64, 10 levels.
    pub fn mnist() -> Self {
        Self {
            channels: 1,
            image_size: 28,
            ngf: 64,
            levels: 10,
        }
    }

    /// The reference's CIFAR-10 network: 3 x 32 x 32, `ngf` 128, 10 levels.
    pub fn cifar10() -> Self {
        Self {
            channels: 3,
            image_size: 32,
            ngf: 128,
            levels: 10,
        }
    }

    /// Checks the sizes.
    ///
    /// # Errors
    /// A message naming the bad size.
    pub fn check(&self) -> std::result::Result<(), String> {
        if self.channels == 0 || self.levels == 0 {
            return Err(format!(
                "NCSN needs channels >= 1 and levels >= 1, got {} and {}",
                self.channels, self.levels
            ));
        }
        if self.ngf < 2 {
            return Err(format!(
                "NCSN's ngf must be >= 2 (its normalisation spreads channel means), got {}",
                self.ngf
            ));
        }
        if self.image_size < 2 || self.image_size % 2 != 0 {
            return Err(format!(
                "NCSN's image side must be even (its second stage halves it), got {}",
                self.image_size
            ));
        }
        Ok(())
    }
}

/// The conditional RefineNet score network.
#[derive(Debug, Clone)]
pub struct Ncsn {
    begin_conv: Conv2d,
    stages: [[CondResBlock; 2]; 4],
    refine: [CondRefineBlock; 4],
    normalizer: CondInstanceNormPlus,
    end_conv: Conv2d,
    config: NcsnConfig,
}

impl Ncsn {
    /// Builds the network, creating or loading its weights through `vb` (PyTorch's default
    /// initialisation for the convolutions, `N(1, 0.02)` for the normalisations' scales).
    ///
    /// # Errors
    /// Bad sizes; a `VarBuilder` lacking a weight or holding one of the wrong shape.
    pub fn new(config: &NcsnConfig, vb: VarBuilder) -> Result<Self> {
        config.check().map_err(candle_core::Error::Msg)?;
        let (c, n, l) = (config.channels, config.ngf, config.levels);
        let res = |k: usize, j: usize, c_in, c_out, resample, dilation| {
            CondResBlock::new(
                c_in,
                c_out,
                l,
                resample,
                dilation,
                vb.pp(format!("res{k}.{j}")),
            )
        };
        let stages = [
            [
                res(1, 0, n, n, Resample::Keep, None)?,
                res(1, 1, n, n, Resample::Keep, None)?,
            ],
            [
                res(2, 0, n, 2 * n, Resample::Down, None)?,
                res(2, 1, 2 * n, 2 * n, Resample::Keep, None)?,
            ],
            [
                res(3, 0, 2 * n, 2 * n, Resample::Down, Some(2))?,
                res(3, 1, 2 * n, 2 * n, Resample::Keep, Some(2))?,
            ],
            [
                res(4, 0, 2 * n, 2 * n, Resample::Down, Some(4))?,
                res(4, 1, 2 * n, 2 * n, Resample::Keep, Some(4))?,
            ],
        ];
        let refine = |k: usize, planes: &[usize], features, end| {
            CondRefineBlock::new(planes, features, l, end, vb.pp(format!("refine{k}")))
        };
        let conv3 = |c_in, c_out, name: &str| {
            conv2d_layer(c_in, c_out, 3, Conv2dConfig::padded(1), vb.pp(name))
        };
        Ok(Self {
            begin_conv: conv3(c, n, "begin_conv")?,
            stages,
            refine: [
                refine(1, &[2 * n], 2 * n, false)?,
                refine(2, &[2 * n, 2 * n], 2 * n, false)?,
                refine(3, &[2 * n, 2 * n], n, false)?,
                refine(4, &[n, n], n, true)?,
            ],
            normalizer: CondInstanceNormPlus::new(n, l, vb.pp("normalizer"))?,
            end_conv: conv3(n, c, "end_conv")?,
            config: *config,
        })
    }

    /// The configuration it was built with.
    pub fn config(&self) -> &NcsnConfig {
        &self.config
    }

    /// The score `s(x, sigma_i)` `[B, C, S, S]` of images `x` in `[0, 1]` (before the noise)
    /// `[B, C, S, S]` at the noise levels `level` `[B]` (indices into the levels).
    ///
    /// # Errors
    /// An input of the wrong shape, a level index out of range.
    pub fn forward(&self, x: &Tensor, level: &Tensor) -> Result<Tensor> {
        let cfg = &self.config;
        let (b, c, h, w) = x.dims4()?;
        if (c, h, w) != (cfg.channels, cfg.image_size, cfg.image_size) {
            candle_core::bail!(
                "NCSN takes [B, {}, {}, {}] images, got {:?}",
                cfg.channels,
                cfg.image_size,
                cfg.image_size,
                x.dims()
            )
        }
        if level.dims() != [b] {
            candle_core::bail!(
                "NCSN needs one noise level per image, [{b}], got {:?}",
                level.dims()
            )
        }
        let level = LevelOneHot::new(level, cfg.levels, x)?;
        let mut h = self.begin_conv.forward(&x.affine(2.0, -1.0)?)?;
        let mut layers = Vec::with_capacity(4);
        for stage in &self.stages {
            for block in stage {
                h = block.forward(&h, &level)?;
            }
            layers.push(h.clone());
        }
        let size = |t: &Tensor| -> Result<(usize, usize)> { Ok((t.dim(2)?, t.dim(3)?)) };
        let r1 = self.refine[0].forward(&[&layers[3]], &level, size(&layers[3])?)?;
        let r2 = self.refine[1].forward(&[&layers[2], &r1], &level, size(&layers[2])?)?;
        let r3 = self.refine[2].forward(&[&layers[1], &r2], &level, size(&layers[1])?)?;
        let r4 = self.refine[3].forward(&[&layers[0], &r3], &level, size(&layers[0])?)?;
        self.end_conv
            .forward_elu(&self.normalizer.forward(&r4, &level)?, None)
    }
}

impl ScoreModel for Ncsn {
    /// The score at the given noise levels (required).
    fn score(&self, x: &Tensor, level: Option<&Tensor>) -> Result<Tensor> {
        match level {
            Some(level) => self.forward(x, level),
            None => {
                candle_core::bail!("NCSN is conditioned on the noise level; give one per image")
            }
        }
    }
}
