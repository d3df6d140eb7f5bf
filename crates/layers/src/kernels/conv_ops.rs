//! The custom ops behind [`crate::conv2d`]: the stride-1 convolution (with or without a fused
//! bias) and its kernel gradient, each with a backward pass built from these ops and the fused
//! per-channel sum, so that derivatives of every order exist.

use candle_core::{
    bail, CpuStorage, CustomOp1, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor,
};

use super::conv_cpu::{self, Geometry};
use super::fused::ChannelSum;
use crate::ConvAlgorithm;

/// Zero padding on each side and the algorithm of a stride-1 convolution.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ConvSpec {
    pub(crate) padding: usize,
    pub(crate) algorithm: ConvAlgorithm,
}

impl ConvSpec {
    /// The same algorithm with another padding.
    pub(crate) fn with_padding(self, padding: usize) -> Self {
        Self { padding, ..self }
    }
}

/// `x * w` (stride 1, `padding` zeros each side).
pub(crate) struct FlipConv {
    pub(crate) spec: ConvSpec,
}

/// `x * w + b`: [`FlipConv`] with the bias added to its output in place.
pub(crate) struct BiasedConv {
    pub(crate) spec: ConvSpec,
}

/// The kernel gradient of [`FlipConv`] from its input `x` and output gradient `g`.
struct KernelGrad {
    spec: ConvSpec,
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

fn conv(x: &Tensor, w: &Tensor, spec: ConvSpec) -> Result<Tensor> {
    x.apply_op2(w, FlipConv { spec })
}

/// The input gradient of `conv(·, w, padding)` at output gradient `g`: correlate `g` with
/// the flipped kernel, in and out channels swapped; padding `K - 1 - p` restores the input
/// size (stride 1).
pub(crate) fn input_grad(g: &Tensor, w: &Tensor, spec: ConvSpec) -> Result<Tensor> {
    let k = w.dim(2)?;
    let w_flip = w.apply_op1(FlipTranspose)?;
    conv(
        &g.contiguous()?,
        &w_flip,
        spec.with_padding(k - 1 - spec.padding),
    )
}

/// The kernel gradient of `conv(·, ·, spec)` with a `k x k` kernel at input `x` and output
/// gradient `g`.
pub(crate) fn kernel_grad(x: &Tensor, g: &Tensor, spec: ConvSpec, k: usize) -> Result<Tensor> {
    x.contiguous()?
        .apply_op2(&g.contiguous()?, KernelGrad { spec, k })
}

/// The geometry of `x` (layout `lx`) convolved with the kernel of layout `lw`, checked:
/// a square kernel whose input channels are those of `x`.
pub(crate) fn conv_geometry(lx: &Layout, lw: &Layout, spec: ConvSpec) -> Result<Geometry> {
    let (o, c, k, k2) = lw.shape().dims4()?;
    let g = geometry(lx, o, k, spec)?;
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
pub(crate) fn check_bias(lb: &Layout, o: usize, name: &str) -> Result<()> {
    if lb.dims() != [o] {
        bail!(
            "{name}: a bias of shape [{o}] expected, got {:?}",
            lb.dims()
        )
    }
    Ok(())
}

fn geometry(x: &Layout, o: usize, k: usize, spec: ConvSpec) -> Result<Geometry> {
    let (n, c, h, w) = x.shape().dims4()?;
    let padding = spec.padding;
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
        algorithm: spec.algorithm,
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
        let g = conv_geometry(l1, l2, self.spec)?;
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
        use crate::grad_mode::{dropped_gradient, gradient_if_needed};
        let k = w.dim(2)?;
        // No input gradient for data (a first layer): nothing would read it.
        let gx = gradient_if_needed(x, || input_grad(grad, w, self.spec))?;
        if crate::grad_mode::parameter_gradients_skipped() {
            // A pass for an input gradient only: the kernel gradient would be dropped.
            return Ok((gx, dropped_gradient(w)?));
        }
        let gw = gradient_if_needed(w, || kernel_grad(x, grad, self.spec, k))?;
        Ok((gx, gw))
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
        let g = conv_geometry(l1, l2, self.spec)?;
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
        b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        use crate::grad_mode::{dropped_gradient, gradient_if_needed};
        let k = w.dim(2)?;
        let gx = gradient_if_needed(x, || input_grad(grad, w, self.spec))?;
        if crate::grad_mode::parameter_gradients_skipped() {
            return Ok((gx, dropped_gradient(w)?, dropped_gradient(b)?));
        }
        let gw = gradient_if_needed(w, || kernel_grad(x, grad, self.spec, k))?;
        let gb = gradient_if_needed(b, || grad.apply_op1(ChannelSum))?;
        Ok((gx, gw, gb))
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
        let g = geometry(l1, o, self.k, self.spec)?;
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
        let dx = input_grad(g, gbar, self.spec)?;
        let dg = conv(&x.contiguous()?, &gbar.contiguous()?, self.spec)?;
        Ok((Some(dx), Some(dg)))
    }
}
