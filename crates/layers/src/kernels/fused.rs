//! Fused, multithreaded CPU kernels for the elementwise and reduction steps of a convolutional
//! energy: ELU and softplus with their derivatives, the per-channel bias and average pooling, each a
//! Candle custom op whose backward pass is again built from these ops (and Candle's `mul`), so
//! derivatives of every order exist, as score matching needs (FD-SM Sec. 2, SSM/DSM losses
//! differentiate through the input gradient).
//!
//! Candle composes these from several ops each (ELU's derivative alone is six passes over
//! memory with fresh buffers, the bias gradient a strided reduction over three axes), all but a
//! few on one thread. Here each is one pass, split over threads in fixed element ranges; no op
//! reduces across a thread split, so results do not depend on the thread count. The
//! elementwise loops are compiled for AVX-512 or AVX2 where the CPU has them (chosen at run
//! time, same results on every path), with an f32 exponential of their own that vectorises.
//!
//! Pairs of linear ops are each other's adjoints: the channel sum and the channel broadcast, the
//! average pooling and its spreading back onto the input grid.

use candle_core::{bail, CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::buffers::{par_build, par_build_in_order};
use super::fast_math::{exp_f32, ln_1p_f32};
use super::simd::vectorised;

/// Elements per parallel task: small tensors stay on one thread.
const PAR_MIN: usize = 1 << 14;

/// The floating-point element types of the kernels (`Default` is zero).
pub(crate) trait Float:
    Copy
    + Default
    + Send
    + Sync
    + PartialOrd
    + std::ops::Add<Output = Self>
    + std::ops::Sub<Output = Self>
    + std::ops::Mul<Output = Self>
    + std::ops::Div<Output = Self>
    + 'static
{
    const ZERO: Self;
    const ONE: Self;
    fn exp(self) -> Self;
    fn ln_1p(self) -> Self;
    fn from_usize(n: usize) -> Self;
    fn from_i64(n: i64) -> Self;
    fn powi(self, n: i32) -> Self;
}

impl Float for f32 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
    #[inline(always)]
    fn exp(self) -> Self {
        exp_f32(self)
    }
    #[inline(always)]
    fn ln_1p(self) -> Self {
        ln_1p_f32(self)
    }
    #[inline(always)]
    fn from_usize(n: usize) -> Self {
        n as f32
    }
    #[inline(always)]
    fn from_i64(n: i64) -> Self {
        n as f32
    }
    #[inline(always)]
    fn powi(self, n: i32) -> Self {
        f32::powi(self, n)
    }
}

impl Float for f64 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
    #[inline(always)]
    fn exp(self) -> Self {
        f64::exp(self)
    }
    #[inline(always)]
    fn ln_1p(self) -> Self {
        f64::ln_1p(self)
    }
    #[inline(always)]
    fn from_usize(n: usize) -> Self {
        n as f64
    }
    #[inline(always)]
    fn from_i64(n: i64) -> Self {
        n as f64
    }
    #[inline(always)]
    fn powi(self, n: i32) -> Self {
        f64::powi(self, n)
    }
}

/// `f` applied to every element, in parallel chunks.
///
/// `f` is taken by value (a function item or a closure over copies), so that the loop calls it
/// directly and inlines it; called through a reference it stayed an out-of-line scalar call.
fn map1<T: Float>(x: &[T], f: impl Fn(T) -> T + Sync + Copy) -> Vec<T> {
    par_build_in_order(x.len(), PAR_MIN, 1, |i, out| {
        let x = &x[i * PAR_MIN..][..out.capacity()];
        vectorised(|| out.extend_map(x, f))
    })
}

/// `f` applied to every pair of elements, in parallel chunks.
///
/// # Panics
/// `b` shorter than `a`.
fn map2<T: Float>(a: &[T], b: &[T], f: impl Fn(T, T) -> T + Sync + Copy) -> Vec<T> {
    par_build_in_order(a.len(), PAR_MIN, 1, |i, out| {
        let n = out.capacity();
        let (a, b) = (&a[i * PAR_MIN..][..n], &b[i * PAR_MIN..][..n]);
        vectorised(|| out.extend_map2(a, b, f))
    })
}

/// The activations with fused kernels for their values and for every derivative order.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Activation {
    /// ELU with `alpha = 1`: `x` for `x >= 0`, `e^x - 1` below (Candle's convention at `-0`).
    /// `elu'(x) = 1` for `x > 0` and `e^x` for `x <= 0`; every higher derivative is `0` for
    /// `x > 0` and `e^x` for `x <= 0` (the convention of Candle's own ELU backward at `0`).
    Elu,
    /// Softplus `log(1 + e^z) = max(z, 0) + log1p(e^-|z|)`. With `p = sigmoid(z)` and
    /// `q = 1 - p`, both from one `e^-|z|` without cancellation, `d/dz p = p q` and
    /// `d/dz q = -p q`, so every derivative is a polynomial `sum c_ij p^i q^j`, starting from
    /// `softplus' = p` (see [`softplus_terms`]).
    Softplus,
}

/// ELU of one value (alpha = 1). Both sides are computed and one selected (no branch), so
/// loops over it vectorise; the exponent is taken at `min(v, 0)` (NaN stays NaN), where it
/// cannot overflow. Shared by [`Activation::Elu`] and the convolutions that apply ELU to their
/// input (`kernels/elu_conv.rs`), so both give the same bits.
#[inline(always)]
pub(crate) fn elu_value<T: Float>(v: T) -> T {
    let below = (if v > T::ZERO { T::ZERO } else { v }).exp() - T::ONE;
    if v >= T::ZERO {
        v
    } else {
        below
    }
}

/// `g * elu'(x)`: `g` for `x > 0`, `g e^x` for `x <= 0`, the first derivative of
/// [`elu_value`] as [`ScaledDerivative`] computes it (shared for the same reason).
#[inline(always)]
pub(crate) fn elu_scaled_slope<T: Float>(g: T, x: T) -> T {
    let below = (if x > T::ZERO { T::ZERO } else { x }).exp();
    g * if x > T::ZERO { T::ONE } else { below }
}

/// `softplus(z) = max(z, 0) + ln(1 + e^-|z|)`, both sides selected without a branch; a named
/// function rather than a closure so that it is inlined into the vectorised loop.
#[inline(always)]
pub(crate) fn softplus_value<T: Float>(z: T) -> T {
    let relu = if z > T::ZERO { z } else { T::ZERO };
    let neg_abs = if z > T::ZERO { T::ZERO - z } else { z };
    relu + neg_abs.exp().ln_1p()
}

/// `g * softplus'(z) = g * sigmoid(z)`, from `e = e^-|z|` without overflow: `1 / (1 + e)` for
/// `z > 0`, `e / (1 + e)` otherwise (the first term of [`softplus_terms`]).
#[inline(always)]
fn softplus_scaled_slope<T: Float>(g: T, z: T) -> T {
    let e = (if z > T::ZERO { T::ZERO - z } else { z }).exp();
    let p = (if z > T::ZERO { T::ONE } else { e }) / (T::ONE + e);
    g * p
}

/// `g * softplus''(z) = g p q` with `p = sigmoid(z)`, `q = 1 - p`, both from `e = e^-|z|` (the
/// second-order terms of [`softplus_terms`], `p q`), vectorisable like the first derivative.
#[inline(always)]
fn softplus_scaled_curvature<T: Float>(g: T, z: T) -> T {
    let e = (if z > T::ZERO { T::ZERO - z } else { z }).exp();
    let (small, large) = (e / (T::ONE + e), T::ONE / (T::ONE + e));
    let (p, q) = if z > T::ZERO {
        (large, small)
    } else {
        (small, large)
    };
    g * (p * q)
}

/// `g * elu'(x)` as a differentiable op (its derivatives are again such ops).
pub(crate) fn elu_slope_op(g: &Tensor, x: &Tensor) -> Result<Tensor> {
    g.apply_op2(
        x,
        ScaledDerivative {
            act: Activation::Elu,
            order: 1,
        },
    )
}

/// Highest derivative order of [`Activation::Softplus`] (its polynomial coefficients stay
/// far inside `i64`).
const SOFTPLUS_MAX_ORDER: usize = 12;

impl Activation {
    fn name(self) -> &'static str {
        match self {
            Activation::Elu => "elu",
            Activation::Softplus => "softplus",
        }
    }

    pub(crate) fn values<T: Float>(self, x: &[T]) -> Vec<T> {
        match self {
            // Both sides computed and one selected (no branch), so the loop vectorises; the
            // exponent is taken at `min(v, 0)` (NaN stays NaN), where it cannot overflow.
            Activation::Elu => map1(x, elu_value),
            Activation::Softplus => map1(x, softplus_value),
        }
    }

    /// `g * f^(order)(x)` elementwise, `order >= 1`.
    fn scaled_derivative<T: Float>(self, order: usize, g: &[T], x: &[T]) -> Vec<T> {
        match self {
            Activation::Elu if order == 1 => map2(g, x, elu_scaled_slope),
            Activation::Elu => {
                let above = if order == 1 { T::ONE } else { T::ZERO };
                // `move`: `above` is then a register value, not a load through the closure
                // (which kept the loop scalar).
                map2(g, x, move |g, x| {
                    let below = (if x > T::ZERO { T::ZERO } else { x }).exp();
                    g * if x > T::ZERO { above } else { below }
                })
            }
            Activation::Softplus if order == 1 => map2(g, x, softplus_scaled_slope),
            Activation::Softplus if order == 2 => map2(g, x, softplus_scaled_curvature),
            Activation::Softplus => {
                let terms: Vec<(i32, i32, T)> = softplus_terms(order)
                    .into_iter()
                    .map(|(i, j, c)| (i, j, T::from_i64(c)))
                    .collect();
                map2(g, x, |g, z| {
                    let e = (if z > T::ZERO { T::ZERO - z } else { z }).exp();
                    let (small, large) = (e / (T::ONE + e), T::ONE / (T::ONE + e));
                    let (p, q) = if z > T::ZERO {
                        (large, small)
                    } else {
                        (small, large)
                    };
                    let value = terms
                        .iter()
                        .fold(T::ZERO, |acc, &(i, j, c)| acc + c * p.powi(i) * q.powi(j));
                    g * value
                })
            }
        }
    }
}

/// The terms `(i, j, c_ij)` of `softplus^(order)` as a polynomial in `p` and `q`:
/// `d/dz (p^i q^j) = i p^i q^(j+1) - j p^(i+1) q^j`.
fn softplus_terms(order: usize) -> Vec<(i32, i32, i64)> {
    let mut terms = vec![(1, 0, 1i64)];
    for _ in 1..order {
        let mut next: Vec<(i32, i32, i64)> = Vec::new();
        for &(i, j, c) in &terms {
            for (ti, tj, tc) in [(i, j + 1, c * i64::from(i)), (i + 1, j, -c * i64::from(j))] {
                match next.iter_mut().find(|t| (t.0, t.1) == (ti, tj)) {
                    Some(t) => t.2 += tc,
                    None => next.push((ti, tj, tc)),
                }
            }
        }
        next.retain(|t| t.2 != 0);
        terms = next;
    }
    terms
}

/// `f(x)` for an [`Activation`] `f`.
pub(crate) struct Apply(pub(crate) Activation);

/// `g * f^(order)(x)` for an [`Activation`] `f` and `order >= 1`.
pub(crate) struct ScaledDerivative {
    act: Activation,
    order: usize,
}

impl CustomOp1 for Apply {
    fn name(&self) -> &'static str {
        match self.0 {
            Activation::Elu => "fused-elu",
            Activation::Softplus => "fused-softplus",
        }
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let out = on_float!(s, l, self.0.name(), |x| self.0.values(&x));
        Ok((out, l.shape().clone()))
    }

    fn bwd(&self, x: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let derivative = ScaledDerivative {
            act: self.0,
            order: 1,
        };
        Ok(Some(grad.apply_op2(x, derivative)?))
    }
}

impl CustomOp2 for ScaledDerivative {
    fn name(&self) -> &'static str {
        match self.act {
            Activation::Elu => "fused-elu-derivative",
            Activation::Softplus => "fused-softplus-derivative",
        }
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let name = self.act.name();
        if l1.shape() != l2.shape() {
            bail!(
                "{name} derivative: gradient {:?} and input {:?} differ in shape",
                l1.dims(),
                l2.dims()
            )
        }
        if let Activation::Softplus = self.act {
            if self.order > SOFTPLUS_MAX_ORDER {
                bail!(
                    "softplus derivative: orders up to {SOFTPLUS_MAX_ORDER} are supported, got {}",
                    self.order
                )
            }
        }
        let out = on_float2!(s1, l1, s2, l2, name, |g, x| self
            .act
            .scaled_derivative(self.order, &g, &x));
        Ok((out, l1.shape().clone()))
    }

    /// `d/dg = gbar f^(k)(x)`, `d/dx = gbar g f^(k+1)(x)`.
    fn bwd(
        &self,
        g: &Tensor,
        x: &Tensor,
        _res: &Tensor,
        gbar: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let same = ScaledDerivative {
            act: self.act,
            order: self.order,
        };
        let next = ScaledDerivative {
            act: self.act,
            order: self.order + 1,
        };
        let dg = gbar.apply_op2(x, same)?;
        let dx = (gbar * g)?.apply_op2(x, next)?;
        Ok((Some(dg), Some(dx)))
    }
}

/// `x[n, c, ...] + b[c]`.
pub(crate) struct BiasAdd;

/// Columns per task of [`ChannelSum`] on `[N, C]` tensors.
const COLUMN_BLOCK: usize = 256;

/// `[N, C, ...] -> [C]`: the sum over every axis but the second.
pub(crate) struct ChannelSum;

/// `[C] -> shape` (`shape = [N, C, ...]`): every element of channel `c` set to `b[c]`.
pub(crate) struct ChannelBroadcast {
    pub(crate) shape: Shape,
}

/// `(N, C, positions per channel)` of a `[N, C, ...]` shape.
fn channel_split(shape: &Shape, name: &str) -> Result<(usize, usize, usize)> {
    let dims = shape.dims();
    if dims.len() < 2 {
        bail!("{name}: [N, C, ...] expected, got {dims:?}")
    }
    Ok((dims[0], dims[1], dims[2..].iter().product()))
}

impl CustomOp2 for BiasAdd {
    fn name(&self) -> &'static str {
        "fused-bias-add"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (_, c, inner) = channel_split(l1.shape(), "bias add")?;
        if l2.dims() != [c] {
            bail!(
                "bias add: a bias of shape [{c}] expected for input {:?}, got {:?}",
                l1.dims(),
                l2.dims()
            )
        }
        fn run<T: Float>(x: &[T], b: &[T], inner: usize) -> Vec<T> {
            let c = b.len();
            if inner == 1 {
                // `[N, C]` (a dense layer's output): each row plus the bias vector.
                return par_build_in_order(x.len(), c, PAR_MIN / c.max(1), |row, out| {
                    let x = &x[row * c..][..out.capacity()];
                    vectorised(|| out.extend_map2(x, b, |v, bias| v + bias));
                });
            }
            par_build_in_order(x.len(), inner, PAR_MIN / inner, |plane, out| {
                let bias = b[plane % c];
                let x = &x[plane * inner..][..out.capacity()];
                out.extend_map(x, |v| v + bias);
            })
        }
        let inner = inner.max(1);
        let out = on_float2!(s1, l1, s2, l2, "bias add", |x, b| run(&x, &b, inner));
        Ok((out, l1.shape().clone()))
    }

    fn bwd(
        &self,
        _x: &Tensor,
        _b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        Ok((Some(grad.clone()), Some(grad.apply_op1(ChannelSum)?)))
    }
}

/// Partial sums of [`lane_sum`]: one vector register of f32 under AVX-512.
const LANES: usize = 16;

/// The sum of `x` in a fixed order that vectorises: element `i` of the first
/// `LANES * floor(len / LANES)` goes to partial sum `i % LANES`, the partial sums are combined
/// pairwise (halves added, then quarters, ...), and the remaining elements are added in order.
/// A plain left-to-right sum is one dependent addition per element (a quarter of a core's
/// addition rate at best, one lane of its vector unit); this is sixteen independent ones.
#[inline(always)]
fn lane_sum<T: Float>(x: &[T]) -> T {
    let mut acc = [T::ZERO; LANES];
    let mut chunks = x.chunks_exact(LANES);
    for chunk in &mut chunks {
        for j in 0..LANES {
            acc[j] = acc[j] + chunk[j];
        }
    }
    let mut width = LANES;
    while width > 1 {
        width /= 2;
        for j in 0..width {
            acc[j] = acc[j] + acc[j + width];
        }
    }
    chunks.remainder().iter().fold(acc[0], |s, &v| s + v)
}

impl CustomOp1 for ChannelSum {
    fn name(&self) -> &'static str {
        "fused-channel-sum"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (n, c, inner) = channel_split(l.shape(), "channel sum")?;
        // Per channel: each sample's positions summed ([`lane_sum`]), then the samples in
        // order.
        fn run<T: Float>(x: &[T], n: usize, c: usize, inner: usize) -> Vec<T> {
            if inner == 1 {
                // `[N, C]`: blocks of columns in parallel, the rows added in order into each
                // block (the same order of sums as below, read row by row).
                return par_build_in_order(c, COLUMN_BLOCK, 1, |block, out| {
                    let (lo, w) = (block * COLUMN_BLOCK, out.capacity());
                    let mut acc = vec![T::ZERO; w];
                    vectorised(|| {
                        for i in 0..n {
                            let row = &x[i * c + lo..][..w];
                            for (a, &v) in acc.iter_mut().zip(row) {
                                *a = *a + v;
                            }
                        }
                    });
                    out.extend_map(&acc, |v| v);
                });
            }
            (0..c)
                .into_par_iter()
                .map(|ch| {
                    vectorised(|| {
                        (0..n).fold(T::ZERO, |acc, i| {
                            acc + lane_sum(&x[(i * c + ch) * inner..][..inner])
                        })
                    })
                })
                .collect()
        }
        let out = on_float!(s, l, "channel sum", |x| run(&x, n, c, inner));
        Ok((out, Shape::from(c)))
    }

    fn bwd(&self, x: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(grad.apply_op1(ChannelBroadcast {
            shape: x.shape().clone(),
        })?))
    }
}

impl CustomOp1 for ChannelBroadcast {
    fn name(&self) -> &'static str {
        "fused-channel-broadcast"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (n, c, inner) = channel_split(&self.shape, "channel broadcast")?;
        if l.dims() != [c] {
            bail!(
                "channel broadcast: a [{c}] tensor expected for shape {:?}, got {:?}",
                self.shape.dims(),
                l.dims()
            )
        }
        fn run<T: Float>(b: &[T], n: usize, inner: usize) -> Vec<T> {
            let c = b.len();
            let inner = inner.max(1);
            if inner == 1 {
                // `[N, C]`: every row a copy of `b`.
                return par_build_in_order(n * c, c, PAR_MIN / c.max(1), |_, out| {
                    out.extend_map(b, |v| v);
                });
            }
            par_build_in_order(n * c * inner, inner, PAR_MIN / inner, |plane, out| {
                out.fill_rest(b[plane % c]);
            })
        }
        let out = on_float!(s, l, "channel broadcast", |b| run(&b, n, inner));
        Ok((out, self.shape.clone()))
    }

    fn bwd(&self, _b: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(grad.apply_op1(ChannelSum)?))
    }
}

/// The values of [`AvgPool`] for the `[.., H, W]` maps `x`.
pub(crate) fn avg_pool_values<T: Float>(x: &[T], k: usize, h: usize, w: usize) -> Vec<T> {
    let (ho, wo) = (h / k, w / k);
    let scale = T::ONE / T::from_usize(k * k);
    let planes = x.len() / (h * w).max(1);
    let min_planes = PAR_MIN / (h * w).max(1);
    if k == 2 && wo > 0 {
        // The network's only pooling: the window's four values summed in the order of the
        // general loop below (row by row, left to right, from zero), as one loop over the output
        // row that the compiler vectorises (two interleaved loads per input row).
        return par_build_in_order(planes * ho * wo, ho * wo, min_planes, |i, out| {
            let plane = &x[i * h * w..][..h * w];
            vectorised(|| {
                for y in 0..ho {
                    let r0 = &plane[2 * y * w..][..2 * wo];
                    let r1 = &plane[(2 * y + 1) * w..][..2 * wo];
                    out.extend(
                        r0.chunks_exact(2)
                            .zip(r1.chunks_exact(2))
                            .map(|(a, b)| (T::ZERO + a[0] + a[1] + b[0] + b[1]) * scale),
                    );
                }
            });
        });
    }
    par_build(planes * ho * wo, ho * wo, min_planes, |i, out| {
        let plane = &x[i * h * w..][..h * w];
        for y in 0..ho {
            let row = &mut out[y * wo..][..wo];
            for a in 0..k {
                let src = &plane[(y * k + a) * w..][..wo * k];
                for (o, window) in row.iter_mut().zip(src.chunks_exact(k)) {
                    *o = window.iter().fold(*o, |s, &v| s + v);
                }
            }
            for o in row.iter_mut() {
                *o = *o * scale;
            }
        }
    })
}

/// The values of [`PoolSpread`] for the `[.., H/k, W/k]` maps `g`, into `[.., H, W]` maps.
pub(crate) fn pool_spread_values<T: Float>(g: &[T], k: usize, h: usize, w: usize) -> Vec<T> {
    let (ho, wo) = (h / k, w / k);
    let scale = T::ONE / T::from_usize(k * k);
    let planes = g.len() / (ho * wo).max(1);
    let min_planes = PAR_MIN / (h * w).max(1);
    if k == 2 && h >= 2 && w >= 2 && h % 2 == 0 && w % 2 == 0 {
        // The windows tile the plane: each pair of output rows is one input row written twice,
        // every value twice side by side (a loop the compiler vectorises).
        return par_build_in_order(planes * h * w, h * w, min_planes, |i, out| {
            let plane = &g[i * ho * wo..][..ho * wo];
            vectorised(|| {
                for (y, src) in plane.chunks_exact(wo).enumerate() {
                    out.extend(src.iter().flat_map(|&v| {
                        let v = v * scale;
                        [v, v]
                    }));
                    let top = 2 * y * w;
                    out.repeat_written(top..top + w);
                }
            });
        });
    }
    // Zeros stay in the rows and columns the pooling dropped.
    par_build(planes * h * w, h * w, min_planes, |i, out| {
        let plane = &g[i * ho * wo..][..ho * wo];
        for y in 0..ho * k {
            let src = &plane[(y / k) * wo..][..wo];
            let row = &mut out[y * w..][..wo * k];
            for (window, &v) in row.chunks_exact_mut(k).zip(src) {
                window.fill(v * scale);
            }
        }
    })
}

/// Average pooling, kernel = stride = `k`, floor mode: `[N, C, H, W] -> [N, C, H/k, W/k]`.
pub(crate) struct AvgPool {
    pub(crate) k: usize,
}

/// The adjoint of [`AvgPool`]: `[N, C, H/k, W/k] -> [N, C, H, W]`, each value divided by `k^2`
/// and copied over its window; rows and columns the pooling dropped get zeros.
pub(crate) struct PoolSpread {
    pub(crate) k: usize,
    pub(crate) h: usize,
    pub(crate) w: usize,
}

impl CustomOp1 for AvgPool {
    fn name(&self) -> &'static str {
        "fused-avg-pool2d"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (n, c, h, w) = l.shape().dims4()?;
        let k = self.k;
        if k == 0 || h < k || w < k {
            bail!("avg_pool2d: kernel {k} does not fit an input of height {h} and width {w}")
        }
        let (ho, wo) = (h / k, w / k);
        let out = on_float!(s, l, "avg_pool2d", |x| avg_pool_values(&x, k, h, w));
        Ok((out, Shape::from((n, c, ho, wo))))
    }

    fn bwd(&self, x: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let (_, _, h, w) = x.dims4()?;
        Ok(Some(grad.apply_op1(PoolSpread { k: self.k, h, w })?))
    }
}

impl CustomOp1 for PoolSpread {
    fn name(&self) -> &'static str {
        "fused-avg-pool2d-adjoint"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (n, c, ho, wo) = l.shape().dims4()?;
        let (k, h, w) = (self.k, self.h, self.w);
        if k == 0 || h / k != ho || w / k != wo {
            bail!("avg_pool2d adjoint: a {ho}x{wo} map is not the {k}x{k} pooling of {h}x{w}")
        }
        let out = on_float!(s, l, "avg_pool2d adjoint", |g| pool_spread_values(
            &g, k, h, w
        ));
        Ok((out, Shape::from((n, c, h, w))))
    }

    fn bwd(&self, _g: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(grad.apply_op1(AvgPool { k: self.k })?))
    }
}

#[cfg(test)]
mod tests {
    /// Every length from 0 to 70 (no full chunk, full chunks, remainders): small integers sum
    /// exactly in f32, so the lane sum must equal the closed form `sum_{i<n} (i mod 7 - 3)`;
    /// and for general values it stays within rounding of the f64 sum.
    #[test]
    fn lane_sum_adds_every_element_once() {
        for n in 0..=70usize {
            let ints: Vec<f32> = (0..n).map(|i| (i % 7) as f32 - 3.0).collect();
            let exact: i64 = (0..n as i64).map(|i| i % 7 - 3).sum();
            assert_eq!(super::lane_sum(&ints), exact as f32, "length {n}");
            let wide: Vec<f32> = (0..n).map(|i| ((i * 37) % 101) as f32 / 7.0).collect();
            let reference: f64 = wide.iter().map(|&v| f64::from(v)).sum();
            let got = f64::from(super::lane_sum(&wide));
            assert!(
                (got - reference).abs() <= 1e-5 * (1.0 + reference.abs()),
                "length {n}"
            );
        }
    }
}
