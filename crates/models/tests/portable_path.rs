//! Whole models on the path a GPU takes (`layers::portable`: Candle's own ops instead of the
//! CPU kernels), run on the CPU: the log-density, its input gradient (the score), a
//! Hessian-vector product in the input and the parameter gradient of a score-matching-like loss
//! `sum(|score|^2)` equal those of the CPU kernels, for the ResNet EBM with both activations,
//! the dense energy network and NICE.

use anyhow::Result;
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use layers::portable::with_portable_ops;
use models::{
    Activation, Mlp, MlpActivation, MlpConfig, Nice, NiceConfig, ResNetEbm, ResNetEbmConfig,
};
use sm_objectives::autodiff::enable_higher_order;
use sm_objectives::{LogDensity, NoiseSource};

/// Log-density, score, `H v` and the parameter gradients of `sum(|score|^2)`, flattened.
fn derivatives(model: &dyn LogDensity, vm: &VarMap, x: &Tensor, v: &Tensor) -> Result<Vec<Tensor>> {
    let xv = Var::from_tensor(x)?;
    let logp = model.log_density(xv.as_tensor())?;
    let score = logp
        .sum_all()?
        .backward()?
        .remove(xv.as_tensor())
        .expect("a score");
    let mut out = vec![logp.detach(), score.detach()];
    let hv = (&score * v)?.sum_all()?.backward()?;
    out.push(hv.get(xv.as_tensor()).expect("H v").detach());
    let grads = score.sqr()?.sum_all()?.backward()?;
    let mut names: Vec<(String, Var)> = vm.data().lock().unwrap().clone().into_iter().collect();
    names.sort_by(|a, b| a.0.cmp(&b.0));
    // Parameters the score does not depend on (the last layer's bias) get none: zeros.
    for (_, var) in names {
        out.push(match grads.get(var.as_tensor()) {
            Some(g) => g.detach(),
            None => var.as_tensor().zeros_like()?,
        });
    }
    Ok(out)
}

fn seeded(vm: &VarMap, seed: u64) -> Result<()> {
    let mut noise = NoiseSource::new(seed);
    let mut vars: Vec<(String, Var)> = vm.data().lock().unwrap().clone().into_iter().collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    for (_, var) in vars {
        let t = var.as_tensor();
        let fan_in = (t.elem_count() / t.dims()[0]).max(1);
        var.set(&(noise.gaussian_like(t)? * (1.0 / (fan_in as f64).sqrt()))?)?;
    }
    Ok(())
}

fn same_on_both_paths(name: &str, model: &dyn LogDensity, vm: &VarMap, x: &Tensor) -> Result<()> {
    enable_higher_order().expect("Candle's higher-order mode");
    let v = NoiseSource::new(5).gaussian_like(x)?;
    let fast = derivatives(model, vm, x, &v)?;
    let portable = with_portable_ops(|| derivatives(model, vm, x, &v))?;
    assert_eq!(fast.len(), portable.len());
    let tol = if x.dtype() == DType::F64 { 1e-9 } else { 1e-3 };
    for (i, (a, b)) in fast.iter().zip(&portable).enumerate() {
        let scale = b
            .abs()?
            .max_all()?
            .to_dtype(DType::F64)?
            .to_scalar::<f64>()?;
        let err = (a.to_dtype(DType::F64)? - b.to_dtype(DType::F64)?)?
            .abs()?
            .max_all()?
            .to_scalar::<f64>()?;
        assert!(
            err <= tol * (1.0 + scale),
            "{name}: output {i} differs by {err} between the CPU kernels and the portable path (scale {scale})"
        );
    }
    Ok(())
}

#[test]
fn resnet_ebm_is_the_same_on_both_paths() -> Result<()> {
    for activation in [Activation::Elu, Activation::ShiftedSoftplus] {
        for dtype in [DType::F64, DType::F32] {
            let cfg = ResNetEbmConfig {
                in_channels: 1,
                image_size: 8,
                width: 3,
                blocks_per_stage: [1, 2, 1],
                activation,
                conv_algorithm: Default::default(),
            };
            let vm = VarMap::new();
            let net = ResNetEbm::new(&cfg, VarBuilder::from_varmap(&vm, dtype, &Device::Cpu))?;
            seeded(&vm, 3)?;
            let x = NoiseSource::new(4).uniform_like(&Tensor::zeros(
                (2, 1, 8, 8),
                dtype,
                &Device::Cpu,
            )?)?;
            same_on_both_paths(
                &format!("ResNet EBM {activation:?} {dtype:?}"),
                &net,
                &vm,
                &x,
            )?;
        }
    }
    Ok(())
}

#[test]
fn dense_models_are_the_same_on_both_paths() -> Result<()> {
    for activation in [
        MlpActivation::Softplus,
        MlpActivation::Elu,
        MlpActivation::Tanh,
    ] {
        let cfg = MlpConfig {
            sizes: vec![6, 16, 16, 1],
            activation,
        };
        let vm = VarMap::new();
        let net = Mlp::new(&cfg, VarBuilder::from_varmap(&vm, DType::F64, &Device::Cpu))?;
        seeded(&vm, 8)?;
        let x =
            NoiseSource::new(9).gaussian_like(&Tensor::zeros((5, 6), DType::F64, &Device::Cpu)?)?;
        same_on_both_paths(&format!("MLP {activation:?}"), &net, &vm, &x)?;
    }
    let cfg = NiceConfig {
        dim: 6,
        hidden: 12,
        hidden_layers: 2,
        couplings: 4,
    };
    let vm = VarMap::new();
    let nice = Nice::new(&cfg, VarBuilder::from_varmap(&vm, DType::F64, &Device::Cpu))?;
    seeded(&vm, 10)?;
    let x =
        NoiseSource::new(11).gaussian_like(&Tensor::zeros((5, 6), DType::F64, &Device::Cpu)?)?;
    same_on_both_paths("NICE", &nice, &vm, &x)
}
