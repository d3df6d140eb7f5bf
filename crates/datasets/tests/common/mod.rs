//! Test helpers: the shared data directory (or a skip reason), and writers of small files in the
//! real binary formats (IDX, gzip, CIFAR-10 batches, MAT level 5) so parsers can be tested on
//! data the tests control.
#![allow(dead_code)]

use std::io::Write;
use std::path::PathBuf;

/// The directory holding the genuine dataset copies, or `None` after printing why the calling
/// test is skipped; a panic naming the missing file when `FDSM_REQUIRE_DATA` is set (as in CI).
pub fn shared_data(needed: &str) -> Option<PathBuf> {
    let fallback = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data");
    datasets::data_for_tests(needed, &fallback).unwrap_or_else(|e| panic!("{e}"))
}

pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

pub fn idx(dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut out = vec![0, 0, 0x08, dims.len() as u8];
    for d in dims {
        out.extend(d.to_be_bytes());
    }
    out.extend_from_slice(data);
    out
}

/// A numeric array for [`mat_file`]: name, dims, and either bytes (stored as miUINT8, class
/// uint8) or doubles (miDOUBLE, class double).
pub enum MatVar<'a> {
    U8(&'a str, Vec<u32>, Vec<u8>),
    F64(&'a str, Vec<u32>, Vec<f64>),
}

fn element(ty: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend(ty.to_le_bytes());
    out.extend((payload.len() as u32).to_le_bytes());
    out.extend_from_slice(payload);
    while out.len() % 8 != 0 {
        out.push(0);
    }
    out
}

fn matrix(var: &MatVar) -> Vec<u8> {
    let (name, dims, class, data) = match var {
        MatVar::U8(n, d, v) => (*n, d, 9u32, element(2, v)),
        MatVar::F64(n, d, v) => (
            *n,
            d,
            6u32,
            element(
                9,
                &v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>(),
            ),
        ),
    };
    let mut body = element(6, &[class.to_le_bytes(), 0u32.to_le_bytes()].concat());
    body.extend(element(
        5,
        &dims
            .iter()
            .flat_map(|d| (*d as i32).to_le_bytes())
            .collect::<Vec<u8>>(),
    ));
    body.extend(element(1, name.as_bytes()));
    body.extend(data);
    element(14, &body)
}

/// A little-endian level-5 MAT-file; `compressed` wraps each variable in a zlib miCOMPRESSED element.
pub fn mat_file(vars: &[MatVar], compressed: bool) -> Vec<u8> {
    let mut out = b"MATLAB 5.0 MAT-file, Platform: test, Created by the fdsm tests".to_vec();
    out.resize(116, b' ');
    out.extend([0u8; 8]);
    out.extend([0x00, 0x01]);
    out.extend(b"IM");
    for v in vars {
        let m = matrix(v);
        if compressed {
            let mut enc = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
            enc.write_all(&m).unwrap();
            let z = enc.finish().unwrap();
            out.extend(15u32.to_le_bytes());
            out.extend((z.len() as u32).to_le_bytes());
            out.extend(z);
        } else {
            out.extend(m);
        }
    }
    out
}

/// A fresh empty directory under the target tmp dir.
/// A fresh, empty directory unique to this call: tests of one binary run in parallel threads of
/// one process, so the process id alone would let two of them share (and wipe) a directory.
pub fn temp_dir(name: &str) -> PathBuf {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("{name}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
