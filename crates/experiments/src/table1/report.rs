//! The report of Table 1: `results.json`, the Markdown table (rows: methods; per data set the
//! test NLL, test SM loss and time per iteration, ours beside the paper's; FD-SSM's speed-up
//! over SSM), the training-loss curves and the checkerboard's densities.

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::plot::{moving_average, save_heat_maps, save_panels, Axes, HeatMap, Panel, Series};
use crate::report::{
    environment, markdown_table, read_train_eval, write_atomic, write_json, Environment,
};
use crate::runner::{Context, RowStatus};

use super::eval::TOY_LIMIT;
use super::{data, DataSet, EvalReport, Method, Run, Table1Config, TrainReport};

/// Mean over runs of one (data set, method).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Cell {
    /// The data set.
    pub data: DataSet,
    /// The method.
    pub method: Method,
    /// Runs.
    pub runs: usize,
    /// Runs that diverged (evaluated at their best parameters before it).
    pub diverged: usize,
    /// Mean test NLL over runs.
    pub nll: f64,
    /// Mean test SM loss over runs.
    pub sm: f64,
    /// Mean of the runs' median step times, ms.
    pub time_ms: Option<f64>,
}

/// The full result file `results.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Table1Results {
    /// The configuration.
    pub config: Table1Config,
    /// Machine and versions.
    pub environment: Environment,
    /// Per (data set, method).
    pub cells: Vec<Cell>,
    /// Every run's reports.
    pub runs: Vec<(TrainReport, EvalReport)>,
}

/// Reads the runs' reports and writes `results.json`, `table1.md`, `loss_curves.png`,
/// `validation_curves.png` and (with the checkerboard) `densities.png`; returns the Markdown.
///
/// # Errors
/// Unreadable run reports, I/O and plotting errors.
pub fn write(ctx: &Context, cfg: &Table1Config, statuses: &[(Run, RowStatus)]) -> Result<String> {
    let runs: Vec<(TrainReport, EvalReport)> = read_train_eval(ctx, statuses)?;
    let mut cells = Vec::new();
    for &data in &cfg.data_sets {
        for &method in &cfg.methods {
            let mine: Vec<&(TrainReport, EvalReport)> = runs
                .iter()
                .filter(|(t, _)| t.run.data == data && t.run.method == method)
                .collect();
            if mine.is_empty() {
                continue;
            }
            let k = mine.len() as f64;
            let times: Vec<f64> = mine.iter().filter_map(|(t, _)| t.median_step_ms).collect();
            cells.push(Cell {
                data,
                method,
                runs: mine.len(),
                diverged: mine.iter().filter(|(t, _)| t.diverged.is_some()).count(),
                nll: mine.iter().map(|(_, e)| e.test_nll.mean).sum::<f64>() / k,
                sm: mine.iter().map(|(_, e)| e.test_sm.mean).sum::<f64>() / k,
                time_ms: (!times.is_empty())
                    .then(|| times.iter().sum::<f64>() / times.len() as f64),
            });
        }
    }
    let results = Table1Results {
        config: cfg.clone(),
        environment: environment(),
        cells,
        runs,
    };
    write_json(&ctx.out.join("results.json"), &results)?;
    let md = markdown(&results);
    write_atomic(&ctx.out.join("table1.md"), &md)?;
    for (file, validation) in [("loss_curves.png", false), ("validation_curves.png", true)] {
        let panels: Vec<Panel> = cfg
            .data_sets
            .iter()
            .filter_map(|&data| {
                let series: Vec<Series> = results
                    .runs
                    .iter()
                    .filter(|(t, _)| t.run.data == data && t.run.seed == 0)
                    .map(|(t, _)| Series {
                        name: t.run.method.label().into(),
                        points: if validation {
                            t.validation.iter().map(|&(s, v)| (s as f64, v)).collect()
                        } else {
                            moving_average(&t.losses, 5)
                        },
                    })
                    .collect();
                (!series.is_empty()).then(|| Panel {
                    title: data.label().into(),
                    x_label: "step".into(),
                    y_label: if validation {
                        "validation exact SM loss".into()
                    } else {
                        "training loss (moving average of 5)".into()
                    },
                    axes: Axes::Linear,
                    series,
                })
            })
            .collect();
        if !panels.is_empty() {
            save_panels(&panels, &ctx.out.join(file))?;
        }
    }
    let toy: Vec<&(TrainReport, EvalReport)> = results
        .runs
        .iter()
        .filter(|(t, e)| {
            t.run.data == DataSet::Checkerboard && t.run.seed == 0 && !e.density.is_empty()
        })
        .collect();
    if !toy.is_empty() {
        let g = cfg.grid;
        let mut maps = vec![HeatMap {
            title: "data (true density)".into(),
            values: data::toy_density(g, TOY_LIMIT),
            rows: g,
            cols: g,
        }];
        maps.extend(toy.iter().map(|(t, e)| HeatMap {
            title: format!("{} (NLL {:.2})", t.run.method.label(), e.test_nll.mean),
            values: e.density.clone(),
            rows: g,
            cols: g,
        }));
        save_heat_maps(&maps, 4, &ctx.out.join("densities.png"))?;
    }
    Ok(md)
}

/// The Markdown report.
pub fn markdown(r: &Table1Results) -> String {
    let c = &r.config;
    let uci: Vec<DataSet> = c
        .data_sets
        .iter()
        .copied()
        .filter(|d| *d != DataSet::Checkerboard)
        .collect();
    let mut header: Vec<String> = vec!["Algorithm".into()];
    for d in &uci {
        for what in ["NLL", "SM loss", "Time"] {
            header.push(format!("{} {what} (ours / paper)", d.label()));
        }
    }
    let cell = |d: DataSet, m: Method| r.cells.iter().find(|x| x.data == d && x.method == m);
    let rows: Vec<Vec<String>> = c
        .methods
        .iter()
        .map(|&m| {
            let mut row = vec![m.label().to_string()];
            for &d in &uci {
                let ours = cell(d, m);
                let paper = m.paper(d);
                row.push(format!(
                    "{} / {}",
                    ours.map_or("—".into(), |x| format!("{:.2}", x.nll)),
                    paper.map_or("—".into(), |p| format!("{:.2}", p.0))
                ));
                row.push(format!(
                    "{} / {}",
                    ours.map_or("—".into(), |x| format!("{:.2}", x.sm)),
                    paper.map_or("—".into(), |p| format!("{:.2}", p.1))
                ));
                row.push(format!(
                    "{} / {}",
                    ours.and_then(|x| x.time_ms)
                        .map_or("—".into(), |t| format!("{t:.1} ms")),
                    paper.map_or("—".into(), |p| format!("{} ms", p.2))
                ));
            }
            row
        })
        .collect();
    let header_refs: Vec<&str> = header.iter().map(String::as_str).collect();
    let speed: Vec<Vec<String>> = uci
        .iter()
        .filter_map(|&d| {
            let t = |m| cell(d, m).and_then(|x| x.time_ms);
            let (s, f) = (t(Method::Ssm)?, t(Method::FdSsm)?);
            let p = Method::Ssm.paper(d)?.2 / Method::FdSsm.paper(d)?.2;
            Some(vec![
                d.label().to_string(),
                format!("{:.2}x", s / f),
                format!("{p:.2}x"),
            ])
        })
        .collect();
    let toy: Vec<Vec<String>> = r
        .cells
        .iter()
        .filter(|x| x.data == DataSet::Checkerboard)
        .map(|x| {
            vec![
                x.method.label().to_string(),
                format!("{:.3}", x.nll),
                format!("{:.3}", x.sm),
                x.time_ms.map_or("—".into(), |t| format!("{t:.1} ms")),
            ]
        })
        .collect();
    let log_z: Vec<Vec<String>> = r
        .runs
        .iter()
        .map(|(t, e)| {
            vec![
                t.run.label_text(),
                format!("{:.3} ± {:.3}", e.log_z.0, e.log_z.1),
                format!("{:.3} ± {:.3}", e.test_nll.mean, e.test_nll.std_err),
                format!("{:.3e}", e.lambda),
            ]
        })
        .collect();
    let env = &r.environment;
    let diverged: usize = r.cells.iter().map(|x| x.diverged).sum();
    let mut notes = String::new();
    if diverged > 0 {
        notes.push_str(&format!(
            " {diverged} run(s) diverged and were evaluated at their best parameters before it."
        ));
    }
    let early: Vec<String> = r
        .runs
        .iter()
        .filter_map(|(t, _)| {
            t.stopped_early_at
                .map(|s| format!("{} at step {s} of {}", t.run.label_text(), t.steps))
        })
        .collect();
    if !early.is_empty() {
        notes.push_str(&format!(
            " Stopped early (patience {:?}): {}.",
            c.patience,
            early.join("; ")
        ));
    }
    format!(
        "# Table 1: DKEF on UCI data ({} profile)\n\n\
         DKEF with {} kernels, {}-unit feature networks, {} inducing points; {} epochs at batch {} \
         (kernel weights from one half, loss on the other), Adam {} (clip {} for SSM/SSMVR, {} for \
         FD-SSM), eps {}, parameters kept at the best validation exact SM loss (every {} steps), then \
         {} steps of the lambda phase. Test NLL with log Z from {} importance samples of the base \
         density; test exact SM loss; both per point on the test split, mean over {} run(s). Ours: {} \
         on a CPU ({}, {} cores), time = median step after {} warm-up steps. Paper: 500 epochs, GPU.{}\n\n\
         {}\n## FD-SSM speed-up over SSM\n\n{}\n{}\
         ## Per run\n\nlog Z by importance sampling with its Monte-Carlo standard error; the test NLL \
         with its standard error over test points (add the log Z error for the estimate's); lambda \
         after the final phase.\n\n{}\n\
         Curves: `loss_curves.png` (training loss), `validation_curves.png` (validation exact SM loss); every number: `results.json`.\n",
        c.profile,
        c.log10_bandwidths.len(),
        c.hidden,
        c.inducing,
        c.epochs,
        c.batch,
        c.lr,
        c.clip_sliced,
        c.clip_fd,
        c.eps,
        c.val_every,
        c.lambda_steps,
        c.is_samples,
        c.seeds,
        if env.release_build { "release build" } else { "debug build" },
        env.cpu,
        env.cores,
        c.timing_warmup,
        notes,
        markdown_table(&header_refs, &rows),
        markdown_table(&["Data set", "SSM time / FD-SSM time (ours)", "(paper)"], &speed),
        if toy.is_empty() {
            String::new()
        } else {
            format!(
                "## 2-D checkerboard (not in the paper)\n\nLearned densities beside the data: `densities.png`.\n\n{}\n",
                markdown_table(&["Method", "test NLL", "test SM loss", "Time"], &toy)
            )
        },
        markdown_table(&["Run", "log Z", "test NLL", "lambda"], &log_z),
    )
}
