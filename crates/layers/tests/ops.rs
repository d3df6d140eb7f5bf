//! The ops compute the right values (direct window means, closed forms) and correct second
//! derivatives (Hessian-vector products by nested autodiff against central differences of the
//! gradient).

mod common;

use candle_core::{Result, Tensor};
use common::*;
use layers::grad_mode::enable_higher_order;
use layers::{avg_pool2d, group_norm, instance_norm, shifted_softplus, sigmoid, softplus};

#[test]
fn ops_have_correct_second_derivatives() -> Result<()> {
    enable_higher_order().expect("Candle's higher-order mode");
    let img = pattern(2, 2 * 7 * 7, 0.3).reshape((2, 2, 7, 7))?;
    let dir = pattern(2, 2 * 7 * 7, 5.0).reshape((2, 2, 7, 7))?;
    check_hvp("avg_pool2d", |x| avg_pool2d(x, 2)?.powf(3.0), &img, &dir)?;
    check_hvp("softplus", |x| softplus(&(x * 3.0)?)?.sqr(), &img, &dir)?;
    check_hvp(
        "shifted softplus",
        |x| shifted_softplus(x)?.powf(3.0),
        &img,
        &dir,
    )?;
    check_hvp(
        "instance_norm",
        |x| instance_norm(&x.sqr()?, 1e-5)?.powf(3.0),
        &img,
        &dir,
    )?;
    check_hvp(
        "group_norm",
        |x| group_norm(&x.exp()?, 1, 1e-5)?.powf(3.0),
        &img,
        &dir,
    )?;
    Ok(())
}

#[test]
fn ops_compute_the_right_values() -> Result<()> {
    // avg_pool2d (floor mode on 7x7 -> 3x3) against a direct window mean.
    let img = pattern(1, 49, 0.0).reshape((1, 1, 7, 7))?;
    let pooled = avg_pool2d(&img, 2)?;
    assert_eq!(pooled.dims(), &[1, 1, 3, 3]);
    let px = img.flatten_all()?.to_vec1::<f64>()?;
    let got = pooled.flatten_all()?.to_vec1::<f64>()?;
    for i in 0..3 {
        for j in 0..3 {
            let window = [
                px[2 * i * 7 + 2 * j],
                px[2 * i * 7 + 2 * j + 1],
                px[(2 * i + 1) * 7 + 2 * j],
                px[(2 * i + 1) * 7 + 2 * j + 1],
            ];
            assert!((got[i * 3 + j] - window.iter().sum::<f64>() / 4.0).abs() < 1e-15);
        }
    }
    assert!(avg_pool2d(&img, 8).is_err());
    // softplus: ln(1 + e^z), stable at the extremes.
    let z = Tensor::new(&[-1000.0f64, -3.0, 0.0, 2.5, 1000.0], &DEV)?;
    let sp = softplus(&z)?.to_vec1::<f64>()?;
    let expect = [
        0.0,
        (1.0 + (-3.0f64).exp()).ln(),
        2f64.ln(),
        (1.0 + 2.5f64.exp()).ln(),
        1000.0,
    ];
    for (a, b) in sp.iter().zip(expect) {
        assert!((a - b).abs() < 1e-12, "{a} vs {b}");
    }
    assert!(shifted_softplus(&Tensor::new(&[0.0f64], &DEV)?)?.to_vec1::<f64>()?[0].abs() < 1e-15);
    // sigmoid: 1 / (1 + e^-z), finite at the extremes, and softplus's slope (central differences).
    let s = sigmoid(&z)?.to_vec1::<f64>()?;
    for (&a, zv) in s.iter().zip([-1000.0f64, -3.0, 0.0, 2.5, 1000.0]) {
        assert!((a - 1.0 / (1.0 + (-zv).exp())).abs() < 1e-15, "{a} at {zv}");
    }
    let h = 1e-6;
    let slope = ((softplus(&(&z + h)?)? - softplus(&(&z - h)?)?)? / (2.0 * h))?.to_vec1::<f64>()?;
    for (a, b) in s.iter().zip(slope) {
        assert!((a - b).abs() < 1e-8, "{a} vs {b}");
    }
    // instance_norm: zero mean and unit variance per (sample, channel).
    let x = pattern(3, 4 * 25, 1.0).reshape((3, 4, 5, 5))?.exp()?;
    let n = instance_norm(&x, 1e-12)?.reshape((12, 25))?;
    for m in n.mean(1)?.to_vec1::<f64>()? {
        assert!(m.abs() < 1e-12);
    }
    for v in n.sqr()?.mean(1)?.to_vec1::<f64>()? {
        assert!((v - 1.0).abs() < 1e-9);
    }
    assert!(
        group_norm(&x, 3, 1e-5).is_err(),
        "3 groups do not divide 4 channels"
    );
    Ok(())
}
