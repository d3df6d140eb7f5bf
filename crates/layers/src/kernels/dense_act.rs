//! The dense layer with its activation as one op, `y = act(x W^T + b)`: the matrix product
//! through `gemm`, then the bias and the activation in the same pass over the product. Its
//! backward pass takes the activation's slope from the output (`softplus'(z) = 1 - e^-y`,
//! `elu'(z) = 1` for `y > 0`, else `y + 1`, `tanh'(z) = 1 - y^2`), so no pre-activation is kept,
//! and in Candle's higher-order mode it is built from differentiable ops, so that derivatives of
//! every order exist; with the mode off (first order only) its two products are one op that
//! runs them side by side. One graph node per layer
//! instead of four (product, transpose, bias, activation) saves the gradient accumulations that
//! Candle's backward pass does for each node.

use candle_core::{bail, CpuStorage, CustomOp2, CustomOp3, DType, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::dense::{matmul_into, Element, Mat};
use super::fused::{elu_value, softplus_value, ChannelSum, Float};
use super::simd::{vectorised, Kernel};
use crate::DenseActivation;

/// `act(x W^T + b)` for `x` `[N, K]`, `W` `[O, K]`, `b` `[O]`.
pub(crate) struct DenseAct(pub(crate) DenseActivation);

/// `g * act'(z)` computed from the activation's output `y = act(z)`.
pub(crate) struct OutputSlope(pub(crate) DenseActivation);

/// `a * g * c(y)` with `c` the output slope's derivative in `y`: `e^-y` for softplus, for ELU 1
/// where `y <= 0` and 0 elsewhere, `-2 y` for tanh. The `y`-gradient of [`OutputSlope`] (the
/// second-order pass of the dense layer) in one pass instead of four ops.
pub(crate) struct SlopeCurvature(pub(crate) DenseActivation);

/// `tanh(z)`, both forms computed and one selected (no branch), so loops over it vectorise:
/// `sign(z) (1 - t) / (1 + t)` with `t = e^{-2|z|}` (which cannot overflow), and for `|z| <
/// 1/8`, where `1 - t` would lose relative precision, the odd series to `z^9` (its first
/// omitted term is below `2^-29 |z|`): a few ulp in f32, within 1e-11 relative in f64.
#[inline(always)]
pub(crate) fn tanh_value<T: Float>(z: T) -> T {
    let a = if z > T::ZERO { z } else { T::ZERO - z };
    let t = (T::ZERO - (a + a)).exp();
    let big = (T::ONE - t) / (T::ONE + t);
    let z2 = a * a;
    // tanh a = a (1 - a^2/3 + 2a^4/15 - 17a^6/315 + 62a^8/2835 - ...).
    let c = |n: i64, d: i64| T::from_i64(n) / T::from_i64(d);
    let series =
        a * (T::ONE - z2 * (c(1, 3) - z2 * (c(2, 15) - z2 * (c(17, 315) - z2 * c(62, 2835)))));
    let small = c(1, 8);
    let magnitude = if a < small { series } else { big };
    if z < T::ZERO {
        T::ZERO - magnitude
    } else {
        magnitude
    }
}

/// `act'(z)` from `y = act(z)`.
#[inline(always)]
fn slope_from_output<T: Float>(act: DenseActivation, y: T) -> T {
    match act {
        DenseActivation::Tanh => T::ONE - y * y,
        DenseActivation::Elu => {
            if y > T::ZERO {
                T::ONE
            } else {
                y + T::ONE
            }
        }
        // sigmoid(z) = 1 - e^-y, as -expm1(-y): a short series where 1 - e^-y would cancel.
        DenseActivation::Softplus => {
            let series = y * (T::ONE - y * (T::ONE / T::from_usize(2) - y / T::from_usize(6)));
            let direct = T::ONE - (T::ZERO - y).exp();
            let small = T::ONE / T::from_usize(1000);
            if y < small {
                series
            } else {
                direct
            }
        }
    }
}

/// The forward pass's elementwise part over whole rows of the product: `v = act(v + b)`.
///
/// A [`Kernel`] rather than a closure: its `run` is always inlined into [`vectorised`]'s
/// per-CPU copies, where a closure body was compiled out of line for the baseline (a profile
/// showed these loops in scalar SSE code, a fifth of the MLP step).
struct BiasActivate<'a, T> {
    rows: &'a mut [T],
    b: &'a [T],
    act: DenseActivation,
}

impl<T: Float> BiasActivate<'_, T> {
    /// `v = f(v + b)` row by row (`f` a named inline function, so the loop vectorises).
    #[inline(always)]
    fn each(self, f: impl Fn(T) -> T) {
        for row in self.rows.chunks_mut(self.b.len().max(1)) {
            for (v, &bias) in row.iter_mut().zip(self.b) {
                *v = f(*v + bias);
            }
        }
    }
}

impl<T: Float> Kernel for BiasActivate<'_, T> {
    type Output = ();

    #[inline(always)]
    fn run(self) {
        match self.act {
            DenseActivation::Elu => self.each(elu_value),
            DenseActivation::Softplus => self.each(softplus_value),
            DenseActivation::Tanh => self.each(tanh_value),
        }
    }
}

/// `c(y)` of [`SlopeCurvature`].
#[inline(always)]
fn curvature<T: Float>(act: DenseActivation, y: T) -> T {
    match act {
        DenseActivation::Softplus => (T::ZERO - y).exp(),
        DenseActivation::Elu => {
            if y > T::ZERO {
                T::ZERO
            } else {
                T::ONE
            }
        }
        DenseActivation::Tanh => T::ZERO - (y + y),
    }
}

/// The backward passes' `out = [a *] g * f(act, y)` from the output `y`: `f` is
/// [`slope_from_output`] for [`OutputSlope`] (no `a`) and [`curvature`] for [`SlopeCurvature`]
/// (a [`Kernel`], as [`BiasActivate`]; `f` a named function, so the loop inlines it).
struct ScaleByOutputFn<'a, T, F> {
    out: &'a mut [T],
    a: Option<&'a [T]>,
    g: &'a [T],
    y: &'a [T],
    act: DenseActivation,
    f: F,
}

impl<T: Float, F: Fn(DenseActivation, T) -> T> Kernel for ScaleByOutputFn<'_, T, F> {
    type Output = ();

    #[inline(always)]
    fn run(self) {
        // Plain `for` loops: an iterator's `for_each` goes through `fold`, which the compiler
        // may leave out of line, outside the vectorised copy.
        let (act, f) = (self.act, self.f);
        match self.a {
            None => {
                for ((o, &g), &y) in self.out.iter_mut().zip(self.g).zip(self.y) {
                    *o = g * f(act, y);
                }
            }
            Some(a) => {
                for (((o, &a), &g), &y) in self.out.iter_mut().zip(a).zip(self.g).zip(self.y) {
                    *o = a * g * f(act, y);
                }
            }
        }
    }
}

/// `[a *] g * f(act, y)` over whole slices, in parallel chunks.
fn scale_by_output_fn<T: Float>(
    a: Option<&[T]>,
    g: &[T],
    y: &[T],
    act: DenseActivation,
    f: impl Fn(DenseActivation, T) -> T + Copy + Send + Sync,
) -> Vec<T> {
    const CHUNK: usize = 1 << 14;
    let mut out = vec![T::ZERO; g.len()];
    out.par_chunks_mut(CHUNK).enumerate().for_each(|(i, out)| {
        let at = i * CHUNK..i * CHUNK + out.len();
        vectorised(ScaleByOutputFn {
            a: a.map(|a| &a[at.clone()]),
            g: &g[at.clone()],
            y: &y[at],
            out,
            act,
            f,
        });
    });
    out
}

impl CustomOp3 for DenseAct {
    fn name(&self) -> &'static str {
        match self.0 {
            DenseActivation::Elu => "fused-dense-elu",
            DenseActivation::Softplus => "fused-dense-softplus",
            DenseActivation::Tanh => "fused-dense-tanh",
        }
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
        let (&[n, k], &[o, k2], &[o2]) = (l1.dims(), l2.dims(), l3.dims()) else {
            bail!(
                "dense layer: input [N, K], weight [O, K] and bias [O] expected, got {:?}, {:?} \
                 and {:?}",
                l1.dims(),
                l2.dims(),
                l3.dims()
            )
        };
        if k != k2 || o != o2 {
            bail!(
                "dense layer: input {:?}, weight {:?} and bias {:?} do not fit together",
                l1.dims(),
                l2.dims(),
                l3.dims()
            )
        }
        let act = self.0;
        fn run<T: Element>(act: DenseActivation, x: &[T], w: &[T], b: &[T], n: usize) -> Vec<T> {
            let (o, k) = (b.len(), x.len() / n.max(1));
            let mut out = vec![T::ZERO; n * o];
            if n > 0 && o > 0 {
                let lhs = Mat {
                    data: x,
                    rows: n,
                    cols: k,
                    rs: k,
                    cs: 1,
                };
                // W^T as a strided view of W: element (j, i) at w[i * k + j].
                let rhs = Mat {
                    data: w,
                    rows: k,
                    cols: o,
                    rs: 1,
                    cs: k,
                };
                matmul_into(&mut out, &lhs, &rhs, false, all_threads());
            }
            let rows_per_task = (1 << 14) / o.max(1) + 1;
            out.par_chunks_mut(o.max(1) * rows_per_task)
                .for_each(|rows| vectorised(BiasActivate { rows, b, act }));
            out
        }
        let out = on_float3!(
            (s1, l1),
            (s2, l2),
            (s3, l3),
            "dense layer",
            "input, weight and bias",
            |x, w, b| run(act, &x, &w, &b, n)
        );
        Ok((out, Shape::from((n, o))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        y: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        use crate::grad_mode::{dropped_gradient, gradient_if_needed};
        let gz = grad.apply_op2(y, OutputSlope(self.0))?;
        // No input gradient for data (a first layer): nothing would read it.
        if crate::grad_mode::parameter_gradients_skipped() {
            // A pass for an input gradient only: the weight and bias gradients would be dropped.
            let gx = gradient_if_needed(x, || gz.matmul(w))?;
            return Ok((gx, dropped_gradient(w)?, dropped_gradient(b)?));
        }
        let gb = gradient_if_needed(b, || gz.apply_op1(ChannelSum))?;
        let (need_x, need_w) = (x.track_op(), w.track_op());
        if need_w && gz.device().is_cpu() && !crate::grad_mode::higher_order_enabled() {
            // First order only: both products in one op, side by side on two threads when
            // both are needed (the gradients are not differentiated again, so no graph).
            let (n, k) = x.dims2()?;
            let o = w.dim(0)?;
            let both = gz.apply_op3_no_bwd(w, x, &DenseGradients { input: need_x })?;
            let gw = both.narrow(0, 0, o * k)?.reshape((o, k))?;
            let gx = if need_x {
                Some(both.narrow(0, o * k, n * k)?.reshape((n, k))?)
            } else {
                None
            };
            return Ok((gx, Some(gw), gb));
        }
        let gx = gradient_if_needed(x, || gz.matmul(w))?;
        let gw = gradient_if_needed(w, || gz.t()?.matmul(x))?;
        Ok((gx, gw, gb))
    }
}

/// The dense layer's first-order parameter and input gradients from `gz = g * act'(z)`
/// `[N, O]`, `W` `[O, K]` and `x` `[N, K]`: `gz^T x` `[O, K]`, then, with `input`, `gz W`
/// `[N, K]`, flattened one after the other. With both, each product runs on one thread and the
/// two side by side (rayon's `join`), rather than each split over the threads in turn; alone,
/// the weight gradient is split. Each output element is one thread's sum over the batch in the
/// same blocked order either way, so the values are those of Candle's `matmul` of the same
/// operands (a test compares them bit for bit).
struct DenseGradients {
    input: bool,
}

impl CustomOp3 for DenseGradients {
    fn name(&self) -> &'static str {
        "dense-layer-gradients"
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
        let (&[n, o], &[o2, k], &[n2, k2]) = (l1.dims(), l2.dims(), l3.dims()) else {
            bail!(
                "dense layer gradients: gz [N, O], weight [O, K] and input [N, K] expected, got \
                 {:?}, {:?} and {:?}",
                l1.dims(),
                l2.dims(),
                l3.dims()
            )
        };
        if o != o2 || n != n2 || k != k2 {
            bail!(
                "dense layer gradients: gz {:?}, weight {:?} and input {:?} do not fit together",
                l1.dims(),
                l2.dims(),
                l3.dims()
            )
        }
        let input = self.input;
        let len = o * k + if input { n * k } else { 0 };
        fn run<T: Element>(gz: &[T], w: &[T], x: &[T], (n, o, k): Dims, len: usize) -> Vec<T> {
            let mut out = vec![T::ZERO; len];
            let (gw, gx) = out.split_at_mut(o * k);
            // gz^T as a strided view of gz: element (i, j) at gz[j * o + i].
            let gz_t = Mat {
                data: gz,
                rows: o,
                cols: n,
                rs: 1,
                cs: o,
            };
            let xs = Mat {
                data: x,
                rows: n,
                cols: k,
                rs: k,
                cs: 1,
            };
            if gx.is_empty() {
                matmul_into(gw, &gz_t, &xs, false, all_threads());
                return out;
            }
            let gz_rows = Mat {
                data: gz,
                rows: n,
                cols: o,
                rs: o,
                cs: 1,
            };
            let ws = Mat {
                data: w,
                rows: o,
                cols: k,
                rs: k,
                cs: 1,
            };
            let one = gemm::Parallelism::None;
            rayon::join(
                || matmul_into(gw, &gz_t, &xs, false, one),
                || matmul_into(gx, &gz_rows, &ws, false, one),
            );
            out
        }
        let out = on_float3!(
            (s1, l1),
            (s2, l2),
            (s3, l3),
            "dense layer gradients",
            "gz, weight and input",
            |gz, w, x| run(&gz, &w, &x, (n, o, k), len)
        );
        Ok((out, Shape::from(len)))
    }
}

/// `(N, O, K)`: batch, outputs and inputs of a dense layer.
type Dims = (usize, usize, usize);

/// `gemm`'s setting for a product split over all of rayon's threads.
fn all_threads() -> gemm::Parallelism {
    let threads = rayon::current_num_threads();
    if threads > 1 {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    }
}

impl CustomOp2 for OutputSlope {
    fn name(&self) -> &'static str {
        match self.0 {
            DenseActivation::Elu => "fused-elu-output-slope",
            DenseActivation::Softplus => "fused-softplus-output-slope",
            DenseActivation::Tanh => "fused-tanh-output-slope",
        }
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        if l1.dims() != l2.dims() {
            bail!(
                "output slope: gradient {:?} and output {:?} differ in shape",
                l1.dims(),
                l2.dims()
            )
        }
        let act = self.0;
        let out = on_float2!(s1, l1, s2, l2, "output slope", |g, y| {
            scale_by_output_fn(None, &g, &y, act, slope_from_output)
        });
        Ok((out, l1.shape().clone()))
    }

    fn bwd(
        &self,
        g: &Tensor,
        y: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        // d/dg: the same slope; d/dy: g times the slope's derivative in y.
        let dg = grad.apply_op2(y, OutputSlope(self.0))?;
        let dy = grad.apply_op3(g, y, SlopeCurvature(self.0))?;
        Ok((Some(dg), Some(dy)))
    }
}

impl CustomOp3 for SlopeCurvature {
    fn name(&self) -> &'static str {
        match self.0 {
            DenseActivation::Elu => "fused-elu-slope-curvature",
            DenseActivation::Softplus => "fused-softplus-slope-curvature",
            DenseActivation::Tanh => "fused-tanh-slope-curvature",
        }
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
        if l1.dims() != l2.dims() || l1.dims() != l3.dims() {
            bail!(
                "slope curvature: gradients {:?}, {:?} and output {:?} differ in shape",
                l1.dims(),
                l2.dims(),
                l3.dims()
            )
        }
        let act = self.0;
        let out = on_float3!(
            (s1, l1),
            (s2, l2),
            (s3, l3),
            "slope curvature",
            "the gradients and the output",
            |a, g, y| scale_by_output_fn(Some(&a), &g, &y, act, curvature)
        );
        Ok((out, l1.shape().clone()))
    }

    fn bwd(
        &self,
        a: &Tensor,
        g: &Tensor,
        y: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        // Linear in `a` and in `g`; in `y`, `c'(y)` is `-e^-y = -c(y)` for softplus, 0 for ELU
        // (a.e.), `-2` for tanh.
        let da = grad.apply_op3(g, y, SlopeCurvature(self.0))?;
        let dg = grad.apply_op3(a, y, SlopeCurvature(self.0))?;
        let dy = match self.0 {
            DenseActivation::Softplus => {
                Some((grad * a)?.apply_op3(g, y, SlopeCurvature(self.0))?.neg()?)
            }
            DenseActivation::Elu => None,
            DenseActivation::Tanh => Some(((grad * a)? * g)?.affine(-2.0, 0.0)?),
        };
        Ok((Some(da), Some(dg), dy))
    }
}

/// `act(x W^T + b)` as one op where the CPU kernels handle it (f32 or f64 on the CPU, `x`
/// `[N, K]`); `None` elsewhere, for the caller to compose it from other ops.
pub(crate) fn dense_act(
    x: &Tensor,
    w: &Tensor,
    b: &Tensor,
    act: DenseActivation,
) -> Result<Option<Tensor>> {
    let handled = [x, w, b].iter().all(|t| super::on_cpu_kernels(t))
        && matches!(x.dtype(), DType::F32 | DType::F64)
        && w.dtype() == x.dtype()
        && b.dtype() == x.dtype()
        && x.rank() == 2;
    if handled {
        x.apply_op3(w, b, DenseAct(act)).map(Some)
    } else {
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::{tanh_value, DenseGradients};
    use candle_core::{DType, Device, Tensor};

    /// The first-order gradients op equals Candle's `matmul` of the same operands (the path it
    /// replaces) bit for bit, `gz^T x` and `gz W`, in f32 and f64, at sizes past `gemm`'s
    /// blocking, with and without the input gradient; a strided `gz` is read correctly.
    #[test]
    fn dense_gradients_equal_candles_products_exactly() -> candle_core::Result<()> {
        let cpu = Device::Cpu;
        let (n, o, k) = (70, 300, 260);
        let values = |len: usize, seed: usize| -> Vec<f64> {
            (0..len)
                .map(|i| (((i * 7919 + seed * 104_729) % 2003) as f64 / 1001.0 - 1.0) * 0.7)
                .collect()
        };
        for dtype in [DType::F32, DType::F64] {
            let t = |len, seed, shape: (usize, usize)| {
                Tensor::from_vec(values(len, seed), shape, &cpu)?.to_dtype(dtype)
            };
            let (gz, w, x) = (
                t(n * o, 1, (n, o))?,
                t(o * k, 2, (o, k))?,
                t(n * k, 3, (n, k))?,
            );
            let bits = |t: &Tensor| -> candle_core::Result<Vec<u64>> {
                let v = t.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?;
                Ok(v.iter().map(|x| x.to_bits()).collect())
            };
            let want_w = bits(&gz.t()?.matmul(&x)?)?;
            let want_x = bits(&gz.matmul(&w)?)?;
            let both = gz.apply_op3_no_bwd(&w, &x, &DenseGradients { input: true })?;
            assert_eq!(both.dims(), [o * k + n * k]);
            assert_eq!(
                bits(&both.narrow(0, 0, o * k)?)?,
                want_w,
                "{dtype:?}: gz^T x"
            );
            assert_eq!(
                bits(&both.narrow(0, o * k, n * k)?)?,
                want_x,
                "{dtype:?}: gz W"
            );
            let alone = gz.apply_op3_no_bwd(&w, &x, &DenseGradients { input: false })?;
            assert_eq!(bits(&alone)?, want_w, "{dtype:?}: gz^T x alone");
            // gz as the transpose of a stored [O, N] matrix.
            let stored = gz.t()?.contiguous()?;
            let strided = stored
                .t()?
                .apply_op3_no_bwd(&w, &x, &DenseGradients { input: true })?;
            assert_eq!(bits(&strided)?, bits(&both)?, "{dtype:?}: strided gz");
        }
        Ok(())
    }

    /// Against f64's `tanh` over `[-20, 20]`, densest near 0 where the series takes over: in f32
    /// within 4e-7 relative (a few ulp), in f64 within 2e-11 (the series' truncation at
    /// `|z| = 1/8`), exact odd symmetry, and `+-1` far out.
    #[test]
    fn tanh_value_is_accurate_in_f32_and_f64() {
        let mut worst = 0.0f64;
        for i in 0..=400_000 {
            let u = -1.0 + 2.0 * i as f64 / 400_000.0;
            let z = 20.0 * u * u * u; // cubic spacing: fine steps around 0
            let got = tanh_value(z as f32);
            let want = (z as f32 as f64).tanh();
            assert_eq!(tanh_value(-(z as f32)), -got, "odd at {z}");
            if want != 0.0 {
                worst = worst.max((f64::from(got) - want).abs() / want.abs());
            } else {
                assert_eq!(got, 0.0);
            }
            let got64 = tanh_value(z);
            assert!(
                (got64 - z.tanh()).abs() <= 2e-11 * z.tanh().abs(),
                "f64 at {z}"
            );
        }
        assert!(worst < 4e-7, "worst relative error {worst}");
        assert_eq!((tanh_value(60.0f32), tanh_value(-60.0f32)), (1.0, -1.0));
        assert!(tanh_value(f32::NAN).is_nan());
    }
}
