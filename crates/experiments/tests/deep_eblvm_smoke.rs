//! The deep-EBLVM experiment end to end at a tiny size on the real MNIST files: BiMDSM and
//! VaGES-MDSM rows train, sample (joint, via the posterior, conditioned), fit the linear probe
//! and write JSON, Markdown and PNG; a run paused by `--stop-after` and continued by `--resume`
//! reports exactly the straight run's numbers.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use anyhow::Result;
use experiments::deep_eblvm::{DeepEblvmResults, Method};
use experiments::runner::ExperimentRow;

fn run(data: &Path, out: &Path, extra: &[&str]) -> Result<Output> {
    Ok(Command::new(env!("CARGO_BIN_EXE_experiments"))
        .args(["repro", "deep-eblvm", "--iters", "6", "--width", "2"])
        .args(["--latent", "4", "--samples", "4", "--langevin", "2,3,1"])
        .args([
            "--probe",
            "60,20",
            "--checkpoint-every",
            "4",
            "--no-progress",
        ])
        .arg("--data-dir")
        .arg(data)
        .arg("--out")
        .arg(out)
        .args(extra)
        .env("RUST_BACKTRACE", "0")
        .output()?)
}

#[test]
fn a_tiny_run_writes_every_output_and_resumes_exactly() -> Result<()> {
    let Some(data) = common::data_dir_with("mnist/train-images-idx3-ubyte.gz") else {
        return Ok(());
    };
    let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("deep-eblvm-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let (straight, paused) = (root.join("straight"), root.join("paused"));
    let done = run(&data, &straight, &[])?;
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    for f in ["results.json", "deep_eblvm.md", "curves.png", "config.json"] {
        assert!(straight.join(f).is_file(), "{f} missing");
    }
    let a: DeepEblvmResults = experiments::report::read_json(&straight.join("results.json"))?;
    let methods: Vec<Method> = a.rows.iter().map(|x| x.run.method).collect();
    assert_eq!(methods, [Method::Bimdsm, Method::VagesMdsm]);
    for x in &a.rows {
        for g in ["joint.png", "via_posterior.png", "conditioned.png"] {
            let path = straight.join("rows").join(x.run.key()).join(g);
            assert!(path.is_file(), "{} missing", path.display());
        }
        assert_eq!(x.curve.last().map(|p| p.step), Some(6));
        assert!(x
            .curve
            .iter()
            .all(|p| p.loss.is_finite() && p.fisher >= 0.0));
        assert!((0.0..=1.0).contains(&x.probe_accuracy));
        assert!(x.test_fisher.is_finite() && x.test_energy.is_finite());
        if let (Some(base), Some(peak)) = (x.base_rss_bytes, x.step_peak_rss_bytes) {
            assert!(peak >= base, "{}: peak below the start", x.run.label());
        }
    }
    let md = std::fs::read_to_string(straight.join("deep_eblvm.md"))?;
    assert!(md.contains("| VaGES-MDSM |") && md.contains("conditioned.png"));
    assert!(
        md.contains("VaGES App. Table 2"),
        "no time and memory comparison"
    );

    // The VaGES row, whose steps draw the most noise, paused between checkpoints and resumed.
    let vages = ["--methods", "vages-mdsm"];
    let stop = run(
        &data,
        &paused,
        &[&vages[..], &["--stop-after", "3"]].concat(),
    )?;
    assert_eq!(stop.status.code(), Some(3), "a pause exits with status 3");
    let resumed = run(&data, &paused, &[&vages[..], &["--resume"]].concat())?;
    assert!(resumed.status.success());
    let b: DeepEblvmResults = experiments::report::read_json(&paused.join("results.json"))?;
    assert_eq!(b.rows.len(), 1);
    for (x, y) in a.rows[1..].iter().zip(&b.rows) {
        let label = x.run.label();
        let (cx, cy): (Vec<_>, Vec<_>) = (
            x.curve.iter().map(|p| (p.step, p.loss, p.fisher)).collect(),
            y.curve.iter().map(|p| (p.step, p.loss, p.fisher)).collect(),
        );
        assert_eq!(cx, cy, "{label}");
        assert_eq!(
            (x.probe_accuracy, x.test_fisher, x.sample_energy),
            (y.probe_accuracy, y.test_fisher, y.sample_energy),
            "{label}"
        );
        // The memory of the training steps survives the pause (it travels in the checkpoint).
        assert_eq!(
            x.step_peak_rss_bytes.is_some(),
            y.step_peak_rss_bytes.is_some(),
            "{label}"
        );
    }
    Ok(())
}

#[test]
fn the_paper_profile_is_the_reference_configuration() -> Result<()> {
    use experiments::deep_eblvm::{DeepEblvmExpConfig, Run};
    // The BiSM / VaGES MNIST configuration (latent_ebm_resnet_mnist*.yml, train_dev.py).
    let c = DeepEblvmExpConfig::paper();
    assert_eq!((c.model.features.width, c.model.latent), (64, 50));
    assert_eq!(c.model.features.blocks_per_stage, [2, 2, 2]);
    assert_eq!(c.model.head_units, 4096);
    assert_eq!(c.posterior.channels, [64, 128, 256]);
    assert_eq!((c.iters, c.batch), (100_000, 100));
    assert_eq!(
        (c.lr, c.lower_lr, c.vages_lr, c.beta2),
        (1e-4, 1e-4, 1e-4, 0.95)
    );
    assert_eq!((c.sigma_begin, c.sigma_end, c.sigma0), (0.1, 3.0, 0.1));
    assert_eq!((c.lower_steps, c.particles, c.sgld_steps), (5, 2, 5));
    assert_eq!(
        (c.sgld_alpha, c.sgld_sigma, c.sgld_clip),
        (1e-2, 1e-4, None)
    );
    assert_eq!(c.langevin.total(), 2700);
    c.validate()?;
    DeepEblvmExpConfig::quick().validate()?;
    // The batch's noise levels: geometric from sigma_begin to sigma_end (torch.logspace).
    let s = c.sigmas()?;
    assert_eq!(s.len(), 100);
    assert!((s[0] - 0.1).abs() < 1e-12 && (s[99] - 3.0).abs() < 1e-12);
    let ratio = s[1] / s[0];
    assert!(s.windows(2).all(|w| (w[1] / w[0] - ratio).abs() < 1e-12));
    // Row keys round-trip.
    for run in c.runs() {
        assert_eq!(Run::parse(&run.key())?, run);
    }
    assert!(Run::parse("bimdsm.seedx").is_err() && Run::parse("dsm").is_err());
    Ok(())
}
