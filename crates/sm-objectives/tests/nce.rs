//! Noise-contrastive estimation with a tractable noise distribution: the diagonal Gaussian's
//! log-density against its closed form and its fitted moments, and NCE recovering a Gaussian's
//! mean, scale and log-normaliser (known in closed form) by plain gradient descent.

use anyhow::Result;
use candle_core::{DType, Device, Tensor, Var};
use sm_objectives::nce::{nce_loss_with, DiagonalGaussian, NoiseDistribution};
use sm_objectives::NoiseSource;

#[test]
fn diagonal_gaussian_density_and_fit() -> Result<()> {
    let g = DiagonalGaussian {
        mean: vec![1.0, -2.0],
        std: vec![0.5, 3.0],
        dtype: DType::F64,
        device: Device::Cpu,
    };
    let x = Tensor::new(&[[1.2f64, 0.5]], &Device::Cpu)?;
    let want = -0.5 * ((0.2f64 / 0.5).powi(2) + (2.5f64 / 3.0).powi(2))
        - (0.5f64).ln()
        - 3.0f64.ln()
        - (2.0 * std::f64::consts::PI).ln();
    let got = g.log_density(&x)?.to_vec1::<f64>()?[0];
    assert!((got - want).abs() < 1e-12, "{got} vs {want}");
    let n = 20_000;
    let draws = g.sample(n, &mut NoiseSource::new(1))?;
    let fitted = DiagonalGaussian::fit(&draws, 2.0)?;
    for i in 0..2 {
        let se = g.std[i] / (n as f64).sqrt();
        assert!((fitted.mean[i] - g.mean[i]).abs() < 4.0 * se);
        // widened twice; the sample std's relative error is about 1 / sqrt(2n).
        assert!((fitted.std[i] / (2.0 * g.std[i]) - 1.0).abs() < 4.0 / (2.0 * n as f64).sqrt());
    }
    assert!(g
        .log_density(&Tensor::zeros((2, 3), DType::F64, &Device::Cpu)?)
        .is_err());
    let constant = Tensor::ones((5, 1), DType::F64, &Device::Cpu)?;
    assert!(DiagonalGaussian::fit(&constant, 1.0).is_err());
    Ok(())
}

#[test]
fn nce_recovers_a_gaussian_and_its_normaliser() -> Result<()> {
    // Data N(1.5, 0.7^2); model log p~ = -(x - m)^2 / (2 s^2), normaliser log(s sqrt(2 pi)).
    let n = 4000;
    let data = ((NoiseSource::new(2).gaussian((n, 1), DType::F64, &Device::Cpu)? * 0.7)? + 1.5)?;
    let noise_dist = DiagonalGaussian::fit(&data, 1.5)?;
    let m = Var::new(&[0.0f64], &Device::Cpu)?;
    let log_s = Var::new(&[0.0f64], &Device::Cpu)?;
    let log_z = Var::new(0.0f64, &Device::Cpu)?;
    let model = |x: &Tensor| -> candle_core::Result<Tensor> {
        x.broadcast_sub(m.as_tensor())?
            .broadcast_div(&log_s.as_tensor().exp()?)?
            .sqr()?
            .sum(1)?
            * -0.5
    };
    let mut noise = NoiseSource::new(3);
    for _ in 0..1500 {
        let loss = nce_loss_with(&model, log_z.as_tensor(), &data, &noise_dist, 1, &mut noise)?;
        let grads = loss.backward()?;
        for v in [&m, &log_s, &log_z] {
            let g = grads.get(v.as_tensor()).expect("gradient");
            v.set(&(v.as_tensor() - (g * 0.5)?)?)?;
        }
    }
    let (m, s) = (
        m.as_tensor().to_vec1::<f64>()?[0],
        log_s.as_tensor().exp()?.to_vec1::<f64>()?[0],
    );
    let log_z = log_z.as_tensor().to_scalar::<f64>()?;
    let want_z = (s * (2.0 * std::f64::consts::PI).sqrt()).ln();
    assert!((m - 1.5).abs() < 0.05, "mean {m}");
    assert!((s - 0.7).abs() < 0.05, "std {s}");
    assert!((log_z - want_z).abs() < 0.05, "log Z {log_z} vs {want_z}");
    Ok(())
}
