//! Closed forms: every gradient-based objective (and its FD counterpart, which is exact on
//! quadratics) against analytic values for Gaussian and Gaussian-mixture log-densities.

mod common;

use candle_core::{Result, Tensor};
use common::*;
use sm_objectives::autodiff::{enable_higher_order, input_gradient};
use sm_objectives::{
    annealed_dsm, annealed_ssmvr, dsm, fd_dsm, fd_ssm, fd_ssmvr, mdsm, sliced_dsm, sm_exact, ssm,
    ssmvr, ssmvr_score, BatchMode, Directions, Graph, NoiseLevels, NoiseSource, Reduction, ScoreFn,
};

fn setup() -> (Gaussian, Tensor, NoiseSource) {
    assert!(
        enable_higher_order().is_some(),
        "higher-order mode must be available in tests"
    );
    (gaussian(), pattern(4, 3, 0.0), NoiseSource::new(7))
}

fn per_sample(t: Tensor) -> Vec<f64> {
    t.to_vec1::<f64>().unwrap()
}

fn close(a: f64, b: f64, what: &str) {
    assert!(
        (a - b).abs() <= 1e-9 * (1.0 + b.abs()),
        "{what}: {a} vs closed form {b}"
    );
}

#[test]
fn gaussian_score_and_exact_sm() -> Result<()> {
    let (g, x, _) = setup();
    let score = input_gradient(&g, &x)?.score;
    for (xr, sr) in rows(&x).iter().zip(rows(&score)) {
        let expect = g.score_of(xr);
        (0..3).for_each(|i| close(sr[i], expect[i], "score"));
    }
    // SM = tr(grad s) + |s|^2 / 2 = -tr(P) + |P (x - mu)|^2 / 2.
    for graph in [Graph::Keep, Graph::Detach] {
        let sm = per_sample(sm_exact(&g, &x, graph, Reduction::PerSample)?);
        for (xr, got) in rows(&x).iter().zip(sm) {
            let s = g.score_of(xr);
            close(got, -g.trace() + 0.5 * dot(&s, &s), "exact SM");
        }
    }
    let mean = sm_exact(&g, &x, Graph::Keep, Reduction::Mean)?.to_scalar::<f64>()?;
    let sum = sm_exact(&g, &x, Graph::Keep, Reduction::Sum)?.to_scalar::<f64>()?;
    close(sum, 4.0 * mean, "sum = B * mean");
    Ok(())
}

#[test]
fn gaussian_sliced_objectives() -> Result<()> {
    let (g, x, mut noise) = setup();
    for kind in [
        Directions::Gaussian,
        Directions::Rademacher,
        Directions::Sphere { radius: 0.3 },
    ] {
        let proj = noise.projection(&x, kind)?;
        let ssm_v = per_sample(ssm(&g, &x, &proj, Reduction::PerSample)?);
        let ssmvr_v = per_sample(ssmvr(&g, &x, &proj, Reduction::PerSample)?);
        // FD-SSM is exact on a quadratic log-density (its third derivative vanishes).
        let fd_v = per_sample(fd_ssm(
            &g,
            &x,
            &proj,
            BatchMode::Concatenated,
            Reduction::PerSample,
        )?);
        let analytic_score = ScoreFn(|x: &Tensor, _: Option<&Tensor>| -> Result<Tensor> {
            x.broadcast_sub(&g.mean())?.matmul(&g.precision())?.neg()
        });
        let ssmvr_s = per_sample(ssmvr_score(
            &analytic_score,
            &x,
            &proj,
            Reduction::PerSample,
        )?);
        let fd_ssmvr_s = per_sample(fd_ssmvr(
            &analytic_score,
            &x,
            &proj,
            BatchMode::PerOffset,
            Reduction::PerSample,
        )?);
        for (b, (xr, vr)) in rows(&x).iter().zip(rows(&proj.v)).enumerate() {
            let s = g.score_of(xr);
            let vhv = -g.quad(&vr);
            let vs = dot(&vr, &s);
            close(ssm_v[b], (vhv + 0.5 * vs * vs) / proj.c_v, "SSM");
            close(fd_v[b], (vhv + 0.5 * vs * vs) / proj.c_v, "FD-SSM");
            let vr_form = vhv / proj.c_v + dot(&s, &s) / 6.0;
            close(ssmvr_v[b], vr_form, "SSMVR (log-density)");
            close(ssmvr_s[b], vr_form, "SSMVR (score network)");
            // The score is linear, so (s+ + s-)/2 = s and (s+ - s-)/2 = J v exactly.
            close(fd_ssmvr_s[b], vr_form, "FD-SSMVR");
        }
    }
    Ok(())
}

#[test]
fn gaussian_denoising_objectives() -> Result<()> {
    let (g, x, mut noise) = setup();
    let z = noise.gaussian_like(&x)?;
    let sigma = 0.4;
    let proj = noise.projection(&x, Directions::Sphere { radius: 0.05 })?;
    let dsm_v = per_sample(dsm(&g, &x, &z, sigma, Reduction::PerSample)?);
    let sliced = per_sample(sliced_dsm(&g, &x, &z, sigma, &proj, Reduction::PerSample)?);
    let fd = per_sample(fd_dsm(
        &g,
        &x,
        &z,
        sigma,
        &proj,
        BatchMode::Concatenated,
        Reduction::PerSample,
    )?);
    let sigmas = Tensor::new(&[0.1f64, 0.4, 0.7, 1.2], &DEV)?;
    let sigma0 = 0.1;
    let mdsm_v = per_sample(mdsm(&g, &x, &z, &sigmas, sigma0, Reduction::PerSample)?);
    let level_sigmas = [1.0, 0.3, 0.05];
    let idx = Tensor::new(&[2u32, 0, 1, 2], &DEV)?;
    let levels = NoiseLevels {
        index: &idx,
        sigmas: &level_sigmas,
    };
    let analytic_score = ScoreFn(|x: &Tensor, _: Option<&Tensor>| -> Result<Tensor> {
        x.broadcast_sub(&g.mean())?.matmul(&g.precision())?.neg()
    });
    let adsm = per_sample(annealed_dsm(
        &analytic_score,
        &x,
        &z,
        levels,
        Reduction::PerSample,
    )?);
    let assmvr = per_sample(annealed_ssmvr(
        &analytic_score,
        &x,
        &z,
        &proj,
        levels,
        Reduction::PerSample,
    )?);
    let sig = [0.1, 0.4, 0.7, 1.2];
    let lvl = [0.05, 1.0, 0.3, 0.05];
    for (b, ((xr, zr), vr)) in rows(&x).iter().zip(rows(&z)).zip(rows(&proj.v)).enumerate() {
        // DSM: |s(x + sigma z) + z / sigma|^2 / D.
        let xt: Vec<f64> = (0..3).map(|i| xr[i] + sigma * zr[i]).collect();
        let s = g.score_of(&xt);
        let r: Vec<f64> = (0..3).map(|i| s[i] + zr[i] / sigma).collect();
        close(dsm_v[b], dot(&r, &r) / 3.0, "DSM");
        let t = dot(&vr, &s) + dot(&vr, zr.as_slice()) / sigma;
        close(sliced[b], t * t / proj.c_v, "sliced DSM");
        close(fd[b], t * t / proj.c_v, "FD-DSM (exact on quadratics)");
        // MDSM: sigma0^4 / sigma_b^2 |s(x + sigma_b z) + sigma_b z / sigma0^2|^2 / D.
        let xt: Vec<f64> = (0..3).map(|i| xr[i] + sig[b] * zr[i]).collect();
        let s = g.score_of(&xt);
        let r: Vec<f64> = (0..3)
            .map(|i| s[i] + sig[b] * zr[i] / (sigma0 * sigma0))
            .collect();
        close(
            mdsm_v[b],
            sigma0.powi(4) / (sig[b] * sig[b]) * dot(&r, &r) / 3.0,
            "MDSM",
        );
        // Annealed DSM: sigma_i^2 |s(x + sigma_i z) + z / sigma_i|^2 / D.
        let xt: Vec<f64> = (0..3).map(|i| xr[i] + lvl[b] * zr[i]).collect();
        let s = g.score_of(&xt);
        let r: Vec<f64> = (0..3).map(|i| s[i] + zr[i] / lvl[b]).collect();
        close(adsm[b], lvl[b] * lvl[b] * dot(&r, &r) / 3.0, "annealed DSM");
        // Annealed SSMVR: sigma_i^2 (v^T J v / C_v + |s(x~)|^2 / (2D)), J = -P.
        let form = -g.quad(&vr) / proj.c_v + dot(&s, &s) / 6.0;
        close(assmvr[b], lvl[b] * lvl[b] * form, "annealed SSMVR");
    }
    Ok(())
}

/// `log p(x) = logsumexp_k [log pi_k - |x - mu_k|^2 / (2 s^2)]` (constants dropped).
struct Mixture {
    means: [[f64; 2]; 3],
    log_w: [f64; 3],
    s: f64,
}

impl sm_objectives::LogDensity for Mixture {
    fn log_density(&self, x: &Tensor) -> Result<Tensor> {
        let mut comps = Vec::new();
        for k in 0..3 {
            let mu = Tensor::new(&[self.means[k]], &DEV)?;
            let sq = x.broadcast_sub(&mu)?.sqr()?.sum_keepdim(1)?;
            comps.push(((sq * (-0.5 / (self.s * self.s)))? + self.log_w[k])?);
        }
        let c = Tensor::cat(&comps, 1)?; // [B, 3]
        let m = c.max_keepdim(1)?.detach();
        (c.broadcast_sub(&m)?.exp()?.sum_keepdim(1)?.log()? + m)?.squeeze(1)
    }
}

#[test]
fn gaussian_mixture_score_and_exact_sm() -> Result<()> {
    enable_higher_order().expect("Candle's higher-order mode");
    let mix = Mixture {
        means: [[0.0, 0.0], [1.5, -0.5], [-1.0, 1.0]],
        log_w: [0.2f64.ln(), 0.5f64.ln(), 0.3f64.ln()],
        s: 0.7,
    };
    let x = pattern(5, 2, 3.0);
    let score = input_gradient(&mix, &x)?.score;
    let sm = per_sample(sm_exact(&mix, &x, Graph::Keep, Reduction::PerSample)?);
    for (b, (xr, sr)) in rows(&x).iter().zip(rows(&score)).enumerate() {
        // Responsibilities r_k; score = sum_k r_k (mu_k - x) / s^2;
        // tr(Hessian) = sum_k r_k |mu_k - x|^2 / s^4 - D / s^2 - |score|^2.
        let logits: Vec<f64> = (0..3)
            .map(|k| {
                mix.log_w[k]
                    - (0..2)
                        .map(|i| (xr[i] - mix.means[k][i]).powi(2))
                        .sum::<f64>()
                        / (2.0 * mix.s * mix.s)
            })
            .collect();
        let m = logits.iter().cloned().fold(f64::MIN, f64::max);
        let z: f64 = logits.iter().map(|l| (l - m).exp()).sum();
        let r: Vec<f64> = logits.iter().map(|l| (l - m).exp() / z).collect();
        let s2 = mix.s * mix.s;
        let s: Vec<f64> = (0..2)
            .map(|i| (0..3).map(|k| r[k] * (mix.means[k][i] - xr[i]) / s2).sum())
            .collect();
        (0..2).for_each(|i| close(sr[i], s[i], "mixture score"));
        let dist2: f64 = (0..3)
            .map(|k| {
                r[k] * (0..2)
                    .map(|i| (mix.means[k][i] - xr[i]).powi(2))
                    .sum::<f64>()
            })
            .sum();
        let trace = dist2 / (s2 * s2) - 2.0 / s2 - dot(&s, &s);
        close(sm[b], trace + 0.5 * dot(&s, &s), "mixture exact SM");
    }
    Ok(())
}
