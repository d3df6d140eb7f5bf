//! FD-SM Fig. 2 (Sec. 3.3): the cost of the T-th directional derivative `(v . grad)^T log p(x)`
//! of the deep-EBM ResNet, exactly by T nested reverse passes against the FD decomposition of
//! Theorem 1 evaluated sequentially (one forward pass per offset) or as one concatenated batch,
//! with the FD estimate's relative error against the exact value.
//!
//! Every (method, T) cell is a row of the runner whose `measure` phase runs in its own child
//! process, so its peak memory is its own and a cell that outgrows the memory or time limit is
//! stopped and reported as such; the exact path is not attempted at higher orders once a lower
//! one was stopped. The error study (the last row, phase `errors`) runs in f64 and f32 on a few images, for the stencil that is timed
//! ([`Stencil::central`](fd_core::Stencil::central)`(T, 0)`, `T + 1` evaluations) and the higher-accuracy stencils with
//! extra pairs (Theorem 1's generalisation, `o(eps^{2 + 2n})`).

mod measure;
mod report;
mod task;

pub use measure::{
    build, checkpoint_model, derivative, error_study, measure_cell, parameters, Setup,
};
pub use report::{markdown, plot};
pub use task::{OrderScaling, OrderScalingOptions, Task};

use std::path::PathBuf;

use models::{Activation, ResNetEbmConfig};
use serde::{Deserialize, Serialize};

use crate::error::{ExpError, Result};
use crate::memory;
use crate::report::Environment;

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
    /// A Table 2 checkpoint (`rows/<row>.seed0/checkpoint.safetensors`) whose trained weights replace
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
        // The weights in f32 and f64 (the error study), before any derivative is taken.
        crate::require_memory(
            &format!(
                "a width-{} ResNet EBM ({} parameters)",
                self.model.width,
                self.model.parameter_count()
            ),
            self.model.parameter_count().saturating_mul(12),
        )?;
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

    /// The memory limit of a cell, bytes.
    pub fn memory_limit_bytes(&self) -> u64 {
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
