//! The loaders on the genuine published files (the data directory of `FDSM_DATA_DIR`, or
//! `../shared/data` beside the checkout): checksums, shapes, known values, preprocessing. Each
//! test is skipped, with the reason printed, when its file is absent.

mod common;

use candle_core::{DType, Device, Tensor};
use common::shared_data;
use datasets::registry::{verify, FILES};
use datasets::{load_frey_face, load_idx_dataset, load_uci, IdxDataset, UciDataset, UciOptions};

fn mean(t: &Tensor) -> f64 {
    t.to_dtype(DType::F64)
        .unwrap()
        .mean_all()
        .unwrap()
        .to_scalar::<f64>()
        .unwrap()
}

#[test]
fn shared_files_match_the_registry_checksums() {
    let Some(dir) = shared_data("mnist") else {
        return;
    };
    let mut checked = 0;
    for f in FILES {
        let path = dir.join(f.path);
        if path.is_file() {
            verify(&path, f.sha256).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(
                std::fs::metadata(&path).unwrap().len(),
                f.size,
                "{}",
                f.path
            );
            checked += 1;
        }
    }
    assert!(
        checked >= 12,
        "only {checked} registry files found in {}",
        dir.display()
    );
}

#[test]
fn mnist_loads_with_known_statistics() {
    let Some(dir) = shared_data("mnist/train-images-idx3-ubyte.gz") else {
        return;
    };
    let d = load_idx_dataset(&dir, IdxDataset::Mnist, &Device::Cpu).unwrap();
    assert_eq!(d.train.images.dims(), &[60000, 1, 28, 28]);
    assert_eq!(d.test.images.dims(), &[10000, 1, 28, 28]);
    // Well-known facts: the first training digit is a 5, the first test digit a 7, and the mean
    // training pixel is 0.1307.
    assert_eq!(d.train.labels.get(0).unwrap().to_scalar::<u8>().unwrap(), 5);
    assert_eq!(d.test.labels.get(0).unwrap().to_scalar::<u8>().unwrap(), 7);
    assert!((mean(&d.train.images) - 0.1307).abs() < 5e-4);
    let max = d
        .train
        .images
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert_eq!(max, 1.0);
    let counts = (0..10u8)
        .map(|c| {
            d.train
                .labels
                .to_vec1::<u8>()
                .unwrap()
                .iter()
                .filter(|&&l| l == c)
                .count()
        })
        .collect::<Vec<_>>();
    assert_eq!(counts[1], 6742, "MNIST has 6742 training ones");
}

#[test]
fn fashion_mnist_loads_with_known_statistics() {
    let Some(dir) = shared_data("fashion-mnist/train-images-idx3-ubyte.gz") else {
        return;
    };
    let d = load_idx_dataset(&dir, IdxDataset::FashionMnist, &Device::Cpu).unwrap();
    assert_eq!(d.train.images.dims(), &[60000, 1, 28, 28]);
    assert_eq!(
        d.train.labels.get(0).unwrap().to_scalar::<u8>().unwrap(),
        9,
        "the first item is an ankle boot"
    );
    assert!((mean(&d.train.images) - 0.2860).abs() < 5e-4);
    // Fashion-MNIST is balanced: 6000 of every class.
    let labels = d.train.labels.to_vec1::<u8>().unwrap();
    assert!((0..10u8).all(|c| labels.iter().filter(|&&l| l == c).count() == 6000));
}

#[test]
fn frey_face_loads_and_splits_in_file_order() {
    let Some(dir) = shared_data("frey-face/frey_rawface.mat") else {
        return;
    };
    let f = load_frey_face(&dir, &Device::Cpu).unwrap();
    assert_eq!(f.train.dims(), &[1400, 560]);
    assert_eq!(f.validation.dims(), &[300, 560]);
    assert_eq!(f.test.dims(), &[265, 560]);
    let all = Tensor::cat(&[&f.train, &f.validation, &f.test], 0).unwrap();
    // The published pixel range is 8..=238.
    assert_eq!(
        all.min_all().unwrap().to_scalar::<f32>().unwrap(),
        8.0 / 255.0
    );
    assert_eq!(
        all.max_all().unwrap().to_scalar::<f32>().unwrap(),
        238.0 / 255.0
    );
    // File order: the first image is the first 560 bytes after the 184-byte header.
    let raw = std::fs::read(dir.join("frey-face/frey_rawface.mat")).unwrap();
    let first: Vec<f32> = raw[184..184 + 560]
        .iter()
        .map(|&b| f32::from(b) / 255.0)
        .collect();
    assert_eq!(f.train.get(0).unwrap().to_vec1::<f32>().unwrap(), first);
}

fn covariance(t: &Tensor) -> Vec<Vec<f64>> {
    let rows = t.to_vec2::<f64>().unwrap();
    let (n, d) = (rows.len() as f64, rows[0].len());
    let mu: Vec<f64> = (0..d)
        .map(|j| rows.iter().map(|r| r[j]).sum::<f64>() / n)
        .collect();
    (0..d)
        .map(|i| {
            (0..d)
                .map(|j| {
                    rows.iter()
                        .map(|r| (r[i] - mu[i]) * (r[j] - mu[j]))
                        .sum::<f64>()
                        / n
                })
                .collect()
        })
        .collect()
}

#[test]
fn uci_sets_follow_the_dkef_preprocessing() {
    let Some(dir) = shared_data("wine-quality/winequality-red.csv") else {
        return;
    };
    for (which, n, d) in [
        (UciDataset::RedWine, 1599, 11),
        (UciDataset::WhiteWine, 4898, 11),
        (UciDataset::Parkinsons, 5875, 15),
    ] {
        let Some(_) = shared_data(if which == UciDataset::Parkinsons {
            "parkinsons-telemonitoring/parkinsons_updrs.data"
        } else {
            "wine-quality"
        }) else {
            continue;
        };
        let s = load_uci(&dir, which, UciOptions::default(), &Device::Cpu).unwrap();
        let n_test = (n / 10).min(1000);
        let n_val = ((n - n_test) / 10).min(1000);
        assert_eq!(s.test.dims(), &[n_test, d], "{which:?}");
        assert_eq!(s.validation.dims(), &[n_val, d]);
        assert_eq!(s.train.dims(), &[n - n_test - n_val, d]);
        // Whitened on the whole set, plus N(0, 0.05^2) noise: covariance ~ (1 + 0.0025) I.
        let all = Tensor::cat(&[&s.train, &s.validation, &s.test], 0).unwrap();
        let cov = covariance(&all);
        for i in 0..d {
            for j in 0..d {
                let target = if i == j { 1.0025 } else { 0.0 };
                assert!(
                    (cov[i][j] - target).abs() < 0.01,
                    "{which:?}: cov[{i}][{j}] = {}",
                    cov[i][j]
                );
            }
        }
        // Deterministic given the seed, different for another seed.
        let again = load_uci(&dir, which, UciOptions::default(), &Device::Cpu).unwrap();
        assert_eq!(
            s.train.to_vec2::<f64>().unwrap(),
            again.train.to_vec2::<f64>().unwrap()
        );
        let other = load_uci(
            &dir,
            which,
            UciOptions {
                seed: 1,
                ..Default::default()
            },
            &Device::Cpu,
        )
        .unwrap();
        assert_ne!(
            s.train.to_vec2::<f64>().unwrap(),
            other.train.to_vec2::<f64>().unwrap()
        );
        if which == UciDataset::Parkinsons {
            // The 15 columns the DKEF code keeps (shared/data README).
            let expected = [
                "test_time",
                "motor_UPDRS",
                "total_UPDRS",
                "Jitter(Abs)",
                "Jitter:PPQ5",
                "Jitter:DDP",
                "Shimmer(dB)",
                "Shimmer:APQ5",
                "Shimmer:APQ11",
                "Shimmer:DDA",
                "NHR",
                "HNR",
                "RPDE",
                "DFA",
                "PPE",
            ];
            assert_eq!(s.columns, expected);
        }
    }
}
