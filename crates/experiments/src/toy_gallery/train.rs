//! One gallery cell in its own process: the MLP energy trained on one 2-D density by one method
//! on the shared trainer (checkpoints with the replay buffer, exact resume), then evaluated: the
//! test log-likelihood with `log Z` summed on a grid, the normalised density on that grid, and a
//! histogram of Langevin samples.

use candle_core::{DType, Device, Tensor};
use candle_nn::Init;
use datasets::Toy2d;
use models::{Mlp, MlpActivation, MlpConfig};
use sm_objectives::autodiff::input_gradient;
use sm_objectives::ksd::{ksd, median_bandwidth};
use sm_objectives::nce::{nce_loss_with, DiagonalGaussian};
use sm_objectives::{
    dsm, fd_dsm, fd_ssm, sm_exact, ssm, ssmvr, BatchMode, Directions, Graph, LogDensity,
    NoiseSource, Reduction,
};
use train::mcmc::{cd_loss, mle_loss, ChainInit, ChainsAndRecord, ReplayBuffer, Sgld};

use super::report::RowResult;
use super::{Cell, GalleryConfig, Method};
use crate::error::Result;
use crate::runner::RowContext;
use crate::trainer::{train_with_state, StepRecord};
use crate::{setup, step_seed};

/// Half the side of the square `[-L, L]^2` on which densities are normalised, plotted and
/// sampled (the data lie within `[-4.5, 4.5]^2`).
pub const LL_HALF_WIDTH: f64 = 5.0;

/// Bins per side of the sample histograms.
pub(super) const SAMPLE_BINS: usize = 60;

/// A density's training and test points (f32), from the run's seed; every method of the
/// density trains on the same points.
fn density_data(cfg: &GalleryConfig, density: Toy2d, device: &Device) -> Result<(Tensor, Tensor)> {
    let base = cfg.seed ^ (density as u64 + 1).wrapping_mul(0x2d0d);
    let train = density
        .sample(cfg.train_points, base ^ 0x7a, device)?
        .to_dtype(DType::F32)?;
    let test = density
        .sample(cfg.test_points, base ^ 0x7e57, device)?
        .to_dtype(DType::F32)?;
    Ok((train, test))
}

/// The data's points binned on the sample-histogram grid (for the picture's first panel).
///
/// # Errors
/// Tensor errors.
pub(super) fn data_histogram(cfg: &GalleryConfig, density: Toy2d) -> Result<Vec<f64>> {
    let (train, _) = density_data(cfg, density, &Device::Cpu)?;
    histogram(&train)
}

/// What a cell carries between steps: PCD's replay buffer, and the loss curve.
type CellState = ChainsAndRecord<Vec<(u64, f64)>>;

/// Trains and evaluates one cell (resuming from its checkpoint when the run says so); `None`
/// when the run paused it.
///
/// # Errors
/// Tensor, configuration and checkpoint errors; a diverged loss.
pub fn train_row(ctx: &RowContext, cfg: &GalleryConfig, cell: Cell) -> Result<Option<RowResult>> {
    let device = ctx.run.device;
    let seed =
        cfg.seed ^ (cell.method as u64 + 1).wrapping_mul(0x9e37) ^ (cell.density as u64) << 20;
    let (train, test) = density_data(cfg, cell.density, device)?;
    let mut sizes = vec![2];
    sizes.extend(&cfg.hidden);
    sizes.push(1);
    let mlp_cfg = MlpConfig {
        sizes,
        activation: MlpActivation::Softplus,
    };
    let (vm, net) = setup::seeded_mlp(&mlp_cfg, seed ^ 0x3a1, device)?;
    let log_z = match cell.method {
        Method::Nce => Some(vm.get((), "nce.log_z", Init::Const(0.0), DType::F32, device)?),
        _ => None,
    };
    let noise_dist = DiagonalGaussian::fit(&train, cfg.nce_widen)?;
    let box_init = ChainInit::Uniform {
        low: -LL_HALF_WIDTH,
        high: LL_HALF_WIDTH,
    };
    let mut state = CellState {
        buffer: match cell.method {
            Method::Pcd => Some(ReplayBuffer::new(
                cfg.buffer,
                &[2],
                cfg.reinit,
                box_init,
                seed ^ 0xbf,
            )?),
            _ => None,
        },
        record: Vec::new(),
    };
    let cd_sampler = Sgld {
        steps: cfg.cd_steps,
        ..cfg.sgld
    };
    let mut batcher = datasets::Batcher::new(train.dim(0)?, cfg.batch, seed)?;
    let mut loss_at = |step: u64, st: &mut CellState| -> candle_core::Result<Tensor> {
        let x = batcher
            .batch(&train, step)
            .map_err(candle_core::Error::wrap)?;
        let mut noise = NoiseSource::new(step_seed(seed, step));
        let m = &net;
        match cell.method {
            Method::MleLangevin => {
                let x0 = box_init
                    .draw(cfg.batch, &[2], DType::F32, device, &mut noise)
                    .map_err(candle_core::Error::wrap)?;
                let neg = cfg
                    .sgld
                    .run(m, &x0, &mut noise)
                    .map_err(candle_core::Error::wrap)?;
                mle_loss(m, &x, &neg, cfg.alpha).map_err(candle_core::Error::wrap)
            }
            Method::Cd => {
                cd_loss(m, &x, &cd_sampler, cfg.alpha, &mut noise).map_err(candle_core::Error::wrap)
            }
            Method::Pcd => {
                let buffer = st.buffer.as_mut().expect("PCD keeps a replay buffer");
                let start = buffer
                    .draw(cfg.batch, DType::F32, device, &mut noise)
                    .map_err(candle_core::Error::wrap)?;
                let neg = cfg
                    .sgld
                    .run(m, &start.x, &mut noise)
                    .map_err(candle_core::Error::wrap)?;
                buffer
                    .store(&start.slots, &neg)
                    .map_err(candle_core::Error::wrap)?;
                mle_loss(m, &x, &neg, cfg.alpha).map_err(candle_core::Error::wrap)
            }
            Method::Nce => {
                let log_z = log_z.as_ref().expect("NCE learns log Z");
                nce_loss_with(m, log_z, &x, &noise_dist, 1, &mut noise)
            }
            Method::Ksd => {
                let score = input_gradient(m, &x)?.score;
                ksd(&x, &score, median_bandwidth(&x)?)
            }
            Method::Sm => sm_exact(m, &x, Graph::Keep, Reduction::Mean),
            Method::Ssm => ssm(
                m,
                &x,
                &noise.projection(&x, Directions::Gaussian)?,
                Reduction::Mean,
            ),
            Method::Ssmvr => ssmvr(
                m,
                &x,
                &noise.projection(&x, Directions::Gaussian)?,
                Reduction::Mean,
            ),
            Method::Dsm => dsm(m, &x, &noise.gaussian_like(&x)?, cfg.sigma, Reduction::Mean),
            Method::FdSsm => fd_ssm(
                m,
                &x,
                &noise.projection(&x, Directions::Sphere { radius: cfg.fd_eps })?,
                BatchMode::Concatenated,
                Reduction::Mean,
            ),
            Method::FdDsm => {
                let z = noise.gaussian_like(&x)?;
                let proj = noise.projection(&x, Directions::Sphere { radius: cfg.fd_eps })?;
                fd_dsm(
                    m,
                    &x,
                    &z,
                    cfg.sigma,
                    &proj,
                    BatchMode::Concatenated,
                    Reduction::Mean,
                )
            }
        }
    };
    let every = (cfg.iters / 100).max(1);
    let mut after = |r: &StepRecord, st: &mut CellState| -> Result<()> {
        if (r.step + 1) % every == 0 {
            st.record.push((r.step + 1, r.loss));
        }
        Ok(())
    };
    // The settings a checkpoint must match: this cell's, without what only the evaluation
    // and the picture read.
    let identity = GalleryConfig {
        profile: String::new(),
        densities: vec![cell.density],
        methods: vec![cell.method],
        grid: 0,
        samples: 0,
        sample_steps: 0,
        checkpoint_every: 0,
        ..cfg.clone()
    };
    let opts = ctx.train_options(
        cfg.iters,
        cfg.lr,
        cfg.checkpoint_every,
        format!("{} / {}", cell.density.key(), cell.method.label()),
        &identity,
    )?;
    let summary = train_with_state(&vm, &opts, &mut state, &mut loss_at, &mut after)?;
    if summary.completed < cfg.iters {
        return Ok(None);
    }
    let (log_z_grid, density) = normalised_density(&net, cfg.grid, device)?;
    let test_loglik = (net
        .log_density(&test)?
        .to_dtype(DType::F64)?
        .mean_all()?
        .to_scalar::<f64>()?)
        - log_z_grid;
    let samples = langevin_samples(&net, cfg, seed ^ 0x5a, device)?;
    Ok(Some(RowResult {
        cell,
        test_loglik,
        log_z: log_z_grid,
        ms_per_step: summary.train_seconds * 1e3 / cfg.iters as f64,
        density,
        sample_histogram: histogram(&samples)?,
        curve: state.record,
    }))
}

/// `log Z` of `net` on `[-L, L]^2` by the midpoint rule on a `grid x grid` lattice, and the
/// normalised density at the lattice points (row 0 at the top).
fn normalised_density(net: &Mlp, grid: usize, device: &Device) -> Result<(f64, Vec<f64>)> {
    let step = 2.0 * LL_HALF_WIDTH / grid as f64;
    let pts: Vec<f32> = (0..grid)
        .flat_map(|r| {
            let y = LL_HALF_WIDTH - (r as f64 + 0.5) * step;
            (0..grid)
                .flat_map(move |c| [(-LL_HALF_WIDTH + (c as f64 + 0.5) * step) as f32, y as f32])
        })
        .collect();
    let v = Tensor::from_vec(pts, (grid * grid, 2), device)?;
    let logp: Vec<f64> = net
        .log_density(&v)?
        .to_dtype(DType::F64)?
        .to_vec1::<f64>()?;
    let max = logp.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    if !max.is_finite() {
        return Err(crate::ExpError::Config(
            "the trained energy is not finite on the plotted square".into(),
        ));
    }
    let sum: f64 = logp.iter().map(|l| (l - max).exp()).sum();
    let log_z = max + sum.ln() + (step * step).ln();
    Ok((log_z, logp.iter().map(|l| (l - log_z).exp()).collect()))
}

/// Unadjusted Langevin samples of `net` from uniform noise on the plotted square.
fn langevin_samples(net: &Mlp, cfg: &GalleryConfig, seed: u64, device: &Device) -> Result<Tensor> {
    let mut noise = NoiseSource::new(seed);
    let x0 = ChainInit::Uniform {
        low: -LL_HALF_WIDTH,
        high: LL_HALF_WIDTH,
    }
    .draw(cfg.samples, &[2], DType::F32, device, &mut noise)?;
    let sampler = Sgld {
        bounds: Some((-LL_HALF_WIDTH, LL_HALF_WIDTH)),
        clip: Some(100.0),
        ..Sgld::unadjusted(cfg.sample_steps, cfg.sample_step_size)
    };
    Ok(sampler.run(net, &x0, &mut noise)?)
}

/// Counts of the rows of `x` (`[N, 2]`) in a `SAMPLE_BINS x SAMPLE_BINS` grid over the plotted
/// square (row 0 at the top), as fractions of the points.
fn histogram(x: &Tensor) -> Result<Vec<f64>> {
    let pts = x.to_dtype(DType::F64)?.to_vec2::<f64>()?;
    let n = SAMPLE_BINS;
    let mut h = vec![0.0; n * n];
    let bin =
        |t: f64| (((t + LL_HALF_WIDTH) / (2.0 * LL_HALF_WIDTH) * n as f64) as usize).min(n - 1);
    for p in &pts {
        if p[0].abs() <= LL_HALF_WIDTH && p[1].abs() <= LL_HALF_WIDTH {
            h[(n - 1 - bin(p[1])) * n + bin(p[0])] += 1.0 / pts.len() as f64;
        }
    }
    Ok(h)
}
