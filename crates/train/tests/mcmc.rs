//! The samplers and the maximum-likelihood loss of `train::mcmc`, against closed forms:
//! the unadjusted Langevin chain's stationary variance on a Gaussian (which differs from the
//! target's, so a wrong update shows), HMC leaving a correlated Gaussian invariant with a step
//! large enough that the Metropolis correction matters, and converging to it from far away; the
//! replay buffer's reinitialisation rate and round trips; the MLE loss's gradient in closed form;
//! and a Gaussian fitted by persistent-chain MLE on the trainer.

use anyhow::Result;
use candle_core::{DType, Device, Tensor, Var};
use sm_objectives::NoiseSource;
use train::mcmc::{cd_loss, mle_loss, ChainInit, Hmc, ReplayBuffer, Sgld};
use train::trainer::TrainState;
use train::{step_seed, TrainOptions};

const CPU: Device = Device::Cpu;

/// Sample mean `[D]` and covariance `[D, D]` of the rows of `x`, as f64 vectors.
fn moments(x: &Tensor) -> Result<(Vec<f64>, Vec<Vec<f64>>)> {
    let rows = x.to_dtype(DType::F64)?.to_vec2::<f64>()?;
    let (n, d) = (rows.len() as f64, rows[0].len());
    let mean: Vec<f64> = (0..d)
        .map(|j| rows.iter().map(|r| r[j]).sum::<f64>() / n)
        .collect();
    let cov = (0..d)
        .map(|i| {
            (0..d)
                .map(|j| {
                    rows.iter()
                        .map(|r| (r[i] - mean[i]) * (r[j] - mean[j]))
                        .sum::<f64>()
                        / (n - 1.0)
                })
                .collect()
        })
        .collect();
    Ok((mean, cov))
}

#[test]
fn langevin_has_the_stationary_variance_of_its_discretisation() -> Result<()> {
    // Target N(0, s^2); x' = (1 - h / s^2) x + sqrt(2h) z has variance 2h / (1 - (1 - h/s^2)^2).
    let (s2, h) = (1.0, 0.3);
    let model = |x: &Tensor| (x.sqr()?.sum(1)? * (-0.5 / s2))?.to_dtype(DType::F64);
    let n = 4000;
    let x0 = Tensor::zeros((n, 1), DType::F64, &CPU)?;
    let x = Sgld::unadjusted(200, h).run(&model, &x0, &mut NoiseSource::new(1))?;
    let (mean, cov) = moments(&x)?;
    let a: f64 = 1.0 - h / s2;
    let expected = 2.0 * h / (1.0 - a * a);
    let se = expected * (2.0 / (n as f64 - 1.0)).sqrt();
    assert!(
        (cov[0][0] - expected).abs() < 4.0 * se,
        "variance {} vs {expected} (se {se})",
        cov[0][0]
    );
    assert!(
        (expected - s2) > 5.0 * se,
        "the check tells the discretisation from the target"
    );
    assert!(mean[0].abs() < 4.0 * (expected / n as f64).sqrt());
    // Separate noise and step: the EBM practice's cold chain has a smaller variance,
    // noise^2 / (1 - a^2).
    let cold = Sgld {
        noise_scale: 0.3,
        ..Sgld::unadjusted(200, h)
    };
    let x = cold.run(&model, &x0, &mut NoiseSource::new(2))?;
    let expected = 0.09 / (1.0 - a * a);
    let got = moments(&x)?.1[0][0];
    assert!(
        (got - expected).abs() < 4.0 * expected * (2.0 / (n as f64 - 1.0)).sqrt(),
        "{got} vs {expected}"
    );
    Ok(())
}

/// `log N(x; mu, S)` up to a constant for `S = [[1, 0.8], [0.8, 1.5]]`, `mu = (1, -2)`.
fn correlated_gaussian(x: &Tensor) -> candle_core::Result<Tensor> {
    let (a, b, c) = (1.0, 0.8, 1.5);
    let det = a * c - b * b;
    let prec = Tensor::new(&[[c / det, -b / det], [-b / det, a / det]], &CPU)?;
    let mu = Tensor::new(&[1.0f64, -2.0], &CPU)?;
    let d = x.broadcast_sub(&mu)?;
    (d.matmul(&prec)? * &d)?.sum(1)? * -0.5
}

const MU: [f64; 2] = [1.0, -2.0];
const SIGMA: [[f64; 2]; 2] = [[1.0, 0.8], [0.8, 1.5]];

fn assert_gaussian_moments(x: &Tensor, what: &str) -> Result<()> {
    let n = x.dim(0)? as f64;
    let (mean, cov) = moments(x)?;
    for i in 0..2 {
        let se = (SIGMA[i][i] / n).sqrt();
        assert!(
            (mean[i] - MU[i]).abs() < 4.0 * se,
            "{what}: mean[{i}] = {} (se {se})",
            mean[i]
        );
        for j in 0..2 {
            // Var of a sample covariance: (S_ii S_jj + S_ij^2) / (n - 1).
            let se = ((SIGMA[i][i] * SIGMA[j][j] + SIGMA[i][j].powi(2)) / (n - 1.0)).sqrt();
            assert!(
                (cov[i][j] - SIGMA[i][j]).abs() < 4.0 * se,
                "{what}: cov[{i}][{j}] = {} (se {se})",
                cov[i][j]
            );
        }
    }
    Ok(())
}

#[test]
fn hmc_leaves_the_target_invariant_and_converges_to_it() -> Result<()> {
    let n = 4000;
    // Exact draws: mu + L z with L the Cholesky factor of SIGMA.
    let l11 = SIGMA[0][0].sqrt();
    let l21 = SIGMA[1][0] / l11;
    let l22 = (SIGMA[1][1] - l21 * l21).sqrt();
    let l = Tensor::new(&[[l11, 0.0], [l21, l22]], &CPU)?;
    let z = NoiseSource::new(3).gaussian((n, 2), DType::F64, &CPU)?;
    let exact = z.matmul(&l.t()?)?.broadcast_add(&Tensor::new(&MU, &CPU)?)?;
    assert_gaussian_moments(&exact, "exact draws")?;
    // A step large enough that about a third of the proposals are rejected: without the
    // Metropolis correction the leapfrog map would widen the distribution.
    let hmc = Hmc {
        transitions: 3,
        step_size: 1.1,
        leapfrog_steps: 3,
    };
    let out = hmc.run(&correlated_gaussian, &exact, &mut NoiseSource::new(4))?;
    assert!(
        (0.2..0.95).contains(&out.acceptance),
        "the correction is exercised: acceptance {}",
        out.acceptance
    );
    assert_gaussian_moments(&out.x, "after HMC from the target")?;
    // From far away with a moderate step and a trajectory (1.25) well short of half the
    // narrow direction's period (2 pi 0.64): a half period would flip that coordinate about the
    // mean at every transition instead of mixing it.
    let far = (Tensor::ones((n, 2), DType::F64, &CPU)? * 6.0)?;
    let hmc = Hmc {
        transitions: 60,
        step_size: 0.25,
        leapfrog_steps: 5,
    };
    let out = hmc.run(&correlated_gaussian, &far, &mut NoiseSource::new(5))?;
    assert!(out.acceptance > 0.5);
    assert_gaussian_moments(&out.x, "after HMC from (6, 6)")
}

#[test]
fn replay_buffer_draws_stores_and_round_trips() -> Result<()> {
    let init = ChainInit::Uniform {
        low: -1.0,
        high: 1.0,
    };
    let mut buf = ReplayBuffer::new(50, &[3], 0.2, init, 7)?;
    let mut noise = NoiseSource::new(8);
    let n = 10_000;
    let draw = buf.draw(n, DType::F64, &CPU, &mut noise)?;
    let se = (0.2 * 0.8 / n as f64).sqrt();
    let rate = draw.fresh as f64 / n as f64;
    assert!((rate - 0.2).abs() < 4.0 * se, "reinitialised {rate}");
    // Stored chains come back from their slots.
    let values = Tensor::new(&[[5.0f32, 6.0, 7.0], [8.0, 9.0, 10.0]], &CPU)?;
    buf.store(&[4, 9], &values)?;
    let all = buf.samples(&CPU)?.to_vec2::<f32>()?;
    assert_eq!(all[4], [5.0, 6.0, 7.0]);
    assert_eq!(all[9], [8.0, 9.0, 10.0]);
    let kept = ReplayBuffer::new(50, &[3], 0.0, init, 7)?;
    let mut keep = kept.clone();
    keep.store(&[4, 9], &values)?;
    let d = keep.draw(200, DType::F32, &CPU, &mut noise)?;
    assert_eq!(d.fresh, 0);
    let rows = d.x.to_vec2::<f32>()?;
    let all = keep.samples(&CPU)?.to_vec2::<f32>()?;
    for (row, slot) in rows.iter().zip(&d.slots) {
        assert_eq!(row, &all[*slot]);
    }
    // Checkpoint round trip, and a buffer of another shape refused.
    let tensors: std::collections::HashMap<_, _> = keep.tensors()?.into_iter().collect();
    let mut fresh = ReplayBuffer::new(50, &[3], 0.0, init, 99)?;
    fresh.restore(&tensors, &keep.json()?)?;
    assert_eq!(fresh.samples(&CPU)?.to_vec2::<f32>()?, all);
    let mut other = ReplayBuffer::new(10, &[3], 0.0, init, 1)?;
    let err = other
        .restore(&tensors, &serde_json::Value::Null)
        .unwrap_err();
    assert!(err.to_string().contains("replay buffer"), "{err}");
    assert!(buf.store(&[50], &values.narrow(0, 0, 1)?).is_err());
    assert!(ReplayBuffer::new(5, &[3], 1.5, init, 1).is_err());
    Ok(())
}

#[test]
fn mle_loss_gradient_matches_its_closed_form() -> Result<()> {
    // log p~(x) = -|x - m|^2 / 2: d/dm log p~ = x - m.
    let m = Var::new(&[0.3f64, -0.2], &CPU)?;
    let model = |x: &Tensor| x.broadcast_sub(m.as_tensor())?.sqr()?.sum(1)? * -0.5;
    let mut noise = NoiseSource::new(11);
    let data = noise.gaussian((6, 2), DType::F64, &CPU)?;
    let neg = (noise.gaussian((9, 2), DType::F64, &CPU)? * 2.0)?;
    for alpha in [0.0, 0.7] {
        let loss = mle_loss(&model, &data, &neg, alpha)?;
        let g = loss.backward()?.remove(m.as_tensor()).expect("gradient");
        let g = g.to_vec1::<f64>()?;
        let mv = m.as_tensor().to_vec1::<f64>()?;
        let rows_d = data.to_vec2::<f64>()?;
        let rows_n = neg.to_vec2::<f64>()?;
        for (j, gj) in g.iter().enumerate() {
            // d/dm [mean logp(neg) - mean logp(data) + alpha (mean logp_d^2 + mean logp_n^2)]
            let term = |rows: &[Vec<f64>], sign: f64| -> f64 {
                rows.iter()
                    .map(|r| {
                        let lp =
                            -0.5 * r.iter().zip(&mv).map(|(x, m)| (x - m).powi(2)).sum::<f64>();
                        let dlp = r[j] - mv[j];
                        sign * dlp + alpha * 2.0 * lp * dlp
                    })
                    .sum::<f64>()
                    / rows.len() as f64
            };
            let expected = term(&rows_n, 1.0) + term(&rows_d, -1.0);
            assert!(
                (gj - expected).abs() < 1e-12,
                "alpha {alpha}: {gj} vs {expected}"
            );
        }
    }
    assert!(mle_loss(&model, &data, &neg, -1.0).is_err());
    // CD-k is the same loss with negatives k sampler steps from the data.
    let sampler = Sgld::unadjusted(3, 0.1);
    let cd = cd_loss(&model, &data, &sampler, 0.7, &mut NoiseSource::new(12))?;
    let neg = sampler.run(&model, &data, &mut NoiseSource::new(12))?;
    let direct = mle_loss(&model, &data, &neg, 0.7)?;
    assert_eq!(cd.to_scalar::<f64>()?, direct.to_scalar::<f64>()?);
    Ok(())
}

#[test]
fn persistent_chain_mle_fits_a_gaussian() -> Result<()> {
    // Data N((2, -1), diag(0.5^2, 1.5^2)); model log p~ = -sum ((x - m) / s)^2 / 2.
    let n = 2000;
    let mut noise = NoiseSource::new(21);
    let data = (noise
        .gaussian((n, 2), DType::F32, &CPU)?
        .broadcast_mul(&Tensor::new(&[0.5f32, 1.5], &CPU)?)?
        .broadcast_add(&Tensor::new(&[2.0f32, -1.0], &CPU)?))?;
    let vm = candle_nn::VarMap::new();
    let vb = candle_nn::VarBuilder::from_varmap(&vm, DType::F32, &CPU);
    let m = vb.get_with_hints(2, "mean", candle_nn::Init::Const(0.0))?;
    let log_s = vb.get_with_hints(2, "log_std", candle_nn::Init::Const(0.0))?;
    let model = |x: &Tensor| -> candle_core::Result<Tensor> {
        x.broadcast_sub(&m)?
            .broadcast_div(&log_s.exp()?)?
            .sqr()?
            .sum(1)?
            * -0.5
    };
    let mut buffer = ReplayBuffer::new(1000, &[2], 0.05, ChainInit::Gaussian { std: 1.0 }, 22)?;
    // 30 steps of 0.05 mix the wide coordinate (variance 2.25) within a few draws of a chain;
    // 10 steps of 0.02 measurably did not (mean y ended at -1.53).
    let sampler = Sgld::unadjusted(30, 0.05);
    let opts = TrainOptions::new(600, 0.02);
    let batch = 128;
    train::train_with_state::<_, train::TrainError>(
        &vm,
        &opts,
        &mut buffer,
        &mut |step, buffer| {
            let mut noise = NoiseSource::new(step_seed(23, step));
            let idx: Vec<u32> = (0..batch)
                .map(|_| rand::Rng::random_range(noise.rng(), 0..n as u32))
                .collect();
            let x = data.index_select(&Tensor::new(idx.as_slice(), &CPU)?, 0)?;
            let start = buffer
                .draw(batch, DType::F32, &CPU, &mut noise)
                .map_err(candle_core::Error::wrap)?;
            let neg = sampler
                .run(&model, &start.x, &mut noise)
                .map_err(candle_core::Error::wrap)?;
            buffer
                .store(&start.slots, &neg)
                .map_err(candle_core::Error::wrap)?;
            mle_loss(&model, &x, &neg, 0.0).map_err(candle_core::Error::wrap)
        },
        &mut |_, _| Ok(()),
    )?;
    let (mean, std) = (m.to_vec1::<f32>()?, log_s.exp()?.to_vec1::<f32>()?);
    eprintln!("fitted mean {mean:?}, std {std:?}");
    // SGLD's own bias at this step is under 1%; the stochastic gradient adds a few percent.
    for (got, want, what) in [
        (mean[0], 2.0, "mean x"),
        (mean[1], -1.0, "mean y"),
        (std[0], 0.5, "std x"),
        (std[1], 1.5, "std y"),
    ] {
        assert!(
            (got - want).abs() < 0.1 * want.abs().max(1.0),
            "{what}: {got} vs {want}"
        );
    }
    Ok(())
}
