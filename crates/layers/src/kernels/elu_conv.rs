//! The custom ops behind [`crate::elu_conv2d`]: `conv2d(elu(x), w) (+ b)` as one op, for the
//! pre-activation residual blocks of the ResNet EBM (FD-SM App. C.2), where every 3x3
//! convolution reads an ELU of the block's activations.
//!
//! Forward, the ELU is applied where the convolution lays its input out anyway: in the
//! Winograd layers inside the channels-last copy of each sample (in cache, `winograd.rs`),
//! elsewhere into a temporary. No activation-sized `elu(x)` tensor enters the graph, so
//! Candle's backward pass does not create, clear and accumulate its gradient.
//!
//! Backward there are two paths, chosen when the op is built:
//! - Where gradients may be differentiated again (Candle's higher-order mode, see
//!   [`crate::grad_mode`]), the backward pass is the one of `conv2d(elu(x))` built from
//!   differentiable ops ([`crate::elu`], the convolution's input and kernel gradients, the ELU's
//!   derivative op), so every order of derivative stays correct.
//! - Otherwise (first-order training, e.g. the FD objectives) it is computed directly into
//!   fresh tensors: the input gradient as a convolution with the flipped kernel whose outputs
//!   are multiplied by `elu'(x)` as they are written (Winograd layers) or in one pass after,
//!   the kernel gradient with the ELU applied inside its layout again. Candle detaches every
//!   gradient in that mode, so nothing differentiates them.
//!
//! Both paths, and the forward pass, evaluate the same formulas as `conv2d(&elu(x), ..)`
//! (`fused::elu_value`, `fused::elu_scaled_slope`) with the same kernels, so values and
//! gradients are those of the unfused ops to the bit.

use candle_core::{
    bail, CpuStorage, CustomOp2, CustomOp3, DType, Device, Layout, Result, Shape, Storage, Tensor,
    WithDType,
};

use super::conv_cpu::{self, Epilogue, Geometry};
use super::conv_ops::{check_bias, conv_geometry, input_grad, kernel_grad, ConvSpec};
use super::dense::Element;
use super::fused::{avg_pool_values, elu_slope_op, ChannelSum, PoolSpread};
use super::storage::elements;

/// `conv(elu(x), w)`; `first_order` selects the direct backward pass (see the module docs).
pub(crate) struct EluConv {
    pub(crate) spec: ConvSpec,
    pub(crate) first_order: bool,
}

/// `conv(elu(x), w) + b`.
pub(crate) struct EluBiasedConv {
    pub(crate) spec: ConvSpec,
    pub(crate) first_order: bool,
}

impl CustomOp2 for EluConv {
    fn name(&self) -> &'static str {
        "elu-conv2d"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g = conv_geometry(l1, l2, self.spec)?;
        let (ho, wo) = g.out_hw();
        let out = on_float2!(s1, l1, s2, l2, "elu conv2d", |x, w| {
            conv_cpu::forward_biased(&g, (&x, true), &w, None)
        });
        Ok((out, Shape::from((g.n, g.o, ho, wo))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (gx, gw) = gradients(x, w, grad, self.spec, self.first_order)?;
        Ok((Some(gx), kernel_or_dropped(gw, w)?))
    }
}

impl CustomOp3 for EluBiasedConv {
    fn name(&self) -> &'static str {
        "elu-conv2d-bias"
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
        let (ho, wo) = g.out_hw();
        check_bias(l3, g.o, "elu conv2d")?;
        let out = on_float3!(
            (s1, l1),
            (s2, l2),
            (s3, l3),
            "elu conv2d",
            "input, kernel and bias",
            |x, w, b| conv_cpu::forward_biased(&g, (&x, true), &w, Some(&b))
        );
        Ok((out, Shape::from((g.n, g.o, ho, wo))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (gx, gw) = gradients(x, w, grad, self.spec, self.first_order)?;
        let gb = match gw {
            Some(_) => Some(grad.apply_op1(ChannelSum)?),
            None => crate::grad_mode::dropped_gradient(b)?,
        };
        Ok((Some(gx), kernel_or_dropped(gw, w)?, gb))
    }
}

/// The kernel gradient [`gradients`] computed, or the one a skipped pass returns for `w`.
fn kernel_or_dropped(gw: Option<Tensor>, w: &Tensor) -> Result<Option<Tensor>> {
    match gw {
        Some(g) => Ok(Some(g)),
        None => crate::grad_mode::dropped_gradient(w),
    }
}

/// The input and kernel gradients of `conv(elu(x), w)` at output gradient `grad`. The kernel
/// gradient is `None` in a pass for an input gradient only
/// ([`crate::grad_mode::input_gradients_only`]) on the differentiable path; the direct
/// first-order kernels compute both in one pass.
fn gradients(
    x: &Tensor,
    w: &Tensor,
    grad: &Tensor,
    spec: ConvSpec,
    first_order: bool,
) -> Result<(Tensor, Option<Tensor>)> {
    if !first_order {
        // Differentiable: the backward pass of `conv2d(elu(x))` in ops.
        let k = w.dim(2)?;
        let ge = input_grad(grad, w, spec)?;
        let gx = elu_slope_op(&ge, x)?;
        if crate::grad_mode::parameter_gradients_skipped() {
            return Ok((gx, None));
        }
        let e = crate::elu(x)?;
        return Ok((gx, Some(kernel_grad(&e, grad, spec, k)?)));
    }
    let (x, w, grad) = (x.contiguous()?, w.contiguous()?, grad.contiguous()?);
    let (n, c, h, wd) = x.dims4()?;
    let (o, _, k, _) = w.dims4()?;
    let g = Geometry {
        n,
        c,
        h,
        w: wd,
        o,
        k,
        p: spec.padding,
        algorithm: spec.algorithm,
    };
    if grad.dims() != [n, o, g.out_hw().0, g.out_hw().1] {
        bail!(
            "elu conv2d backward: output gradient {:?} for input {:?} and kernel {:?}",
            grad.dims(),
            x.dims(),
            w.dims()
        )
    }
    let kernel = !crate::grad_mode::parameter_gradients_skipped();
    match x.dtype() {
        DType::F32 => direct_tensors::<f32>(&g, &x, &w, &grad, kernel),
        DType::F64 => direct_tensors::<f64>(&g, &x, &w, &grad, kernel),
        dtype => bail!("elu conv2d backward: f32 or f64 expected, got {dtype:?}"),
    }
}

/// [`direct`] on the CPU storages of contiguous `x`, `w` and `grad` of element type `T`, as
/// fresh tensors.
fn direct_tensors<T: Element + WithDType>(
    g: &Geometry,
    x: &Tensor,
    w: &Tensor,
    grad: &Tensor,
    kernel: bool,
) -> Result<(Tensor, Option<Tensor>)> {
    let (gx, gw) = {
        let guards = [x, w, grad].map(|t| t.storage_and_layout());
        let mut slices = Vec::with_capacity(3);
        for (storage, layout) in &guards {
            let Storage::Cpu(cpu) = &**storage else {
                bail!("elu conv2d backward: CPU tensors expected")
            };
            slices.push(elements(cpu.as_slice::<T>()?, layout));
        }
        direct(g, &slices[0], &slices[1], &slices[2], kernel)
    };
    Ok((
        Tensor::from_vec(gx, x.shape(), &Device::Cpu)?,
        match gw {
            Some(gw) => Some(Tensor::from_vec(gw, w.shape(), &Device::Cpu)?),
            None => None,
        },
    ))
}

/// The first-order gradients computed directly: `(elu'(x) * conv_T(grad, w), kernel gradient
/// of conv at elu(x))`, the values of [`input_grad`] followed by the ELU's slope and of
/// [`kernel_grad`] at `elu(x)`; the kernel gradient only when `kernel` is set.
fn direct<T: Element>(
    g: &Geometry,
    x: &[T],
    w: &[T],
    grad: &[T],
    kernel: bool,
) -> (Vec<T>, Option<Vec<T>>) {
    let (ho, wo) = g.out_hw();
    // The flipped, transposed kernel `[C, O, K, K]` and the geometry of the input gradient's
    // convolution over the output gradient (padding `K - 1 - p` restores the input size).
    let w_flip = conv_cpu::flip_transpose(w, (g.o, g.c, g.k));
    let gi = Geometry {
        n: g.n,
        c: g.o,
        h: ho,
        w: wo,
        o: g.c,
        k: g.k,
        p: g.k - 1 - g.p,
        algorithm: g.algorithm,
    };
    let gx = conv_cpu::forward_ends(&gi, (grad, false), &w_flip, Epilogue::EluSlope(x));
    let gw = kernel.then(|| conv_cpu::kernel_grad_elu(g, x, grad));
    (gx, gw)
}

/// `conv(elu(x), w) + r` for a residual `r` of the output's shape.
pub(crate) struct EluConvAdd {
    pub(crate) spec: ConvSpec,
    pub(crate) first_order: bool,
}

impl CustomOp3 for EluConvAdd {
    fn name(&self) -> &'static str {
        "elu-conv2d-add"
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
        let (ho, wo) = g.out_hw();
        if l3.dims() != [g.n, g.o, ho, wo] {
            bail!(
                "elu conv2d add: a residual of the output's shape {:?} expected, got {:?}",
                [g.n, g.o, ho, wo],
                l3.dims()
            )
        }
        let out = on_float3!(
            (s1, l1),
            (s2, l2),
            (s3, l3),
            "elu conv2d add",
            "input, kernel and residual",
            |x, w, r| conv_cpu::forward_ends(&g, (&x, true), &w, Epilogue::Add(&r))
        );
        Ok((out, Shape::from((g.n, g.o, ho, wo))))
    }

    /// The residual's gradient is the output gradient itself.
    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _r: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (gx, gw) = gradients(x, w, grad, self.spec, self.first_order)?;
        Ok((Some(gx), kernel_or_dropped(gw, w)?, Some(grad.clone())))
    }
}

/// `avg_pool2d(conv(elu(x), w), k) + r` for a residual `r` of the pooled output's shape: the
/// last convolution of a downsampling block with its skip connection.
pub(crate) struct EluConvPoolAdd {
    pub(crate) spec: ConvSpec,
    pub(crate) k: usize,
    pub(crate) first_order: bool,
}

impl EluConvPoolAdd {
    /// The convolution's geometry and its pooled output shape, checked.
    fn shapes(&self, lx: &Layout, lw: &Layout) -> Result<(Geometry, [usize; 4])> {
        let g = conv_geometry(lx, lw, self.spec)?;
        let (ho, wo) = g.out_hw();
        let k = self.k;
        if k == 0 || ho < k || wo < k {
            bail!("elu conv2d pool: a {k}x{k} pooling does not fit a {ho}x{wo} output")
        }
        Ok((g, [g.n, g.o, ho / k, wo / k]))
    }
}

/// `avg_pool(conv(elu(x), w)) + r`.
fn pooled_forward<T: Element>(g: &Geometry, k: usize, x: &[T], w: &[T], r: &[T]) -> Vec<T> {
    let (ho, wo) = g.out_hw();
    let y = conv_cpu::forward_ends(g, (x, true), w, Epilogue::None);
    let mut out = avg_pool_values(&y, k, ho, wo);
    drop(y);
    conv_cpu::apply_epilogue(&mut out, Epilogue::Add(r));
    out
}

impl CustomOp3 for EluConvPoolAdd {
    fn name(&self) -> &'static str {
        "elu-conv2d-pool-add"
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
        let (g, pooled) = self.shapes(l1, l2)?;
        if l3.dims() != pooled {
            bail!(
                "elu conv2d pool add: a residual of the pooled output's shape {pooled:?} expected, got {:?}",
                l3.dims()
            )
        }
        let out = on_float3!(
            (s1, l1),
            (s2, l2),
            (s3, l3),
            "elu conv2d pool add",
            "input, kernel and residual",
            |x, w, r| pooled_forward(&g, self.k, &x, &w, &r)
        );
        Ok((out, Shape::from(pooled.to_vec())))
    }

    /// The pooled gradient spread back over the convolution's output (the pooling's adjoint,
    /// a differentiable op), then the gradients of `conv(elu(x), w)`; the residual's gradient
    /// is the output gradient itself.
    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _r: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (ho, wo) = conv_geometry(x.layout(), w.layout(), self.spec)?.out_hw();
        let spread = PoolSpread {
            k: self.k,
            h: ho,
            w: wo,
        };
        let dy = grad.contiguous()?.apply_op1(spread)?;
        let (gx, gw) = gradients(x, w, &dy, self.spec, self.first_order)?;
        Ok((Some(gx), kernel_or_dropped(gw, w)?, Some(grad.clone())))
    }
}
