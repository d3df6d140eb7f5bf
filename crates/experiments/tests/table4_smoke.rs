//! The Table 4 pipeline end to end at a tiny size (a width-2 ResNet trained 4 steps): MNIST and
//! Fashion-MNIST detectors by DSM and FD-DSM, the five columns, the JSON, Markdown and PNG
//! outputs, every AUC recomputed from the stored scores by a pairwise count; a detector of a
//! Table 2 run with the same training settings is reused (and one with other settings is not);
//! grey-scale and colour sets cannot be mixed. Timings are produced, never asserted. Skipped,
//! with the reason printed, when MNIST or Fashion-MNIST is absent (a failure when the data must
//! be there).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use experiments::deep_ebm::TrainReport;
use experiments::objective::Objective;
use experiments::table4::{ImageSet, Table4Results, TestSet};

fn run(data: &Path, experiment: &str, out: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_experiments"))
        .args(["repro", experiment, "--width", "2", "--iters", "4"])
        .args(["--no-progress", "--data-dir"])
        .arg(data)
        .arg("--out")
        .arg(out)
        .args(args)
        .env_remove(sm_objectives::autodiff::HIGHER_ORDER_ENV)
        .output()
        .unwrap()
}

const TABLE4: [&str; 8] = [
    "--batch",
    "4",
    "--seeds",
    "1",
    "--test-batches",
    "20",
    "--reference-images",
    "30",
];

fn pairwise_auc(neg: &[f64], pos: &[f64]) -> f64 {
    let wins: f64 = pos
        .iter()
        .flat_map(|p| {
            neg.iter().map(move |n| match p.total_cmp(n) {
                std::cmp::Ordering::Greater => 1.0,
                std::cmp::Ordering::Equal => 0.5,
                std::cmp::Ordering::Less => 0.0,
            })
        })
        .sum();
    wins / (neg.len() * pos.len()) as f64
}

fn scratch(name: &str) -> PathBuf {
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("table4-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    out
}

#[test]
fn tiny_table4_run_writes_every_output() {
    let Some(data) = common::data_dir_with("fashion-mnist/train-images-idx3-ubyte.gz") else {
        return;
    };
    common::data_dir_with("mnist/train-images-idx3-ubyte.gz").unwrap();
    let out = scratch("smoke");
    let o = run(&data, "table4", &out, &TABLE4);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r: Table4Results = experiments::report::read_json(&out.join("results.json")).unwrap();
    let rows: Vec<(ImageSet, Objective)> = r.rows.iter().map(|s| (s.train_set, s.method)).collect();
    assert_eq!(
        rows,
        vec![
            (ImageSet::Mnist, Objective::Mdsm),
            (ImageSet::Mnist, Objective::FdMdsm),
            (ImageSet::FashionMnist, Objective::Mdsm),
            (ImageSet::FashionMnist, Objective::FdMdsm),
        ]
    );
    assert_eq!(r.runs.len(), 4);
    for (t, e, reused) in &r.runs {
        assert!(reused.is_none());
        assert_eq!(t.records.len(), 4);
        assert_eq!(t.higher_order, e.run.method == Objective::Mdsm);
        assert!(t.median_step_ms.is_some_and(|ms| ms > 0.0));
        assert_eq!(e.typicality.count, 30);
        assert_eq!(e.in_distribution.len(), 20);
        let columns: Vec<TestSet> = e.columns.iter().map(|c| c.test_set).collect();
        assert_eq!(
            columns,
            vec![
                TestSet::Data(ImageSet::Mnist),
                TestSet::Data(ImageSet::FashionMnist),
                TestSet::Noise,
                TestSet::Permuted,
                TestSet::Inverted
            ]
        );
        for c in &e.columns {
            assert_eq!(c.scores.len(), 20);
            assert!(c.scores.iter().all(|s| s.is_finite() && *s >= 0.0));
            let brute = pairwise_auc(&e.in_distribution, &c.scores);
            assert!(
                (c.auc - brute).abs() < 1e-12,
                "{:?}: {} vs {brute}",
                c.test_set,
                c.auc
            );
        }
    }
    let md = std::fs::read_to_string(out.join("table4.md")).unwrap();
    for label in [
        "| MNIST | DSM |",
        "| Fashion-MNIST | FD-DSM |",
        "Uniform noise",
        "Permuted pixels",
        "## FD-DSM against DSM",
        "- **MNIST**: FD-DSM's AUCs differ from DSM's by at most",
        "| CIFAR-10 | DSM | 635 ms | 0.91 | 0.49 | 0.79 |",
        "Hanley-McNeil",
    ] {
        assert!(md.contains(label), "table4.md lacks {label:?}:\n{md}");
    }
    for png in [
        "roc_mnist.png",
        "roc_fashion-mnist.png",
        "scores_mnist.png",
        "scores_fashion-mnist.png",
        "loss_curves.png",
    ] {
        image::open(out.join(png)).unwrap();
    }
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn a_table2_detector_with_the_same_settings_is_reused() {
    let Some(data) = common::data_dir_with("mnist/train-images-idx3-ubyte.gz") else {
        return;
    };
    let t2 = scratch("from-table2");
    let o = run(
        &data,
        "table2",
        &t2,
        &[
            "--batch",
            "4",
            "--rows",
            "mdsm",
            "--seeds",
            "1",
            // Table 4's quick learning rate of the DSM family.
            "--lr-dsm",
            "0.001",
            "--eval-images",
            "2",
            "--samples",
            "1",
            "--langevin-scale",
            "0.01",
            // No FID: it would train LeNet into the data directory's default cache.
            "--fid-samples",
            "0",
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let source: TrainReport =
        experiments::report::read_json(&t2.join("rows/mdsm.seed0/train.json")).unwrap();

    let out = scratch("reuse");
    let t2_arg = t2.to_str().unwrap();
    let mut args = TABLE4.to_vec();
    args.extend([
        "--train-sets",
        "mnist",
        "--methods",
        "mdsm",
        "--reuse",
        t2_arg,
    ]);
    let o = run(&data, "table4", &out, &args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r: Table4Results = experiments::report::read_json(&out.join("results.json")).unwrap();
    let (t, _, reused) = &r.runs[0];
    assert_eq!(
        reused.as_ref().map(|u| u.from.clone()),
        Some(t2.join("rows/mdsm.seed0"))
    );
    assert_eq!(t.records, source.records, "reused, not trained again");
    assert_eq!(r.rows[0].reused, 1);
    assert!(std::fs::read_to_string(out.join("table4.md"))
        .unwrap()
        .contains("1 (1 reused)"));
    // Resumed, the reused row stays reused (and is not trained).
    let mut resumed = args.clone();
    resumed.push("--resume");
    let o = run(&data, "table4", &out, &resumed);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let again: Table4Results = experiments::report::read_json(&out.join("results.json")).unwrap();
    assert!(again.runs[0].2.is_some());
    assert_eq!(again.runs[0].0.records, source.records);

    // Other training settings (the batch): trained here, and said why on standard error.
    let other = scratch("no-reuse");
    args[1] = "5";
    let o = run(&data, "table4", &other, &args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("not reused") && stderr.contains("other settings"),
        "{stderr}"
    );
    let r: Table4Results = experiments::report::read_json(&other.join("results.json")).unwrap();
    assert!(r.runs[0].2.is_none());
    assert_ne!(r.runs[0].0.records, source.records);
    for d in [t2, out, other] {
        let _ = std::fs::remove_dir_all(d);
    }
}

#[test]
fn grey_and_colour_sets_are_not_mixed() {
    let out = scratch("mixed");
    let o = run(
        Path::new("/nonexistent"),
        "table4",
        &out,
        &["--test-sets", "mnist,cifar-10"],
    );
    assert!(!o.status.success());
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("cannot be mixed"), "{stderr}");
}

#[test]
fn missing_imagenet32_stops_the_run_before_it_starts() {
    let out = scratch("imagenet32");
    let empty = scratch("empty-data");
    std::fs::create_dir_all(&empty).unwrap();
    let o = run(
        &empty,
        "table4",
        &out,
        &[
            "--train-sets",
            "imagenet32",
            "--test-sets",
            "imagenet32,noise",
        ],
    );
    assert!(!o.status.success());
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("train_data_batch_1.npz") && stderr.contains("Imagenet32_val_npz.zip"),
        "{stderr}"
    );
    assert!(!out.join("config.json").exists(), "nothing runs");
    let _ = std::fs::remove_dir_all(&empty);
}
