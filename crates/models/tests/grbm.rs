//! The Gaussian RBM against its definitions: the free energy is the log-sum of `exp(-E)` over
//! enumerated `h`; the conditionals are the ratios of enumerated joint densities; the exact
//! `log Z` matches numerical integration of `exp(-F)`; AIS agrees with it; long Gibbs chains
//! reach the model's mean.

use std::collections::HashMap;

use anyhow::Result;
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use models::{Grbm, GrbmConfig};
use sm_objectives::NoiseSource;

fn grbm(d: usize, h: usize, scale: f64) -> Result<Grbm> {
    grbm_in(d, h, scale, DType::F64)
}

fn grbm_in(d: usize, h: usize, scale: f64, dtype: DType) -> Result<Grbm> {
    let wave = |n: usize, phase: f64| -> Vec<f64> {
        (0..n).map(|i| ((i as f64 + phase) * 1.37).sin()).collect()
    };
    let dev = Device::Cpu;
    let t = |v: Vec<f64>, shape: &[usize]| Tensor::from_vec(v, shape, &dev);
    let params = HashMap::from([
        ("w".to_string(), (t(wave(d * h, 0.3), &[d, h])? * scale)?),
        ("b".to_string(), (t(wave(d, 1.1), &[d])? * 0.5)?),
        ("c".to_string(), (t(wave(h, 2.3), &[h])? * 0.5)?),
        ("log_sigma".to_string(), (t(wave(d, 0.7), &[d])? * 0.3)?),
    ]);
    Ok(Grbm::new(
        GrbmConfig {
            visible: d,
            hidden: h,
        },
        VarBuilder::from_tensors(params, dtype, &dev),
    )?)
}

fn all_states(h: usize) -> Result<Tensor> {
    let n = 1usize << h;
    let s: Vec<f64> = (0..n)
        .flat_map(|k| (0..h).map(move |j| ((k >> j) & 1) as f64))
        .collect();
    Ok(Tensor::from_vec(s, (n, h), &Device::Cpu)?)
}

#[test]
fn free_energy_and_conditionals_match_enumeration() -> Result<()> {
    let (d, h) = (3, 4);
    let m = grbm(d, h, 0.8)?;
    let v = Tensor::new(&[[0.3f64, -1.2, 0.8], [1.5, 0.1, -0.4]], &Device::Cpu)?;
    let hs = all_states(h)?;
    let f = m.free_energy(&v)?.to_vec1::<f64>()?;
    let p1 = m.hidden_probs(&v)?.to_vec2::<f64>()?;
    for (i, (fi, pi)) in f.iter().zip(&p1).enumerate() {
        let vi = v.get(i)?.unsqueeze(0)?.repeat((1 << h, 1))?;
        let neg_e = m.energy(&vi, &hs)?.neg()?.to_vec1::<f64>()?;
        let max = neg_e.iter().cloned().fold(f64::MIN, f64::max);
        let z: f64 = neg_e.iter().map(|e| (e - max).exp()).sum();
        assert!((-(max + z.ln()) - fi).abs() < 1e-12, "F({i})");
        // p(h_j = 1 | v): the mass of the states with h_j = 1.
        let states = hs.to_vec2::<f64>()?;
        for j in 0..h {
            let mass: f64 = neg_e
                .iter()
                .zip(&states)
                .filter(|(_, s)| s[j] == 1.0)
                .map(|(e, _)| (e - max).exp())
                .sum();
            assert!((mass / z - pi[j]).abs() < 1e-12, "p(h_{j} | v_{i})");
        }
    }
    // E[v | h] is where grad_v E(v, h) = (v - b)/sigma^2 - W h vanishes.
    let h1 = hs.narrow(0, 5, 2)?;
    let mean = candle_core::Var::from_tensor(&m.visible_mean(&h1)?)?;
    let grads = m.energy(mean.as_tensor(), &h1)?.sum_all()?.backward()?;
    let g = grads.get(mean.as_tensor()).expect("gradient");
    assert!(g.abs()?.max_all()?.to_scalar::<f64>()? < 1e-12);
    // Bad input is named.
    let err = m.free_energy(&Tensor::zeros((2, 5), DType::F64, &Device::Cpu)?);
    assert!(err.unwrap_err().to_string().contains("[B, 3]"));
    Ok(())
}

#[test]
fn exact_log_partition_matches_numerical_integration() -> Result<()> {
    let m = grbm(2, 3, 0.9)?;
    let exact = m.log_partition_exact()?;
    // Riemann sum of exp(-F) over [-9, 9]^2 (the density is negligible outside).
    let (lo, step, n) = (-9.0, 0.02, 900usize);
    let mut total = 0.0;
    for row in 0..n {
        let y = lo + (row as f64 + 0.5) * step;
        let pts: Vec<f64> = (0..n)
            .flat_map(|c| [lo + (c as f64 + 0.5) * step, y])
            .collect();
        let v = Tensor::from_vec(pts, (n, 2), &Device::Cpu)?;
        total += m
            .free_energy(&v)?
            .neg()?
            .exp()?
            .sum_all()?
            .to_scalar::<f64>()?;
    }
    let numeric = (total * step * step).ln();
    assert!((exact - numeric).abs() < 1e-6, "{exact} vs {numeric}");
    assert!(grbm(2, 21, 0.1)?.log_partition_exact().is_err());
    Ok(())
}

#[test]
fn ais_agrees_with_the_exact_log_partition() -> Result<()> {
    let m = grbm(4, 10, 0.6)?;
    let exact = m.log_partition_exact()?;
    let (est, se) = m.log_partition_ais(500, 300, &mut NoiseSource::new(11))?;
    assert!(se < 0.05, "AIS standard error {se}");
    assert!(
        (est - exact).abs() < 4.0 * se + 0.02,
        "AIS {est} ± {se} vs exact {exact}"
    );
    assert!(m
        .log_partition_ais(0, 10, &mut NoiseSource::new(1))
        .is_err());
    Ok(())
}

#[test]
fn long_gibbs_chains_reach_the_model_mean() -> Result<()> {
    let (d, h) = (2, 3);
    let m = grbm(d, h, 0.7)?;
    // E[v] = sum_h p(h) (b + sigma^2 W h), p(h) from the enumerated marginal over h.
    let hs = all_states(h)?;
    let log_z = m.log_partition_exact()?;
    let means = m.visible_mean(&hs)?.to_vec2::<f64>()?;
    // log p(h) = log of the Gaussian integral of exp(-E(v, h)) over v, minus log Z:
    // evaluate -E at v = E[v | h], where the integrand peaks, plus the Gaussian normaliser.
    let at_mean = m
        .energy(&m.visible_mean(&hs)?, &hs)?
        .neg()?
        .to_vec1::<f64>()?;
    let log_norm: f64 = (0..d)
        .map(|i| {
            let ls = 0.3 * ((i as f64 + 0.7) * 1.37).sin();
            ls + 0.5 * (2.0 * std::f64::consts::PI).ln()
        })
        .sum();
    let mut expected = vec![0.0; d];
    let mut mass = 0.0;
    for (k, mu) in means.iter().enumerate() {
        let p = (at_mean[k] + log_norm - log_z).exp();
        mass += p;
        for i in 0..d {
            expected[i] += p * mu[i];
        }
    }
    assert!((mass - 1.0).abs() < 1e-10, "p(h) sums to {mass}");
    let mut noise = NoiseSource::new(5);
    let v0 = noise.gaussian((4000, d), DType::F64, &Device::Cpu)?;
    let v = m.gibbs(&v0, 100, false, &mut noise)?;
    let got = v.mean(0)?.to_vec1::<f64>()?;
    let sd = v.var(0)?.sqrt()?.to_vec1::<f64>()?;
    for i in 0..d {
        let se = sd[i] / 4000f64.sqrt();
        assert!(
            (got[i] - expected[i]).abs() < 4.0 * se,
            "E[v_{i}]: {} vs {} (se {se})",
            got[i],
            expected[i]
        );
    }
    Ok(())
}

#[test]
fn closed_form_score_and_sm_loss_match_autodiff() -> Result<()> {
    sm_objectives::autodiff::enable_higher_order().expect("Candle's higher-order mode");
    let m = grbm(3, 4, 0.8)?;
    let v = Tensor::new(&[[0.3f64, -1.2, 0.8], [1.5, 0.1, -0.4]], &Device::Cpu)?;
    let auto = sm_objectives::autodiff::input_gradient(&m, &v)?.score;
    let closed = m.marginal_score(&v)?;
    assert!((auto - &closed)?.abs()?.max_all()?.to_scalar::<f64>()? < 1e-12);
    // Exact SM by one backward pass per dimension (sm-objectives, total scaling).
    let exact = sm_objectives::sm_exact(
        &m,
        &v,
        sm_objectives::Graph::Detach,
        sm_objectives::Reduction::PerSample,
    )?;
    let ours = m.score_matching_loss(&v)?;
    let err = (exact - &ours)?.abs()?.max_all()?.to_scalar::<f64>()?;
    assert!(err < 1e-10, "closed-form SM loss off by {err}");
    // A model built in f32 evaluates it in f32 too, to f32 accuracy.
    let ours32 = grbm_in(3, 4, 0.8, DType::F32)?.score_matching_loss(&v.to_dtype(DType::F32)?)?;
    let err32 = (ours32.to_dtype(DType::F64)? - &ours)?
        .abs()?
        .max_all()?
        .to_scalar::<f64>()?;
    assert!(
        err32 < 1e-4 * (1.0 + ours.abs()?.max_all()?.to_scalar::<f64>()?),
        "{err32}"
    );
    Ok(())
}
