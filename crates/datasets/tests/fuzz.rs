//! Fuzz-style robustness: random bytes and randomly mutated or truncated valid files fed to
//! every parser must give `Ok` or a typed error, never a panic.

mod common;

use std::path::Path;

use common::*;
use datasets::gzip::gunzip;
use datasets::idx::parse_idx;
use datasets::mat::parse_mat;
use datasets::uci::parse_table;
use datasets::{parse_cifar_batch, parse_frey, parse_svhn, CIFAR_RECORD};
use proptest::prelude::*;

fn run_all(bytes: &[u8]) {
    let p = Path::new("fuzz");
    let _ = gunzip(bytes, p);
    let _ = parse_idx(bytes, p);
    let _ = parse_cifar_batch(bytes, p);
    let _ = parse_mat(bytes, p);
    let _ = parse_svhn(bytes, p);
    let _ = parse_frey(bytes, p);
    let text = String::from_utf8_lossy(bytes);
    let _ = parse_table(&text, ';', p);
    let _ = parse_table(&text, ',', p);
}

fn seeds() -> Vec<Vec<u8>> {
    let small_svhn = {
        let x = vec![9u8; 32 * 32 * 3];
        mat_file(
            &[
                MatVar::U8("X", vec![32, 32, 3, 1], x),
                MatVar::F64("y", vec![1, 1], vec![3.0]),
            ],
            true,
        )
    };
    vec![
        gzip(&idx(&[2, 2, 2], &[1, 2, 3, 4, 5, 6, 7, 8])),
        idx(&[3], &[1, 2, 3]),
        (0..CIFAR_RECORD).map(|i| (i % 10) as u8).collect(),
        mat_file(&[MatVar::F64("a", vec![1, 2], vec![1.0, 2.0])], false),
        small_svhn,
        b"\"a\";\"b\"\n1;2\n3;4\n".to_vec(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        run_all(&bytes);
        // Also behind a valid MAT header, to reach the element parser.
        let mut mat = mat_file(&[], false);
        mat.extend_from_slice(&bytes);
        run_all(&mat);
    }

    #[test]
    fn mutated_valid_files_never_panic(
        which in 0usize..6,
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
    ) {
        let mut bytes = seeds()[which].clone();
        for (at, value) in flips {
            let i = at.index(bytes.len());
            bytes[i] = value;
        }
        if truncate {
            bytes.truncate(cut.index(bytes.len() + 1));
        }
        run_all(&bytes);
    }
}
