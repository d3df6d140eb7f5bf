//! The order-scaling study for the runner (FD-SM Fig. 2): one row per (method, T) cell, then the
//! error study, each in its own process under the memory and time limits.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use serde::{Deserialize, Serialize};

use crate::error::{ExpError, Result};
use crate::report::{remove_if_exists, write_json};
use crate::runner::limits::Limits;
use crate::runner::{
    Context, Experiment, ExperimentRow, Kind, Phase, PhaseOutcome, RowContext, RowStatus,
};

use super::{checkpoint_model, error_study, measure_cell, Method, OrderScalingConfig};

/// A row of the study.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Task {
    /// Time and memory of one method at one order.
    Cell {
        /// The method.
        method: Method,
        /// The derivative order T.
        order: u32,
    },
    /// The FD error against the exact value at every order.
    Errors,
}

impl ExperimentRow for Task {
    fn key(&self) -> String {
        match self {
            Task::Cell { method, order } => format!("{}-t{order}", method.key()),
            Task::Errors => "errors".into(),
        }
    }

    fn label(&self) -> String {
        match self {
            Task::Cell { method, order } => format!("{}, T = {order}", method.label()),
            Task::Errors => "error study".into(),
        }
    }

    fn parse(s: &str) -> Result<Self> {
        if s == "errors" {
            return Ok(Task::Errors);
        }
        let bad = || {
            ExpError::Config(format!(
                "unknown order-scaling row `{s}`; expected errors or <method>-t<order>, e.g. \
                 fd-parallel-t3"
            ))
        };
        let (method, order) = s.rsplit_once("-t").ok_or_else(bad)?;
        Ok(Task::Cell {
            method: Method::parse(method)?,
            order: order.parse().map_err(|_| bad())?,
        })
    }
}

/// The order-scaling study.
#[derive(Debug, Clone, Copy)]
pub struct OrderScaling;

/// The command-line options of the order-scaling study.
#[derive(Debug, Clone, Args)]
pub struct OrderScalingOptions {
    /// Override the ResNet width n.
    #[arg(long)]
    pub width: Option<usize>,
    /// Override the images per call.
    #[arg(long)]
    pub batch: Option<usize>,
    /// Override the highest order T.
    #[arg(long)]
    pub max_order: Option<u32>,
    /// Override |v|, the radius of the direction.
    #[arg(long)]
    pub eps: Option<f64>,
    /// Override the timed calls per cell.
    #[arg(long)]
    pub repeats: Option<usize>,
    /// Memory a cell may use, GB (default: half of what is available).
    #[arg(long)]
    pub memory_limit_gb: Option<f64>,
    /// Time a cell may take, seconds.
    #[arg(long)]
    pub time_limit_s: Option<f64>,
    /// Use the trained weights (and network settings) of a Table 2 checkpoint, e.g.
    /// results/table2/rows/ssm.seed0/checkpoint.safetensors; overrides --width.
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
    /// Seed of the weights and directions.
    #[arg(long)]
    pub seed: Option<u64>,
}

impl Experiment for OrderScaling {
    const NAME: &'static str = "order-scaling";
    const KIND: Kind = Kind::Bench;
    const ABOUT: &'static str = "FD-SM Fig. 2: time, memory and accuracy of the T-th \
        directional derivative (v . grad)^T log p(x) of the deep-EBM ResNet, exactly by nested \
        autodiff against the finite-difference decomposition (Theorem 1), sequential and \
        parallel. Profiles: quick (a few minutes on a laptop CPU) and paper (the Table 2 \
        network, n = 128, batch 64). Writes order_scaling.md, results.json and \
        order_scaling.png.";
    const PROFILES: &'static [&'static str] = &["quick", "paper"];
    const TRAINS: bool = false;
    type Config = OrderScalingConfig;
    type Row = Task;
    type Options = OrderScalingOptions;

    fn config(profile: &str, a: &OrderScalingOptions) -> Result<OrderScalingConfig> {
        let mut cfg = OrderScalingConfig::profile(profile)?;
        if let Some(w) = a.width {
            cfg.model.width = w;
        }
        if let Some(b) = a.batch {
            cfg.batch = b;
            cfg.error_batch = cfg.error_batch.min(b);
        }
        if let Some(t) = a.max_order {
            cfg.max_order = t;
        }
        if let Some(e) = a.eps {
            cfg.eps = e;
            if !cfg.error_eps.contains(&e) {
                cfg.error_eps.push(e);
            }
        }
        if let Some(r) = a.repeats {
            cfg.repeats = r;
        }
        if let Some(m) = a.memory_limit_gb {
            if !(m.is_finite() && m > 0.0) {
                return Err(ExpError::Config(format!(
                    "--memory-limit-gb must be > 0, got {m} (leave it out for half of the \
                     available memory)"
                )));
            }
            cfg.memory_limit_gb = m;
        }
        if let Some(t) = a.time_limit_s {
            cfg.time_limit_s = t;
        }
        if let Some(s) = a.seed {
            cfg.seed = s;
        }
        if let Some(path) = &a.checkpoint {
            cfg.model = checkpoint_model(path)?;
            eprintln!(
                "using the trained weights of {} (width {}, {:?})",
                path.display(),
                cfg.model.width,
                cfg.model.activation
            );
            cfg.checkpoint = Some(path.clone());
        }
        if cfg.memory_limit_gb == 0.0 {
            // Resolved once, so that every cell and the report use the same limit.
            cfg.memory_limit_gb = cfg.memory_limit_bytes() as f64 / 1e9;
        }
        Ok(cfg)
    }

    fn validate(cfg: &OrderScalingConfig) -> Result<()> {
        cfg.validate()
    }

    fn datasets(_: &OrderScalingConfig) -> Vec<datasets::Dataset> {
        vec![datasets::Dataset::Mnist]
    }

    fn rows(cfg: &OrderScalingConfig) -> Vec<Task> {
        Method::ALL
            .into_iter()
            .flat_map(|method| (1..=cfg.max_order).map(move |order| Task::Cell { method, order }))
            .chain([Task::Errors])
            .collect()
    }

    fn phases(_: &OrderScalingConfig, task: Task) -> Vec<Phase> {
        vec![match task {
            Task::Cell { method, order } => Phase {
                name: "measure",
                higher_order: method == Method::Exact && order >= 2,
            },
            Task::Errors => Phase {
                name: "errors",
                higher_order: true,
            },
        }]
    }

    fn limits(cfg: &OrderScalingConfig) -> Option<Limits> {
        Some(Limits {
            memory_bytes: cfg.memory_limit_bytes(),
            time: Duration::from_secs_f64(cfg.time_limit_s),
        })
    }

    fn skip(_: &OrderScalingConfig, task: Task, before: &[(Task, RowStatus)]) -> Option<String> {
        let Task::Cell { method, .. } = task else {
            return None;
        };
        before.iter().find_map(|(t, status)| match (t, status) {
            (Task::Cell { method: m, order }, RowStatus::Failed { .. }) if *m == method => {
                Some(format!("not attempted: order {order} was already stopped"))
            }
            _ => None,
        })
    }

    fn run_phase(
        ctx: &RowContext,
        cfg: &OrderScalingConfig,
        task: Task,
        _phase: &str,
    ) -> Result<PhaseOutcome> {
        let images = crate::setup::mnist32(ctx.run.data_dir, false, ctx.run.device)?;
        match task {
            Task::Cell { method, order } => {
                if method == Method::Exact && order >= 2 {
                    ctx.higher_order()?;
                }
                let cell = measure_cell(cfg, &images, method, order)?;
                write_json(&ctx.dir.join("cell.json"), &cell)?;
            }
            Task::Errors => {
                ctx.higher_order()?;
                let file = ctx.dir.join("errors.json");
                remove_if_exists(&file)?;
                error_study(cfg, &images, |study| write_json(&file, study))?;
            }
        }
        Ok(PhaseOutcome::Done)
    }

    fn report(
        ctx: &Context,
        cfg: &OrderScalingConfig,
        rows: &[(Task, RowStatus)],
    ) -> Result<String> {
        super::report::write(ctx, cfg, rows)
    }
}
