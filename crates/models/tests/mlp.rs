//! The dense energy network against an independent plain-loop evaluation in f64, its parameter
//! count against the built variables, and its second derivatives against central differences
//! of its own gradient (the ops are correct at second order); bad shapes are named.

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use models::{Mlp, MlpActivation, MlpConfig};
use sm_objectives::autodiff::{enable_higher_order, input_gradient};

fn softplus(z: f64) -> f64 {
    z.max(0.0) + (-z.abs()).exp().ln_1p()
}

fn elu(z: f64) -> f64 {
    if z > 0.0 {
        z
    } else {
        z.exp_m1()
    }
}

fn build(cfg: &MlpConfig) -> (VarMap, Mlp) {
    let vm = VarMap::new();
    let net = Mlp::new(cfg, VarBuilder::from_varmap(&vm, DType::F64, &Device::Cpu)).unwrap();
    (vm, net)
}

/// `E(x)` by loops over the stored weights.
fn by_hand(vm: &VarMap, cfg: &MlpConfig, x: &[f64]) -> f64 {
    let data = vm.data().lock().unwrap();
    let mut h = x.to_vec();
    let last = cfg.sizes.len() - 2;
    for i in 0..=last {
        let w = data[&format!("layers.{i}.weight")]
            .as_tensor()
            .to_vec2::<f64>()
            .unwrap();
        let b = data[&format!("layers.{i}.bias")]
            .as_tensor()
            .to_vec1::<f64>()
            .unwrap();
        h = w
            .iter()
            .zip(&b)
            .map(|(row, bias)| {
                let z = row.iter().zip(&h).map(|(a, v)| a * v).sum::<f64>() + bias;
                match (i < last, cfg.activation) {
                    (false, _) => z,
                    (true, MlpActivation::Softplus) => softplus(z),
                    (true, MlpActivation::Elu) => elu(z),
                    (true, MlpActivation::Tanh) => z.tanh(),
                }
            })
            .collect();
    }
    h[0]
}

#[test]
fn energy_matches_a_plain_loop_evaluation() {
    for activation in [
        MlpActivation::Softplus,
        MlpActivation::Elu,
        MlpActivation::Tanh,
    ] {
        let cfg = MlpConfig {
            sizes: vec![5, 7, 4, 1],
            activation,
        };
        let (vm, net) = build(&cfg);
        let count: usize = vm.all_vars().iter().map(|v| v.elem_count()).sum();
        assert_eq!(cfg.parameter_count(), count as u64);
        let xs: Vec<f64> = (0..15).map(|i| (i as f64 * 0.37).sin() * 2.0).collect();
        let x = Tensor::from_vec(xs.clone(), (3, 5), &Device::Cpu).unwrap();
        let e = net.energy(&x).unwrap().to_vec1::<f64>().unwrap();
        for (k, got) in e.iter().enumerate() {
            let want = by_hand(&vm, &cfg, &xs[5 * k..5 * k + 5]);
            assert!(
                (got - want).abs() < 1e-12,
                "{activation:?} sample {k}: {got} vs {want}"
            );
        }
    }
    assert_eq!(
        MlpConfig::peer().parameter_count(),
        785 * 512 + 513 * 512 + 513
    );
}

/// The Hessian-vector product from nested autodiff equals central differences of the gradient.
#[test]
fn second_derivatives_match_central_differences() {
    enable_higher_order().expect("Candle's higher-order mode");
    let cfg = MlpConfig {
        sizes: vec![4, 6, 1],
        activation: MlpActivation::Softplus,
    };
    let (_, net) = build(&cfg);
    let x0 = vec![0.3, -0.7, 1.1, 0.2];
    let v = [0.5, -0.25, 0.75, 1.0];
    let grad_at = |x: &[f64]| -> Vec<f64> {
        let t = Tensor::from_vec(x.to_vec(), (1, 4), &Device::Cpu).unwrap();
        input_gradient(&net, &t)
            .unwrap()
            .score
            .flatten_all()
            .unwrap()
            .to_vec1::<f64>()
            .unwrap()
    };
    let t = Tensor::from_vec(x0.clone(), (1, 4), &Device::Cpu).unwrap();
    let g = input_gradient(&net, &t).unwrap();
    let vt = Tensor::new(&v, &Device::Cpu)
        .unwrap()
        .reshape((1, 4))
        .unwrap();
    let gv = (&g.score * &vt).unwrap().sum_all().unwrap();
    let hv = gv.backward().unwrap().remove(g.x.as_tensor()).unwrap();
    let hv = hv.flatten_all().unwrap().to_vec1::<f64>().unwrap();
    let h = 1e-5;
    let shifted = |s: f64| -> Vec<f64> {
        grad_at(
            &x0.iter()
                .zip(&v)
                .map(|(a, b)| a + s * b)
                .collect::<Vec<_>>(),
        )
    };
    let (plus, minus) = (shifted(h), shifted(-h));
    for i in 0..4 {
        let fd = (plus[i] - minus[i]) / (2.0 * h);
        assert!(
            (hv[i] - fd).abs() < 1e-7,
            "component {i}: {} vs {fd}",
            hv[i]
        );
    }
}

#[test]
fn bad_shapes_are_named() {
    let vm = VarMap::new();
    let vb = VarBuilder::from_varmap(&vm, DType::F64, &Device::Cpu);
    let two_outputs = MlpConfig {
        sizes: vec![3, 2],
        activation: MlpActivation::Elu,
    };
    let err = Mlp::new(&two_outputs, vb.clone()).unwrap_err().to_string();
    assert!(err.contains("one output"), "{err}");
    let (_, net) = build(&MlpConfig {
        sizes: vec![3, 1],
        activation: MlpActivation::Elu,
    });
    let x = Tensor::zeros((2, 4), DType::F64, &Device::Cpu).unwrap();
    let err = net.energy(&x).unwrap_err().to_string();
    assert!(err.contains("takes 3 values per sample"), "{err}");
}

/// The input-gradient passes of the objectives skip the fused layers' weight gradients
/// (`layers::grad_mode::input_gradients_only`); the score and the parameter gradient of a loss
/// built from it are the same as with a plain backward pass that computes them all.
#[test]
fn skipping_weight_gradients_in_input_gradient_passes_changes_nothing() {
    use candle_core::Var;
    use layers::grad_mode::{input_gradients_only, parameter_gradients_skipped};
    use sm_objectives::LogDensity;
    enable_higher_order().expect("higher-order mode");
    for activation in [
        MlpActivation::Softplus,
        MlpActivation::Elu,
        MlpActivation::Tanh,
    ] {
        let cfg = MlpConfig {
            sizes: vec![5, 12, 12, 1],
            activation,
        };
        let (vm, net) = build(&cfg);
        let x = Tensor::from_vec(
            (0..20)
                .map(|i| ((i as f64) * 0.37).sin())
                .collect::<Vec<_>>(),
            (4, 5),
            &Device::Cpu,
        )
        .unwrap();
        // The objectives' path: the weight gradients are skipped inside the pass.
        let fast = input_gradient(&net, &x).unwrap().score;
        // A plain pass: every gradient computed.
        let xv = Var::from_tensor(&x).unwrap();
        let lp = net.log_density(xv.as_tensor()).unwrap();
        let all = lp.sum_all().unwrap().backward().unwrap();
        let weight = vm.data().lock().unwrap()["layers.0.weight"].clone();
        assert!(all.get(weight.as_tensor()).is_some());
        let plain = all.get(xv.as_tensor()).unwrap().clone();
        let skipped = input_gradients_only(|| {
            assert!(parameter_gradients_skipped());
            lp.sum_all().unwrap().backward().unwrap()
        });
        assert!(!parameter_gradients_skipped(), "the flag is restored");
        assert!(
            skipped.get(weight.as_tensor()).is_none(),
            "{activation:?}: weight gradient computed inside the input-only pass"
        );
        // Same score, and the same parameter gradient of |score|^2 through either graph.
        let diff = |a: &Tensor, b: &Tensor| {
            (a - b)
                .unwrap()
                .abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar::<f64>()
                .unwrap()
        };
        assert_eq!(diff(&fast, &plain), 0.0, "{activation:?}");
        let g_fast = fast.sqr().unwrap().sum_all().unwrap().backward().unwrap();
        let g_plain = plain.sqr().unwrap().sum_all().unwrap().backward().unwrap();
        let mut compared = 0;
        for (name, var) in vm.data().lock().unwrap().iter() {
            match (g_fast.get(var.as_tensor()), g_plain.get(var.as_tensor())) {
                (Some(a), Some(b)) => {
                    assert!(diff(a, b) < 1e-12, "{activation:?} {name}");
                    compared += 1;
                }
                // The score does not depend on the output bias.
                (None, None) => assert_eq!(name, "layers.2.bias"),
                _ => panic!("{activation:?} {name}: a gradient on one path only"),
            }
        }
        assert_eq!(compared, 5);
    }
    // A panic inside the scope does not leave the flag set.
    let _ = std::panic::catch_unwind(|| input_gradients_only(|| panic!("inside")));
    assert!(!parameter_gradients_skipped());
}
