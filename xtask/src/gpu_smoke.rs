//! `cargo xtask gpu-smoke`: builds the experiments for a GPU backend, runs a few training steps
//! of every reproduction's quick profile, the step bench at the paper's ResNet width and a short
//! derivative-order scaling on that device, and writes a report (`gpu-smoke.md`,
//! `gpu-smoke.json`, one log per command). `--backend cpu` runs the same sequence on a CPU
//! build, which checks the sequence itself on a machine without a GPU.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};

use crate::{inner_cargo, PAUSED_EXIT_CODE};

/// The device the smoke test builds for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Backend {
    /// NVIDIA GPUs: the `cuda` feature (needs nvcc; see scripts/cuda-toolchain.sh).
    Cuda,
    /// Apple GPUs: the `metal` feature (macOS).
    Metal,
    /// The CPU build, to check the sequence without a GPU.
    Cpu,
}

impl Backend {
    fn feature(self) -> Option<&'static str> {
        match self {
            Self::Cuda => Some("experiments/cuda"),
            Self::Metal => Some("experiments/metal"),
            Self::Cpu => None,
        }
    }

    fn key(self) -> &'static str {
        match self {
            Self::Cuda => "cuda",
            Self::Metal => "metal",
            Self::Cpu => "cpu",
        }
    }
}

/// Options of `cargo xtask gpu-smoke`.
#[derive(Args, Debug)]
pub struct SmokeArgs {
    /// The backend to build and run.
    #[arg(long, value_enum, default_value_t = Backend::Cuda)]
    backend: Backend,
    /// Results directory (each command's output in a folder of its own, logs in `logs/`).
    #[arg(long, default_value = "results/gpu-smoke")]
    out: PathBuf,
    /// Training steps per row of each reproduction (its quick profile paused after them).
    #[arg(long, default_value_t = 3)]
    steps: u64,
    /// ResNet width of the step bench (the paper's Table 2 network has 128).
    #[arg(long, default_value_t = 128)]
    bench_width: usize,
    /// Timed steps per objective of the step bench.
    #[arg(long, default_value_t = 5)]
    bench_steps: usize,
    /// Data directory (default: $FDSM_DATA_DIR, else the user cache directory).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Use the binary already built instead of building it.
    #[arg(long)]
    no_build: bool,
}

/// The reproductions whose quick profiles are run (every `repro` of the experiments binary).
const REPRODUCTIONS: &[&str] = &[
    "table1",
    "table2",
    "table3",
    "table4",
    "table5",
    "table6",
    "grbm-checkerboard",
    "bism-table1",
    "deep-eblvm",
];

/// One command of the sequence and how it went.
struct Outcome {
    label: String,
    args: Vec<String>,
    /// The command's results directory (its `--out`).
    dir: PathBuf,
    seconds: f64,
    status: String,
    ok: bool,
    log: PathBuf,
}

/// Runs the smoke test.
pub fn gpu_smoke(a: &SmokeArgs) -> Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("workspace root")?
        .to_path_buf();
    let out = if a.out.is_absolute() {
        a.out.clone()
    } else {
        std::env::current_dir()?.join(&a.out)
    };
    let gpu = preflight(a.backend)?;
    // A GPU build in a target directory of its own, so the CPU build's cache is kept.
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => PathBuf::from(dir),
        None if a.backend == Backend::Cpu => root.join("target"),
        None => root.join("target").join(a.backend.key()),
    };
    let mut env: Vec<(String, String)> =
        vec![("CARGO_TARGET_DIR".into(), target.display().to_string())];
    if a.backend == Backend::Cuda && std::env::var_os("CUDA_COMPUTE_CAP").is_none() {
        if let Some(cap) = gpu.compute_cap.as_deref() {
            env.push(("CUDA_COMPUTE_CAP".into(), cap.replace('.', "")));
        }
    }
    if !a.no_build {
        let mut args = vec!["build", "--release", "-p", "experiments", "--bins"];
        if let Some(f) = a.backend.feature() {
            args.extend(["--features", f]);
        }
        eprintln!("+ cargo {}", args.join(" "));
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = inner_cargo(&cargo)
            .current_dir(&root)
            .args(&args)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .status()
            .with_context(|| format!("could not start `{cargo}`"))?;
        if !status.success() {
            bail!("the {} build failed ({status})", a.backend.key());
        }
    }
    let exe = target.join("release").join("experiments");
    if !exe.is_file() {
        bail!(
            "{} does not exist: build it, or run without --no-build",
            exe.display()
        );
    }
    std::fs::create_dir_all(out.join("logs"))
        .with_context(|| format!("creating {}", out.display()))?;

    let mut commands: Vec<(String, Vec<String>)> = Vec::new();
    for name in REPRODUCTIONS {
        let args = [
            "repro",
            name,
            "--profile",
            "quick",
            "--stop-after",
            &a.steps.to_string(),
        ]
        .map(String::from)
        .to_vec();
        commands.push((format!("repro {name}"), args));
    }
    let bench = |net: &str| {
        let mut args = ["bench", "steps", "--net", net, "--steps"]
            .map(String::from)
            .to_vec();
        args.extend([a.bench_steps.to_string(), "--warmup".into(), "2".into()]);
        if net == "resnet" {
            args.extend(["--width".into(), a.bench_width.to_string()]);
        }
        args
    };
    commands.push((
        format!("bench steps (ResNet width {})", a.bench_width),
        bench("resnet"),
    ));
    commands.push(("bench steps (MLP)".into(), bench("mlp")));
    commands.push((
        "bench order-scaling (T <= 2)".into(),
        [
            "bench",
            "order-scaling",
            "--profile",
            "quick",
            "--max-order",
            "2",
        ]
        .map(String::from)
        .to_vec(),
    ));

    let mut outcomes = Vec::new();
    for (i, (label, mut args)) in commands.into_iter().enumerate() {
        let slug = label
            .split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join("-");
        let dir = out.join(format!("{i:02}-{slug}"));
        args.extend([
            "--out".into(),
            dir.display().to_string(),
            "--no-progress".into(),
        ]);
        if let Some(d) = &a.data_dir {
            args.extend(["--data-dir".into(), d.display().to_string()]);
        }
        let log = out.join("logs").join(format!("{i:02}-{slug}.log"));
        eprintln!("== {label}");
        let file =
            std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let start = Instant::now();
        let status = Command::new(&exe)
            .current_dir(&root)
            .args(&args)
            .stdout(Stdio::from(file.try_clone()?))
            .stderr(Stdio::from(file))
            .status()
            .with_context(|| format!("could not start {}", exe.display()))?;
        let seconds = start.elapsed().as_secs_f64();
        let (ok, status) = match status.code() {
            Some(0) => (true, "finished".to_string()),
            Some(PAUSED_EXIT_CODE) => (true, format!("paused after {} steps per row", a.steps)),
            Some(c) => (false, format!("failed (exit {c})")),
            None => (false, "killed by a signal".to_string()),
        };
        eprintln!("   {status} in {seconds:.1} s (log: {})", log.display());
        outcomes.push(Outcome {
            label,
            args,
            dir,
            seconds,
            status,
            ok,
            log,
        });
    }
    write_report(&root, &out, a, &gpu, &outcomes)?;
    let failed: Vec<&str> = outcomes
        .iter()
        .filter(|o| !o.ok)
        .map(|o| o.label.as_str())
        .collect();
    if !failed.is_empty() {
        bail!(
            "{} of {} commands failed: {} (see {})",
            failed.len(),
            outcomes.len(),
            failed.join(", "),
            out.join("gpu-smoke.md").display()
        );
    }
    eprintln!(
        "all {} commands ran: {}",
        outcomes.len(),
        out.join("gpu-smoke.md").display()
    );
    Ok(())
}

/// What is known of the GPU before building.
#[derive(Default)]
struct Gpu {
    /// `nvidia-smi`'s name, driver and memory of each GPU, or the platform's description.
    description: String,
    /// The first GPU's compute capability, e.g. "8.6".
    compute_cap: Option<String>,
}

/// Checks that the backend can be built and run here, with a message saying what is missing.
fn preflight(backend: Backend) -> Result<Gpu> {
    match backend {
        Backend::Cpu => Ok(Gpu {
            description: "CPU build (no GPU used)".into(),
            compute_cap: None,
        }),
        Backend::Metal => {
            if !cfg!(target_os = "macos") {
                bail!("the metal backend builds on macOS only");
            }
            Ok(Gpu {
                description: "Apple GPU (Metal)".into(),
                compute_cap: None,
            })
        }
        Backend::Cuda => {
            let nvcc = Command::new("nvcc").arg("--version").output();
            if !nvcc.is_ok_and(|o| o.status.success()) {
                bail!(
                    "no CUDA compiler: nvcc is not on PATH. Install the CUDA toolkit, or run \
                     `scripts/cuda-toolchain.sh cargo xtask gpu-smoke`, which installs one from \
                     the Python package registry"
                );
            }
            let query = Command::new("nvidia-smi")
                .args([
                    "--query-gpu=name,driver_version,memory.total,compute_cap",
                    "--format=csv,noheader",
                ])
                .output();
            let text = match query {
                Ok(o) if o.status.success() => {
                    String::from_utf8_lossy(&o.stdout).trim().to_string()
                }
                _ => bail!(
                    "no NVIDIA GPU visible: `nvidia-smi` is missing or failed. The cuda build \
                     links against the driver's libcuda.so.1, so it runs only where a driver is \
                     installed (`scripts/cuda-toolchain.sh` checks that it compiles anywhere)"
                ),
            };
            let compute_cap = text
                .lines()
                .next()
                .and_then(|l| l.rsplit(',').next())
                .map(|c| c.trim().to_string())
                .filter(|c| !c.is_empty());
            Ok(Gpu {
                description: text,
                compute_cap,
            })
        }
    }
}

/// `gpu-smoke.md` and `gpu-smoke.json` in `out`; `root` is the checkout (for its commit).
fn write_report(
    root: &Path,
    out: &Path,
    a: &SmokeArgs,
    gpu: &Gpu,
    outcomes: &[Outcome],
) -> Result<()> {
    let commit = Command::new("git")
        .current_dir(root)
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    let mut md = String::new();
    writeln!(md, "# GPU smoke test ({})\n", a.backend.key())?;
    writeln!(md, "- device: {}", gpu.description.replace('\n', "; "))?;
    writeln!(md, "- commit: {commit}")?;
    writeln!(
        md,
        "- {} training steps per row of each quick profile; step bench at ResNet width {}, {} timed steps\n",
        a.steps, a.bench_width, a.bench_steps
    )?;
    writeln!(md, "| command | status | seconds | log |")?;
    writeln!(md, "| --- | --- | --- | --- |")?;
    for o in outcomes {
        let log = o.log.strip_prefix(out).unwrap_or(&o.log).display();
        writeln!(
            md,
            "| {} | {} | {:.1} | {log} |",
            o.label, o.status, o.seconds
        )?;
    }
    // The step bench's own tables (time and memory per objective).
    for o in outcomes
        .iter()
        .filter(|o| o.ok && o.label.starts_with("bench steps"))
    {
        if let Ok(text) = std::fs::read_to_string(o.dir.join("steps.md")) {
            writeln!(md, "\n## {}\n", o.label)?;
            // The bench's own heading levels go one down.
            for line in text.lines() {
                if line.starts_with('#') {
                    writeln!(md, "#{line}")?;
                } else {
                    writeln!(md, "{line}")?;
                }
            }
        }
    }
    std::fs::write(out.join("gpu-smoke.md"), md)
        .with_context(|| format!("writing {}", out.join("gpu-smoke.md").display()))?;
    let json = serde_json::json!({
        "backend": a.backend.key(),
        "device": gpu.description,
        "commit": commit,
        "steps_per_row": a.steps,
        "bench_width": a.bench_width,
        "commands": outcomes.iter().map(|o| serde_json::json!({
            "label": o.label,
            "args": o.args,
            "status": o.status,
            "ok": o.ok,
            "seconds": o.seconds,
            "log": o.log,
        })).collect::<Vec<_>>(),
    });
    std::fs::write(
        out.join("gpu-smoke.json"),
        serde_json::to_string_pretty(&json)?,
    )
    .with_context(|| format!("writing {}", out.join("gpu-smoke.json").display()))?;
    Ok(())
}
