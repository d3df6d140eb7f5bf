//! Seeded noise is reproducible and has the promised distributions; the safe building blocks
//! compute the right values and correct second derivatives (Hessian-vector products by nested
//! autodiff against central differences of the gradient).

mod common;

use candle_core::{Result, Tensor, Var};
use common::*;
use sm_objectives::autodiff::enable_higher_order;
use sm_objectives::noise::{geometric_sigmas, linear_sigmas};
use sm_objectives::safe_ops::{avg_pool2d, group_norm, instance_norm, shifted_softplus, softplus};
use sm_objectives::{Directions, NoiseSource};

#[test]
fn noise_is_reproducible_and_well_distributed() -> Result<()> {
    let x = Tensor::zeros((500, 8), candle_core::DType::F32, &DEV)?;
    let draw = |seed| -> Result<Vec<Vec<f32>>> {
        let mut n = NoiseSource::new(seed);
        n.gaussian_like(&x)?.to_vec2::<f32>()
    };
    assert_eq!(draw(42)?, draw(42)?, "same seed, same noise");
    assert_ne!(draw(42)?, draw(43)?, "different seeds, different noise");
    let mut n = NoiseSource::new(9);
    let g = n.gaussian_like(&x)?.to_dtype(candle_core::DType::F64)?;
    let mean = g.mean_all()?.to_scalar::<f64>()?;
    let var = g.sqr()?.mean_all()?.to_scalar::<f64>()? - mean * mean;
    // 4000 draws: the standard error of the mean is 0.016, of the variance about 0.022.
    assert!(
        mean.abs() < 0.08 && (var - 1.0).abs() < 0.11,
        "mean {mean}, variance {var}"
    );
    let sphere = n.projection(&x, Directions::Sphere { radius: 0.05 })?;
    assert_eq!(sphere.c_v, 0.05 * 0.05);
    for norm in sphere
        .v
        .to_dtype(candle_core::DType::F64)?
        .sqr()?
        .sum(1)?
        .sqrt()?
        .to_vec1::<f64>()?
    {
        assert!((norm - 0.05).abs() < 1e-6, "norm {norm}");
    }
    let rad = n.projection(&x, Directions::Rademacher)?;
    assert_eq!(rad.c_v, 8.0);
    assert!(rad
        .v
        .abs()?
        .flatten_all()?
        .to_vec1::<f32>()?
        .iter()
        .all(|&a| a == 1.0));
    let levels = n.levels(1000, 10, &DEV)?.to_vec1::<u32>()?;
    assert!(levels.iter().all(|&l| l < 10) && (0..10).all(|l| levels.contains(&l)));
    let uniform = n.uniform_like(&x)?.flatten_all()?.to_vec1::<f32>()?;
    assert!(uniform.iter().all(|&u| (0.0..1.0).contains(&u)));
    Ok(())
}

#[test]
fn noise_schedules_match_their_definitions() -> Result<()> {
    let lin = linear_sigmas(0.05, 1.2, 64)?;
    assert_eq!(lin.len(), 64);
    assert!((lin[0] - 0.05).abs() < 1e-15 && (lin[63] - 1.2).abs() < 1e-12);
    assert!(lin
        .windows(2)
        .all(|w| ((w[1] - w[0]) - 1.15 / 63.0).abs() < 1e-12));
    let geo = geometric_sigmas(1.0, 0.01, 10)?;
    assert!((geo[0] - 1.0).abs() < 1e-15 && (geo[9] - 0.01).abs() < 1e-12);
    let ratio = (0.01f64).powf(1.0 / 9.0);
    assert!(geo.windows(2).all(|w| (w[1] / w[0] - ratio).abs() < 1e-12));
    Ok(())
}

/// Checks `H v` of `f` at `x` (nested autodiff) against `(grad f(x + h v) - grad f(x - h v)) / 2h`.
fn check_hvp(
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

#[test]
fn safe_ops_have_correct_second_derivatives() -> Result<()> {
    assert!(enable_higher_order());
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
fn safe_ops_compute_the_right_values() -> Result<()> {
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
