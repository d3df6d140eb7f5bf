//! The FID InceptionV3 without its real weights: the average pool that leaves the padding out
//! against a brute-force average, the whole network's wiring (every weight name and shape of
//! pytorch-fid's state dict, 2048 finite features that depend on the image), and its input
//! checks. Its numbers were compared with pytorch-fid's on random weights
//! (`benches/verify_fid_inception.py`, `docs/sample-quality.md`).

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use sample_quality::inception::{avg_pool3_excluding_padding, FidInception, INCEPTION_FEATURES};

#[test]
fn average_pool_leaves_the_padding_out() -> anyhow::Result<()> {
    let (c, h, w) = (2, 4, 5);
    let v: Vec<f32> = (0..c * h * w)
        .map(|k| ((k * 37) % 11) as f32 - 5.0)
        .collect();
    let x = Tensor::from_vec(v.clone(), (1, c, h, w), &Device::Cpu)?;
    let ours: Vec<f32> = avg_pool3_excluding_padding(&x)?.flatten_all()?.to_vec1()?;
    for ch in 0..c {
        for i in 0..h {
            for j in 0..w {
                let (mut sum, mut count) = (0.0f32, 0.0f32);
                for di in -1i32..=1 {
                    for dj in -1i32..=1 {
                        let (a, b) = (i as i32 + di, j as i32 + dj);
                        if a >= 0 && b >= 0 && (a as usize) < h && (b as usize) < w {
                            sum += v[ch * h * w + a as usize * w + b as usize];
                            count += 1.0;
                        }
                    }
                }
                let got = ours[ch * h * w + i * w + j];
                assert!((got - sum / count).abs() < 1e-5, "({ch}, {i}, {j}): {got}");
            }
        }
    }
    Ok(())
}

#[test]
fn the_network_is_wired_with_pytorch_fids_names_and_shapes() -> anyhow::Result<()> {
    let cpu = Device::Cpu;
    let vm = VarMap::new();
    // Built once to register every weight, then again once they are set (the batch
    // normalisation is folded into a scale and shift when the network is built).
    FidInception::new(VarBuilder::from_varmap(&vm, DType::F32, &cpu))?;
    // Random weights with positive running variances (Candle's default initialisers leave some
    // zero), as the PyTorch verification script draws them.
    let (names, vars) = {
        let data = vm.data().lock().unwrap();
        let mut e: Vec<_> = data.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        e.sort_by(|a, b| a.0.cmp(&b.0));
        e.into_iter().unzip::<_, _, Vec<_>, Vec<_>>()
    };
    // 94 convolutions, each with a kernel and four batch-norm tensors.
    assert_eq!(names.len(), 94 * 5);
    assert!(names.contains(&"Mixed_6e.branch7x7dbl_5.conv.weight".to_string()));
    for (name, var) in names.iter().zip(&vars) {
        let t = if name.ends_with("running_var") || name.ends_with("bn.weight") {
            Tensor::rand(0.5f32, 1.5, var.shape(), &cpu)?
        } else if name.ends_with("conv.weight") {
            let fan_in = var.dims()[1..].iter().product::<usize>() as f64;
            (Tensor::randn(0f32, 1.0, var.shape(), &cpu)? * (2.0 / fan_in).sqrt())?
        } else {
            (Tensor::randn(0f32, 1.0, var.shape(), &cpu)? * 0.1)?
        };
        var.set(&t)?;
    }
    let net = FidInception::new(VarBuilder::from_varmap(&vm, DType::F32, &cpu))?;
    let x = Tensor::rand(0f32, 1.0, (2, 3, 32, 32), &cpu)?;
    let f = net.features(&x, 2)?;
    assert_eq!(f.dims(), &[2, INCEPTION_FEATURES]);
    let v: Vec<Vec<f32>> = f.to_vec2()?;
    assert!(v.iter().flatten().all(|a| a.is_finite() && *a >= 0.0));
    assert!(v[0] != v[1], "different images, different features");
    assert!(v[0].iter().any(|a| *a > 0.0), "features are not all zero");
    // Grey images are taken as three equal channels.
    let grey = x.narrow(1, 0, 1)?;
    assert_eq!(
        net.features(&grey, 2)?.to_vec2::<f32>()?,
        net.features(&grey.repeat((1, 3, 1, 1))?, 2)?
            .to_vec2::<f32>()?
    );
    let err = net
        .features(&(x.clone() * 255.0)?, 2)
        .unwrap_err()
        .to_string();
    assert!(err.contains("[0, 1]"), "{err}");
    let err = net
        .features(&Tensor::zeros((2, 2, 8, 8), DType::F32, &cpu)?, 2)
        .unwrap_err()
        .to_string();
    assert!(err.contains("[N, 3, H, W]"), "{err}");
    let err = FidInception::from_pth(std::path::Path::new("/nonexistent/w.pth"), &cpu)
        .unwrap_err()
        .to_string();
    assert!(err.contains("cargo xtask download inception"), "{err}");
    Ok(())
}
