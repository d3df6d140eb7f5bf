//! Malformed input gives a clear error naming the problem: mismatched shapes, eps <= 0,
//! sigma <= 0, NaN inputs, out-of-range noise levels, models returning the wrong shape.

mod common;

use candle_core::{Result, Tensor};
use common::*;
use sm_objectives::autodiff::enable_higher_order;
use sm_objectives::noise::{geometric_sigmas, linear_sigmas};
use sm_objectives::{
    annealed_dsm, dsm, fd_directional_derivative, fd_dsm, fd_mdsm, fd_ssm, fd_ssmvr, mdsm,
    sm_exact, ssm, BatchMode, Directions, Graph, NoiseLevels, NoiseSource, Projection, Reduction,
    ScoreFn,
};

fn expect_err<T: std::fmt::Debug>(result: Result<T>, needle: &str) {
    match result {
        Ok(v) => panic!("expected an error mentioning {needle:?}, got {v:?}"),
        Err(e) => assert!(
            e.to_string().contains(needle),
            "error {e:?} does not mention {needle:?}"
        ),
    }
}

fn with_nan(x: &Tensor) -> Tensor {
    let mut data = x.flatten_all().unwrap().to_vec1::<f64>().unwrap();
    data[1] = f64::NAN;
    Tensor::from_vec(data, x.shape().clone(), &DEV).unwrap()
}

#[test]
fn shape_mismatches_are_reported() -> Result<()> {
    enable_higher_order().expect("Candle's higher-order mode");
    let g = gaussian();
    let x = pattern(4, 3, 0.0);
    let mut noise = NoiseSource::new(0);
    let z_bad = pattern(4, 2, 0.0);
    let proj = noise.projection(&x, Directions::Sphere { radius: 0.1 })?;
    let proj_bad = Projection {
        v: pattern(3, 3, 0.0),
        c_v: 0.01,
    };
    let m = Reduction::Mean;
    expect_err(dsm(&g, &x, &z_bad, 0.1, m), "noise z");
    expect_err(
        fd_dsm(&g, &x, &z_bad, 0.1, &proj, BatchMode::Concatenated, m),
        "noise z",
    );
    expect_err(ssm(&g, &x, &proj_bad, m), "projection v");
    expect_err(
        fd_ssm(&g, &x, &proj_bad, BatchMode::Concatenated, m),
        "projection v",
    );
    expect_err(
        fd_directional_derivative(
            &g,
            &x,
            &pattern(4, 2, 0.0),
            &fd_core::Stencil::central(2, 0).unwrap(),
            BatchMode::Concatenated,
        ),
        "v must have the shape",
    );
    let sigmas_short = Tensor::new(&[0.1f64, 0.2], &DEV)?;
    let z = noise.gaussian_like(&x)?;
    expect_err(
        mdsm(&g, &x, &z, &sigmas_short, 0.1, m),
        "sigmas must have shape [4]",
    );
    expect_err(
        fd_mdsm(
            &g,
            &x,
            &z,
            &sigmas_short,
            0.1,
            &proj,
            BatchMode::PerOffset,
            m,
        ),
        "sigmas must have shape [4]",
    );
    // x without a data dimension.
    expect_err(
        fd_ssm(
            &g,
            &Tensor::new(&[1.0f64, 2.0], &DEV)?,
            &proj,
            BatchMode::Concatenated,
            m,
        ),
        "[B, ...]",
    );
    // A "log-density" returning [B, 1] instead of [B].
    let bad_model = |x: &Tensor| -> Result<Tensor> { x.sum_keepdim(1) };
    expect_err(
        fd_ssm(&bad_model, &x, &proj, BatchMode::Concatenated, m),
        "must return shape [12]",
    );
    expect_err(
        sm_exact(&bad_model, &x, Graph::Keep, m),
        "must return shape [4]",
    );
    // A score network returning the wrong shape.
    let bad_score = ScoreFn(|x: &Tensor, _: Option<&Tensor>| x.narrow(1, 0, 2));
    expect_err(
        fd_ssmvr(&bad_score, &x, &proj, BatchMode::PerOffset, m),
        "score network output",
    );
    Ok(())
}

#[test]
fn non_positive_eps_and_sigma_are_reported() -> Result<()> {
    enable_higher_order().expect("Candle's higher-order mode");
    let g = gaussian();
    let x = pattern(2, 3, 0.0);
    let mut noise = NoiseSource::new(0);
    let z = noise.gaussian_like(&x)?;
    let proj = noise.projection(&x, Directions::Sphere { radius: 0.1 })?;
    for radius in [0.0, -0.1, f64::NAN, f64::INFINITY] {
        expect_err(noise.projection(&x, Directions::Sphere { radius }), "eps");
    }
    let zero_cv = Projection {
        v: proj.v.clone(),
        c_v: 0.0,
    };
    expect_err(
        fd_ssm(&g, &x, &zero_cv, BatchMode::Concatenated, Reduction::Mean),
        "C_v",
    );
    for sigma in [0.0, -1.0, f64::NAN] {
        expect_err(dsm(&g, &x, &z, sigma, Reduction::Mean), "sigma");
        expect_err(
            fd_dsm(
                &g,
                &x,
                &z,
                sigma,
                &proj,
                BatchMode::Concatenated,
                Reduction::Mean,
            ),
            "sigma",
        );
    }
    let sigmas = Tensor::new(&[0.1f64, 0.0], &DEV)?;
    expect_err(mdsm(&g, &x, &z, &sigmas, 0.1, Reduction::Mean), "sigmas[1]");
    let sigmas = Tensor::new(&[0.1f64, 0.2], &DEV)?;
    expect_err(mdsm(&g, &x, &z, &sigmas, -0.1, Reduction::Mean), "sigma_0");
    let score = ScoreFn(|x: &Tensor, _: Option<&Tensor>| x.neg());
    let idx = Tensor::new(&[0u32, 5], &DEV)?;
    expect_err(
        annealed_dsm(
            &score,
            &x,
            &z,
            NoiseLevels {
                index: &idx,
                sigmas: &[1.0, 0.1],
            },
            Reduction::Mean,
        ),
        "out of range",
    );
    let idx = Tensor::new(&[0u32, 1], &DEV)?;
    expect_err(
        annealed_dsm(
            &score,
            &x,
            &z,
            NoiseLevels {
                index: &idx,
                sigmas: &[1.0, -0.1],
            },
            Reduction::Mean,
        ),
        "sigma[1]",
    );
    expect_err(linear_sigmas(0.0, 1.2, 4), "lowest noise level");
    expect_err(linear_sigmas(1.2, 0.05, 4), "low <= high");
    expect_err(geometric_sigmas(1.0, 0.01, 0), "n >= 1");
    expect_err(noise.levels(3, 0, &DEV), "at least 1");
    Ok(())
}

#[test]
fn nan_inputs_are_reported() -> Result<()> {
    enable_higher_order().expect("Candle's higher-order mode");
    let g = gaussian();
    let x = pattern(2, 3, 0.0);
    let mut noise = NoiseSource::new(0);
    let z = noise.gaussian_like(&x)?;
    let proj = noise.projection(&x, Directions::Sphere { radius: 0.1 })?;
    let m = Reduction::Mean;
    expect_err(
        fd_ssm(&g, &with_nan(&x), &proj, BatchMode::Concatenated, m),
        "x contains NaN",
    );
    expect_err(ssm(&g, &with_nan(&x), &proj, m), "x contains NaN");
    expect_err(
        sm_exact(&g, &with_nan(&x), Graph::Keep, m),
        "x contains NaN",
    );
    expect_err(dsm(&g, &x, &with_nan(&z), 0.1, m), "noise z contains NaN");
    let bad_proj = Projection {
        v: with_nan(&proj.v),
        c_v: 0.01,
    };
    expect_err(
        fd_dsm(&g, &x, &z, 0.1, &bad_proj, BatchMode::Concatenated, m),
        "projection v contains NaN",
    );
    Ok(())
}

/// Half-precision and integer inputs are refused naming the dtype (they gave losses 17x to 67x
/// off, or zero); a model whose log-density is NaN for finite inputs is named as the culprit.
#[test]
fn unsupported_dtypes_and_non_finite_model_outputs_are_named() -> Result<()> {
    enable_higher_order().expect("Candle's higher-order mode");
    let g = gaussian();
    let x = pattern(4, 3, 0.0);
    let mut noise = NoiseSource::new(0);
    let proj = noise.projection(&x, Directions::Sphere { radius: 0.1 })?;
    let m = Reduction::Mean;
    for dtype in [
        candle_core::DType::F16,
        candle_core::DType::BF16,
        candle_core::DType::U32,
    ] {
        let xh = x.to_dtype(dtype)?;
        let ph = Projection {
            v: proj.v.to_dtype(dtype)?,
            c_v: proj.c_v,
        };
        let name = format!("{dtype:?}");
        expect_err(fd_ssm(&g, &xh, &ph, BatchMode::Concatenated, m), &name);
        expect_err(ssm(&g, &xh, &ph, m), &name);
        expect_err(dsm(&g, &xh, &xh, 0.1, m), &name);
    }
    let nan_model = |x: &Tensor| -> Result<Tensor> { (x.sum(1)? * f64::NAN)?.log() };
    expect_err(
        fd_ssm(&nan_model, &x, &proj, BatchMode::Concatenated, m),
        "log-density is NaN or infinite for 12 of its 12",
    );
    expect_err(
        ssm(&nan_model, &x, &proj, m),
        "log-density is NaN or infinite",
    );
    Ok(())
}
