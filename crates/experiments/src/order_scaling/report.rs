//! The order-scaling report: the Markdown tables of times, memory and errors, and the plot.

use std::path::Path;

use crate::error::Result;
use crate::plot::{save_panels, Axes, Panel, Series};
use crate::report::{
    environment, markdown_table, read_json, remove_if_exists, write_atomic, write_json,
};
use crate::runner::{Context, RowStatus};

use super::{
    Cell, CellResult, ErrorStudy, Method, OrderScalingConfig, OrderScalingResults, Task, PAPER_NOTE,
};

/// Reads every cell and the error study, writes `results.json`, `order_scaling.md` and
/// `order_scaling.png` into `ctx.out`, and returns the Markdown.
///
/// # Errors
/// Unreadable cell files, I/O and plotting errors.
pub fn write(
    ctx: &Context,
    cfg: &OrderScalingConfig,
    rows: &[(Task, RowStatus)],
) -> Result<String> {
    let mut cells = Vec::new();
    let mut errors = ErrorStudy::default();
    for (task, status) in rows {
        let dir = ctx.row_dir(&crate::runner::ExperimentRow::key(task));
        let reason = match status {
            RowStatus::Failed { reason } | RowStatus::Skipped { reason } => Some(reason.clone()),
            RowStatus::Done | RowStatus::Paused { .. } => None,
        };
        match *task {
            Task::Cell { method, order } => cells.push(match reason {
                None => CellResult::Measured(read_json(&dir.join("cell.json"))?),
                Some(reason) => CellResult::Skipped {
                    method,
                    order,
                    reason,
                },
            }),
            Task::Errors => {
                let file = dir.join("errors.json");
                if file.exists() {
                    errors = read_json(&file)?;
                }
                if let Some(reason) = reason {
                    let done = errors.rows.iter().map(|r| r.order).max().unwrap_or(0);
                    errors.missing = Some(format!(
                        "orders above {done}: the exact f64 reference was {reason}"
                    ));
                }
            }
        }
    }
    let results = OrderScalingResults {
        config: cfg.clone(),
        environment: environment(),
        memory_limit_bytes: cfg.memory_limit_bytes(),
        cells,
        errors,
    };
    write_json(&ctx.out.join("results.json"), &results)?;
    let md = markdown(&results);
    write_atomic(&ctx.out.join("order_scaling.md"), &md)?;
    let png = ctx.out.join("order_scaling.png");
    if results
        .cells
        .iter()
        .any(|c| matches!(c, CellResult::Measured(_)))
    {
        plot(&results, &png)?;
    } else {
        remove_if_exists(&png)?;
        eprintln!("no cell was measured, so no plot was drawn; see order_scaling.md for why");
    }
    Ok(md)
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
