//! The `eval fid` command end to end: MNIST test images scored against MNIST have a small FID
//! (LeNet features) and Fashion-MNIST images a large one, from a safetensors file and from a
//! directory of PNGs; too few samples, pixel values in [0, 255] and an ambiguous file are refused
//! with a message. Skipped, with the reason printed, when the data are absent (a failure when the
//! data must be there).

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use candle_core::{Device, Tensor};

fn eval(data: &Path, args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_eval"))
        .args(["fid", "--no-progress", "--data-dir"])
        .arg(data)
        .arg("--cache-dir")
        // The network the sample-quality tests train, when they ran first in this target.
        .arg(PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("feature-nets"))
        .args(args)
        .output()
        .unwrap()
}

fn save(t: &Tensor, path: &Path) {
    t.save_safetensors("samples", path).unwrap();
}

#[test]
fn fid_of_real_images_from_files_and_folders() {
    let Some(data) = common::data_dir_with("fashion-mnist/t10k-images-idx3-ubyte.gz") else {
        return;
    };
    common::data_dir_with("mnist/t10k-images-idx3-ubyte.gz").unwrap();
    let dir =
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("eval-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let cpu = Device::Cpu;
    let mnist = datasets::load_idx_dataset(&data, datasets::IdxDataset::Mnist, &cpu).unwrap();
    let fashion =
        datasets::load_idx_dataset(&data, datasets::IdxDataset::FashionMnist, &cpu).unwrap();
    let fid = |o: &Output| -> f64 {
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let out = String::from_utf8_lossy(&o.stdout);
        let line = out.lines().find(|l| l.starts_with("FID (LeNet")).unwrap();
        line.rsplit(": ").next().unwrap().parse().unwrap()
    };
    let real = dir.join("real.safetensors");
    save(&mnist.train.images.narrow(0, 0, 1000).unwrap(), &real);
    let json = dir.join("fid.json");
    let near = fid(&eval(
        &data,
        &[
            "--samples",
            real.to_str().unwrap(),
            "--reference",
            "mnist",
            "--json",
            json.to_str().unwrap(),
        ],
    ));
    let stored: sample_quality::lenet::LeNetQuality =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert!(
        (stored.fid - near).abs() < 1e-3 && stored.samples == 1000,
        "{stored:?}"
    );
    // The same kind of images as 32 x 32 PNG files (MNIST padded by 2).
    let pngs = dir.join("pngs");
    std::fs::create_dir_all(&pngs).unwrap();
    let padded = fashion
        .test
        .images
        .narrow(0, 0, 200)
        .unwrap()
        .pad_with_zeros(2, 2, 2)
        .unwrap()
        .pad_with_zeros(3, 2, 2)
        .unwrap();
    for i in 0..200 {
        let px: Vec<u8> = (padded.get(i).unwrap().flatten_all().unwrap() * 255.0)
            .unwrap()
            .round()
            .unwrap()
            .to_dtype(candle_core::DType::U8)
            .unwrap()
            .to_vec1()
            .unwrap();
        image::GrayImage::from_raw(32, 32, px)
            .unwrap()
            .save(pngs.join(format!("{i:04}.png")))
            .unwrap();
    }
    let far = fid(&eval(
        &data,
        &["--samples", pngs.to_str().unwrap(), "--reference", "mnist"],
    ));
    assert!(near * 20.0 < far, "MNIST {near}, Fashion-MNIST {far}");

    let refused = |args: &[&str], needle: &str| {
        let o = eval(&data, args);
        assert!(!o.status.success());
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(needle), "{needle:?} not in {err}");
    };
    let few = dir.join("few.safetensors");
    save(&mnist.test.images.narrow(0, 0, 50).unwrap(), &few);
    refused(
        &["--samples", few.to_str().unwrap(), "--reference", "mnist"],
        "needs at least 129 samples, got 50",
    );
    let bytes = dir.join("bytes.safetensors");
    save(
        &(mnist.test.images.narrow(0, 0, 200).unwrap() * 255.0).unwrap(),
        &bytes,
    );
    refused(
        &["--samples", bytes.to_str().unwrap(), "--reference", "mnist"],
        "[0, 255]",
    );
    let two = dir.join("two.safetensors");
    let t = mnist.test.images.narrow(0, 0, 200).unwrap();
    candle_core::safetensors::save(
        &std::collections::HashMap::from([("a".to_string(), t.clone()), ("b".to_string(), t)]),
        &two,
    )
    .unwrap();
    refused(
        &["--samples", two.to_str().unwrap(), "--reference", "mnist"],
        "choose one with --tensor",
    );
    // Inception features need more samples than their 2048 dimensions: said before anything is
    // downloaded or computed.
    let colour = dir.join("colour.safetensors");
    save(
        &Tensor::zeros((10, 3, 32, 32), candle_core::DType::F32, &cpu).unwrap(),
        &colour,
    );
    refused(
        &[
            "--samples",
            colour.to_str().unwrap(),
            "--reference",
            "cifar-10",
        ],
        "at least 2049",
    );
    let _ = std::fs::remove_dir_all(&dir);
}
