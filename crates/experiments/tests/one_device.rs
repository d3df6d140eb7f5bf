//! One device per process: `setup::open_device` makes the device once and hands out the same
//! one to every caller and thread, and no other code of the workspace makes a GPU device (a scan
//! of the sources for Candle's device constructors).

use std::path::{Path, PathBuf};

use experiments::setup::{devices_made, open_device};

#[test]
fn the_device_is_made_once_whatever_the_callers() -> anyhow::Result<()> {
    assert_eq!(
        devices_made(),
        0,
        "nothing made a device before the first call"
    );
    let first = open_device()?;
    let others = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4).map(|_| s.spawn(open_device)).collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect::<Result<Vec<_>, _>>()
    })?;
    for device in others.iter().chain([&open_device()?]) {
        assert!(device.same_device(&first));
    }
    assert_eq!(devices_made(), 1, "a second device was made");
    Ok(())
}

/// Rust sources under `dir`, recursively (build output skipped).
fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir)
        .expect("readable directory")
        .flatten()
    {
        let path = entry.path();
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n != "target") {
                sources(&path, out);
            }
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn no_other_code_makes_a_gpu_device() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut files = Vec::new();
    for dir in ["crates", "xtask", "benches", "examples"] {
        sources(&root.join(dir), &mut files);
    }
    assert!(files.len() > 50, "the scan found the workspace's sources");
    let constructors = [
        "Device::new_cuda",
        "Device::new_metal",
        "cuda_if_available",
        "metal_if_available",
    ];
    let this_file = Path::new(file!()).file_name().expect("a file name");
    let mut offenders = Vec::new();
    for file in files {
        if file.file_name() == Some(this_file) {
            continue;
        }
        let text = std::fs::read_to_string(&file).expect("readable source");
        for c in constructors {
            let allowed =
                file.ends_with("crates/experiments/src/setup.rs") && !c.contains("available");
            if text.contains(c) && !allowed {
                offenders.push(format!("{}: {c}", file.display()));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "devices are made only by experiments::setup::open_device; found: {offenders:#?}"
    );
}
