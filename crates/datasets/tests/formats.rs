//! Parsers and loaders on small files written by the tests in the real binary formats (IDX,
//! CIFAR-10 batches, SVHN and Frey face MAT-files, uncompressed and compressed), and the clear
//! errors for every kind of bad file: truncated or corrupt gzip, wrong IDX magic or dimensions,
//! checksum mismatch, malformed CSV rows, wrong MAT header, missing files; and the shapes of the
//! 2-D toy densities.

mod common;

use std::path::Path;

use candle_core::Device;
use common::*;
use datasets::gzip::{gunzip, gunzip_idx};
use datasets::idx::parse_idx;
use datasets::mat::{parse_mat, MatData};
use datasets::registry::verify;
use datasets::uci::parse_table;
use datasets::{
    load_cifar10, load_idx_dataset, load_svhn, parse_cifar_batch, parse_frey, Batcher,
    Checkerboard, DataError, GaussianMixture, IdxDataset, CIFAR_RECORD,
};

fn p() -> &'static Path {
    Path::new("test-file")
}

fn err_text<T: std::fmt::Debug>(r: datasets::Result<T>) -> String {
    r.expect_err("expected an error").to_string()
}

#[test]
fn idx_round_trip_and_errors() {
    let data: Vec<u8> = (0..24).collect();
    let a = parse_idx(&idx(&[2, 3, 4], &data), p()).unwrap();
    assert_eq!(a.dims, vec![2, 3, 4]);
    assert_eq!(a.data, data);
    assert!(err_text(parse_idx(&[1, 0, 8, 1, 0, 0, 0, 1, 5], p())).contains("wrong IDX magic"));
    assert!(err_text(parse_idx(&idx(&[2, 3], &data[..5]), p()))
        .contains("need 6 data bytes, the file has 5"));
    let mut float = idx(&[1], &[0, 0, 0, 0]);
    float[2] = 0x0d;
    assert!(err_text(parse_idx(&float, p())).contains("element type 0x0d"));
    assert!(err_text(parse_idx(&[0, 0, 8, 9], p())).contains("9 dimensions"));
    assert!(err_text(parse_idx(&[0, 0, 8], p())).contains("no header"));
}

#[test]
fn gzip_errors_are_clear() {
    let gz = gzip(b"hello world, this is a test of the gzip reader");
    assert_eq!(
        gunzip(&gz, p()).unwrap(),
        b"hello world, this is a test of the gzip reader"
    );
    assert!(
        matches!(
            gunzip(&gz[..gz.len() - 6], p()),
            Err(DataError::Gzip { .. })
        ),
        "truncated"
    );
    let mut corrupt = gz.clone();
    let n = corrupt.len();
    corrupt[n - 8] ^= 0xff; // CRC
    assert!(
        matches!(gunzip(&corrupt, p()), Err(DataError::Gzip { .. })),
        "bad CRC"
    );
    assert!(err_text(gunzip(b"plain text, not gzip at all", p())).contains("not a gzip file"));
    let mut trailing = gz.clone();
    trailing.extend_from_slice(b"junk");
    assert!(gunzip(&trailing, p()).is_err(), "trailing bytes");
}

#[test]
fn mnist_loader_checks_headers_and_reports_missing_files() {
    let dir = temp_dir("mnist-bad");
    let e = load_idx_dataset(&dir, IdxDataset::Mnist, &Device::Cpu).unwrap_err();
    assert!(matches!(e, DataError::Missing { .. }));
    let msg = e.to_string();
    assert!(
        msg.contains("cargo xtask download mnist") && msg.contains("FDSM_DATA_DIR"),
        "{msg}"
    );
    // Files with the right names but the wrong image size.
    let m = dir.join("mnist");
    std::fs::create_dir_all(&m).unwrap();
    std::fs::write(
        m.join("train-images-idx3-ubyte.gz"),
        gzip(&idx(&[2, 27, 28], &vec![0; 2 * 27 * 28])),
    )
    .unwrap();
    std::fs::write(
        m.join("train-labels-idx1-ubyte.gz"),
        gzip(&idx(&[2], &[1, 2])),
    )
    .unwrap();
    std::fs::write(
        m.join("t10k-images-idx3-ubyte.gz"),
        gzip(&idx(&[1, 28, 28], &[0; 784])),
    )
    .unwrap();
    std::fs::write(m.join("t10k-labels-idx1-ubyte.gz"), gzip(&idx(&[1], &[3]))).unwrap();
    let msg = load_idx_dataset(&dir, IdxDataset::Mnist, &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("expected 60000 images of 28 x 28"), "{msg}");
}

#[test]
fn checksum_mismatch_is_reported() {
    let dir = temp_dir("checksum");
    let f = dir.join("file.bin");
    std::fs::write(&f, b"abc").unwrap();
    // sha256("abc") is ba7816bf...
    verify(
        &f,
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
    )
    .unwrap();
    let e = verify(&f, &"0".repeat(64)).unwrap_err();
    assert!(matches!(e, DataError::Checksum { .. }));
    assert!(e.to_string().contains("download it again"));
}

#[test]
fn csv_rows_are_validated() {
    let t = parse_table("\"a\";\"b\"\n1;2.5\n3.38e-005;-4\n", ';', p()).unwrap();
    assert_eq!(t.columns, vec!["a", "b"]);
    assert_eq!(t.rows, vec![vec![1.0, 2.5], vec![3.38e-5, -4.0]]);
    let e = parse_table("a;b\n1;2\n3\n", ';', p()).unwrap_err();
    assert!(matches!(e, DataError::Csv { line: 3, .. }), "{e}");
    assert!(e.to_string().contains("expected 2 fields, found 1"));
    assert!(parse_table("a,b\n1,x\n", ',', p())
        .unwrap_err()
        .to_string()
        .contains("field 2 (\"x\") is not a finite number"));
    assert!(parse_table("a,b\n1,nan\n", ',', p()).is_err());
    assert!(parse_table("", ',', p())
        .unwrap_err()
        .to_string()
        .contains("empty"));
    assert!(parse_table("a,b\n", ',', p())
        .unwrap_err()
        .to_string()
        .contains("no data rows"));
}

fn cifar_record(label: u8, seed: u8) -> Vec<u8> {
    let mut r = vec![label];
    r.extend((0..CIFAR_RECORD - 1).map(|i| (i as u8).wrapping_mul(7).wrapping_add(seed)));
    r
}

#[test]
fn cifar10_batches_load_in_record_order() {
    let dir = temp_dir("cifar");
    let (train, test) = datasets::cifar10_files();
    for (k, f) in train.iter().chain(std::iter::once(&test)).enumerate() {
        let path = dir.join(f);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let bytes: Vec<u8> = (0..2)
            .flat_map(|j| cifar_record(((k * 2 + j) % 10) as u8, (k * 2 + j) as u8))
            .collect();
        std::fs::write(path, bytes).unwrap();
    }
    let d = load_cifar10(&dir, &Device::Cpu).unwrap();
    assert_eq!(d.train.images.dims(), &[10, 3, 32, 32]);
    assert_eq!(d.test.images.dims(), &[2, 3, 32, 32]);
    assert_eq!(
        d.train.labels.to_vec1::<u8>().unwrap(),
        vec![0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
    );
    // Image 3 was written with seed 3: the pixel at channel 1, row 2, column 5 is byte 1024 + 69.
    let v = d
        .train
        .images
        .get(3)
        .unwrap()
        .get(1)
        .unwrap()
        .get(2)
        .unwrap()
        .get(5)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert_eq!(
        v,
        f32::from(((1024 + 69) as u8).wrapping_mul(7).wrapping_add(3)) / 255.0
    );
    assert!(err_text(parse_cifar_batch(&[0; CIFAR_RECORD + 1], p()))
        .contains("whole number of CIFAR-10 records"));
    assert!(err_text(parse_cifar_batch(&cifar_record(12, 0), p())).contains("label 12"));
    std::fs::remove_file(dir.join(&test)).unwrap();
    assert!(matches!(
        load_cifar10(&dir, &Device::Cpu),
        Err(DataError::Missing { .. })
    ));
}

/// Column-major SVHN pixels with a value that encodes (i, c, h, w).
fn svhn_file(n: usize, labels: &[f64], compressed: bool) -> Vec<u8> {
    let mut x = vec![0u8; 32 * 32 * 3 * n];
    for i in 0..n {
        for c in 0..3 {
            for h in 0..32 {
                for w in 0..32 {
                    x[h + 32 * w + 1024 * c + 3072 * i] = (i * 50 + c * 20 + h + 3 * w) as u8;
                }
            }
        }
    }
    mat_file(
        &[
            MatVar::U8("X", vec![32, 32, 3, n as u32], x),
            MatVar::F64("y", vec![n as u32, 1], labels.to_vec()),
        ],
        compressed,
    )
}

#[test]
fn svhn_mat_files_load_with_the_right_layout_and_labels() {
    for compressed in [false, true] {
        let dir = temp_dir(&format!("svhn-{compressed}"));
        std::fs::create_dir_all(dir.join("svhn")).unwrap();
        std::fs::write(
            dir.join("svhn/train_32x32.mat"),
            svhn_file(3, &[10.0, 1.0, 7.0], compressed),
        )
        .unwrap();
        std::fs::write(
            dir.join("svhn/test_32x32.mat"),
            svhn_file(1, &[4.0], compressed),
        )
        .unwrap();
        let d = load_svhn(&dir, &Device::Cpu).unwrap();
        assert_eq!(d.train.images.dims(), &[3, 3, 32, 32]);
        assert_eq!(
            d.train.labels.to_vec1::<u8>().unwrap(),
            vec![0, 1, 7],
            "label 10 is the digit 0"
        );
        let px = |i: usize, c: usize, h: usize, w: usize| {
            d.train
                .images
                .get(i)
                .unwrap()
                .get(c)
                .unwrap()
                .get(h)
                .unwrap()
                .get(w)
                .unwrap()
                .to_scalar::<f32>()
                .unwrap()
        };
        assert_eq!(px(2, 1, 5, 9), (2 * 50 + 20 + 5 + 27) as f32 / 255.0);
        assert_eq!(px(0, 2, 31, 0), (40 + 31) as f32 / 255.0);
    }
    let bad = svhn_file(1, &[11.0], false);
    assert!(err_text(datasets::parse_svhn(&bad, p())).contains("outside 1..=10"));
}

#[test]
fn mat_reader_handles_both_layouts_and_rejects_bad_headers() {
    for compressed in [false, true] {
        let bytes = mat_file(
            &[
                MatVar::F64("a", vec![2, 2], vec![1.0, -2.0, 3.5, 4.0]),
                MatVar::U8("b", vec![1, 3], vec![7, 8, 9]),
            ],
            compressed,
        );
        let arrays = parse_mat(&bytes, p()).unwrap();
        assert_eq!(arrays.len(), 2);
        assert_eq!(arrays[0].name, "a");
        assert_eq!(arrays[0].data, MatData::F64(vec![1.0, -2.0, 3.5, 4.0]));
        assert_eq!(arrays[1].data, MatData::U8(vec![7, 8, 9]));
    }
    let mut bad = mat_file(&[], false);
    bad[..6].copy_from_slice(b"NOTMAT");
    assert!(err_text(parse_mat(&bad, p())).contains("not a MATLAB level-5 MAT-file"));
    let mut endian = mat_file(&[], false);
    endian[126..128].copy_from_slice(b"XX");
    assert!(err_text(parse_mat(&endian, p())).contains("endian"));
    assert!(err_text(parse_mat(b"MATLAB 5.0 MAT-file", p())).contains("too short"));
    let good = mat_file(&[MatVar::U8("b", vec![1, 3], vec![7, 8, 9])], false);
    assert!(err_text(parse_mat(&good[..good.len() - 12], p())).contains("runs past the end"));
    let wrong_dims = mat_file(&[MatVar::U8("b", vec![2, 3], vec![7, 8, 9])], false);
    assert!(err_text(parse_mat(&wrong_dims, p())).contains("dimensions [2, 3] but 3 values"));
}

#[test]
fn frey_face_parser_checks_the_variable() {
    let pixels: Vec<u8> = (0..560 * 1965).map(|i| (i % 251) as u8).collect();
    let bytes = mat_file(&[MatVar::U8("ff", vec![560, 1965], pixels.clone())], false);
    assert_eq!(parse_frey(&bytes, p()).unwrap(), pixels);
    let wrong = mat_file(&[MatVar::U8("ff", vec![1965, 560], pixels)], false);
    assert!(err_text(parse_frey(&wrong, p())).contains("expected [560, 1965]"));
    let other = mat_file(&[MatVar::U8("gg", vec![1, 1], vec![0])], false);
    assert!(err_text(parse_frey(&other, p())).contains("no variable \"ff\""));
}

#[test]
fn synthetic_sets_are_seeded_and_on_their_support() {
    let cb = Checkerboard::default();
    let a = cb.sample(5000, 3, &Device::Cpu).unwrap();
    assert_eq!(
        a.to_vec2::<f64>().unwrap(),
        cb.sample(5000, 3, &Device::Cpu)
            .unwrap()
            .to_vec2::<f64>()
            .unwrap()
    );
    let pts = a.to_vec2::<f64>().unwrap();
    assert!(
        pts.iter().all(|r| cb.log_density(r[0], r[1]).is_finite()),
        "every sample on a black cell"
    );
    let lower = pts.iter().filter(|r| r[0] < 0.5).count() as f64 / 5000.0;
    assert!((lower - 0.5).abs() < 0.03, "both cells used: {lower}");
    assert_eq!(cb.log_density(0.25, 0.25), -(0.5f64.ln()));
    assert_eq!(cb.log_density(0.75, 0.25), f64::NEG_INFINITY);
    assert!(Checkerboard { cells: 1 }
        .sample(1, 0, &Device::Cpu)
        .is_err());

    let gm = GaussianMixture::ring(8, 2.0, 0.1);
    let s = gm
        .sample(4000, 1, &Device::Cpu)
        .unwrap()
        .to_vec2::<f64>()
        .unwrap();
    let mean_r: f64 = s
        .iter()
        .map(|r| (r[0] * r[0] + r[1] * r[1]).sqrt())
        .sum::<f64>()
        / 4000.0;
    assert!((mean_r - 2.0).abs() < 0.02, "{mean_r}");
    // Normalised: a Riemann sum of the density over [-3, 3]^2 is 1.
    let h = 0.02;
    let mass: f64 = (0..300)
        .flat_map(|i| (0..300).map(move |j| (i, j)))
        .map(|(i, j)| {
            gm.log_density(&[-3.0 + (i as f64 + 0.5) * h, -3.0 + (j as f64 + 0.5) * h])
                .unwrap()
                .exp()
                * h
                * h
        })
        .sum();
    assert!((mass - 1.0).abs() < 1e-3, "{mass}");
    assert!(GaussianMixture {
        means: vec![vec![0.0]],
        weights: vec![1.0, 2.0],
        std: 1.0
    }
    .sample(1, 0, &Device::Cpu)
    .is_err());
}

#[test]
fn batcher_is_a_pure_function_of_the_step() {
    let mut a = Batcher::new(10, 3, 42).unwrap();
    let mut b = Batcher::new(10, 3, 42).unwrap();
    assert_eq!(a.batches_per_epoch(), 3);
    let seq: Vec<Vec<u32>> = (0..7).map(|s| a.indices(s).to_vec()).collect();
    // Asking out of order (as after a resume) gives the same batches.
    assert_eq!(b.indices(5).to_vec(), seq[5]);
    assert_eq!(b.indices(1).to_vec(), seq[1]);
    // Within an epoch, batches are disjoint.
    let mut epoch0: Vec<u32> = seq[..3].concat();
    epoch0.sort();
    epoch0.dedup();
    assert_eq!(epoch0.len(), 9);
    assert_ne!(seq[0], seq[3], "a new permutation each epoch");
    assert!(Batcher::new(2, 3, 0).is_err());
    let data = candle_core::Tensor::arange(0u32, 10, &Device::Cpu).unwrap();
    assert_eq!(a.batch(&data, 4).unwrap().to_vec1::<u32>().unwrap(), seq[4]);
}

/// A gzipped IDX file whose data runs past what its header declares is rejected after that many
/// bytes (a decompression bomb is not inflated to the global limit first); a matching one
/// inflates exactly.
#[test]
fn gzipped_idx_inflates_no_more_than_its_header_declares() {
    let good = idx(&[2, 3], &[1, 2, 3, 4, 5, 6]);
    assert_eq!(gunzip_idx(&gzip(&good), p()).unwrap(), good);
    let mut bomb = idx(&[2], &[7, 7]);
    bomb.extend(std::iter::repeat_n(0u8, 20_000_000));
    let msg = err_text(gunzip_idx(&gzip(&bomb), p()));
    assert!(
        msg.contains("more than 10 bytes") && msg.contains("IDX header"),
        "{msg}"
    );
    assert!(err_text(gunzip_idx(&gzip(&[0, 0, 8, 9]), p())).contains("9 dimensions"));
}

/// A wine-quality file with the wrong columns (here only the quality score) is refused naming
/// the expected columns instead of loading as an empty tensor.
#[test]
fn a_wine_file_with_the_wrong_columns_is_refused() {
    let dir = temp_dir("wine-columns");
    let w = dir.join("wine-quality");
    std::fs::create_dir_all(&w).unwrap();
    let mut text = String::from("\"quality\"\n");
    for r in 0..50 {
        text += &format!("{}\n", 3 + r % 5);
    }
    std::fs::write(w.join("winequality-red.csv"), text).unwrap();
    let e = datasets::uci::load_uci(
        &dir,
        datasets::uci::UciDataset::RedWine,
        datasets::uci::UciOptions::default(),
        &Device::Cpu,
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("expected the 12 wine-quality columns") && e.contains("found 1"),
        "{e}"
    );
}

/// The gallery's 2-D densities: seeded, inside their stated square, and of their stated shape
/// (checkerboard points in the filled squares, ring radii near 1, 2, 3 in proportion 1:2:3, the
/// eight Gaussians' points nearest their means within 4 std, moons and spiral within their
/// radii); unknown names are refused with the list.
#[test]
fn toy_densities_have_their_stated_shapes() {
    use datasets::Toy2d;
    let dev = candle_core::Device::Cpu;
    let n = 6000;
    for t in Toy2d::ALL {
        let a = t.sample(n, 5, &dev).unwrap().to_vec2::<f64>().unwrap();
        let b = t.sample(n, 5, &dev).unwrap().to_vec2::<f64>().unwrap();
        assert_eq!(a, b, "{t:?}: seeded");
        assert_eq!(Toy2d::parse(t.key()).unwrap(), t);
        let inside = a
            .iter()
            .filter(|p| p[0].abs() <= 4.5 && p[1].abs() <= 4.5)
            .count();
        assert!(
            inside as f64 >= 0.999 * n as f64,
            "{t:?}: {inside} of {n} inside"
        );
        let r: Vec<f64> = a.iter().map(|p| p[0].hypot(p[1])).collect();
        match t {
            Toy2d::Checkerboard => assert!(a.iter().all(|p| {
                let cell = |v: f64| ((v + 4.0) / 2.0).floor() as i64;
                (cell(p[0]) + cell(p[1])) % 2 == 0
            })),
            Toy2d::Rings => {
                let count = |c: f64| r.iter().filter(|&&x| (x - c).abs() < 0.4).count() as f64;
                let (c1, c2, c3) = (count(1.0), count(2.0), count(3.0));
                assert!((c1 + c2 + c3) as usize > n * 99 / 100);
                assert!(
                    (c2 / c1 - 2.0).abs() < 0.3 && (c3 / c1 - 3.0).abs() < 0.45,
                    "{c1} {c2} {c3}"
                );
            }
            Toy2d::EightGaussians => assert!(a.iter().all(|p| {
                (0..8).any(|k| {
                    let ang = std::f64::consts::PI * k as f64 / 4.0;
                    (p[0] - 3.0 * ang.cos()).hypot(p[1] - 3.0 * ang.sin()) < 4.0 * 0.3 * 1.5
                })
            })),
            Toy2d::TwoMoons => assert!(r.iter().all(|&x| x < 4.0)),
            Toy2d::Spiral => {
                assert!(r.iter().all(|&x| x < 4.6));
                let mean_r = r.iter().sum::<f64>() / n as f64;
                // r = 0.3 + 3.7 s with s = sqrt(u): E r = 0.3 + 3.7 * 2/3.
                assert!((mean_r - (0.3 + 3.7 * 2.0 / 3.0)).abs() < 0.05, "{mean_r}");
            }
        }
    }
    let err = Toy2d::parse("moons").unwrap_err().to_string();
    assert!(err.contains("two-moons"), "{err}");
}
