//! Seeded noise is reproducible and has the promised distributions; the noise-level schedules
//! follow their definitions.

mod common;

use candle_core::{Result, Tensor};
use common::*;
use sm_objectives::noise::{geometric_sigmas, linear_sigmas};
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
