//! Shared fixtures for the layers tests: pattern tensors, and the convolution checks against
//! Candle's `conv2d` and against the unfused ops that several test binaries run (with and
//! without higher-order mode).
#![allow(dead_code)] // each test binary uses a subset

use candle_core::{DType, Device, Result, Tensor, Var};
use layers::{avg_pool2d, conv2d, elu, elu_conv2d, Conv2dConfig, ConvAlgorithm, Residual};

pub const DEV: Device = Device::Cpu;

/// `[rows, cols]` f64 tensor from a deterministic smooth pattern (no RNG needed).
pub fn pattern(rows: usize, cols: usize, phase: f64) -> Tensor {
    let data: Vec<f64> = (0..rows * cols)
        .map(|i| ((i as f64 + phase) * 0.731).sin() * 0.8)
        .collect();
    Tensor::from_vec(data, (rows, cols), &DEV).unwrap()
}

/// Checks `H v` of `f` at `x` (nested autodiff) against `(grad f(x + h v) - grad f(x - h v)) / 2h`.
pub fn check_hvp(
    name: &str,
    f: impl Fn(&Tensor) -> Result<Tensor>,
    x: &Tensor,
    v: &Tensor,
) -> Result<()> {
    let grad_at = |p: &Tensor| -> Result<(Var, Tensor)> {
        let var = Var::from_tensor(p)?;
        let g = f(var.as_tensor())?
            .sum_all()?
            .backward()?
            .remove(var.as_tensor())
            .expect("f depends on x");
        Ok((var, g))
    };
    let (var, g) = grad_at(x)?;
    let hv = (g * v)?
        .sum_all()?
        .backward()?
        .remove(var.as_tensor())
        .expect("second derivative exists");
    let h = 1e-5;
    let plus = grad_at(&(x + (v * h)?)?)?.1;
    let minus = grad_at(&(x - (v * h)?)?)?.1;
    let numeric = ((plus - minus)? / (2.0 * h))?;
    let err = (&hv - &numeric)?.abs()?.max_all()?.to_scalar::<f64>()?;
    let scale = numeric.abs()?.max_all()?.to_scalar::<f64>()?;
    assert!(scale > 1e-3, "{name}: the check would be vacuous");
    assert!(
        err < 1e-6 * (1.0 + scale),
        "{name}: Hv error {err} (scale {scale})"
    );
    Ok(())
}

/// The largest absolute entry of `t` (f32 or f64).
pub fn max_abs_of(t: &Tensor) -> Result<f64> {
    t.abs()?.max_all()?.to_dtype(DType::F64)?.to_scalar::<f64>()
}

/// A `[n, c, h, w]` f64 batch of pattern values times `scale`, laid out as the transpose of a
/// `[n, c, w, h]` tensor (so not contiguous).
fn transposed_batch(n: usize, c: usize, (h, w): (usize, usize), scale: f64) -> Result<Tensor> {
    pattern(n, c * h * w, 0.3)
        .reshape((n, c, w, h))?
        .transpose(2, 3)?
        * scale
}

/// An `[o, c, k, k]` f64 kernel of pattern values (phase `phase`) scaled by `1.5 / c`, so the
/// outputs stay of order one whatever the channel count.
fn test_kernel(o: usize, c: usize, k: usize, phase: f64) -> Result<Tensor> {
    pattern(1, o * c * k * k, phase).reshape((o, c, k, k))? * (1.5 / c as f64)
}

/// `conv2d` of a `[n, c, h, w]` batch (transposed from `[n, c, w, h]`, so not contiguous) with
/// an `[o, c, k, k]` kernel, at every padding below `k`, in f64 and f32: values and first
/// derivatives in the input and in the kernel equal Candle's `conv2d`.
pub fn agrees_with_candle(
    n: usize,
    c: usize,
    o: usize,
    (h, w): (usize, usize),
    k: usize,
) -> Result<()> {
    agrees_with_candle_under(ConvAlgorithm::Fastest, n, c, o, (h, w), k)
}

/// [`agrees_with_candle`] with the convolution's algorithm chosen.
pub fn agrees_with_candle_under(
    algorithm: ConvAlgorithm,
    n: usize,
    c: usize,
    o: usize,
    (h, w): (usize, usize),
    k: usize,
) -> Result<()> {
    for dtype in [DType::F64, DType::F32] {
        let x = transposed_batch(n, c, (h, w), 1.0)?.to_dtype(dtype)?;
        let w = test_kernel(o, c, k, 1.7)?.to_dtype(dtype)?;
        let tol = if dtype == DType::F64 { 1e-12 } else { 1e-4 };
        for padding in 0..k {
            let (xv, wv) = (Var::from_tensor(&x)?, Var::from_tensor(&w)?);
            let cfg = Conv2dConfig::padded(padding).with_algorithm(algorithm);
            let ours = conv2d(xv.as_tensor(), wv.as_tensor(), None, &cfg)?;
            let theirs = xv.as_tensor().conv2d(wv.as_tensor(), padding, 1, 1, 1)?;
            assert_eq!(ours.dims(), theirs.dims());
            let f64s = |t: &Tensor| t.to_dtype(DType::F64);
            let scale = 1.0 + max_abs_of(&f64s(&theirs)?)?;
            let err = max_abs_of(&(f64s(&ours)? - f64s(&theirs)?)?)?;
            assert!(err < tol * scale, "{dtype:?} p={padding} values: {err}");
            // A loss that weights every output position differently.
            let weights = pattern(1, theirs.elem_count(), 0.9)
                .reshape(theirs.dims())?
                .to_dtype(dtype)?;
            let g1 = (ours * &weights)?.sum_all()?.backward()?;
            let g2 = (theirs * &weights)?.sum_all()?.backward()?;
            for (name, var) in [("x", &xv), ("w", &wv)] {
                let a = f64s(g1.get(var.as_tensor()).expect("gradient"))?;
                let c = f64s(g2.get(var.as_tensor()).expect("gradient"))?;
                let err = max_abs_of(&(&a - &c)?)?;
                assert!(
                    err < tol * (1.0 + max_abs_of(&c)?),
                    "{dtype:?} p={padding} d/d{name}: {err}"
                );
            }
        }
    }
    Ok(())
}

/// Whether two tensors hold equal values (`==` per element, so `-0 == +0`), as f64.
pub fn same_values(a: &Tensor, b: &Tensor) -> Result<bool> {
    let (a, b) = (
        a.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?,
        b.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?,
    );
    Ok(a.len() == b.len() && a.iter().zip(&b).all(|(x, y)| x == y))
}

/// `elu_conv2d` of a `[n, c, h, w]` batch (non-contiguous, values of both signs) with an
/// `[o, c, k, k]` kernel, with and without a bias, at every padding below `k`, in f64 and f32:
/// its values and its gradients in the input, the kernel and the bias equal those of
/// `conv2d(&elu(x), ..)` exactly (the same formulas and kernels; the oracle is the unfused
/// pair of ops, itself tested against Candle and central differences).
pub fn elu_conv_equals_unfused(
    n: usize,
    c: usize,
    o: usize,
    (h, w): (usize, usize),
    k: usize,
) -> Result<()> {
    for dtype in [DType::F64, DType::F32] {
        let x = transposed_batch(n, c, (h, w), 2.0)?.to_dtype(dtype)?;
        let w = test_kernel(o, c, k, 1.7)?.to_dtype(dtype)?;
        let b = pattern(1, o, 2.3).reshape(o)?.to_dtype(dtype)?;
        for padding in 0..k {
            for with_bias in [false, true] {
                let (xv, wv, bv) = (
                    Var::from_tensor(&x)?,
                    Var::from_tensor(&w)?,
                    Var::from_tensor(&b)?,
                );
                let bias = with_bias.then_some(bv.as_tensor());
                let cfg = Conv2dConfig::padded(padding);
                let fused = elu_conv2d(xv.as_tensor(), wv.as_tensor(), bias, None, &cfg)?;
                let unfused = conv2d(&elu(xv.as_tensor())?, wv.as_tensor(), bias, &cfg)?;
                let what = format!("{dtype:?} p={padding} bias={with_bias}");
                assert!(same_values(&fused, &unfused)?, "{what}: values differ");
                let weights = pattern(1, fused.elem_count(), 0.9)
                    .reshape(fused.dims())?
                    .to_dtype(dtype)?;
                let g1 = (fused * &weights)?.sum_all()?.backward()?;
                let g2 = (unfused * &weights)?.sum_all()?.backward()?;
                let vars = [("x", &xv), ("w", &wv), ("b", &bv)];
                for (name, var) in vars.into_iter().take(if with_bias { 3 } else { 2 }) {
                    let a = g1.get(var.as_tensor()).expect("gradient");
                    let c = g2.get(var.as_tensor()).expect("gradient");
                    assert!(max_abs_of(c)? > 0.0, "{what}: vacuous d/d{name}");
                    assert!(same_values(a, c)?, "{what}: d/d{name} differs");
                }
                // A pass for the input gradient only: the same input gradient, no kernel or
                // bias gradient computed.
                let fused = elu_conv2d(xv.as_tensor(), wv.as_tensor(), bias, None, &cfg)?;
                let g3 = layers::grad_mode::input_gradients_only(|| {
                    (fused * &weights)?.sum_all()?.backward()
                })?;
                let gx = g3.get(xv.as_tensor()).expect("input gradient");
                assert!(
                    same_values(gx, g2.get(xv.as_tensor()).expect("gradient"))?,
                    "{what}: input-only d/dx differs"
                );
                assert!(
                    g3.get(wv.as_tensor()).is_none(),
                    "{what}: kernel gradient computed"
                );
                assert!(
                    g3.get(bv.as_tensor()).is_none(),
                    "{what}: bias gradient computed"
                );
            }
        }
    }
    Ok(())
}

/// The residual forms against the ops they fuse (the oracle; `elu_conv2d` itself is checked
/// against the unfused ops above): `elu_conv2d` with the residual `r` against
/// `elu_conv2d(x, w, ..) + r`, or with `pool = Some(k)` against
/// `avg_pool2d(&elu_conv2d(x, w, ..), k) + r` (odd output sides included,
/// where the pooling drops a row and a column). At every padding, in f64 and f32: equal values
/// and equal gradients in the input, the kernel and the residual.
pub fn elu_conv_residual_equals_separate_ops(
    n: usize,
    c: usize,
    o: usize,
    (h, w): (usize, usize),
    k: usize,
    pool: Option<usize>,
) -> Result<()> {
    let separate_conv = |x: &Tensor, w: &Tensor, padding: usize| -> Result<Tensor> {
        let y = elu_conv2d(x, w, None, None, &Conv2dConfig::padded(padding))?;
        match pool {
            Some(pk) => avg_pool2d(&y, pk),
            None => Ok(y),
        }
    };
    for dtype in [DType::F64, DType::F32] {
        let x = (pattern(n, c * h * w, 0.7).reshape((n, c, h, w))? * 2.0)?.to_dtype(dtype)?;
        let w = test_kernel(o, c, k, 1.3)?.to_dtype(dtype)?;
        for padding in 0..k {
            let out_dims = separate_conv(&x, &w, padding)?.dims().to_vec();
            let r = pattern(1, out_dims.iter().product(), 1.9)
                .reshape(out_dims.as_slice())?
                .to_dtype(dtype)?;
            let (xv, wv, rv) = (
                Var::from_tensor(&x)?,
                Var::from_tensor(&w)?,
                Var::from_tensor(&r)?,
            );
            let (xt, wt, rt) = (xv.as_tensor(), wv.as_tensor(), rv.as_tensor());
            let residual = Residual { tensor: rt, pool };
            let cfg = Conv2dConfig::padded(padding);
            let fused = elu_conv2d(xt, wt, None, Some(residual), &cfg)?;
            let separate = (separate_conv(xt, wt, padding)? + rt)?;
            let what = format!("{dtype:?} p={padding} pool={pool:?}");
            assert!(same_values(&fused, &separate)?, "{what}: values differ");
            let weights = pattern(1, fused.elem_count(), 0.6)
                .reshape(fused.dims())?
                .to_dtype(dtype)?;
            let g1 = (fused * &weights)?.sum_all()?.backward()?;
            let g2 = (separate * &weights)?.sum_all()?.backward()?;
            for (name, var) in [("x", &xv), ("w", &wv), ("r", &rv)] {
                let a = g1.get(var.as_tensor()).expect("gradient");
                let c = g2.get(var.as_tensor()).expect("gradient");
                assert!(max_abs_of(c)? > 0.0, "{what}: vacuous d/d{name}");
                assert!(same_values(a, c)?, "{what}: d/d{name} differs");
            }
        }
    }
    Ok(())
}
