//! The linear probe (multinomial logistic regression): its objective's gradient against
//! central differences; on data drawn from a known softmax model it converges (gradient norm
//! near zero) and classifies as well as the true model does; bad input is named.

use anyhow::Result;
use candle_core::{DType, Device, Tensor, Var};
use sm_objectives::NoiseSource;
use train::linear_probe::{softmax_regression_objective, LinearProbe, LinearProbeSettings};

fn one_hot(labels: &[u32], k: usize) -> Result<Tensor> {
    let mut d = vec![0f64; labels.len() * k];
    for (i, &l) in labels.iter().enumerate() {
        d[i * k + l as usize] = 1.0;
    }
    Ok(Tensor::from_vec(d, (labels.len(), k), &Device::Cpu)?)
}

#[test]
fn the_objective_gradient_matches_central_differences() -> Result<()> {
    let mut noise = NoiseSource::new(1);
    let x = noise.gaussian((20, 4), DType::F64, &Device::Cpu)?;
    let labels: Vec<u32> = (0..20).map(|i| (i * 7 % 3) as u32).collect();
    let y = one_hot(&labels, 3)?;
    let w = Var::from_tensor(&noise.gaussian((4, 3), DType::F64, &Device::Cpu)?)?;
    let b = Var::from_tensor(&noise.gaussian(3, DType::F64, &Device::Cpu)?)?;
    let l2 = 0.3;
    let grads =
        softmax_regression_objective(w.as_tensor(), b.as_tensor(), &x, &y, l2)?.backward()?;
    let gw: Vec<f64> = grads.get(w.as_tensor()).unwrap().flatten_all()?.to_vec1()?;
    let base: Vec<f64> = w.as_tensor().flatten_all()?.to_vec1()?;
    let eps = 1e-6;
    for i in 0..base.len() {
        let at = |d: f64| -> Result<f64> {
            let mut p = base.clone();
            p[i] += d;
            let wt = Tensor::from_vec(p, (4, 3), &Device::Cpu)?;
            Ok(softmax_regression_objective(&wt, b.as_tensor(), &x, &y, l2)?.to_scalar::<f64>()?)
        };
        let cd = (at(eps)? - at(-eps)?) / (2.0 * eps);
        assert!((gw[i] - cd).abs() < 1e-8, "weight {i}: {} vs {cd}", gw[i]);
    }
    // The bias gradient: mean of (softmax - one-hot), which sums to zero over classes.
    let gb: Vec<f64> = grads.get(b.as_tensor()).unwrap().to_vec1()?;
    assert!(gb.iter().sum::<f64>().abs() < 1e-12);
    Ok(())
}

#[test]
fn the_probe_classifies_as_well_as_the_true_model() -> Result<()> {
    // Labels drawn from a known softmax model in 5 features with 3 classes; features with
    // different offsets and scales (the probe standardises them).
    let mut noise = NoiseSource::new(2);
    let true_w = (noise.gaussian((5, 3), DType::F64, &Device::Cpu)? * 2.0)?;
    let draw = |noise: &mut NoiseSource, n: usize| -> Result<(Tensor, Vec<u32>, Vec<u32>)> {
        let z = noise.gaussian((n, 5), DType::F64, &Device::Cpu)?;
        let logits: Vec<Vec<f64>> = z.matmul(&true_w)?.to_vec2()?;
        let u: Vec<f64> = noise
            .uniform_like(&Tensor::zeros(n, DType::F64, &Device::Cpu)?)?
            .to_vec1()?;
        let mut sampled = Vec::with_capacity(n);
        let mut bayes = Vec::with_capacity(n);
        for (row, u) in logits.iter().zip(u) {
            let m = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let p: Vec<f64> = row.iter().map(|l| (l - m).exp()).collect();
            let total: f64 = p.iter().sum();
            let mut acc = 0.0;
            let mut label = 2;
            for (k, pk) in p.iter().enumerate() {
                acc += pk / total;
                if u < acc {
                    label = k as u32;
                    break;
                }
            }
            sampled.push(label);
            bayes.push((0..3).max_by(|&a, &b| row[a].total_cmp(&row[b])).unwrap() as u32);
        }
        let offsets = Tensor::new(&[10.0f64, -3.0, 0.0, 100.0, 1.0], &Device::Cpu)?;
        let scales = Tensor::new(&[1.0f64, 0.01, 5.0, 30.0, 1.0], &Device::Cpu)?;
        let x = z.broadcast_mul(&scales)?.broadcast_add(&offsets)?;
        Ok((x, sampled, bayes))
    };
    let (x, y, _) = draw(&mut noise, 4000)?;
    let (xt, yt, bayes) = draw(&mut noise, 4000)?;
    let probe = LinearProbe::fit(
        &x,
        &y,
        3,
        &LinearProbeSettings {
            steps: 1500,
            lr: 0.05,
            l2: 1e-4,
        },
    )?;
    assert!(
        probe.final_gradient_norm < 1e-3,
        "not converged: |grad| = {}",
        probe.final_gradient_norm
    );
    let acc = probe.accuracy(&xt, &yt)?;
    let bayes_acc = bayes.iter().zip(&yt).filter(|(a, b)| a == b).count() as f64 / 4000.0;
    assert!(
        acc > bayes_acc - 0.02,
        "probe {acc} against the true model's {bayes_acc}"
    );
    // Its decisions agree with the true model's almost everywhere.
    let agree = probe
        .predict(&xt)?
        .iter()
        .zip(&bayes)
        .filter(|(a, b)| a == b)
        .count() as f64
        / 4000.0;
    assert!(agree > 0.95, "agreement {agree}");
    Ok(())
}

#[test]
fn bad_input_is_named() -> Result<()> {
    let x = Tensor::zeros((4, 2), DType::F32, &Device::Cpu)?;
    let s = LinearProbeSettings::default();
    let e = LinearProbe::fit(&x, &[0, 1, 2, 5], 3, &s).unwrap_err();
    assert!(e.to_string().contains("label 5"), "{e}");
    let e = LinearProbe::fit(&x, &[0, 1], 3, &s).unwrap_err();
    assert!(e.to_string().contains("2 labels"), "{e}");
    let nan = Tensor::new(&[[0f32, 1.0], [f32::NAN, 0.0]], &Device::Cpu)?;
    let e = LinearProbe::fit(&nan, &[0, 1], 2, &s).unwrap_err();
    assert!(e.to_string().contains("non-finite"), "{e}");
    let e = LinearProbe::fit(&x, &[0, 0, 0, 0], 1, &s).unwrap_err();
    assert!(e.to_string().contains("two classes"), "{e}");
    let probe = LinearProbe::fit(&x, &[0, 1, 0, 1], 2, &s)?;
    let e = probe
        .predict(&Tensor::zeros((3, 5), DType::F32, &Device::Cpu)?)
        .unwrap_err();
    assert!(e.to_string().contains("2 features"), "{e}");
    Ok(())
}
