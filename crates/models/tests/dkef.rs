//! DKEF against independent oracles in f64: the kernel's first and second derivatives in `x`
//! (propagated by hand) against autodiff; the closed-form kernel weights against a direct
//! Gaussian-elimination solve of the system built from autodiff derivatives; the sliced form
//! averaged over every Rademacher direction equals the exact form; the FD form approaches the
//! sliced one as eps shrinks; the exact SM loss against autodiff's `sm_exact`; the score against
//! central differences; `log Z` by importance sampling against a 2-D numerical integral.

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use models::{Dkef, DkefConfig, DkefDensity, DkefObjective, KernelDerivatives, INDUCING};
use sm_objectives::autodiff::{enable_higher_order, input_gradient};
use sm_objectives::{sm_exact, Graph, NoiseSource, Reduction};

fn config() -> DkefConfig {
    DkefConfig {
        dim: 2,
        hidden: 4,
        inducing: 5,
        log10_bandwidths: vec![0.0, 0.5],
        q0_std: 2.0,
        log10_lambda: -1.0,
    }
}

fn build(seed: u64) -> (VarMap, Dkef) {
    let vm = VarMap::new();
    let model = Dkef::new(
        &config(),
        VarBuilder::from_varmap(&vm, DType::F64, &Device::Cpu),
    )
    .unwrap();
    let mut noise = NoiseSource::new(seed);
    let data = vm.data().lock().unwrap();
    let mut names: Vec<&String> = data.keys().collect();
    names.sort();
    for name in names {
        let var = &data[name];
        if name.contains("log10") {
            continue;
        }
        let z = noise.gaussian_like(var.as_tensor()).unwrap();
        let scale = if name == INDUCING { 1.0 } else { 0.7 };
        var.set(&(z * scale).unwrap()).unwrap();
    }
    drop(data);
    (vm, model)
}

fn points(n: usize, seed: u64) -> Tensor {
    NoiseSource::new(seed)
        .gaussian((n, 2), DType::F64, &Device::Cpu)
        .unwrap()
}

fn max_abs(t: &Tensor) -> f64 {
    t.abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f64>()
        .unwrap()
}

/// `d_c k(x_n, z_m)` and `d_c^2 k(x_n, z_m)` by autodiff, each `[N, M, d]`.
fn autodiff_terms(model: &Dkef, x: &Tensor) -> (Tensor, Tensor) {
    enable_higher_order().expect("higher-order mode");
    let (n, d) = x.dims2().unwrap();
    let m = model.config().inducing;
    let xv = Var::from_tensor(x).unwrap();
    let k = model.kernel(xv.as_tensor()).unwrap();
    let mut grads = Vec::new();
    let mut seconds = Vec::new();
    for j in 0..m {
        let kj = k.narrow(1, j, 1).unwrap().sum_all().unwrap();
        let g = kj.backward().unwrap().remove(xv.as_tensor()).unwrap(); // [N, d]
        let mut sec = Vec::new();
        for c in 0..d {
            let gc = g.narrow(1, c, 1).unwrap().sum_all().unwrap();
            let h = gc.backward().unwrap().remove(xv.as_tensor()).unwrap();
            sec.push(h.narrow(1, c, 1).unwrap());
        }
        grads.push(g.detach().unsqueeze(1).unwrap());
        seconds.push(Tensor::cat(&sec, 1).unwrap().detach().unsqueeze(1).unwrap());
    }
    let _ = n;
    (
        Tensor::cat(&grads, 1).unwrap(),
        Tensor::cat(&seconds, 1).unwrap(),
    )
}

#[test]
fn kernel_derivatives_match_autodiff() {
    let (_, model) = build(1);
    let x = points(6, 2);
    let t = model
        .kernel_terms(&x, KernelDerivatives::Coordinates)
        .unwrap();
    let (g, s) = autodiff_terms(&model, &x);
    assert!(max_abs(&g) > 1e-3 && max_abs(&s) > 1e-3);
    assert!(max_abs(&(&t.grad - &g).unwrap()) < 1e-10);
    assert!(max_abs(&(&t.second - &s).unwrap()) < 1e-10);
    assert!(max_abs(&(t.k - model.kernel(&x).unwrap()).unwrap()) < 1e-14);
    // Along a direction: the directional derivatives of the same kernel.
    let v = points(6, 3);
    let tv = model
        .kernel_terms(&x, KernelDerivatives::Direction(&v))
        .unwrap();
    let gv = g
        .broadcast_mul(&v.unsqueeze(1).unwrap())
        .unwrap()
        .sum(2)
        .unwrap();
    assert!(max_abs(&(tv.grad.squeeze(2).unwrap() - gv).unwrap()) < 1e-10);
}

/// Solves `a x = b` by Gaussian elimination with partial pivoting.
fn gauss_solve(mut a: Vec<Vec<f64>>, mut b: Vec<f64>) -> Vec<f64> {
    let n = b.len();
    for c in 0..n {
        let p = (c..n)
            .max_by(|&i, &j| a[i][c].abs().total_cmp(&a[j][c].abs()))
            .unwrap();
        a.swap(c, p);
        b.swap(c, p);
        for r in c + 1..n {
            let f = a[r][c] / a[c][c];
            for k in c..n {
                a[r][k] -= f * a[c][k];
            }
            b[r] -= f * b[c];
        }
    }
    let mut x = vec![0.0; n];
    for r in (0..n).rev() {
        let s: f64 = (r + 1..n).map(|k| a[r][k] * x[k]).sum();
        x[r] = (b[r] - s) / a[r][r];
    }
    x
}

#[test]
fn closed_form_alpha_matches_a_direct_solve() {
    let (_, model) = build(4);
    let x = points(7, 5);
    let (g, s) = autodiff_terms(&model, &x);
    let (n, m, d) = g.dims3().unwrap();
    let g = g.to_vec3::<f64>().unwrap();
    let s = s.to_vec3::<f64>().unwrap();
    let xs = x.to_vec2::<f64>().unwrap();
    let lambda = 0.1; // 10^-1
    let mut a = vec![vec![0.0; m]; m];
    let mut b = vec![0.0; m];
    for i in 0..n {
        for p in 0..m {
            for q in 0..m {
                a[p][q] += (0..d).map(|c| g[i][p][c] * g[i][q][c]).sum::<f64>() / n as f64;
            }
            let base: f64 = (0..d).map(|c| g[i][p][c] * (-xs[i][c] / 4.0)).sum();
            b[p] += ((0..d).map(|c| s[i][p][c]).sum::<f64>() + base) / n as f64;
        }
    }
    for (p, row) in a.iter_mut().enumerate() {
        row[p] += lambda;
    }
    let direct: Vec<f64> = gauss_solve(a, b).into_iter().map(|v| -v).collect();
    let alpha = model
        .fit_alpha(&x, DkefObjective::Exact)
        .unwrap()
        .to_vec1::<f64>()
        .unwrap();
    for (p, q) in alpha.iter().zip(&direct) {
        assert!(
            (p - q).abs() < 1e-8 * (1.0 + q.abs()),
            "{alpha:?} vs {direct:?}"
        );
    }
}

#[test]
fn sliced_form_over_every_sign_vector_is_the_exact_form() {
    let (_, model) = build(6);
    let x = points(5, 7);
    let exact = model.fit_alpha(&x, DkefObjective::Exact).unwrap();
    // Every point with each of the four sign vectors of R^2: the sample means are expectations.
    let signs = [[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]];
    let xr = Tensor::cat(&[&x, &x, &x, &x], 0).unwrap();
    let v: Vec<f64> = signs
        .iter()
        .flat_map(|s| std::iter::repeat_n(s, 5).flat_map(|p| p.iter().copied()))
        .collect();
    let v = Tensor::from_vec(v, (20, 2), &Device::Cpu).unwrap();
    let sliced = model.fit_alpha(&xr, DkefObjective::Sliced(&v)).unwrap();
    assert!(max_abs(&(&sliced - &exact).unwrap()) < 1e-9 * (1.0 + max_abs(&exact)));
    // And the FD form approaches the sliced one as eps shrinks (O(eps^2)).
    let err = |eps: f64| {
        let fd = model
            .fit_alpha(&xr, DkefObjective::FiniteDifference { v: &v, eps })
            .unwrap();
        max_abs(&(fd - &sliced).unwrap())
    };
    let (e1, e2) = (err(1e-2), err(1e-3));
    assert!(e2 < 1e-4 * (1.0 + max_abs(&sliced)), "FD error {e2}");
    assert!(e1 / e2 > 30.0, "second-order convergence: {e1} then {e2}");
}

#[test]
fn exact_sm_loss_and_score_match_autodiff() {
    enable_higher_order().expect("higher-order mode");
    let (_, model) = build(8);
    let x = points(6, 9);
    let alpha = model.fit_alpha(&x, DkefObjective::Exact).unwrap();
    let ours = model.sm_loss(&x, &alpha, DkefObjective::Exact).unwrap();
    let density = DkefDensity {
        model: &model,
        alpha: alpha.clone(),
    };
    let reference = sm_exact(&density, &x, Graph::Detach, Reduction::PerSample).unwrap();
    assert!(max_abs(&(&ours - &reference).unwrap()) < 1e-9 * (1.0 + max_abs(&reference)));
    // The score against central differences of log p~.
    let score = input_gradient(&density, &x).unwrap().score;
    let h = 1e-5;
    for c in 0..2 {
        let e = Tensor::zeros((6, 2), DType::F64, &Device::Cpu)
            .unwrap()
            .slice_assign(
                &[0..6, c..c + 1],
                &Tensor::ones((6, 1), DType::F64, &Device::Cpu).unwrap(),
            )
            .unwrap();
        let up = model
            .log_density(&(&x + (&e * h).unwrap()).unwrap(), &alpha)
            .unwrap();
        let down = model
            .log_density(&(&x - (&e * h).unwrap()).unwrap(), &alpha)
            .unwrap();
        let fd = ((up - down).unwrap() / (2.0 * h)).unwrap();
        let col = score.narrow(1, c, 1).unwrap().squeeze(1).unwrap();
        assert!(max_abs(&(fd - col).unwrap()) < 1e-7);
    }
}

#[test]
fn importance_sampled_log_z_matches_a_numerical_integral() {
    let (_, model) = build(10);
    let x = points(8, 11);
    let alpha = model.fit_alpha(&x, DkefObjective::Exact).unwrap();
    // Midpoint rule on [-14, 14]^2 (q0 has standard deviation 2).
    let n = 400;
    let half = 14.0;
    let h = 2.0 * half / n as f64;
    let mut grid = Vec::with_capacity(2 * n * n);
    for i in 0..n {
        for j in 0..n {
            grid.push(-half + (i as f64 + 0.5) * h);
            grid.push(-half + (j as f64 + 0.5) * h);
        }
    }
    let g = Tensor::from_vec(grid, (n * n, 2), &Device::Cpu).unwrap();
    let mut z = 0.0;
    for start in (0..n * n).step_by(20_000) {
        let part = g.narrow(0, start, 20_000.min(n * n - start)).unwrap();
        z += model
            .log_density(&part, &alpha)
            .unwrap()
            .exp()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f64>()
            .unwrap()
            * h
            * h;
    }
    let draws = NoiseSource::new(12)
        .gaussian((200_000, 2), DType::F64, &Device::Cpu)
        .unwrap();
    let (log_z, se) = model.log_z(&alpha, &draws, 50_000).unwrap();
    assert!(se > 0.0 && se < 0.05, "standard error {se}");
    assert!(
        (log_z - z.ln()).abs() < 4.0 * se + 1e-3,
        "IS log Z {log_z} +- {se} vs integral {}",
        z.ln()
    );
    assert!((z.ln()).abs() > 1e-3, "a trivial f (log Z = 0)");
}

#[test]
fn bad_input_is_named() {
    let (_, model) = build(13);
    let e = model
        .kernel(&points(3, 0).narrow(1, 0, 1).unwrap())
        .unwrap_err();
    assert!(e.to_string().contains("[N, 2]"), "{e}");
    let x = points(3, 1);
    let e = model
        .kernel_terms(&x, KernelDerivatives::FiniteDifference { v: &x, eps: 0.0 })
        .unwrap_err();
    assert!(e.to_string().contains("eps"), "{e}");
    let bad = DkefConfig {
        log10_bandwidths: vec![],
        ..config()
    };
    let vm = VarMap::new();
    let e = Dkef::new(&bad, VarBuilder::from_varmap(&vm, DType::F64, &Device::Cpu)).unwrap_err();
    assert!(e.to_string().contains("kernel"), "{e}");
}
