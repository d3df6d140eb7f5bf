//! Training with checkpoints: an energy model on 2-D data by FD-SSM (FD-SM Eq. 9), paused
//! halfway (checkpointed atomically: parameters, Adam's moments, the step) and resumed. The
//! batches and noise of every step are pure functions of the step, so the resumed run ends on
//! exactly the parameters of an uninterrupted one.

use std::path::Path;

use candle_core::{DType, Device, Module, Result, Tensor};
use candle_nn::{linear, Linear, VarBuilder, VarMap};
use datasets::Checkerboard;
use sm_objectives::{fd_ssm, BatchMode, Directions, LogDensity, NoiseSource, Reduction};
use train::{named_vars, step_seed, train, TrainOptions};

/// `E(x) = w2 . elu(W1 x)`; as a log-density, `-E(x)`.
struct Energy(Linear, Linear);

impl LogDensity for Energy {
    fn log_density(&self, x: &Tensor) -> Result<Tensor> {
        let h = layers::elu(&self.0.forward(x)?)?;
        self.1.forward(&h)?.squeeze(1)?.neg()
    }
}

/// Trains to `iters` steps with a checkpoint in `dir`, pausing after `pause` steps when given
/// and resuming from the checkpoint; returns the final parameters.
fn run(dir: &Path, iters: u64, pause: Option<u64>) -> anyhow::Result<Vec<Vec<f32>>> {
    let data = Checkerboard::default().sample(2048, 0, &Device::Cpu)?;
    let data = data.to_dtype(DType::F32)?;
    let vm = VarMap::new();
    let vb = VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu);
    let model = Energy(linear(2, 32, vb.pp("l1"))?, linear(32, 1, vb.pp("l2"))?);
    // Fixed initial weights: the run is a function of its settings alone.
    for (i, var) in named_vars(&vm).1.iter().enumerate() {
        var.set(&(NoiseSource::new(i as u64).gaussian_like(var.as_tensor())? * 0.3)?)?;
    }
    let mut loss_at = |step: u64| {
        let mut noise = NoiseSource::new(step_seed(7, step));
        let x = data.narrow(0, (step as usize * 128) % 2048, 128)?;
        let proj = noise.projection(&x, Directions::Sphere { radius: 0.1 })?;
        fd_ssm(&model, &x, &proj, BatchMode::Concatenated, Reduction::Mean)
    };
    let base = TrainOptions::new(iters, 1e-2)
        .with_checkpoint(dir.join("checkpoint.safetensors"), 50, true)
        .with_progress(false, "");
    if let Some(steps) = pause {
        let paused = train(
            &vm,
            &base.clone().with_stop_after(steps),
            &mut loss_at,
            &mut |_| Ok(()),
        )?;
        println!("paused after step {} (checkpointed)", paused.completed);
    }
    let summary = train(&vm, &base, &mut loss_at, &mut |_| Ok(()))?;
    println!(
        "trained to step {} (resumed from {:?})",
        summary.completed, summary.resumed_from
    );
    let vars = named_vars(&vm).1;
    let params = vars.iter().map(|v| v.flatten_all()?.to_vec1::<f32>());
    Ok(params.collect::<Result<_>>()?)
}

fn main() -> anyhow::Result<()> {
    // First thing: the thread count read once, this thread one of rayon's workers (faster steps).
    layers::cpu::settle_thread_count();
    let dir = std::env::temp_dir().join(format!("fdsm-resume-example-{}", std::process::id()));
    let (straight, paused) = (
        run(&dir.join("a"), 400, None)?,
        run(&dir.join("b"), 400, Some(150))?,
    );
    std::fs::remove_dir_all(&dir)?;
    println!(
        "identical parameters after resuming: {}",
        straight == paused
    );
    Ok(())
}

#[test]
fn a_paused_and_resumed_run_ends_on_the_same_parameters() -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("fdsm-resume-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let straight = run(&dir.join("straight"), 120, None)?;
    let paused = run(&dir.join("paused"), 120, Some(70))?;
    assert_eq!(straight, paused, "bit-identical parameters");
    // And the run did train: the parameters moved from their initial values.
    let initial = run(&dir.join("initial"), 1, None)?;
    assert_ne!(initial, straight);
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
