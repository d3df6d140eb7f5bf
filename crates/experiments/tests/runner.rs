//! The runner's guarantees, through the `experiments` binary on the cheapest experiment (a
//! GRBM on the checkerboard, no data files): a results directory held by a running process is
//! refused with the holder named, a stale lock is taken over, a bad setting writes nothing,
//! and a row's child exits when its run is killed.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn out_dir(name: &str) -> PathBuf {
    let d =
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn checkerboard(out: &Path, extra: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_experiments"));
    cmd.args([
        "repro",
        "grbm-checkerboard",
        "--methods",
        "dsm",
        "--no-progress",
    ])
    .arg("--out")
    .arg(out)
    .args(extra)
    .env("RUST_BACKTRACE", "0");
    cmd
}

#[test]
fn a_held_results_directory_is_refused_and_a_stale_lock_taken_over() {
    let out = out_dir("runner-lock");
    std::fs::create_dir_all(&out).unwrap();
    let lock = out.join(".lock");
    // Held by a live process (this test).
    std::fs::write(&lock, format!("{} 0\n", std::process::id())).unwrap();
    let run = checkerboard(&out, &["--iters", "2"]).output().unwrap();
    assert!(!run.status.success());
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(
        err.contains(&format!(
            "in use by another run (process {}",
            std::process::id()
        )),
        "{err}"
    );
    assert!(
        !out.join("config.json").exists(),
        "a refused run wrote its configuration"
    );
    // Left by a process that no longer exists: taken over, and released at the end.
    std::fs::write(&lock, "4000000000 0\n").unwrap();
    let run = checkerboard(&out, &["--iters", "2"]).output().unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(out.join("results.json").is_file());
    assert!(!lock.exists(), "the lock outlived its run");
}

#[test]
fn bad_settings_write_nothing() {
    for (experiment, args) in [
        ("grbm-checkerboard", vec!["--checkpoint-every", "0"]),
        ("table2", vec!["--eval-points", "0"]),
        ("table2", vec!["--rows", "fd-dsm"]),
        ("grbm-checkerboard", vec!["--stop-after", "0"]),
        ("steps", vec!["--blocks", "0"]),
        ("order-scaling", vec!["--memory-limit-gb", "0"]),
        ("steps", vec!["--width", "100000"]),
        ("bism-table1", vec!["--hidden", "10000000"]),
        ("deep-eblvm", vec!["--probe", "60001,10"]),
        (
            "deep-eblvm",
            vec!["--methods", "vages-mdsm", "--latent", "0"],
        ),
    ] {
        let out = out_dir(&format!("runner-bad-{experiment}"));
        let group = if matches!(experiment, "steps" | "order-scaling") {
            "bench"
        } else {
            "repro"
        };
        let run = Command::new(env!("CARGO_BIN_EXE_experiments"))
            .args([group, experiment])
            .args(&args)
            .arg("--out")
            .arg(&out)
            .output()
            .unwrap();
        assert!(!run.status.success(), "{experiment} {args:?} ran");
        let err = String::from_utf8_lossy(&run.stderr);
        assert!(
            err.contains("invalid configuration"),
            "{experiment} {args:?}: {err}"
        );
        assert!(
            !out.exists(),
            "{experiment} {args:?} wrote {}",
            out.display()
        );
    }
}

/// The process ids whose parent is `pid`, from `/proc`.
fn children_of(pid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/stat")).is_ok_and(|s| {
                // `pid (comm) state ppid ...`; comm may hold spaces, so split after its `)`.
                s.rsplit_once(')')
                    .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok())
                    == Some(pid)
            })
        })
        .collect()
}

/// Whether `pid` still runs (a zombie waiting to be reaped counts as exited).
fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X")
    })
}

#[test]
fn a_rows_child_exits_when_its_run_is_killed() {
    if !Path::new("/proc/self/stat").exists() {
        eprintln!("skipped: no /proc to find the child process");
        return;
    }
    let out = out_dir("runner-orphan");
    let mut parent = checkerboard(&out, &["--iters", "100000000"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let child = loop {
        if let Some(&c) = children_of(parent.id()).first() {
            break c;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the run started no row process"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    parent.kill().unwrap();
    parent.wait().unwrap();
    let killed = Instant::now();
    while running(child) {
        assert!(
            killed.elapsed() < Duration::from_secs(10),
            "the row process {child} outlived its run by 10 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_row_whose_run_is_already_gone_exits_at_once() {
    // The runner names itself to the child; a child that starts after its run was killed (so
    // that it was adopted before it could watch) must notice at once rather than run on. This
    // test's process is the parent here, so naming another process stands for a dead run; the
    // configuration does not exist, so a child that did not stop first would fail on reading it.
    let out = out_dir("runner-gone");
    let run = Command::new(env!("CARGO_BIN_EXE_experiments"))
        .args([
            "row",
            "grbm-checkerboard",
            "--phase",
            "train",
            "--row",
            "dsm",
        ])
        .arg("--config")
        .arg(out.join("missing-config.json"))
        .arg("--data-dir")
        .arg(&out)
        .arg("--out")
        .arg(&out)
        .env("FDSM_RUN_PID", (std::process::id() + 1).to_string())
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(4), "{err}");
    assert!(err.contains("is gone"), "{err}");
}
