//! Building blocks whose backward passes stay correct at every order in Candle, for models
//! trained by score matching, and the list of Candle ops that must not appear in them.
//!
//! Measured with Candle 0.11.1: the backward passes of `max_pool2d` (wrong even at first
//! order), `upsample_nearest2d` (overwrites instead of accumulating when its input has another
//! consumer), `gather` (fails at second order), `avg_pool2d` with kernel != stride,
//! `upsample_bilinear2d`, the fused `softmax_last_dim` / `LayerNorm` / `RmsNorm` kernels (no
//! gradient at all, silently) and `conv1d` beyond first order are unusable here. Everything in
//! this module is either composed of reshapes, reductions and elementwise ops whose derivatives
//! Candle builds from differentiable ops, or a custom op with its own CPU kernel whose backward
//! pass is again built from such ops (`conv2d`, `elu`, `softplus`, `bias_add`, `avg_pool2d`; see
//! `safe_ops/conv_cpu.rs` and `safe_ops/fused.rs`), tested to the third derivative.

use std::sync::atomic::{AtomicU8, Ordering};

use candle_core::{bail, DType, Result, Tensor, D};

/// Source patterns of Candle calls whose higher-order backward is broken, with the reason.
/// Model crates scan their sources for these in a test (see `crates/models/tests`).
pub const FORBIDDEN_OPS: &[(&str, &str)] = &[
    ("max_pool2d", "wrong gradient even at first order"),
    (
        "upsample_nearest",
        "backward overwrites instead of accumulating",
    ),
    ("upsample_bilinear", "no usable backward"),
    (".gather(", "backward fails at second order"),
    ("softmax_last_dim", "fused kernel without gradient"),
    (
        "LayerNorm",
        "fused kernel without gradient; use group/instance norm from safe_ops",
    ),
    (
        "layer_norm",
        "fused kernel without gradient; use group/instance norm from safe_ops",
    ),
    ("RmsNorm", "fused kernel without gradient"),
    ("rms_norm", "fused kernel without gradient"),
    ("conv1d", "wrong beyond first order"),
    (
        "avg_pool2d_with_stride",
        "kernel != stride has no backward; use safe_ops::avg_pool2d",
    ),
    (
        ".avg_pool2d(",
        "backward goes through upsample_nearest2d; use safe_ops::avg_pool2d",
    ),
];

/// Average pooling with kernel = stride = `k` (floor mode: trailing rows and columns that do not
/// fill a window are dropped), built from `narrow`, `reshape` and `mean`.
///
/// # Shapes
/// * `x`: `[N, C, H, W]` with `H, W >= k`
/// * returns `[N, C, H / k, W / k]`
pub fn avg_pool2d(x: &Tensor, k: usize) -> Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    if k == 0 || h < k || w < k {
        bail!("avg_pool2d: kernel {k} does not fit an input of height {h} and width {w}")
    }
    if fused_path(x) {
        return x.apply_op1(fused::AvgPool { k });
    }
    let (ho, wo) = (h / k, w / k);
    let x = if ho * k != h || wo * k != w {
        x.narrow(2, 0, ho * k)?.narrow(3, 0, wo * k)?
    } else {
        x.clone()
    };
    x.reshape((n, c, ho, k, wo, k))?.mean(5)?.mean(3)
}

/// Numerically stable softplus `log(1 + e^z) = relu(z) + log(1 + e^-|z|)`, smooth at every
/// order. On the CPU (f32/f64) one fused multithreaded pass whose derivatives (to order 12) are
/// single fused passes too, polynomials in `sigmoid(z)` and `1 - sigmoid(z)` (see
/// `safe_ops/fused.rs`); elsewhere composed of Candle ops, whose derivatives are those of the
/// textbook form away from `z = 0`, where both pieces are smooth and agree.
pub fn softplus(z: &Tensor) -> Result<Tensor> {
    if fused_path(z) {
        return z.apply_op1(fused::Apply(fused::Activation::Softplus));
    }
    let tail = (z.abs()?.neg()?.exp()? + 1.0)?.log()?;
    z.relu()? + tail
}

/// `softplus(z) - log 2`, zero at the origin: the activation of the deep-EBM runs of the
/// reference code.
pub fn shifted_softplus(z: &Tensor) -> Result<Tensor> {
    softplus(z)? - std::f64::consts::LN_2
}

/// Group normalisation without affine parameters: the channels are split into `groups`
/// groups, each normalised to zero mean and unit variance over its channels and positions.
///
/// # Shapes
/// * `x`: `[N, C, ...]` with `C` divisible by `groups`
/// * returns the shape of `x`
pub fn group_norm(x: &Tensor, groups: usize, eps: f64) -> Result<Tensor> {
    let dims = x.dims().to_vec();
    if dims.len() < 2 || groups == 0 || dims[1] % groups != 0 {
        bail!(
            "group_norm: {groups} groups do not divide the channels of an input of shape {dims:?}"
        )
    }
    if !(eps.is_finite() && eps > 0.0) {
        bail!("group_norm: eps must be finite and > 0, got {eps}")
    }
    let grouped = x.reshape((dims[0], groups, ()))?;
    let mean = grouped.mean_keepdim(D::Minus1)?;
    let centred = grouped.broadcast_sub(&mean)?;
    let var = centred.sqr()?.mean_keepdim(D::Minus1)?;
    centred.broadcast_div(&(var + eps)?.sqrt()?)?.reshape(dims)
}

/// Instance normalisation (each channel of each sample normalised over its positions), as
/// group normalisation with one channel per group.
///
/// # Shapes
/// * `x`: `[N, C, ...]`
/// * returns the shape of `x`
pub fn instance_norm(x: &Tensor, eps: f64) -> Result<Tensor> {
    let channels = x.dims().get(1).copied().unwrap_or(0);
    group_norm(x, channels.max(1), eps)
}

/// 2-D convolution with stride 1 and `padding` zeros on each side, with CPU kernels of its own
/// (see `safe_ops/conv_cpu.rs`): the input gradient is a convolution with the flipped,
/// transposed kernel instead of Candle's `conv_transpose2d`, the kernel gradient one matrix
/// product per sample instead of a convolution with the output gradient as its kernel, and
/// both backward passes are built from these same ops, so it differentiates correctly at every
/// order.
///
/// 3x3 kernels on large enough maps and channel counts (the ResNet EBM's layers) use Winograd's
/// algorithms for the forward pass, the input gradient and the kernel gradient
/// (`safe_ops/winograd.rs`): F(4x4, 3x3) on maps of 7 x 7 and more (up to 4x fewer
/// multiply-adds than the direct convolution), F(2x2, 3x3) on 6 x 6 (2.25x fewer). Which of
/// them may be used is set process-wide by [`set_conv_algorithm`]: F(4x4, 3x3) rounds about 5x
/// more than the direct convolution in f32 (relative RMS error about 1.5e-6 against 3e-7 on
/// the ResNet EBM's layers), [`ConvAlgorithm::Accurate`] keeps to F(2x2, 3x3), whose rounding
/// matches the direct convolution's.
///
/// The values equal `x.conv2d(weight, padding, 1, 1, 1)` (plus `bias`) up to rounding. On
/// non-CPU devices it is exactly that call.
///
/// # Shapes
/// * `x`: `[N, C_in, H, W]`; `weight`: `[C_out, C_in, K, K]` with `padding < K`; `bias`: `[C_out]`
/// * returns `[N, C_out, H + 2 padding - K + 1, W + 2 padding - K + 1]`
///
/// # Errors
/// Mismatched channels, a non-square kernel, `padding >= K`, a kernel larger than the padded
/// input, a bias of the wrong length or dtype, or a dtype other than f32/f64.
pub fn conv2d(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    padding: usize,
) -> Result<Tensor> {
    check_conv_args(x, weight, bias, padding)?;
    // The custom ops have CPU kernels only; elsewhere Candle's own convolution computes the
    // same values.
    if !x.device().is_cpu() {
        let y = x.conv2d(weight, padding, 1, 1, 1)?;
        return match bias {
            Some(b) => bias_add(&y, b),
            None => Ok(y),
        };
    }
    match bias {
        // One op for convolution and bias: no separate pass over the output, and in the
        // backward pass no intermediate gradient to create and accumulate.
        Some(b) => x.apply_op3(weight, b, conv::BiasedConv { padding }),
        None => x.apply_op2(weight, conv::FlipConv { padding }),
    }
}

/// `conv2d(&elu(x), weight, bias, padding)` as one op: the convolution of a pre-activation
/// residual block, which reads an ELU of its input. Values and derivatives of every order are
/// those of the two ops (to the bit on the CPU), but no `elu(x)` tensor enters the graph: in
/// the Winograd layers the ELU is applied inside the convolution's own copy of each sample,
/// and Candle's backward pass no longer creates, clears and accumulates a gradient for it.
/// When Candle's higher-order mode is off ([`crate::autodiff::higher_order_enabled`], checked
/// when the op is built) the backward pass is computed directly, the ELU's slope applied to
/// the input gradient as it is written (see `safe_ops/elu_conv.rs`); with it on, it is built
/// from differentiable ops.
/// On other devices and dtypes it is `conv2d(&elu(x)?, ..)`.
///
/// # Shapes
/// As [`conv2d`].
///
/// # Errors
/// As [`conv2d`].
pub fn elu_conv2d(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    padding: usize,
) -> Result<Tensor> {
    check_conv_args(x, weight, bias, padding)?;
    if !fused_path(x) {
        return conv2d(&elu(x)?, weight, bias, padding);
    }
    let first_order = !crate::autodiff::higher_order_enabled();
    match bias {
        Some(b) => x.apply_op3(
            weight,
            b,
            elu_conv::EluBiasedConv {
                padding,
                first_order,
            },
        ),
        None => x.apply_op2(
            weight,
            elu_conv::EluConv {
                padding,
                first_order,
            },
        ),
    }
}

/// `elu_conv2d(x, weight, None, padding) + residual` as one op: the last convolution of a
/// pre-activation residual block with its skip connection added (the block's other biases
/// folded into the residual by the caller). The sum is made as each sample's outputs are
/// written, and Candle's backward pass no longer creates and accumulates a gradient for the
/// convolution's output alone. Values and derivatives are those of the two ops; on other
/// devices and dtypes it is that sum.
///
/// # Shapes
/// * `x`, `weight`: as [`conv2d`]; `residual`: the output's shape, `[N, C_out, H_out, W_out]`
/// * returns `[N, C_out, H_out, W_out]`
///
/// # Errors
/// As [`conv2d`], and a residual of another shape or dtype.
pub fn elu_conv2d_add(
    x: &Tensor,
    weight: &Tensor,
    residual: &Tensor,
    padding: usize,
) -> Result<Tensor> {
    check_conv_args(x, weight, None, padding)?;
    let (n, _, h, w) = x.dims4()?;
    let (o, _, k, _) = weight.dims4()?;
    let out = [n, o, h + 2 * padding + 1 - k, w + 2 * padding + 1 - k];
    if residual.dims() != out || residual.dtype() != x.dtype() {
        bail!(
            "elu_conv2d_add: a {:?} residual of shape {out:?} expected, got {:?} of shape {:?}",
            x.dtype(),
            residual.dtype(),
            residual.dims()
        )
    }
    if !fused_path(x) || !residual.device().is_cpu() {
        return elu_conv2d(x, weight, None, padding)? + residual;
    }
    let first_order = !crate::autodiff::higher_order_enabled();
    x.apply_op3(
        weight,
        residual,
        elu_conv::EluConvAdd {
            padding,
            first_order,
        },
    )
}

/// `avg_pool2d(&elu_conv2d(x, weight, None, padding)?, k)? + residual` as one op: the last
/// convolution of a downsampling pre-activation residual block, pooled, with its skip
/// connection added (the block's biases folded into the residual by the caller, which the
/// pooling's linearity allows). The convolution's full-resolution output is pooled as soon as
/// it is computed and never enters the graph, so Candle's backward pass does not create and
/// accumulate a gradient for it. Values and derivatives are those of the separate ops; on
/// other devices and dtypes it is that expression.
///
/// # Shapes
/// * `x`, `weight`: as [`conv2d`]; `residual`: `[N, C_out, H_out / k, W_out / k]` (floor)
/// * returns `[N, C_out, H_out / k, W_out / k]`
///
/// # Errors
/// As [`conv2d`], a pooling larger than the output, and a residual of another shape or dtype.
pub fn elu_conv2d_pool_add(
    x: &Tensor,
    weight: &Tensor,
    residual: &Tensor,
    padding: usize,
    k: usize,
) -> Result<Tensor> {
    check_conv_args(x, weight, None, padding)?;
    let (n, _, h, w) = x.dims4()?;
    let (o, _, kk, _) = weight.dims4()?;
    let (ho, wo) = (h + 2 * padding + 1 - kk, w + 2 * padding + 1 - kk);
    if k == 0 || ho < k || wo < k {
        bail!("elu_conv2d_pool_add: a {k}x{k} pooling does not fit a {ho}x{wo} output")
    }
    let out = [n, o, ho / k, wo / k];
    if residual.dims() != out || residual.dtype() != x.dtype() {
        bail!(
            "elu_conv2d_pool_add: a {:?} residual of shape {out:?} expected, got {:?} of shape {:?}",
            x.dtype(),
            residual.dtype(),
            residual.dims()
        )
    }
    if !fused_path(x) || !residual.device().is_cpu() {
        return avg_pool2d(&elu_conv2d(x, weight, None, padding)?, k)? + residual;
    }
    let first_order = !crate::autodiff::higher_order_enabled();
    x.apply_op3(
        weight,
        residual,
        elu_conv::EluConvPoolAdd {
            padding,
            k,
            first_order,
        },
    )
}

/// The argument checks of [`conv2d`] and [`elu_conv2d`].
fn check_conv_args(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    padding: usize,
) -> Result<()> {
    let (_, c_in, h, w) = x.dims4()?;
    let (c_out, k_in, kh, kw) = weight.dims4()?;
    if c_in != k_in {
        bail!("conv2d: the input has {c_in} channels, the kernel expects {k_in}")
    }
    if kh != kw || padding >= kh {
        bail!("conv2d: needs a square kernel and padding < kernel size, got {kh}x{kw} with padding {padding}")
    }
    if h + 2 * padding < kh || w + 2 * padding < kw {
        bail!("conv2d: a {kh}x{kw} kernel does not fit a padded {h}x{w} input")
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

/// Which algorithms [`conv2d`] may use for 3x3 stride-1 convolutions on the CPU (the forward
/// pass, the input gradient and the kernel gradient alike). Set once per process with
/// [`set_conv_algorithm`], before training: every choice computes the same convolution, they
/// differ in speed and in rounding.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ConvAlgorithm {
    /// Winograd's F(4x4, 3x3) on output maps of 7 x 7 and more and F(2x2, 3x3) on 6 x 6 (with
    /// at least 16 channels each way), the direct convolution elsewhere: the fastest, with f32
    /// rounding errors about 5x the direct convolution's on the ResNet EBM's layers.
    #[default]
    Fastest,
    /// F(2x2, 3x3) wherever Winograd applies: rounding like the direct convolution's, up to a
    /// third slower per layer than [`ConvAlgorithm::Fastest`] (about 15% per FD step of the
    /// ResNet EBM, see `docs/performance.md`). For f32 training where
    /// finite differences of energies approach f32 resolution (see
    /// `docs/fd-decomposition.md`).
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

/// The [`ConvAlgorithm`] in force, as its discriminant.
static CONV_ALGORITHM: AtomicU8 = AtomicU8::new(ConvAlgorithm::Fastest as u8);

/// Sets the [`ConvAlgorithm`] of every later [`conv2d`] call in this process (its backward
/// passes included). The default is [`ConvAlgorithm::Fastest`].
pub fn set_conv_algorithm(algorithm: ConvAlgorithm) {
    CONV_ALGORITHM.store(algorithm as u8, Ordering::Relaxed);
}

/// The [`ConvAlgorithm`] in force (see [`set_conv_algorithm`]).
pub fn conv_algorithm() -> ConvAlgorithm {
    match CONV_ALGORITHM.load(Ordering::Relaxed) {
        x if x == ConvAlgorithm::Accurate as u8 => ConvAlgorithm::Accurate,
        x if x == ConvAlgorithm::Direct as u8 => ConvAlgorithm::Direct,
        _ => ConvAlgorithm::Fastest,
    }
}

#[macro_use]
mod storage;
mod buffers;
mod conv_cpu;
mod elu_conv;
mod fused;
mod simd;
mod small_map;
mod winograd;

/// Whether the fused CPU kernels of `safe_ops/fused.rs` handle `x`; elsewhere (other devices,
/// half-precision types) the same values come from Candle's own ops.
fn fused_path(x: &Tensor) -> bool {
    x.device().is_cpu() && matches!(x.dtype(), DType::F32 | DType::F64)
}

/// ELU with `alpha = 1` (`x` for `x >= 0`, `e^x - 1` below), as one multithreaded pass on the
/// CPU whose derivatives of every order are single fused passes too; the values and
/// derivatives of `x.elu(1.0)` up to rounding.
///
/// # Shapes
/// * `x`: any; returns the shape of `x`
pub fn elu(x: &Tensor) -> Result<Tensor> {
    if fused_path(x) {
        x.apply_op1(fused::Apply(fused::Activation::Elu))
    } else {
        x.elu(1.0)
    }
}

/// `x + b` with the bias broadcast over every axis but the channel axis, as one pass on the
/// CPU; the bias gradient is a per-channel sum instead of Candle's strided reduction.
///
/// # Shapes
/// * `x`: `[N, C, ...]`; `b`: `[C]`
/// * returns the shape of `x`
///
/// # Errors
/// A bias whose length is not the channel count, or different dtypes.
pub fn bias_add(x: &Tensor, b: &Tensor) -> Result<Tensor> {
    let dims = x.dims();
    if dims.len() < 2 || b.dims() != [dims[1]] {
        bail!(
            "bias_add: a bias of shape [C] for input [N, C, ...] expected, got bias {:?} for input {dims:?}",
            b.dims()
        )
    }
    if fused_path(x) && b.device().is_cpu() && b.dtype() == x.dtype() {
        x.apply_op2(b, fused::BiasAdd)
    } else {
        let mut shape = vec![1; dims.len()];
        shape[1] = dims[1];
        x.broadcast_add(&b.reshape(shape)?)
    }
}

mod conv {
    //! The custom ops behind [`super::conv2d`]: the convolution (with or without a fused bias)
    //! and its kernel gradient, each with a backward pass built from these ops and the fused
    //! per-channel sum, so that derivatives of every order exist.

    use candle_core::{
        bail, CpuStorage, CustomOp1, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor,
    };

    use super::conv_cpu::{self, Geometry};
    use super::fused::ChannelSum;

    /// `x * w` (stride 1, `padding` zeros each side).
    pub(super) struct FlipConv {
        pub(super) padding: usize,
    }

    /// `x * w + b`: [`FlipConv`] with the bias added to its output in place.
    pub(super) struct BiasedConv {
        pub(super) padding: usize,
    }

    /// The kernel gradient of [`FlipConv`] from its input `x` and output gradient `g`.
    struct KernelGrad {
        padding: usize,
        k: usize,
    }

    /// `[O, C, K, K] -> [C, O, K, K]` with both spatial axes reversed (the kernel of a
    /// convolution's input gradient), one pass. A permutation of the elements that is its own
    /// inverse, hence its own adjoint: the backward pass applies the op to the gradient, so
    /// derivatives of every order exist.
    struct FlipTranspose;

    impl CustomOp1 for FlipTranspose {
        fn name(&self) -> &'static str {
            "conv2d-kernel-flip"
        }

        fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
            let (o, c, k, k2) = l.shape().dims4()?;
            if k != k2 {
                bail!(
                    "conv2d kernel flip: a square kernel expected, got {:?}",
                    l.dims()
                )
            }
            let out = on_float!(s, l, "conv2d kernel flip", |w| conv_cpu::flip_transpose(
                &w,
                (o, c, k)
            ));
            Ok((out, Shape::from((c, o, k, k))))
        }

        fn bwd(&self, _w: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
            Ok(Some(grad.apply_op1(FlipTranspose)?))
        }
    }

    fn conv(x: &Tensor, w: &Tensor, padding: usize) -> Result<Tensor> {
        x.apply_op2(w, FlipConv { padding })
    }

    /// The input gradient of `conv(·, w, padding)` at output gradient `g`: correlate `g` with
    /// the flipped kernel, in and out channels swapped; padding `K - 1 - p` restores the input
    /// size (stride 1).
    pub(super) fn input_grad(g: &Tensor, w: &Tensor, padding: usize) -> Result<Tensor> {
        let k = w.dim(2)?;
        let w_flip = w.apply_op1(FlipTranspose)?;
        conv(&g.contiguous()?, &w_flip, k - 1 - padding)
    }

    pub(super) fn kernel_grad(x: &Tensor, g: &Tensor, padding: usize, k: usize) -> Result<Tensor> {
        x.contiguous()?
            .apply_op2(&g.contiguous()?, KernelGrad { padding, k })
    }

    /// The geometry of `x` (layout `lx`) convolved with the kernel of layout `lw`, checked:
    /// a square kernel whose input channels are those of `x`.
    pub(super) fn conv_geometry(lx: &Layout, lw: &Layout, padding: usize) -> Result<Geometry> {
        let (o, c, k, k2) = lw.shape().dims4()?;
        let g = geometry(lx, o, k, padding)?;
        if k != k2 || c != g.c {
            bail!(
                "conv2d: kernel {:?} does not match input {:?}",
                lw.dims(),
                lx.dims()
            )
        }
        Ok(g)
    }

    /// Checks that the bias of layout `lb` has one value per output channel (`o`); `name` is
    /// the op's, for the error.
    pub(super) fn check_bias(lb: &Layout, o: usize, name: &str) -> Result<()> {
        if lb.dims() != [o] {
            bail!(
                "{name}: a bias of shape [{o}] expected, got {:?}",
                lb.dims()
            )
        }
        Ok(())
    }

    fn geometry(x: &Layout, o: usize, k: usize, padding: usize) -> Result<Geometry> {
        let (n, c, h, w) = x.shape().dims4()?;
        if padding >= k || h + 2 * padding < k || w + 2 * padding < k {
            bail!("conv2d: a {k}x{k} kernel with padding {padding} does not fit a {h}x{w} input")
        }
        Ok(Geometry {
            n,
            c,
            h,
            w,
            o,
            k,
            p: padding,
        })
    }

    impl CustomOp2 for FlipConv {
        fn name(&self) -> &'static str {
            "flip-conv2d"
        }

        fn cpu_fwd(
            &self,
            s1: &CpuStorage,
            l1: &Layout,
            s2: &CpuStorage,
            l2: &Layout,
        ) -> Result<(CpuStorage, Shape)> {
            let g = conv_geometry(l1, l2, self.padding)?;
            let (o, (ho, wo)) = (g.o, g.out_hw());
            let out = on_float2!(s1, l1, s2, l2, "conv2d", |x, w| conv_cpu::forward(
                &g, &x, &w
            ));
            Ok((out, Shape::from((g.n, o, ho, wo))))
        }

        fn bwd(
            &self,
            x: &Tensor,
            w: &Tensor,
            _res: &Tensor,
            grad: &Tensor,
        ) -> Result<(Option<Tensor>, Option<Tensor>)> {
            let k = w.dim(2)?;
            let gx = input_grad(grad, w, self.padding)?;
            let gw = kernel_grad(x, grad, self.padding, k)?;
            Ok((Some(gx), Some(gw)))
        }
    }

    impl CustomOp3 for BiasedConv {
        fn name(&self) -> &'static str {
            "flip-conv2d-bias"
        }

        fn cpu_fwd(
            &self,
            s1: &CpuStorage,
            l1: &Layout,
            s2: &CpuStorage,
            l2: &Layout,
            s3: &CpuStorage,
            l3: &Layout,
        ) -> Result<(CpuStorage, Shape)> {
            let g = conv_geometry(l1, l2, self.padding)?;
            let (o, (ho, wo)) = (g.o, g.out_hw());
            check_bias(l3, o, "conv2d")?;
            let out = on_float3!(
                (s1, l1),
                (s2, l2),
                (s3, l3),
                "conv2d",
                "input, kernel and bias",
                |x, w, b| conv_cpu::forward_biased(&g, (&x, false), &w, Some(&b))
            );
            Ok((out, Shape::from((g.n, o, ho, wo))))
        }

        fn bwd(
            &self,
            x: &Tensor,
            w: &Tensor,
            _b: &Tensor,
            _res: &Tensor,
            grad: &Tensor,
        ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
            let k = w.dim(2)?;
            let gx = input_grad(grad, w, self.padding)?;
            let gw = kernel_grad(x, grad, self.padding, k)?;
            let gb = grad.apply_op1(ChannelSum)?;
            Ok((Some(gx), Some(gw), Some(gb)))
        }
    }

    impl CustomOp2 for KernelGrad {
        fn name(&self) -> &'static str {
            "conv2d-kernel-grad"
        }

        fn cpu_fwd(
            &self,
            s1: &CpuStorage,
            l1: &Layout,
            s2: &CpuStorage,
            l2: &Layout,
        ) -> Result<(CpuStorage, Shape)> {
            let (gn, o, gh, gw) = l2.shape().dims4()?;
            let g = geometry(l1, o, self.k, self.padding)?;
            if gn != g.n || (gh, gw) != g.out_hw() {
                bail!(
                    "conv2d kernel gradient: output gradient {:?} does not match input {:?}",
                    l2.dims(),
                    l1.dims()
                )
            }
            let out = on_float2!(s1, l1, s2, l2, "conv2d kernel gradient", |x, d| {
                conv_cpu::kernel_grad(&g, &x, &d)
            });
            Ok((out, Shape::from((o, g.c, self.k, self.k))))
        }

        /// `gw(x, g)` is bilinear with `<gw(x, g), gbar> = <conv(x, gbar), g>`, so its
        /// derivatives are a convolution's input gradient (for `x`) and a convolution (for `g`).
        fn bwd(
            &self,
            x: &Tensor,
            g: &Tensor,
            _res: &Tensor,
            gbar: &Tensor,
        ) -> Result<(Option<Tensor>, Option<Tensor>)> {
            let dx = input_grad(g, gbar, self.padding)?;
            let dg = conv(&x.contiguous()?, &gbar.contiguous()?, self.padding)?;
            Ok((Some(dx), Some(dg)))
        }
    }
}
