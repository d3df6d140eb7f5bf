//! `eval`: sample quality of generated images on their own, as `cargo xtask eval` runs it.
//! `eval fid --samples PATH --reference mnist|fashion-mnist|cifar-10` computes FID and KID
//! (Heusel et al. 2017; Binkowski et al. 2018) against the reference data set's test split: with
//! the features of a LeNet classifier trained here for the MNIST family (not comparable with
//! Inception FID), with the FID InceptionV3 (pytorch-fid's weights) for CIFAR-10.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use clap::{Parser, Subcommand, ValueEnum};
use experiments::inception_fid::{inception_quality, load_inception, require_inception_samples};
use sample_quality::lenet::{load_or_train_lenet, LeNetTraining, MnistFamily};

#[derive(Parser)]
#[command(
    name = "eval",
    version,
    about = "Measure the quality of generated samples",
    arg_required_else_help = true
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Clone, Copy, ValueEnum)]
enum Reference {
    /// MNIST's test split, LeNet trained on MNIST.
    Mnist,
    /// Fashion-MNIST's test split, LeNet trained on Fashion-MNIST.
    FashionMnist,
    /// CIFAR-10's test split, FID InceptionV3 features (`cargo xtask download inception`).
    #[value(name = "cifar-10")]
    Cifar10,
}

#[derive(Subcommand)]
enum Cmd {
    /// FID and KID: with LeNet features for mnist and fashion-mnist (the feature network is
    /// trained on the reference's training split the first time, about a minute on 2 cores, and
    /// cached), with InceptionV3 features for cifar-10 (about 0.2 s per image on 2 cores; the
    /// reference's features are cached).
    Fid {
        /// The samples: a safetensors file whose tensor (`--tensor`, else its only one) is
        /// `[N, C, H, W]` (or `[N, H, W]` grey), or a directory of PNG images (one sample per
        /// file); values in [0, 1] (PNG pixels are divided by 255). LeNet takes grey 28 x 28
        /// images, or 32 x 32 (MNIST padded by 2, cropped to the centre); Inception any size.
        #[arg(long)]
        samples: PathBuf,
        /// The tensor to read from a safetensors file with several.
        #[arg(long)]
        tensor: Option<String>,
        /// The reference data set.
        #[arg(long, value_enum)]
        reference: Reference,
        /// Data directory (default: $FDSM_DATA_DIR, else the user cache directory).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Where the feature networks and the reference features are cached (default:
        /// `<data dir>/feature-nets`).
        #[arg(long)]
        cache_dir: Option<PathBuf>,
        /// Also write the result as JSON here.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Do not draw the progress bar of the feature network's training.
        #[arg(long)]
        no_progress: bool,
    },
}

/// The samples as a `[N, C, H, W]` (or `[N, H, W]`) tensor; PNG files are read as grey
/// (`channels` 1) or RGB (3) images.
fn read_samples(path: &Path, name: Option<&str>, channels: usize) -> Result<Tensor> {
    if path.is_dir() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(path)
            .with_context(|| format!("reading the directory {}", path.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x.eq_ignore_ascii_case("png")))
            .collect();
        files.sort();
        if files.is_empty() {
            bail!("{} holds no .png images", path.display());
        }
        let mut pixels = Vec::new();
        let mut size = None;
        for f in &files {
            let img =
                image::open(f).with_context(|| format!("{}: not a readable image", f.display()))?;
            let dims = (img.height() as usize, img.width() as usize);
            if *size.get_or_insert(dims) != dims {
                bail!(
                    "{} is {} x {}, the first image {:?}: every sample must have one size",
                    f.display(),
                    dims.0,
                    dims.1,
                    size
                );
            }
            if channels == 1 {
                let grey = img.to_luma8().into_raw();
                pixels.extend(grey.into_iter().map(|p| f32::from(p) / 255.0));
            } else {
                // Interleaved RGB to one plane per channel.
                let rgb = img.to_rgb8().into_raw();
                for c in 0..3 {
                    pixels.extend(rgb.iter().skip(c).step_by(3).map(|&p| f32::from(p) / 255.0));
                }
            }
        }
        let (h, w) = size.unwrap_or((0, 0));
        return Ok(Tensor::from_vec(
            pixels,
            (files.len(), channels, h, w),
            &Device::Cpu,
        )?);
    }
    let tensors = candle_core::safetensors::load(path, &Device::Cpu)
        .with_context(|| format!("{}: not a readable safetensors file", path.display()))?;
    let t = match name {
        Some(n) => tensors
            .get(n)
            .with_context(|| format!("{} has no tensor `{n}`", path.display()))?,
        None if tensors.len() == 1 => tensors.values().next().expect("one tensor"),
        None => {
            let mut names: Vec<&String> = tensors.keys().collect();
            names.sort();
            bail!(
                "{} holds several tensors ({names:?}); choose one with --tensor",
                path.display()
            )
        }
    };
    Ok(t.to_dtype(DType::F32)?)
}

/// FID and KID with the FID InceptionV3 against CIFAR-10's test split, whose features are
/// cached in `cache_dir`.
fn cifar10_quality(
    images: &Tensor,
    device: &Device,
    data_dir: &Path,
    cache_dir: &Path,
    progress: bool,
) -> Result<serde_json::Value> {
    // The sample count first: a refusal should not wait for (or start) a download.
    require_inception_samples(images.dim(0)?)?;
    experiments::setup::ensure_data(data_dir, datasets::Dataset::Cifar10)?;
    let net = load_inception(data_dir, device)?;
    let q = inception_quality(
        &net,
        images,
        "cifar-10-test",
        || Ok(datasets::load_cifar10(data_dir, &Device::Cpu)?.test.images),
        cache_dir,
        progress,
    )?;
    println!(
        "FID (Inception): {:.3}\nKID (Inception): {:.5} ± {:.5} (100 subsets of {})\n\
         {} samples against the CIFAR-10 test split",
        q.fid, q.kid, q.kid_std_err, q.kid_subsets.1, q.samples
    );
    Ok(serde_json::json!({
        "reference": "cifar-10",
        "features": "inception-v3 (pytorch-fid weights)",
        "samples": q.samples,
        "fid": q.fid,
        "kid": q.kid,
        "kid_std_err": q.kid_std_err,
        "kid_subsets": [q.kid_subsets.0, q.kid_subsets.1],
    }))
}

fn main() -> Result<()> {
    layers::cpu::settle_thread_count();
    // Training the LeNet feature network allocates and frees buffers of megabytes at every
    // step: kept for reuse, it ran in 43 s instead of 59 s (system time 2 s instead of 21 s).
    experiments::allocator::tune_for_training();
    let cli = Cli::parse();
    // One device for the process (the GPU of a `cuda` or `metal` build), passed down.
    let device = experiments::setup::open_device()?;
    match cli.command {
        Cmd::Fid {
            samples,
            tensor,
            reference,
            data_dir,
            cache_dir,
            json,
            no_progress,
        } => {
            let data_dir = datasets::resolve_data_dir(data_dir.as_deref());
            let cache_dir = cache_dir.unwrap_or_else(|| data_dir.join("feature-nets"));
            let (data, dataset) = match reference {
                Reference::Mnist => (MnistFamily::Mnist, datasets::Dataset::Mnist),
                Reference::FashionMnist => {
                    (MnistFamily::FashionMnist, datasets::Dataset::FashionMnist)
                }
                Reference::Cifar10 => {
                    let images = read_samples(&samples, tensor.as_deref(), 3)?;
                    let value =
                        cifar10_quality(&images, &device, &data_dir, &cache_dir, !no_progress)?;
                    if let Some(path) = json {
                        std::fs::write(&path, serde_json::to_string_pretty(&value)?)
                            .with_context(|| format!("writing {}", path.display()))?;
                    }
                    return Ok(());
                }
            };
            experiments::setup::ensure_data(&data_dir, dataset)?;
            let images = read_samples(&samples, tensor.as_deref(), 1)?;
            let net = load_or_train_lenet(
                &data_dir,
                &cache_dir,
                data,
                &LeNetTraining::default(),
                &device,
                !no_progress,
            )?;
            let q = net.evaluate(&images, &data_dir, &cache_dir)?;
            println!(
                "FID (LeNet features, not comparable with Inception FID): {:.3}\n\
                 KID (LeNet features): {:.4} ± {:.4} ({} subsets of {})\n\
                 {} samples against the {} test split; feature network: {:.2}% test accuracy",
                q.fid,
                q.kid,
                q.kid_std_err,
                q.kid_subsets.0,
                q.kid_subsets.1,
                q.samples,
                data.key(),
                100.0 * q.feature_net_accuracy
            );
            if let Some(path) = json {
                let text = serde_json::to_string_pretty(&q)?;
                std::fs::write(&path, text)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
        }
    }
    Ok(())
}
