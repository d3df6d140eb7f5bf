//! The deep-EBM ResNet energy of FD-SM Sec. 6.1 / App. C.2 (the "Res18_Quadratic" of Li et al.
//! 2019, MDSM): a 3x3 stem, three stages of residual blocks (2n, 4n, 8n channels) whose first
//! block halves the resolution by 2x2 average pooling, no normalisation, and a generalised
//! quadratic head `E = (w1.h + b1)(w2.h + b2) + w3.(h*h) + b3` on the flattened features.
//!
//! Built from the `layers` crate, whose ops differentiate correctly at every order, so SM, SSM
//! and DSM can differentiate through its input gradient. The convolutions are
//! [`layers::Conv2d`]s, whose input gradient avoids Candle's slow `conv_transpose2d` on the
//! CPU; with ELU, each block's `conv(elu(h))` is one op ([`layers::elu_conv2d`]), and each block
//! adds its skip connection inside its last convolution, after pooling there in a downsampling
//! block (a [`layers::Residual`]). The convolution algorithm is part of the config.

use candle_core::{Module, Result, Tensor};
use candle_nn::{Init, Linear, VarBuilder};
use layers::{
    avg_pool2d, conv2d, conv2d_layer, conv2d_no_bias, elu, shifted_softplus, Conv2d, Conv2dConfig,
    ConvAlgorithm, Residual,
};
use serde::{Deserialize, Serialize};
use sm_objectives::LogDensity;

/// The nonlinearity of the residual blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Activation {
    /// ELU with alpha = 1 (the reference default).
    #[default]
    Elu,
    /// `softplus(x) - log 2` (the reference code's final runs; infinitely differentiable).
    ShiftedSoftplus,
}

impl Activation {
    /// Applies the activation.
    pub fn apply(self, x: &Tensor) -> Result<Tensor> {
        match self {
            Activation::Elu => elu(x),
            Activation::ShiftedSoftplus => shifted_softplus(x),
        }
    }
}

/// Architecture of [`ResNetEbm`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResNetEbmConfig {
    /// Input channels (1 for MNIST).
    pub in_channels: usize,
    /// Input height and width (32 for MNIST padded by 2, as in the paper; 28 works too).
    pub image_size: usize,
    /// Stem filters `n`; the stages have `2n`, `4n`, `8n` channels (paper: 128).
    pub width: usize,
    /// Residual blocks per stage (Res18: `[3, 3, 3]`, Res12: `[2, 2, 2]`).
    pub blocks_per_stage: [usize; 3],
    /// Block nonlinearity.
    pub activation: Activation,
    /// Which algorithms the 3x3 convolutions may use on the CPU (same values up to rounding;
    /// see [`ConvAlgorithm`]). Absent in configs written before it existed: the fastest.
    #[serde(default)]
    pub conv_algorithm: ConvAlgorithm,
}

impl ResNetEbmConfig {
    /// The paper's Res18 (three blocks per stage, 18 convolutions in blocks) for MNIST at 32 x 32.
    pub fn res18(width: usize) -> Self {
        Self {
            in_channels: 1,
            image_size: 32,
            width,
            blocks_per_stage: [3, 3, 3],
            activation: Activation::Elu,
            conv_algorithm: ConvAlgorithm::Fastest,
        }
    }

    /// The Res12 variant (two blocks per stage) used for (Fashion-)MNIST in MDSM.
    pub fn res12(width: usize) -> Self {
        Self {
            blocks_per_stage: [2, 2, 2],
            ..Self::res18(width)
        }
    }

    /// Spatial size after the three downsampling stages (floor division, like the pooling).
    pub fn feature_size(&self) -> usize {
        self.image_size / 8
    }

    /// Trainable parameters: stem `9 C n + n`; per block conv1 `9 cin^2` (no bias), conv2
    /// `9 cin cout + cout`, the 1x1 shortcut `cin cout + cout`; the head `3 (F + 1)` on `F`
    /// features. Saturates instead of overflowing, so that absurd widths can be refused by size.
    pub fn parameter_count(&self) -> u64 {
        let n = self.width as u64;
        let mut total = (9 * self.in_channels as u64 + 1).saturating_mul(n);
        let mut cin = n;
        for (s, &count) in self.blocks_per_stage.iter().enumerate() {
            let cout = n.saturating_mul(1 << (s + 1));
            for _ in 0..count {
                let block = (9 * cin)
                    .saturating_mul(cin)
                    .saturating_add((10 * cin).saturating_mul(cout))
                    .saturating_add(2 * cout);
                total = total.saturating_add(block);
                cin = cout;
            }
        }
        let f = self.feature_size() as u64;
        total.saturating_add(3 * cin.saturating_mul(f * f).saturating_add(1))
    }

    /// Multiply-accumulates of one forward pass of one image through every convolution and the
    /// head, counted the usual way (every kernel tap at every output position, the zero padding
    /// included): `H W C_in C_out K^2` per convolution, `3 F` for the head on `F` features.
    /// A backward pass to the input and the weights costs twice this; the elementwise work is
    /// not counted.
    pub fn forward_macs_per_image(&self) -> u64 {
        let conv = |size: usize, cin: usize, cout: usize, k: usize| {
            (size * size * cin * cout * k * k) as u64
        };
        let mut size = self.image_size;
        let mut cin = self.width;
        let mut macs = conv(size, self.in_channels, cin, 3);
        for (s, &count) in self.blocks_per_stage.iter().enumerate() {
            let cout = self.width << (s + 1);
            for i in 0..count {
                // conv1 (cin -> cin) and conv2 (cin -> cout) at the block's input size; the
                // 1x1 shortcut after the pooling of a downsampling block.
                macs += conv(size, cin, cin, 3) + conv(size, cin, cout, 3);
                if i == 0 {
                    size /= 2;
                }
                macs += conv(size, cin, cout, 1);
                cin = cout;
            }
        }
        macs + 3 * (cin * size * size) as u64
    }
}

/// `conv.forward(&act.apply(x))`; with ELU as one op ([`layers::elu_conv2d`]: the same values
/// and derivatives, no `elu(x)` tensor in the graph).
fn forward_after(conv: &Conv2d, act: Activation, x: &Tensor) -> Result<Tensor> {
    match act {
        Activation::Elu => conv.forward_elu(x, None),
        Activation::ShiftedSoftplus => conv.forward(&act.apply(x)?),
    }
}

/// A stride-1 "same" convolution (`padding = k / 2`) with PyTorch's default initialisation
/// (weights and bias `U(-1/sqrt(fan_in), 1/sqrt(fan_in))`), as the reference code uses.
fn conv(
    cin: usize,
    cout: usize,
    k: usize,
    bias: bool,
    algo: ConvAlgorithm,
    vb: VarBuilder,
) -> Result<Conv2d> {
    let cfg = Conv2dConfig::padded(k / 2).with_algorithm(algo);
    if bias {
        conv2d_layer(cin, cout, k, cfg, vb)
    } else {
        conv2d_no_bias(cin, cout, k, cfg, vb)
    }
}

fn linear(fan_in: usize, vb: VarBuilder) -> Result<Linear> {
    let bound = 1.0 / (fan_in as f64).sqrt();
    let init = Init::Uniform {
        lo: -bound,
        up: bound,
    };
    Ok(Linear::new(
        vb.get_with_hints((1, fan_in), "weight", init)?,
        Some(vb.get_with_hints(1, "bias", init)?),
    ))
}

/// `out = shortcut(x) + conv2(act(conv1(act(x))))`; a downsampling block average-pools after
/// `conv2` and before the 1x1 shortcut conv.
#[derive(Debug, Clone)]
struct Block {
    conv1: Conv2d,
    conv2: Conv2d,
    shortcut: Conv2d,
    down: bool,
}

impl Block {
    fn new(
        cin: usize,
        cout: usize,
        down: bool,
        algo: ConvAlgorithm,
        vb: VarBuilder,
    ) -> Result<Self> {
        Ok(Self {
            conv1: conv(cin, cin, 3, false, algo, vb.pp("conv1"))?,
            conv2: conv(cin, cout, 3, true, algo, vb.pp("conv2"))?,
            shortcut: conv(cin, cout, 1, true, algo, vb.pp("shortcut"))?,
            down,
        })
    }

    fn forward(&self, x: &Tensor, act: Activation) -> Result<Tensor> {
        if let (Activation::Elu, Some(b2), Some(bs)) =
            (act, self.conv2.bias(), self.shortcut.bias())
        {
            // conv2's bias joins the shortcut's (pooling is linear), and conv2 pools its output
            // (downsampling blocks) and adds the shortcut in the same op.
            let h = forward_after(&self.conv1, act, x)?;
            let sc = &self.shortcut;
            let b = (bs + b2)?;
            let (input, pool) = if self.down {
                (avg_pool2d(x, 2)?, Some(2))
            } else {
                (x.clone(), None)
            };
            let s = conv2d(&input, sc.weight(), Some(&b), sc.config())?;
            let residual = Residual { tensor: &s, pool };
            return layers::elu_conv2d(
                &h,
                self.conv2.weight(),
                None,
                Some(residual),
                self.conv2.config(),
            );
        }
        let h = forward_after(&self.conv2, act, &forward_after(&self.conv1, act, x)?)?;
        if self.down {
            avg_pool2d(&h, 2)? + self.shortcut.forward(&avg_pool2d(x, 2)?)?
        } else {
            h + self.shortcut.forward(x)?
        }
    }
}

/// The convolutional trunk of [`ResNetEbm`]: the stem and the residual stages, without the
/// head. The deep EBLVM of BiSM Sec. 5.2 maps these features linearly to its latent size.
///
/// Weight names: `stem`, `stage{1,2,3}.block{i}.{conv1,conv2,shortcut}`.
#[derive(Debug, Clone)]
pub struct ResNetFeatures {
    stem: Conv2d,
    blocks: Vec<Block>,
    config: ResNetEbmConfig,
}

impl ResNetFeatures {
    /// Builds the trunk, creating or loading its weights through `vb`.
    ///
    /// # Errors
    /// A zero width or channel count, an image smaller than 8 pixels, or a `VarBuilder` that
    /// lacks a weight or holds one of the wrong shape.
    pub fn new(config: &ResNetEbmConfig, vb: VarBuilder) -> Result<Self> {
        if config.width == 0
            || config.in_channels == 0
            || config.image_size < 8
            || config.blocks_per_stage.contains(&0)
        {
            candle_core::bail!("invalid ResNet config {config:?}: width, channels and blocks must be >= 1 and the image at least 8 pixels")
        }
        let n = config.width;
        let algo = config.conv_algorithm;
        let stem = conv(config.in_channels, n, 3, true, algo, vb.pp("stem"))?;
        let mut blocks = Vec::new();
        let mut cin = n;
        for (s, &count) in config.blocks_per_stage.iter().enumerate() {
            let cout = n << (s + 1);
            for i in 0..count {
                blocks.push(Block::new(
                    cin,
                    cout,
                    i == 0,
                    algo,
                    vb.pp(format!("stage{}.block{i}", s + 1)),
                )?);
                cin = cout;
            }
        }
        Ok(Self {
            stem,
            blocks,
            config: config.clone(),
        })
    }

    /// Values per image of the flattened features: `8 n (S / 8)^2`.
    pub fn output_size(&self) -> usize {
        let f = self.config.feature_size();
        8 * self.config.width * f * f
    }

    /// The configuration it was built with.
    pub fn config(&self) -> &ResNetEbmConfig {
        &self.config
    }

    /// The flattened features of every image.
    ///
    /// # Shapes
    /// * `x`: `[B, in_channels, image_size, image_size]`
    /// * returns `[B, output_size]`
    ///
    /// # Errors
    /// An input of another shape.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let c = &self.config;
        let expected = [c.in_channels, c.image_size, c.image_size];
        if x.rank() != 4 || x.dims()[1..] != expected {
            candle_core::bail!(
                "the ResNet expects input [B, {}, {}, {}], got {:?}",
                c.in_channels,
                c.image_size,
                c.image_size,
                x.dims()
            )
        }
        let mut h = self.stem.forward(x)?;
        for block in &self.blocks {
            h = block.forward(&h, c.activation)?;
        }
        h.flatten_from(1)
    }
}

/// The deep-EBM ResNet energy `E(x)`; as a [`LogDensity`] it returns `-E(x)`.
///
/// Weight names: `stem`, `stage{1,2,3}.block{i}.{conv1,conv2,shortcut}` (the
/// [`ResNetFeatures`]), `head.{a,b,quad}`.
#[derive(Debug, Clone)]
pub struct ResNetEbm {
    features: ResNetFeatures,
    head_a: Linear,
    head_b: Linear,
    head_quad: Linear,
}

impl ResNetEbm {
    /// Builds the network, creating or loading its weights through `vb`.
    ///
    /// # Errors
    /// A zero width or channel count, an image smaller than 8 pixels, or a `VarBuilder` that
    /// lacks a weight or holds one of the wrong shape.
    pub fn new(config: &ResNetEbmConfig, vb: VarBuilder) -> Result<Self> {
        let features = ResNetFeatures::new(config, vb.clone())?;
        let n = features.output_size();
        Ok(Self {
            features,
            head_a: linear(n, vb.pp("head.a"))?,
            head_b: linear(n, vb.pp("head.b"))?,
            head_quad: linear(n, vb.pp("head.quad"))?,
        })
    }

    /// The configuration it was built with.
    pub fn config(&self) -> &ResNetEbmConfig {
        self.features.config()
    }

    /// The energy of every image.
    ///
    /// # Shapes
    /// * `x`: `[B, in_channels, image_size, image_size]`
    /// * returns `[B]`
    pub fn energy(&self, x: &Tensor) -> Result<Tensor> {
        let h = self.features.forward(x)?;
        let quadratic = (self.head_a.forward(&h)? * self.head_b.forward(&h)?)?;
        (quadratic + self.head_quad.forward(&h.sqr()?)?)?.squeeze(1)
    }
}

impl LogDensity for ResNetEbm {
    fn log_density(&self, x: &Tensor) -> Result<Tensor> {
        self.energy(x)?.neg()
    }
}
