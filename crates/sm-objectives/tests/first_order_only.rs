//! Without Candle's higher-order mode: the FD objectives still train correctly (first-order
//! gradients only), and every objective that needs second derivatives refuses to run with an
//! explanation instead of returning silently wrong gradients. This binary never enables the mode.

mod common;

use candle_core::{Result, Tensor};
use common::*;
use layers::grad_mode::higher_order_requested;
use sm_objectives::autodiff::{directional_derivative, higher_order_enabled, HIGHER_ORDER_ENV};
use sm_objectives::{
    annealed_dsm, annealed_fd_ssmvr, annealed_ssmvr, dsm, fd_dsm, fd_mdsm, fd_ssm, fd_ssmvr, mdsm,
    sliced_dsm, sliced_mdsm, sm_exact, ssm, ssmvr, ssmvr_score, BatchMode, Directions, Graph,
    NoiseLevels, NoiseSource, Reduction,
};

/// `None` when the mode is off as this binary needs; otherwise the reason to skip.
fn mode_is_off() -> Option<()> {
    if higher_order_requested() {
        eprintln!("skipped: {HIGHER_ORDER_ENV} is set in the environment, so first-order mode cannot be tested");
        return None;
    }
    assert!(
        !higher_order_enabled(),
        "higher-order mode is on although {HIGHER_ORDER_ENV} is unset"
    );
    Some(())
}

#[test]
fn fd_objectives_train_without_higher_order_mode() -> Result<()> {
    if mode_is_off().is_none() {
        return Ok(());
    }
    let (vm, vb) = varmap();
    let mlp = Mlp::new(4, 8, Act::Softplus, vb.pp("energy"))?;
    let score = ScoreMlp::new(4, 8, 2, vb.pp("score"))?;
    reseed(&vm, 3);
    let x = pattern(3, 4, 0.2);
    let mut noise = NoiseSource::new(3);
    let z = noise.gaussian_like(&x)?;
    let proj = noise.projection(&x, Directions::Sphere { radius: 0.1 })?;
    let sigmas = Tensor::new(&[0.1f64, 0.5, 1.0], &DEV)?;
    let idx = Tensor::new(&[1u32, 0, 1], &DEV)?;
    let levels_sigmas = [1.0, 0.1];
    let levels = NoiseLevels {
        index: &idx,
        sigmas: &levels_sigmas,
    };
    let m = Reduction::Mean;
    let cases: Vec<NamedLoss> = vec![
        (
            "FD-SSM",
            Box::new(|| fd_ssm(&mlp, &x, &proj, BatchMode::Concatenated, m)),
        ),
        (
            "FD-DSM*",
            Box::new(|| fd_dsm(&mlp, &x, &z, 0.2, &proj, BatchMode::PerOffset, m)),
        ),
        (
            "FD-MDSM",
            Box::new(|| {
                fd_mdsm(
                    &mlp,
                    &x,
                    &z,
                    &sigmas,
                    0.1,
                    &proj,
                    BatchMode::Concatenated,
                    m,
                )
            }),
        ),
        (
            "FD-SSMVR",
            Box::new(|| fd_ssmvr(&score, &x, &proj, BatchMode::Concatenated, m)),
        ),
        (
            "annealed FD-SSMVR",
            Box::new(|| {
                annealed_fd_ssmvr(&score, &x, &z, &proj, levels, BatchMode::Concatenated, m)
            }),
        ),
        // A score network's DSM needs no second derivative either.
        (
            "annealed DSM",
            Box::new(|| annealed_dsm(&score, &x, &z, levels, m)),
        ),
    ];
    for (name, loss) in cases {
        let worst = max_param_grad_error(&vm, 3, loss.as_ref())
            .map_err(|e| candle_core::Error::Msg(format!("{name}: {e}")))?;
        assert!(worst < 1e-4, "{name}: relative error {worst}");
    }
    Ok(())
}

#[test]
fn gradient_based_objectives_refuse_without_higher_order_mode() -> Result<()> {
    if mode_is_off().is_none() {
        return Ok(());
    }
    let (_vm, vb) = varmap();
    let mlp = Mlp::new(4, 8, Act::Elu, vb.pp("energy"))?;
    let score = ScoreMlp::new(4, 8, 2, vb.pp("score"))?;
    let x = pattern(2, 4, 0.0);
    let mut noise = NoiseSource::new(1);
    let z = noise.gaussian_like(&x)?;
    let proj = noise.projection(&x, Directions::Gaussian)?;
    let sigmas = Tensor::new(&[0.1f64, 0.5], &DEV)?;
    let idx = Tensor::new(&[1u32, 0], &DEV)?;
    let ls = [1.0, 0.1];
    let levels = NoiseLevels {
        index: &idx,
        sigmas: &ls,
    };
    let m = Reduction::Mean;
    let results = [
        ("exact SM", sm_exact(&mlp, &x, Graph::Detach, m)),
        ("SSM", ssm(&mlp, &x, &proj, m)),
        ("SSMVR", ssmvr(&mlp, &x, &proj, m)),
        ("SSMVR (score)", ssmvr_score(&score, &x, &proj, m)),
        ("DSM", dsm(&mlp, &x, &z, 0.1, m)),
        ("sliced DSM", sliced_dsm(&mlp, &x, &z, 0.1, &proj, m)),
        ("MDSM", mdsm(&mlp, &x, &z, &sigmas, 0.1, m)),
        (
            "sliced MDSM",
            sliced_mdsm(&mlp, &x, &z, &sigmas, 0.1, &proj, m),
        ),
        (
            "annealed SSMVR",
            annealed_ssmvr(&score, &x, &z, &proj, levels, m),
        ),
        (
            "2nd directional derivative",
            directional_derivative(&mlp, &x, &proj.v, 2),
        ),
    ];
    for (name, result) in results {
        let err = result
            .err()
            .unwrap_or_else(|| panic!("{name} ran without higher-order mode"));
        assert!(
            err.to_string().contains(HIGHER_ORDER_ENV),
            "{name}: unhelpful error: {err}"
        );
    }
    // First-order directional derivatives are fine.
    directional_derivative(&mlp, &x, &proj.v, 1)?;
    Ok(())
}
