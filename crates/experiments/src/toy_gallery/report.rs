//! The gallery's report: `results.json`, `toy_gallery.md` (test log-likelihood per density and
//! method, time per step), one `<density>.png` per density (the data, then each method's
//! learned density; below, the data's histogram, then each method's Langevin samples) and
//! `loss-curves.png`.

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::plot::{moving_average, save_heat_maps, save_panels, Axes, HeatMap, Panel, Series};
use crate::report::{
    environment, markdown_table, read_json, write_atomic, write_json, Environment,
};
use crate::runner::{Context, ExperimentRow, RowStatus};

use super::train::{data_histogram, SAMPLE_BINS};
use super::{Cell, GalleryConfig};

/// One cell's outcome.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RowResult {
    /// Density and method.
    pub cell: Cell,
    /// Mean test log-likelihood, `log Z` from the grid.
    pub test_loglik: f64,
    /// The grid's `log Z` of the trained energy.
    pub log_z: f64,
    /// Mean wall time of a training step, ms.
    pub ms_per_step: f64,
    /// The normalised density on the grid (row 0 at the top).
    pub density: Vec<f64>,
    /// Fractions of the Langevin samples per histogram bin.
    pub sample_histogram: Vec<f64>,
    /// `(step, training loss)`, a hundred points.
    pub curve: Vec<(u64, f64)>,
}

/// Everything `results.json` holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GalleryResults {
    /// Settings.
    pub config: GalleryConfig,
    /// Versions and machine.
    pub environment: Environment,
    /// Per cell.
    pub results: Vec<RowResult>,
}

/// Reads every cell's result, writes the report files into `ctx.out`, returns the Markdown.
///
/// # Errors
/// Unreadable results, I/O and plotting errors.
pub fn write(ctx: &Context, cfg: &GalleryConfig, rows: &[(Cell, RowStatus)]) -> Result<String> {
    let mut results = Vec::new();
    for (cell, _) in rows {
        results.push(read_json::<RowResult>(
            &ctx.row_dir(&cell.key()).join("result.json"),
        )?);
    }
    let r = GalleryResults {
        config: cfg.clone(),
        environment: environment(),
        results,
    };
    let out = ctx.out;
    write_json(&out.join("results.json"), &r)?;
    let bins = SAMPLE_BINS;
    for &density in &cfg.densities {
        let data = data_histogram(cfg, density)?;
        let cells: Vec<&RowResult> = r
            .results
            .iter()
            .filter(|x| x.cell.density == density)
            .collect();
        let mut maps = vec![HeatMap {
            title: "data".into(),
            values: data.clone(),
            rows: bins,
            cols: bins,
        }];
        maps.extend(cells.iter().map(|c| HeatMap {
            title: format!("{} ({:.2})", c.cell.method.label(), c.test_loglik),
            values: c.density.clone(),
            rows: cfg.grid,
            cols: cfg.grid,
        }));
        maps.push(HeatMap {
            title: "data (histogram)".into(),
            values: data,
            rows: bins,
            cols: bins,
        });
        maps.extend(cells.iter().map(|c| HeatMap {
            title: format!("{} samples", c.cell.method.label()),
            values: c.sample_histogram.clone(),
            rows: bins,
            cols: bins,
        }));
        save_heat_maps(
            &maps,
            cells.len() + 1,
            &out.join(format!("{}.png", density.key())),
        )?;
    }
    let panels: Vec<Panel> = cfg
        .methods
        .iter()
        .map(|&m| Panel {
            title: format!("{}: training loss", m.label()),
            x_label: "step".into(),
            y_label: "loss".into(),
            axes: Axes::Linear,
            series: r
                .results
                .iter()
                .filter(|x| x.cell.method == m)
                .map(|x| Series {
                    name: x.cell.density.key().into(),
                    points: moving_average(&x.curve, 5),
                })
                .collect(),
        })
        .collect();
    save_panels(&panels, &out.join("loss-curves.png"))?;
    let md = markdown(&r);
    write_atomic(&out.join("toy_gallery.md"), &md)?;
    Ok(md)
}

/// The Markdown report.
pub fn markdown(r: &GalleryResults) -> String {
    let c = &r.config;
    let mut header = vec!["method".to_string()];
    header.extend(c.densities.iter().map(|d| d.key().to_string()));
    header.push("ms / step".into());
    let rows: Vec<Vec<String>> = c
        .methods
        .iter()
        .map(|&m| {
            let mine: Vec<&RowResult> = r.results.iter().filter(|x| x.cell.method == m).collect();
            let mut row = vec![m.label().to_string()];
            for d in &c.densities {
                row.push(
                    mine.iter()
                        .find(|x| x.cell.density == *d)
                        .map_or("—".into(), |x| format!("{:.3}", x.test_loglik)),
                );
            }
            let ms: Vec<f64> = mine.iter().map(|x| x.ms_per_step).collect();
            row.push(format!(
                "{:.2}",
                ms.iter().sum::<f64>() / ms.len().max(1) as f64
            ));
            row
        })
        .collect();
    let header: Vec<&str> = header.iter().map(String::as_str).collect();
    format!(
        "# Training methods on 2-D densities ({} profile)\n\nOne MLP energy 2-{}-1 (softplus) per \
         cell, {} steps at batch {}, Adam lr {} with a cosine schedule; DSM sigma {}, FD eps {}; \
         MLE, CD and PCD: Langevin step {} with noise {}, {} steps (CD: {} from the data; PCD: \
         a replay buffer of {} chains, restart probability {}), energy regulariser {}; NCE: a \
         Gaussian {}x wider than the data. Test log-likelihood of {} points per density, with \
         log Z by the midpoint rule on a {}x{} grid over [-5, 5]^2 (higher is better; the \
         densities are unnormalised outside the square, which holds all the data). Time per \
         step is the mean over densities. Machine: {}.\n\n{}\nPictures: `<density>.png` (top: \
         the data and each method's density, with its test log-likelihood; bottom: the data \
         and {} Langevin samples of each model, {} unadjusted steps of {} from uniform noise); \
         loss curves: `loss-curves.png`; every number: `results.json`.\n",
        c.profile,
        c.hidden
            .iter()
            .map(usize::to_string)
            .collect::<Vec<_>>()
            .join("-"),
        c.iters,
        c.batch,
        c.lr,
        c.sigma,
        c.fd_eps,
        c.sgld.step_size,
        c.sgld.noise_scale,
        c.sgld.steps,
        c.cd_steps,
        c.buffer,
        c.reinit,
        c.alpha,
        c.nce_widen,
        c.test_points,
        c.grid,
        c.grid,
        r.environment.cpu,
        markdown_table(&header, &rows),
        c.samples,
        c.sample_steps,
        c.sample_step_size,
    )
}
