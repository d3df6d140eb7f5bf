//! Consistency of every FD objective with its gradient-based counterpart (FD-SM Sec. 4,
//! App. B.3): for the same directions the difference shrinks like O(eps^2); averaged over the
//! coordinate directions the FD objectives recover DSM, MDSM and SM / D; the general order-T FD
//! estimate matches nested autodiff for T = 1..4.

mod common;

use candle_core::{Result, Tensor};
use common::*;
use fd_core::Stencil;
use sm_objectives::autodiff::{directional_derivative, enable_higher_order};
use sm_objectives::{
    annealed_fd_ssmvr, annealed_ssmvr, dsm, fd_directional_derivative, fd_dsm, fd_mdsm, fd_ssm,
    fd_ssmvr, mdsm, sliced_dsm, sliced_mdsm, sm_exact, ssm, ssmvr_score, BatchMode, Directions,
    Graph, NoiseLevels, NoiseSource, Projection, Reduction,
};

const DIM: usize = 5;
const BATCH: usize = 6;

struct Fixture {
    _vm: candle_nn::VarMap,
    mlp: Mlp,
    score: ScoreMlp,
    x: Tensor,
    z: Tensor,
    unit: Tensor,
}

fn fixture() -> Fixture {
    enable_higher_order().expect("Candle's higher-order mode");
    let (vm, vb) = varmap();
    let mlp = Mlp::new(DIM, 16, Act::Softplus, vb.pp("energy")).unwrap();
    let score = ScoreMlp::new(DIM, 16, 3, vb.pp("score")).unwrap();
    reseed(&vm, 11);
    let mut noise = NoiseSource::new(11);
    let x = pattern(BATCH, DIM, 1.0);
    let z = noise.gaussian_like(&x).unwrap();
    let unit = noise
        .projection(&x, Directions::Sphere { radius: 1.0 })
        .unwrap()
        .v;
    Fixture {
        _vm: vm,
        mlp,
        score,
        x,
        z,
        unit,
    }
}

fn sphere(unit: &Tensor, eps: f64) -> Projection {
    Projection {
        v: (unit * eps).unwrap(),
        c_v: eps * eps,
    }
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f64>()
        .unwrap()
}

/// Asserts that `err(eps)` falls like eps^order: measured over eps = 0.1, 0.05, 0.025.
fn assert_rate(name: &str, order: f64, err: impl Fn(f64) -> f64) {
    let e: Vec<f64> = [0.1, 0.05, 0.025].iter().map(|&eps| err(eps)).collect();
    let r1 = (e[0] / e[1]).log2();
    let r2 = (e[1] / e[2]).log2();
    assert!(
        e[2] > 0.0,
        "{name}: difference vanished, the test would prove nothing"
    );
    assert!(
        (r1 - order).abs() < 0.4 && (r2 - order).abs() < 0.25,
        "{name}: expected O(eps^{order}), measured rates {r1:.3}, {r2:.3} (errors {:?})",
        e
    );
}

#[test]
fn fd_ssm_converges_to_ssm_at_rate_two() {
    let f = fixture();
    for mode in [BatchMode::Concatenated, BatchMode::PerOffset] {
        assert_rate("FD-SSM vs SSM", 2.0, |eps| {
            let p = sphere(&f.unit, eps);
            let a = fd_ssm(&f.mlp, &f.x, &p, mode, Reduction::PerSample).unwrap();
            let b = ssm(&f.mlp, &f.x, &p, Reduction::PerSample).unwrap();
            max_abs_diff(&a, &b)
        });
    }
}

#[test]
fn fd_dsm_converges_to_sliced_dsm_at_rate_two() {
    let f = fixture();
    assert_rate("FD-DSM vs sliced DSM", 2.0, |eps| {
        let p = sphere(&f.unit, eps);
        let a = fd_dsm(
            &f.mlp,
            &f.x,
            &f.z,
            0.3,
            &p,
            BatchMode::Concatenated,
            Reduction::PerSample,
        )
        .unwrap();
        let b = sliced_dsm(&f.mlp, &f.x, &f.z, 0.3, &p, Reduction::PerSample).unwrap();
        max_abs_diff(&a, &b)
    });
}

#[test]
fn fd_mdsm_converges_to_sliced_mdsm_at_rate_two() {
    let f = fixture();
    let sigmas = Tensor::new(&[0.05f64, 0.28, 0.51, 0.74, 0.97, 1.2], &DEV).unwrap();
    for mode in [BatchMode::Concatenated, BatchMode::PerOffset] {
        assert_rate("FD-MDSM vs sliced MDSM", 2.0, |eps| {
            let p = sphere(&f.unit, eps);
            let a = fd_mdsm(
                &f.mlp,
                &f.x,
                &f.z,
                &sigmas,
                0.1,
                &p,
                mode,
                Reduction::PerSample,
            )
            .unwrap();
            let b =
                sliced_mdsm(&f.mlp, &f.x, &f.z, &sigmas, 0.1, &p, Reduction::PerSample).unwrap();
            max_abs_diff(&a, &b)
        });
    }
}

#[test]
fn fd_ssmvr_converges_to_ssmvr_at_rate_two() {
    let f = fixture();
    let idx = Tensor::new(&[0u32, 1, 2, 2, 1, 0], &DEV).unwrap();
    let sigmas = [1.0, 0.3, 0.1];
    let levels = NoiseLevels {
        index: &idx,
        sigmas: &sigmas,
    };
    assert_rate("FD-SSMVR vs SSMVR", 2.0, |eps| {
        let p = sphere(&f.unit, eps);
        let a = fd_ssmvr(
            &f.score,
            &f.x,
            &p,
            BatchMode::Concatenated,
            Reduction::PerSample,
        )
        .unwrap();
        let b = ssmvr_score(&f.score, &f.x, &p, Reduction::PerSample).unwrap();
        max_abs_diff(&a, &b)
    });
    assert_rate("annealed FD-SSMVR vs annealed SSMVR", 2.0, |eps| {
        let p = sphere(&f.unit, eps);
        let a = annealed_fd_ssmvr(
            &f.score,
            &f.x,
            &f.z,
            &p,
            levels,
            BatchMode::PerOffset,
            Reduction::PerSample,
        )
        .unwrap();
        let b = annealed_ssmvr(&f.score, &f.x, &f.z, &p, levels, Reduction::PerSample).unwrap();
        max_abs_diff(&a, &b)
    });
}

/// The mean of an FD objective over the 2D coordinate directions `+-eps e_i`.
fn axis_average(x: &Tensor, eps: f64, per_dir: impl Fn(&Projection) -> Tensor) -> Tensor {
    let mut acc: Option<Tensor> = None;
    for i in 0..DIM {
        for sign in [1.0, -1.0] {
            let mut row = vec![0.0; DIM];
            row[i] = sign * eps;
            let v = Tensor::new(row.as_slice(), &DEV)
                .unwrap()
                .unsqueeze(0)
                .unwrap()
                .broadcast_as(x.shape())
                .unwrap();
            let out = per_dir(&Projection {
                v: v.contiguous().unwrap(),
                c_v: eps * eps,
            });
            acc = Some(match acc {
                Some(a) => (a + out).unwrap(),
                None => out,
            });
        }
    }
    (acc.unwrap() / (2 * DIM) as f64).unwrap()
}

#[test]
fn fd_objectives_over_coordinate_directions_recover_dsm_mdsm_and_sm() {
    let f = fixture();
    let sigma = 0.3;
    let sigmas = Tensor::new(&[0.05f64, 0.28, 0.51, 0.74, 0.97, 1.2], &DEV).unwrap();
    let dsm_ref = dsm(&f.mlp, &f.x, &f.z, sigma, Reduction::PerSample).unwrap();
    assert_rate("mean FD-DSM over axes vs DSM", 2.0, |eps| {
        let avg = axis_average(&f.x, eps, |p| {
            fd_dsm(
                &f.mlp,
                &f.x,
                &f.z,
                sigma,
                p,
                BatchMode::Concatenated,
                Reduction::PerSample,
            )
            .unwrap()
        });
        max_abs_diff(&avg, &dsm_ref)
    });
    let mdsm_ref = mdsm(&f.mlp, &f.x, &f.z, &sigmas, 0.1, Reduction::PerSample).unwrap();
    assert_rate("mean FD-MDSM over axes vs MDSM", 2.0, |eps| {
        let avg = axis_average(&f.x, eps, |p| {
            fd_mdsm(
                &f.mlp,
                &f.x,
                &f.z,
                &sigmas,
                0.1,
                p,
                BatchMode::PerOffset,
                Reduction::PerSample,
            )
            .unwrap()
        });
        max_abs_diff(&avg, &mdsm_ref)
    });
    // Sliced MDSM over the axes is exactly MDSM: sum_i (e_i^T r)^2 = |r|^2, at any radius.
    let sliced_axes = axis_average(&f.x, 0.7, |p| {
        sliced_mdsm(&f.mlp, &f.x, &f.z, &sigmas, 0.1, p, Reduction::PerSample).unwrap()
    });
    assert!(max_abs_diff(&sliced_axes, &mdsm_ref) < 1e-10);
    // SSM over the axes is exactly SM / D (tr H = sum_i e_i^T H e_i): a test of both scalings.
    let sm_per_dim = (sm_exact(&f.mlp, &f.x, Graph::Detach, Reduction::PerSample).unwrap()
        / DIM as f64)
        .unwrap();
    let ssm_axes = axis_average(&f.x, 0.1, |p| {
        ssm(&f.mlp, &f.x, p, Reduction::PerSample).unwrap()
    });
    assert!(max_abs_diff(&ssm_axes, &sm_per_dim) < 1e-10);
    assert_rate("mean FD-SSM over axes vs SM / D", 2.0, |eps| {
        let avg = axis_average(&f.x, eps, |p| {
            fd_ssm(
                &f.mlp,
                &f.x,
                p,
                BatchMode::Concatenated,
                Reduction::PerSample,
            )
            .unwrap()
        });
        max_abs_diff(&avg, &sm_per_dim)
    });
}

#[test]
fn general_order_t_fd_matches_nested_autodiff() {
    let f = fixture();
    for order in 1..=4u32 {
        let exact_unit = directional_derivative(&f.mlp, &f.x, &f.unit, order).unwrap();
        for (extra, rate) in [(0usize, 2.0), (1, 4.0)] {
            let stencil = Stencil::central(order, extra).unwrap();
            assert_eq!(stencil.accuracy() as f64, rate);
            // Compare derivatives along the unit direction: (v.grad)^T / eps^T.
            let err = |eps: f64| {
                let v = (&f.unit * eps).unwrap();
                let est =
                    fd_directional_derivative(&f.mlp, &f.x, &v, &stencil, BatchMode::Concatenated)
                        .unwrap();
                max_abs_diff(&(est / eps.powi(order as i32)).unwrap(), &exact_unit)
            };
            if extra == 0 {
                assert_rate(&format!("order {order}, Theorem 1 stencil"), rate, err);
            } else {
                // The O(eps^4) stencil must beat the O(eps^2) one by orders of magnitude at eps = 0.05.
                let base = Stencil::central(order, 0).unwrap();
                let v = (&f.unit * 0.05).unwrap();
                let est = fd_directional_derivative(&f.mlp, &f.x, &v, &base, BatchMode::PerOffset)
                    .unwrap();
                let base_err =
                    max_abs_diff(&(est / 0.05f64.powi(order as i32)).unwrap(), &exact_unit);
                assert!(
                    err(0.05) < 0.05 * base_err,
                    "order {order}: {} vs {base_err}",
                    err(0.05)
                );
            }
        }
    }
}

#[test]
fn concatenated_and_per_offset_forms_agree() -> Result<()> {
    let f = fixture();
    let p = sphere(&f.unit, 0.05);
    let sigmas = Tensor::new(&[0.05f64, 0.28, 0.51, 0.74, 0.97, 1.2], &DEV)?;
    let pairs = [
        (
            fd_ssm(
                &f.mlp,
                &f.x,
                &p,
                BatchMode::Concatenated,
                Reduction::PerSample,
            )?,
            fd_ssm(&f.mlp, &f.x, &p, BatchMode::PerOffset, Reduction::PerSample)?,
        ),
        (
            fd_dsm(
                &f.mlp,
                &f.x,
                &f.z,
                0.2,
                &p,
                BatchMode::Concatenated,
                Reduction::PerSample,
            )?,
            fd_dsm(
                &f.mlp,
                &f.x,
                &f.z,
                0.2,
                &p,
                BatchMode::PerOffset,
                Reduction::PerSample,
            )?,
        ),
        (
            fd_mdsm(
                &f.mlp,
                &f.x,
                &f.z,
                &sigmas,
                0.1,
                &p,
                BatchMode::Concatenated,
                Reduction::PerSample,
            )?,
            fd_mdsm(
                &f.mlp,
                &f.x,
                &f.z,
                &sigmas,
                0.1,
                &p,
                BatchMode::PerOffset,
                Reduction::PerSample,
            )?,
        ),
        (
            fd_ssmvr(
                &f.score,
                &f.x,
                &p,
                BatchMode::Concatenated,
                Reduction::PerSample,
            )?,
            fd_ssmvr(
                &f.score,
                &f.x,
                &p,
                BatchMode::PerOffset,
                Reduction::PerSample,
            )?,
        ),
    ];
    for (a, b) in pairs {
        assert!(max_abs_diff(&a, &b) < 1e-12);
    }
    Ok(())
}
