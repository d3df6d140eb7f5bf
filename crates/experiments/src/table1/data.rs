//! The data of Table 1: the UCI sets with the reference's DKEF preprocessing (`datasets::uci`:
//! column removal or de-quantisation, whitening, splits, fixed noise), and the 2-D checkerboard.

use std::path::Path;

use candle_core::{DType, Device, Tensor};

use crate::error::Result;

use super::DataSet;

/// Training, validation and test points, `[N, d]` f32.
#[derive(Debug, Clone)]
pub struct Splits {
    /// Training points.
    pub train: Tensor,
    /// Validation points.
    pub val: Tensor,
    /// Test points.
    pub test: Tensor,
}

/// Loads a data set.
///
/// # Errors
/// Missing or malformed files (the error names them).
pub fn load(data_dir: &Path, data: DataSet, toy_points: usize, device: &Device) -> Result<Splits> {
    let uci = |which| -> Result<Splits> {
        let s = datasets::load_uci(data_dir, which, datasets::UciOptions::default(), device)?;
        Ok(Splits {
            train: s.train.to_dtype(DType::F32)?,
            val: s.validation.to_dtype(DType::F32)?,
            test: s.test.to_dtype(DType::F32)?,
        })
    };
    match data {
        DataSet::Parkinsons => uci(datasets::UciDataset::Parkinsons),
        DataSet::RedWine => uci(datasets::UciDataset::RedWine),
        DataSet::WhiteWine => uci(datasets::UciDataset::WhiteWine),
        DataSet::Checkerboard => {
            let board = datasets::Checkerboard { cells: 4 };
            // [0, 1]^2 mapped to [-2, 2]^2, where the base density N(0, 2^2 I) covers it.
            let draw = |n: usize, seed: u64| -> Result<Tensor> {
                Ok(((board.sample(n, seed, device)? * 4.0)? - 2.0)?.to_dtype(DType::F32)?)
            };
            let quarter = (toy_points / 4).max(1);
            Ok(Splits {
                train: draw(toy_points, 1)?,
                val: draw(quarter, 2)?,
                test: draw(quarter, 3)?,
            })
        }
    }
}

/// The true density of the toy on a `grid x grid` raster of `[-lim, lim]^2` (row 0 at the top).
pub fn toy_density(grid: usize, lim: f64) -> Vec<f64> {
    let board = datasets::Checkerboard { cells: 4 };
    let step = 2.0 * lim / grid as f64;
    (0..grid * grid)
        .map(|i| {
            let (row, col) = (i / grid, i % grid);
            let (x, y) = (
                -lim + (col as f64 + 0.5) * step,
                lim - (row as f64 + 0.5) * step,
            );
            // Density of (4u - 2): the board's density at u, divided by 16.
            board.log_density((x + 2.0) / 4.0, (y + 2.0) / 4.0).exp() / 16.0
        })
        .collect()
}

/// The raster points of [`toy_density`], `[grid^2, 2]`.
///
/// # Errors
/// Tensor errors only.
pub fn toy_grid(grid: usize, lim: f64, device: &Device) -> Result<Tensor> {
    let step = 2.0 * lim / grid as f64;
    let mut pts = Vec::with_capacity(2 * grid * grid);
    for i in 0..grid * grid {
        let (row, col) = (i / grid, i % grid);
        pts.push((-lim + (col as f64 + 0.5) * step) as f32);
        pts.push((lim - (row as f64 + 0.5) * step) as f32);
    }
    Ok(Tensor::from_vec(pts, (grid * grid, 2), device)?)
}
