//! FD-SM Fig. 2 (Sec. 3.3): the cost of the T-th directional derivative `(v . grad)^T log p(x)`
//! of the deep-EBM ResNet, exactly by T nested reverse passes against the FD decomposition of
//! Theorem 1 evaluated sequentially (one forward pass per offset) or as one concatenated batch,
//! with the FD estimate's relative error against the exact value.
//!
//! Every (method, T) cell runs in its own child process (`measure`), so its peak memory is its
//! own and a cell that outgrows the memory or time limit is stopped and reported as such; the
//! exact path is not attempted at higher orders once a lower one was stopped. The error study
//! (`errors`) runs in f64 and f32 on a few images, for the stencil that is timed
//! ([`Stencil::central`]`(T, 0)`, `T + 1` evaluations) and the higher-accuracy stencils with
//! extra pairs (Theorem 1's generalisation, `o(eps^{2 + 2n})`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use candle_core::{DType, Device, Tensor};
use fd_core::{BatchMode, Stencil};
use models::{Activation, ResNetEbm, ResNetEbmConfig};
use serde::{Deserialize, Serialize};
use sm_objectives::autodiff::{directional_derivative, HIGHER_ORDER_ENV};
use sm_objectives::{fd_directional_derivative, Directions, NoiseSource};

use crate::child::{run_limited, Limits};
use crate::error::{io_err, ExpError, Result};
use crate::plot::{save_panels, Axes, Panel, Series};
use crate::report::{
    environment, markdown_table, read_json, write_atomic, write_json, Environment,
};
use crate::{memory, setup};

/// How the T-th directional derivative is computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// T nested reverse passes (Candle's higher-order mode for T >= 2).
    Exact,
    /// The FD decomposition with one forward pass per stencil offset.
    FdSequential,
    /// The FD decomposition with all offsets in one concatenated forward pass (App. C.1).
    FdParallel,
}

impl Method {
    /// All methods, in the order of the tables.
    pub const ALL: [Method; 3] = [Method::Exact, Method::FdSequential, Method::FdParallel];

    /// The name printed in tables and legends.
    pub fn label(self) -> &'static str {
        match self {
            Method::Exact => "exact (nested autodiff)",
            Method::FdSequential => "FD decomposition",
            Method::FdParallel => "FD decomposition (parallel)",
        }
    }

    /// The command-line spelling.
    pub fn key(self) -> &'static str {
        match self {
            Method::Exact => "exact",
            Method::FdSequential => "fd-sequential",
            Method::FdParallel => "fd-parallel",
        }
    }

    /// Parses [`Method::key`].
    ///
    /// # Errors
    /// An unknown name (the message lists the valid ones).
    pub fn parse(s: &str) -> Result<Self> {
        Self::ALL.into_iter().find(|m| m.key() == s).ok_or_else(|| {
            ExpError::Config(format!(
                "unknown method `{s}`; expected one of exact, fd-sequential, fd-parallel"
            ))
        })
    }
}

/// Settings of the order-scaling measurement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderScalingConfig {
    /// The profile these settings came from.
    pub profile: String,
    /// The energy network (smooth activation: FD beyond T = 2 needs a smooth function).
    pub model: ResNetEbmConfig,
    /// Images per call in the timed cells.
    pub batch: usize,
    /// Orders `1..=max_order` are measured.
    pub max_order: u32,
    /// `|v|`: the direction is uniform on the sphere of this radius (FD-SM's `eps`).
    pub eps: f64,
    /// Untimed calls before timing.
    pub warmup: usize,
    /// Timed calls (fewer when one call takes more than a tenth of the time limit).
    pub repeats: usize,
    /// Images in the error study.
    pub error_batch: usize,
    /// Radii `|v|` of the error study.
    pub error_eps: Vec<f64>,
    /// Extra stencil pairs of the error study (`0` is the timed stencil).
    pub extra_pairs: Vec<usize>,
    /// Resident memory a cell may use, GB (`0`: half of the memory available at the start).
    pub memory_limit_gb: f64,
    /// Wall-clock time a cell may take, seconds.
    pub time_limit_s: f64,
    /// Seed of the weights and directions.
    pub seed: u64,
    /// A Table 2 checkpoint (`rows/<row>/checkpoint.safetensors`) whose trained weights replace
    /// the seeded initial ones; `model` must be its network ([`checkpoint_model`] reads it).
    pub checkpoint: Option<PathBuf>,
}

impl OrderScalingConfig {
    /// A laptop-CPU profile: a width-16 Res18 on 16 MNIST images, T = 1..6, a few minutes.
    pub fn quick() -> Self {
        Self {
            profile: "quick".into(),
            model: ResNetEbmConfig {
                activation: Activation::ShiftedSoftplus,
                ..ResNetEbmConfig::res18(16)
            },
            batch: 16,
            max_order: 6,
            eps: 1.0,
            warmup: 1,
            repeats: 5,
            error_batch: 4,
            error_eps: vec![0.01, 0.1, 1.0],
            extra_pairs: vec![0, 1, 2],
            memory_limit_gb: 0.0,
            time_limit_s: 120.0,
            seed: 0,
            checkpoint: None,
        }
    }

    /// The Table 2 network (n = 128, Res18) at batch 64, for a GPU-sized machine.
    pub fn paper() -> Self {
        Self {
            profile: "paper".into(),
            model: ResNetEbmConfig {
                activation: Activation::ShiftedSoftplus,
                ..ResNetEbmConfig::res18(128)
            },
            batch: 64,
            repeats: 20,
            warmup: 3,
            error_batch: 16,
            time_limit_s: 1800.0,
            ..Self::quick()
        }
    }

    /// The settings of a named profile.
    ///
    /// # Errors
    /// An unknown profile name.
    pub fn profile(name: &str) -> Result<Self> {
        crate::pick_profile(name, Self::quick, Self::paper)
    }

    /// Checks every field.
    ///
    /// # Errors
    /// [`ExpError::Config`] naming the bad field.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(ExpError::Config(m));
        if self.batch == 0 || self.error_batch == 0 {
            return bad("batch and error_batch must be at least 1".into());
        }
        if !(1..=fd_core::MAX_ORDER).contains(&self.max_order) {
            return bad(format!(
                "max_order must be in 1..={}, got {}",
                fd_core::MAX_ORDER,
                self.max_order
            ));
        }
        crate::require_positive(&[("eps", self.eps), ("time_limit_s", self.time_limit_s)])?;
        if self.error_eps.iter().any(|e| !(e.is_finite() && *e > 0.0)) {
            return bad(format!(
                "every error_eps must be finite and > 0, got {:?}",
                self.error_eps
            ));
        }
        if !(self.memory_limit_gb.is_finite() && self.memory_limit_gb >= 0.0) {
            return bad(format!(
                "memory_limit_gb must be >= 0, got {}",
                self.memory_limit_gb
            ));
        }
        if self.repeats == 0 {
            return bad("repeats must be at least 1".into());
        }
        if self.model.width == 0 {
            return bad("the model width must be at least 1".into());
        }
        Ok(())
    }

    fn memory_limit_bytes(&self) -> u64 {
        if self.memory_limit_gb > 0.0 {
            (self.memory_limit_gb * 1e9) as u64
        } else {
            memory::available_bytes().map_or(8_000_000_000, |a| a / 2)
        }
    }
}

/// The measurement of one (method, T) cell.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cell {
    /// Method.
    pub method: Method,
    /// Derivative order.
    pub order: u32,
    /// Forward evaluations of the network per call (FD: stencil points; exact: 1).
    pub evaluations: usize,
    /// Median wall time of one call, ms.
    pub median_ms: f64,
    /// Fastest call, ms.
    pub min_ms: f64,
    /// Timed calls.
    pub calls: usize,
    /// RSS before the first call (model and inputs resident), bytes.
    pub base_rss_bytes: Option<u64>,
    /// Peak RSS over the calls, bytes.
    pub peak_rss_bytes: Option<u64>,
}

impl Cell {
    /// Memory the computation itself needed: peak minus base RSS, bytes.
    pub fn extra_bytes(&self) -> Option<u64> {
        Some(self.peak_rss_bytes?.saturating_sub(self.base_rss_bytes?))
    }
}

/// A cell's result: measured, or why not.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CellResult {
    /// Measured.
    Measured(Cell),
    /// Stopped or not attempted.
    Skipped {
        /// Method.
        method: Method,
        /// Derivative order.
        order: u32,
        /// Why.
        reason: String,
    },
}

/// The FD estimate's error at one (T, eps, stencil).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorRow {
    /// Derivative order.
    pub order: u32,
    /// `|v|`.
    pub eps: f64,
    /// Extra stencil pairs (`0`: the timed stencil).
    pub extra_pairs: usize,
    /// Stencil points (forward evaluations).
    pub evaluations: usize,
    /// `|fd - exact| / |exact|` over the error batch, FD in f64.
    pub rel_error_f64: f64,
    /// The same with FD evaluated in f32 (the precision of the timed cells).
    pub rel_error_f32: f64,
}

/// The error study: rows for every order whose exact f64 reference finished.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ErrorStudy {
    /// Rows by order, eps and stencil.
    pub rows: Vec<ErrorRow>,
    /// Orders whose exact reference did not finish within the limits, and why.
    pub missing: Option<String>,
}

/// Everything `results.json` holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OrderScalingResults {
    /// Settings.
    pub config: OrderScalingConfig,
    /// Versions and machine.
    pub environment: Environment,
    /// Memory limit applied to each cell, bytes.
    pub memory_limit_bytes: u64,
    /// Every cell.
    pub cells: Vec<CellResult>,
    /// The FD error against the exact value.
    pub errors: ErrorStudy,
}

/// The paper's Fig. 2 annotations (PyTorch on a GPU, largest order of the figure).
pub const PAPER_NOTE: &str = "Paper (Fig. 2, PyTorch on a GPU, largest order shown): exact 397 ms and 7.05 GB; FD decomposition 11 ms, parallel 4 ms; FD memory 0.9 GB; FD error under 1%.";

/// Network and inputs of a measurement.
pub struct Setup {
    /// The network with frozen parameters.
    pub net: ResNetEbm,
    /// Images `[B, 1, 32, 32]`.
    pub x: Tensor,
    /// Directions on the sphere of radius `eps`, the shape of `x`.
    pub v: Tensor,
}

/// The network configuration stored in a Table 2 checkpoint (its run's `model` settings).
///
/// # Errors
/// An unreadable checkpoint, or one whose metadata holds no ResNet EBM configuration.
pub fn checkpoint_model(path: &Path) -> Result<ResNetEbmConfig> {
    let loaded = crate::checkpoint::load(path, &Device::Cpu)?;
    let bad = |problem: String| ExpError::Checkpoint {
        path: path.to_path_buf(),
        problem,
    };
    let run: serde_json::Value = serde_json::from_str(&loaded.meta.config)
        .map_err(|e| bad(format!("unreadable run configuration: {e}")))?;
    // Table 2 stores `(config, row)`; accept a bare config as well.
    let model = run.get(0).unwrap_or(&run).get("model").ok_or_else(|| {
        bad("its run configuration has no `model` (not a Table 2 checkpoint?)".into())
    })?;
    serde_json::from_value(model.clone()).map_err(|e| {
        bad(format!(
            "its `model` is not a ResNet EBM configuration: {e}"
        ))
    })
}

/// The parameters of the configured network: the checkpoint's, or seeded initial ones.
///
/// # Errors
/// An unreadable checkpoint.
pub fn parameters(cfg: &OrderScalingConfig) -> Result<HashMap<String, Tensor>> {
    match &cfg.checkpoint {
        Some(path) => Ok(crate::checkpoint::load(path, &Device::Cpu)?.params),
        None => {
            let (vm, _) = setup::seeded_resnet_ebm(&cfg.model, cfg.seed)?;
            let data = vm.data().lock().expect("VarMap lock");
            Ok(data
                .iter()
                .map(|(k, v)| (k.clone(), v.as_tensor().detach()))
                .collect())
        }
    }
}

/// The network in `dtype` with the first `batch` images of `images` and seeded directions of
/// radius `eps`.
///
/// # Errors
/// Parameters that do not fit the configured network, too few images.
pub fn build(
    cfg: &OrderScalingConfig,
    params: &HashMap<String, Tensor>,
    images: &Tensor,
    batch: usize,
    eps: f64,
    dtype: DType,
) -> Result<Setup> {
    let net = setup::frozen_resnet_ebm(&cfg.model, params, dtype).map_err(|e| {
        ExpError::Config(format!(
            "the parameters do not fit the configured network ({:?}): {e}",
            cfg.model
        ))
    })?;
    let n = images.dim(0)?;
    if n < batch {
        return Err(ExpError::Config(format!(
            "{batch} images are needed, only {n} given"
        )));
    }
    let x = images.narrow(0, 0, batch)?.to_dtype(dtype)?;
    let mut noise = NoiseSource::new(cfg.seed ^ 0xd1ec);
    let v = noise
        .projection(&x, Directions::Sphere { radius: eps })?
        .v
        .to_dtype(dtype)?;
    Ok(Setup { net, x, v })
}

/// One call of `method` at order `order`: `[B]` values.
///
/// # Errors
/// Tensor errors; higher-order mode off for the exact path at `order >= 2`.
pub fn derivative(s: &Setup, method: Method, order: u32) -> Result<Tensor> {
    Ok(match method {
        Method::Exact => directional_derivative(&s.net, &s.x, &s.v, order)?,
        Method::FdSequential => fd_directional_derivative(
            &s.net,
            &s.x,
            &s.v,
            &Stencil::central(order, 0).map_err(candle_core::Error::wrap)?,
            BatchMode::PerOffset,
        )?,
        Method::FdParallel => fd_directional_derivative(
            &s.net,
            &s.x,
            &s.v,
            &Stencil::central(order, 0).map_err(candle_core::Error::wrap)?,
            BatchMode::Concatenated,
        )?,
    })
}

/// Times one cell in this process (the `measure` child).
///
/// # Errors
/// Configuration, data and tensor errors.
pub fn measure_cell(
    cfg: &OrderScalingConfig,
    images: &Tensor,
    method: Method,
    order: u32,
) -> Result<Cell> {
    cfg.validate()?;
    let params = parameters(cfg)?;
    let s = build(cfg, &params, images, cfg.batch, cfg.eps, DType::F32)?;
    let call = || -> Result<f64> {
        let t = Instant::now();
        let d = derivative(&s, method, order)?;
        let values = d.to_dtype(DType::F32)?.to_vec1::<f32>()?;
        let ms = t.elapsed().as_secs_f64() * 1e3;
        if values.iter().any(|v| !v.is_finite()) {
            return Err(ExpError::Config(format!(
                "{} at T = {order} produced non-finite values",
                method.label()
            )));
        }
        Ok(ms)
    };
    let base = memory::rss_bytes();
    memory::reset_peak();
    let mut first = f64::INFINITY;
    for _ in 0..cfg.warmup.max(1) {
        first = first.min(call()?);
    }
    // Keep the cell within a tenth of its time limit when one call is slow.
    let affordable = (cfg.time_limit_s * 1e3 / 10.0 / first).floor() as usize;
    let calls = cfg.repeats.min(affordable.max(1));
    let mut times: Vec<f64> = (0..calls).map(|_| call()).collect::<Result<_>>()?;
    times.sort_by(f64::total_cmp);
    Ok(Cell {
        method,
        order,
        evaluations: match method {
            Method::Exact => 1,
            _ => Stencil::central(order, 0)
                .map_err(candle_core::Error::wrap)?
                .len(),
        },
        median_ms: times[times.len() / 2],
        min_ms: times[0],
        calls,
        base_rss_bytes: base,
        peak_rss_bytes: memory::peak_rss_bytes(),
    })
}

/// `|a - b| / |b|` over all entries.
fn rel_error(a: &[f64], b: &[f64]) -> f64 {
    let num: f64 = a.iter().zip(b).map(|(x, y)| (x - y).powi(2)).sum();
    let den: f64 = b.iter().map(|y| y * y).sum();
    (num / den).sqrt()
}

fn host(t: &Tensor) -> Result<Vec<f64>> {
    Ok(t.to_dtype(DType::F64)?.to_vec1::<f64>()?)
}

/// The error study in this process (the `errors` child): for each order, the exact f64 value
/// by nested autodiff, then FD in f64 and f32 for every radius and stencil. `progress` receives
/// the study after each order so a caller can save it before a later, costlier order runs out
/// of memory or time.
///
/// # Errors
/// Configuration, data and tensor errors; higher-order mode off.
pub fn error_study(
    cfg: &OrderScalingConfig,
    images: &Tensor,
    mut progress: impl FnMut(&ErrorStudy) -> Result<()>,
) -> Result<ErrorStudy> {
    cfg.validate()?;
    sm_objectives::autodiff::ensure_higher_order()?;
    let params = parameters(cfg)?;
    let mut study = ErrorStudy::default();
    for order in 1..=cfg.max_order {
        for &eps in &cfg.error_eps {
            let s64 = build(cfg, &params, images, cfg.error_batch, eps, DType::F64)?;
            let s32 = build(cfg, &params, images, cfg.error_batch, eps, DType::F32)?;
            let exact = host(&directional_derivative(&s64.net, &s64.x, &s64.v, order)?)?;
            for &extra in &cfg.extra_pairs {
                let stencil = Stencil::central(order, extra).map_err(candle_core::Error::wrap)?;
                let fd = |s: &Setup| -> Result<Vec<f64>> {
                    host(&fd_directional_derivative(
                        &s.net,
                        &s.x,
                        &s.v,
                        &stencil,
                        BatchMode::Concatenated,
                    )?)
                };
                study.rows.push(ErrorRow {
                    order,
                    eps,
                    extra_pairs: extra,
                    evaluations: stencil.len(),
                    rel_error_f64: rel_error(&fd(&s64)?, &exact),
                    rel_error_f32: rel_error(&fd(&s32)?, &exact),
                });
            }
        }
        progress(&study)?;
    }
    Ok(study)
}

/// Where `run` writes and how it starts its children.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Data directory holding MNIST.
    pub data_dir: PathBuf,
    /// Output directory.
    pub out: PathBuf,
    /// The executable with the `measure` and `errors` subcommands.
    pub exe: PathBuf,
    /// Draw a progress bar.
    pub progress: bool,
}

/// Measures every cell and the error study in child processes and writes `results.json`,
/// `order_scaling.md`, `order_scaling.png` and `config.json` into `opts.out`.
///
/// # Errors
/// Configuration and I/O errors, a child that cannot be started. A cell that fails or passes a
/// limit is recorded as skipped, not an error.
pub fn run(cfg: &OrderScalingConfig, opts: &RunOptions) -> Result<OrderScalingResults> {
    cfg.validate()?;
    let cells_dir = opts.out.join("cells");
    std::fs::create_dir_all(&cells_dir).map_err(io_err(&cells_dir))?;
    let cfg_path = opts.out.join("config.json");
    write_json(&cfg_path, cfg)?;
    let limits = Limits {
        memory_bytes: cfg.memory_limit_bytes(),
        time: Duration::from_secs_f64(cfg.time_limit_s),
    };
    let total = Method::ALL.len() as u64 * u64::from(cfg.max_order) + 1;
    let bar = if opts.progress {
        indicatif::ProgressBar::new(total)
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} cells, {elapsed} {msg}")
            .expect("valid template"),
    );
    let common = |cmd: &mut Command| {
        cmd.arg("--config")
            .arg(&cfg_path)
            .arg("--data-dir")
            .arg(&opts.data_dir);
    };
    let mut cells = Vec::new();
    for method in Method::ALL {
        let mut stopped: Option<u32> = None;
        for order in 1..=cfg.max_order {
            bar.set_message(format!("{} T={order}", method.key()));
            if let Some(t) = stopped {
                cells.push(CellResult::Skipped {
                    method,
                    order,
                    reason: format!("not attempted: order {t} was already stopped"),
                });
                bar.inc(1);
                continue;
            }
            let file = cells_dir.join(format!("{}_T{order}.json", method.key()));
            let _ = std::fs::remove_file(&file);
            let mut cmd = Command::new(&opts.exe);
            cmd.arg("measure");
            common(&mut cmd);
            cmd.arg("--method")
                .arg(method.key())
                .arg("--order")
                .arg(order.to_string())
                .arg("--out")
                .arg(&file);
            if method == Method::Exact && order >= 2 {
                cmd.env(HIGHER_ORDER_ENV, "1");
            } else {
                cmd.env_remove(HIGHER_ORDER_ENV);
            }
            let outcome = run_limited(&mut cmd, limits)?;
            match outcome.failure(limits) {
                None => cells.push(CellResult::Measured(read_json(&file)?)),
                Some(reason) => {
                    bar.println(format!("{} at T = {order}: {reason}", method.label()));
                    stopped = Some(order);
                    cells.push(CellResult::Skipped {
                        method,
                        order,
                        reason,
                    });
                }
            }
            bar.inc(1);
        }
    }
    bar.set_message("error study");
    let errors_file = opts.out.join("errors.json");
    let _ = std::fs::remove_file(&errors_file);
    let mut cmd = Command::new(&opts.exe);
    cmd.arg("errors");
    common(&mut cmd);
    cmd.arg("--out")
        .arg(&errors_file)
        .env(HIGHER_ORDER_ENV, "1");
    let outcome = run_limited(&mut cmd, limits)?;
    let mut errors: ErrorStudy = if errors_file.exists() {
        read_json(&errors_file)?
    } else {
        ErrorStudy::default()
    };
    if let Some(reason) = outcome.failure(limits) {
        let done = errors.rows.iter().map(|r| r.order).max().unwrap_or(0);
        errors.missing = Some(format!(
            "orders above {done}: the exact f64 reference was {reason}"
        ));
    }
    bar.inc(1);
    bar.finish_and_clear();
    let results = OrderScalingResults {
        config: cfg.clone(),
        environment: environment(),
        memory_limit_bytes: limits.memory_bytes,
        cells,
        errors,
    };
    write_json(&opts.out.join("results.json"), &results)?;
    write_atomic(&opts.out.join("order_scaling.md"), &markdown(&results))?;
    let png = opts.out.join("order_scaling.png");
    if results
        .cells
        .iter()
        .any(|c| matches!(c, CellResult::Measured(_)))
    {
        plot(&results, &png)?;
    } else {
        let _ = std::fs::remove_file(&png);
        eprintln!("no cell was measured, so no plot was drawn; see order_scaling.md for why");
    }
    Ok(results)
}

fn measured(r: &OrderScalingResults, method: Method, order: u32) -> Option<&Cell> {
    r.cells.iter().find_map(|c| match c {
        CellResult::Measured(c) if c.method == method && c.order == order => Some(c),
        _ => None,
    })
}

/// The Markdown report: time and memory per order and method, and the error table.
pub fn markdown(r: &OrderScalingResults) -> String {
    let c = &r.config;
    let mut md = format!(
        "# Derivative-order scaling (FD-SM Fig. 2, {} profile)\n\n\
         T-th directional derivative `(v . grad)^T log p(x)` of the ResNet EBM (width {}, blocks \
         {:?}, {:?}, {} weights) on {} MNIST test images, `|v|` = {}, f32 on the CPU. Time: median \
         of the timed calls after {} warm-up call(s). Memory: peak resident memory of the cell's \
         own process minus its resident memory before the first call. Limits per cell: {:.1} GB, \
         {:.0} s. Machine: {}.\n\n{}\n\n",
        c.profile,
        c.model.width,
        c.model.blocks_per_stage,
        c.model.activation,
        c.checkpoint
            .as_ref()
            .map_or("seeded initial".to_string(), |p| format!(
                "trained ({})",
                p.display()
            )),
        c.batch,
        c.eps,
        c.warmup.max(1),
        r.memory_limit_bytes as f64 / 1e9,
        c.time_limit_s,
        r.environment.cpu,
        PAPER_NOTE,
    );
    let orders: Vec<u32> = (1..=c.max_order).collect();
    let mut header = vec!["Method".to_string()];
    header.extend(orders.iter().map(|t| format!("T = {t}")));
    let header: Vec<&str> = header.iter().map(String::as_str).collect();
    for (title, value) in [
        (
            "Time per call (ms)",
            Box::new(|cell: &Cell| format!("{:.1}", cell.median_ms))
                as Box<dyn Fn(&Cell) -> String>,
        ),
        (
            "Extra memory (MB)",
            Box::new(|cell: &Cell| {
                cell.extra_bytes()
                    .map_or("n/a".into(), |b| format!("{:.0}", b as f64 / 1e6))
            }),
        ),
    ] {
        let rows: Vec<Vec<String>> = Method::ALL
            .iter()
            .map(|&m| {
                std::iter::once(m.label().to_string())
                    .chain(
                        orders
                            .iter()
                            .map(|&t| measured(r, m, t).map_or("—".into(), &value)),
                    )
                    .collect()
            })
            .collect();
        md += &format!("## {title}\n\n{}\n", markdown_table(&header, &rows));
    }
    let ratio_rows: Vec<Vec<String>> = orders
        .iter()
        .filter_map(|&t| {
            let e = measured(r, Method::Exact, t)?;
            let s = measured(r, Method::FdSequential, t)?;
            let p = measured(r, Method::FdParallel, t)?;
            Some(vec![
                t.to_string(),
                format!("{:.2}x", e.median_ms / s.median_ms),
                format!("{:.2}x", e.median_ms / p.median_ms),
                match (e.extra_bytes(), p.extra_bytes()) {
                    (Some(a), Some(b)) if b > 0 => format!("{:.1}x", a as f64 / b as f64),
                    _ => "n/a".into(),
                },
            ])
        })
        .collect();
    md += &format!(
        "## Exact over FD\n\n{}\n",
        markdown_table(
            &[
                "T",
                "time, sequential",
                "time, parallel",
                "memory, parallel"
            ],
            &ratio_rows
        )
    );
    let skipped: Vec<String> = r
        .cells
        .iter()
        .filter_map(|c| match c {
            CellResult::Skipped {
                method,
                order,
                reason,
            } => Some(format!("- {} at T = {order}: {reason}", method.label())),
            _ => None,
        })
        .collect();
    if !skipped.is_empty() {
        md += &format!("Cells not measured:\n\n{}\n\n", skipped.join("\n"));
    }
    let err_rows: Vec<Vec<String>> = r
        .errors
        .rows
        .iter()
        .map(|e| {
            vec![
                e.order.to_string(),
                format!("{}", e.eps),
                if e.extra_pairs == 0 {
                    format!("central, {} points (timed)", e.evaluations)
                } else {
                    format!("+{} pairs, {} points", e.extra_pairs, e.evaluations)
                },
                format!("{:.2e}", e.rel_error_f64),
                format!("{:.2e}", e.rel_error_f32),
            ]
        })
        .collect();
    md += &format!(
        "## Relative error of the FD estimate\n\n`|fd - exact| / |exact|` over {} images against \
         the exact value by nested autodiff in f64. The truncation error falls with `|v|` as \
         `|v|^2` (timed stencil) or faster (extra pairs); rounding grows as `|v|^-T`, so f32 needs \
         a larger `|v|` at high orders.\n\n{}\n",
        c.error_batch,
        markdown_table(
            &["T", "|v|", "stencil", "error (f64)", "error (f32)"],
            &err_rows
        )
    );
    if let Some(m) = &r.errors.missing {
        md += &format!("Not in the error table: {m}.\n");
    }
    md
}

/// Three panels: time and extra memory against T (log scale) for the three methods, and the
/// relative error of the timed stencil at `|v|` = `eps` in f64 and f32 with the extra-pair
/// stencils in f64.
///
/// # Errors
/// Nothing measured, or the file cannot be written.
pub fn plot(r: &OrderScalingResults, path: &Path) -> Result<()> {
    let per_method = |value: &dyn Fn(&Cell) -> Option<f64>| -> Vec<Series> {
        Method::ALL
            .iter()
            .map(|&m| Series {
                name: m.label().into(),
                points: (1..=r.config.max_order)
                    .filter_map(|t| Some((f64::from(t), value(measured(r, m, t)?)?)))
                    .collect(),
            })
            .collect()
    };
    let mut panels = vec![
        Panel {
            title: "Time per call".into(),
            x_label: "order T".into(),
            y_label: "ms (log scale)".into(),
            axes: Axes::LogY,
            series: per_method(&|c| Some(c.median_ms)),
        },
        Panel {
            title: "Extra memory".into(),
            x_label: "order T".into(),
            y_label: "MB (log scale)".into(),
            axes: Axes::LogY,
            series: per_method(&|c| c.extra_bytes().map(|b| (b as f64 / 1e6).max(0.1))),
        },
    ];
    let eps = r.config.eps;
    let mut err_series = Vec::new();
    for &extra in &r.config.extra_pairs {
        let pick = |f32_: bool| -> Vec<(f64, f64)> {
            r.errors
                .rows
                .iter()
                .filter(|e| e.extra_pairs == extra && (e.eps - eps).abs() < 1e-12)
                .map(|e| {
                    (
                        f64::from(e.order),
                        if f32_ {
                            e.rel_error_f32
                        } else {
                            e.rel_error_f64
                        },
                    )
                })
                .collect()
        };
        err_series.push(Series {
            name: format!("+{extra} pairs, f64"),
            points: pick(false),
        });
        if extra == 0 {
            err_series.push(Series {
                name: "timed stencil, f32".into(),
                points: pick(true),
            });
        }
    }
    if err_series.iter().any(|s| !s.points.is_empty()) {
        panels.push(Panel {
            title: format!("FD relative error, |v| = {eps}"),
            x_label: "order T".into(),
            y_label: "relative error (log scale)".into(),
            axes: Axes::LogY,
            series: err_series,
        });
    }
    save_panels(&panels, path)
}
