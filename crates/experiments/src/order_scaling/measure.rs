//! One cell of the order-scaling study in its own process: the network, the T-th directional
//! derivative exactly or by the FD decomposition, its time and memory; and the error study.

use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use fd_core::{BatchMode, Stencil};
use models::{ResNetEbm, ResNetEbmConfig};
use sm_objectives::autodiff::directional_derivative;
use sm_objectives::{fd_directional_derivative, Directions, NoiseSource};

use crate::error::{ExpError, Result};
use crate::{memory, setup};

use super::{Cell, ErrorRow, ErrorStudy, Method, OrderScalingConfig};

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
            let (vm, _) = setup::seeded_resnet_ebm(&cfg.model, cfg.seed, &Device::Cpu)?;
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
    let net =
        setup::frozen_resnet_ebm(&cfg.model, params, dtype, images.device()).map_err(|e| {
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

/// Times one cell in this process (the `measure` phase).
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

/// The error study in this process (the `errors` phase): for each order, the exact f64 value
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
