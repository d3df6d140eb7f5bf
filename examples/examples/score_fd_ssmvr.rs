//! A score network `s(x) ~ grad log p(x)` trained by FD-SSMVR (FD-SM Sec. 4:
//! `|s(x+v) + s(x-v)|^2 / 8D + v.(s(x+v) - s(x-v)) / 2 C_v`, two forward passes, first-order
//! gradients only) on a correlated 2-D Gaussian, whose true score `-S^-1 (x - mu)` it is
//! compared with.

use candle_core::{DType, Device, Module, Result, Tensor};
use candle_nn::{linear, Linear, VarBuilder, VarMap};
use sm_objectives::{fd_ssmvr, BatchMode, Directions, NoiseSource, Reduction, ScoreModel};
use train::{step_seed, train, TrainOptions};

/// `s(x) = W3 softplus(W2 softplus(W1 x))`, unconditional (no noise level).
struct ScoreNet(Linear, Linear, Linear);

impl ScoreModel for ScoreNet {
    fn score(&self, x: &Tensor, _level: Option<&Tensor>) -> Result<Tensor> {
        let h = layers::softplus(&self.0.forward(x)?)?;
        let h = layers::softplus(&self.1.forward(&h)?)?;
        self.2.forward(&h)
    }
}

/// `x = mu + L z` with `L L^T = S = [[1, 0.8], [0.8, 1]]`; the true score is `-S^-1 (x - mu)`.
const MU: [f32; 2] = [1.0, -0.5];
const L: [[f32; 2]; 2] = [[1.0, 0.0], [0.8, 0.6]];
const S_INV: [[f32; 2]; 2] = [[2.777_778, -2.222_222], [-2.222_222, 2.777_778]];

fn gaussian(n: usize, seed: u64) -> Result<Tensor> {
    let z = NoiseSource::new(seed).gaussian((n, 2), DType::F32, &Device::Cpu)?;
    let l = Tensor::new(&L, &Device::Cpu)?;
    z.matmul(&l.t()?)?
        .broadcast_add(&Tensor::new(&MU, &Device::Cpu)?)
}

/// Trains for `iters` steps; returns the relative error of the learned score on fresh points.
fn run(iters: u64, progress: bool) -> anyhow::Result<f64> {
    let data = gaussian(8192, 0)?;
    let vm = VarMap::new();
    let vb = VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu);
    let net = ScoreNet(
        linear(2, 64, vb.pp("l1"))?,
        linear(64, 64, vb.pp("l2"))?,
        linear(64, 2, vb.pp("l3"))?,
    );
    let opts = TrainOptions::new(iters, 3e-3).with_progress(progress, "FD-SSMVR");
    train(
        &vm,
        &opts,
        &mut |step| {
            let mut noise = NoiseSource::new(step_seed(3, step));
            let x = data.narrow(0, (step as usize * 256) % 8192, 256)?;
            let proj = noise.projection(&x, Directions::Sphere { radius: 0.05 })?;
            fd_ssmvr(&net, &x, &proj, BatchMode::Concatenated, Reduction::Mean)
        },
        &mut |_| Ok(()),
    )?;
    let x = gaussian(1000, 99)?;
    let centred = x.broadcast_sub(&Tensor::new(&MU, &Device::Cpu)?)?;
    let truth = centred.matmul(&Tensor::new(&S_INV, &Device::Cpu)?)?.neg()?;
    let err = (net.score(&x, None)? - &truth)?
        .sqr()?
        .sum_all()?
        .to_scalar::<f32>()?;
    Ok(f64::from(
        (err / truth.sqr()?.sum_all()?.to_scalar::<f32>()?).sqrt(),
    ))
}

fn main() -> anyhow::Result<()> {
    // First thing: the thread count read once, this thread one of rayon's workers (faster steps).
    layers::cpu::settle_thread_count();
    println!(
        "relative error of the learned score: {:.3}",
        run(3000, true)?
    );
    Ok(())
}

#[test]
fn learns_the_score_of_a_gaussian() -> anyhow::Result<()> {
    let rel = run(600, false)?;
    assert!(rel < 0.25, "relative error {rel}");
    Ok(())
}
