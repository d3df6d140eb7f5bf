//! Your own energy model on 2-D data, trained by FD-SSM (FD-SM Eq. 9): a two-layer MLP energy
//! on a ring of eight Gaussians, with the shared trainer (Adam, cosine schedule, progress bar).

use candle_core::{DType, Device, Module, Result, Tensor};
use candle_nn::{linear, Linear, VarBuilder, VarMap};
use datasets::GaussianMixture;
use sm_objectives::{fd_ssm, BatchMode, Directions, LogDensity, NoiseSource, Reduction};
use train::{step_seed, train, TrainOptions};

/// `E(x) = w3 . softplus(W2 softplus(W1 x))`; as a log-density, `-E(x)`.
struct Energy {
    l1: Linear,
    l2: Linear,
    l3: Linear,
}

impl Energy {
    fn new(vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            l1: linear(2, 64, vb.pp("l1"))?,
            l2: linear(64, 64, vb.pp("l2"))?,
            l3: linear(64, 1, vb.pp("l3"))?,
        })
    }
}

impl LogDensity for Energy {
    fn log_density(&self, x: &Tensor) -> Result<Tensor> {
        let h = layers::softplus(&self.l1.forward(x)?)?;
        let h = layers::softplus(&self.l2.forward(&h)?)?;
        self.l3.forward(&h)?.squeeze(1)?.neg()
    }
}

/// Trains for `iters` steps; returns the model and the ring it learned.
fn run(iters: u64, progress: bool) -> anyhow::Result<(Energy, GaussianMixture)> {
    let ring = GaussianMixture::ring(8, 2.0, 0.25);
    let data = ring.sample(4096, 0, &Device::Cpu)?.to_dtype(DType::F32)?;
    let vm = VarMap::new();
    let model = Energy::new(VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu))?;
    let opts = TrainOptions::new(iters, 3e-3).with_progress(progress, "FD-SSM");
    train(
        &vm,
        &opts,
        &mut |step| {
            let mut noise = NoiseSource::new(step_seed(1, step));
            let x = data.narrow(0, (step as usize * 256) % 4096, 256)?;
            let proj = noise.projection(&x, Directions::Sphere { radius: 0.1 })?;
            fd_ssm(&model, &x, &proj, BatchMode::Concatenated, Reduction::Mean)
        },
        &mut |_| Ok(()),
    )?;
    Ok((model, ring))
}

/// The learned log-density at the ring's modes minus the one at its centre, where the data's
/// density is about `e^-32` of the modes'.
fn mode_margin(model: &Energy, ring: &GaussianMixture) -> anyhow::Result<f64> {
    let modes: Vec<f32> = ring.means.iter().flatten().map(|&v| v as f32).collect();
    let at_modes = model.log_density(&Tensor::from_vec(modes, (8, 2), &Device::Cpu)?)?;
    let at_centre = model.log_density(&Tensor::zeros((1, 2), DType::F32, &Device::Cpu)?)?;
    let mean_modes = at_modes.mean_all()?.to_scalar::<f32>()?;
    Ok(f64::from(
        mean_modes - at_centre.squeeze(0)?.to_scalar::<f32>()?,
    ))
}

fn main() -> anyhow::Result<()> {
    // First thing: the thread count read once, this thread one of rayon's workers (faster steps).
    layers::cpu::settle_thread_count();
    let (model, ring) = run(2000, true)?;
    println!(
        "log p~(modes) - log p~(centre) = {:.2} (the data's: about 32)",
        mode_margin(&model, &ring)?
    );
    Ok(())
}

#[test]
fn learns_that_the_modes_are_likelier_than_the_centre() -> anyhow::Result<()> {
    let (model, ring) = run(400, false)?;
    let margin = mode_margin(&model, &ring)?;
    assert!(margin > 2.0, "margin {margin}");
    Ok(())
}
