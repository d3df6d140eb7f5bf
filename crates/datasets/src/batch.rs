//! Seeded shuffling and batching: the batch at any step is a pure function of `(seed, step)`, so
//! a resumed run sees exactly the batches it would have seen.

use candle_core::{Device, Tensor};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;

use crate::error::{DataError, Result};

/// Draws minibatch indices from a fixed-size dataset: every epoch is a fresh permutation seeded
/// by `(seed, epoch)`; the last incomplete batch of an epoch is dropped so every batch has the
/// same size.
#[derive(Debug, Clone)]
pub struct Batcher {
    n: usize,
    batch_size: usize,
    seed: u64,
    cached: Option<(u64, Vec<u32>)>,
}

impl Batcher {
    /// A batcher over `n` examples.
    ///
    /// # Errors
    /// [`DataError::InvalidArgument`] when `batch_size` is 0 or larger than `n`.
    pub fn new(n: usize, batch_size: usize, seed: u64) -> Result<Self> {
        if batch_size == 0 || batch_size > n || n > u32::MAX as usize {
            return Err(DataError::InvalidArgument(format!(
                "batch size {batch_size} does not fit a dataset of {n} examples"
            )));
        }
        Ok(Self {
            n,
            batch_size,
            seed,
            cached: None,
        })
    }

    /// Full batches per epoch.
    pub fn batches_per_epoch(&self) -> u64 {
        (self.n / self.batch_size) as u64
    }

    /// The permutation of epoch `epoch`.
    pub fn permutation(&self, epoch: u64) -> Vec<u32> {
        let mut idx: Vec<u32> = (0..self.n as u32).collect();
        let mut rng = StdRng::seed_from_u64(self.seed ^ epoch.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        idx.shuffle(&mut rng);
        idx
    }

    /// The indices of the batch used at global step `step`.
    pub fn indices(&mut self, step: u64) -> &[u32] {
        let per = self.batches_per_epoch();
        let (epoch, k) = (step / per, (step % per) as usize);
        if self.cached.as_ref().is_none_or(|(e, _)| *e != epoch) {
            self.cached = Some((epoch, self.permutation(epoch)));
        }
        let perm = &self.cached.as_ref().expect("just filled").1;
        &perm[k * self.batch_size..(k + 1) * self.batch_size]
    }

    /// The rows of `data` (`[N, ...]`) for global step `step`.
    ///
    /// # Errors
    /// [`DataError::InvalidArgument`] when `data` does not have `n` rows.
    pub fn batch(&mut self, data: &Tensor, step: u64) -> Result<Tensor> {
        if data.dims().first() != Some(&self.n) {
            return Err(DataError::InvalidArgument(format!(
                "batcher built for {} rows, got a tensor of shape {:?}",
                self.n,
                data.dims()
            )));
        }
        let idx = self.indices(step).to_vec();
        Ok(data.index_select(
            &Tensor::from_vec(idx, self.batch_size, &Device::Cpu)?.to_device(data.device())?,
            0,
        )?)
    }
}
