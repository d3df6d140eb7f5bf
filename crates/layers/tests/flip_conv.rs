//! `layers::conv2d` (the convolution whose input gradient is a flipped-kernel convolution):
//! its values and first derivatives equal Candle's `conv2d`, and its second and third
//! derivatives, in the input and in the kernel, match central differences of the order below;
//! so does the derivative of its kernel gradient, and rectangular, strided, multi-chunk f32 and
//! f64 batches agree with Candle. `layers::elu_conv2d` in higher-order mode: its values and
//! its first, second and mixed derivatives equal those of `conv2d(&elu(x))`.

mod common;

use candle_core::{DType, Device, Result, Tensor, Var};
use common::*;
use layers::grad_mode::enable_higher_order;
use layers::{conv2d, elu, elu_conv2d, softplus, Conv2dConfig};

fn max_abs(t: &Tensor) -> Result<f64> {
    t.abs()?.max_all()?.to_scalar::<f64>()
}

/// A small conv net `x -> sum softplus(conv(softplus(conv(x, w1) + b)), w2)^2` with either
/// convolution.
fn net(x: &Tensor, w1: &Tensor, b: &Tensor, w2: &Tensor, ours: bool) -> Result<Tensor> {
    let h = if ours {
        conv2d(x, w1, Some(b), &Conv2dConfig::padded(1))?
    } else {
        x.conv2d(w1, 1, 1, 1, 1)?
            .broadcast_add(&b.reshape((1, 3, 1, 1))?)?
    };
    let h = softplus(&h)?;
    let y = if ours {
        conv2d(&h, w2, None, &Conv2dConfig::padded(0))?
    } else {
        h.conv2d(w2, 0, 1, 1, 1)?
    };
    softplus(&y)?.sqr()?.sum_all()
}

fn params() -> Result<(Tensor, Tensor, Tensor, Tensor)> {
    Ok((
        pattern(2, 2 * 6 * 6, 0.7).reshape((2, 2, 6, 6))?,
        (pattern(1, 3 * 2 * 9, 2.1).reshape((3, 2, 3, 3))? * 0.5)?,
        (pattern(1, 3, 4.2).reshape(3)? * 0.1)?,
        (pattern(1, 4 * 3, 3.3).reshape((4, 3, 1, 1))? * 0.5)?,
    ))
}

#[test]
fn values_and_gradients_equal_candles_conv2d() -> Result<()> {
    let (x, w1, b, w2) = params()?;
    let (xv, w1v, bv) = (
        Var::from_tensor(&x)?,
        Var::from_tensor(&w1)?,
        Var::from_tensor(&b)?,
    );
    let ours = net(xv.as_tensor(), w1v.as_tensor(), bv.as_tensor(), &w2, true)?;
    let theirs = net(xv.as_tensor(), w1v.as_tensor(), bv.as_tensor(), &w2, false)?;
    let diff = (ours.to_scalar::<f64>()? - theirs.to_scalar::<f64>()?).abs();
    assert!(
        diff < 1e-12 * (1.0 + theirs.to_scalar::<f64>()?.abs()),
        "{diff}"
    );
    let (g1, g2) = (ours.backward()?, theirs.backward()?);
    for (name, var) in [("x", &xv), ("w1", &w1v), ("b", &bv)] {
        let a = g1.get(var.as_tensor()).expect("gradient");
        let c = g2.get(var.as_tensor()).expect("gradient");
        let err = max_abs(&(a - c)?)?;
        assert!(err < 1e-12 * (1.0 + max_abs(c)?), "d/d{name}: {err}");
    }
    // Bad shapes are named.
    let err = conv2d(&x, &w2, None, &Conv2dConfig::padded(0))
        .unwrap_err()
        .to_string();
    assert!(err.contains("channels"), "{err}");
    let err = conv2d(&x, &w1, None, &Conv2dConfig::padded(3))
        .unwrap_err()
        .to_string();
    assert!(err.contains("padding"), "{err}");
    let err = conv2d(&x, &w1, Some(&w2.flatten_all()?), &Conv2dConfig::padded(1))
        .unwrap_err()
        .to_string();
    assert!(err.contains("bias"), "{err}");
    let err = conv2d(
        &x,
        &w1,
        Some(&b.to_dtype(DType::F32)?),
        &Conv2dConfig::padded(1),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("bias dtype"), "{err}");
    let _ = Device::Cpu;
    Ok(())
}

/// `u . d/dp (v . grad_x f)` by nested autodiff against central differences of `v . grad_x f`
/// along `u` in the parameter `p` (the input itself or the first kernel).
#[test]
fn higher_derivatives_match_central_differences() -> Result<()> {
    enable_higher_order().expect("Candle's higher-order mode");
    let (x, w1, b, w2) = params()?;
    let v = pattern(2, 2 * 6 * 6, 5.0).reshape((2, 2, 6, 6))?;
    // v . grad_x f at (x, w1), kept differentiable.
    let directional = |x: &Tensor, w1: &Tensor| -> Result<(Var, Var, Tensor)> {
        let (xv, wv) = (Var::from_tensor(x)?, Var::from_tensor(w1)?);
        let f = net(xv.as_tensor(), wv.as_tensor(), &b, &w2, true)?;
        let g = f.backward()?.remove(xv.as_tensor()).expect("d/dx");
        let d = (g * &v)?.sum_all()?;
        Ok((xv, wv, d))
    };
    let (xv, wv, d) = directional(&x, &w1)?;
    let grads = d.backward()?;
    let h = 1e-5;
    // Second derivative in x (H v) and mixed derivative in w1.
    for (name, along) in [
        ("x", v.clone()),
        ("w1", pattern(1, 54, 1.9).reshape((3, 2, 3, 3))?),
    ] {
        let analytic = if name == "x" {
            (grads.get(xv.as_tensor()).expect("d2/dx2") * &along)?.sum_all()?
        } else {
            (grads.get(wv.as_tensor()).expect("d2/dxdw") * &along)?.sum_all()?
        }
        .to_scalar::<f64>()?;
        let at = |s: f64| -> Result<f64> {
            let (xs, ws) = if name == "x" {
                ((&x + (&along * s)?)?, w1.clone())
            } else {
                (x.clone(), (&w1 + (&along * s)?)?)
            };
            directional(&xs, &ws)?.2.to_scalar::<f64>()
        };
        let numeric = (at(h)? - at(-h)?) / (2.0 * h);
        assert!(numeric.abs() > 1e-3, "{name}: vacuous check");
        assert!(
            (analytic - numeric).abs() < 1e-6 * (1.0 + numeric.abs()),
            "{name}: {analytic} vs {numeric}"
        );
    }
    // Third order: d/dx of (v . H v) against differences of H v.
    let hv = |x: &Tensor| -> Result<(Var, Tensor)> {
        let (xv, _, d) = directional(x, &w1)?;
        let hv = d.backward()?.remove(xv.as_tensor()).expect("Hv");
        Ok((xv, (hv * &v)?.sum_all()?))
    };
    let (xv, vhv) = hv(&x)?;
    let third = (vhv.backward()?.remove(xv.as_tensor()).expect("third") * &v)?
        .sum_all()?
        .to_scalar::<f64>()?;
    let numeric = (hv(&(&x + (&v * h)?)?)?.1.to_scalar::<f64>()?
        - hv(&(&x - (&v * h)?)?)?.1.to_scalar::<f64>()?)
        / (2.0 * h);
    assert!(numeric.abs() > 1e-3, "third order: vacuous check");
    assert!(
        (third - numeric).abs() < 1e-5 * (1.0 + numeric.abs()),
        "third order: {third} vs {numeric}"
    );
    Ok(())
}

/// Few channels: output maps of 2 to 70 positions take both the per-sample and the
/// whole-batch paths of the forward pass (<= 16 positions) and of the kernel gradient (<= 64).
#[test]
fn rectangular_strided_batches_match_candle_in_f64_and_f32() -> Result<()> {
    agrees_with_candle(7, 2, 4, (8, 5), 3)?;
    agrees_with_candle(7, 2, 4, (4, 3), 3)
}

/// Padded maps of at most 16 outputs take the offset decomposition that skips the padding
/// (forward pass, input gradient and kernel gradient), with more output channels than one task
/// block and a rectangular map.
#[test]
fn small_padded_maps_match_candle_in_f64_and_f32() -> Result<()> {
    agrees_with_candle(6, 5, 70, (3, 3), 3)?;
    agrees_with_candle(4, 3, 5, (3, 4), 3)
}

/// 1x1 kernels on maps of more than 64 positions take the copy-free pointwise paths (forward
/// pass, input gradient and kernel gradient).
#[test]
fn pointwise_convolutions_match_candle_in_f64_and_f32() -> Result<()> {
    agrees_with_candle(5, 3, 6, (9, 10), 1)
}

/// 16 and more channels on maps of 6 and more take Winograd's paths (forward pass, input and
/// kernel gradients): F(4x4, 3x3) on output maps of 7 and more, F(2x2, 3x3) on 6 (the
/// `(8, 10)` input without padding), with odd and even map sides (partial tiles at the
/// border), maps of one and of several samples per chunk of tiles, and (ten samples of one
/// chunk each) more chunks than the kernel gradient has groups, so that some groups sum
/// several chunks.
#[test]
fn winograd_layers_match_candle_in_f64_and_f32() -> Result<()> {
    agrees_with_candle(3, 16, 24, (9, 12), 3)?;
    agrees_with_candle(5, 16, 20, (8, 10), 3)?;
    agrees_with_candle(10, 16, 16, (33, 34), 3)
}

/// The kernel gradient is itself differentiable: `d/dx (U . grad_w1 f)`, which runs the
/// kernel-gradient op's own backward (in its input and in its output gradient), against central
/// differences of `U . grad_w1 f` in `x`.
#[test]
fn the_kernel_gradient_differentiates_correctly() -> Result<()> {
    enable_higher_order().expect("Candle's higher-order mode");
    let (x, w1, b, w2) = params()?;
    let u = pattern(1, 54, 2.6).reshape((3, 2, 3, 3))?;
    let along = pattern(2, 2 * 6 * 6, 3.9).reshape((2, 2, 6, 6))?;
    let weighted = |x: &Tensor| -> Result<(Var, Tensor)> {
        let (xv, wv) = (Var::from_tensor(x)?, Var::from_tensor(&w1)?);
        let f = net(xv.as_tensor(), wv.as_tensor(), &b, &w2, true)?;
        let gw = f.backward()?.remove(wv.as_tensor()).expect("d/dw1");
        Ok((xv, (gw * &u)?.sum_all()?))
    };
    let (xv, d) = weighted(&x)?;
    let analytic = (d.backward()?.remove(xv.as_tensor()).expect("d2/dwdx") * &along)?
        .sum_all()?
        .to_scalar::<f64>()?;
    let h = 1e-5;
    let numeric = (weighted(&(&x + (&along * h)?)?)?.1.to_scalar::<f64>()?
        - weighted(&(&x - (&along * h)?)?)?.1.to_scalar::<f64>()?)
        / (2.0 * h);
    assert!(numeric.abs() > 1e-3, "vacuous check");
    assert!(
        (analytic - numeric).abs() < 1e-6 * (1.0 + numeric.abs()),
        "{analytic} vs {numeric}"
    );
    Ok(())
}

/// In higher-order mode `elu_conv2d` builds its backward pass from differentiable ops: its
/// values and gradients equal those of `conv2d(&elu(x))` (Winograd and small-map layers), and
/// so do the second derivatives `d/dx (v . grad_x f)` and `d/dw (v . grad_x f)` of a weighted
/// sum `f` of its outputs, the quantities SSM and DSM differentiate. The oracle is the unfused
/// pair of ops, whose higher derivatives are checked against central differences above.
#[test]
fn elu_conv_differentiates_like_the_unfused_ops() -> Result<()> {
    enable_higher_order().expect("Candle's higher-order mode");
    elu_conv_equals_unfused(3, 16, 20, (9, 10), 3)?;
    elu_conv_equals_unfused(4, 6, 5, (3, 3), 3)?;
    elu_conv_residual_equals_separate_ops(3, 16, 20, (9, 10), 3, None)?;
    elu_conv_residual_equals_separate_ops(3, 16, 20, (9, 9), 3, Some(2))?;
    for (n, c, o, (h, w)) in [(2, 16, 16, (9, 9)), (2, 3, 4, (3, 3))] {
        let x = (pattern(n, c * h * w, 0.4).reshape((n, c, h, w))? * 2.0)?;
        let wt = (pattern(1, o * c * 9, 1.1).reshape((o, c, 3, 3))? * (1.5 / c as f64))?;
        let b = pattern(1, o, 2.9).reshape(o)?;
        let u = pattern(1, n * o * h * w, 0.8).reshape((n, o, h, w))?;
        let v = pattern(1, n * c * h * w, 3.3).reshape((n, c, h, w))?;
        let second = |fused: bool| -> Result<(Tensor, Tensor)> {
            let (xv, wv) = (Var::from_tensor(&x)?, Var::from_tensor(&wt)?);
            let y = if fused {
                elu_conv2d(
                    xv.as_tensor(),
                    wv.as_tensor(),
                    Some(&b),
                    None,
                    &Conv2dConfig::padded(1),
                )?
            } else {
                conv2d(
                    &elu(xv.as_tensor())?,
                    wv.as_tensor(),
                    Some(&b),
                    &Conv2dConfig::padded(1),
                )?
            };
            let gx = (y * &u)?
                .sum_all()?
                .backward()?
                .remove(xv.as_tensor())
                .expect("d/dx");
            let grads = (gx * &v)?.sum_all()?.backward()?;
            Ok((
                grads.get(xv.as_tensor()).expect("d2/dx2").clone(),
                grads.get(wv.as_tensor()).expect("d2/dxdw").clone(),
            ))
        };
        let ((hx, hw), (hx_ref, hw_ref)) = (second(true)?, second(false)?);
        assert!(
            max_abs(&hx_ref)? > 1e-3 && max_abs(&hw_ref)? > 1e-3,
            "vacuous check"
        );
        assert!(same_values(&hx, &hx_ref)?, "{c} channels: d2/dx2 differs");
        assert!(same_values(&hw, &hw_ref)?, "{c} channels: d2/dxdw differs");
    }
    Ok(())
}
