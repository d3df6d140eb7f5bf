//! The convolutional implicit-encoder autoencoder and score network of Table 6's CelebA half
//! against an independent evaluation with Candle's own forward ops (strided `conv2d`,
//! `conv_transpose2d` with output padding) on the stored weights; the score network's input
//! derivatives, first and second order, against central differences; weight names and shapes as
//! the reference's; bad shapes named.

mod common;

use candle_core::{DType, Device, Tensor, D};
use candle_nn::{VarBuilder, VarMap};
use common::max_abs_diff;
use models::{
    AutoencoderKind, ImplicitAutoencoder, ImplicitAutoencoderConfig, ImplicitNetworks, LatentScore,
};
use sm_objectives::autodiff::enable_higher_order;

const DEV: Device = Device::Cpu;

fn tiny(kind: AutoencoderKind) -> ImplicitAutoencoderConfig {
    ImplicitAutoencoderConfig {
        kind,
        z_dim: 3,
        noise_dim: 2,
        networks: ImplicitNetworks::Conv {
            channels: 3,
            image_size: 16,
            nef: 2,
            ndf: 2,
        },
    }
}

fn build(cfg: &ImplicitAutoencoderConfig) -> (VarMap, ImplicitAutoencoder, LatentScore) {
    let vm = VarMap::new();
    let vb = VarBuilder::from_varmap(&vm, DType::F64, &DEV);
    let ae = ImplicitAutoencoder::new(cfg, vb.clone()).unwrap();
    let score = LatentScore::new(cfg, vb).unwrap();
    (vm, ae, score)
}

fn var(vm: &VarMap, name: &str) -> Tensor {
    vm.data().lock().unwrap()[name].as_tensor().clone()
}

fn dense(vm: &VarMap, name: &str, x: &Tensor) -> Tensor {
    x.matmul(&var(vm, &format!("{name}.weight")).t().unwrap())
        .unwrap()
        .broadcast_add(&var(vm, &format!("{name}.bias")))
        .unwrap()
}

fn conv(vm: &VarMap, name: &str, x: &Tensor) -> Tensor {
    let b = var(vm, &format!("{name}.bias"));
    x.conv2d(&var(vm, &format!("{name}.weight")), 2, 2, 1, 1)
        .unwrap()
        .broadcast_add(&b.reshape((b.dim(0).unwrap(), 1, 1)).unwrap())
        .unwrap()
}

fn softplus(t: &Tensor) -> Tensor {
    (t.exp().unwrap() + 1.0).unwrap().log().unwrap()
}

fn pattern(shape: &[usize], phase: f64) -> Tensor {
    let n: usize = shape.iter().product();
    let v: Vec<f64> = (0..n).map(|i| (0.37 * i as f64 + phase).sin()).collect();
    Tensor::from_vec(v, shape, &DEV).unwrap()
}

#[test]
fn networks_match_candles_forward_ops_on_their_weights() {
    for kind in [AutoencoderKind::Vae, AutoencoderKind::Wae] {
        let cfg = tiny(kind);
        let (vm, ae, score) = build(&cfg);
        let x = pattern(&[2, 3, 16, 16], 0.1);
        let eps = (kind == AutoencoderKind::Vae).then(|| pattern(&[2, 2], 0.7));
        // Encoder.
        let mut h = match &eps {
            Some(e) => {
                let noise = dense(&vm, "encoder.noise_fc", e).relu().unwrap();
                Tensor::cat(&[&x, &noise.reshape((2, 1, 16, 16)).unwrap()], 1).unwrap()
            }
            None => x.clone(),
        };
        for i in 0..4 {
            h = conv(&vm, &format!("encoder.conv.{i}"), &h);
            if i < 3 || kind == AutoencoderKind::Wae {
                h = h.relu().unwrap();
            }
        }
        let h = dense(&vm, "encoder.fc", &h.flatten_from(1).unwrap())
            .relu()
            .unwrap();
        let z_ref = dense(&vm, "encoder.out", &h);
        let z = ae.encode(&x, eps.as_ref()).unwrap();
        assert!(max_abs_diff(&z, &z_ref) < 1e-12, "{kind:?} encoder");
        // Decoder: transposed convolutions with output padding by Candle's forward op.
        let mut h = dense(&vm, "decoder.fc", &z).reshape((2, 16, 1, 1)).unwrap();
        for i in 0..4 {
            let name = format!("decoder.deconv.{i}");
            let b = var(&vm, &format!("{name}.bias"));
            h = h
                .conv_transpose2d(&var(&vm, &format!("{name}.weight")), 2, 1, 2, 1)
                .unwrap()
                .broadcast_add(&b.reshape((b.dim(0).unwrap(), 1, 1)).unwrap())
                .unwrap();
            h = if i < 3 {
                h.relu().unwrap()
            } else {
                h.tanh().unwrap()
            };
        }
        let mean = ae.decode(&z).unwrap();
        assert_eq!(mean.dims(), [2, 3, 16, 16]);
        assert!(max_abs_diff(&mean, &h) < 1e-12, "{kind:?} decoder");
        // Score network.
        let zc = softplus(&dense(&vm, "score.z_fc", &z))
            .reshape((2, 1, 16, 16))
            .unwrap();
        let mut h = match kind {
            AutoencoderKind::Vae => Tensor::cat(&[&x, &zc], 1).unwrap(),
            AutoencoderKind::Wae => zc,
        };
        for i in 0..4 {
            h = softplus(&conv(&vm, &format!("score.conv.{i}"), &h));
        }
        let h = softplus(&dense(&vm, "score.fc", &h.flatten_from(1).unwrap()));
        let s_ref = dense(&vm, "score.out", &h);
        let x_cond = (kind == AutoencoderKind::Vae).then_some(&x);
        let s = score.score(x_cond, &z).unwrap();
        assert!(max_abs_diff(&s, &s_ref) < 1e-12, "{kind:?} score");
    }
}

#[test]
fn the_reference_sizes_build_with_its_weight_shapes() {
    let cfg = ImplicitAutoencoderConfig::celeba(AutoencoderKind::Vae, 32);
    let vm = VarMap::new();
    let vb = VarBuilder::from_varmap(&vm, DType::F32, &DEV);
    let ae = ImplicitAutoencoder::new(&cfg, vb.clone()).unwrap();
    LatentScore::new(&cfg, vb).unwrap();
    for (name, shape) in [
        ("encoder.noise_fc.weight", vec![4096, 32]),
        ("encoder.conv.0.weight", vec![64, 4, 5, 5]),
        ("encoder.conv.3.weight", vec![512, 256, 5, 5]),
        ("encoder.fc.weight", vec![512, 8192]),
        ("decoder.fc.weight", vec![8192, 32]),
        ("decoder.deconv.0.weight", vec![512, 256, 5, 5]),
        ("decoder.deconv.3.weight", vec![64, 3, 5, 5]),
        ("score.z_fc.weight", vec![4096, 32]),
        ("score.conv.0.weight", vec![64, 4, 5, 5]),
        ("score.out.weight", vec![32, 512]),
    ] {
        assert_eq!(var(&vm, name).dims(), shape.as_slice(), "{name}");
    }
    let z = Tensor::zeros((1, 32), DType::F32, &DEV).unwrap();
    assert_eq!(ae.decode(&z).unwrap().dims(), [1, 3, 64, 64]);
    let bad = ImplicitAutoencoderConfig {
        networks: ImplicitNetworks::Conv {
            channels: 3,
            image_size: 40,
            nef: 64,
            ndf: 64,
        },
        ..cfg.clone()
    };
    let err = ImplicitAutoencoder::new(
        &bad,
        VarBuilder::from_varmap(&VarMap::new(), DType::F32, &DEV),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("multiple of 16"), "{err}");
    let flat = Tensor::zeros((1, 784), DType::F32, &DEV).unwrap();
    let eps = Tensor::zeros((1, 32), DType::F32, &DEV).unwrap();
    let err = ae.encode(&flat, Some(&eps)).unwrap_err().to_string();
    assert!(err.contains("[1, 3, 64, 64]"), "{err}");
}

#[test]
fn the_conv_score_networks_input_derivatives_match_central_differences() {
    enable_higher_order().expect("Candle's higher-order mode");
    let cfg = tiny(AutoencoderKind::Vae);
    let (_vm, _ae, score) = build(&cfg);
    let x = pattern(&[2, 3, 16, 16], 0.4);
    let z = pattern(&[2, 3], 1.3);
    let v = pattern(&[2, 3], 2.9);
    // f(z) = sum v . s(x, z): its gradient J^T v against central differences of f.
    let f = |z: &Tensor| -> candle_core::Result<Tensor> {
        (score.score(Some(&x), z)? * &v)?.sum(D::Minus1)
    };
    // The gradient of f at z, attached to the graph (higher-order mode), and its variable.
    let grad_at = |z: &Tensor| -> (candle_core::Var, Tensor) {
        let zv = candle_core::Var::from_tensor(z).unwrap();
        let grads = f(zv.as_tensor())
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let g = grads.get(zv.as_tensor()).expect("input gradient").clone();
        (zv, g)
    };
    let (_, g) = grad_at(&z);
    let h = 1e-5;
    let step = (&v * h).unwrap();
    let fd = ((f(&(&z + &step).unwrap()).unwrap() - f(&(&z - &step).unwrap()).unwrap()).unwrap()
        / (2.0 * h))
        .unwrap();
    let along = (&g * &v).unwrap().sum(D::Minus1).unwrap();
    assert!(max_abs_diff(&along, &fd) < 1e-7, "first order");
    // Second order: the derivative of v^T J^T v along v against differences of the gradient.
    let gv = |g: &Tensor| (g * &v).unwrap().sum(D::Minus1).unwrap();
    let (zv, g) = grad_at(&z);
    let second = gv(&g).sum_all().unwrap().backward().unwrap();
    let hvp = second.get(zv.as_tensor()).expect("second derivative");
    let along2 = gv(hvp);
    let fd2 = ((gv(&grad_at(&(&z + &step).unwrap()).1) - gv(&grad_at(&(&z - &step).unwrap()).1))
        .unwrap()
        / (2.0 * h))
        .unwrap();
    assert!(max_abs_diff(&along2, &fd2) < 1e-6, "second order");
}
