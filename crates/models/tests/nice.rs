//! NICE against independent oracles in f64: the inverse undoes the forward map; `log p` is the
//! change of variables with the Jacobian determinant computed from autodiff, and integrates to 1
//! in two dimensions; Approx-BP's and CP's scores equal the autodiff score; Approx-BP's diagonal
//! is the exact Hessian diagonal (autodiff) where its approximation is exact, with the
//! nontrivial coupling at layer 2 (where the reference implementation uses the wrong coupling
//! type); CP's estimate is unbiased for the exact diagonal. Bad shapes are named.

mod common;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use common::max_abs_diff;
use models::{Nice, NiceConfig};
use sm_objectives::autodiff::{enable_higher_order, input_gradient};
use sm_objectives::NoiseSource;

fn small() -> NiceConfig {
    NiceConfig {
        dim: 6,
        hidden: 5,
        hidden_layers: 2,
        couplings: 4,
    }
}

/// A flow whose every parameter is drawn from a seeded generator (scales included, so that the
/// final scale is not the identity).
fn build(cfg: &NiceConfig, seed: u64) -> (VarMap, Nice) {
    let vm = VarMap::new();
    let nice = Nice::new(cfg, VarBuilder::from_varmap(&vm, DType::F64, &Device::Cpu)).unwrap();
    let mut noise = NoiseSource::new(seed);
    let data = vm.data().lock().unwrap();
    let mut names: Vec<&String> = data.keys().collect();
    names.sort();
    for name in names {
        let var = &data[name];
        let z = noise.gaussian_like(var.as_tensor()).unwrap();
        var.set(&(z * 0.6).unwrap()).unwrap();
    }
    drop(data);
    (vm, nice)
}

fn set(vm: &VarMap, name: &str, t: Tensor) {
    vm.data().lock().unwrap()[name].set(&t).unwrap();
}

fn points(n: usize, d: usize, seed: u64) -> Tensor {
    NoiseSource::new(seed)
        .gaussian((n, d), DType::F64, &Device::Cpu)
        .unwrap()
}

/// The exact Hessian diagonal of `log p` by autodiff, one reverse pass of the score per
/// coordinate.
fn exact_diagonal(nice: &Nice, x: &Tensor) -> Tensor {
    enable_higher_order().expect("Candle's higher-order mode");
    let g = input_gradient(nice, x).unwrap();
    let d = x.dim(1).unwrap();
    let columns: Vec<Tensor> = (0..d)
        .map(|i| {
            let gi = g.score.narrow(1, i, 1).unwrap().sum_all().unwrap();
            let grads = gi.backward().unwrap();
            grads.get(g.x.as_tensor()).unwrap().narrow(1, i, 1).unwrap()
        })
        .collect();
    Tensor::cat(&columns, 1).unwrap()
}

/// `log |det A|` of a small square matrix by Gaussian elimination with partial pivoting.
fn log_abs_det(mut a: Vec<Vec<f64>>) -> f64 {
    let n = a.len();
    let mut total = 0.0;
    for c in 0..n {
        let p = (c..n)
            .max_by(|&i, &j| a[i][c].abs().total_cmp(&a[j][c].abs()))
            .unwrap();
        a.swap(c, p);
        let pivot = a[c][c];
        total += pivot.abs().ln();
        for r in c + 1..n {
            let f = a[r][c] / pivot;
            for k in c..n {
                a[r][k] -= f * a[c][k];
            }
        }
    }
    total
}

#[test]
fn inverse_undoes_the_forward_map() {
    let (_, nice) = build(&small(), 1);
    let x = points(8, 6, 2);
    let y = nice.forward(&x).unwrap();
    assert!(
        max_abs_diff(&y, &x) > 0.1,
        "the flow must not be the identity"
    );
    let back = nice.inverse(&y).unwrap();
    assert!(max_abs_diff(&back, &x) < 1e-12);
    let z = points(8, 6, 3);
    let again = nice.forward(&nice.inverse(&z).unwrap()).unwrap();
    assert!(max_abs_diff(&again, &z) < 1e-12);
}

#[test]
fn log_prob_is_the_change_of_variables_with_the_autodiff_jacobian() {
    let cfg = small();
    let (_, nice) = build(&cfg, 4);
    let x = points(3, 6, 5);
    let lp = nice.log_prob(&x).unwrap().to_vec1::<f64>().unwrap();
    for (b, &lp_b) in lp.iter().enumerate() {
        let xb = Var::from_tensor(&x.narrow(0, b, 1).unwrap()).unwrap();
        let y = nice.forward(xb.as_tensor()).unwrap();
        let jac: Vec<Vec<f64>> = (0..cfg.dim)
            .map(|i| {
                let yi = y.narrow(1, i, 1).unwrap().sum_all().unwrap();
                yi.backward()
                    .unwrap()
                    .get(xb.as_tensor())
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .to_vec1::<f64>()
                    .unwrap()
            })
            .collect();
        let yv = y.flatten_all().unwrap().to_vec1::<f64>().unwrap();
        let log_normal: f64 = yv
            .iter()
            .map(|v| -0.5 * v * v - 0.5 * (2.0 * std::f64::consts::PI).ln())
            .sum();
        let expected = log_normal + log_abs_det(jac);
        assert!(
            (lp_b - expected).abs() < 1e-10,
            "sample {b}: log p {lp_b} vs change of variables {expected}"
        );
    }
}

#[test]
fn density_integrates_to_one_in_two_dimensions() {
    let cfg = NiceConfig {
        dim: 2,
        hidden: 8,
        hidden_layers: 2,
        couplings: 4,
    };
    let (_, nice) = build(&cfg, 6);
    // Midpoint rule on a box that holds the mass: the inverse image of a wide latent box.
    let n = 600;
    let half_width = 12.0;
    let h = 2.0 * half_width / n as f64;
    let mut grid = Vec::with_capacity(2 * n * n);
    for i in 0..n {
        for j in 0..n {
            grid.push(-half_width + (i as f64 + 0.5) * h);
            grid.push(-half_width + (j as f64 + 0.5) * h);
        }
    }
    let x = Tensor::from_vec(grid, (n * n, 2), &Device::Cpu).unwrap();
    let mass: f64 = nice
        .log_prob(&x)
        .unwrap()
        .exp()
        .unwrap()
        .sum_all()
        .unwrap()
        .to_scalar::<f64>()
        .unwrap()
        * h
        * h;
    assert!((mass - 1.0).abs() < 2e-3, "integral of p = {mass}");
}

#[test]
fn approx_bp_and_cp_scores_equal_the_autodiff_score() {
    let (_, nice) = build(&small(), 7);
    let x = points(5, 6, 8);
    let exact = input_gradient(&nice, &x).unwrap().score;
    let bp = nice.approx_bp(&x).unwrap();
    assert!(max_abs_diff(&bp.score, &exact) < 1e-10);
    let cp = nice
        .curvature_propagation(&x, &mut NoiseSource::new(9))
        .unwrap();
    assert!(max_abs_diff(&cp.score, &exact) < 1e-10);
}

/// Couplings 1, 3 and 4 set to the identity (zero networks) and coupling 2, which updates the
/// even half from the odd one, with one hidden layer and a diagonal last layer: every Hessian
/// Approx-BP meets is diagonal, so its diagonal is exact. Using coupling 1's type at layer 2 (the
/// reference's bug) reads the wrong half and fails this test.
#[test]
fn approx_bp_is_exact_where_its_approximation_is() {
    let cfg = NiceConfig {
        dim: 6,
        hidden: 3,
        hidden_layers: 1,
        couplings: 4,
    };
    let (vm, nice) = build(&cfg, 10);
    for k in [0, 2, 3] {
        for l in 0..2 {
            set(
                &vm,
                &format!("coupling{k}.layers.{l}.weight"),
                Tensor::zeros((3, 3), DType::F64, &Device::Cpu).unwrap(),
            );
            set(
                &vm,
                &format!("coupling{k}.layers.{l}.bias"),
                Tensor::zeros(3, DType::F64, &Device::Cpu).unwrap(),
            );
        }
    }
    set(
        &vm,
        "coupling1.layers.1.weight",
        Tensor::from_vec(
            vec![1.3, 0.0, 0.0, 0.0, -0.7, 0.0, 0.0, 0.0, 2.1],
            (3, 3),
            &Device::Cpu,
        )
        .unwrap(),
    );
    let x = points(4, 6, 11);
    let exact = exact_diagonal(&nice, &x);
    let bp = nice.approx_bp(&x).unwrap().hessian_diag;
    assert!(
        max_abs_diff(&bp, &exact) < 1e-10,
        "Approx-BP {bp} vs exact {exact}"
    );
    // The coupling adds curvature beyond the Gaussian's `-exp(2s)`: the case is not trivial.
    let scale = vm.data().lock().unwrap()["scale"].as_tensor().clone();
    let gaussian_only = scale
        .affine(2.0, 0.0)
        .unwrap()
        .exp()
        .unwrap()
        .neg()
        .unwrap()
        .unsqueeze(0)
        .unwrap()
        .broadcast_as((4, 6))
        .unwrap();
    assert!(max_abs_diff(&exact, &gaussian_only) > 1e-2);
}

#[test]
fn approx_bp_is_biased_for_a_general_flow() {
    let (_, nice) = build(&small(), 12);
    let x = points(4, 6, 13);
    let exact = exact_diagonal(&nice, &x);
    let bp = nice.approx_bp(&x).unwrap().hessian_diag;
    // Not equal (off-diagonal curvature is dropped), but of the same size.
    let diff = max_abs_diff(&bp, &exact);
    assert!(diff > 1e-4, "a general flow should not be exact ({diff})");
}

#[test]
fn curvature_propagation_is_unbiased_for_the_exact_diagonal() {
    let (_, nice) = build(&small(), 14);
    let x0 = points(1, 6, 15);
    let exact = exact_diagonal(&nice, &x0)
        .flatten_all()
        .unwrap()
        .to_vec1::<f64>()
        .unwrap();
    let draws = 20_000;
    let x = x0.broadcast_as((draws, 6)).unwrap().contiguous().unwrap();
    let est = nice
        .curvature_propagation(&x, &mut NoiseSource::new(16))
        .unwrap()
        .hessian_diag
        .to_vec2::<f64>()
        .unwrap();
    for i in 0..6 {
        let col: Vec<f64> = est.iter().map(|r| r[i]).collect();
        let mean = col.iter().sum::<f64>() / draws as f64;
        let var = col.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (draws - 1) as f64;
        let se = (var / draws as f64).sqrt();
        assert!(
            (mean - exact[i]).abs() < 4.0 * se + 1e-9,
            "coordinate {i}: CP mean {mean} +- {se} vs exact {}",
            exact[i]
        );
        assert!(se > 0.0, "the estimate must be random");
    }
}

#[test]
fn bad_sizes_are_named() {
    let bad = NiceConfig { dim: 7, ..small() };
    let vm = VarMap::new();
    let err = Nice::new(&bad, VarBuilder::from_varmap(&vm, DType::F64, &Device::Cpu)).unwrap_err();
    assert!(err.to_string().contains("even"), "{err}");
    let (_, nice) = build(&small(), 17);
    let err = nice.log_prob(&points(2, 5, 0)).unwrap_err();
    assert!(err.to_string().contains("6 values per sample"), "{err}");
    let err = nice.approx_bp(&points(2, 8, 0)).unwrap_err();
    assert!(err.to_string().contains("6 values per sample"), "{err}");
    assert_eq!(small().parameter_count(), 4 * (4 * 5 + 6 * 5 + 6 * 3) + 6);
}

/// Saturated softplus units (curvature exactly 0 in f32) must not give NaN gradients through
/// CP's square roots.
#[test]
fn curvature_propagation_gradients_are_finite_with_saturated_units() {
    let vm = VarMap::new();
    let nice = Nice::new(
        &small(),
        VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu),
    )
    .unwrap();
    let mut noise = NoiseSource::new(18);
    // First layers large (saturating their units), the rest moderate, the scales at 0.
    for (name, var) in vm.data().lock().unwrap().iter() {
        let factor = if name == "scale" {
            0.0
        } else if name.contains("layers.0.") {
            12.0
        } else {
            0.5
        };
        let z = noise.gaussian_like(var.as_tensor()).unwrap();
        var.set(&(z * factor).unwrap()).unwrap();
    }
    let x = points(16, 6, 19).to_dtype(DType::F32).unwrap();
    let est = nice.curvature_propagation(&x, &mut noise).unwrap();
    // Some units are saturated: their curvature sigma (1 - sigma) is exactly 0 in f32.
    let u = x.narrow(1, 0, 3).unwrap();
    let first = vm.data().lock().unwrap()["coupling0.layers.0.weight"]
        .as_tensor()
        .clone();
    let pre = u.matmul(&first.t().unwrap()).unwrap();
    let saturated = pre
        .gt(17.0)
        .unwrap()
        .to_dtype(DType::F32)
        .unwrap()
        .sum_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert!(saturated > 0.0, "the test needs saturated units");
    let loss = sm_objectives::sm_from_diagonal(
        &est.score,
        &est.hessian_diag,
        sm_objectives::Reduction::Mean,
    )
    .unwrap();
    let grads = loss.backward().unwrap();
    for var in vm.all_vars() {
        let g = grads.get(var.as_tensor()).unwrap();
        let total = g
            .abs()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(total.is_finite(), "non-finite gradient");
    }
}
