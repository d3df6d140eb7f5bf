//! The implicit-autoencoder losses against closed forms: the entropy surrogate's gradient with
//! the exact score of a Gaussian encoder is minus the entropy's gradient (`dH/dsigma = 1 /
//! sigma`, `dH/dmu = 0`), the Bernoulli likelihood and the Gaussian prior against their
//! formulas (and finite at extreme logits), and the WAE loss against a hand computation.

use anyhow::Result;
use candle_core::{DType, Device, Tensor, Var};
use latent::implicit::{
    bernoulli_log_likelihood, entropy_surrogate, gaussian_log_likelihood, implicit_vae_loss,
    implicit_wae_loss, standard_normal_log_density, DecoderLikelihood,
};
use sm_objectives::{NoiseSource, Reduction};

#[test]
fn the_surrogate_with_the_exact_score_gives_minus_the_entropy_gradient() -> Result<()> {
    // q(z | x) = N(mu, sigma^2 I) in K = 3 dimensions, z = mu + sigma eps; its entropy is
    // K log sigma + const, so dH/dsigma_k = 1 / sigma_k and dH/dmu_k = 0.
    let (n, k) = (40_000, 3);
    let dev = Device::Cpu;
    let mu = Var::new(&[0.3f64, -1.0, 2.0], &dev)?;
    let sigma = Var::new(&[0.5f64, 1.0, 2.0], &dev)?;
    let eps = NoiseSource::new(7).gaussian((n, k), DType::F64, &dev)?;
    let z = eps
        .broadcast_mul(sigma.as_tensor())?
        .broadcast_add(mu.as_tensor())?;
    let exact_score =
        (z.broadcast_sub(mu.as_tensor())?.neg()?).broadcast_div(&sigma.as_tensor().sqr()?)?;
    let grads = entropy_surrogate(&z, &exact_score)?
        .mean_all()?
        .backward()?;
    let g_sigma = grads
        .get(sigma.as_tensor())
        .expect("sigma")
        .to_vec1::<f64>()?;
    let g_mu = grads.get(mu.as_tensor()).expect("mu").to_vec1::<f64>()?;
    for (i, s) in [0.5, 1.0, 2.0].into_iter().enumerate() {
        // Monte Carlo over 40 000 draws: mean(eps^2) has standard error sqrt(2 / n) = 0.007.
        let want = -1.0 / s;
        assert!(
            (g_sigma[i] - want).abs() < 0.03 / s,
            "d/dsigma_{i}: {} vs {want}",
            g_sigma[i]
        );
        assert!(g_mu[i].abs() < 0.03 / s, "d/dmu_{i}: {}", g_mu[i]);
    }
    Ok(())
}

#[test]
fn likelihood_and_prior_follow_their_formulas() -> Result<()> {
    let dev = Device::Cpu;
    let logits = Tensor::new(&[[-2.0f64, 0.0, 3.0], [0.5, -0.25, 1.5]], &dev)?;
    let x = Tensor::new(&[[0.0f64, 1.0, 1.0], [1.0, 0.0, 0.0]], &dev)?;
    let got = bernoulli_log_likelihood(&logits, &x)?.to_vec1::<f64>()?;
    let (l, xv) = (logits.to_vec2::<f64>()?, x.to_vec2::<f64>()?);
    for b in 0..2 {
        let want: f64 = (0..3)
            .map(|j| {
                let p = 1.0 / (1.0 + (-l[b][j]).exp());
                xv[b][j] * p.ln() + (1.0 - xv[b][j]) * (1.0 - p).ln()
            })
            .sum();
        assert!(
            (got[b] - want).abs() < 1e-12,
            "row {b}: {} vs {want}",
            got[b]
        );
    }
    // Extreme logits stay finite: a confident right answer costs ~0, a wrong one ~|l|.
    let far = Tensor::new(&[[200.0f64, -200.0]], &dev)?;
    let right = bernoulli_log_likelihood(&far, &Tensor::new(&[[1.0f64, 0.0]], &dev)?)?;
    let wrong = bernoulli_log_likelihood(&far, &Tensor::new(&[[0.0f64, 1.0]], &dev)?)?;
    assert!(right.to_vec1::<f64>()?[0].abs() < 1e-12);
    assert!((wrong.to_vec1::<f64>()?[0] + 400.0).abs() < 1e-9);
    let z = Tensor::new(&[[1.0f64, -2.0], [0.0, 0.5]], &dev)?;
    let prior = standard_normal_log_density(&z)?.to_vec1::<f64>()?;
    let c = -(2.0 * std::f64::consts::PI).ln();
    assert!((prior[0] - (c - 2.5)).abs() < 1e-12);
    assert!((prior[1] - (c - 0.125)).abs() < 1e-12);
    Ok(())
}

#[test]
fn the_losses_add_their_terms_and_refuse_bad_input() -> Result<()> {
    let dev = Device::Cpu;
    let logits = Tensor::new(&[[1.0f64, -1.0]], &dev)?;
    let x = Tensor::new(&[[1.0f64, 1.0]], &dev)?;
    let z = Tensor::new(&[[0.5f64, -0.5, 1.0]], &dev)?;
    let s = Tensor::new(&[[2.0f64, 1.0, -1.0]], &dev)?;
    let dot = 2.0 * 0.5 - 0.5 - 1.0;
    let neg_prior = 0.5 * 1.5 + 1.5 * (2.0 * std::f64::consts::PI).ln();
    let sig = |v: f64| 1.0 / (1.0 + (-v).exp());
    let recon = (1.0 - sig(1.0)).powi(2) + (1.0 - sig(-1.0)).powi(2);
    let wae = implicit_wae_loss(
        DecoderLikelihood::Bernoulli,
        &logits,
        &x,
        &z,
        &s,
        10.0,
        Reduction::Sum,
    )?
    .to_scalar::<f64>()?;
    assert!(
        (wae - (recon + 10.0 * (neg_prior + dot))).abs() < 1e-12,
        "{wae}"
    );
    let nll = -(sig(1.0).ln() + sig(-1.0).ln());
    let vae = implicit_vae_loss(
        DecoderLikelihood::Bernoulli,
        &logits,
        &x,
        &z,
        &s,
        Reduction::Mean,
    )?
    .to_scalar::<f64>()?;
    assert!((vae - (nll + neg_prior + dot)).abs() < 1e-12, "{vae}");
    // The score is detached: no gradient reaches it.
    let sv = Var::from_tensor(&s)?;
    let grads = implicit_vae_loss(
        DecoderLikelihood::Bernoulli,
        &logits,
        &x,
        &z,
        sv.as_tensor(),
        Reduction::Mean,
    )?
    .backward()?;
    assert!(grads.get(sv.as_tensor()).is_none());
    let err = implicit_wae_loss(
        DecoderLikelihood::Bernoulli,
        &logits,
        &x,
        &z,
        &s,
        -1.0,
        Reduction::Mean,
    )
    .unwrap_err();
    assert!(err.to_string().contains("lambda"), "{err}");
    // The Gaussian decoder: log N(x; m, e^(2c)) summed over pixels, and the WAE's
    // reconstruction by the mean itself, on image-shaped [B, C, H, W] data.
    let m = Tensor::new(&[[[[0.5f64, -0.25]]]], &dev)?;
    let xi = Tensor::new(&[[[[0.0f64, 0.25]]]], &dev)?;
    let c: f64 = -0.602;
    let sq = 0.25 + 0.25;
    let want = -sq / (2.0 * (2.0 * c).exp()) - 2.0 * (c + 0.5 * (2.0 * std::f64::consts::PI).ln());
    let got = gaussian_log_likelihood(&m, &xi, c)?.to_vec1::<f64>()?;
    assert!((got[0] - want).abs() < 1e-12, "{got:?} vs {want}");
    let gauss = DecoderLikelihood::Gaussian { log_std: c };
    let wae =
        implicit_wae_loss(gauss, &m, &xi, &z, &s, 10.0, Reduction::Sum)?.to_scalar::<f64>()?;
    assert!(
        (wae - (sq + 10.0 * (neg_prior + dot))).abs() < 1e-12,
        "{wae}"
    );
    let vae = implicit_vae_loss(gauss, &m, &xi, &z, &s, Reduction::Sum)?.to_scalar::<f64>()?;
    assert!((vae - (-want + neg_prior + dot)).abs() < 1e-12, "{vae}");
    let err = gaussian_log_likelihood(&m, &x, c).unwrap_err();
    assert!(err.to_string().contains("same [B, ...]"), "{err}");
    let err = entropy_surrogate(&z, &logits).unwrap_err();
    assert!(err.to_string().contains("same [B, K]"), "{err}");
    Ok(())
}
