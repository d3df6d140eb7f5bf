//! Compares our FID InceptionV3 with pytorch-fid's on the fixture `benches/verify_fid_inception.py`
//! writes (random weights and images, pytorch-fid's features): prints the largest absolute and
//! relative differences of the 2048 features, and fails above 1e-3 relative.

use anyhow::{bail, Result};
use candle_core::{Device, Tensor};
use sample_quality::inception::FidInception;

fn main() -> Result<()> {
    let dir = std::path::PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "inception-fixture".into()),
    );
    let cpu = Device::Cpu;
    let net = FidInception::from_pth(&dir.join("weights.pth"), &cpu)?;
    let images = Tensor::read_npy(dir.join("images.npy"))?;
    let theirs = Tensor::read_npy(dir.join("features.npy"))?;
    let t = std::time::Instant::now();
    let ours = net.features(&images, 8)?;
    let secs = t.elapsed().as_secs_f64();
    let diff = (&ours - &theirs)?.abs()?.max_all()?.to_scalar::<f32>()?;
    let scale = theirs.abs()?.max_all()?.to_scalar::<f32>()?;
    println!(
        "{} images: largest |ours - pytorch-fid| = {diff:.3e}, largest |feature| = {scale:.3e}, \
         relative {:.3e}; {:.2} s per image",
        images.dim(0)?,
        diff / scale,
        secs / images.dim(0)? as f64
    );
    if diff / scale > 1e-3 {
        bail!("the features differ");
    }
    Ok(())
}
