//! The GRBM baselines against the exact likelihood of a small model: the CD surrogate with
//! samples from the model has the gradient of the negative log-likelihood (with `grad log Z`
//! from central differences of the exact `log Z`), and the NCE loss is stationary in `log Z`
//! at the true normaliser when data come from the model.

mod common;

use anyhow::Result;
use candle_core::{DType, Device, Tensor, Var};
use common::grbm;
use latent::baselines::{cd_loss, cd_surrogate, nce_loss, pcd_loss};
use layers::sorted_vars;
use sm_objectives::NoiseSource;

#[test]
fn cd_with_model_samples_has_the_likelihood_gradient() -> Result<()> {
    let (vm, m) = grbm(2, 3)?;
    let data = Tensor::new(&[[0.3f64, -1.2], [1.5, 0.1], [-0.7, 0.9]], &Device::Cpu)?;
    // Samples from the model: long Gibbs chains.
    let mut noise = NoiseSource::new(9);
    let start = noise.gaussian((20000, 2), DType::F64, &Device::Cpu)?;
    let samples = m.gibbs(&start, 60, false, &mut noise)?;
    let grads = cd_surrogate(&m, &data, &samples)?.backward()?;
    // Exact: d/dtheta [mean F(data) + log Z]; grad log Z by central differences.
    let exact_f = m.free_energy(&data)?.mean_all()?.backward()?;
    let h = 1e-5;
    let mut worst = 0f64;
    let mut scale = 0f64;
    for (name, var) in sorted_vars(&vm) {
        let base = var.as_tensor().flatten_all()?.to_vec1::<f64>()?;
        let cd = grads
            .get(var.as_tensor())
            .unwrap()
            .flatten_all()?
            .to_vec1::<f64>()?;
        let df = exact_f
            .get(var.as_tensor())
            .unwrap()
            .flatten_all()?
            .to_vec1::<f64>()?;
        for i in 0..base.len() {
            let at = |delta: f64| -> Result<f64> {
                let mut p = base.clone();
                p[i] += delta;
                var.set(&Tensor::from_vec(p, var.shape(), &Device::Cpu)?)?;
                Ok(m.log_partition_exact()?)
            };
            let dlogz = (at(h)? - at(-h)?) / (2.0 * h);
            var.set(&Tensor::from_vec(base.clone(), var.shape(), &Device::Cpu)?)?;
            let exact = df[i] + dlogz;
            worst = worst.max((cd[i] - exact).abs());
            scale = scale.max(exact.abs());
            assert!(
                (cd[i] - exact).abs() < 0.05 + 0.05 * exact.abs(),
                "{name}[{i}]: CD {} vs exact {exact}",
                cd[i]
            );
        }
    }
    assert!(scale > 0.1, "vacuous check (gradient scale {scale})");
    eprintln!("CD vs exact NLL gradient: worst error {worst}, scale {scale}");
    // CD-k and PCD run and keep their chains' shape; k = 0 is refused.
    let mut chains = samples.narrow(0, 0, 50)?;
    pcd_loss(&m, &data, &mut chains, 2, &mut noise)?;
    assert_eq!(chains.dims(), [50, 2]);
    cd_loss(&m, &data, 1, &mut noise)?;
    assert!(cd_loss(&m, &data, 0, &mut noise).is_err());
    Ok(())
}

#[test]
fn nce_is_stationary_at_the_true_normaliser() -> Result<()> {
    let (_, m) = grbm(2, 3)?;
    let log_z_true = m.log_partition_exact()?;
    let mut noise = NoiseSource::new(4);
    let start = noise.gaussian((40000, 2), DType::F64, &Device::Cpu)?;
    let data = m.gibbs(&start, 60, false, &mut noise)?;
    // Noise: N(0, 2^2 I).
    let s = 2.0;
    let noise_v = (noise.gaussian((40000, 2), DType::F64, &Device::Cpu)? * s)?;
    let log_n = |v: &Tensor| -> Result<Tensor> {
        let c = -(2.0 * std::f64::consts::PI * s * s).ln();
        Ok(((v.sqr()?.sum(1)? * (-0.5 / (s * s)))? + c)?)
    };
    let (ln_data, ln_noise) = (log_n(&data)?, log_n(&noise_v)?);
    let slope = |log_z: f64| -> Result<f64> {
        let z = Var::new(log_z, &Device::Cpu)?;
        let loss = nce_loss(&m, z.as_tensor(), &data, &ln_data, &noise_v, &ln_noise)?;
        Ok(loss
            .backward()?
            .get(z.as_tensor())
            .unwrap()
            .to_scalar::<f64>()?)
    };
    let at_truth = slope(log_z_true)?;
    // The slope changes sign around the true log Z, and is small there.
    assert!(slope(log_z_true - 0.5)? < -0.05, "below the truth");
    assert!(slope(log_z_true + 0.5)? > 0.05, "above the truth");
    assert!(at_truth.abs() < 0.02, "slope at the truth {at_truth}");
    Ok(())
}
