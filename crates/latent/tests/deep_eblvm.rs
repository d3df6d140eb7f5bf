//! The estimators on the deep EBLVM of BiSM Sec. 5.2. On a tiny instance with a
//! one-dimensional latent variable the marginal `log p(v) = log int exp(-E(v, h)) dh` is
//! tractable by quadrature: VaES with the exact posterior (every grid point weighted by its
//! posterior probability) is the exact marginal score, checked against central differences of
//! the quadrature on a finer, wider grid. Also: the Fisher lower level against its definition,
//! the Langevin refinement in closed form on a Gaussian, and the joint / conditional Langevin
//! targets.

mod common;

use anyhow::Result;
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use latent::bism::fisher_per_sample;
use latent::sampling::{Conditional, JointState};
use latent::vages::{sgld_refine, vages_score_weighted};
use models::{
    ConvGaussianPosterior, ConvGaussianPosteriorConfig, DeepEblvm, DeepEblvmConfig, ResNetEbmConfig,
};
use sm_objectives::autodiff::enable_higher_order;
use sm_objectives::{JointLogDensity, LogDensity, NoiseSource};

/// Width 2, 8 x 8 images, `h` of size `latent`, 4 squared units.
fn tiny(latent: usize, seed: u64) -> Result<DeepEblvm> {
    let cfg = DeepEblvmConfig {
        features: ResNetEbmConfig {
            image_size: 8,
            ..ResNetEbmConfig::res12(2)
        },
        latent,
        head_units: 4,
    };
    let vm = VarMap::new();
    let net = DeepEblvm::new(&cfg, VarBuilder::from_varmap(&vm, DType::F64, &Device::Cpu))?;
    let mut noise = NoiseSource::new(seed);
    for (name, var) in layers::sorted_vars(&vm) {
        if name == "head.weight" && latent == 1 {
            // Units whose preactivation rises with h and units where it falls: the energy
            // grows quadratically in both directions, so exp(-E) is integrable in h.
            let w = Tensor::new(
                &[[0.9f64, 0.3], [-0.2, -0.9], [0.5, 0.6], [-0.7, 0.1]],
                &Device::Cpu,
            )?;
            var.set(&w)?;
        } else {
            var.set(&(noise.gaussian_like(var.as_tensor())? * 0.3)?)?;
        }
    }
    Ok(net)
}

/// `[B * M, 1]` features repeated `M` times per image and the grid `hs` tiled over the batch.
fn log_marginal(net: &DeepEblvm, v: &Tensor, grid: &[f64]) -> Result<Vec<f64>> {
    let b = v.dim(0)?;
    let m = grid.len();
    let g = net.visible_features(v)?;
    let g = g.unsqueeze(1)?.repeat((1, m, 1))?.reshape((b * m, 1))?;
    let h = Tensor::new(grid, &Device::Cpu)?
        .unsqueeze(0)?
        .repeat((b, 1))?
        .reshape((b * m, 1))?;
    let e: Vec<f64> = net
        .energy_from_features(&g, &h)?
        .reshape((b, m))?
        .to_vec2::<f64>()?
        .into_iter()
        .map(|row| {
            // Trapezoid rule on a grid whose ends carry negligible mass, in log space.
            let lo = row.iter().copied().fold(f64::INFINITY, f64::min);
            let sum: f64 = row.iter().map(|e| (lo - e).exp()).sum();
            (sum * (grid[1] - grid[0])).ln() - lo
        })
        .collect();
    Ok(e)
}

fn grid(lo: f64, hi: f64, n: usize) -> Vec<f64> {
    (0..n)
        .map(|i| lo + (hi - lo) * i as f64 / (n - 1) as f64)
        .collect()
}

#[test]
fn vaes_with_the_exact_posterior_is_the_exact_marginal_score() -> Result<()> {
    enable_higher_order();
    let net = tiny(1, 1)?;
    let mut noise = NoiseSource::new(2);
    let v = (noise.gaussian((2, 1, 8, 8), DType::F64, &Device::Cpu)? * 0.5)?;
    // The energy rises fast enough that [-14, 14] holds all the mass (checked below).
    let coarse = grid(-14.0, 14.0, 561);
    let fine = grid(-20.0, 20.0, 3201);
    let lm = log_marginal(&net, &v, &fine)?;
    let lm_coarse = log_marginal(&net, &v, &coarse)?;
    for (a, b) in lm.iter().zip(&lm_coarse) {
        assert!(
            (a - b).abs() < 1e-6,
            "the quadrature has not converged: {a} vs {b}"
        );
    }
    // The exact posterior on the coarse grid: p(h_j | v) proportional to exp(-E(v, h_j)).
    let states: Vec<Tensor> = coarse
        .iter()
        .map(|&h| Tensor::full(h, (2, 1), &Device::Cpu))
        .collect::<candle_core::Result<_>>()?;
    let energies: Vec<Vec<f64>> = states
        .iter()
        .map(|h| net.energy(&v, h)?.to_vec1::<f64>())
        .collect::<candle_core::Result<_>>()?;
    let weights: Vec<Tensor> = {
        let mut per_row = vec![vec![0.0; coarse.len()]; 2];
        for (b, row) in per_row.iter_mut().enumerate() {
            let lo = energies.iter().map(|e| e[b]).fold(f64::INFINITY, f64::min);
            let total: f64 = energies.iter().map(|e| (lo - e[b]).exp()).sum();
            for (j, w) in row.iter_mut().enumerate() {
                *w = (lo - energies[j][b]).exp() / total;
            }
        }
        (0..coarse.len())
            .map(|j| Tensor::new(&[per_row[0][j], per_row[1][j]], &Device::Cpu))
            .collect::<candle_core::Result<_>>()?
    };
    let est = vages_score_weighted(&net, &v, &states, &weights)?;
    let score: Vec<f64> = est.score.flatten_all()?.to_vec1()?;
    // Central differences of the fine quadrature at a few pixels of each image.
    let base: Vec<f64> = v.flatten_all()?.to_vec1()?;
    let eps = 1e-5;
    let mut checked = 0;
    for idx in [0, 9, 27, 36, 63, 64, 70, 100, 127] {
        let at = |d: f64| -> Result<Vec<f64>> {
            let mut x = base.clone();
            x[idx] += d;
            log_marginal(
                &net,
                &Tensor::from_vec(x, (2, 1, 8, 8), &Device::Cpu)?,
                &fine,
            )
        };
        let (p, m) = (at(eps)?, at(-eps)?);
        let b = idx / 64;
        let cd = (p[b] - m[b]) / (2.0 * eps);
        let tol = 1e-6 * cd.abs().max(1.0);
        assert!(
            (score[idx] - cd).abs() < tol,
            "pixel {idx}: VaES {} vs central differences {cd}",
            score[idx]
        );
        checked += 1;
    }
    assert_eq!(checked, 9);
    // Not a trivial identity: the score at one latent value (the posterior's mode) differs.
    let mode: Vec<f64> = (0..2)
        .map(|b| {
            let j = (0..coarse.len())
                .min_by(|&i, &k| energies[i][b].total_cmp(&energies[k][b]))
                .unwrap();
            coarse[j]
        })
        .collect();
    let at_mode = Var::from_tensor(&v)?;
    let g = net
        .joint_log_density(
            at_mode.as_tensor(),
            &Tensor::from_vec(mode, (2, 1), &Device::Cpu)?,
        )?
        .sum_all()?
        .backward()?
        .remove(at_mode.as_tensor())
        .unwrap();
    let gap = (&g - &est.score)?.abs()?.max_all()?.to_scalar::<f64>()?;
    assert!(
        gap > 1e-3,
        "the marginal score equals the score at the mode ({gap})"
    );
    Ok(())
}

#[test]
fn the_fisher_lower_level_is_its_definition() -> Result<()> {
    enable_higher_order();
    let net = tiny(3, 3)?;
    let cfg = ConvGaussianPosteriorConfig {
        in_channels: 1,
        image_size: 8,
        channels: [2, 3, 4],
        latent: 3,
    };
    let vm = VarMap::new();
    let q =
        ConvGaussianPosterior::new(&cfg, VarBuilder::from_varmap(&vm, DType::F64, &Device::Cpu))?;
    let v = NoiseSource::new(4).gaussian((2, 1, 8, 8), DType::F64, &Device::Cpu)?;
    let g = net.visible_features(&v)?;
    let per = fisher_per_sample(
        |h| net.energy_from_features(&g, h)?.neg(),
        &q,
        &v,
        &mut NoiseSource::new(5),
    )?;
    // The same draw, then both h-gradients by central differences of the log-densities.
    let h = q.sample(&v, &mut NoiseSource::new(5))?;
    let hv: Vec<f64> = h.flatten_all()?.to_vec1()?;
    let eps = 1e-6;
    let mut expected = [0.0; 2];
    for i in 0..hv.len() {
        let diff = |f: &dyn Fn(&Tensor) -> Result<Vec<f64>>| -> Result<f64> {
            let mut p = hv.clone();
            let mut m = hv.clone();
            p[i] += eps;
            m[i] -= eps;
            let fp = f(&Tensor::from_vec(p, (2, 3), &Device::Cpu)?)?;
            let fm = f(&Tensor::from_vec(m, (2, 3), &Device::Cpu)?)?;
            Ok((fp[i / 3] - fm[i / 3]) / (2.0 * eps))
        };
        let dq = diff(&|x| Ok(q.log_prob(&v, x)?.to_vec1()?))?;
        let dp = diff(&|x| Ok(net.joint_log_density(&v, x)?.to_vec1()?))?;
        expected[i / 3] += 0.5 * (dq - dp).powi(2);
    }
    let got: Vec<f64> = per.to_vec1()?;
    for (a, b) in got.iter().zip(expected) {
        assert!((a - b).abs() < 1e-5 * b.abs().max(1.0), "{a} vs {b}");
    }
    // It trains the posterior: its gradient reaches the posterior's variables.
    let grads = per.mean_all()?.backward()?;
    let w = vm
        .data()
        .lock()
        .unwrap()
        .get("mean.weight")
        .unwrap()
        .clone();
    let gw = grads
        .get(w.as_tensor())
        .expect("a gradient for q's mean head");
    assert!(gw.abs()?.max_all()?.to_scalar::<f64>()? > 0.0);
    Ok(())
}

#[test]
fn langevin_refinement_follows_its_update_on_a_gaussian() -> Result<()> {
    // log p(h) = -|h - m|^2 / 2: without noise, n steps give m + (1 - alpha/2)^n (h0 - m).
    let m = Tensor::new(&[[1.0f64, -2.0], [0.5, 3.0]], &Device::Cpu)?;
    let h0 = Tensor::new(&[[0.0f64, 0.0], [4.0, -1.0]], &Device::Cpu)?;
    let log_p = |h: &Tensor| (h - &m)?.sqr()?.sum(1)? * -0.5;
    let (alpha, n) = (0.1, 7);
    let got = sgld_refine(log_p, &h0, n, alpha, 0.0, None, &mut NoiseSource::new(1))?;
    let expected = (&m + ((&h0 - &m)? * (1.0 - alpha / 2.0).powi(n as i32))?)?;
    let err = (got - expected)?.abs()?.max_all()?.to_scalar::<f64>()?;
    assert!(err < 1e-12, "{err}");
    // With noise the draws move by sigma eps around that path.
    let noisy = sgld_refine(log_p, &h0, 1, alpha, 1e-3, None, &mut NoiseSource::new(1))?;
    let det = sgld_refine(log_p, &h0, 1, alpha, 0.0, None, &mut NoiseSource::new(1))?;
    let dev = (noisy - det)?.abs()?.max_all()?.to_scalar::<f64>()?;
    assert!(dev > 0.0 && dev < 1e-2);
    assert!(sgld_refine(log_p, &h0, 1, -1.0, 0.0, None, &mut NoiseSource::new(1)).is_err());
    // A clip bounds every coordinate's move by alpha/2 clip: h0 - m reaches 4.5 above.
    let clipped = sgld_refine(
        log_p,
        &h0,
        1,
        alpha,
        0.0,
        Some(1.0),
        &mut NoiseSource::new(1),
    )?;
    let moved = (clipped - &h0)?.abs()?.max_all()?.to_scalar::<f64>()?;
    assert!((moved - alpha / 2.0).abs() < 1e-15, "{moved}");
    assert!(sgld_refine(
        log_p,
        &h0,
        1,
        alpha,
        0.0,
        Some(0.0),
        &mut NoiseSource::new(1)
    )
    .is_err());
    Ok(())
}

#[test]
fn joint_and_conditional_targets_evaluate_the_joint_density() -> Result<()> {
    enable_higher_order();
    let net = tiny(3, 6)?;
    let mut noise = NoiseSource::new(7);
    let v = noise.gaussian((2, 1, 8, 8), DType::F64, &Device::Cpu)?;
    let h = noise.gaussian((2, 3), DType::F64, &Device::Cpu)?;
    let joint = JointState::new(&net, &[1, 8, 8], 3)?;
    let x = joint.join(&v, &h)?;
    assert_eq!(x.dims(), [2, 67]);
    let (v2, h2) = joint.split(&x)?;
    let same = |a: &Tensor, b: &Tensor| {
        (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f64>()
            .unwrap()
            == 0.0
    };
    assert!(same(&v, &v2) && same(&h, &h2));
    let reference = net.joint_log_density(&v, &h)?;
    assert!(same(&joint.log_density(&x)?, &reference));
    assert!(same(
        &Conditional::new(&net, &h).log_density(&v)?,
        &reference
    ));
    let e = joint
        .split(&Tensor::zeros((2, 66), DType::F64, &Device::Cpu)?)
        .unwrap_err();
    assert!(e.to_string().contains("67"), "{e}");
    assert!(joint
        .join(&v, &Tensor::zeros((2, 4), DType::F64, &Device::Cpu)?)
        .is_err());
    Ok(())
}
