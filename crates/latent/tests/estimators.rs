//! VaES / VaGES and BiSM on a small GRBM whose posterior can be enumerated: with the exact
//! posterior, VaES is the exact marginal score and VaGES's parameter gradient is the exact
//! `d/dtheta grad_v log p(v)` (and differs from VaES's); `log Z`-like constants cancel; sampled
//! VaGES converges to it; the BiSM gradient bias shrinks as the number of unrolled steps grows
//! (BiSM Theorem 2).

mod common;

use anyhow::Result;
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::VarMap;
use common::wave;
use latent::bism::{bidsm, bism_score_at, dsm_functional, unrolled_step, BismConfig};
use latent::vages::{vaes_cv_score, vaes_score, vages_score, vages_score_weighted};
use models::{BernoulliPosterior, Grbm};
use sm_objectives::autodiff::{enable_higher_order, input_gradient};
use sm_objectives::{JointLogDensity, NoiseSource, Reduction};

const D: usize = 3;
const H: usize = 4;

fn grbm() -> Result<(VarMap, Grbm)> {
    common::grbm(D, H)
}

fn visible() -> Result<Tensor> {
    Ok(Tensor::new(
        &[[0.3f64, -1.2, 0.8], [1.5, 0.1, -0.4], [-0.7, 0.9, 0.2]],
        &Device::Cpu,
    )?)
}

fn direction() -> Result<Tensor> {
    Ok(Tensor::new(
        &[[0.4f64, -0.3, 0.9], [0.2, 0.5, -0.6], [-0.8, 0.1, 0.3]],
        &Device::Cpu,
    )?)
}

/// Every hidden state repeated over the batch, with its exact posterior probability `[B]`.
fn enumerated(m: &Grbm, v: &Tensor) -> Result<(Vec<Tensor>, Vec<Tensor>)> {
    let p = m.hidden_probs(&v.detach())?.detach();
    let (mut hs, mut ws) = (Vec::new(), Vec::new());
    for s in 0..(1usize << H) {
        let bits: Vec<f64> = (0..H).map(|j| ((s >> j) & 1) as f64).collect();
        let h = Tensor::new(bits.as_slice(), &Device::Cpu)?
            .unsqueeze(0)?
            .repeat((v.dim(0)?, 1))?;
        // prod_j p_j^h_j (1 - p_j)^(1 - h_j)
        let w = ((&p * &h)? + (p.affine(-1.0, 1.0)? * h.affine(-1.0, 1.0)?)?)?
            .log()?
            .sum(1)?
            .exp()?;
        hs.push(h);
        ws.push(w);
    }
    Ok((hs, ws))
}

/// Parameter gradients of `u . score`, in the sorted order of the parameter names (zero where
/// the score does not depend on a parameter, as VaES's does not on `c`).
fn grads_of(score: &Tensor, u: &Tensor, vm: &VarMap) -> Result<Vec<Tensor>> {
    let g = (score * u)?.sum_all()?.backward()?;
    layers::sorted_vars(vm)
        .iter()
        .map(|(_, v)| match g.get(v.as_tensor()) {
            Some(t) => Ok(t.clone()),
            None => Ok(v.as_tensor().zeros_like()?),
        })
        .collect()
}

fn max_diff(a: &[Tensor], b: &[Tensor]) -> Result<f64> {
    let mut m = 0f64;
    for (x, y) in a.iter().zip(b) {
        m = m.max((x - y)?.abs()?.max_all()?.to_scalar::<f64>()?);
    }
    Ok(m)
}

#[test]
fn with_the_true_posterior_vages_is_exact_and_vaes_misses_the_covariance() -> Result<()> {
    enable_higher_order().expect("Candle's higher-order mode");
    let (vm, m) = grbm()?;
    let (v, u) = (visible()?, direction()?);
    // Exact: grad_v log p(v) = -grad_v F(v), differentiated again in the parameters.
    let exact = input_gradient(&m, &v)?;
    let exact_grads = grads_of(&exact.score, &u, &vm)?;
    let (hs, ws) = enumerated(&m, &v)?;
    let est = vages_score_weighted(&m, &v, &hs, &ws)?;
    let value_err = (&est.score - &exact.score)?
        .abs()?
        .max_all()?
        .to_scalar::<f64>()?;
    assert!(value_err < 1e-12, "score value {value_err}");
    let err = max_diff(&grads_of(&est.score, &u, &vm)?, &exact_grads)?;
    assert!(err < 1e-10, "VaGES parameter gradient {err}");
    // Without the covariance term the gradient is wrong: the check above can fail.
    let x = Var::from_tensor(&v)?;
    let mut plain = x.as_tensor().zeros_like()?;
    for (h, w) in hs.iter().zip(&ws) {
        let f = m.joint_log_density(x.as_tensor(), h)?;
        let g = f.sum_all()?.backward()?.remove(x.as_tensor()).unwrap();
        plain = (plain + g.broadcast_mul(&w.unsqueeze(1)?)?)?;
    }
    let miss = max_diff(&grads_of(&plain, &u, &vm)?, &exact_grads)?;
    assert!(
        miss > 1e-3,
        "the covariance term should matter here ({miss})"
    );
    Ok(())
}

/// A model whose joint log-density is shifted by a parameter-dependent constant (like -log Z).
struct Shifted<'a>(&'a Grbm, Tensor);

impl JointLogDensity for Shifted<'_> {
    fn joint_log_density(&self, v: &Tensor, h: &Tensor) -> candle_core::Result<Tensor> {
        self.0.joint_log_density(v, h)?.broadcast_add(&self.1)
    }
}

#[test]
fn constants_in_the_parameters_cancel_and_samples_converge() -> Result<()> {
    enable_higher_order().expect("Candle's higher-order mode");
    let (vm, m) = grbm()?;
    let (v, u) = (visible()?, direction()?);
    let exact = grads_of(&input_gradient(&m, &v)?.score, &u, &vm)?;
    // A theta-dependent shift (here 3 sum c^2 + sum W) must not change the gradient.
    let data = vm.data().lock().unwrap().clone();
    let shift =
        ((data["c"].as_tensor().sqr()?.sum_all()? * 3.0)? + data["w"].as_tensor().sum_all()?)?;
    let shifted = Shifted(&m, shift);
    let (hs, ws) = enumerated(&m, &v)?;
    let est = vages_score_weighted(&shifted, &v, &hs, &ws)?;
    assert!(max_diff(&grads_of(&est.score, &u, &vm)?, &exact)? < 1e-10);
    // Sampled VaGES with exact posterior draws is unbiased, so it approaches the exact gradient.
    let mut noise = NoiseSource::new(3);
    let draws: Vec<Tensor> = (0..4000)
        .map(|_| m.sample_hidden(&v.detach(), &mut noise))
        .collect::<candle_core::Result<_>>()?;
    let sampled = grads_of(&vages_score(&m, &v, &draws)?.score, &u, &vm)?;
    let scale = exact
        .iter()
        .map(|t| t.abs()?.max_all()?.to_scalar::<f64>())
        .collect::<candle_core::Result<Vec<_>>>()?
        .into_iter()
        .fold(0f64, f64::max);
    let err = max_diff(&sampled, &exact)?;
    assert!(err < 0.1 * scale, "sampled VaGES {err} vs scale {scale}");
    let vaes = grads_of(&vaes_score(&m, &v, &draws)?.score, &u, &vm)?;
    assert!(
        max_diff(&vaes, &exact)? > 2.0 * err,
        "VaES should be visibly biased"
    );
    assert!(vages_score(&m, &v, &draws[..1]).is_err());
    Ok(())
}

#[test]
fn bism_gradient_bias_shrinks_with_unrolled_steps() -> Result<()> {
    enable_higher_order().expect("Candle's higher-order mode");
    let (vm, m) = grbm()?;
    let v = visible()?;
    let z = Tensor::new(
        &[[0.1f64, -0.5, 0.7], [0.9, -0.2, 0.3], [-0.4, 0.6, -0.8]],
        &Device::Cpu,
    )?;
    let phi0 = BernoulliPosterior::from_tensors(
        Tensor::from_vec(wave(D * H, 5.0, 0.3), (D, H), &Device::Cpu)?,
        Tensor::from_vec(wave(H, 6.0, 0.3), H, &Device::Cpu)?,
    )?;
    let cfg = BismConfig {
        lower_steps: 0,
        unroll: 0,
        lower_lr: 0.3,
        tau: 0.5,
    };
    // The theta-gradient of BiDSM after n unrolled steps; every lower-level step sees the same
    // noise, so the lower objective is one deterministic function of phi.
    let grad_after = |n: usize| -> Result<Vec<Tensor>> {
        let (w, b) = phi0.params();
        let mut q = BernoulliPosterior::from_tensors(
            Var::from_tensor(w)?.as_tensor().clone(),
            Var::from_tensor(b)?.as_tensor().clone(),
        )?;
        for _ in 0..n {
            q = unrolled_step(&m, &q, &v, &cfg, &mut NoiseSource::new(17))?;
        }
        let loss = bidsm(
            &m,
            &q,
            &v,
            &z,
            0.3,
            cfg.tau,
            Reduction::Mean,
            &mut NoiseSource::new(29),
        )?;
        let g = loss.backward()?;
        // Without unrolling, `c` reaches the loss only through phi^N(theta): zero at N = 0.
        layers::sorted_vars(&vm)
            .iter()
            .map(|(_, var)| match g.get(var.as_tensor()) {
                Some(t) => Ok(t.clone()),
                None => Ok(var.as_tensor().zeros_like()?),
            })
            .collect()
    };
    // Eq. 14 itself: with the outer draw h held fixed (as BiSM holds it), the loss after two
    // unrolled steps is a deterministic function of theta; its autodiff gradient must match
    // central differences along a direction in theta.
    let v_tilde = (&v + (&z * 0.3)?)?;
    let h_fixed = BernoulliPosterior::from_tensors(
        Tensor::from_vec(wave(D * H, 8.0, 0.5), (D, H), &Device::Cpu)?,
        Tensor::from_vec(wave(H, 9.0, 0.5), H, &Device::Cpu)?,
    )?
    .sample_relaxed(&v_tilde, cfg.tau, &mut NoiseSource::new(31))?;
    let fixed_loss = || -> Result<Tensor> {
        let mut q = phi0.clone();
        for _ in 0..2 {
            q = unrolled_step(&m, &q, &v, &cfg, &mut NoiseSource::new(17))?;
        }
        let s = bism_score_at(&m, &q, &v_tilde, &h_fixed)?.score;
        Ok(dsm_functional(&s, &z, 0.3, Reduction::Mean)?)
    };
    let loss_at = |_: usize| -> Result<f64> { Ok(fixed_loss()?.to_scalar::<f64>()?) };
    let g2: Vec<Tensor> = {
        let g = fixed_loss()?.backward()?;
        layers::sorted_vars(&vm)
            .iter()
            .map(|(_, var)| match g.get(var.as_tensor()) {
                Some(t) => Ok(t.clone()),
                None => var.as_tensor().zeros_like(),
            })
            .collect::<candle_core::Result<_>>()?
    };
    let all = layers::sorted_vars(&vm);
    let dirs: Vec<Tensor> = all
        .iter()
        .enumerate()
        .map(|(i, (_, var))| {
            let n = var.as_tensor().elem_count();
            Tensor::from_vec(wave(n, 3.0 + i as f64, 1.0), var.shape(), &Device::Cpu)
        })
        .collect::<candle_core::Result<_>>()?;
    let analytic: f64 = g2
        .iter()
        .zip(&dirs)
        .map(|(g, d)| (g * d)?.sum_all()?.to_scalar::<f64>())
        .sum::<candle_core::Result<f64>>()?;
    let shift = |s: f64| -> Result<()> {
        for ((_, var), d) in all.iter().zip(&dirs) {
            var.set(&(var.as_tensor() + (d * s)?)?)?;
        }
        Ok(())
    };
    let h = 1e-5;
    shift(h)?;
    let plus = loss_at(2)?;
    shift(-2.0 * h)?;
    let minus = loss_at(2)?;
    shift(h)?;
    let numeric = (plus - minus) / (2.0 * h);
    assert!(numeric.abs() > 1e-3, "vacuous directional check");
    assert!(
        (analytic - numeric).abs() < 1e-5 * (1.0 + numeric.abs()),
        "unrolled BiSM gradient {analytic} vs central differences {numeric}"
    );
    let reference = grad_after(80)?;
    let errs: Vec<f64> = [0usize, 1, 2, 4, 8, 16]
        .iter()
        .map(|&n| max_diff(&grad_after(n)?, &reference))
        .collect::<Result<_>>()?;
    eprintln!("BiSM gradient bias for N = 0, 1, 2, 4, 8, 16: {errs:?}");
    assert!(errs[0] > 1e-4, "the check would be vacuous: {errs:?}");
    assert!(errs[5] < errs[1] / 4.0, "{errs:?}");
    assert!(
        errs.windows(2).all(|w| w[1] < w[0]),
        "not decreasing: {errs:?}"
    );
    Ok(())
}

#[test]
fn vaes_cv_is_exact_with_the_true_posterior_and_keeps_the_vaes_mean() -> Result<()> {
    enable_higher_order().expect("Candle's higher-order mode");
    let (vm, m) = grbm()?;
    let v = visible()?;
    let exact = input_gradient(&m, &v)?.score;
    // The GRBM's posterior is Bernoulli with logits c + v W: exactly a BernoulliPosterior.
    let data = vm.data().lock().unwrap().clone();
    let truth = BernoulliPosterior::from_tensors(
        data["w"].as_tensor().detach(),
        data["c"].as_tensor().detach(),
    )?;
    let mut noise = NoiseSource::new(12);
    let one = vec![truth.sample(&v, &mut noise)?];
    let est = vaes_cv_score(&m, &truth, &v, &one)?.score;
    let err = (&est - &exact)?.abs()?.max_all()?.to_scalar::<f64>()?;
    assert!(
        err < 1e-12,
        "VaES-CV with the true posterior and one draw: {err}"
    );
    // Plain VaES with one draw is not exact: the control variate is what removed the noise.
    let plain = vaes_score(&m, &v, &one)?.score;
    assert!((plain - &exact)?.abs()?.max_all()?.to_scalar::<f64>()? > 1e-3);
    // With another q the control variate has mean zero under q's draws: over many draws
    // VaES-CV and VaES agree up to sampling error (the CV changes variance, not expectation).
    let other = BernoulliPosterior::from_tensors(
        Tensor::from_vec(wave(D * H, 4.0, 0.5), (D, H), &Device::Cpu)?,
        Tensor::from_vec(wave(H, 1.0, 0.5), H, &Device::Cpu)?,
    )?;
    let draws: Vec<Tensor> = (0..4000)
        .map(|_| other.sample(&v, &mut noise))
        .collect::<candle_core::Result<_>>()?;
    let cv = vaes_cv_score(&m, &other, &v, &draws)?.score;
    let plain = vaes_score(&m, &v, &draws)?.score;
    let gap = (cv - plain)?.abs()?.max_all()?.to_scalar::<f64>()?;
    assert!(gap < 0.05, "control variate mean {gap}");
    Ok(())
}

/// A linear-Gaussian latent model `log p~(v, h) = -1/2 |h|^2 - 1/2 |v - A h|^2 / s^2` with
/// orthogonal columns of `A`, whose posterior is a diagonal Gaussian: precision
/// `P_j = 1 + |a_j|^2 / s^2`, mean `a_j . v / (s^2 P_j)`.
struct LinearGaussian {
    a: Tensor,
    s2: f64,
}

impl JointLogDensity for LinearGaussian {
    fn joint_log_density(&self, v: &Tensor, h: &Tensor) -> candle_core::Result<Tensor> {
        let prior = (h.sqr()?.sum(1)? * -0.5)?;
        let resid = (v - h.matmul(&self.a.t()?)?)?;
        prior + (resid.sqr()?.sum(1)? * (-0.5 / self.s2))?
    }
}

#[test]
fn fisher_lower_level_vanishes_at_the_true_gaussian_posterior() -> Result<()> {
    use latent::bism::lower_fisher;
    use models::GaussianPosterior;
    enable_higher_order().expect("Candle's higher-order mode");
    // A = [[1, 0], [0, 2], [0, 0]] (orthogonal columns), s^2 = 0.5.
    let a = Tensor::new(&[[1.0f64, 0.0], [0.0, 2.0], [0.0, 0.0]], &Device::Cpu)?;
    let model = LinearGaussian { a, s2: 0.5 };
    let precision: [f64; 2] = [1.0 + 1.0 / 0.5, 1.0 + 4.0 / 0.5];
    let mu_w = Tensor::new(
        &[
            [1.0 / (0.5 * precision[0]), 0.0],
            [0.0, 2.0 / (0.5 * precision[1])],
            [0.0, 0.0],
        ],
        &Device::Cpu,
    )?;
    let ls_b = Tensor::new(
        &[-0.5 * precision[0].ln(), -0.5 * precision[1].ln()],
        &Device::Cpu,
    )?;
    let zeros_w = Tensor::zeros((3, 2), DType::F64, &Device::Cpu)?;
    let zeros_b = Tensor::zeros(2, DType::F64, &Device::Cpu)?;
    let truth =
        GaussianPosterior::from_tensors(mu_w.clone(), zeros_b.clone(), zeros_w.clone(), ls_b)?;
    let v = visible()?;
    let at_truth =
        lower_fisher(&model, &truth, &v, &mut NoiseSource::new(3))?.to_scalar::<f64>()?;
    assert!(
        at_truth.abs() < 1e-20,
        "Fisher divergence at the true posterior {at_truth}"
    );
    // A wrong posterior (unit variances) scores clearly above zero, and the objective's
    // gradient moves its log-sigma bias towards the truth (negative values).
    let ls = Var::from_tensor(&zeros_b)?;
    let wrong = GaussianPosterior::from_tensors(mu_w, zeros_b, zeros_w, ls.as_tensor().clone())?;
    let loss = lower_fisher(&model, &wrong, &v, &mut NoiseSource::new(3))?;
    assert!(loss.to_scalar::<f64>()? > 0.1);
    let g = loss
        .backward()?
        .remove(ls.as_tensor())
        .unwrap()
        .to_vec1::<f64>()?;
    assert!(
        g.iter().all(|x| *x > 0.0),
        "gradient {g:?} should push log sigma down"
    );
    // VaES with draws from the true posterior approaches the exact marginal score
    // -(A A^T + s^2 I)^{-1} v; one draw's score has sd |a_i| sd(h_i) / s^2 <= 1.34, so 4000
    // draws are within 0.09 (4 standard errors).
    let mut noise = NoiseSource::new(5);
    let draws: Vec<Tensor> = (0..4000)
        .map(|_| truth.sample(&v, &mut noise))
        .collect::<candle_core::Result<_>>()?;
    let est = vaes_score(&model, &v, &draws)?.score.to_vec2::<f64>()?;
    let diag = [1.0 + 0.5, 4.0 + 0.5, 0.5];
    for (row, vr) in est.iter().zip(v.to_vec2::<f64>()?) {
        for i in 0..3 {
            let exact = -vr[i] / diag[i];
            assert!((row[i] - exact).abs() < 0.09, "score {} vs {exact}", row[i]);
        }
    }
    Ok(())
}

#[test]
fn bimdsm_functional_on_the_exact_score_is_mdsm() -> Result<()> {
    use latent::bism::mdsm_functional;
    enable_higher_order().expect("Candle's higher-order mode");
    let (_, m) = grbm()?;
    let v = visible()?;
    let z = direction()?;
    let sigmas = [0.05, 0.6, 1.2];
    let sigma_t = Tensor::new(&sigmas, &Device::Cpu)?;
    let reference = sm_objectives::mdsm(&m, &v, &z, &sigma_t, 0.1, Reduction::PerSample)?;
    let v_tilde = (&v + z.broadcast_mul(&sigma_t.unsqueeze(1)?)?)?;
    let score = input_gradient(&m, &v_tilde)?.score;
    let ours = mdsm_functional(&score, &z, &sigmas, 0.1, Reduction::PerSample)?;
    let err = (ours - &reference)?.abs()?.max_all()?.to_scalar::<f64>()?;
    assert!(
        err < 1e-12 * (1.0 + reference.abs()?.max_all()?.to_scalar::<f64>()?),
        "{err}"
    );
    assert!(mdsm_functional(&score, &z, &sigmas[..2], 0.1, Reduction::Mean).is_err());
    Ok(())
}

#[test]
fn unrolled_gaussian_posterior_on_the_fisher_objective_has_the_right_gradient() -> Result<()> {
    use latent::bism::{lower_fisher, unrolled_update};
    use models::GaussianPosterior;
    enable_higher_order().expect("Candle's higher-order mode");
    let a = Var::new(&[[1.0f64, 0.2], [0.1, 2.0], [0.3, -0.4]], &Device::Cpu)?;
    let v = visible()?;
    let z = direction()?;
    let v_tilde = (&v + (&z * 0.3)?)?;
    let q0 = GaussianPosterior::from_tensors(
        Tensor::from_vec(wave(6, 2.0, 0.4), (3, 2), &Device::Cpu)?,
        Tensor::from_vec(wave(2, 3.0, 0.1), 2, &Device::Cpu)?,
        Tensor::from_vec(wave(6, 4.0, 0.2), (3, 2), &Device::Cpu)?,
        Tensor::from_vec(wave(2, 5.0, 0.1), 2, &Device::Cpu)?,
    )?;
    let h_fixed = q0.sample(&v_tilde, &mut NoiseSource::new(41))?.detach();
    // BiDSM after two unrolled Fisher steps, with the outer h held fixed: a deterministic
    // function of A.
    let loss_with = |a: &Tensor, cut: bool| -> Result<Tensor> {
        let model = LinearGaussian {
            a: a.clone(),
            s2: 0.5,
        };
        let mut q = q0.clone();
        for _ in 0..2 {
            q = unrolled_update(&q, 0.002, |q| {
                lower_fisher(&model, q, &v, &mut NoiseSource::new(43))
            })?;
        }
        if cut {
            // The same phi^N values with the path back to A removed.
            let detached = latent::bism::Posterior::parameters(&q)
                .iter()
                .map(Tensor::detach)
                .collect();
            q = latent::bism::Posterior::with_parameters(&q, detached)?;
        }
        let s = bism_score_at(&model, &q, &v_tilde, &h_fixed)?.score;
        Ok(dsm_functional(&s, &z, 0.3, Reduction::Mean)?)
    };
    let loss = |a: &Tensor| loss_with(a, false);
    let g = loss(a.as_tensor())?
        .backward()?
        .remove(a.as_tensor())
        .expect("gradient in A");
    let dir = Tensor::from_vec(wave(6, 7.0, 1.0), (3, 2), &Device::Cpu)?;
    let analytic = (&g * &dir)?.sum_all()?.to_scalar::<f64>()?;
    let h = 1e-5;
    let at =
        |s: f64| -> Result<f64> { Ok(loss(&(a.as_tensor() + (&dir * s)?)?)?.to_scalar::<f64>()?) };
    let numeric = (at(h)? - at(-h)?) / (2.0 * h);
    assert!(numeric.abs() > 1e-3, "vacuous check");
    assert!(
        (analytic - numeric).abs() < 1e-5 * (1.0 + numeric.abs()),
        "{analytic} vs {numeric}"
    );
    // The check sees the unrolled path: cutting it changes the gradient far beyond the error.
    let g_cut = loss_with(a.as_tensor(), true)?
        .backward()?
        .remove(a.as_tensor())
        .expect("gradient in A");
    let cut = (&g_cut * &dir)?.sum_all()?.to_scalar::<f64>()?;
    assert!(
        (cut - analytic).abs() > 100.0 * (analytic - numeric).abs() + 1e-6,
        "the unrolled steps barely matter here: {cut} vs {analytic}"
    );
    Ok(())
}
