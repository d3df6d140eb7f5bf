//! `eval`: sample quality of generated images on their own, as `cargo xtask eval` runs it.
//! `eval fid --samples PATH --reference mnist|fashion-mnist` computes FID and KID with the
//! features of a LeNet classifier trained here (Heusel et al. 2017; Binkowski et al. 2018),
//! against the reference data set's test split. Not comparable with Inception FID.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use clap::{Parser, Subcommand, ValueEnum};
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
}

#[derive(Subcommand)]
enum Cmd {
    /// FID and KID with LeNet features (the feature network is trained on the reference's
    /// training split the first time, about a minute on 2 cores, and cached).
    Fid {
        /// The samples: a safetensors file whose tensor (`--tensor`, else its only one) is
        /// `[N, 1, H, W]` or `[N, H, W]`, or a directory of grey PNG images (one sample per
        /// file); 28 x 28, or 32 x 32 (MNIST padded by 2, cropped to the centre); values in
        /// [0, 1] (PNG pixels are divided by 255).
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
        /// Where the feature networks and reference statistics are cached (default:
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

/// The samples as a `[N, 1, H, W]` (or `[N, H, W]`) tensor.
fn read_samples(path: &Path, name: Option<&str>) -> Result<Tensor> {
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
            let img = image::open(f)
                .with_context(|| format!("{}: not a readable image", f.display()))?
                .to_luma8();
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
            pixels.extend(img.into_raw().into_iter().map(|p| f32::from(p) / 255.0));
        }
        let (h, w) = size.unwrap_or((0, 0));
        return Ok(Tensor::from_vec(
            pixels,
            (files.len(), 1, h, w),
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

fn main() -> Result<()> {
    layers::cpu::settle_thread_count();
    match Cli::parse().command {
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
            };
            experiments::setup::ensure_data(&data_dir, dataset)?;
            let images = read_samples(&samples, tensor.as_deref())?;
            let net = load_or_train_lenet(
                &data_dir,
                &cache_dir,
                data,
                &LeNetTraining::default(),
                &Device::Cpu,
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
