//! Shared experiment setup: MNIST padded to 32 x 32 as the deep-EBM code feeds it (FD-SM App.
//! C.2), the ResNet EBM with seeded PyTorch-style initial weights, and seeded GRBMs and
//! Bernoulli posteriors and the shared training options of the latent-variable experiments, and
//! the choice of convolution kernels a run saves in its configuration.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use layers::ConvAlgorithm;
use models::{
    ConvGaussianPosterior, ConvGaussianPosteriorConfig, DeepEblvm, DeepEblvmConfig, Dkef,
    DkefConfig, Grbm, GrbmConfig, ImplicitAutoencoder, ImplicitAutoencoderConfig, LatentScore, Mlp,
    MlpConfig, Ncsn, NcsnConfig, Nice, NiceConfig, ResNetEbm, ResNetEbmConfig,
};
use serde::{Deserialize, Serialize};
use sm_objectives::NoiseSource;

use crate::error::Result;
use crate::optim::{AdamConfig, LrSchedule};
use crate::trainer::TrainOptions;
use crate::RunControl;

/// The `--conv` choice of the binaries: the convolution algorithms a run uses on the CPU
/// ([`ConvAlgorithm`], saved in the model's configuration): `fastest` (Winograd F(4x4, 3x3) where it pays off),
/// `accurate` (F(2x2, 3x3) only, rounding like the direct convolution) or `direct`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ConvKernels {
    /// Winograd F(4x4, 3x3) on output maps of 7x7 and larger, F(2x2, 3x3) on 6x6: the fastest.
    #[default]
    Fastest,
    /// Winograd F(2x2, 3x3) only: f32 rounding like the direct convolution, slower.
    Accurate,
    /// No Winograd transforms: matrix products over patches everywhere.
    Direct,
}

impl ConvKernels {
    /// The `layers` algorithm.
    pub fn algorithm(self) -> ConvAlgorithm {
        match self {
            Self::Fastest => ConvAlgorithm::Fastest,
            Self::Accurate => ConvAlgorithm::Accurate,
            Self::Direct => ConvAlgorithm::Direct,
        }
    }
}

/// The process's device, made by the first [`open_device`].
static DEVICE: Mutex<Option<Device>> = Mutex::new(None);
/// How many devices [`open_device`] has made in this process (1 after the first call, and it
/// must stay 1: a test checks it).
static DEVICES_MADE: AtomicUsize = AtomicUsize::new(0);

/// The device experiments run on: the first CUDA GPU when built with the `cuda` feature, the
/// Metal GPU with `metal`, else the CPU. It is made once per process, by the first call, and
/// every later call (from any thread) returns the same device: the binaries call it once in
/// `main` and pass it down, and a library function that called it again would still get that
/// device, never a second one (tensors of two Metal devices cannot be combined, and each CUDA
/// device made opens new handles).
///
/// # Errors
/// A GPU build on a machine whose GPU cannot be opened (the next call tries again).
pub fn open_device() -> Result<Device> {
    let mut slot = DEVICE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(device) = slot.as_ref() {
        return Ok(device.clone());
    }
    let device = make_device()?;
    DEVICES_MADE.fetch_add(1, Ordering::SeqCst);
    *slot = Some(device.clone());
    Ok(device)
}

/// The number of devices [`open_device`] has made in this process: 0 before the first call,
/// then 1.
pub fn devices_made() -> usize {
    DEVICES_MADE.load(Ordering::SeqCst)
}

fn make_device() -> Result<Device> {
    #[cfg(feature = "cuda")]
    {
        return Ok(Device::new_cuda(0)?);
    }
    #[cfg(all(feature = "metal", not(feature = "cuda")))]
    {
        return Ok(Device::new_metal(0)?);
    }
    #[allow(unreachable_code)]
    Ok(Device::Cpu)
}

/// Makes sure `dataset` is complete in `data_dir`: files present and intact are kept, missing
/// or corrupt ones are downloaded (checksummed, with a progress bar); offline, the error says
/// which file to put where.
///
/// # Errors
/// [`crate::ExpError::Data`] when a file cannot be obtained.
pub fn ensure_data(data_dir: &Path, dataset: datasets::Dataset) -> Result<()> {
    datasets::download::ensure_dataset(
        data_dir,
        dataset,
        &datasets::download::DownloadOptions::default(),
    )?;
    Ok(())
}

/// MNIST images (training or test split) zero-padded by 2 pixels on each side:
/// `[N, 1, 32, 32]`, values in `[0, 1]`, on `device`.
///
/// # Errors
/// Missing or corrupt files (the error says where they were expected).
pub fn mnist32(data_dir: &Path, train_split: bool, device: &Device) -> Result<Tensor> {
    let d = datasets::load_idx_dataset(data_dir, datasets::IdxDataset::Mnist, &Device::Cpu)?;
    let images = if train_split {
        d.train.images
    } else {
        d.test.images
    };
    Ok(images
        .pad_with_zeros(2, 2, 2)?
        .pad_with_zeros(3, 2, 2)?
        .to_device(device)?)
}

/// A trainable ResNet EBM whose parameters are drawn from a generator seeded with `seed`:
/// uniform in `+-1/sqrt(fan_in)` as PyTorch's default initialisation.
///
/// Candle's own initialisers draw from a CPU generator that cannot be seeded, so the values
/// they put in the [`VarMap`] are overwritten.
///
/// # Errors
/// Tensor errors only.
pub fn seeded_resnet_ebm(
    cfg: &ResNetEbmConfig,
    seed: u64,
    device: &Device,
) -> Result<(VarMap, ResNetEbm)> {
    let vm = VarMap::new();
    let net = ResNetEbm::new(cfg, VarBuilder::from_varmap(&vm, DType::F32, device))?;
    let (names, vars) = crate::trainer::named_vars(&vm);
    let mut noise = NoiseSource::new(seed ^ 0x5eed);
    for (name, var) in names.iter().zip(vars) {
        let fan_in = if name.contains("head") {
            var.dims().last().copied().unwrap_or(1)
        } else {
            fan_in_of(&vm, name)
        };
        let bound = 1.0 / (fan_in as f64).sqrt();
        let u = noise.uniform_like(var.as_tensor())?;
        var.set(&((u * (2.0 * bound))? - bound)?)?;
    }
    Ok((vm, net))
}

/// A trainable dense energy network drawn from a generator seeded with `seed`: weights and
/// biases uniform in `+-1/sqrt(fan_in)`, as PyTorch's default initialisation.
///
/// # Errors
/// A bad configuration (see [`Mlp::new`]).
pub fn seeded_mlp(cfg: &MlpConfig, seed: u64, device: &Device) -> Result<(VarMap, Mlp)> {
    let vm = VarMap::new();
    let net = Mlp::new(cfg, VarBuilder::from_varmap(&vm, DType::F32, device))?;
    seed_layers_pytorch_default(&vm, &mut NoiseSource::new(seed ^ 0x31f), &[])?;
    Ok((vm, net))
}

/// The implicit-encoder autoencoder of Table 6 and its score network, each in its own `VarMap`
/// (they have their own optimisers), drawn from a generator seeded with `seed`: every layer
/// uniform in `+-1/sqrt(fan_in)`, PyTorch's default, as the reference.
///
/// # Errors
/// A bad configuration (see [`ImplicitAutoencoder::new`]).
pub fn seeded_implicit_autoencoder(
    cfg: &ImplicitAutoencoderConfig,
    seed: u64,
    device: &Device,
) -> Result<((VarMap, ImplicitAutoencoder), (VarMap, LatentScore))> {
    let ae_vm = VarMap::new();
    let ae = ImplicitAutoencoder::new(cfg, VarBuilder::from_varmap(&ae_vm, DType::F32, device))?;
    let score_vm = VarMap::new();
    let score = LatentScore::new(cfg, VarBuilder::from_varmap(&score_vm, DType::F32, device))?;
    let mut noise = NoiseSource::new(seed ^ 0x1a7e);
    seed_layers_pytorch_default(&ae_vm, &mut noise, &[])?;
    seed_layers_pytorch_default(&score_vm, &mut noise, &[])?;
    Ok(((ae_vm, ae), (score_vm, score)))
}

/// NCSN's RefineNet drawn from a generator seeded with `seed`: the convolutions uniform in
/// `+-1/sqrt(fan_in)` (PyTorch's default), the normalisations' `gamma` and `alpha` from
/// `N(1, 0.02)` and `beta` zero, as the reference initialises them.
///
/// # Errors
/// A bad configuration (see [`Ncsn::new`]).
pub fn seeded_ncsn(cfg: &NcsnConfig, seed: u64, device: &Device) -> Result<(VarMap, Ncsn)> {
    let vm = VarMap::new();
    let net = Ncsn::new(cfg, VarBuilder::from_varmap(&vm, DType::F32, device))?;
    let (names, vars) = crate::trainer::named_vars(&vm);
    let is_norm = |n: &str| n.ends_with(".gamma") || n.ends_with(".alpha") || n.ends_with(".beta");
    let norms: Vec<&str> = names
        .iter()
        .map(String::as_str)
        .filter(|n| is_norm(n))
        .collect();
    let mut noise = NoiseSource::new(seed ^ 0x5c0e);
    seed_layers_pytorch_default(&vm, &mut noise, &norms)?;
    for (name, var) in names.iter().zip(vars) {
        if name.ends_with(".beta") {
            var.set(&var.as_tensor().zeros_like()?)?;
        } else if is_norm(name) {
            var.set(&((noise.gaussian_like(var.as_tensor())? * 0.02)? + 1.0)?)?;
        }
    }
    Ok((vm, net))
}

/// A trainable deep EBLVM and its posterior (see [`seeded_deep_eblvm`]).
#[allow(missing_debug_implementations)] // `VarMap` has no `Debug`.
pub struct SeededDeepEblvm {
    /// The energy's variables.
    pub varmap: VarMap,
    /// The energy.
    pub model: DeepEblvm,
    /// The posterior's variables, in its parameter order (they have their own optimiser).
    pub q_vars: Vec<Var>,
    /// The posterior, on those variables.
    pub posterior: ConvGaussianPosterior,
}

/// The deep EBLVM and its convolutional posterior drawn from a generator seeded with `seed`:
/// every layer uniform in `+-1/sqrt(fan_in)`, PyTorch's default, as the reference.
///
/// # Errors
/// A bad configuration.
pub fn seeded_deep_eblvm(
    model: &DeepEblvmConfig,
    posterior: &ConvGaussianPosteriorConfig,
    seed: u64,
    device: &Device,
) -> Result<SeededDeepEblvm> {
    let vm = VarMap::new();
    let net = DeepEblvm::new(model, VarBuilder::from_varmap(&vm, DType::F32, device))?;
    let q_vm = VarMap::new();
    let q = ConvGaussianPosterior::new(
        posterior,
        VarBuilder::from_varmap(&q_vm, DType::F32, device),
    )?;
    let mut noise = NoiseSource::new(seed ^ 0xeb1f);
    seed_layers_pytorch_default(&vm, &mut noise, &[])?;
    seed_layers_pytorch_default(&q_vm, &mut noise, &[])?;
    let q_vars = {
        let data = q_vm.data().lock().expect("VarMap lock");
        ConvGaussianPosterior::parameter_names()
            .iter()
            .map(|n| {
                data.get(*n).cloned().ok_or_else(|| {
                    crate::ExpError::Config(format!("the posterior has no variable `{n}`"))
                })
            })
            .collect::<Result<Vec<Var>>>()?
    };
    Ok(SeededDeepEblvm {
        varmap: vm,
        model: net,
        q_vars,
        posterior: q,
    })
}

/// MNIST's training and test images, `[60000, 784]` and `[10000, 784]`, grey levels in `[0, 1]`
/// on the CPU, checked.
///
/// # Errors
/// Missing or corrupt files; pixels outside `[0, 1]` or not finite.
pub fn mnist_flat(data_dir: &Path) -> Result<(Tensor, Tensor)> {
    let d = datasets::load_idx_dataset(data_dir, datasets::IdxDataset::Mnist, &Device::Cpu)?;
    let flat = |t: Tensor, what: &str| -> Result<Tensor> {
        let n = t.dim(0)?;
        let t = t.reshape((n, 784))?;
        check_pixels(&t, what)?;
        Ok(t)
    };
    Ok((
        flat(d.train.images, "training")?,
        flat(d.test.images, "test")?,
    ))
}

/// Pixels must be finite and in `[0, 1]`.
pub(crate) fn check_pixels(t: &Tensor, what: &str) -> Result<()> {
    let v = t.flatten_all()?.to_dtype(candle_core::DType::F64)?;
    let (lo, hi) = (v.min(0)?.to_scalar::<f64>()?, v.max(0)?.to_scalar::<f64>()?);
    let sum = v.sum_all()?.to_scalar::<f64>()?;
    if !sum.is_finite() || !(0.0..=1.0).contains(&lo) || !(0.0..=1.0).contains(&hi) {
        return Err(crate::ExpError::Config(format!(
            "the MNIST {what} pixels must be finite and in [0, 1], found range [{lo}, {hi}] \
             (sum {sum}); the data files are corrupt"
        )));
    }
    Ok(())
}

/// FID and KID with LeNet features of MNIST-like `images` (`[N, 1, 28, 28]`, values in
/// `[0, 1]`) against MNIST's test split. LeNet is trained once and cached, with the reference
/// features, in `feature_cache` (default `<data_dir>/feature-nets`).
///
/// # Errors
/// Missing data, too few images for a full-rank covariance, cache I/O errors.
pub fn mnist_lenet_quality(
    images: &Tensor,
    data_dir: &Path,
    feature_cache: Option<&Path>,
    device: &Device,
    progress: bool,
) -> Result<sample_quality::lenet::LeNetQuality> {
    let cache = feature_cache.map_or_else(|| data_dir.join("feature-nets"), Path::to_path_buf);
    let lenet = sample_quality::lenet::load_or_train_lenet(
        data_dir,
        &cache,
        sample_quality::lenet::MnistFamily::Mnist,
        &sample_quality::lenet::LeNetTraining::default(),
        device,
        progress,
    )?;
    Ok(lenet.evaluate(images, data_dir, &cache)?)
}

/// Draws every layer's weight and bias of `vm` (sorted by name) uniformly in
/// `+-1/sqrt(fan_in)`, PyTorch's default for dense and (transposed) convolution layers, from
/// `noise`; the variables named in `skip` keep their values.
fn seed_layers_pytorch_default(vm: &VarMap, noise: &mut NoiseSource, skip: &[&str]) -> Result<()> {
    let (names, vars) = crate::trainer::named_vars(vm);
    for (name, var) in names.iter().zip(vars) {
        if skip.contains(&name.as_str()) {
            continue;
        }
        let layer = name.trim_end_matches(".weight").trim_end_matches(".bias");
        // PyTorch's fan-in: every axis of the weight but the first (`in` of a dense layer,
        // `C_in K^2` of a convolution, `C_out K^2` of a transposed one).
        let fan_in = {
            let data = vm.data().lock().expect("VarMap lock");
            data.get(&format!("{layer}.weight"))
                .map_or(1, |w| w.dims().iter().skip(1).product::<usize>().max(1))
        };
        let bound = 1.0 / (fan_in as f64).sqrt();
        let u = noise.uniform_like(var.as_tensor())?;
        var.set(&((u * (2.0 * bound))? - bound)?)?;
    }
    Ok(())
}

/// A trainable NICE flow drawn from a generator seeded with `seed`: the coupling networks'
/// weights and biases uniform in `+-1/sqrt(fan_in)` (PyTorch's default, as the reference), the
/// log-scales at 0.
///
/// # Errors
/// A bad configuration (see [`Nice::new`]).
pub fn seeded_nice(cfg: &NiceConfig, seed: u64, device: &Device) -> Result<(VarMap, Nice)> {
    let vm = VarMap::new();
    let net = Nice::new(cfg, VarBuilder::from_varmap(&vm, DType::F32, device))?;
    seed_layers_pytorch_default(&vm, &mut NoiseSource::new(seed ^ 0x41ce), &["scale"])?;
    Ok((vm, net))
}

/// A trainable DKEF drawn from a generator seeded with `seed`: feature-network weights
/// `N(0, 1) / sqrt(fan_out)` (the reference's), biases 0, the configured bandwidths and
/// `lambda`, and the inducing points `M` distinct rows of `data` picked at random (the reference
/// initialises them from data).
///
/// # Errors
/// A bad configuration, fewer data rows than inducing points.
pub fn seeded_dkef(
    cfg: &DkefConfig,
    data: &Tensor,
    seed: u64,
    device: &Device,
) -> Result<(VarMap, Dkef)> {
    let n = data.dim(0)?;
    if n < cfg.inducing {
        return Err(crate::ExpError::Config(format!(
            "DKEF needs at least as many training points ({n}) as inducing points ({})",
            cfg.inducing
        )));
    }
    let vm = VarMap::new();
    let model = Dkef::new(cfg, VarBuilder::from_varmap(&vm, DType::F32, device))?;
    let (names, vars) = crate::trainer::named_vars(&vm);
    let mut noise = NoiseSource::new(seed ^ 0xdcef);
    for (name, var) in names.iter().zip(vars) {
        if name == models::INDUCING {
            let pick = datasets::Batcher::new(n, cfg.inducing, seed ^ 0x1d)?.batch(data, 0)?;
            var.set(&pick.to_dtype(DType::F32)?.to_device(device)?)?;
        } else if name.ends_with(".weight") {
            let fan_out = var.dims()[0];
            let z = noise.gaussian_like(var.as_tensor())?;
            var.set(&(z / (fan_out as f64).sqrt())?)?;
        }
    }
    Ok((vm, model))
}

/// Fan-in of a conv layer from its weight (`[out, in, k, k]`); biases use their weight's.
fn fan_in_of(vm: &VarMap, name: &str) -> usize {
    let weight = name.replace(".bias", ".weight");
    let data = vm.data().lock().expect("VarMap lock");
    data.get(&weight)
        .map_or(1, |w| w.dims().iter().skip(1).product())
}

/// A ResNet EBM with fixed (untracked) parameters in `dtype`, for evaluation: gradients flow
/// only to the inputs, so forward passes keep no graph for the weights.
///
/// # Errors
/// A parameter missing from `params` or of the wrong shape.
pub fn frozen_resnet_ebm(
    cfg: &ResNetEbmConfig,
    params: &HashMap<String, Tensor>,
    dtype: DType,
    device: &Device,
) -> Result<ResNetEbm> {
    let detached = params
        .iter()
        .map(|(k, v)| (k.clone(), v.detach()))
        .collect();
    Ok(ResNetEbm::new(
        cfg,
        VarBuilder::from_tensors(detached, dtype, device),
    )?)
}

/// A trainable f64 GRBM (CPU) with `b = c = 0`, `log sigma = 0` and `W ~ N(0, w_std^2)` drawn
/// from a generator seeded with `seed`.
///
/// # Errors
/// A zero size.
pub fn seeded_grbm(visible: usize, hidden: usize, w_std: f64, seed: u64) -> Result<(VarMap, Grbm)> {
    let vm = VarMap::new();
    let m = Grbm::new(
        GrbmConfig { visible, hidden },
        VarBuilder::from_varmap(&vm, DType::F64, &Device::Cpu),
    )?;
    {
        let data = vm.data().lock().expect("VarMap lock");
        let w = &data["w"];
        w.set(&(NoiseSource::new(seed).gaussian_like(w.as_tensor())? * w_std)?)?;
    }
    Ok((vm, m))
}

/// The variables `(weight [D, H], bias [H])` of a Bernoulli posterior, f64: weights
/// `U(+-1/sqrt(D))` from a generator seeded with `seed` (PyTorch's default), zero bias.
///
/// # Errors
/// Tensor errors only.
pub fn seeded_bernoulli_posterior(visible: usize, hidden: usize, seed: u64) -> Result<(Var, Var)> {
    let bound = 1.0 / (visible as f64).sqrt();
    let u = NoiseSource::new(seed).uniform_like(&Tensor::zeros(
        (visible, hidden),
        DType::F64,
        &Device::Cpu,
    )?)?;
    Ok((
        Var::from_tensor(&((u * (2.0 * bound))? - bound)?)?,
        Var::from_tensor(&Tensor::zeros(hidden, DType::F64, &Device::Cpu)?)?,
    ))
}

/// The training options of the GRBM experiments (BiSM Sec. 5.1, VaGES App. F): Adam
/// (0.9, 0.999) at a constant rate without clipping, checkpointed to `checkpoint` every
/// `checkpoint_every` steps. `config_json` identifies the run whose checkpoint may be resumed.
pub fn grbm_train_options(
    label: String,
    iters: u64,
    lr: f64,
    checkpoint: PathBuf,
    checkpoint_every: u64,
    control: RunControl,
    config_json: String,
) -> TrainOptions {
    let mut opts = TrainOptions::new(iters, lr)
        .with_schedule(LrSchedule::Constant)
        .with_adam(GRBM_ADAM)
        .with_checkpoint(checkpoint, checkpoint_every, control.resume)
        .with_progress(control.progress, label)
        .with_config_json(config_json);
    opts.stop_after = control.stop_after;
    opts.explode_threshold = 1e12;
    opts
}

/// Adam's settings in the GRBM experiments, for the model and the variational posterior alike.
pub const GRBM_ADAM: AdamConfig = AdamConfig {
    beta1: 0.9,
    beta2: 0.999,
    eps: 1e-8,
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corrupt_pixels_are_named() {
        let bad = Tensor::new(&[[0.5f32, f32::NAN]], &Device::Cpu).unwrap();
        let e = check_pixels(&bad, "test").unwrap_err().to_string();
        assert!(e.contains("finite") && e.contains("test"), "{e}");
        let bad = Tensor::new(&[[0.5f32, 255.0]], &Device::Cpu).unwrap();
        assert!(check_pixels(&bad, "training").is_err());
        let good = Tensor::new(&[[0.0f32, 1.0]], &Device::Cpu).unwrap();
        assert!(check_pixels(&good, "training").is_ok());
    }
}
