//! The kernelized Stein discrepancy against its definition evaluated pair by pair, its zero
//! mean under the model's own samples, its growth under a mismatched model, and its gradient
//! flowing to the model's parameters through the score.

use anyhow::Result;
use candle_core::{DType, Device, Tensor, Var};
use sm_objectives::ksd::{ksd, median_bandwidth};
use sm_objectives::NoiseSource;

/// `u(x, y)` for the Gaussian kernel, written out for one pair.
fn u_pair(x: &[f64], y: &[f64], sx: &[f64], sy: &[f64], h: f64) -> f64 {
    let d = x.len();
    let r2: f64 = x.iter().zip(y).map(|(a, b)| (a - b).powi(2)).sum();
    let k = (-r2 / (2.0 * h * h)).exp();
    let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(p, q)| p * q).sum::<f64>();
    let diff: Vec<f64> = x.iter().zip(y).map(|(a, b)| a - b).collect();
    let grad_y_k: Vec<f64> = diff.iter().map(|t| t * k / (h * h)).collect();
    let grad_x_k: Vec<f64> = diff.iter().map(|t| -t * k / (h * h)).collect();
    k * dot(sx, sy)
        + dot(sx, &grad_y_k)
        + dot(sy, &grad_x_k)
        + k * (d as f64 / (h * h) - r2 / h.powi(4))
}

#[test]
fn matches_the_pairwise_definition() -> Result<()> {
    let mut noise = NoiseSource::new(2);
    let x = noise.gaussian((7, 3), DType::F64, &Device::Cpu)?;
    let s = noise.gaussian((7, 3), DType::F64, &Device::Cpu)?;
    let h = 0.9;
    let got = ksd(&x, &s, h)?.to_scalar::<f64>()?;
    let (xv, sv) = (x.to_vec2::<f64>()?, s.to_vec2::<f64>()?);
    let mut sum = 0.0;
    for i in 0..7 {
        for j in 0..7 {
            if i != j {
                sum += u_pair(&xv[i], &xv[j], &sv[i], &sv[j], h);
            }
        }
    }
    let expected = sum / 42.0;
    assert!(
        (got - expected).abs() < 1e-12 * (1.0 + expected.abs()),
        "{got} vs {expected}"
    );
    assert!(ksd(&x, &s.narrow(0, 0, 6)?, h).is_err());
    assert!(ksd(&x, &s, 0.0).is_err());
    Ok(())
}

#[test]
fn vanishes_for_the_right_model_and_grows_for_a_wrong_one() -> Result<()> {
    // Samples from N(0, I); the model N(mu, I) has score mu - x.
    let mut noise = NoiseSource::new(8);
    let x = noise.gaussian((2000, 2), DType::F64, &Device::Cpu)?;
    let h = median_bandwidth(&x)?;
    let mu = Var::new(&[0.0f64, 0.0], &Device::Cpu)?;
    let score = |m: &Tensor| -> Result<Tensor> { Ok(m.unsqueeze(0)?.broadcast_sub(&x)?) };
    let right = ksd(&x, &score(mu.as_tensor())?, h)?.to_scalar::<f64>()?;
    let shifted = Tensor::new(&[0.7f64, -0.4], &Device::Cpu)?;
    let wrong = ksd(&x, &score(&shifted)?, h)?.to_scalar::<f64>()?;
    assert!(right.abs() < 0.01, "KSD under the true model {right}");
    assert!(
        wrong > 0.05 && wrong > 10.0 * right.abs(),
        "{wrong} vs {right}"
    );
    // The gradient in the model's mean points back to the truth from a shifted start.
    let start = Var::new(&[0.7f64, -0.4], &Device::Cpu)?;
    let g = ksd(&x, &score(start.as_tensor())?, h)?
        .backward()?
        .remove(start.as_tensor())
        .unwrap()
        .to_vec1::<f64>()?;
    assert!(
        g[0] > 0.0 && g[1] < 0.0,
        "gradient {g:?} should point away from 0"
    );
    Ok(())
}
