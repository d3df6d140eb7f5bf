//! NCSN's conditional RefineNet against the authors' own network: `fixtures/ncsn_reference.safetensors`
//! holds the output of their `CondRefineNetDilated` (1 x 8 x 8, ngf 2, 10 levels, f64, every
//! parameter random; written by `fixtures/make_ncsn_fixture.py`), whose weights are loaded here
//! under our names; ours must give the same scores. Also: the parameter count of the reference
//! sizes against the reference's (counted with its code: 7 638 657 for MNIST with ngf 64,
//! 30 117 635 for CIFAR-10 with ngf 128); the normalisation against a plain-loop evaluation;
//! samples independent of each other; the score's second derivative along a direction against
//! central differences of its first (what annealed SSMVR differentiates); bad input named.

mod common;

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor, D};
use candle_nn::{VarBuilder, VarMap};
use common::max_abs_diff;
use models::{CondInstanceNormPlus, LevelOneHot, Ncsn, NcsnConfig};
use sm_objectives::autodiff::enable_higher_order;

const DEV: Device = Device::Cpu;

/// Every test turns Candle's higher-order mode on before any Candle op: the mode is read once
/// per process, and the fused ELU convolutions ask for it when they are built.
fn build(cfg: &NcsnConfig, dtype: DType) -> (VarMap, Ncsn) {
    enable_higher_order().expect("Candle's higher-order mode");
    let vm = VarMap::new();
    let net = Ncsn::new(cfg, VarBuilder::from_varmap(&vm, dtype, &DEV)).unwrap();
    (vm, net)
}

/// The reference's name of one of our parameters, and which third of a normalisation's
/// `embed.weight` (`[gamma | alpha | beta]`) it is.
fn reference_name(ours: &str) -> (String, Option<usize>) {
    let mut parts: Vec<String> = ours.split('.').map(str::to_string).collect();
    let last = parts.pop().unwrap();
    let third = match last.as_str() {
        "gamma" => Some(0),
        "alpha" => Some(1),
        "beta" => Some(2),
        _ => None,
    };
    let mut out = Vec::new();
    let mut i = 0;
    while i < parts.len() {
        let p = parts[i].as_str();
        let next = parts.get(i + 1).map(String::as_str);
        let in_msf_or_crp = i > 0 && matches!(parts[i - 1].as_str(), "msf" | "crp");
        match p {
            n if in_msf_or_crp => {
                let (kind, k) = n.split_at(4);
                out.push(format!("{kind}s"));
                out.push(k.to_string());
            }
            "norm1" => out.push("normalize1".to_string()),
            "norm2" => out.push("normalize2".to_string()),
            // Our RCU unit `block<b>.{norm,conv}<s>` is the reference's `<b+1>_<s+1>_{norm,conv}`.
            b if b.starts_with("block") => {
                let unit: usize = b[5..].parse().unwrap();
                let stage = next.unwrap();
                let (kind, s) = stage.split_at(4);
                let s: usize = s.parse().unwrap();
                out.push(format!("{}_{}_{kind}", unit + 1, s + 1));
                i += 1;
            }
            a if a.starts_with("adapt") => {
                out.push("adapt_convs".into());
                out.push(a[5..].to_string());
            }
            "output" => out.push("output_convs".into()),
            other => out.push(other.to_string()),
        }
        i += 1;
    }
    let mut name = out.join(".");
    match third {
        Some(_) => name.push_str(".embed.weight"),
        None => {
            // The reference's mean-pooling convolutions wrap theirs in `.conv`.
            if name.starts_with("res2.0.conv2") || name.starts_with("res2.0.shortcut") {
                name = name.replacen("conv2", "conv2.conv", 1).replacen(
                    "shortcut",
                    "shortcut.conv",
                    1,
                );
            }
            name.push('.');
            name.push_str(&last);
        }
    }
    (name, third)
}

/// The fixture's tensors and our network with the reference network's weights.
fn reference_network() -> (HashMap<String, Tensor>, Ncsn) {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/ncsn_reference.safetensors"
    );
    let reference: HashMap<String, Tensor> = candle_core::safetensors::load(path, &DEV).unwrap();
    let cfg = NcsnConfig {
        channels: 1,
        image_size: 8,
        ngf: 2,
        levels: 10,
    };
    let (vm, net) = build(&cfg, DType::F64);
    let mut used = std::collections::HashSet::new();
    for (name, var) in vm.data().lock().unwrap().iter() {
        let (theirs, third) = reference_name(name);
        let t = reference
            .get(&format!("param.{theirs}"))
            .unwrap_or_else(|| panic!("{name}: no reference parameter {theirs}"));
        let t = match third {
            Some(k) => {
                let c = t.dim(1).unwrap() / 3;
                t.narrow(1, k * c, c).unwrap()
            }
            None => t.clone(),
        };
        assert_eq!(t.dims(), var.dims(), "{name} <- {theirs}");
        var.set(&t).unwrap();
        used.insert(theirs);
    }
    let params = reference.keys().filter(|k| k.starts_with("param.")).count();
    assert_eq!(
        used.len(),
        params,
        "every reference parameter has a counterpart"
    );
    (reference, net)
}

#[test]
fn scores_equal_the_reference_networks_on_its_weights() {
    let (reference, net) = reference_network();
    let out = net
        .forward(&reference["input"], &reference["levels"])
        .unwrap();
    let err = max_abs_diff(&out, &reference["output"]);
    assert!(
        err < 1e-9,
        "largest difference from the reference network: {err}"
    );
}

#[test]
fn the_reference_sizes_have_the_reference_parameter_counts() {
    for (cfg, count) in [
        (NcsnConfig::mnist(), 7_638_657),
        (NcsnConfig::cifar10(), 30_117_635),
    ] {
        let (vm, _) = build(&cfg, DType::F32);
        let n: usize = vm.all_vars().iter().map(|v| v.elem_count()).sum();
        assert_eq!(n, count, "{cfg:?}");
    }
}

#[test]
fn the_normalisation_matches_a_plain_loop() {
    enable_higher_order().expect("Candle's higher-order mode");
    let (b, c, h, w) = (2, 3, 2, 3);
    let vm = VarMap::new();
    let norm =
        CondInstanceNormPlus::new(c, 2, VarBuilder::from_varmap(&vm, DType::F64, &DEV)).unwrap();
    let values: Vec<f64> = (0..b * c * h * w)
        .map(|i| (0.7 * i as f64).sin() * (1.0 + i as f64 * 0.1))
        .collect();
    let x = Tensor::from_vec(values.clone(), (b, c, h, w), &DEV).unwrap();
    let table = |seed: f64| -> Vec<f64> {
        (0..2 * c)
            .map(|i| 1.0 + 0.3 * (seed + i as f64).cos())
            .collect()
    };
    for (name, seed) in [("gamma", 0.0), ("alpha", 1.0), ("beta", 2.0)] {
        let v = Tensor::from_vec(table(seed), (2, c), &DEV).unwrap();
        vm.data().lock().unwrap()[name].set(&v).unwrap();
    }
    let levels = Tensor::new(&[1u32, 0], &DEV).unwrap();
    let one_hot = LevelOneHot::new(&levels, 2, &x).unwrap();
    let got = norm
        .forward(&x, &one_hot)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f64>()
        .unwrap();
    let hw = h * w;
    for s in 0..b {
        let l = [1, 0][s];
        let mu: Vec<f64> = (0..c)
            .map(|ch| {
                values[(s * c + ch) * hw..(s * c + ch + 1) * hw]
                    .iter()
                    .sum::<f64>()
                    / hw as f64
            })
            .collect();
        let m = mu.iter().sum::<f64>() / c as f64;
        let var = mu.iter().map(|u| (u - m).powi(2)).sum::<f64>() / (c as f64 - 1.0);
        for ch in 0..c {
            let pix = &values[(s * c + ch) * hw..(s * c + ch + 1) * hw];
            let v = pix.iter().map(|p| (p - mu[ch]).powi(2)).sum::<f64>() / hw as f64;
            let (g, a, be) = (
                table(0.0)[l * c + ch],
                table(1.0)[l * c + ch],
                table(2.0)[l * c + ch],
            );
            for (k, p) in pix.iter().enumerate() {
                let hn = (p - mu[ch]) / (v + 1e-5).sqrt() + a * (mu[ch] - m) / (var + 1e-5).sqrt();
                let want = g * hn + be;
                let at = (s * c + ch) * hw + k;
                assert!(
                    (got[at] - want).abs() < 1e-12,
                    "({s}, {ch}, {k}): {} vs {want}",
                    got[at]
                );
            }
        }
    }
    assert!(LevelOneHot::new(&Tensor::new(&[2u32], &DEV).unwrap(), 2, &x).is_err());
    assert!(CondInstanceNormPlus::new(
        1,
        2,
        VarBuilder::from_varmap(&VarMap::new(), DType::F64, &DEV)
    )
    .is_err());
}

fn tiny() -> NcsnConfig {
    NcsnConfig {
        channels: 1,
        image_size: 8,
        ngf: 2,
        levels: 4,
    }
}

fn pattern(shape: &[usize], phase: f64) -> Tensor {
    let n: usize = shape.iter().product();
    let v: Vec<f64> = (0..n)
        .map(|i| 0.5 + 0.4 * (0.37 * i as f64 + phase).sin())
        .collect();
    Tensor::from_vec(v, shape, &DEV).unwrap()
}

#[test]
fn samples_are_scored_independently_and_levels_matter() {
    let (_, net) = build(&tiny(), DType::F64);
    let x = pattern(&[2, 1, 8, 8], 0.3);
    let levels = Tensor::new(&[1u32, 3], &DEV).unwrap();
    let both = net.forward(&x, &levels).unwrap();
    for i in 0..2 {
        let one = net
            .forward(
                &x.narrow(0, i, 1).unwrap(),
                &levels.narrow(0, i, 1).unwrap(),
            )
            .unwrap();
        assert!(max_abs_diff(&one, &both.narrow(0, i, 1).unwrap()) < 1e-12);
    }
    let other = net
        .forward(&x, &Tensor::new(&[2u32, 3], &DEV).unwrap())
        .unwrap();
    assert!(
        max_abs_diff(
            &other.narrow(0, 0, 1).unwrap(),
            &both.narrow(0, 0, 1).unwrap()
        ) > 1e-6
    );
    let err = net
        .forward(&x, &Tensor::new(&[1u32, 4], &DEV).unwrap())
        .unwrap_err()
        .to_string();
    assert!(err.contains("out of range"), "{err}");
    let err = net
        .forward(&pattern(&[2, 1, 6, 6], 0.0), &levels)
        .unwrap_err()
        .to_string();
    assert!(err.contains("[B, 1, 8, 8]"), "{err}");
    let err = sm_objectives::ScoreModel::score(&net, &x, None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("noise level"), "{err}");
    assert!(NcsnConfig {
        image_size: 7,
        ..tiny()
    }
    .check()
    .is_err());
}

#[test]
fn the_scores_second_derivative_matches_central_differences() {
    // The reference network's weights: a fixed point (ELU's second derivative jumps at 0, so
    // differences across a kink would not be a fair oracle; at this fixed point none is
    // crossed).
    let (_, net) = reference_network();
    let x = pattern(&[2, 1, 8, 8], 0.9);
    let v = (pattern(&[2, 1, 8, 8], 2.0) - 0.5).unwrap();
    let levels = Tensor::new(&[0u32, 6], &DEV).unwrap();
    // f(x) = v . s(x): the gradient (J^T v) and its derivative along v.
    let f = |x: &Tensor| -> Tensor {
        (net.forward(x, &levels).unwrap() * &v)
            .unwrap()
            .flatten_from(1)
            .unwrap()
            .sum(D::Minus1)
            .unwrap()
    };
    let grad_at = |x: &Tensor| -> (candle_core::Var, Tensor) {
        let xv = candle_core::Var::from_tensor(x).unwrap();
        let grads = f(xv.as_tensor()).sum_all().unwrap().backward().unwrap();
        (
            xv.clone(),
            grads.get(xv.as_tensor()).expect("input gradient").clone(),
        )
    };
    let along = |g: &Tensor| {
        (g * &v)
            .unwrap()
            .flatten_from(1)
            .unwrap()
            .sum(D::Minus1)
            .unwrap()
    };
    let h = 1e-5;
    let step = (&v * h).unwrap();
    let (_, g) = grad_at(&x);
    let fd1 =
        ((f(&(&x + &step).unwrap()) - f(&(&x - &step).unwrap())).unwrap() / (2.0 * h)).unwrap();
    assert!(max_abs_diff(&along(&g), &fd1) < 1e-7, "first order");
    let (xv, g) = grad_at(&x);
    let second = along(&g).sum_all().unwrap().backward().unwrap();
    let hv = second.get(xv.as_tensor()).expect("second derivative");
    let fd2 = ((along(&grad_at(&(&x + &step).unwrap()).1)
        - along(&grad_at(&(&x - &step).unwrap()).1))
    .unwrap()
        / (2.0 * h))
        .unwrap();
    let scale = 1.0 + max_abs_diff(&fd2, &fd2.zeros_like().unwrap());
    assert!(
        max_abs_diff(&along(hv), &fd2) < 1e-6 * scale,
        "second order: {} against {}",
        along(hv),
        fd2
    );
}
