//! The step benchmark's report: `results.json` and `steps.md` with our milliseconds and memory
//! per step beside the PyTorch peer's, the ratios the paper and the performance targets are
//! stated in, and the compute rates.

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::objective::Objective;
use crate::report::{
    environment, markdown_table, read_json, write_atomic, write_json, Environment,
};
use crate::runner::{Context, RowStatus};

use super::measure::{matmul_peak_gflops, step_gflop, StepResult, PEAK_MATMUL_SIZE};
use super::{BenchNet, StepBenchConfig};

/// One objective of the peer's JSON file (`--json` of `torch_sm_bench.py`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeerResult {
    /// Objective name.
    pub objective: String,
    /// Median step, ms.
    pub median_ms: f64,
    /// Peak RSS over the timed steps, MB.
    #[serde(default)]
    pub step_peak_rss_mb: Option<f64>,
}

/// The peer's JSON file: its arguments and per-objective results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeerFile {
    /// The peer's command-line arguments.
    pub args: serde_json::Value,
    /// Per objective.
    pub results: Vec<PeerResult>,
}

/// Everything `results.json` holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepBenchResults {
    /// Settings.
    pub config: StepBenchConfig,
    /// Versions and machine.
    pub environment: Environment,
    /// Measured objectives.
    pub results: Vec<StepResult>,
    /// Objectives that failed or passed the time limit, and why.
    pub failed: Vec<(Objective, String)>,
    /// The PyTorch peer's results, when given.
    pub peer: Option<PeerFile>,
    /// [`matmul_peak_gflops`] of this machine, measured after the objectives.
    #[serde(default)]
    pub matmul_gflops: Option<f64>,
}

/// Reads every measured objective, the peer's file and the machine's matrix-product rate, and
/// writes `results.json` and `steps.md` into `ctx.out`; returns the Markdown.
///
/// # Errors
/// An unreadable measurement or peer file, I/O errors.
pub fn write(
    ctx: &Context,
    cfg: &StepBenchConfig,
    rows: &[(Objective, RowStatus)],
) -> Result<String> {
    let peer = match &cfg.peer {
        Some(p) => Some(read_json::<PeerFile>(p)?),
        None => None,
    };
    let (mut results, mut failed) = (Vec::new(), Vec::new());
    for (objective, status) in rows {
        match status {
            RowStatus::Done => results.push(read_json::<StepResult>(
                &ctx.row_dir(objective.key()).join("measure.json"),
            )?),
            RowStatus::Failed { reason } | RowStatus::Skipped { reason } => {
                failed.push((*objective, reason.clone()));
            }
            RowStatus::Paused { .. } => {}
        }
    }
    eprintln!("== f32 matmul peak ({PEAK_MATMUL_SIZE}^3)");
    let r = StepBenchResults {
        config: cfg.clone(),
        environment: environment(),
        results,
        failed,
        peer,
        matmul_gflops: Some(matmul_peak_gflops(ctx.device)?),
    };
    write_json(&ctx.out.join("results.json"), &r)?;
    let md = markdown(&r);
    write_atomic(&ctx.out.join("steps.md"), &md)?;
    Ok(md)
}

fn mb(b: Option<u64>) -> String {
    b.map_or("n/a".into(), |b| format!("{:.0}", b as f64 / 1e6))
}

/// The Markdown report: ours (and the peer's) ms per step and memory, and the ratios the paper
/// and the performance targets are stated in.
pub fn markdown(r: &StepBenchResults) -> String {
    let c = &r.config;
    let params = r.results.first().map_or(0, |s| s.params);
    let network = match c.net {
        BenchNet::Resnet => format!(
            "ResNet EBM {}x{} input, width {}, blocks {:?}, {:?}, {params} parameters, `{}` \
             convolution kernels",
            c.model.image_size,
            c.model.image_size,
            c.model.width,
            c.model.blocks_per_stage,
            c.model.activation,
            c.model.conv_algorithm.name(),
        ),
        BenchNet::Mlp => format!(
            "MLP {:?}, {:?}, {params} parameters",
            c.mlp.sizes, c.mlp.activation
        ),
        BenchNet::Nice => format!(
            "NICE, {} couplings of {:?} softplus networks, {params} parameters",
            c.nice.couplings,
            c.nice.net_sizes()
        ),
    };
    let mut md = format!(
        "# Training-step cost\n\n{network}; batch {}, a fixed uniform batch; sigma {}, eps {}; \
         Adam. Median of {} steps after {} warm-up steps, each objective in its own process; \
         memory is the peak resident memory over the timed steps. Machine: {} ({} cores), \
         candle {}.\n\n",
        c.batch,
        c.sigma,
        c.eps,
        c.steps,
        c.warmup,
        r.environment.cpu,
        r.environment.cores,
        r.environment.candle_version,
    );
    let peer = |o: Objective| -> Option<&PeerResult> {
        r.peer
            .as_ref()?
            .results
            .iter()
            .find(|p| Objective::parse(&p.objective).is_ok_and(|q| q == o))
    };
    let ours = |o: Objective| r.results.iter().find(|s| s.objective == o);
    let rows: Vec<Vec<String>> = r
        .results
        .iter()
        .map(|s| {
            let p = peer(s.objective);
            vec![
                s.objective.key().to_string(),
                format!("{:.1}", s.median_ms),
                mb(s.peak_rss_bytes),
                p.map_or("—".into(), |p| format!("{:.1}", p.median_ms)),
                p.and_then(|p| p.step_peak_rss_mb)
                    .map_or("—".into(), |m| format!("{m:.0}")),
                p.map_or("—".into(), |p| {
                    format!("{:.2}x", s.median_ms / p.median_ms)
                }),
            ]
        })
        .collect();
    md += &markdown_table(
        &[
            "objective",
            "ours, ms",
            "ours, peak MB",
            "PyTorch, ms",
            "PyTorch, peak MB",
            "ours / PyTorch",
        ],
        &rows,
    );
    let ms = |o: Objective| ours(o).map(|s| s.median_ms);
    let pms = |o: Objective| peer(o).map(|p| p.median_ms);
    // The fastest a direct-convolution step could be here: its FLOPs at the matrix-product peak.
    let floor_ms = |o: Objective| Some(step_gflop(c, o)? / r.matmul_gflops? * 1e3);
    let mut ratios = Vec::new();
    let mut ratio =
        |name: &str, a: Option<f64>, b: Option<f64>, bound: Option<f64>, target: &str| {
            if let (Some(a), Some(b)) = (a, b) {
                ratios.push(vec![
                    name.to_string(),
                    format!("{:.2}x", a / b),
                    bound.map_or("—".into(), |f| format!("{:.2}x", a / f)),
                    target.to_string(),
                ]);
            }
        };
    ratio(
        "SSM / FD-SSM (ours)",
        ms(Objective::Ssm),
        ms(Objective::FdSsm),
        None,
        "paper 2.93x",
    );
    ratio(
        "DSM / FD-DSM (ours)",
        ms(Objective::Dsm),
        ms(Objective::FdDsm),
        None,
        "paper 1.74x",
    );
    ratio(
        "PyTorch FD-SSM / our FD-SSM",
        pms(Objective::FdSsm),
        ms(Objective::FdSsm),
        floor_ms(Objective::FdSsm),
        ">= 1",
    );
    ratio(
        "PyTorch SSM / our FD-SSM",
        pms(Objective::Ssm),
        ms(Objective::FdSsm),
        floor_ms(Objective::FdSsm),
        ">= 2.9",
    );
    ratio(
        "PyTorch DSM / our FD-DSM",
        pms(Objective::Dsm),
        ms(Objective::FdDsm),
        floor_ms(Objective::FdDsm),
        ">= 1.7",
    );
    let mem = |o: Objective| ours(o).and_then(|s| s.peak_rss_bytes).map(|b| b as f64);
    ratio(
        "SSM / FD-SSM peak memory (ours)",
        mem(Objective::Ssm),
        mem(Objective::FdSsm),
        None,
        ">= 4",
    );
    md += &format!(
        "\n## Ratios\n\n\"At the peak\": the ratio if our step ran all its nominal FLOPs at the \
         f32 matrix-product peak (see below), the most a direct convolution could reach here; \
         Winograd's algorithm (ours, on the 3x3 layers of 16 or more channels and maps of 6 x 6 \
         or more) needs fewer multiplications and can pass it.\n\n{}",
        markdown_table(&["ratio", "value", "at the peak", "target"], &ratios)
    );
    if let Some(peak) = r.matmul_gflops {
        let rows: Vec<Vec<String>> = r
            .results
            .iter()
            .filter_map(|s| {
                let gflop = step_gflop(c, s.objective)?;
                let rate = |t: f64| format!("{:.0}", gflop / t * 1e3);
                Some(vec![
                    s.objective.key().to_string(),
                    format!("{gflop:.1}"),
                    rate(s.median_ms),
                    peer(s.objective).map_or("—".into(), |p| rate(p.median_ms)),
                    format!("{:.0}", gflop / peak * 1e3),
                ])
            })
            .collect();
        md += &format!(
            "\n## Compute\n\nf32 matrix-product peak of this machine: {peak:.0} GFLOP/s \
             (Candle, {n} x {n}, all threads). FLOPs per step: the network's convolutions and head, \
             forward and backward, nominal count (zero-padding taps included, direct convolution), \
             the same for both frameworks, so the rates compare times; an implementation that \
             multiplies less (Winograd) can exceed the peak in these units. The gradient-based \
             objectives have no such count.\n\n{}",
            markdown_table(
                &[
                    "objective",
                    "GFLOP per step",
                    "ours, GFLOP/s",
                    "PyTorch, GFLOP/s",
                    "at the peak, ms",
                ],
                &rows,
            ),
            n = PEAK_MATMUL_SIZE,
        );
    }
    if !r.failed.is_empty() {
        md += "\nNot measured:\n\n";
        for (o, why) in &r.failed {
            md += &format!("- {}: {why}\n", o.key());
        }
    }
    md
}
