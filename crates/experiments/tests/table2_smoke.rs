//! The Table 2 pipeline end to end at a tiny size (a few iterations, width 2): the binary runs
//! its training and evaluation children (gradient-based and FD rows, parallel and sequential,
//! and maximum likelihood with its replay buffer), and writes the JSON, Markdown and PNG outputs
//! (FID with LeNet features included); a run paused with `--stop-after` and resumed trains and
//! evaluates exactly as an uninterrupted one. Every row must have a finite result. Timings are
//! produced, never asserted.
//! Skipped, with the reason printed, when MNIST is absent from the data directory.

mod common;

use std::path::PathBuf;
use std::process::Command;

use experiments::objective::Objective;
use experiments::table2::Table2Results;

#[test]
fn tiny_table2_run_writes_every_output() {
    let Some(data) = common::data_dir_with("mnist/train-images-idx3-ubyte.gz") else {
        return;
    };
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("table2-smoke-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let run_in = |out: &PathBuf, extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_experiments"))
            .args([
                "repro",
                "table2",
                "--iters",
                "4",
                "--width",
                "2",
                "--batch",
                "4",
                "--rows",
                "ssm,fd-ssm,fd-mdsm*,mle-langevin",
                "--mle-steps",
                "2",
                // Summaries over several seeds are tested on the report's own numbers.
                "--seeds",
                "1",
                "--eval-images",
                "4",
            ])
            .args([
                "--eval-points",
                "2",
                "--samples",
                "4",
                "--langevin-scale",
                "0.02",
                "--fid-samples",
                "130",
                "--no-progress",
            ])
            // The LeNet of FID, shared with the other tests of this target (trained once).
            .arg("--feature-cache")
            .arg(PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("feature-nets"))
            .arg("--data-dir")
            .arg(&data)
            .arg("--out")
            .arg(out)
            .args(extra)
            .env_remove(sm_objectives::autodiff::HIGHER_ORDER_ENV)
            .status()
            .unwrap()
    };
    let run_with = |extra: &[&str]| run_in(&out, extra);
    assert!(run_with(&[]).success());
    let results: Table2Results = experiments::report::read_json(&out.join("results.json")).unwrap();
    let rows: Vec<Objective> = results.rows.iter().map(|(t, _)| t.row).collect();
    let expected = vec![
        Objective::Ssm,
        Objective::FdSsm,
        Objective::FdMdsmSeq,
        Objective::MleLangevin,
    ];
    assert_eq!(rows, expected);
    let summarised: Vec<Objective> = results.summary.iter().map(|s| s.row).collect();
    assert_eq!(summarised, expected);
    for s in &results.summary {
        assert_eq!(s.seeds, 1);
        assert!(s.sm.mean.is_finite() && s.sm.std_err.is_finite(), "{s:?}");
        assert!(s.time_ms.is_some_and(|ms| ms.is_finite() && ms > 0.0));
        assert_eq!(s.curve.len(), 3, "the untrained model and two snapshots");
        assert_eq!(s.curve[0].0, 0.0);
    }
    for (t, e) in &results.rows {
        assert_eq!(t.records.len(), 4);
        assert!(t.median_step_ms.is_some_and(|ms| ms > 0.0));
        assert_eq!(
            t.higher_order,
            t.row.gradient_based(),
            "{:?}: higher-order mode only where needed",
            t.row
        );
        assert_eq!(e.curve.len(), 3);
        assert!(e.final_sm.mean.is_finite() && e.final_sm.std_err.is_finite());
        let fid = e.fid.as_ref().expect("FID with --fid-samples 130");
        assert_eq!(fid.samples, 130);
        assert!(
            fid.fid.is_finite() && fid.fid > 0.0 && fid.kid.is_finite(),
            "{fid:?}"
        );
        let png = e
            .samples_png
            .as_ref()
            .expect("the first seed draws samples");
        let img = image::open(out.join(png)).unwrap();
        // 2 x 2 grids of 64 x 64 pixels (2 x 2 blocks), 134 wide, a 12-pixel gap between grids:
        // start, last Langevin state, denoised; MLE shows its start and its samples.
        let panels = if t.row == Objective::MleLangevin {
            2
        } else {
            3
        };
        assert_eq!(
            (img.width(), img.height()),
            (panels * 134 + (panels - 1) * 12, 134),
            "{:?}: grids of 2 x 2 samples at 64 x 64 pixels",
            t.row
        );
    }
    let (name, ours, paper) = &results.speedups[0];
    assert_eq!(name, "FD-SSM vs SSM");
    assert!(ours.is_some() && paper.is_some_and(|p| (p - 673.0 / 230.0).abs() < 1e-12));
    let md = std::fs::read_to_string(out.join("table2.md")).unwrap();
    for label in [
        "| SSM |",
        "| FD-SSM |",
        "| FD-DSM* |",
        "| MLE (Langevin) |",
        "What each comparison shows",
        "**SSM vs FD-SSM.**",
        "-2.97e7",
        "FD-SSM vs SSM",
        "Hutchinson",
        "FID, LeNet (ours)",
        "not comparable with Inception FID",
    ] {
        assert!(md.contains(label), "table2.md lacks {label:?}:\n{md}");
    }
    for png in ["loss_curves_ssm.png", "loss_curves_dsm.png"] {
        image::open(out.join(png)).unwrap();
    }
    let cfg: experiments::table2::Table2Config =
        experiments::report::read_json(&out.join("config.json")).unwrap();
    assert_eq!(cfg.training.iters, 4);
    // Resuming the finished run trains nothing, keeps the original timings and still evaluates
    // every snapshot taken before (the snapshot list travels in the checkpoint).
    assert!(run_with(&["--resume"]).success());
    let again: Table2Results = experiments::report::read_json(&out.join("results.json")).unwrap();
    for ((t, e), (t0, e0)) in again.rows.iter().zip(&results.rows) {
        assert_eq!(t.records, t0.records, "{:?} trained again", t.row);
        assert_eq!(e.curve, e0.curve, "{:?}", t.row);
    }
    // Evaluation settings may change on resume: nothing is trained again, the new settings are
    // used and recorded.
    assert!(run_with(&["--resume", "--eval-images", "2", "--samples", "1"]).success());
    let re_eval: Table2Results = experiments::report::read_json(&out.join("results.json")).unwrap();
    assert_eq!((re_eval.config.eval_images, re_eval.config.samples), (2, 1));
    for ((t, _), (t0, _)) in re_eval.rows.iter().zip(&results.rows) {
        assert_eq!(t.records, t0.records, "{:?} trained again", t.row);
    }
    // Paused after 2 of 4 steps: checkpoints, no evaluation and no table; resumed: the last two
    // steps and every evaluation equal the uninterrupted run's.
    let split = out.with_extension("paused");
    let _ = std::fs::remove_dir_all(&split);
    assert_eq!(
        run_in(&split, &["--stop-after", "2"]).code(),
        Some(3),
        "a pause exits with status 3"
    );
    assert!(
        !split.join("results.json").exists(),
        "a paused run wrote results"
    );
    for row in [
        "ssm.seed0",
        "fd-ssm.seed0",
        "fd-mdsm-seq.seed0",
        "mle-langevin.seed0",
    ] {
        let t: experiments::table2::TrainReport =
            experiments::report::read_json(&split.join("rows").join(row).join("train.json"))
                .unwrap();
        assert_eq!(t.paused_at, Some(2), "{row}");
        assert!(
            !split.join("rows").join(row).join("eval.json").exists(),
            "{row}"
        );
    }
    // Moved before it is resumed: checkpoints and snapshots are found relative to the new place.
    let moved = out.with_extension("moved");
    let _ = std::fs::remove_dir_all(&moved);
    std::fs::rename(&split, &moved).unwrap();
    assert!(run_in(&moved, &["--resume"]).success());
    let resumed: Table2Results =
        experiments::report::read_json(&moved.join("results.json")).unwrap();
    for ((t, e), (t0, e0)) in resumed.rows.iter().zip(&results.rows) {
        assert_eq!(t.paused_at, None);
        let tail: Vec<(u64, f64, f64)> = t0.records[2..]
            .iter()
            .map(|r| (r.step, r.loss, r.grad_norm))
            .collect();
        let got: Vec<(u64, f64, f64)> = t
            .records
            .iter()
            .map(|r| (r.step, r.loss, r.grad_norm))
            .collect();
        assert_eq!(got, tail, "{:?}: resumed steps differ", t.row);
        let sm = |e: &experiments::table2::EvalReport| -> Vec<(u64, f64)> {
            e.curve.iter().map(|(step, _, v)| (*step, v.mean)).collect()
        };
        assert_eq!(sm(e), sm(e0), "{:?}: evaluations differ", t.row);
        assert_eq!(e.final_sm.mean, e0.final_sm.mean, "{:?}", t.row);
    }
}

/// A row whose loss diverges stops with the error and still writes `train.json`, with the steps
/// before the divergence and the reason.
#[test]
fn a_diverged_row_writes_its_train_report() {
    let Some(data) = common::data_dir_with("mnist/train-images-idx3-ubyte.gz") else {
        return;
    };
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("table2-diverged-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let mut cfg = experiments::table2::Table2Config::quick();
    cfg.training.model.width = 2;
    (
        cfg.training.iters,
        cfg.training.batch,
        cfg.training.checkpoint_every,
    ) = (20, 4, 5);
    // An absurd rate without clipping: the loss leaves any sane range within a few steps.
    (cfg.training.lr_ssm, cfg.training.clip) = (1e9, None);
    cfg.rows = vec![Objective::FdSsm];
    let run = experiments::table2::Run {
        objective: Objective::FdSsm,
        seed: 0,
    };
    let device = candle_core::Device::Cpu;
    let ctx = experiments::runner::RowContext {
        run: experiments::runner::Context {
            device: &device,
            data_dir: &data,
            out: &out,
            control: experiments::RunControl::default(),
        },
        dir: out.join("rows/fd-ssm.seed0"),
        higher_order: None,
    };
    let err = experiments::table2::train_row(&ctx, &cfg, run).unwrap_err();
    assert!(
        err.to_string().contains("training diverged at step"),
        "{err}"
    );
    let report: experiments::table2::TrainReport =
        experiments::report::read_json(&out.join("rows/fd-ssm.seed0/train.json")).unwrap();
    assert!(report
        .diverged
        .is_some_and(|why| why.contains("training diverged at step")));
    assert!(report.records.len() < 20);
}
