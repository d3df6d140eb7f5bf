//! Figures as PNG: sample grids (with the `image` crate) and line plots (with `plotters`,
//! text drawn with the embedded DejaVu Sans so no system fonts are needed).

use std::path::Path;
use std::sync::Once;

use candle_core::{DType, Tensor};
use plotters::prelude::*;

use crate::error::{ExpError, Result};

/// Writes `[N, C, H, W]` images (`C` 1 for grey, 3 for RGB) with values in `[0, 1]` (clamped)
/// as a grid of `cols` columns
/// with a 2-pixel border.
pub fn save_image_grid(images: &Tensor, cols: usize, path: &Path) -> Result<()> {
    save_image_grid_scaled(images, cols, 1, path)
}

/// [`save_image_grid`] with every pixel drawn as a `scale x scale` block (e.g. 3 for 28 x 28
/// digits that stay readable on a screen).
pub fn save_image_grid_scaled(
    images: &Tensor,
    cols: usize,
    scale: usize,
    path: &Path,
) -> Result<()> {
    save_image_grids_side_by_side(&[images], cols, scale, path)
}

/// Several grids of `[N, C, H, W]` images in `[0, 1]` (clamped; `C` 1 for grey, 3 for RGB, the
/// same for all), each `cols` columns wide,
/// side by side in one picture with a wide gap between them (e.g. a sampler's starting noise,
/// its last state and the denoised samples), every pixel drawn as a `scale x scale` block.
/// The grids may hold different numbers of images but share `C`, `H` and `W`.
pub fn save_image_grids_side_by_side(
    grids: &[&Tensor],
    cols: usize,
    scale: usize,
    path: &Path,
) -> Result<()> {
    let bad = |problem: String| ExpError::Plot {
        path: path.to_path_buf(),
        problem,
    };
    if scale == 0 || cols == 0 || grids.is_empty() {
        return Err(bad(format!(
            "need at least one grid, cols >= 1 and scale >= 1, got {} grids, cols {cols}, scale {scale}",
            grids.len()
        )));
    }
    let mut blocks = Vec::with_capacity(grids.len());
    let mut size = None;
    for images in grids {
        let (n, c, h, w) = images.dims4()?;
        if !(c == 1 || c == 3) || n == 0 || size.is_some_and(|s| s != (c, h, w)) {
            return Err(bad(format!(
                "need [N>=1, C, H, W] images with C = 1 (grey) or 3 (RGB), all of one size, \
                 got {:?}",
                images.dims()
            )));
        }
        size = Some((c, h, w));
        let images = images.to_dtype(DType::F32)?;
        let images = if scale > 1 {
            images.upsample_nearest2d(h * scale, w * scale)?
        } else {
            images
        };
        let pixels = images.clamp(0f32, 1f32)?.flatten_all()?.to_vec1::<f32>()?;
        blocks.push((n, pixels));
    }
    let (c, h, w) = size.map_or((1, 0, 0), |(c, h, w)| (c, h * scale, w * scale));
    let gap = 6 * scale.max(2);
    let block_w = cols * (w + 2) + 2;
    let rows = blocks
        .iter()
        .map(|(n, _)| n.div_ceil(cols))
        .max()
        .unwrap_or(1);
    let gw = blocks.len() * block_w + (blocks.len() - 1) * gap;
    let gh = rows * (h + 2) + 2;
    let mut img = image::RgbImage::from_pixel(gw as u32, gh as u32, image::Rgb([64; 3]));
    let plane = h * w;
    for (b, (n, pixels)) in blocks.iter().enumerate() {
        let x0 = b * (block_w + gap);
        for k in 0..*n {
            let (r, col) = (k / cols, k % cols);
            for y in 0..h {
                for x in 0..w {
                    let at = |ch: usize| {
                        let v = pixels[(k * c + ch.min(c - 1)) * plane + y * w + x];
                        (v * 255.0).round() as u8
                    };
                    img.put_pixel(
                        (x0 + 2 + col * (w + 2) + x) as u32,
                        (2 + r * (h + 2) + y) as u32,
                        image::Rgb([at(0), at(1), at(2)]),
                    );
                }
            }
        }
        // The gap is white, so the grids read as separate panels.
        if b + 1 < blocks.len() {
            for x in x0 + block_w..x0 + block_w + gap {
                for y in 0..gh {
                    img.put_pixel(x as u32, y as u32, image::Rgb([255; 3]));
                }
            }
        }
    }
    // Grey grids are saved as grey PNGs.
    let img = image::DynamicImage::ImageRgb8(img);
    let img = if c == 1 {
        image::DynamicImage::ImageLuma8(img.to_luma8())
    } else {
        img
    };
    img.save(path).map_err(|e| bad(e.to_string()))
}

/// One named series of `(x, y)` points.
#[derive(Debug, Clone)]
pub struct Series {
    /// Legend label.
    pub name: String,
    /// Points in drawing order.
    pub points: Vec<(f64, f64)>,
}

/// A moving average over `window` points of `(step, value)` records, plotted at `step + 1` (the
/// steps completed): readable training-loss curves.
pub fn moving_average(points: &[(u64, f64)], window: usize) -> Vec<(f64, f64)> {
    let window = window.max(1);
    let mut out = Vec::with_capacity(points.len());
    let mut sum = 0.0;
    for (i, &(step, v)) in points.iter().enumerate() {
        sum += v;
        if i >= window {
            sum -= points[i - window].1;
        }
        let n = (i + 1).min(window) as f64;
        out.push((step as f64 + 1.0, sum / n));
    }
    out
}

/// Registers the embedded DejaVu Sans as the `sans-serif` family of `plotters` (once per
/// process), so text renders without system fonts; other `plotters` users in the process (e.g.
/// criterion's report plots) benefit too.
pub fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The bytes are a valid TrueType font shipped by the `dejavu` crate.
        let _ = plotters::style::register_font(
            "sans-serif",
            FontStyle::Normal,
            dejavu::sans::regular(),
        );
    });
}

/// How the axes of a [`Panel`] are scaled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Axes {
    /// Both axes linear.
    Linear,
    /// Logarithmic x axis.
    LogX,
    /// Logarithmic y axis.
    LogY,
}

/// One chart: its title, axis labels and scaling, and the series drawn in it.
#[derive(Debug, Clone)]
pub struct Panel {
    /// Caption above the chart.
    pub title: String,
    /// Label of the x axis.
    pub x_label: String,
    /// Label of the y axis.
    pub y_label: String,
    /// Axis scaling.
    pub axes: Axes,
    /// The lines (with markers) of the chart.
    pub series: Vec<Series>,
}

/// Draws one line plot (several series with markers and a legend) as a PNG.
///
/// # Errors
/// No finite point to draw, or the file cannot be written.
pub fn save_line_plot(panel: &Panel, path: &Path) -> Result<()> {
    save_panels(std::slice::from_ref(panel), path)
}

/// Draws several line plots side by side in one PNG (each 900 x 560 pixels).
///
/// Points that are not finite, or not positive on a logarithmic axis, are left out.
///
/// # Errors
/// No panel, a panel without a drawable point, or the file cannot be written.
pub fn save_panels(panels: &[Panel], path: &Path) -> Result<()> {
    save_panel_grid(panels, panels.len().max(1), path)
}

/// Panels in rows of `per_row` charts (the last row may be shorter), each chart 900 x 560.
///
/// # Errors
/// No panel, `per_row` of 0, a panel without a drawable point, or the file cannot be written.
pub fn save_panel_grid(panels: &[Panel], per_row: usize, path: &Path) -> Result<()> {
    register_font();
    let err = |e: String| ExpError::Plot {
        path: path.to_path_buf(),
        problem: e,
    };
    if panels.is_empty() || per_row == 0 {
        return Err(err(format!(
            "need at least one panel and per_row >= 1, got {} panels, per_row {per_row}",
            panels.len()
        )));
    }
    let cols = per_row.min(panels.len());
    let rows = panels.len().div_ceil(cols);
    let root = BitMapBackend::new(path, (900 * cols as u32, 560 * rows as u32)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
    for (area, panel) in root.split_evenly((rows, cols)).iter().zip(panels) {
        draw_panel(area, panel).map_err(|e| err(format!("{}: {e}", panel.title)))?;
    }
    root.present().map_err(|e| err(e.to_string()))?;
    Ok(())
}

const COLORS: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
];

/// A short tick label: `1e-6`, `2.5e4`, `0.25`, `120`.
fn tick(v: f64) -> String {
    let a = v.abs();
    if a < 1e-12 {
        return "0".into();
    }
    if a != 0.0 && !(1e-2..1e4).contains(&a) {
        let s = format!("{v:.1e}");
        s.replace(".0e", "e")
    } else {
        let s = format!("{v:.2}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

fn drawable(axes: Axes, (x, y): (f64, f64)) -> bool {
    x.is_finite()
        && y.is_finite()
        && match axes {
            Axes::Linear => true,
            Axes::LogX => x > 0.0,
            Axes::LogY => y > 0.0,
        }
}

fn draw_panel(
    area: &DrawingArea<BitMapBackend<'_>, plotters::coord::Shift>,
    panel: &Panel,
) -> std::result::Result<(), String> {
    let pts: Vec<(f64, f64)> = panel
        .series
        .iter()
        .flat_map(|s| s.points.iter().copied())
        .filter(|&p| drawable(panel.axes, p))
        .collect();
    if pts.is_empty() {
        return Err("no drawable points".into());
    }
    let (x0, mut x1) = pts.iter().fold((f64::MAX, f64::MIN), |(a, b), (x, _)| {
        (a.min(*x), b.max(*x))
    });
    let (mut y0, mut y1) = pts.iter().fold((f64::MAX, f64::MIN), |(a, b), (_, y)| {
        (a.min(*y), b.max(*y))
    });
    if x1 <= x0 {
        x1 = x0 + 1.0;
    }
    if panel.axes == Axes::LogY {
        y0 /= 1.5;
        y1 *= 1.5;
    } else {
        let pad = ((y1 - y0) * 0.05).max(1e-9);
        y0 -= pad;
        y1 += pad;
    }
    let mut builder = ChartBuilder::on(area);
    builder
        .caption(&panel.title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(44)
        .y_label_area_size(80);
    macro_rules! draw {
        ($chart:expr) => {{
            let mut chart = $chart.map_err(|e| e.to_string())?;
            chart
                .configure_mesh()
                .x_desc(panel.x_label.as_str())
                .y_desc(panel.y_label.as_str())
                .x_label_formatter(&|v| tick(*v))
                .y_label_formatter(&|v| tick(*v))
                .draw()
                .map_err(|e| e.to_string())?;
            for (i, s) in panel.series.iter().enumerate() {
                let color = COLORS[i % COLORS.len()];
                let data: Vec<(f64, f64)> = s
                    .points
                    .iter()
                    .copied()
                    .filter(|&p| drawable(panel.axes, p))
                    .collect();
                chart
                    .draw_series(LineSeries::new(data.clone(), color.stroke_width(2)))
                    .map_err(|e| e.to_string())?
                    .label(s.name.clone())
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
                    });
                chart
                    .draw_series(data.into_iter().map(|p| Circle::new(p, 3, color.filled())))
                    .map_err(|e| e.to_string())?;
            }
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .draw()
                .map_err(|e| e.to_string())?;
        }};
    }
    match panel.axes {
        Axes::Linear => draw!(builder.build_cartesian_2d(x0..x1, y0..y1)),
        Axes::LogX => draw!(builder.build_cartesian_2d((x0.max(1e-300)..x1).log_scale(), y0..y1)),
        Axes::LogY => draw!(builder.build_cartesian_2d(x0..x1, (y0..y1).log_scale())),
    }
    Ok(())
}

/// One heat map: a title and row-major values on a regular grid.
#[derive(Debug, Clone)]
pub struct HeatMap {
    /// Caption.
    pub title: String,
    /// `rows x cols` values, row 0 at the top.
    pub values: Vec<f64>,
    /// Grid rows.
    pub rows: usize,
    /// Grid columns.
    pub cols: usize,
}

/// Draws heat maps side by side in a grid of `per_row` columns (each 260 x 280 pixels), each
/// scaled to its own maximum (a dark-to-bright ramp), like the density panels of BiSM Fig. 2.
///
/// # Errors
/// No map, a map whose values do not fill its grid, or the file cannot be written.
pub fn save_heat_maps(maps: &[HeatMap], per_row: usize, path: &Path) -> Result<()> {
    register_font();
    let err = |e: String| ExpError::Plot {
        path: path.to_path_buf(),
        problem: e,
    };
    if maps.is_empty() || per_row == 0 {
        return Err(err("no heat map to draw".into()));
    }
    if let Some(m) = maps
        .iter()
        .find(|m| m.values.len() != m.rows * m.cols || m.rows == 0)
    {
        return Err(err(format!(
            "{}: values do not fill a {}x{} grid",
            m.title, m.rows, m.cols
        )));
    }
    let grid_rows = maps.len().div_ceil(per_row);
    let (w, h) = (260u32, 280u32);
    let root =
        BitMapBackend::new(path, (w * per_row as u32, h * grid_rows as u32)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
    let areas = root.split_evenly((grid_rows, per_row));
    for (area, map) in areas.iter().zip(maps) {
        let (title_area, body) = area.split_vertically(30);
        title_area
            .draw_text(
                &map.title,
                &("sans-serif", 16).into_text_style(&title_area),
                (8, 8),
            )
            .map_err(|e| err(e.to_string()))?;
        let max = map
            .values
            .iter()
            .cloned()
            .filter(|v| v.is_finite())
            .fold(0f64, f64::max)
            .max(1e-300);
        let (bw, bh) = body.dim_in_pixel();
        let (cw, ch) = (bw as f64 / map.cols as f64, bh as f64 / map.rows as f64);
        for r in 0..map.rows {
            for c in 0..map.cols {
                let t = (map.values[r * map.cols + c] / max).clamp(0.0, 1.0);
                // dark blue -> teal -> yellow
                let color = RGBColor(
                    (255.0 * t.powf(1.5)) as u8,
                    (40.0 + 200.0 * t) as u8,
                    (90.0 + 60.0 * (1.0 - (2.0 * t - 1.0).abs())) as u8,
                );
                let x0 = (c as f64 * cw) as i32;
                let y0 = (r as f64 * ch) as i32;
                body.draw(&Rectangle::new(
                    [
                        (x0, y0),
                        (
                            (x0 as f64 + cw).ceil() as i32,
                            (y0 as f64 + ch).ceil() as i32,
                        ),
                    ],
                    color.filled(),
                ))
                .map_err(|e| err(e.to_string()))?;
            }
        }
    }
    root.present().map_err(|e| err(e.to_string()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Tensor};

    use super::{save_image_grids_side_by_side, save_panel_grid, Axes, Panel, Series};

    #[test]
    fn panel_grids_wrap_into_rows() {
        let dir = std::env::temp_dir().join(format!("fdsm-panels-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("panels.png");
        let panel = |i: usize| Panel {
            title: format!("panel {i}"),
            x_label: "x".into(),
            y_label: "y".into(),
            axes: Axes::Linear,
            series: vec![Series {
                name: "line".into(),
                points: vec![(0.0, 0.0), (1.0, i as f64 + 1.0)],
            }],
        };
        let panels: Vec<Panel> = (0..4).map(panel).collect();
        save_panel_grid(&panels, 3, &path).unwrap();
        let img = image::open(&path).unwrap();
        assert_eq!((img.width(), img.height()), (3 * 900, 2 * 560));
        assert!(save_panel_grid(&panels, 0, &path).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn side_by_side_grids_round_trip_through_the_png() {
        let dir = std::env::temp_dir().join(format!("fdsm-grid-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("grids.png");
        // Two 2 x 3 images of constant values 0.2 and 0.6, and three images of 1.0.
        let a = Tensor::new(&[0.2f32, 0.6], &Device::Cpu)
            .unwrap()
            .reshape((2, 1, 1, 1))
            .unwrap()
            .broadcast_as((2, 1, 2, 3))
            .unwrap()
            .contiguous()
            .unwrap();
        let b = Tensor::ones((3, 1, 2, 3), candle_core::DType::F32, &Device::Cpu).unwrap();
        save_image_grids_side_by_side(&[&a, &b], 2, 2, &path).unwrap();
        let img = image::open(&path).unwrap().to_luma8();
        // Scale 2: images 4 x 6; 2 columns: blocks 2 * (6 + 2) + 2 = 18 wide, gap 12.
        // Rows: max(1, 2) = 2, height 2 * (4 + 2) + 2 = 14.
        assert_eq!((img.width(), img.height()), (18 + 12 + 18, 14));
        let at = |x: u32, y: u32| img.get_pixel(x, y).0[0];
        assert_eq!(at(2, 2), 51); // first image, 0.2 * 255
        assert_eq!(at(2 + 8 + 5, 2 + 3), 153); // second image's far corner, 0.6 * 255
        assert_eq!(at(20, 5), 255); // the white gap
        assert_eq!(at(30 + 2, 2 + 6), 255); // the second grid's third image (row 1)
        assert_eq!(at(30 + 2 + 8, 2 + 6), 64); // the empty cell beside it is the border grey
        assert_eq!(at(0, 0), 64);
        assert_eq!(image::open(&path).unwrap().color(), image::ColorType::L8);
        // RGB: one 1 x 2 image, red then blue; grey and RGB grids do not mix.
        let rgb = Tensor::new(&[1f32, 0.0, 0.0, 0.0, 0.0, 1.0], &Device::Cpu)
            .unwrap()
            .reshape((1, 3, 1, 2))
            .unwrap();
        save_image_grids_side_by_side(&[&rgb], 1, 1, &path).unwrap();
        let img = image::open(&path).unwrap().to_rgb8();
        assert_eq!(img.get_pixel(2, 2).0, [255, 0, 0]);
        assert_eq!(img.get_pixel(3, 2).0, [0, 0, 255]);
        assert!(save_image_grids_side_by_side(&[&rgb, &a], 1, 1, &path).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
