//! The deep EBLVM of BiSM Sec. 5.2 and its convolutional Gaussian posterior: the joint energy's
//! gradients in `v`, `h` and the parameters against central differences, the parameter
//! gradient of the squared input gradient (what score matching differentiates) against central
//! differences, the energy against an independent evaluation of its formula, and the posterior
//! against Candle's own convolutions and the Gaussian density in closed form.

mod common;

use anyhow::Result;
use candle_core::{DType, Device, Module, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use common::max_abs_diff;
use models::{
    ConvGaussianPosterior, ConvGaussianPosteriorConfig, DeepEblvm, DeepEblvmConfig,
    ResNetEbmConfig, ResNetFeatures,
};
use sm_objectives::autodiff::enable_higher_order;
use sm_objectives::{JointLogDensity, NoiseSource};

/// Width 2, 8 x 8 images (one 1 x 1 feature map after three downsamplings), `h` of size 3.
fn tiny() -> DeepEblvmConfig {
    DeepEblvmConfig {
        features: ResNetEbmConfig {
            image_size: 8,
            ..ResNetEbmConfig::res12(2)
        },
        latent: 3,
        head_units: 6,
    }
}

fn build(cfg: &DeepEblvmConfig, seed: u64) -> Result<(VarMap, DeepEblvm)> {
    let vm = VarMap::new();
    let net = DeepEblvm::new(cfg, VarBuilder::from_varmap(&vm, DType::F64, &Device::Cpu))?;
    // Seeded weights (Candle's initialisers cannot be seeded), large enough to be nonlinear.
    let mut noise = NoiseSource::new(seed);
    for (_, var) in layers::sorted_vars(&vm) {
        let t = (noise.gaussian_like(var.as_tensor())? * 0.4)?;
        var.set(&t)?;
    }
    Ok((vm, net))
}

fn scalar(t: &Tensor) -> f64 {
    t.to_dtype(DType::F64)
        .unwrap()
        .sum_all()
        .unwrap()
        .to_scalar::<f64>()
        .unwrap()
}

/// Central differences of `f` in every entry of `x` (f64), as a tensor shaped like `x`.
fn central_differences(x: &Tensor, f: impl Fn(&Tensor) -> f64, eps: f64) -> Result<Tensor> {
    let base: Vec<f64> = x.flatten_all()?.to_vec1()?;
    let mut out = Vec::with_capacity(base.len());
    for i in 0..base.len() {
        let mut plus = base.clone();
        let mut minus = base.clone();
        plus[i] += eps;
        minus[i] -= eps;
        let p = f(&Tensor::from_vec(plus, x.shape(), x.device())?);
        let m = f(&Tensor::from_vec(minus, x.shape(), x.device())?);
        out.push((p - m) / (2.0 * eps));
    }
    Ok(Tensor::from_vec(out, x.shape(), x.device())?)
}

#[test]
fn the_energy_is_its_formula() -> Result<()> {
    enable_higher_order();
    let cfg = tiny();
    let (vm, net) = build(&cfg, 1)?;
    let mut noise = NoiseSource::new(2);
    let v = noise.gaussian((4, 1, 8, 8), DType::F64, &Device::Cpu)?;
    let h = noise.gaussian((4, 3), DType::F64, &Device::Cpu)?;
    // An independent evaluation from the weights: the trunk (tested in resnet_ebm.rs) on the
    // same `features.*` weights, then the linear map, coupling and squared ELU by hand.
    let data = vm.data().lock().unwrap().clone();
    let get = |n: &str| data.get(n).unwrap().as_tensor().clone();
    let trunk = ResNetFeatures::new(
        &cfg.features,
        VarBuilder::from_varmap(&vm, DType::F64, &Device::Cpu).pp("features"),
    )?;
    let f = trunk.forward(&v)?;
    let g = f
        .matmul(&get("to_latent.weight").t()?)?
        .broadcast_add(&get("to_latent.bias"))?;
    let u = Tensor::cat(&[(&g + &h)?, h.clone()], 1)?;
    let z = u
        .matmul(&get("head.weight").t()?)?
        .broadcast_add(&get("head.bias"))?;
    let elu = z.elu(1.0)?;
    let expected = elu.sqr()?.sum(1)?;
    let got = net.energy(&v, &h)?;
    assert!(max_abs_diff(&got, &expected) < 1e-12);
    assert!(max_abs_diff(&net.joint_log_density(&v, &h)?, &expected.neg()?) < 1e-12);
    assert!(
        max_abs_diff(
            &net.energy_from_features(&net.visible_features(&v)?, &h)?,
            &expected
        ) < 1e-12
    );
    // The reference's head width for MNIST: (32 / 8)^2 4n.
    assert_eq!(DeepEblvmConfig::mnist(64, 50).head_units, 4096);
    for name in [
        "features.stem.weight",
        "features.stage3.block1.conv2.bias",
        "to_latent.weight",
        "head.bias",
    ] {
        assert!(data.contains_key(name), "{name} missing");
    }
    Ok(())
}

#[test]
fn energy_gradients_match_central_differences() -> Result<()> {
    enable_higher_order();
    let cfg = tiny();
    let (vm, net) = build(&cfg, 3)?;
    let mut noise = NoiseSource::new(4);
    let v = noise.gaussian((2, 1, 8, 8), DType::F64, &Device::Cpu)?;
    let h = noise.gaussian((2, 3), DType::F64, &Device::Cpu)?;
    let eps = 1e-5;
    // In v and h.
    let vv = Var::from_tensor(&v)?;
    let hv = Var::from_tensor(&h)?;
    let grads = net
        .energy(vv.as_tensor(), hv.as_tensor())?
        .sum_all()?
        .backward()?;
    let gv = grads.get(vv.as_tensor()).unwrap();
    let gh = grads.get(hv.as_tensor()).unwrap();
    let cd_v = central_differences(&v, |x| scalar(&net.energy(x, &h).unwrap()), eps)?;
    let cd_h = central_differences(&h, |x| scalar(&net.energy(&v, x).unwrap()), eps)?;
    let scale_v = scalar(&cd_v.abs()?) / cd_v.elem_count() as f64;
    assert!(scale_v > 1e-3, "the v-gradient is not trivially zero");
    // Relative to the gradients' size (the energy is in the hundreds at these weights).
    let close = |a: &Tensor, b: &Tensor, what: &str| {
        let scale = scalar(&b.abs().unwrap()) / b.elem_count() as f64;
        let err = max_abs_diff(a, b);
        assert!(
            err < 1e-7 * scale.max(1.0),
            "{what}: {err} at scale {scale}"
        );
    };
    close(gv, &cd_v, "grad_v");
    close(gh, &cd_h, "grad_h");
    // In the parameters of the head and the linear map, and one convolution of the trunk.
    for name in [
        "head.weight",
        "to_latent.weight",
        "features.stage2.block0.conv1.weight",
    ] {
        let var = vm.data().lock().unwrap().get(name).unwrap().clone();
        let grads = net.energy(&v, &h)?.sum_all()?.backward()?;
        let analytic = grads.get(var.as_tensor()).unwrap().clone();
        let original = var.as_tensor().copy()?;
        let cd = central_differences(
            &original,
            |w| {
                var.set(w).unwrap();
                let e = scalar(&net.energy(&v, &h).unwrap());
                var.set(&original).unwrap();
                e
            },
            eps,
        )?;
        close(&analytic, &cd, name);
    }
    Ok(())
}

/// Score matching differentiates `grad_v E` in the parameters: the gradient of
/// `|grad_v E|^2` in a weight against central differences of that quantity.
#[test]
fn second_order_parameter_gradients_match_central_differences() -> Result<()> {
    enable_higher_order();
    let cfg = tiny();
    let (vm, net) = build(&cfg, 5)?;
    let mut noise = NoiseSource::new(6);
    let v = noise.gaussian((2, 1, 8, 8), DType::F64, &Device::Cpu)?;
    let h = noise.gaussian((2, 3), DType::F64, &Device::Cpu)?;
    let grad_sq = |create: bool| -> Result<Tensor> {
        let x = Var::from_tensor(&v)?;
        let g = net
            .energy(x.as_tensor(), &h)?
            .sum_all()?
            .backward()?
            .remove(x.as_tensor())
            .unwrap();
        let g = if create { g } else { g.detach() };
        Ok(g.sqr()?.sum_all()?)
    };
    for name in ["head.weight", "features.stem.weight"] {
        let var = vm.data().lock().unwrap().get(name).unwrap().clone();
        let analytic = grad_sq(true)?
            .backward()?
            .get(var.as_tensor())
            .unwrap()
            .clone();
        let original = var.as_tensor().copy()?;
        let cd = central_differences(
            &original,
            |w| {
                var.set(w).unwrap();
                let s = scalar(&grad_sq(false).unwrap());
                var.set(&original).unwrap();
                s
            },
            1e-6,
        )?;
        let scale = scalar(&cd.abs()?) / cd.elem_count() as f64;
        assert!(scale > 1e-4, "{name}: the gradient is not trivially zero");
        assert!(
            max_abs_diff(&analytic, &cd) < 1e-4 * scale.max(1.0),
            "{name}: {}",
            max_abs_diff(&analytic, &cd)
        );
    }
    Ok(())
}

#[test]
fn bad_shapes_are_named() -> Result<()> {
    enable_higher_order();
    let (_, net) = build(&tiny(), 7)?;
    let v = Tensor::zeros((2, 1, 8, 8), DType::F64, &Device::Cpu)?;
    let e = net
        .energy(&v, &Tensor::zeros((2, 4), DType::F64, &Device::Cpu)?)
        .unwrap_err();
    assert!(e.to_string().contains("[B, 3]"), "{e}");
    let e = net
        .energy(&Tensor::zeros((2, 1, 9, 9), DType::F64, &Device::Cpu)?, &v)
        .unwrap_err();
    assert!(
        e.to_string().contains("[B, 3]") || e.to_string().contains("8"),
        "{e}"
    );
    let bad = DeepEblvmConfig {
        latent: 0,
        ..tiny()
    };
    assert!(DeepEblvm::new(
        &bad,
        VarBuilder::from_varmap(&VarMap::new(), DType::F64, &Device::Cpu)
    )
    .is_err());
    Ok(())
}

fn tiny_posterior() -> ConvGaussianPosteriorConfig {
    ConvGaussianPosteriorConfig {
        in_channels: 1,
        image_size: 16,
        channels: [3, 4, 5],
        latent: 3,
    }
}

fn posterior(seed: u64) -> Result<(VarMap, ConvGaussianPosterior)> {
    let vm = VarMap::new();
    let q = ConvGaussianPosterior::new(
        &tiny_posterior(),
        VarBuilder::from_varmap(&vm, DType::F64, &Device::Cpu),
    )?;
    let mut noise = NoiseSource::new(seed);
    let params: Vec<Tensor> = q
        .parameters()
        .iter()
        .map(|p| noise.gaussian_like(p).and_then(|t| t * 0.3))
        .collect::<candle_core::Result<_>>()?;
    let q = ConvGaussianPosterior::from_tensors(&tiny_posterior(), params)?;
    Ok((vm, q))
}

#[test]
fn the_posterior_matches_candle_convolutions_and_the_gaussian_density() -> Result<()> {
    enable_higher_order();
    let (vm, q) = posterior(8)?;
    let names: Vec<String> = vm.data().lock().unwrap().keys().cloned().collect();
    for n in ConvGaussianPosterior::parameter_names() {
        assert!(names.iter().any(|k| k == n), "{n} missing");
    }
    let mut noise = NoiseSource::new(9);
    let v = noise.gaussian((3, 1, 16, 16), DType::F64, &Device::Cpu)?;
    // Independent forward pass with Candle's convolution (stride 2, padding 1).
    let p = q.parameters();
    let mut x = v.clone();
    for i in 0..3 {
        let y = x
            .conv2d(&p[2 * i], 1, 2, 1, 1)?
            .broadcast_add(&p[2 * i + 1].reshape((1, (), 1, 1))?)?;
        x = y.maximum(&(&y * 0.2)?)?;
    }
    let flat = x.flatten_from(1)?;
    assert_eq!(flat.dim(1)?, tiny_posterior().flat_size());
    let mean = candle_nn::Linear::new(p[6].clone(), Some(p[7].clone())).forward(&flat)?;
    let log_std = candle_nn::Linear::new(p[8].clone(), Some(p[9].clone())).forward(&flat)?;
    let (m, s) = q.moments(&v)?;
    assert!(max_abs_diff(&m, &mean) < 1e-12 && max_abs_diff(&s, &log_std) < 1e-12);
    // log q in closed form, and its h-gradient against central differences.
    let h = noise.gaussian((3, 3), DType::F64, &Device::Cpu)?;
    let (mu, ls): (Vec<Vec<f64>>, Vec<Vec<f64>>) = (m.to_vec2()?, s.to_vec2()?);
    let hv: Vec<Vec<f64>> = h.to_vec2()?;
    let expected: Vec<f64> = (0..3)
        .map(|b| {
            (0..3)
                .map(|j| {
                    let z = (hv[b][j] - mu[b][j]) / ls[b][j].exp();
                    -0.5 * z * z - ls[b][j] - 0.5 * (2.0 * std::f64::consts::PI).ln()
                })
                .sum()
        })
        .collect();
    let got: Vec<f64> = q.log_prob(&v, &h)?.to_vec1()?;
    for (a, b) in got.iter().zip(&expected) {
        assert!((a - b).abs() < 1e-10, "{a} vs {b}");
    }
    let cd = central_differences(&h, |x| scalar(&q.log_prob(&v, x).unwrap()), 1e-6)?;
    assert!(max_abs_diff(&q.grad_h_log_prob(&v, &h)?, &cd) < 1e-6);
    // Reparameterised draws have the moments' mean and spread.
    let many = v.narrow(0, 0, 1)?.repeat((4000, 1, 1, 1))?;
    let draws = q.sample(&many, &mut noise)?;
    let sample_mean: Vec<f64> = draws.mean(0)?.to_vec1()?;
    let sample_sd: Vec<f64> = draws
        .broadcast_sub(&draws.mean_keepdim(0)?)?
        .sqr()?
        .mean(0)?
        .sqrt()?
        .to_vec1()?;
    for j in 0..3 {
        let sd = ls[0][j].exp();
        assert!((sample_mean[j] - mu[0][j]).abs() < 5.0 * sd / 4000f64.sqrt());
        assert!((sample_sd[j] / sd - 1.0).abs() < 0.06);
    }
    Ok(())
}

#[test]
fn the_posterior_rebuilds_from_its_parameters_and_names_bad_ones() -> Result<()> {
    enable_higher_order();
    let (_, q) = posterior(10)?;
    let again = ConvGaussianPosterior::from_tensors(q.config(), q.parameters().to_vec())?;
    let v = NoiseSource::new(11).gaussian((2, 1, 16, 16), DType::F64, &Device::Cpu)?;
    assert!(max_abs_diff(&q.moments(&v)?.0, &again.moments(&v)?.0) < 1e-15);
    let mut wrong = q.parameters().to_vec();
    wrong[6] = wrong[6].narrow(1, 0, 2)?;
    let e = ConvGaussianPosterior::from_tensors(q.config(), wrong).unwrap_err();
    assert!(e.to_string().contains("mean.weight"), "{e}");
    let e = q
        .moments(&Tensor::zeros((2, 1, 12, 12), DType::F64, &Device::Cpu)?)
        .unwrap_err();
    assert!(e.to_string().contains("[B, 1, 16, 16]"), "{e}");
    let bad = ConvGaussianPosteriorConfig {
        image_size: 12,
        ..tiny_posterior()
    };
    assert!(bad.validate().is_err());
    Ok(())
}
