//! BiSM Table 1 (Sec. 5.1): a GRBM with 400 hidden units on Frey face trained by DSM on the
//! exact marginal and by BiDSM with N = 0, 1, 5, 10 unrolled steps, each selected by its best
//! validation score-matching loss, reporting the test log-likelihood (log Z by AIS) and the
//! test Fisher divergence (the exact score-matching loss, up to a data constant).
//!
//! Each row runs its `train` phase (training, model selection, AIS) in its own process,
//! checkpointed in `rows/<row>/`.

mod report;
mod train;

pub use report::{markdown, Table1Results};
pub use train::{run_row, RowResult};

use clap::Args;
use latent::bism::BismConfig;
use serde::{Deserialize, Serialize};

use crate::error::{ExpError, Result};
use crate::runner::{
    finish_training, Context, Experiment, ExperimentRow, Kind, Phase, PhaseOutcome, RowContext,
    RowStatus,
};

/// A row of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Row {
    /// DSM on the exact marginal.
    Dsm,
    /// BiDSM with this many unrolled steps.
    Bidsm(usize),
}

impl ExperimentRow for Row {
    /// `dsm`, `bidsm-n<N>`.
    fn key(&self) -> String {
        match self {
            Row::Dsm => "dsm".into(),
            Row::Bidsm(n) => format!("bidsm-n{n}"),
        }
    }

    fn label(&self) -> String {
        match self {
            Row::Dsm => "DSM".into(),
            Row::Bidsm(n) => format!("BiDSM (N={n})"),
        }
    }

    /// `dsm`, `bidsm-n<N>` or the unroll count `N` alone.
    fn parse(s: &str) -> Result<Self> {
        let s = s.trim();
        if s == "dsm" {
            return Ok(Row::Dsm);
        }
        s.strip_prefix("bidsm-n")
            .unwrap_or(s)
            .parse()
            .map(Row::Bidsm)
            .map_err(|_| {
                ExpError::Config(format!(
                    "row `{s}` is neither `dsm` nor a BiDSM unroll count (`5` or `bidsm-n5`)"
                ))
            })
    }
}

impl Row {
    /// The paper's `(LL, Fisher)`, where it reports the row.
    pub fn paper(self) -> Option<(f64, f64)> {
        match self {
            Row::Dsm => Some((129.23, -5885.09)),
            Row::Bidsm(0) => Some((107.59, -5474.52)),
            Row::Bidsm(1) => Some((110.65, -5516.07)),
            Row::Bidsm(5) => Some((124.00, -5780.18)),
            Row::Bidsm(10) => Some((125.72, -5800.17)),
            Row::Bidsm(_) => None,
        }
    }
}

/// Settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Table1Config {
    /// Profile name.
    pub profile: String,
    /// Hidden units (paper: 400).
    pub hidden: usize,
    /// Iterations per row (paper: 20000).
    pub iters: u64,
    /// Batch size (paper: 100).
    pub batch: usize,
    /// Adam learning rate (paper: 2e-4).
    pub lr: f64,
    /// DSM noise level (reference: 0.3).
    pub sigma: f64,
    /// BiSM lower level (paper: K = 5; N per row).
    pub bism: BismConfig,
    /// Adam learning rate of the K lower-level updates.
    pub lower_adam_lr: f64,
    /// Validation evaluations (model selection) along training.
    pub eval_points: usize,
    /// Checkpoint every this many steps (and at the end of each row).
    pub checkpoint_every: u64,
    /// AIS chains for the test log-likelihood (paper: 2000).
    pub ais_chains: usize,
    /// AIS intermediate distributions (paper: 2000).
    pub ais_steps: usize,
    /// Rows.
    pub rows: Vec<Row>,
    /// Seed.
    pub seed: u64,
}

impl Table1Config {
    /// A laptop-CPU profile: every row, 100 hidden units, few iterations, a smaller AIS (about
    /// 8 minutes on 2 cores; BiDSM with N = 10 dominates).
    pub fn quick() -> Self {
        Self {
            profile: "quick".into(),
            hidden: 100,
            iters: 200,
            batch: 100,
            lr: 2e-3,
            sigma: 0.3,
            bism: BismConfig {
                lower_steps: 5,
                unroll: 0,
                lower_lr: 1e-2,
                tau: 0.1,
            },
            lower_adam_lr: 1e-3,
            eval_points: 5,
            checkpoint_every: 100,
            ais_chains: 100,
            ais_steps: 500,
            rows: vec![
                Row::Dsm,
                Row::Bidsm(0),
                Row::Bidsm(1),
                Row::Bidsm(5),
                Row::Bidsm(10),
            ],
            seed: 0,
        }
    }

    /// The paper's settings.
    pub fn paper() -> Self {
        Self {
            profile: "paper".into(),
            hidden: 400,
            iters: 20_000,
            lr: 2e-4,
            lower_adam_lr: 2e-4,
            eval_points: 40,
            checkpoint_every: 1000,
            ais_chains: 2000,
            ais_steps: 2000,
            ..Self::quick()
        }
    }

    /// A named profile.
    ///
    /// # Errors
    /// An unknown name.
    pub fn profile(name: &str) -> Result<Self> {
        crate::pick_profile(name, Self::quick, Self::paper)
    }

    /// Checks the settings.
    ///
    /// # Errors
    /// [`ExpError::Config`] naming the bad field.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(ExpError::Config(m));
        if self.hidden == 0 || self.batch == 0 || self.batch > 1400 {
            return bad("hidden >= 1 and batch in 1..=1400 needed".into());
        }
        if self.iters == 0
            || self.eval_points == 0
            || self.checkpoint_every == 0
            || self.ais_chains < 2
            || self.ais_steps == 0
        {
            return bad(
                "iters, eval_points, checkpoint_every, ais_steps >= 1 and ais_chains >= 2 needed"
                    .into(),
            );
        }
        crate::require_positive(&[
            ("lr", self.lr),
            ("sigma", self.sigma),
            ("lower_adam_lr", self.lower_adam_lr),
        ])?;
        self.bism
            .validate()
            .map_err(|e| ExpError::Config(e.to_string()))?;
        if self.rows.is_empty() {
            return bad("no row selected".into());
        }
        // f64 weights of the GRBM and of the posterior, each with a gradient and Adam's moments.
        let weights = (self.hidden as u64).saturating_mul(560);
        crate::require_memory(
            &format!("a GRBM with {} hidden units on Frey face", self.hidden),
            weights.saturating_mul(2 * 4 * 8),
        )?;
        Ok(())
    }
}

/// BiSM Table 1 for the runner.
#[derive(Debug, Clone, Copy)]
pub struct BismTable1;

/// The command-line options of BiSM Table 1.
#[derive(Debug, Clone, Args)]
pub struct Table1Options {
    /// Override the iterations per row.
    #[arg(long)]
    pub iters: Option<u64>,
    /// Override the hidden units.
    #[arg(long)]
    pub hidden: Option<usize>,
    /// Rows: `dsm` and the BiDSM unroll counts, e.g. `dsm,0,5`.
    #[arg(long, value_delimiter = ',')]
    pub rows: Option<Vec<String>>,
    /// Override the AIS chains and distributions, e.g. `--ais 200,1000`.
    #[arg(long, value_delimiter = ',')]
    pub ais: Option<Vec<usize>>,
    /// Checkpoint every this many steps (and at the end of each row).
    #[arg(long)]
    pub checkpoint_every: Option<u64>,
    /// Seed.
    #[arg(long)]
    pub seed: Option<u64>,
}

impl Experiment for BismTable1 {
    const NAME: &'static str = "bism-table1";
    const KIND: Kind = Kind::Repro;
    const ABOUT: &'static str = "Table 1 of Bi-level Score Matching: test log-likelihood (AIS) \
        and test Fisher divergence of a Gaussian RBM on Frey face trained by DSM and by BiDSM \
        with N unrolled steps. Profiles: quick (about 8 minutes on 2 cores) and paper (20000 \
        iterations, lr 2e-4, AIS with 2000 chains and 2000 distributions). Writes \
        bism_table1.md, results.json and validation.png.";
    const PROFILES: &'static [&'static str] = &["quick", "paper"];
    const TRAINS: bool = true;
    type Config = Table1Config;
    type Row = Row;
    type Options = Table1Options;

    fn config(profile: &str, a: &Table1Options) -> Result<Table1Config> {
        let mut cfg = Table1Config::profile(profile)?;
        if let Some(i) = a.iters {
            cfg.iters = i;
            cfg.eval_points = cfg.eval_points.min(i as usize).max(1);
            cfg.checkpoint_every = cfg.checkpoint_every.min(i.max(1));
        }
        if let Some(every) = a.checkpoint_every {
            cfg.checkpoint_every = every;
        }
        if let Some(h) = a.hidden {
            cfg.hidden = h;
        }
        if let Some(rows) = &a.rows {
            cfg.rows = rows.iter().map(|r| Row::parse(r)).collect::<Result<_>>()?;
        }
        if let Some(ais) = &a.ais {
            let [chains, steps] = ais.as_slice() else {
                return Err(ExpError::Config(
                    "--ais takes two numbers, chains and distributions, e.g. --ais 200,1000".into(),
                ));
            };
            (cfg.ais_chains, cfg.ais_steps) = (*chains, *steps);
        }
        if let Some(s) = a.seed {
            cfg.seed = s;
        }
        Ok(cfg)
    }

    fn validate(cfg: &Table1Config) -> Result<()> {
        cfg.validate()
    }

    fn datasets(_: &Table1Config) -> Vec<datasets::Dataset> {
        vec![datasets::Dataset::FreyFace]
    }

    fn rows(cfg: &Table1Config) -> Vec<Row> {
        cfg.rows.clone()
    }

    fn phases(_: &Table1Config, _: Row) -> Vec<Phase> {
        vec![Phase {
            name: "train",
            higher_order: true,
        }]
    }

    fn run_phase(
        ctx: &RowContext,
        cfg: &Table1Config,
        row: Row,
        _phase: &str,
    ) -> Result<PhaseOutcome> {
        ctx.higher_order()?;
        let data = datasets::load_frey_face(ctx.run.data_dir, &candle_core::Device::Cpu)?;
        let result = run_row(cfg, row, &data, &ctx.dir, ctx.run.control)?;
        finish_training(ctx, result, cfg.iters)
    }

    fn report(ctx: &Context, cfg: &Table1Config, rows: &[(Row, RowStatus)]) -> Result<String> {
        report::write(ctx, cfg, rows)
    }
}
