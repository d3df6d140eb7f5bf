//! `Conv2dConfig::algorithm`: under every [`ConvAlgorithm`] `conv2d` equals Candle's `conv2d`
//! (values, input and kernel gradients, f32 and f64), the choice takes effect, and the f32
//! rounding of each stays within its documented size against an f64 reference.

mod common;

use candle_core::{DType, Result, Tensor, Var};
use common::*;
use layers::{conv2d, Conv2dConfig, ConvAlgorithm};

/// Relative RMS error of `a` against `reference` (both converted to f64).
fn rel_rms(a: &Tensor, reference: &Tensor) -> Result<f64> {
    let rms = |t: &Tensor| -> Result<f64> {
        t.to_dtype(DType::F64)?
            .sqr()?
            .mean_all()?
            .sqrt()?
            .to_scalar::<f64>()
    };
    Ok(rms(&(a.to_dtype(DType::F64)? - reference)?)? / rms(reference)?)
}

/// The f32 forward pass, input gradient and kernel gradient of a 32 -> 32 channel 3x3 layer on
/// a 14 x 14 map, each as a relative RMS error against the same computation in f64 (Candle's
/// direct convolution), with the f32 output itself.
fn f32_errors(algorithm: ConvAlgorithm) -> Result<([f64; 3], Tensor)> {
    let (n, c, o, s) = (4, 32, 32, 14);
    let x = pattern(n, c * s * s, 0.4).reshape((n, c, s, s))?;
    let w = (pattern(o, c * 9, 1.3).reshape((o, c, 3, 3))? * (1.0 / (9.0 * c as f64).sqrt()))?;
    let gy = pattern(n, o * s * s, 2.9).reshape((n, o, s, s))?;
    let (xe, we) = (Var::from_tensor(&x)?, Var::from_tensor(&w)?);
    let exact = xe.as_tensor().conv2d(we.as_tensor(), 1, 1, 1, 1)?;
    let ge = (&exact * &gy)?.sum_all()?.backward()?;
    let f32s = |t: &Tensor| t.to_dtype(DType::F32);
    let (xf, wf) = (Var::from_tensor(&f32s(&x)?)?, Var::from_tensor(&f32s(&w)?)?);
    let cfg = Conv2dConfig::padded(1).with_algorithm(algorithm);
    let y = conv2d(xf.as_tensor(), wf.as_tensor(), None, &cfg)?;
    let gf = (&y * f32s(&gy)?)?.sum_all()?.backward()?;
    let grad = |g: &candle_core::backprop::GradStore, v: &Var| {
        g.get(v.as_tensor()).cloned().expect("gradient")
    };
    Ok((
        [
            rel_rms(&y, &exact)?,
            rel_rms(&grad(&gf, &xf), &grad(&ge, &xe))?,
            rel_rms(&grad(&gf, &wf), &grad(&ge, &we))?,
        ],
        y,
    ))
}

#[test]
fn every_algorithm_computes_the_convolution() -> Result<()> {
    assert_eq!(
        Conv2dConfig::default().algorithm,
        ConvAlgorithm::Fastest,
        "the default"
    );
    let mut outputs = Vec::new();
    for algorithm in ConvAlgorithm::ALL {
        // F(4x4, 3x3) under Fastest (maps of 7+), F(2x2, 3x3) on the 6 x 6 outputs of the
        // unpadded (8, 10) input, the direct convolution under Direct.
        agrees_with_candle_under(algorithm, 3, 16, 24, (9, 12), 3)?;
        agrees_with_candle_under(algorithm, 5, 16, 20, (8, 10), 3)?;
        let (errors, y) = f32_errors(algorithm)?;
        // Lavin and Gray's F(4x4, 3x3) rounds several times more than the direct convolution
        // (measured 3.0e-6 here against 4.7e-7 for the values); F(2x2, 3x3) about like it.
        let bound = if algorithm == ConvAlgorithm::Fastest {
            5e-6
        } else {
            1e-6
        };
        for (what, e) in ["values", "input gradient", "kernel gradient"]
            .iter()
            .zip(errors)
        {
            assert!(
                e < bound,
                "{algorithm:?} {what}: relative RMS error {e:.2e}"
            );
            assert!(e > 0.0, "{algorithm:?} {what}: f32 equal to f64, vacuous");
        }
        outputs.push((algorithm, errors, y));
    }
    // The setting takes effect: the three algorithms round differently, and the larger tiles
    // round more than the small ones.
    for i in 0..outputs.len() {
        for j in i + 1..outputs.len() {
            let d = max_abs_of(&(&outputs[i].2 - &outputs[j].2)?)?;
            assert!(
                d > 0.0,
                "{:?} and {:?} gave identical f32 outputs",
                outputs[i].0,
                outputs[j].0
            );
        }
    }
    let (fastest, accurate) = (outputs[0].1[0], outputs[1].1[0]);
    assert!(
        fastest > 2.0 * accurate,
        "F(4x4, 3x3) should round more than F(2x2, 3x3): {fastest:.2e} vs {accurate:.2e}"
    );
    Ok(())
}
