//! Input checks shared by the objectives: shapes, finiteness and hyperparameter ranges, each
//! failing with a message that names the argument.

use candle_core::{bail, DType, Result, Tensor};

/// `x` must be `F32` or `F64` and have a batch dimension and at least one data dimension.
pub(crate) fn batch_and_dim(x: &Tensor, name: &str) -> Result<(usize, usize)> {
    if !matches!(x.dtype(), DType::F32 | DType::F64) {
        bail!(
            "{name} has dtype {:?}; the objectives compute in F32 or F64 (the FD steps and \
             noise levels are lost in half precision): convert it, e.g. x.to_dtype(DType::F32)",
            x.dtype()
        )
    }
    let dims = x.dims();
    if dims.len() < 2 || dims.contains(&0) {
        bail!("{name} must have shape [B, ...] with B >= 1 and at least one non-empty data dimension, got {:?}", dims)
    }
    Ok((dims[0], dims[1..].iter().product()))
}

/// `other` must have exactly the shape of `x`.
pub(crate) fn same_shape(x: &Tensor, other: &Tensor, name: &str) -> Result<()> {
    if x.dims() != other.dims() {
        bail!(
            "{name} must have the shape of x {:?}, got {:?}",
            x.dims(),
            other.dims()
        )
    }
    Ok(())
}

/// Every entry must be finite.
pub(crate) fn finite(t: &Tensor, name: &str) -> Result<()> {
    if !all_finite(t)? {
        bail!("{name} contains NaN or infinite values")
    }
    Ok(())
}

/// Whether every entry of `t` is finite. A contiguous f32 or f64 tensor on the CPU is read in
/// place, one pass that counts the non-finite entries (`is_finite` is a compare, so the count
/// vectorises, where a search that stops early does not); anything else is summed in f64 after
/// `abs` (NaN and infinities make the sum non-finite, and an f32 or half-precision sum in f64
/// cannot overflow).
fn all_finite(t: &Tensor) -> Result<bool> {
    use candle_core::{CpuStorage, Storage};
    let in_place = {
        let (storage, layout) = t.storage_and_layout();
        match (&*storage, layout.contiguous_offsets()) {
            (Storage::Cpu(CpuStorage::F32(d)), Some((a, b))) => {
                Some(d[a..b].iter().filter(|x| !x.is_finite()).count() == 0)
            }
            (Storage::Cpu(CpuStorage::F64(d)), Some((a, b))) => {
                Some(d[a..b].iter().filter(|x| !x.is_finite()).count() == 0)
            }
            _ => None,
        }
    };
    if let Some(finite) = in_place {
        return Ok(finite);
    }
    let total = t
        .detach()
        .to_dtype(DType::F64)?
        .abs()?
        .sum_all()?
        .to_scalar::<f64>()?;
    Ok(total.is_finite())
}

/// A hyperparameter that must be finite and strictly positive.
pub(crate) fn positive(value: f64, name: &str) -> Result<()> {
    if !(value.is_finite() && value > 0.0) {
        bail!("{name} must be finite and > 0, got {value}")
    }
    Ok(())
}

/// Per-sample values `[B]` that must be finite and strictly positive (noise levels).
pub(crate) fn positive_per_sample(t: &Tensor, batch: usize, name: &str) -> Result<Vec<f64>> {
    if t.dims() != [batch] {
        bail!("{name} must have shape [{batch}], got {:?}", t.dims())
    }
    let values = t.to_dtype(DType::F64)?.to_vec1::<f64>()?;
    if let Some((i, v)) = values
        .iter()
        .enumerate()
        .find(|(_, v)| !(v.is_finite() && **v > 0.0))
    {
        bail!("{name}[{i}] must be finite and > 0, got {v}")
    }
    Ok(values)
}

/// How the error of a non-finite model output begins ([`is_non_finite_output`]).
pub(crate) const NON_FINITE_OUTPUT: &str = "the model's log-density is NaN or infinite";

/// Whether `e` is the objectives' error for a model whose log-density was NaN or infinite on
/// finite inputs (a trainer counts it as a divergence). Candle's error type carries no typed
/// payload, so this reads the message the objectives write.
pub fn is_non_finite_output(e: &candle_core::Error) -> bool {
    e.to_string().contains(NON_FINITE_OUTPUT)
}

/// The model output must be `[B]` and finite (the inputs were checked before).
pub(crate) fn per_sample_output(out: &Tensor, batch: usize) -> Result<()> {
    if out.dims() != [batch] {
        bail!(
            "the log-density must return shape [{batch}] (one value per sample), got {:?}",
            out.dims()
        )
    }
    let values = out.detach().to_dtype(DType::F64)?.to_vec1::<f64>()?;
    let bad: Vec<usize> = (0..batch).filter(|&i| !values[i].is_finite()).collect();
    if let Some(&first) = bad.first() {
        bail!(
            "{NON_FINITE_OUTPUT} for {} of its {batch} finite inputs (first: input {first}, \
             value {}); the model, not the data, is at fault",
            bad.len(),
            values[first]
        )
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::all_finite;
    use candle_core::{DType, Device, Tensor};

    /// The in-place scan agrees with `f64::is_finite` entry by entry: one non-finite value
    /// anywhere (NaN, either infinity; in f32, f64 and f16, contiguous or strided) is found,
    /// and the largest finite values, subnormals and zeros pass. For f64 the old f64 sum would
    /// have overflowed on two entries near `f64::MAX`.
    #[test]
    fn all_finite_finds_every_non_finite_value() -> candle_core::Result<()> {
        let cpu = Device::Cpu;
        for dtype in [DType::F32, DType::F64, DType::F16] {
            // The largest finite values of the dtype (f16's is 65504).
            let max = if dtype == DType::F16 {
                65504.0
            } else {
                f64::from(f32::MAX)
            };
            let finite = [0.0, -0.0, 1.0, -3.5, 1e-45, max, -max];
            let ok = Tensor::new(&finite[..], &cpu)?.to_dtype(dtype)?;
            assert!(all_finite(&ok)?, "{dtype:?}");
            for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
                for at in [0, 3, finite.len() - 1] {
                    let mut values = finite.to_vec();
                    values[at] = bad;
                    let t = Tensor::new(values.as_slice(), &cpu)?.to_dtype(dtype)?;
                    assert!(!all_finite(&t)?, "{dtype:?}: {bad} at {at}");
                    // Strided: a column of a transposed matrix holding the same values.
                    let m = Tensor::stack(&[&t, &t], 0)?.t()?;
                    assert!(!m.is_contiguous() && !all_finite(&m)?, "{dtype:?}: strided");
                }
            }
        }
        let huge = Tensor::new(&[f64::MAX, f64::MAX], &cpu)?;
        assert!(all_finite(&huge)?);
        Ok(())
    }
}
