//! The fused CPU kernels behind `layers::{elu, softplus, bias_add, avg_pool2d}`: values equal
//! Candle's own ops (`elu`, softplus composed of `relu`/`exp`/`log`, `broadcast_add`,
//! reshape-and-mean pooling) in f32 and f64, on strided inputs
//! and on tensors large enough to be split over threads; first, second and third directional
//! derivatives equal those of Candle's ops (nested autodiff) and central differences of the
//! order below.

mod common;

use candle_core::{DType, Result, Tensor, Var};
use common::pattern;
use layers::grad_mode::enable_higher_order;
use layers::{avg_pool2d, bias_add, elu, softplus};

fn max_abs_diff(a: &Tensor, b: &Tensor) -> Result<f64> {
    (a - b)?
        .abs()?
        .flatten_all()?
        .max(0)?
        .to_dtype(DType::F64)?
        .to_scalar::<f64>()
}

/// `x` pushed at least 0.05 away from the ELU kink, so central differences never straddle it.
fn off_kink(x: &Tensor) -> Result<Tensor> {
    x + (x.ge(0.0)?.to_dtype(x.dtype())? - 0.5)?.affine(0.1, 0.0)?
}

/// Candle's pooling: window means through reshape and `mean` (floor mode).
fn candle_pool(x: &Tensor, k: usize) -> Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    let (ho, wo) = (h / k, w / k);
    x.narrow(2, 0, ho * k)?
        .narrow(3, 0, wo * k)?
        .reshape((n, c, ho, k, wo, k))?
        .mean(5)?
        .mean(3)
}

/// The first three directional derivatives of `f` at `x` along `v` by nested autodiff:
/// `v.grad f`, `v.H v`, `d/dx (v.H v) . v`.
fn directional_derivatives(
    f: &dyn Fn(&Tensor) -> Result<Tensor>,
    x: &Tensor,
    v: &Tensor,
) -> Result<[f64; 3]> {
    let var = Var::from_tensor(x)?;
    let g = f(var.as_tensor())?
        .backward()?
        .remove(var.as_tensor())
        .expect("first derivative");
    let d1 = (&g * v)?.sum_all()?;
    let h = d1
        .backward()?
        .remove(var.as_tensor())
        .expect("second derivative");
    let d2 = (&h * v)?.sum_all()?;
    let t = d2
        .backward()?
        .remove(var.as_tensor())
        .expect("third derivative");
    let d3 = (&t * v)?.sum_all()?;
    Ok([
        d1.to_scalar::<f64>()?,
        d2.to_scalar::<f64>()?,
        d3.to_scalar::<f64>()?,
    ])
}

/// Checks the fused `ours` against Candle's `theirs`: values, and the three directional
/// derivatives of `sum(c * op(x)^3)` against Candle's and against central differences of the
/// order below.
fn check_op(
    name: &str,
    ours: &dyn Fn(&Tensor) -> Result<Tensor>,
    theirs: &dyn Fn(&Tensor) -> Result<Tensor>,
    x: &Tensor,
    v: &Tensor,
) -> Result<()> {
    let values = max_abs_diff(&ours(x)?, &theirs(x)?)?;
    assert!(values < 1e-12, "{name}: values differ by {values}");
    let out_shape = ours(x)?.shape().clone();
    let c = pattern(1, out_shape.elem_count(), 3.3).reshape(out_shape)?;
    let loss = |op: &dyn Fn(&Tensor) -> Result<Tensor>, x: &Tensor| -> Result<Tensor> {
        (op(x)?.powf(3.0)? * &c)?.sum_all()
    };
    let a = directional_derivatives(&|x| loss(ours, x), x, v)?;
    let b = directional_derivatives(&|x| loss(theirs, x), x, v)?;
    for k in 0..3 {
        assert!(
            (a[k] - b[k]).abs() < 1e-9 * (1.0 + b[k].abs()),
            "{name}: derivative {} is {} but Candle's is {}",
            k + 1,
            a[k],
            b[k]
        );
    }
    // Central differences of derivative k along v approximate derivative k + 1.
    let h = 1e-5;
    let plus = directional_derivatives(&|x| loss(ours, x), &(x + (v * h)?)?, v)?;
    let minus = directional_derivatives(&|x| loss(ours, x), &(x - (v * h)?)?, v)?;
    for k in 0..2 {
        let numeric = (plus[k] - minus[k]) / (2.0 * h);
        assert!(
            numeric.abs() > 1e-3,
            "{name}: vacuous check at order {}",
            k + 2
        );
        assert!(
            (a[k + 1] - numeric).abs() < 1e-6 * (1.0 + numeric.abs()),
            "{name}: derivative {} is {} but central differences give {numeric}",
            k + 2,
            a[k + 1]
        );
    }
    Ok(())
}

#[test]
fn elu_matches_candle_to_the_third_derivative() -> Result<()> {
    enable_higher_order().expect("Candle's higher-order mode");
    let x = off_kink(&pattern(2, 3 * 5 * 5, 0.4).reshape((2, 3, 5, 5))?)?;
    let v = pattern(2, 3 * 5 * 5, 2.7).reshape((2, 3, 5, 5))?;
    check_op("elu", &|x| elu(x), &|x| x.elu(1.0), &x, &v)
}

/// Softplus from Candle ops, `relu(z) + log(1 + e^-|z|)`.
fn candle_softplus(z: &Tensor) -> Result<Tensor> {
    z.relu()? + (z.abs()?.neg()?.exp()? + 1.0)?.log()?
}

#[test]
fn softplus_matches_candle_to_the_third_derivative() -> Result<()> {
    enable_higher_order().expect("Candle's higher-order mode");
    let x = (pattern(2, 3 * 5 * 5, 0.4).reshape((2, 3, 5, 5))? * 3.0)?;
    let v = pattern(2, 3 * 5 * 5, 2.7).reshape((2, 3, 5, 5))?;
    check_op("softplus", &|x| softplus(x), &candle_softplus, &x, &v)?;
    // Far tails, where sigmoid(z) rounds to 0 or 1: the derivatives of orders 2 to 4 equal
    // their closed forms s(1-s), s(1-s)(1-2s), s(1-s)(1-6s+6s^2) to relative precision.
    let z = Tensor::new(&[-30.0f64, -8.0, 0.0, 8.0, 30.0], &candle_core::Device::Cpu)?;
    let var = Var::from_tensor(&z)?;
    let mut d = softplus(var.as_tensor())?;
    let mut derivatives = Vec::new();
    for _ in 0..4 {
        d = d
            .sum_all()?
            .backward()?
            .remove(var.as_tensor())
            .expect("derivative");
        derivatives.push(d.to_vec1::<f64>()?);
    }
    for (i, &z) in z.to_vec1::<f64>()?.iter().enumerate() {
        let s = 1.0 / (1.0 + (-z).exp());
        let t = 1.0 / (1.0 + z.exp());
        let expected = [s, s * t, s * t * (t - s), s * t * (1.0 - 6.0 * s * t)];
        for (k, e) in expected.iter().enumerate() {
            let got = derivatives[k][i];
            assert!(
                (got - e).abs() <= 1e-12 * e.abs().max(1e-300),
                "softplus derivative {} at {z}: {got} vs {e}",
                k + 1
            );
        }
    }
    Ok(())
}

#[test]
fn bias_add_matches_broadcast_add_to_the_third_derivative() -> Result<()> {
    enable_higher_order().expect("Candle's higher-order mode");
    let x = pattern(2, 3 * 4 * 5, 0.4).reshape((2, 3, 4, 5))?;
    let v = pattern(2, 3 * 4 * 5, 2.7).reshape((2, 3, 4, 5))?;
    let b = pattern(1, 3, 1.1).reshape(3)?;
    // In the input.
    check_op(
        "bias_add (input)",
        &|x| bias_add(x, &b),
        &|x| x.broadcast_add(&b.reshape((1, 3, 1, 1))?),
        &x,
        &v,
    )?;
    // In the bias: the channel sum and its adjoint, the channel broadcast, at every order.
    let vb = pattern(1, 3, 4.0).reshape(3)?;
    check_op(
        "bias_add (bias)",
        &|b| bias_add(&x, b),
        &|b| x.broadcast_add(&b.reshape((1, 3, 1, 1))?),
        &b,
        &vb,
    )?;
    // A bias of the wrong length is refused with its shape named.
    let err = bias_add(&x, &pattern(1, 4, 0.0).reshape(4)?).unwrap_err();
    assert!(err.to_string().contains("[4]"), "{err}");
    Ok(())
}

/// The `[N, C]` layout of a dense layer's output (rows plus the bias, column sums, rows of the
/// bias), in the input and in the bias, to the third derivative; and [`layers::Linear`] against
/// the product written out.
#[test]
fn bias_add_on_rows_and_linear_match_candle() -> Result<()> {
    enable_higher_order().expect("Candle's higher-order mode");
    // 300 columns: more than one block of the column sum.
    let x = pattern(6, 300, 0.4);
    let v = pattern(6, 300, 2.7);
    let b = pattern(1, 300, 1.1).reshape(300)?;
    check_op(
        "bias_add rows (input)",
        &|x| bias_add(x, &b),
        &|x| x.broadcast_add(&b),
        &x,
        &v,
    )?;
    let vb = pattern(1, 300, 4.0).reshape(300)?;
    check_op(
        "bias_add rows (bias)",
        &|b| bias_add(&x, b),
        &|b| x.broadcast_add(b),
        &b,
        &vb,
    )?;
    let w = pattern(5, 300, 0.9);
    let layer = layers::Linear::new(w.clone(), Some(pattern(1, 5, 0.2).reshape(5)?));
    let want = x
        .matmul(&w.t()?)?
        .broadcast_add(&pattern(1, 5, 0.2).reshape(5)?)?;
    let got = candle_core::Module::forward(&layer, &x)?;
    assert!(max_abs_diff(&got, &want)? < 1e-12);
    // A leading batch axis more: the same rows.
    let x3 = x.reshape((2, 3, 300))?;
    let got3 = candle_core::Module::forward(&layer, &x3)?;
    assert_eq!(got3.dims(), [2, 3, 5]);
    assert!(max_abs_diff(&got3.reshape((6, 5))?, &want)? < 1e-12);
    Ok(())
}

/// The fused dense layer `act(x W^T + b)` against the composition from Candle's ops, in the
/// input and in the weight, to the third derivative, for softplus, ELU and tanh.
#[test]
fn fused_dense_layer_matches_the_composition() -> Result<()> {
    use candle_core::Module;
    use layers::{DenseActivation, Linear};
    enable_higher_order().expect("Candle's higher-order mode");
    let x = pattern(4, 7, 0.4);
    let v = pattern(4, 7, 2.7);
    let w = (pattern(5, 7, 0.9) * 0.6)?;
    let vw = pattern(5, 7, 3.1);
    let b = pattern(1, 5, 0.2).reshape(5)?;
    for (act, name) in [
        (DenseActivation::Softplus, "softplus"),
        (DenseActivation::Elu, "elu"),
        (DenseActivation::Tanh, "tanh"),
    ] {
        let composed = |x: &Tensor, w: &Tensor| -> Result<Tensor> {
            let z = x.matmul(&w.t()?)?.broadcast_add(&b)?;
            match act {
                DenseActivation::Softplus => candle_softplus(&z),
                DenseActivation::Elu => z.elu(1.0),
                // tanh by its exponential form, independent of Candle's `tanh` and its backward.
                DenseActivation::Tanh => {
                    let e = (z * 2.0)?.exp()?;
                    (&e - 1.0)? / (&e + 1.0)?
                }
            }
        };
        let fused = |x: &Tensor, w: &Tensor| -> Result<Tensor> {
            Linear::new(w.clone(), Some(b.clone())).forward_activated(x, act)
        };
        check_op(
            &format!("dense {name} (input)"),
            &|x| fused(x, &w),
            &|x| composed(x, &w),
            &x,
            &v,
        )?;
        check_op(
            &format!("dense {name} (weight)"),
            &|w| fused(&x, w),
            &|w| composed(&x, w),
            &w,
            &vw,
        )?;
        // Without its activation the layer is the plain product plus bias.
        let plain = Linear::new(w.clone(), Some(b.clone())).forward(&x)?;
        let want = x.matmul(&w.t()?)?.broadcast_add(&b)?;
        assert!(max_abs_diff(&plain, &want)? < 1e-12);
    }
    Ok(())
}

#[test]
fn avg_pool_matches_candle_to_the_third_derivative() -> Result<()> {
    enable_higher_order().expect("Candle's higher-order mode");
    // 7 x 6 with k = 2 drops the last row: the adjoint must put zeros there.
    let x = pattern(2, 3 * 7 * 6, 0.4).reshape((2, 3, 7, 6))?;
    let v = pattern(2, 3 * 7 * 6, 2.7).reshape((2, 3, 7, 6))?;
    check_op(
        "avg_pool2d",
        &|x| avg_pool2d(x, 2),
        &|x| candle_pool(x, 2),
        &x,
        &v,
    )?;
    // Means of nine values are small; a longer direction keeps the checks far from vacuous.
    let v3 = (pattern(2, 3 * 7 * 6, 1.3).reshape((2, 3, 7, 6))? * 10.0)?;
    check_op(
        "avg_pool2d k=3",
        &|x| avg_pool2d(x, 3),
        &|x| candle_pool(x, 3),
        &x,
        &v3,
    )
}

/// f32, transposed (strided) inputs and tensors of several parallel chunks; an odd width
/// (the pooling drops a column) and an even one (its windows tile the plane).
#[test]
fn large_strided_f32_tensors_match_candle() -> Result<()> {
    for (n, c, h, w) in [(4, 8, 30, 31), (4, 8, 30, 32)] {
        large_strided_case(n, c, h, w)?;
    }
    Ok(())
}

fn large_strided_case(n: usize, c: usize, h: usize, w: usize) -> Result<()> {
    let x64 = pattern(n * c, h * w, 0.9).reshape((n, c, h, w))?;
    let b64 = pattern(1, c, 0.2).reshape(c)?;
    for dtype in [DType::F64, DType::F32] {
        let tol = if dtype == DType::F32 { 1e-5 } else { 1e-12 };
        let x = x64.to_dtype(dtype)?;
        let b = b64.to_dtype(dtype)?;
        // A strided view: the spatial axes swapped.
        let xt = x.transpose(2, 3)?;
        for (name, x) in [("contiguous", &x), ("transposed", &xt)] {
            let e = max_abs_diff(&elu(x)?, &x.elu(1.0)?)?;
            assert!(e < tol, "elu {name} {dtype:?}: {e}");
            let e = max_abs_diff(&softplus(x)?, &candle_softplus(x)?)?;
            assert!(e < tol, "softplus {name} {dtype:?}: {e}");
            let c = x.dim(1)?;
            let e = max_abs_diff(
                &bias_add(x, &b)?,
                &x.broadcast_add(&b.reshape((1, c, 1, 1))?)?,
            )?;
            assert!(e < tol, "bias_add {name} {dtype:?}: {e}");
            let e = max_abs_diff(&avg_pool2d(x, 2)?, &candle_pool(x, 2)?)?;
            assert!(e < tol, "avg_pool2d {name} {dtype:?}: {e}");
        }
        // Gradients of a large input through all three ops, against Candle's.
        let var = Var::from_tensor(&x)?;
        let ours = avg_pool2d(&elu(&bias_add(var.as_tensor(), &b)?)?, 2)?
            .sqr()?
            .sum_all()?
            .backward()?
            .remove(var.as_tensor())
            .expect("gradient");
        let theirs = candle_pool(
            &var.as_tensor()
                .broadcast_add(&b.reshape((1, c, 1, 1))?)?
                .elu(1.0)?,
            2,
        )?
        .sqr()?
        .sum_all()?
        .backward()?
        .remove(var.as_tensor())
        .expect("gradient");
        let e = max_abs_diff(&ours, &theirs)?;
        assert!(e < tol, "gradient {dtype:?} width {w}: {e}");
    }
    Ok(())
}

/// A layer whose input is data (not a variable, not computed from one) gives that input no
/// gradient: Candle would drop it, so the fused dense layer and convolutions skip computing it
/// (a product as large as the forward pass). The parameters' gradients are those of the same
/// layer with the input as a variable, bit for bit.
#[test]
fn a_data_input_gets_no_gradient_and_the_parameters_the_same() -> Result<()> {
    use layers::{conv2d, Conv2dConfig, DenseActivation, Linear};
    let x = pattern(5, 7, 0.3);
    let w = Var::from_tensor(&pattern(4, 7, 1.1))?;
    let b = Var::from_tensor(&pattern(1, 4, 2.0).flatten_all()?)?;
    let dense = Linear::new(w.as_tensor().clone(), Some(b.as_tensor().clone()));
    let xv = Var::from_tensor(&x)?;
    let data = dense
        .forward_activated(&x, DenseActivation::Softplus)?
        .sum_all()?
        .backward()?;
    let tracked = dense
        .forward_activated(xv.as_tensor(), DenseActivation::Softplus)?
        .sum_all()?
        .backward()?;
    assert!(data.get(&x).is_none(), "the data input got a gradient");
    assert!(tracked.get(xv.as_tensor()).is_some());
    for p in [&w, &b] {
        let (a, t) = (
            data.get(p.as_tensor()).unwrap(),
            tracked.get(p.as_tensor()).unwrap(),
        );
        assert_eq!(
            a.flatten_all()?.to_vec1::<f64>()?,
            t.flatten_all()?.to_vec1::<f64>()?
        );
    }

    let img = pattern(2 * 3, 36, 0.7).reshape((2, 3, 6, 6))?;
    let k = Var::from_tensor(&pattern(4 * 3, 9, 0.2).reshape((4, 3, 3, 3))?)?;
    let kb = Var::from_tensor(&pattern(1, 4, 0.9).flatten_all()?)?;
    let cfg = Conv2dConfig {
        padding: 1,
        ..Conv2dConfig::default()
    };
    let imgv = Var::from_tensor(&img)?;
    for bias in [None, Some(kb.as_tensor())] {
        let data = conv2d(&img, k.as_tensor(), bias, &cfg)?
            .sqr()?
            .sum_all()?
            .backward()?;
        let tracked = conv2d(imgv.as_tensor(), k.as_tensor(), bias, &cfg)?
            .sqr()?
            .sum_all()?
            .backward()?;
        assert!(data.get(&img).is_none(), "the data image got a gradient");
        assert!(tracked.get(imgv.as_tensor()).is_some());
        let params = std::iter::once(k.as_tensor()).chain(bias);
        for p in params {
            let flat = |g: &candle_core::backprop::GradStore| -> Result<Vec<f64>> {
                g.get(p).unwrap().flatten_all()?.to_vec1::<f64>()
            };
            assert_eq!(flat(&data)?, flat(&tracked)?);
        }
    }
    Ok(())
}
