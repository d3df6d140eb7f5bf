//! 2-D convolution correct at every derivative order: the functional ops [`conv2d`] and
//! [`elu_conv2d`] (a pre-activation convolution, optionally with a skip connection added and
//! pooled inside it), their [`Conv2dConfig`] (padding, stride, dilation, algorithm) and the
//! [`Conv2d`] layer, as candle-nn has them.
//!
//! The CPU kernels (`kernels/conv_cpu.rs`, `kernels/winograd.rs`) compute stride-1, undilated
//! convolutions with square kernels. Their input gradient is a convolution with the flipped,
//! transposed kernel (instead of Candle's `conv_transpose2d`), the kernel gradient one matrix
//! product per sample, and both backward passes are built from these same ops, so every order
//! of derivative exists. A stride or a dilation is composed from them with ops whose
//! derivatives Candle gets right (see [`conv2d`]).

use candle_core::{bail, Module, Result, Tensor};
use candle_nn::{Init, VarBuilder};
use serde::{Deserialize, Serialize};

use crate::kernels::conv_ops::{BiasedConv, ConvSpec, FlipConv};
use crate::kernels::elu_conv::{EluBiasedConv, EluConv, EluConvAdd, EluConvPoolAdd};
use crate::kernels::{fused_path, on_cpu_kernels};
use crate::{avg_pool2d, bias_add, elu, grad_mode};

/// Which algorithms a stride-1 3x3 convolution may use on the CPU (the forward pass, the input
/// gradient and the kernel gradient alike). Every choice computes the same convolution; they
/// differ in speed and in rounding. A field of [`Conv2dConfig`], so each layer carries its own.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum ConvAlgorithm {
    /// Winograd's F(4x4, 3x3) on output maps of 7 x 7 and more and F(2x2, 3x3) on 6 x 6 (with
    /// at least 16 channels each way), the direct convolution elsewhere: the fastest, with f32
    /// rounding errors about 5x the direct convolution's on the ResNet EBM's layers (relative
    /// RMS error about 1.5e-6 against 3e-7).
    #[default]
    Fastest,
    /// F(2x2, 3x3) wherever Winograd applies: rounding like the direct convolution's, up to a
    /// third slower per layer than [`ConvAlgorithm::Fastest`] (about 15% per FD step of the
    /// ResNet EBM, see `docs/performance.md`). For f32 training where finite differences of
    /// energies approach f32 resolution (see `docs/fd-decomposition.md`).
    Accurate,
    /// No Winograd transforms: the direct convolution everywhere (matrix products over
    /// patches), the reference the others are tested against.
    Direct,
}

impl ConvAlgorithm {
    /// Every choice, fastest first.
    pub const ALL: [ConvAlgorithm; 3] = [Self::Fastest, Self::Accurate, Self::Direct];

    /// Lower-case name: `fastest`, `accurate`, `direct`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Fastest => "fastest",
            Self::Accurate => "accurate",
            Self::Direct => "direct",
        }
    }
}

/// Geometry and algorithm of a 2-D convolution with a square `K x K` kernel: `padding` zeros on
/// each side, then every `stride`-th output position of a kernel whose taps are `dilation`
/// pixels apart. The output side is `(H + 2 padding - dilation (K - 1) - 1) / stride + 1`, as in
/// candle-nn and PyTorch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conv2dConfig {
    /// Zeros added on each side of both spatial axes.
    pub padding: usize,
    /// Step between output positions (at least 1).
    pub stride: usize,
    /// Distance between kernel taps (at least 1).
    pub dilation: usize,
    /// The CPU algorithm of the stride-1 convolution underneath.
    #[serde(default)]
    pub algorithm: ConvAlgorithm,
}

impl Default for Conv2dConfig {
    fn default() -> Self {
        Self {
            padding: 0,
            stride: 1,
            dilation: 1,
            algorithm: ConvAlgorithm::Fastest,
        }
    }
}

impl Conv2dConfig {
    /// Stride 1, no dilation, `padding` zeros each side, the fastest algorithm.
    pub fn padded(padding: usize) -> Self {
        Self {
            padding,
            ..Self::default()
        }
    }

    /// The same geometry with another algorithm.
    pub fn with_algorithm(self, algorithm: ConvAlgorithm) -> Self {
        Self { algorithm, ..self }
    }

    /// Stride 1 and no dilation: what the CPU kernels compute in one op.
    fn is_plain(&self) -> bool {
        self.stride == 1 && self.dilation == 1
    }

    fn spec(&self) -> ConvSpec {
        ConvSpec {
            padding: self.padding,
            algorithm: self.algorithm,
        }
    }

    /// Output height and width for an `h x w` input and a `k x k` kernel.
    pub fn output_size(&self, (h, w): (usize, usize), k: usize) -> (usize, usize) {
        let span = self.dilation * (k.max(1) - 1) + 1;
        let side = |n: usize| (n + 2 * self.padding).saturating_sub(span) / self.stride.max(1) + 1;
        (side(h), side(w))
    }
}

/// A skip connection added to a convolution's output inside the op (see [`elu_conv2d`]):
/// `pool_k(y) + tensor`, or `y + tensor` without pooling.
#[derive(Clone, Copy, Debug)]
pub struct Residual<'a> {
    /// The tensor added, of the (pooled) output's shape.
    pub tensor: &'a Tensor,
    /// Average pooling with kernel = stride = `k` applied to the convolution's output before
    /// the sum (floor mode), or none.
    pub pool: Option<usize>,
}

/// 2-D convolution `x * weight (+ bias)` with the geometry of `cfg`, differentiable at every
/// order.
///
/// On the CPU (f32, f64) stride 1 without dilation is one custom op (see the module docs):
/// 3x3 kernels on large enough maps and channel counts use Winograd's algorithms as
/// `cfg.algorithm` allows, F(4x4, 3x3) on maps of 7 x 7 and more (up to 4x fewer multiply-adds
/// than the direct convolution), F(2x2, 3x3) on 6 x 6 (2.25x fewer). A dilation runs the same
/// op on the kernel spread out with zeros (`dilation^2` times the multiply-adds of the taps it
/// has); a stride runs it on the input's `stride x stride` polyphase components stacked as
/// channels, with the kernel split the same way (`ceil(K / s)^2 s^2 / K^2` times the
/// multiply-adds: 1.44 for a 5 x 5 kernel of stride 2, whose components are 3 x 3). Both are
/// built from padding, reshapes, permutes and `narrow`, whose derivatives Candle gets right at
/// every order.
///
/// The values equal `x.conv2d(weight, padding, stride, dilation, 1)` (plus `bias`) up to
/// rounding. On other devices (and inside [`crate::portable::with_portable_ops`]) the stride-1,
/// undilated convolution underneath is Candle's `conv2d`; strides and dilations are built
/// around it as on the CPU, because Candle's strided backward pass fails when the stride does
/// not divide the padded input (tested in `tests/portable_path.rs`).
///
/// # Shapes
/// * `x`: `[N, C_in, H, W]`; `weight`: `[C_out, C_in, K, K]`; `bias`: `[C_out]`
/// * returns `[N, C_out, H_out, W_out]`, sides as in [`Conv2dConfig::output_size`]
///
/// # Errors
/// Mismatched channels, a non-square kernel, `padding >= dilation (K - 1) + 1`, a zero stride
/// or dilation, a kernel larger than the padded input, a bias of the wrong length or dtype, or
/// a dtype other than f32/f64 on the CPU.
pub fn conv2d(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    cfg: &Conv2dConfig,
) -> Result<Tensor> {
    check_conv_args(x, weight, bias, cfg)?;
    // Strides and dilations on every device: Candle's own strided convolution has a backward
    // pass that fails when the stride does not divide the padded input (the input gradient
    // comes out a row or column short).
    if !cfg.is_plain() {
        let kernel = dilate_kernel(weight, cfg.dilation)?;
        let y = if cfg.stride == 1 {
            conv2d(x, &kernel, None, &unit(cfg))?
        } else {
            polyphase_conv(x, &kernel, cfg.padding, cfg.stride)?
        };
        return match bias {
            Some(b) => bias_add(&y, b),
            None => Ok(y),
        };
    }
    // The custom ops have CPU kernels only; elsewhere Candle's own convolution computes the
    // same values.
    if !on_cpu_kernels(x) {
        let y = x.conv2d(weight, cfg.padding, 1, 1, 1)?;
        return match bias {
            Some(b) => bias_add(&y, b),
            None => Ok(y),
        };
    }
    let spec = cfg.spec();
    match bias {
        // One op for convolution and bias: no separate pass over the output, and in the
        // backward pass no intermediate gradient to create and accumulate.
        Some(b) => x.apply_op3(weight, b, BiasedConv { spec }),
        None => x.apply_op2(weight, FlipConv { spec }),
    }
}

/// `conv2d(&elu(x), weight, bias, cfg)`, optionally with a [`Residual`] added (after pooling
/// the convolution's output, if it says so), as one op: the convolution of a pre-activation
/// residual block, which reads an ELU of its input, and the last convolution of such a block
/// with its skip connection.
///
/// Values and derivatives of every order are those of the separate ops (to the bit on the
/// CPU), but neither `elu(x)` nor the convolution's unpooled output enters the graph: in the
/// Winograd layers the ELU is applied inside the convolution's own copy of each sample, the
/// residual is summed (after pooling) as each sample's outputs are written, and Candle's
/// backward pass no longer creates, clears and accumulates gradients for the intermediate
/// tensors. When Candle's higher-order mode is off ([`grad_mode::higher_order_enabled`],
/// checked when the op is built) the backward pass is computed directly, the ELU's slope
/// applied to the input gradient as it is written (see `kernels/elu_conv.rs`); with it on, it
/// is built from differentiable ops. A bias together with a residual is added to the residual
/// (pooling is linear). With a stride or dilation, on other devices and on other dtypes it is
/// the composition of the separate ops.
///
/// # Shapes
/// * `x`, `weight`, `bias`: as [`conv2d`]
/// * `residual.tensor`: the output's shape, `[N, C_out, H_out / k, W_out / k]` with pooling
/// * returns the residual's shape, or `[N, C_out, H_out, W_out]` without one
///
/// # Errors
/// As [`conv2d`], a pooling larger than the output, and a residual of another shape or dtype.
pub fn elu_conv2d(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    residual: Option<Residual<'_>>,
    cfg: &Conv2dConfig,
) -> Result<Tensor> {
    check_conv_args(x, weight, bias, cfg)?;
    let Some(residual) = residual else {
        return elu_conv2d_plain(x, weight, bias, cfg);
    };
    let (n, _, h, w) = x.dims4()?;
    let (o, _, k, _) = weight.dims4()?;
    let (ho, wo) = cfg.output_size((h, w), k);
    let out = match residual.pool {
        Some(pk) if pk == 0 || ho < pk || wo < pk => {
            bail!("elu_conv2d: a {pk}x{pk} pooling does not fit a {ho}x{wo} output")
        }
        Some(pk) => [n, o, ho / pk, wo / pk],
        None => [n, o, ho, wo],
    };
    let r = residual.tensor;
    if r.dims() != out || r.dtype() != x.dtype() {
        bail!(
            "elu_conv2d: a {:?} residual of shape {out:?} expected, got {:?} of shape {:?}",
            x.dtype(),
            r.dtype(),
            r.dims()
        )
    }
    // The bias joins the residual: pool(conv + b) + r = pool(conv) + (r + b).
    let r = match bias {
        Some(b) => bias_add(r, b)?,
        None => r.clone(),
    };
    if !fused_path(x) || !on_cpu_kernels(&r) || !cfg.is_plain() {
        let y = elu_conv2d_plain(x, weight, None, cfg)?;
        return match residual.pool {
            Some(pk) => avg_pool2d(&y, pk)? + r,
            None => y + r,
        };
    }
    let (spec, first_order) = (cfg.spec(), !grad_mode::higher_order_enabled());
    match residual.pool {
        Some(k) => x.apply_op3(
            weight,
            &r,
            EluConvPoolAdd {
                spec,
                k,
                first_order,
            },
        ),
        None => x.apply_op3(weight, &r, EluConvAdd { spec, first_order }),
    }
}

/// [`elu_conv2d`] without a residual, arguments checked.
fn elu_conv2d_plain(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    cfg: &Conv2dConfig,
) -> Result<Tensor> {
    if !fused_path(x) || !cfg.is_plain() {
        return conv2d(&elu(x)?, weight, bias, cfg);
    }
    let (spec, first_order) = (cfg.spec(), !grad_mode::higher_order_enabled());
    match bias {
        Some(b) => x.apply_op3(weight, b, EluBiasedConv { spec, first_order }),
        None => x.apply_op2(weight, EluConv { spec, first_order }),
    }
}

/// The stride-1, undilated configuration of the convolution underneath `cfg`.
fn unit(cfg: &Conv2dConfig) -> Conv2dConfig {
    Conv2dConfig {
        stride: 1,
        dilation: 1,
        ..*cfg
    }
}

/// `[O, C, K, K] -> [O, C, d (K - 1) + 1, d (K - 1) + 1]`: the taps `d` apart, zeros between.
fn dilate_kernel(w: &Tensor, d: usize) -> Result<Tensor> {
    if d == 1 {
        return Ok(w.clone());
    }
    let (o, c, k, _) = w.dims4()?;
    // Each tap followed by d - 1 zeros along both axes, then the trailing zeros cut.
    let w = w.reshape((o * c * k, 1, k, 1))?;
    let w = w.pad_with_zeros(3, 0, d - 1)?.pad_with_zeros(1, 0, d - 1)?;
    let side = k * d;
    w.reshape((o, c, side, side))?
        .narrow(2, 0, side - d + 1)?
        .narrow(3, 0, side - d + 1)
}

/// `[N, C, H, W]` with `before` zeros added before and `after` after along `dim`, where a
/// negative `after` cuts rows instead.
fn pad_or_cut(x: &Tensor, dim: usize, before: usize, after: isize) -> Result<Tensor> {
    let x = x.pad_with_zeros(dim, before, after.max(0) as usize)?;
    if after < 0 {
        let len = x.dim(dim)? - after.unsigned_abs();
        x.narrow(dim, 0, len)
    } else {
        Ok(x)
    }
}

/// A stride-`s` convolution as a stride-1 one over the input's `s x s` polyphase components:
/// with `a = s a' + r`, `x_pad[s i + a] = X_r[i + a']`, so
/// `y = sum_{r, q} X_{r, q} * W_{r, q}` with `W_{r, q}[a', b'] = w[s a' + r, s b' + q]` (zero
/// beyond the kernel). The components become `C s^2` input channels of one valid convolution
/// with a `ceil(K / s)`-sided kernel: `(C s^2 ceil(K / s)^2) / (C K^2)` times the multiply-adds
/// of the strided convolution (1.44 for K = 5, s = 2) instead of the `s^2` of computing every
/// position, and a 3 x 3 kernel for K = 5 or 6 that the Winograd kernels take. Built from
/// padding, reshapes and permutes, whose derivatives Candle gets right at every order.
fn polyphase_conv(x: &Tensor, w: &Tensor, padding: usize, s: usize) -> Result<Tensor> {
    let (n, c, h, wd) = x.dims4()?;
    let (o, _, k, _) = w.dims4()?;
    let kp = k.div_ceil(s);
    let (ho, wo) = (
        (h + 2 * padding - k) / s + 1,
        (wd + 2 * padding - k) / s + 1,
    );
    // Component rows read: ho + kp - 1, so s (ho + kp - 1) padded input rows.
    let (rows, cols) = (ho + kp - 1, wo + kp - 1);
    let after = |len: usize, out: usize| (s * out) as isize - (len + padding) as isize;
    let xp = pad_or_cut(x, 2, padding, after(h, rows))?;
    let xp = pad_or_cut(&xp, 3, padding, after(wd, cols))?;
    let phases = xp
        .reshape((n, c, rows, s, cols, s))?
        .permute((0, 1, 3, 5, 2, 4))?
        .reshape((n, c * s * s, rows, cols))?;
    let kernel = w
        .pad_with_zeros(2, 0, s * kp - k)?
        .pad_with_zeros(3, 0, s * kp - k)?
        .reshape((o, c, kp, s, kp, s))?
        .permute((0, 1, 3, 5, 2, 4))?
        .reshape((o, c * s * s, kp, kp))?;
    conv2d(&phases, &kernel, None, &Conv2dConfig::default())
}

/// Every `s`-th row and column of `[N, C, H, W]`, starting at the first.
pub(crate) fn subsample(y: &Tensor, s: usize) -> Result<Tensor> {
    if s == 1 {
        return Ok(y.clone());
    }
    let (n, c, h, w) = y.dims4()?;
    let (ho, wo) = ((h - 1) / s + 1, (w - 1) / s + 1);
    // Pad to whole multiples of s, view the positions as (out, s) pairs and keep offset 0.
    let y = y
        .pad_with_zeros(2, 0, ho * s - h)?
        .pad_with_zeros(3, 0, wo * s - w)?;
    y.reshape((n, c, ho, s, wo, s))?
        .narrow(5, 0, 1)?
        .narrow(3, 0, 1)?
        .reshape((n, c, ho, wo))
}

/// The argument checks of [`conv2d`] and [`elu_conv2d`].
fn check_conv_args(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    cfg: &Conv2dConfig,
) -> Result<()> {
    let (_, c_in, h, w) = x.dims4()?;
    let (c_out, k_in, kh, kw) = weight.dims4()?;
    if c_in != k_in {
        bail!("conv2d: the input has {c_in} channels, the kernel expects {k_in}")
    }
    if cfg.stride == 0 || cfg.dilation == 0 {
        bail!(
            "conv2d: stride and dilation must be at least 1, got stride {} and dilation {}",
            cfg.stride,
            cfg.dilation
        )
    }
    let span = cfg.dilation * (kh.max(1) - 1) + 1;
    let padding = cfg.padding;
    if kh != kw || kh == 0 || padding >= span {
        bail!("conv2d: needs a square kernel and padding < its dilated size, got {kh}x{kw} with padding {padding} and dilation {}", cfg.dilation)
    }
    if h + 2 * padding < span || w + 2 * padding < span {
        bail!("conv2d: a {kh}x{kw} kernel (dilated to {span}x{span}) does not fit a padded {h}x{w} input")
    }
    if let Some(b) = bias {
        if b.dims() != [c_out] {
            bail!(
                "conv2d: a bias of shape [{c_out}] expected for {c_out} output channels, got {:?}",
                b.dims()
            )
        }
        if b.dtype() != x.dtype() {
            bail!(
                "conv2d: the bias dtype {:?} differs from the input dtype {:?}",
                b.dtype(),
                x.dtype()
            )
        }
    }
    Ok(())
}

/// A 2-D convolution layer: a `[C_out, C_in, K, K]` kernel, an optional `[C_out]` bias and its
/// [`Conv2dConfig`]; [`Module::forward`] is [`conv2d`].
#[derive(Clone, Debug)]
pub struct Conv2d {
    weight: Tensor,
    bias: Option<Tensor>,
    config: Conv2dConfig,
}

impl Conv2d {
    /// A layer from its tensors.
    pub fn new(weight: Tensor, bias: Option<Tensor>, config: Conv2dConfig) -> Self {
        Self {
            weight,
            bias,
            config,
        }
    }

    /// The kernel, `[C_out, C_in, K, K]`.
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    /// The bias, `[C_out]`.
    pub fn bias(&self) -> Option<&Tensor> {
        self.bias.as_ref()
    }

    /// Its geometry and algorithm.
    pub fn config(&self) -> &Conv2dConfig {
        &self.config
    }

    /// `self.forward(&elu(x))`, with an optional [`Residual`] added, as one op
    /// ([`elu_conv2d`]).
    pub fn forward_elu(&self, x: &Tensor, residual: Option<Residual<'_>>) -> Result<Tensor> {
        elu_conv2d(x, &self.weight, self.bias.as_ref(), residual, &self.config)
    }
}

impl Module for Conv2d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        conv2d(x, &self.weight, self.bias.as_ref(), &self.config)
    }
}

/// A [`Conv2d`] of `c_in -> c_out` channels with a `k x k` kernel and a bias, its weights named
/// `weight` and `bias` under `vb`, initialised as PyTorch's default (uniform in
/// `±1/sqrt(c_in k^2)`, which the reference implementations use).
///
/// # Errors
/// A `VarBuilder` that lacks a weight or holds one of the wrong shape.
pub fn conv2d_layer(
    c_in: usize,
    c_out: usize,
    k: usize,
    config: Conv2dConfig,
    vb: VarBuilder,
) -> Result<Conv2d> {
    let (weight, init) = conv_weight(c_in, c_out, k, &vb)?;
    let bias = vb.get_with_hints(c_out, "bias", init)?;
    Ok(Conv2d::new(weight, Some(bias), config))
}

/// [`conv2d_layer`] without a bias.
///
/// # Errors
/// As [`conv2d_layer`].
pub fn conv2d_no_bias(
    c_in: usize,
    c_out: usize,
    k: usize,
    config: Conv2dConfig,
    vb: VarBuilder,
) -> Result<Conv2d> {
    Ok(Conv2d::new(
        conv_weight(c_in, c_out, k, &vb)?.0,
        None,
        config,
    ))
}

/// The kernel of [`conv2d_layer`] and its initialisation.
fn conv_weight(c_in: usize, c_out: usize, k: usize, vb: &VarBuilder) -> Result<(Tensor, Init)> {
    let bound = 1.0 / ((c_in * k * k).max(1) as f64).sqrt();
    let init = Init::Uniform {
        lo: -bound,
        up: bound,
    };
    Ok((
        vb.get_with_hints((c_out, c_in, k, k), "weight", init)?,
        init,
    ))
}
