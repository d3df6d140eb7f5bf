//! The CelebA half of Table 6 end to end at a tiny size, on synthetic faces written here as
//! JPEGs in CelebA's layout and size (178 x 218; the real data set must be supplied by the
//! user): both models and both estimators through the convolutional networks (16 x 16 images,
//! width 2, SSMVR in higher-order mode, FD-SSMVR without), the JSON, Markdown and RGB PNG
//! outputs; a run paused with `--stop-after` and resumed trains exactly as an uninterrupted one;
//! without the data the run stops before training, naming the folder and how to get CelebA.
//! FID is off: the Inception weights are a download. Timings are produced, never asserted.

use std::path::{Path, PathBuf};
use std::process::Command;

use experiments::table6::{Estimator, Table6Data, Table6Results};
use models::AutoencoderKind;

/// Faces of smooth colour gradients, each with its own tint, so that the images differ.
fn write_faces(dir: &Path, n: usize) {
    std::fs::create_dir_all(dir).unwrap();
    for i in 0..n {
        let img = image::RgbImage::from_fn(178, 218, |x, y| {
            let t = i as u32 * 11;
            image::Rgb([
                ((x + t) % 256) as u8,
                ((y * 2 + t) % 256) as u8,
                ((x + y + 3 * t) % 256) as u8,
            ])
        });
        img.save(dir.join(format!("{:06}.jpg", i + 1))).unwrap();
    }
}

fn command(faces: &Path, out: &Path, extra: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_experiments"));
    c.args([
        "repro",
        "table6",
        "--data",
        "celeba",
        "--celeba-size",
        "16",
        "--celeba-width",
        "2",
        "--celeba-z-dim",
        "3",
        "--celeba-test-images",
        "6",
        "--iters",
        "3",
        "--batch",
        "4",
        "--seeds",
        "1",
        "--eval-images",
        "6",
        "--eval-points",
        "1",
        "--fid-samples",
        "0",
        "--no-progress",
    ])
    .arg("--celeba-dir")
    .arg(faces)
    // CelebA needs nothing from the data directory when FID is off.
    .arg("--data-dir")
    .arg(out.with_extension("empty-data"))
    .arg("--out")
    .arg(out)
    .args(extra)
    .env_remove(sm_objectives::autodiff::HIGHER_ORDER_ENV);
    c
}

#[test]
fn tiny_celeba_run_writes_every_output_and_resumes_exactly() {
    let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("table6-celeba-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let faces = root.join("celeba").join("img_align_celeba");
    write_faces(&faces, 80);
    let out = root.join("run");
    let o = command(&faces, &out, &[]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let results: Table6Results = experiments::report::read_json(&out.join("results.json")).unwrap();
    let rows: Vec<(Table6Data, AutoencoderKind, Estimator)> = results
        .rows
        .iter()
        .map(|r| (r.data, r.model, r.estimator))
        .collect();
    assert_eq!(
        rows,
        vec![
            (Table6Data::Celeba, AutoencoderKind::Vae, Estimator::Ssmvr),
            (Table6Data::Celeba, AutoencoderKind::Vae, Estimator::FdSsmvr),
            (Table6Data::Celeba, AutoencoderKind::Wae, Estimator::Ssmvr),
            (Table6Data::Celeba, AutoencoderKind::Wae, Estimator::FdSsmvr),
        ]
    );
    for r in &results.rows {
        assert_eq!(r.z_dim, 3);
        assert!(r.nll.is_none() && r.fid.is_none());
        assert!(r.score_ms.mean > 0.0 && r.step_ms.mean > r.score_ms.mean);
        assert!(r.score_sm.mean.is_finite(), "{:?}", r.score_sm);
        // The VAE's Gaussian NLL of 768 values is finite; the WAE's squared error positive.
        assert!(
            r.recon.mean.is_finite() && r.recon.mean.abs() > 0.0,
            "{:?}",
            r.recon
        );
    }
    assert_eq!(results.comparisons.len(), 2);
    for (t, e) in &results.runs {
        assert_eq!(t.losses.len(), 3, "{:?}", t.run);
        assert!(e.nll.is_none() && e.inception.is_none());
        let samples = e.samples_png.as_ref().expect("seed 0 draws samples");
        let img = image::open(out.join(samples)).unwrap();
        assert_eq!(img.color(), image::ColorType::Rgb8, "RGB faces");
        // 100 samples: a 10 x 10 grid of 16 x 16 images.
        assert_eq!(img.width(), 2 + 10 * 18);
        let recon = image::open(out.join(e.reconstructions_png.as_ref().unwrap())).unwrap();
        assert_eq!(recon.color(), image::ColorType::Rgb8);
    }
    let md = std::fs::read_to_string(out.join("table6.md")).unwrap();
    for label in [
        "## CelebA",
        "| WAE | FD-SSMVR | 3 |",
        "FID (paper)",
        "54.67",
    ] {
        assert!(md.contains(label), "table6.md lacks {label:?}:\n{md}");
    }
    assert!(!md.contains("## MNIST"), "{md}");

    // The VAE FD-SSMVR row paused after 2 of 3 steps, then resumed: the same losses.
    let split = root.join("paused");
    let subset = ["--models", "vae", "--estimators", "fd-ssmvr"];
    let with = |more: &[&'static str]| -> Vec<&'static str> { [&subset[..], more].concat() };
    let paused = command(&faces, &split, &with(&["--stop-after", "2"]))
        .status()
        .unwrap();
    assert_eq!(paused.code(), Some(3));
    assert!(command(&faces, &split, &with(&["--resume"]))
        .status()
        .unwrap()
        .success());
    let resumed: Table6Results =
        experiments::report::read_json(&split.join("results.json")).unwrap();
    let (t, _) = &resumed.runs[0];
    let (t0, _) = results
        .runs
        .iter()
        .find(|(t0, _)| t0.run == t.run)
        .expect("the same row in the uninterrupted run");
    assert_eq!(t.losses, t0.losses);
    assert_eq!(t.score_losses, t0.score_losses);

    // Without the faces the run stops before training and says how to get them.
    let o = command(&root.join("nowhere"), &root.join("missing"), &[])
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("img_align_celeba.zip"), "{err}");
    let _ = std::fs::remove_dir_all(&root);
}
