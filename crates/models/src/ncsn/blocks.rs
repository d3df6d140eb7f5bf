//! The conditional blocks of NCSN's RefineNet (Song and Ermon 2019, App. A.1; the reference's
//! `CondRefineNetDilated`): residual blocks (optionally downsampling by a convolution and 2x2
//! mean pooling, or dilated), residual convolution units (RCU), multi-resolution fusion (MSF:
//! convolutions and bilinear upsampling with aligned corners), chained residual pooling (CRP:
//! 5x5 average pooling of stride 1, zeros counted) and the RefineBlock that chains them. Every
//! normalisation is [`CondInstanceNormPlus`]; every activation ELU, fused into the convolution
//! that follows it ([`layers::elu_conv2d`]).

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;
use layers::{
    avg_pool2d, avg_pool2d_padded, conv2d_layer, conv2d_no_bias, elu, upsample_bilinear2d, Conv2d,
    Conv2dConfig, Residual,
};

use super::cond_norm::{CondInstanceNormPlus, LevelOneHot};

/// 3x3 convolution with padding 1 (or dilation `d` and padding `d`), with or without a bias.
fn conv3(c_in: usize, c_out: usize, dilation: usize, bias: bool, vb: VarBuilder) -> Result<Conv2d> {
    let cfg = Conv2dConfig {
        padding: dilation,
        dilation,
        ..Conv2dConfig::default()
    };
    if bias {
        conv2d_layer(c_in, c_out, 3, cfg, vb)
    } else {
        conv2d_no_bias(c_in, c_out, 3, cfg, vb)
    }
}

/// How a residual block changes the resolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Resample {
    /// Same resolution.
    Keep,
    /// Halved: the second convolution and the shortcut followed by 2x2 mean pooling (or, with
    /// a dilation, no change of resolution, as the reference's dilated "down" blocks).
    Down,
}

/// `ConditionalResidualBlock`: `x + conv2(elu(norm2(conv1(elu(norm1(x))))))`, the shortcut a
/// convolution when the channels or the resolution change.
#[derive(Debug, Clone)]
pub(super) struct CondResBlock {
    norm1: CondInstanceNormPlus,
    conv1: Conv2d,
    norm2: CondInstanceNormPlus,
    conv2: Conv2d,
    shortcut: Option<Conv2d>,
    pool: bool,
}

impl CondResBlock {
    pub(super) fn new(
        c_in: usize,
        c_out: usize,
        levels: usize,
        resample: Resample,
        dilation: Option<usize>,
        vb: VarBuilder,
    ) -> Result<Self> {
        let d = dilation.unwrap_or(1);
        let down = resample == Resample::Down;
        // The reference's down blocks keep the input width through the first convolution.
        let mid = if down { c_in } else { c_out };
        let pool = down && dilation.is_none();
        let shortcut = if c_in != c_out || down {
            Some(match dilation {
                Some(d) => conv3(c_in, c_out, d, true, vb.pp("shortcut"))?,
                // A 1x1 convolution (then mean pooling when downsampling).
                None => conv2d_layer(c_in, c_out, 1, Conv2dConfig::default(), vb.pp("shortcut"))?,
            })
        } else {
            None
        };
        Ok(Self {
            norm1: CondInstanceNormPlus::new(c_in, levels, vb.pp("norm1"))?,
            conv1: conv3(c_in, mid, d, true, vb.pp("conv1"))?,
            norm2: CondInstanceNormPlus::new(mid, levels, vb.pp("norm2"))?,
            conv2: conv3(mid, c_out, d, true, vb.pp("conv2"))?,
            shortcut,
            pool,
        })
    }

    pub(super) fn forward(&self, x: &Tensor, level: &LevelOneHot) -> Result<Tensor> {
        let h = self
            .conv1
            .forward_elu(&self.norm1.forward(x, level)?, None)?;
        let h = self.norm2.forward(&h, level)?;
        let shortcut = match &self.shortcut {
            None => x.clone(),
            Some(conv) if self.pool => avg_pool2d(&conv.forward(x)?, 2)?,
            Some(conv) => conv.forward(x)?,
        };
        // The second convolution with its mean pooling and the shortcut inside one op.
        let residual = Residual {
            tensor: &shortcut,
            pool: self.pool.then_some(2),
        };
        self.conv2.forward_elu(&h, Some(residual))
    }
}

/// `CondRCUBlock`: `n_blocks` residual units of `n_stages` (norm, ELU, 3x3 convolution without
/// bias), each unit adding its input back.
#[derive(Debug, Clone)]
pub(super) struct CondRcu {
    units: Vec<Vec<(CondInstanceNormPlus, Conv2d)>>,
}

impl CondRcu {
    pub(super) fn new(
        features: usize,
        n_blocks: usize,
        n_stages: usize,
        levels: usize,
        vb: VarBuilder,
    ) -> Result<Self> {
        let units = (0..n_blocks)
            .map(|i| {
                (0..n_stages)
                    .map(|j| {
                        let vb = vb.pp(format!("block{i}"));
                        Ok((
                            CondInstanceNormPlus::new(features, levels, vb.pp(format!("norm{j}")))?,
                            conv3(features, features, 1, false, vb.pp(format!("conv{j}")))?,
                        ))
                    })
                    .collect::<Result<Vec<_>>>()
            })
            .collect::<Result<_>>()?;
        Ok(Self { units })
    }

    pub(super) fn forward(&self, x: &Tensor, level: &LevelOneHot) -> Result<Tensor> {
        let mut x = x.clone();
        for unit in &self.units {
            let input = x.clone();
            let last = unit.len() - 1;
            for (j, (norm, conv)) in unit.iter().enumerate() {
                let h = norm.forward(&x, level)?;
                let residual = (j == last).then_some(Residual {
                    tensor: &input,
                    pool: None,
                });
                x = conv.forward_elu(&h, residual)?;
            }
        }
        Ok(x)
    }
}

/// `CondMSFBlock`: each input normalised, convolved (3x3 with bias) to `features` channels and
/// upsampled bilinearly (aligned corners) to the largest resolution, then summed.
#[derive(Debug, Clone)]
pub(super) struct CondMsf {
    parts: Vec<(CondInstanceNormPlus, Conv2d)>,
}

impl CondMsf {
    pub(super) fn new(
        in_planes: &[usize],
        features: usize,
        levels: usize,
        vb: VarBuilder,
    ) -> Result<Self> {
        let parts = in_planes
            .iter()
            .enumerate()
            .map(|(i, &c)| {
                Ok((
                    CondInstanceNormPlus::new(c, levels, vb.pp(format!("norm{i}")))?,
                    conv3(c, features, 1, true, vb.pp(format!("conv{i}")))?,
                ))
            })
            .collect::<Result<_>>()?;
        Ok(Self { parts })
    }

    pub(super) fn forward(
        &self,
        xs: &[Tensor],
        level: &LevelOneHot,
        shape: (usize, usize),
    ) -> Result<Tensor> {
        let mut sum: Option<Tensor> = None;
        for ((norm, conv), x) in self.parts.iter().zip(xs) {
            let h = conv.forward(&norm.forward(x, level)?)?;
            let (_, _, hh, ww) = h.dims4()?;
            // Aligned-corner interpolation to the same size is the identity.
            let h = if (hh, ww) == shape {
                h
            } else {
                upsample_bilinear2d(&h, shape, true)?
            };
            sum = Some(match sum {
                None => h,
                Some(s) => (s + h)?,
            });
        }
        sum.ok_or_else(|| candle_core::Error::Msg("multi-resolution fusion of no input".into()))
    }
}

/// `CondCRPBlock`: `x = elu(x)`, then `n_stages` times `path = conv(avgpool5(norm(path)))`,
/// `x = x + path` (3x3 convolutions without bias).
#[derive(Debug, Clone)]
pub(super) struct CondCrp {
    stages: Vec<(CondInstanceNormPlus, Conv2d)>,
}

impl CondCrp {
    pub(super) fn new(
        features: usize,
        n_stages: usize,
        levels: usize,
        vb: VarBuilder,
    ) -> Result<Self> {
        let stages = (0..n_stages)
            .map(|i| {
                Ok((
                    CondInstanceNormPlus::new(features, levels, vb.pp(format!("norm{i}")))?,
                    conv3(features, features, 1, false, vb.pp(format!("conv{i}")))?,
                ))
            })
            .collect::<Result<_>>()?;
        Ok(Self { stages })
    }

    pub(super) fn forward(&self, x: &Tensor, level: &LevelOneHot) -> Result<Tensor> {
        let mut x = elu(x)?;
        let mut path = x.clone();
        for (norm, conv) in &self.stages {
            let pooled = avg_pool2d_padded(&norm.forward(&path, level)?, 5, 1, 2)?;
            path = conv.forward(&pooled)?;
            x = (x + &path)?;
        }
        Ok(x)
    }
}

/// `CondRefineBlock`: an RCU (2 units of 2 stages) per input, their fusion (unless it is the
/// first block, with one input), chained residual pooling, and an output RCU (3 units in the
/// last block, else 1).
#[derive(Debug, Clone)]
pub(super) struct CondRefineBlock {
    adapt: Vec<CondRcu>,
    msf: Option<CondMsf>,
    crp: CondCrp,
    output: CondRcu,
}

impl CondRefineBlock {
    pub(super) fn new(
        in_planes: &[usize],
        features: usize,
        levels: usize,
        end: bool,
        vb: VarBuilder,
    ) -> Result<Self> {
        let adapt = in_planes
            .iter()
            .enumerate()
            .map(|(i, &c)| CondRcu::new(c, 2, 2, levels, vb.pp(format!("adapt{i}"))))
            .collect::<Result<_>>()?;
        let msf = (in_planes.len() > 1)
            .then(|| CondMsf::new(in_planes, features, levels, vb.pp("msf")))
            .transpose()?;
        Ok(Self {
            adapt,
            msf,
            crp: CondCrp::new(features, 2, levels, vb.pp("crp"))?,
            output: CondRcu::new(
                features,
                if end { 3 } else { 1 },
                2,
                levels,
                vb.pp("output"),
            )?,
        })
    }

    pub(super) fn forward(
        &self,
        xs: &[&Tensor],
        level: &LevelOneHot,
        shape: (usize, usize),
    ) -> Result<Tensor> {
        let hs = self
            .adapt
            .iter()
            .zip(xs)
            .map(|(rcu, x)| rcu.forward(x, level))
            .collect::<Result<Vec<_>>>()?;
        let h = match &self.msf {
            Some(msf) => msf.forward(&hs, level, shape)?,
            None => hs[0].clone(),
        };
        let h = self.crp.forward(&h, level)?;
        self.output.forward(&h, level)
    }
}
