//! FID with LeNet features on MNIST: the feature network trained here classifies the test split
//! above 98%, is cached and read back to the same features, is retrained to the same weights
//! from the same settings; MNIST training images are close to the MNIST reference and
//! Fashion-MNIST images far from it (FID and KID); bad images and a corrupt cache are refused
//! with a message. Skipped, with the reason printed, when the data are absent (a failure when
//! the data must be there).

use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};
use sample_quality::lenet::{
    load_or_train_lenet, prepare_images, train_lenet, LeNetTraining, MnistFamily,
};
use sample_quality::{features_matrix, frechet_distance, kernel_distance, GaussianStats};

fn data_dir_with(needed: &str) -> Option<PathBuf> {
    let fallback = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data");
    datasets::data_for_tests(needed, &fallback).unwrap_or_else(|e| panic!("{e}"))
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lenet-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn first(images: &Tensor, n: usize) -> Tensor {
    images.narrow(0, 0, n).unwrap()
}

#[test]
fn lenet_fid_separates_mnist_from_fashion_mnist() -> anyhow::Result<()> {
    let Some(data) = data_dir_with("fashion-mnist/t10k-images-idx3-ubyte.gz") else {
        return Ok(());
    };
    data_dir_with("mnist/train-images-idx3-ubyte.gz").unwrap();
    // Shared with the eval command's test: the network is trained by whichever runs first in
    // this target directory, and read from the cache after.
    let cache = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("feature-nets");
    let training = LeNetTraining::default();
    let cpu = Device::Cpu;
    let fresh = load_or_train_lenet(&data, &cache, MnistFamily::Mnist, &training, &cpu, false)?;
    assert!(fresh.test_accuracy > 0.985, "{}", fresh.test_accuracy);
    let cached = load_or_train_lenet(&data, &cache, MnistFamily::Mnist, &training, &cpu, false)?;
    assert!(!cached.trained_now);
    assert_eq!(cached.test_accuracy, fresh.test_accuracy);

    let mnist = datasets::load_idx_dataset(&data, datasets::IdxDataset::Mnist, &cpu)?;
    let fashion = datasets::load_idx_dataset(&data, datasets::IdxDataset::FashionMnist, &cpu)?;
    let probe = first(&mnist.train.images, 300);
    assert_eq!(
        fresh.features(&probe)?.to_vec2::<f32>()?,
        cached.features(&probe)?.to_vec2::<f32>()?
    );
    // 32 x 32 padded images give the features of their 28 x 28 centre.
    let padded = probe.pad_with_zeros(2, 2, 2)?.pad_with_zeros(3, 2, 2)?;
    assert_eq!(
        cached.features(&padded)?.to_vec2::<f32>()?,
        cached.features(&probe)?.to_vec2::<f32>()?
    );

    let reference = cached.reference_stats(&data, &cache)?;
    assert_eq!((reference.count, reference.dim), (10_000, 128));
    let stats = |images: &Tensor| GaussianStats::from_features(&cached.features(images).unwrap());
    let near = frechet_distance(&stats(&first(&mnist.train.images, 5000))?, &reference)?;
    let far = frechet_distance(&stats(&first(&fashion.test.images, 5000))?, &reference)?;
    assert!(near * 20.0 < far, "MNIST {near} vs Fashion-MNIST {far}");
    let (x, _, d) = features_matrix(&cached.features(&first(&mnist.train.images, 2000))?)?;
    let (y, _, _) = features_matrix(&cached.features(&first(&mnist.test.images, 2000))?)?;
    let (z, _, _) = features_matrix(&cached.features(&first(&fashion.test.images, 2000))?)?;
    let kid_near = kernel_distance(&x, &y, d, 20, 500, 0)?;
    let kid_far = kernel_distance(&x, &z, d, 20, 500, 0)?;
    assert!(
        kid_near.mean < 0.1 * kid_far.mean,
        "{kid_near:?} vs {kid_far:?}"
    );
    println!(
        "FID {near} / {far}, KID {} / {}",
        kid_near.mean, kid_far.mean
    );

    // A damaged cache file is refused with the advice to delete it.
    let damaged = scratch("damaged");
    std::fs::create_dir_all(&damaged)?;
    std::fs::write(
        sample_quality::lenet::lenet_path(&damaged, MnistFamily::Mnist),
        b"garbage",
    )?;
    let err = load_or_train_lenet(&data, &damaged, MnistFamily::Mnist, &training, &cpu, false)
        .unwrap_err()
        .to_string();
    assert!(err.contains("delete it"), "{err}");
    std::fs::remove_dir_all(&damaged)?;
    Ok(())
}

#[test]
fn the_same_settings_train_the_same_weights() -> anyhow::Result<()> {
    let Some(data) = data_dir_with("mnist/train-images-idx3-ubyte.gz") else {
        return Ok(());
    };
    let mnist = datasets::load_idx_dataset(&data, datasets::IdxDataset::Mnist, &Device::Cpu)?;
    let (x, y) = (
        first(&mnist.train.images, 512),
        first(&mnist.train.labels, 512),
    );
    let training = LeNetTraining {
        steps: 8,
        batch: 32,
        ..LeNetTraining::default()
    };
    let weights = |t: &LeNetTraining| -> anyhow::Result<Vec<Vec<f32>>> {
        let (vm, _) = train_lenet(&x, &y, t, false)?;
        let (_, vars) = train::named_vars(&vm);
        Ok(vars
            .iter()
            .map(|v| v.as_tensor().flatten_all().unwrap().to_vec1().unwrap())
            .collect())
    };
    let a = weights(&training)?;
    assert_eq!(a, weights(&training)?);
    assert_ne!(
        a,
        weights(&LeNetTraining {
            seed: 1,
            ..training
        })?
    );
    Ok(())
}

#[test]
fn images_the_network_cannot_take_are_refused() {
    let cpu = Device::Cpu;
    let msg = |t: Tensor| prepare_images(&t).unwrap_err().to_string();
    assert!(msg(Tensor::zeros((2, 3, 28, 28), DType::F32, &cpu).unwrap()).contains("grey"));
    assert!(msg(Tensor::zeros((2, 1, 20, 20), DType::F32, &cpu).unwrap()).contains("28 x 28"));
    let bright = (Tensor::ones((2, 28, 28), DType::F32, &cpu).unwrap() * 255.0).unwrap();
    assert!(msg(bright).contains("[0, 255]"));
    assert!(prepare_images(&Tensor::ones((2, 28, 28), DType::F64, &cpu).unwrap()).is_ok());
}
