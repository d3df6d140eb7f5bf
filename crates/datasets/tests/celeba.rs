//! CelebA from a folder of JPEGs: faces written here in the distribution's size (178 x 218),
//! each a flat colour of its own, come back cropped, resized and split with their colours (JPEG
//! keeps a flat colour to within a few levels); the split is a partition of the files; a missing
//! folder says how to get the data set; a file that is not a JPEG is named.

use std::collections::HashSet;

use candle_core::Device;
use datasets::{celeba_split, load_celeba, CelebaOptions, DataError};

fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("celeba-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The flat colour of face `i`.
fn colour(i: usize) -> [u8; 3] {
    [(20 + 9 * i) as u8, (200 - 7 * i) as u8, (60 + 5 * i) as u8]
}

fn write_faces(dir: &std::path::Path, n: usize) {
    for i in 0..n {
        let img = image::RgbImage::from_pixel(178, 218, image::Rgb(colour(i)));
        img.save(dir.join(format!("{:06}.jpg", i + 1))).unwrap();
    }
}

#[test]
fn faces_load_cropped_resized_and_split() {
    let dir = scratch("load");
    write_faces(&dir, 20);
    let opts = CelebaOptions {
        size: 16,
        ..CelebaOptions::default()
    };
    let count = std::sync::atomic::AtomicUsize::new(0);
    let splits = load_celeba(&dir, &opts, &Device::Cpu, &|| {
        count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    })
    .unwrap();
    assert_eq!(splits.train.dims(), [14, 3, 16, 16]);
    assert_eq!(splits.test.dims(), [2, 3, 16, 16]);
    assert_eq!(count.into_inner(), 16);
    // Each face's planes hold its colour; the faces are the split's files in its order.
    let (train_idx, test_idx) = celeba_split(20, &opts);
    for (tensor, idx) in [(&splits.train, &train_idx), (&splits.test, &test_idx)] {
        let v = tensor.flatten_all().unwrap().to_vec1::<u8>().unwrap();
        for (k, &i) in idx.iter().enumerate() {
            for c in 0..3 {
                let plane = &v[(k * 3 + c) * 256..(k * 3 + c + 1) * 256];
                let want = i32::from(colour(i)[c]);
                assert!(
                    plane.iter().all(|&p| (i32::from(p) - want).abs() <= 3),
                    "face {i} channel {c}: {:?} vs {want}",
                    &plane[..4]
                );
            }
        }
    }
    let distinct: HashSet<usize> = train_idx.iter().chain(&test_idx).copied().collect();
    assert_eq!(distinct.len(), 16);
    // A cap reads fewer.
    let capped = CelebaOptions {
        max_train: Some(3),
        ..opts
    };
    let small = load_celeba(&dir, &capped, &Device::Cpu, &|| {}).unwrap();
    assert_eq!(small.train.dim(0).unwrap(), 3);
    // A cap of 0 reads only the other split.
    let test_only = CelebaOptions {
        max_train: Some(0),
        ..opts
    };
    let count = std::sync::atomic::AtomicUsize::new(0);
    let only = load_celeba(&dir, &test_only, &Device::Cpu, &|| {
        count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    })
    .unwrap();
    assert_eq!(only.train.dims(), [0, 3, 16, 16]);
    assert_eq!(only.test.dim(0).unwrap(), 2);
    assert_eq!(count.into_inner(), 2);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn missing_and_damaged_files_are_named() {
    let dir = scratch("missing");
    let absent = dir.join("img_align_celeba");
    let err = load_celeba(&absent, &CelebaOptions::default(), &Device::Cpu, &|| {}).unwrap_err();
    assert!(matches!(err, DataError::Missing { .. }), "{err}");
    assert!(err.to_string().contains("img_align_celeba.zip"), "{err}");
    // An empty folder is missing data too.
    std::fs::create_dir_all(&absent).unwrap();
    let err = load_celeba(&absent, &CelebaOptions::default(), &Device::Cpu, &|| {}).unwrap_err();
    assert!(matches!(err, DataError::Missing { .. }), "{err}");
    // A damaged JPEG is named.
    write_faces(&absent, 10);
    std::fs::write(absent.join("000004.jpg"), b"not a jpeg").unwrap();
    let all = CelebaOptions {
        train_percent: 90,
        ..CelebaOptions::default()
    };
    let err = load_celeba(&absent, &all, &Device::Cpu, &|| {}).unwrap_err();
    assert!(matches!(err, DataError::Format { .. }), "{err}");
    assert!(err.to_string().contains("000004.jpg"), "{err}");
    // Percentages that do not fit are refused.
    let bad = CelebaOptions {
        train_percent: 95,
        test_percent: 10,
        ..CelebaOptions::default()
    };
    let err = load_celeba(&absent, &bad, &Device::Cpu, &|| {}).unwrap_err();
    assert!(err.to_string().contains("100%"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
