//! Figures as PNG: sample grids (with the `image` crate) and line plots (with `plotters`,
//! text drawn with the embedded DejaVu Sans so no system fonts are needed).

use std::path::Path;
use std::sync::Once;

use candle_core::{DType, Tensor};
use plotters::prelude::*;

use crate::error::{ExpError, Result};

/// Writes `[N, 1, H, W]` images with values in `[0, 1]` (clamped) as a grid of `cols` columns
/// with a 2-pixel border.
pub fn save_image_grid(images: &Tensor, cols: usize, path: &Path) -> Result<()> {
    let (n, c, h, w) = images.dims4()?;
    if c != 1 || n == 0 || cols == 0 {
        return Err(ExpError::Plot {
            path: path.to_path_buf(),
            problem: format!("need [N>=1, 1, H, W] grey images, got {:?}", images.dims()),
        });
    }
    let pixels = images
        .to_dtype(DType::F32)?
        .clamp(0f32, 1f32)?
        .flatten_all()?
        .to_vec1::<f32>()?;
    let rows = n.div_ceil(cols);
    let (gw, gh) = (cols * (w + 2) + 2, rows * (h + 2) + 2);
    let mut img = image::GrayImage::from_pixel(gw as u32, gh as u32, image::Luma([64]));
    for k in 0..n {
        let (r, col) = (k / cols, k % cols);
        for y in 0..h {
            for x in 0..w {
                let v = (pixels[k * h * w + y * w + x] * 255.0).round() as u8;
                img.put_pixel(
                    (2 + col * (w + 2) + x) as u32,
                    (2 + r * (h + 2) + y) as u32,
                    image::Luma([v]),
                );
            }
        }
    }
    img.save(path).map_err(|e| ExpError::Plot {
        path: path.to_path_buf(),
        problem: e.to_string(),
    })
}

/// One named series of `(x, y)` points.
#[derive(Debug, Clone)]
pub struct Series {
    /// Legend label.
    pub name: String,
    /// Points in drawing order.
    pub points: Vec<(f64, f64)>,
}

fn register_font() {
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

/// Draws line plots of several series (with markers) and a legend.
pub fn save_line_plot(
    series: &[Series],
    title: &str,
    x_label: &str,
    y_label: &str,
    log_x: bool,
    path: &Path,
) -> Result<()> {
    register_font();
    let err = |e: String| ExpError::Plot {
        path: path.to_path_buf(),
        problem: e,
    };
    let pts: Vec<(f64, f64)> = series
        .iter()
        .flat_map(|s| s.points.iter().copied())
        .filter(|(x, y)| x.is_finite() && y.is_finite())
        .collect();
    if pts.is_empty() {
        return Err(err("no finite points to plot".into()));
    }
    let (mut x0, mut x1) = pts.iter().fold((f64::MAX, f64::MIN), |(a, b), (x, _)| {
        (a.min(*x), b.max(*x))
    });
    let (mut y0, mut y1) = pts.iter().fold((f64::MAX, f64::MIN), |(a, b), (_, y)| {
        (a.min(*y), b.max(*y))
    });
    if log_x {
        x0 = x0.max(1e-9);
    }
    if x1 <= x0 {
        x1 = x0 + 1.0;
    }
    let pad = ((y1 - y0) * 0.05).max(1e-9);
    y0 -= pad;
    y1 += pad;
    let root = BitMapBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
    let colors = [
        RGBColor(31, 119, 180),
        RGBColor(255, 127, 14),
        RGBColor(44, 160, 44),
        RGBColor(214, 39, 40),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
        RGBColor(227, 119, 194),
        RGBColor(127, 127, 127),
    ];
    macro_rules! draw {
        ($chart:expr) => {{
            let mut chart = $chart;
            chart
                .configure_mesh()
                .x_desc(x_label)
                .y_desc(y_label)
                .draw()
                .map_err(|e| err(e.to_string()))?;
            for (i, s) in series.iter().enumerate() {
                let color = colors[i % colors.len()];
                let data: Vec<(f64, f64)> = s
                    .points
                    .iter()
                    .copied()
                    .filter(|(x, y)| x.is_finite() && y.is_finite() && (!log_x || *x > 0.0))
                    .collect();
                chart
                    .draw_series(LineSeries::new(data.clone(), color.stroke_width(2)))
                    .map_err(|e| err(e.to_string()))?
                    .label(s.name.clone())
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
                    });
                chart
                    .draw_series(data.into_iter().map(|p| Circle::new(p, 3, color.filled())))
                    .map_err(|e| err(e.to_string()))?;
            }
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .draw()
                .map_err(|e| err(e.to_string()))?;
        }};
    }
    let mut builder = ChartBuilder::on(&root);
    builder
        .caption(title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(44)
        .y_label_area_size(80);
    if log_x {
        draw!(builder
            .build_cartesian_2d((x0..x1).log_scale(), y0..y1)
            .map_err(|e| err(e.to_string()))?);
    } else {
        draw!(builder
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(|e| err(e.to_string()))?);
    }
    root.present().map_err(|e| err(e.to_string()))?;
    Ok(())
}
