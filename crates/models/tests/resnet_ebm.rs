//! The deep-EBM ResNet: architecture (parameter count in closed form, weight names), correct
//! second derivatives through every layer (Hessian-vector products against central differences
//! of the input gradient, both activations), and a safetensors round trip.

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use models::{Activation, ResNetEbm, ResNetEbmConfig};
use sm_objectives::autodiff::enable_higher_order;
use sm_objectives::{LogDensity, NoiseSource};

fn build(cfg: &ResNetEbmConfig, dtype: DType) -> (VarMap, ResNetEbm) {
    let vm = VarMap::new();
    let vb = VarBuilder::from_varmap(&vm, dtype, &Device::Cpu);
    let net = ResNetEbm::new(cfg, vb).unwrap();
    (vm, net)
}

/// Parameters in closed form: stem 9n + n; per block conv1 9 cin^2, conv2 9 cin cout + cout,
/// shortcut cin cout + cout; head 3 (F + 1) with F = 8n s^2.
fn expected_params(cfg: &ResNetEbmConfig) -> usize {
    let n = cfg.width;
    let mut total = 9 * n * cfg.in_channels + n;
    let mut cin = n;
    for (s, &count) in cfg.blocks_per_stage.iter().enumerate() {
        let cout = n << (s + 1);
        for _ in 0..count {
            total += 9 * cin * cin + 9 * cin * cout + cout + cin * cout + cout;
            cin = cout;
        }
    }
    let f = cfg.feature_size();
    total + 3 * (cin * f * f + 1)
}

fn count(vm: &VarMap) -> usize {
    vm.all_vars().iter().map(|v| v.elem_count()).sum()
}

#[test]
fn architecture_matches_the_description() {
    let cfg = ResNetEbmConfig::res18(4);
    let (vm, net) = build(&cfg, DType::F32);
    assert_eq!(count(&vm), expected_params(&cfg));
    assert_eq!(cfg.parameter_count(), count(&vm) as u64);
    let peer = ResNetEbmConfig {
        image_size: 28,
        ..ResNetEbmConfig::res18(32)
    };
    assert_eq!(
        peer.parameter_count(),
        3_902_147,
        "the peer benchmark's count"
    );
    let names: Vec<String> = vm.data().lock().unwrap().keys().cloned().collect();
    for name in [
        "stem.weight",
        "stage1.block0.conv1.weight",
        "stage3.block2.shortcut.bias",
        "head.quad.weight",
        "head.a.bias",
    ] {
        assert!(
            names.iter().any(|n| n == name),
            "missing {name} in {names:?}"
        );
    }
    assert!(
        !names.iter().any(|n| n.ends_with("conv1.bias")),
        "conv1 has no bias"
    );
    assert_eq!(
        names.iter().filter(|n| n.ends_with("conv2.weight")).count(),
        9,
        "Res18 has 9 blocks"
    );
    let x = Tensor::rand(0f32, 1f32, (3, 1, 32, 32), &Device::Cpu).unwrap();
    assert_eq!(net.energy(&x).unwrap().dims(), &[3]);
    let msg = net
        .energy(&Tensor::zeros((3, 1, 28, 28), DType::F32, &Device::Cpu).unwrap())
        .unwrap_err()
        .to_string();
    assert!(msg.contains("expects input [B, 1, 32, 32]"), "{msg}");
    assert!(ResNetEbm::new(
        &ResNetEbmConfig::res18(0),
        VarBuilder::from_varmap(&VarMap::new(), DType::F32, &Device::Cpu)
    )
    .is_err());
}

#[test]
fn peer_benchmark_network_has_its_published_size() {
    // The PyTorch peer's network: width 32, depth 18 (3 blocks per stage), 28 x 28 input with
    // floor pooling (28 -> 14 -> 7 -> 3): "3.9M parameters".
    let cfg = ResNetEbmConfig {
        image_size: 28,
        ..ResNetEbmConfig::res18(32)
    };
    let (vm, _) = build(&cfg, DType::F32);
    let n = count(&vm);
    assert_eq!(n, expected_params(&cfg));
    assert!((3_850_000..3_950_000).contains(&n), "{n}");
}

/// An f64 ResNet EBM with seeded weights (Candle's CPU generator cannot be seeded), its
/// variables sorted by name, and the noise source that drew them, for checks that must see the
/// same point on every run.
fn seeded(
    cfg: &ResNetEbmConfig,
    seed: u64,
) -> (VarMap, ResNetEbm, Vec<(String, Var)>, NoiseSource) {
    let (vm, net) = build(cfg, DType::F64);
    let mut noise = NoiseSource::new(seed);
    let mut vars: Vec<_> = vm.data().lock().unwrap().clone().into_iter().collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    for (_, var) in &vars {
        let t = var.as_tensor();
        let fan_in = t.elem_count() / t.dims()[0];
        let w = (noise.gaussian_like(t).unwrap() * (1.0 / (fan_in as f64).sqrt())).unwrap();
        var.set(&w).unwrap();
    }
    (vm, net, vars, noise)
}

/// [`seeded`] at a small size: 8 x 8 inputs, width 2.
fn seeded_small(
    activation: Activation,
    seed: u64,
) -> (VarMap, ResNetEbm, Vec<(String, Var)>, NoiseSource) {
    let cfg = ResNetEbmConfig {
        in_channels: 1,
        image_size: 8,
        width: 2,
        blocks_per_stage: [1, 2, 1],
        activation,
        conv_algorithm: Default::default(),
    };
    seeded(&cfg, seed)
}

#[test]
fn second_derivatives_through_the_network_are_correct() {
    enable_higher_order().expect("Candle's higher-order mode");
    for activation in [Activation::Elu, Activation::ShiftedSoftplus] {
        // With ELU the input gradient has kinks, and a central difference that straddles one
        // is off, so the check must see the same point on every run.
        let (_vm, net, _, mut noise) = seeded_small(activation, 17);
        let shape = Tensor::zeros((2, 1, 8, 8), DType::F64, &Device::Cpu).unwrap();
        let x = noise.uniform_like(&shape).unwrap();
        let v = noise.gaussian_like(&shape).unwrap();
        let grad = |p: &Tensor| -> (Var, Tensor) {
            let var = Var::from_tensor(p).unwrap();
            let g = net
                .log_density(var.as_tensor())
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap()
                .remove(var.as_tensor())
                .unwrap();
            (var, g)
        };
        let (var, g) = grad(&x);
        let hv = (g * &v)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap()
            .remove(var.as_tensor())
            .unwrap();
        let h = 1e-5;
        let plus = grad(&(&x + (&v * h).unwrap()).unwrap()).1;
        let minus = grad(&(&x - (&v * h).unwrap()).unwrap()).1;
        let numeric = ((plus - minus).unwrap() / (2.0 * h)).unwrap();
        let err = (&hv - &numeric)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f64>()
            .unwrap();
        let scale = numeric
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f64>()
            .unwrap();
        assert!(scale > 1e-6, "{activation:?}: vacuous check");
        assert!(
            err < 1e-5 * scale.max(1.0),
            "{activation:?}: Hv error {err}, scale {scale}"
        );
    }
}

#[test]
fn weights_round_trip_through_safetensors() {
    let cfg = ResNetEbmConfig::res12(2);
    let (vm, net) = build(&cfg, DType::F32);
    let path = std::env::temp_dir().join(format!("resnet-ebm-{}.safetensors", std::process::id()));
    vm.save(&path).unwrap();
    let mut vm2 = VarMap::new();
    let net2 = ResNetEbm::new(
        &cfg,
        VarBuilder::from_varmap(&vm2, DType::F32, &Device::Cpu),
    )
    .unwrap();
    vm2.load(&path).unwrap();
    let x = Tensor::rand(0f32, 1f32, (2, 1, 32, 32), &Device::Cpu).unwrap();
    assert_eq!(
        net.energy(&x).unwrap().to_vec1::<f32>().unwrap(),
        net2.energy(&x).unwrap().to_vec1::<f32>().unwrap()
    );
    std::fs::remove_file(path).unwrap();
}

/// The multiply-accumulate count of the peer benchmark's network (28 x 28, width 32, Res18),
/// layer by layer: `H W C_in C_out K^2` per convolution at its output size.
#[test]
fn forward_macs_of_the_peer_network_by_hand() {
    let stem = 28 * 28 * 32 * 9;
    // First block of a stage: conv1 and conv2 at the input size, the shortcut after pooling.
    let stage1_down = 28 * 28 * 32 * 32 * 9 + 28 * 28 * 32 * 64 * 9 + 14 * 14 * 32 * 64;
    let stage1_rest = 2 * (2 * 14 * 14 * 64 * 64 * 9 + 14 * 14 * 64 * 64);
    let stage2_down = 14 * 14 * 64 * 64 * 9 + 14 * 14 * 64 * 128 * 9 + 7 * 7 * 64 * 128;
    let stage2_rest = 2 * (2 * 7 * 7 * 128 * 128 * 9 + 7 * 7 * 128 * 128);
    let stage3_down = 7 * 7 * 128 * 128 * 9 + 7 * 7 * 128 * 256 * 9 + 3 * 3 * 128 * 256;
    let stage3_rest = 2 * (2 * 3 * 3 * 256 * 256 * 9 + 3 * 3 * 256 * 256);
    let head = 3 * 256 * 3 * 3;
    let expected: u64 = stem
        + stage1_down
        + stage1_rest
        + stage2_down
        + stage2_rest
        + stage3_down
        + stage3_rest
        + head;
    let cfg = ResNetEbmConfig {
        image_size: 28,
        ..ResNetEbmConfig::res18(32)
    };
    assert_eq!(cfg.forward_macs_per_image(), expected);
    assert_eq!(expected, 149_785_856);
    // Doubling the width multiplies every convolution but the stem's by four.
    let wide = ResNetEbmConfig {
        width: 64,
        ..cfg.clone()
    };
    let head_wide = 3 * 512 * 9;
    assert_eq!(
        wide.forward_macs_per_image() - 2 * stem - head_wide,
        4 * (expected - stem - head)
    );
}

/// The energy and its parameter gradients equal those of the network written out by hand
/// from the paper's description with plain ops (`conv2d`, `elu`, `avg_pool2d`, `+`, the
/// quadratic head), in f64 with seeded weights, on a configuration whose 3x3 layers take the
/// Winograd paths (16 and 32 channels on 16 x 16 and 8 x 8 maps) and the small-map path: the
/// fused ops the model uses (ELU inside the convolutions, the skip connection summed inside
/// the last convolution of a block, its bias folded into the shortcut's) change only the
/// rounding.
#[test]
fn energy_equals_the_network_written_with_plain_ops() {
    use layers::{avg_pool2d, conv2d, elu, Conv2dConfig};
    let cfg = ResNetEbmConfig {
        in_channels: 1,
        image_size: 16,
        width: 8,
        blocks_per_stage: [2, 2, 1],
        activation: Activation::Elu,
        conv_algorithm: Default::default(),
    };
    let (vm, net, vars, mut noise) = seeded(&cfg, 5);
    let get = |name: &str| vm.data().lock().unwrap()[name].as_tensor().clone();
    let shape = Tensor::zeros((3, 1, 16, 16), DType::F64, &Device::Cpu).unwrap();
    let x = (noise.uniform_like(&shape).unwrap() * 2.0).unwrap();
    let reference = |x: &Tensor| -> candle_core::Result<Tensor> {
        let conv = |x: &Tensor, name: &str, bias: bool, padding: usize| {
            let b = bias.then(|| get(&format!("{name}.bias")));
            let cfg = Conv2dConfig::padded(padding);
            conv2d(x, &get(&format!("{name}.weight")), b.as_ref(), &cfg)
        };
        let mut h = conv(x, "stem", true, 1)?;
        for (s, &count) in cfg.blocks_per_stage.iter().enumerate() {
            for i in 0..count {
                let p = format!("stage{}.block{i}", s + 1);
                let inner = conv(&elu(&h)?, &format!("{p}.conv1"), false, 1)?;
                let inner = conv(&elu(&inner)?, &format!("{p}.conv2"), true, 1)?;
                h = if i == 0 {
                    (avg_pool2d(&inner, 2)?
                        + conv(&avg_pool2d(&h, 2)?, &format!("{p}.shortcut"), true, 0)?)?
                } else {
                    (inner + conv(&h, &format!("{p}.shortcut"), true, 0)?)?
                };
            }
        }
        let f = h.flatten_from(1)?;
        let linear = |name: &str, f: &Tensor| -> candle_core::Result<Tensor> {
            f.matmul(&get(&format!("{name}.weight")).t()?)?
                .broadcast_add(&get(&format!("{name}.bias")))
        };
        let e =
            ((linear("head.a", &f)? * linear("head.b", &f)?)? + linear("head.quad", &f.sqr()?)?)?;
        e.squeeze(1)
    };
    let ours = net.energy(&x).unwrap();
    let theirs = reference(&x).unwrap();
    let diff = |a: &Tensor, b: &Tensor| -> (f64, f64) {
        let err = (a - b).unwrap().abs().unwrap().max_all().unwrap();
        let scale = b.abs().unwrap().max_all().unwrap();
        (
            err.to_scalar::<f64>().unwrap(),
            scale.to_scalar::<f64>().unwrap(),
        )
    };
    let (err, scale) = diff(&ours, &theirs);
    assert!(scale > 1e-3, "vacuous: energies {scale}");
    assert!(err < 1e-12 * scale, "energy: {err} against {scale}");
    let g1 = ours.sum_all().unwrap().backward().unwrap();
    let g2 = theirs.sum_all().unwrap().backward().unwrap();
    for (name, var) in &vars {
        let (a, b) = (g1.get(var.as_tensor()), g2.get(var.as_tensor()));
        let (a, b) = (a.expect(name), b.expect(name));
        let (err, scale) = diff(a, b);
        assert!(
            err <= 1e-10 * scale.max(1e-3),
            "d/d{name}: {err} against {scale}"
        );
    }
}

/// The parameter gradient of SSM, `v^T H v + (v.s)^2 / 2`, is a third derivative of the network:
/// autodiff through the Hessian-vector product must match a central difference of the loss in
/// parameter space, for both activations (with ELU the loss jumps where a pre-activation
/// crosses 0; the seeded point and step stay clear of that).
#[test]
fn ssm_parameter_gradient_matches_central_differences() {
    for activation in [Activation::ShiftedSoftplus, Activation::Elu] {
        ssm_parameter_gradient_check(activation);
    }
}

fn ssm_parameter_gradient_check(activation: Activation) {
    use sm_objectives::{ssm, Directions, Reduction};
    enable_higher_order().expect("Candle's higher-order mode");
    let (_vm, net, vars, mut noise) = seeded_small(activation, 23);
    let shape = Tensor::zeros((3, 1, 8, 8), DType::F64, &Device::Cpu).unwrap();
    let x = noise.uniform_like(&shape).unwrap();
    let proj = noise.projection(&x, Directions::Gaussian).unwrap();
    let loss = || -> f64 {
        ssm(&net, &x, &proj, Reduction::Mean)
            .unwrap()
            .to_scalar::<f64>()
            .unwrap()
    };
    let grads = ssm(&net, &x, &proj, Reduction::Mean)
        .unwrap()
        .backward()
        .unwrap();
    // One random direction u in parameter space: autodiff's g.u against
    // (L(theta + h u) - L(theta - h u)) / 2h.
    let dirs: Vec<Tensor> = vars
        .iter()
        .map(|(_, v)| noise.gaussian_like(v.as_tensor()).unwrap())
        .collect();
    let mut analytic = 0.0;
    // A parameter the score does not depend on (the energy's constant) has no gradient; the
    // central difference counts every parameter, so a gradient missing by mistake fails.
    for ((_, var), u) in vars.iter().zip(&dirs) {
        let Some(g) = grads.get(var.as_tensor()) else {
            continue;
        };
        analytic += (g * u)
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f64>()
            .unwrap();
    }
    let originals: Vec<Tensor> = vars
        .iter()
        .map(|(_, v)| v.as_tensor().copy().unwrap())
        .collect();
    let shift = |h: f64| {
        for (((_, var), u), w) in vars.iter().zip(&dirs).zip(&originals) {
            var.set(&(w + (u * h).unwrap()).unwrap()).unwrap();
        }
    };
    let h = 1e-5;
    shift(h);
    let plus = loss();
    shift(-h);
    let minus = loss();
    shift(0.0);
    let numeric = (plus - minus) / (2.0 * h);
    assert!(numeric.abs() > 1e-6, "vacuous check: {numeric}");
    assert!(
        (analytic - numeric).abs() < 1e-5 * numeric.abs().max(1.0),
        "{activation:?}: SSM parameter gradient: autodiff {analytic}, central difference {numeric}"
    );
}

/// The input-gradient passes skip the convolutions' kernel and bias gradients
/// (`layers::grad_mode::input_gradients_only`): the score and the parameter gradients of a loss
/// built from it equal those of a plain backward pass that computes every gradient, for both
/// activations (ELU goes through the fused ELU convolutions, softplus through the plain ones).
#[test]
fn skipping_kernel_gradients_in_input_gradient_passes_changes_nothing() {
    use sm_objectives::autodiff::input_gradient;
    enable_higher_order().expect("higher-order mode");
    for activation in [Activation::Elu, Activation::ShiftedSoftplus] {
        let (_, net, vars, mut noise) = seeded_small(activation, 31);
        let x = noise
            .gaussian_like(&Tensor::zeros((3, 1, 8, 8), DType::F64, &Device::Cpu).unwrap())
            .unwrap();
        let fast = input_gradient(&net, &x).unwrap().score;
        let xv = Var::from_tensor(&x).unwrap();
        let lp = net.log_density(xv.as_tensor()).unwrap();
        let plain = lp
            .sum_all()
            .unwrap()
            .backward()
            .unwrap()
            .get(xv.as_tensor())
            .unwrap()
            .clone();
        let diff = |a: &Tensor, b: &Tensor| {
            (a - b)
                .unwrap()
                .abs()
                .unwrap()
                .flatten_all()
                .unwrap()
                .max(0)
                .unwrap()
                .to_scalar::<f64>()
                .unwrap()
        };
        assert!(diff(&fast, &plain) < 1e-13, "{activation:?} score");
        let g_fast = fast.sqr().unwrap().sum_all().unwrap().backward().unwrap();
        let g_plain = plain.sqr().unwrap().sum_all().unwrap().backward().unwrap();
        let mut compared = 0;
        for (name, var) in &vars {
            match (g_fast.get(var.as_tensor()), g_plain.get(var.as_tensor())) {
                (Some(a), Some(b)) => {
                    let scale = 1.0 + diff(b, &b.zeros_like().unwrap());
                    assert!(diff(a, b) < 1e-11 * scale, "{activation:?} {name}");
                    compared += 1;
                }
                (None, None) => {}
                _ => panic!("{activation:?} {name}: a gradient on one path only"),
            }
        }
        assert!(compared >= vars.len() - 2, "{compared} of {}", vars.len());
    }
}
