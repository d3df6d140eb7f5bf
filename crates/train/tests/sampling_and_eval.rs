//! Langevin dynamics reaches its target (a Gaussian's variance) and the test SM evaluator
//! matches the closed form of a Gaussian, exactly and within its standard error for the
//! Hutchinson estimate.

use candle_core::{DType, Device, Result, Tensor};
use sm_objectives::autodiff::enable_higher_order;
use sm_objectives::NoiseSource;
use train::eval::{test_sm, SmEstimate};
use train::langevin::{annealed_langevin, annealed_langevin_with_last, LangevinSchedule};

#[test]
fn langevin_at_unit_temperature_samples_the_target() -> Result<()> {
    // log p = -x^2 / (2 s^2), s = 0.5: unadjusted Langevin with eta = 0.05 has variance
    // s^2 / (1 - eta^2 / (4 s^2)) = 0.2525, within 1% of s^2.
    let model =
        |x: &Tensor| -> Result<Tensor> { x.sqr()?.flatten_from(1)?.sum(1)? * (-0.5 / 0.25) };
    let schedule = LangevinSchedule {
        hold_steps: 1500,
        anneal_steps: 0,
        cool_steps: 0,
        t_max: 1.0,
        step_size: 0.05,
        denoise: 0.0,
    };
    let mut noise = NoiseSource::new(3);
    let x0 = Tensor::full(2.0f64, (4000, 1), &Device::Cpu)?;
    let x = annealed_langevin(&model, &x0, &schedule, &mut noise)?;
    let v: Vec<f64> = x.flatten_all()?.to_vec1()?;
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    let var = v.iter().map(|a| (a - mean).powi(2)).sum::<f64>() / v.len() as f64;
    assert!(mean.abs() < 0.03, "mean {mean}");
    assert!((var - 0.2525).abs() < 0.02, "variance {var}");
    // The temperature schedule: held, lowered linearly to 1, then to 0.
    let s = LangevinSchedule::paper();
    assert_eq!(
        (s.temperature(0), s.temperature(499), s.temperature(500)),
        (100.0, 100.0, 100.0)
    );
    assert_eq!(s.temperature(2499), 1.0);
    assert_eq!(s.temperature(2699), 0.0);
    assert_eq!(s.total(), 2700);
    Ok(())
}

#[test]
fn the_denoising_step_is_one_score_step_from_the_last_state() -> Result<()> {
    // log p = -x^2 / (2 s^2): denoised = last + d^2 (-last / s^2) = last (1 - d^2 / s^2).
    let model =
        |x: &Tensor| -> Result<Tensor> { x.sqr()?.flatten_from(1)?.sum(1)? * (-0.5 / 0.25) };
    let schedule = LangevinSchedule {
        hold_steps: 3,
        anneal_steps: 4,
        cool_steps: 2,
        t_max: 10.0,
        step_size: 0.05,
        denoise: 0.2,
    };
    let x0 = Tensor::full(1.5f64, (5, 2), &Device::Cpu)?;
    let out = annealed_langevin_with_last(&model, &x0, &schedule, &mut NoiseSource::new(9))?;
    let last: Vec<f64> = out.last.flatten_all()?.to_vec1()?;
    let denoised: Vec<f64> = out.denoised.flatten_all()?.to_vec1()?;
    assert!(
        last.iter().any(|&v| (v - 1.5).abs() > 1e-3),
        "the chain moved"
    );
    for (l, d) in last.iter().zip(&denoised) {
        assert!((d - l * (1.0 - 0.04 / 0.25)).abs() < 1e-12, "{l} -> {d}");
    }
    // The same seed gives annealed_langevin's samples.
    let plain = annealed_langevin(&model, &x0, &schedule, &mut NoiseSource::new(9))?;
    assert_eq!(plain.flatten_all()?.to_vec1::<f64>()?, denoised);
    Ok(())
}

#[test]
fn test_sm_matches_a_gaussian_closed_form() -> Result<()> {
    enable_higher_order().expect("Candle's higher-order mode");
    // log p = -sum_i a_i x_i^2 / 2 on [N, 1, 2, 2]: SM = -sum a + sum a^2 x^2 / 2 per image.
    let a = Tensor::new(&[[[1.0f32, 2.0], [0.5, 3.0]]], &Device::Cpu)?;
    let model = |x: &Tensor| -> Result<Tensor> {
        x.sqr()?.broadcast_mul(&a)?.flatten_from(1)?.sum(1)? * -0.5
    };
    let images = Tensor::randn(0f32, 1f32, (400, 1, 2, 2), &Device::Cpu)?;
    let expected: Vec<f64> = images
        .flatten_from(1)?
        .to_vec2::<f32>()?
        .iter()
        .map(|x| {
            let av = [1.0, 2.0, 0.5, 3.0];
            -6.5 + (0..4)
                .map(|i| 0.5 * av[i] * av[i] * f64::from(x[i]).powi(2))
                .sum::<f64>()
        })
        .collect();
    let mean = expected.iter().sum::<f64>() / 400.0;
    let mut noise = NoiseSource::new(0);
    let exact = test_sm(&model, &images, 64, SmEstimate::Exact, &mut noise)?;
    assert!(
        (exact.mean - mean).abs() < 1e-4 * mean.abs().max(1.0),
        "{} vs {mean}",
        exact.mean
    );
    assert_eq!(exact.images, 400);
    let hutch = test_sm(
        &model,
        &images,
        64,
        SmEstimate::Hutchinson { projections: 4 },
        &mut noise,
    )?;
    // A diagonal Hessian makes Rademacher probes exact: v^T H v = tr H for v in {-1, 1}^D.
    assert!(
        (hutch.mean - mean).abs() < 1e-4 * mean.abs().max(1.0),
        "{} vs {mean}",
        hutch.mean
    );
    let _ = DType::F32;
    Ok(())
}

/// `test_sm` takes f64 models and images as well (it read f32 only once): the exact SM loss of
/// a Gaussian in f64 matches its closed form to f64 precision, and so does Hutchinson's
/// estimate (exact for a diagonal Hessian).
#[test]
fn test_sm_takes_f64_models_and_images() -> Result<()> {
    enable_higher_order().expect("Candle's higher-order mode");
    let a = Tensor::new(&[[[1.0f64, 2.0], [0.5, 3.0]]], &Device::Cpu)?;
    let model = |x: &Tensor| -> Result<Tensor> {
        x.sqr()?.broadcast_mul(&a)?.flatten_from(1)?.sum(1)? * -0.5
    };
    let images = Tensor::randn(0f64, 1f64, (50, 1, 2, 2), &Device::Cpu)?;
    let av = [1.0, 2.0, 0.5, 3.0];
    let mean = images
        .flatten_from(1)?
        .to_vec2::<f64>()?
        .iter()
        .map(|x| {
            -6.5 + (0..4)
                .map(|i| 0.5 * av[i] * av[i] * x[i] * x[i])
                .sum::<f64>()
        })
        .sum::<f64>()
        / 50.0;
    let mut noise = NoiseSource::new(1);
    for estimate in [SmEstimate::Exact, SmEstimate::Hutchinson { projections: 2 }] {
        let got = test_sm(&model, &images, 16, estimate, &mut noise)?;
        assert!(
            (got.mean - mean).abs() < 1e-10 * mean.abs().max(1.0),
            "{estimate:?}: {} vs {mean}",
            got.mean
        );
    }
    Ok(())
}
