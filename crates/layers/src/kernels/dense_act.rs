//! The dense layer with its activation as one op, `y = act(x W^T + b)`: the matrix product
//! through `gemm`, then the bias and the activation in the same pass over the product. Its
//! backward pass takes the activation's slope from the output (`softplus'(z) = 1 - e^-y`,
//! `elu'(z) = 1` for `y > 0`, else `y + 1`), so no pre-activation is kept, and it is built from
//! differentiable ops, so that derivatives of every order exist. One graph node per layer
//! instead of four (product, transpose, bias, activation) saves the gradient accumulations that
//! Candle's backward pass does for each node.

use candle_core::{bail, CpuStorage, CustomOp2, CustomOp3, DType, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::dense::{matmul_into, Element, Mat};
use super::fused::{elu_value, softplus_value, Activation, ChannelSum, Float};
use super::simd::vectorised;

/// `act(x W^T + b)` for `x` `[N, K]`, `W` `[O, K]`, `b` `[O]`.
pub(crate) struct DenseAct(pub(crate) Activation);

/// `g * act'(z)` computed from the activation's output `y = act(z)`.
pub(crate) struct OutputSlope(pub(crate) Activation);

/// `act'(z)` from `y = act(z)`.
#[inline(always)]
fn slope_from_output<T: Float>(act: Activation, y: T) -> T {
    match act {
        Activation::Elu => {
            if y > T::ZERO {
                T::ONE
            } else {
                y + T::ONE
            }
        }
        // sigmoid(z) = 1 - e^-y, as -expm1(-y): a short series where 1 - e^-y would cancel.
        Activation::Softplus => {
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

impl CustomOp3 for DenseAct {
    fn name(&self) -> &'static str {
        match self.0 {
            Activation::Elu => "fused-dense-elu",
            Activation::Softplus => "fused-dense-softplus",
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
        fn run<T: Element>(act: Activation, x: &[T], w: &[T], b: &[T], n: usize) -> Vec<T> {
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
                let threads = rayon::current_num_threads();
                let parallelism = if threads > 1 {
                    gemm::Parallelism::Rayon(threads)
                } else {
                    gemm::Parallelism::None
                };
                matmul_into(&mut out, &lhs, &rhs, false, parallelism);
            }
            let rows_per_task = (1 << 14) / o.max(1) + 1;
            out.par_chunks_mut(o.max(1))
                .with_min_len(rows_per_task)
                .for_each(|row| {
                    vectorised(|| match act {
                        Activation::Elu => {
                            for (v, &bias) in row.iter_mut().zip(b) {
                                *v = elu_value(*v + bias);
                            }
                        }
                        Activation::Softplus => {
                            for (v, &bias) in row.iter_mut().zip(b) {
                                *v = softplus_value(*v + bias);
                            }
                        }
                    });
                });
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
        _b: &Tensor,
        y: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let gz = grad.apply_op2(y, OutputSlope(self.0))?;
        let gx = gz.matmul(w)?;
        let gw = gz.t()?.matmul(x)?;
        let gb = gz.apply_op1(ChannelSum)?;
        Ok((Some(gx), Some(gw), Some(gb)))
    }
}

impl CustomOp2 for OutputSlope {
    fn name(&self) -> &'static str {
        match self.0 {
            Activation::Elu => "fused-elu-output-slope",
            Activation::Softplus => "fused-softplus-output-slope",
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
        fn run<T: Float>(act: Activation, g: &[T], y: &[T]) -> Vec<T> {
            let mut out = vec![T::ZERO; g.len()];
            out.par_chunks_mut(1 << 14)
                .zip(g.par_chunks(1 << 14).zip(y.par_chunks(1 << 14)))
                .for_each(|(o, (g, y))| {
                    vectorised(|| {
                        for ((o, &g), &y) in o.iter_mut().zip(g).zip(y) {
                            *o = g * slope_from_output(act, y);
                        }
                    });
                });
            out
        }
        let out = on_float2!(s1, l1, s2, l2, "output slope", |g, y| run(act, &g, &y));
        Ok((out, l1.shape().clone()))
    }

    fn bwd(
        &self,
        g: &Tensor,
        y: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        // d/dg: the same slope; d/dy: g times the slope's derivative in y, `e^-y` for softplus,
        // and for ELU 0 where y > 0 and 1 elsewhere.
        let dg = grad.apply_op2(y, OutputSlope(self.0))?;
        let curvature = match self.0 {
            Activation::Softplus => y.neg()?.exp()?,
            Activation::Elu => y.le(0.0)?.to_dtype(y.dtype())?,
        };
        let dy = ((grad * g)? * curvature)?;
        Ok((Some(dg), Some(dy)))
    }
}

/// `act(x W^T + b)` as one op where the CPU kernels handle it (f32 or f64 on the CPU, `x`
/// `[N, K]`); `None` elsewhere, for the caller to compose it from other ops.
pub(crate) fn dense_act(
    x: &Tensor,
    w: &Tensor,
    b: &Tensor,
    act: Activation,
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
