//! ImageNet 32 x 32 from its `.npz` archives: archives written here in the distribution's layout
//! (stored and deflated members, `uint8` data, `int64` labels) load back pixel for pixel in
//! `[N, 3, 32, 32]` order; a missing archive names itself and how to get the data set; damaged
//! or different archives are refused with the reason.

use std::io::Write;
use std::path::Path;

use candle_core::Device;
use datasets::{imagenet32_files, load_imagenet32, read_npz_array, DataError, NpyArray};

/// The bytes of a version-1 `.npy` file with dtype `descr` and `shape`.
fn npy(descr: &str, shape: &[usize], body: &[u8]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape = if dims.len() == 1 {
        format!("({},)", dims[0])
    } else {
        format!("({})", dims.join(", "))
    };
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    // Padded with spaces so that the data starts at a multiple of 64 bytes, ending in '\n'.
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(body);
    out
}

fn write_npz(path: &Path, members: &[(&str, Vec<u8>)], deflate: bool) {
    let mut zip = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    let method = if deflate {
        zip::CompressionMethod::Deflated
    } else {
        zip::CompressionMethod::Stored
    };
    let opts = zip::write::SimpleFileOptions::default().compression_method(method);
    for (name, bytes) in members {
        zip.start_file(format!("{name}.npy"), opts).unwrap();
        zip.write_all(bytes).unwrap();
    }
    zip.finish().unwrap();
}

/// Image `i` of archive `k`: pixel `p` is `(7 k + 3 i + p) mod 251`.
fn pixels(k: usize, n: usize) -> Vec<u8> {
    (0..n)
        .flat_map(|i| (0..3072).map(move |p| ((7 * k + 3 * i + p) % 251) as u8))
        .collect()
}

fn labels_i64(n: usize, k: usize) -> Vec<u8> {
    (0..n)
        .flat_map(|i| (((i + k) % 1000) as i64 + 1).to_le_bytes())
        .collect()
}

fn write_distribution(dir: &Path) -> Vec<usize> {
    std::fs::create_dir_all(dir).unwrap();
    let (train, val) = imagenet32_files(dir);
    let sizes: Vec<usize> = (0..train.len()).map(|k| 2 + k % 3).collect();
    for (k, f) in train.iter().enumerate() {
        let n = sizes[k];
        write_npz(
            f,
            &[
                ("data", npy("|u1", &[n, 3072], &pixels(k, n))),
                ("labels", npy("<i8", &[n], &labels_i64(n, k))),
                ("mean", npy("<i8", &[1], &7i64.to_le_bytes())),
            ],
            k % 2 == 0,
        );
    }
    write_npz(
        &val,
        &[
            ("data", npy("|u1", &[4, 3072], &pixels(99, 4))),
            ("labels", npy("|u1", &[4], &[1, 2, 3, 250])),
        ],
        true,
    );
    sizes
}

fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("imagenet32-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[test]
fn archives_load_pixel_for_pixel() -> anyhow::Result<()> {
    let dir = scratch("load");
    let sizes = write_distribution(&dir);
    let splits = load_imagenet32(&dir, None, &Device::Cpu)?;
    let total: usize = sizes.iter().sum();
    assert_eq!(splits.train.images.dims(), &[total, 3, 32, 32]);
    assert_eq!(splits.train.images.dtype(), candle_core::DType::U8);
    // Image 1 of archive 3 (after the images of archives 0..3), green plane, row 2, column 5:
    // flat pixel 1024 + 2 * 32 + 5 of its row.
    let offset: usize = sizes[..3].iter().sum::<usize>() + 1;
    let v: u8 = splits
        .train
        .images
        .get(offset)?
        .get(1)?
        .get(2)?
        .get(5)?
        .to_scalar()?;
    assert_eq!(v, ((7 * 3 + 3 + 1024 + 2 * 32 + 5) % 251) as u8);
    let labels: Vec<u32> = splits.train.labels.to_vec1()?;
    // Label of image i of archive k: (i + k) mod 1000 + 1.
    assert_eq!(labels[offset], 5);
    assert_eq!(splits.test.images.dims(), &[4, 3, 32, 32]);
    assert_eq!(splits.test.labels.to_vec1::<u32>()?, vec![1, 2, 3, 250]);
    // A cap on the training images cuts inside the second archive.
    let capped = load_imagenet32(&dir, Some(sizes[0] + 1), &Device::Cpu)?;
    assert_eq!(capped.train.images.dim(0)?, sizes[0] + 1);
    assert_eq!(
        capped
            .train
            .images
            .get(sizes[0])?
            .flatten_all()?
            .to_vec1::<u8>()?,
        pixels(1, 1)
    );
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

#[test]
fn npy_integers_of_every_width_are_widened_with_their_sign() -> anyhow::Result<()> {
    let dir = scratch("ints");
    std::fs::create_dir_all(&dir)?;
    let f = dir.join("a.npz");
    write_npz(
        &f,
        &[
            ("i2", npy("<i2", &[2], &[0xfe, 0xff, 0x05, 0x00])),
            ("u4", npy("<u4", &[1], &0xffff_fffeu32.to_le_bytes())),
        ],
        false,
    );
    assert_eq!(
        read_npz_array(&f, "i2")?,
        NpyArray::Int {
            shape: vec![2],
            data: vec![-2, 5]
        }
    );
    assert_eq!(
        read_npz_array(&f, "u4")?,
        NpyArray::Int {
            shape: vec![1],
            data: vec![0xffff_fffe]
        }
    );
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

#[test]
fn missing_damaged_and_different_archives_are_refused() {
    let dir = scratch("bad");
    let err = load_imagenet32(&dir, None, &Device::Cpu).unwrap_err();
    assert!(matches!(err, DataError::Missing { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("train_data_batch_1.npz") && msg.contains("Imagenet32_train_npz.zip"),
        "{msg}"
    );
    write_distribution(&dir);
    let (train, val) = imagenet32_files(&dir);
    // 64 x 64 images: the wrong version of the data set.
    write_npz(
        &val,
        &[
            ("data", npy("|u1", &[1, 12288], &[0; 12288])),
            ("labels", npy("<i8", &[1], &1i64.to_le_bytes())),
        ],
        false,
    );
    let msg = load_imagenet32(&dir, None, &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("32 x 32 version"), "{msg}");
    // A truncated archive.
    let bytes = std::fs::read(&train[0]).unwrap();
    std::fs::write(&train[0], &bytes[..bytes.len() / 2]).unwrap();
    let err = load_imagenet32(&dir, None, &Device::Cpu).unwrap_err();
    assert!(
        matches!(&err, DataError::Format { path, .. } if path == &train[0]),
        "{err}"
    );
    // A label outside 1..=1000.
    write_npz(
        &train[0],
        &[
            ("data", npy("|u1", &[1, 3072], &[0; 3072])),
            ("labels", npy("<i8", &[1], &0i64.to_le_bytes())),
        ],
        false,
    );
    let msg = load_imagenet32(&dir, None, &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("label 0 outside"), "{msg}");
    std::fs::remove_dir_all(&dir).unwrap();
}
