//! Adam (Kingma and Ba 2015) with its moments exposed for checkpointing (candle-nn's `AdamW`
//! keeps them private), RMSProp as its special case (no first moment, no bias correction; the
//! implicit-encoder autoencoders of FD-SM Table 6 use it), the cosine learning-rate schedule and global-norm gradient clipping of
//! the deep-EBM runs (FD-SM App. C.2: Adam (0.9, 0.95), cosine to 0, clip 0.1).

use std::cell::RefCell;
use std::collections::HashMap;

use candle_core::backprop::GradStore;
use candle_core::{Layout, Result, Tensor, Var};
use candle_nn::Optimizer;

/// Hyperparameters of [`Adam`].
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AdamConfig {
    /// First-moment decay (paper: 0.9).
    pub beta1: f64,
    /// Second-moment decay (paper: 0.95).
    pub beta2: f64,
    /// Denominator guard (PyTorch default 1e-8).
    pub eps: f64,
}

impl Default for AdamConfig {
    fn default() -> Self {
        Self {
            beta1: 0.9,
            beta2: 0.95,
            eps: 1e-8,
        }
    }
}

/// Hyperparameters of RMSProp (Tieleman and Hinton 2012) as PyTorch's `RMSprop` has them
/// without momentum or centring: `v' = alpha v + (1 - alpha) g^2`, `p' = p - lr g / (sqrt(v') +
/// eps)`.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RmsPropConfig {
    /// Decay of the squared-gradient average (PyTorch default 0.99).
    pub alpha: f64,
    /// Denominator guard (PyTorch default 1e-8).
    pub eps: f64,
}

impl Default for RmsPropConfig {
    fn default() -> Self {
        Self {
            alpha: 0.99,
            eps: 1e-8,
        }
    }
}

/// Adam over a fixed, ordered list of variables; its state is `(t, m, v)`. Built by
/// [`Adam::rmsprop`] it is RMSProp: the same update with `beta1 = 0` (so `m` is the last
/// gradient) and without bias corrections.
///
/// [`Adam::step_with_lr`] takes the rate of each step (the trainer's schedule);
/// as a [`candle_nn::Optimizer`] it uses [`Optimizer::learning_rate`] (1e-3, PyTorch's
/// default, until [`Optimizer::set_learning_rate`]).
#[derive(Debug)]
pub struct Adam {
    vars: Vec<Var>,
    config: AdamConfig,
    /// Divide the moments by `1 - beta^t` (Adam) or not (RMSProp).
    bias_correction: bool,
    lr: f64,
    /// Number of updates made.
    pub t: u64,
    /// First moments, one per variable. Private because the CPU update overwrites them in
    /// place: each holds storage of its own ([`Adam::set_moments`] copies what it is given).
    m: Vec<Tensor>,
    /// Second moments, one per variable (private for the same reason).
    v: Vec<Tensor>,
}

impl Adam {
    /// Fresh state (zero moments) for `vars`.
    pub fn new(vars: Vec<Var>, config: AdamConfig) -> Result<Self> {
        // Two separate sets of zeros: the moments are updated in place, so they must not share
        // storage.
        let zeros = || {
            vars.iter()
                .map(|v| v.as_tensor().zeros_like())
                .collect::<Result<Vec<_>>>()
        };
        let (m, v) = (zeros()?, zeros()?);
        Ok(Self {
            vars,
            config,
            bias_correction: true,
            lr: 1e-3,
            t: 0,
            m,
            v,
        })
    }

    /// RMSProp over `vars` (fresh state): Adam's update with `beta1 = 0`, `beta2 = alpha` and
    /// no bias corrections, so that `p' = p - lr g / (sqrt(v') + eps)` exactly as PyTorch's
    /// `RMSprop(alpha, eps)` computes it. Its state and checkpoints are Adam's (`m` holds the
    /// last gradient).
    ///
    /// # Errors
    /// An `alpha` outside `[0, 1)` or a negative or non-finite `eps`.
    pub fn rmsprop(vars: Vec<Var>, config: RmsPropConfig) -> Result<Self> {
        let alpha_ok = (0.0..1.0).contains(&config.alpha);
        if !(alpha_ok && config.eps.is_finite() && config.eps >= 0.0) {
            candle_core::bail!(
                "RMSProp needs 0 <= alpha < 1 and eps >= 0, got alpha {} and eps {}",
                config.alpha,
                config.eps
            )
        }
        let mut opt = Self::new(
            vars,
            AdamConfig {
                beta1: 0.0,
                beta2: config.alpha,
                eps: config.eps,
            },
        )?;
        opt.bias_correction = false;
        Ok(opt)
    }

    /// The variables, in state order.
    pub fn vars(&self) -> &[Var] {
        &self.vars
    }

    /// The first and second moments, one of each per variable, in the order of
    /// [`Adam::vars`]. They are overwritten by the next step: copy them to keep them.
    pub fn moments(&self) -> (&[Tensor], &[Tensor]) {
        (&self.m, &self.v)
    }

    /// Replaces the moments of variable `i` (a checkpoint's) with copies of `m` and `v` in the
    /// variable's dtype.
    ///
    /// # Errors
    /// `i` out of range, or a shape other than the variable's.
    pub fn set_moments(&mut self, i: usize, m: &Tensor, v: &Tensor) -> Result<()> {
        let Some(var) = self.vars.get(i) else {
            candle_core::bail!("Adam has {} variables, no variable {i}", self.vars.len())
        };
        for (what, t) in [("first", m), ("second", v)] {
            if t.dims() != var.dims() {
                candle_core::bail!(
                    "the {what} moment of variable {i} has shape {:?}, the variable {:?}",
                    t.dims(),
                    var.dims()
                )
            }
        }
        // `copy` gives fresh storage, also where `to_dtype` returned the tensor itself.
        self.m[i] = m.to_dtype(var.dtype())?.copy()?;
        self.v[i] = v.to_dtype(var.dtype())?.copy()?;
        Ok(())
    }

    /// One update with learning rate `lr`. A variable without a gradient in `grads` (one the
    /// loss does not depend on) is skipped: its value and moments stay as they are, as in
    /// PyTorch. The bias corrections use the optimiser's step count `t`, which every call
    /// advances (PyTorch counts per parameter; the two differ only for parameters that miss
    /// steps).
    ///
    /// On the CPU (f32 or f64, contiguous) each variable and its moments are overwritten in
    /// one multithreaded pass; elsewhere they are computed by Candle ops and stored. Both do
    /// the same floating-point operations in the same order, so the results are identical.
    pub fn step_with_lr(&mut self, grads: &GradStore, lr: f64) -> Result<()> {
        self.t += 1;
        let k = Coefficients::new(self.config, self.t, lr, self.bias_correction);
        for (i, var) in self.vars.iter().enumerate() {
            let Some(g) = grads.get(var.as_tensor()) else {
                continue;
            };
            let g = g.detach();
            let p = var.as_tensor();
            if update_in_place(p, &g, &self.m[i], &self.v[i], &k)? {
                continue;
            }
            let (p, m, v) = composed_update(p, &g, &self.m[i], &self.v[i], &k)?;
            var.set(&p)?;
            self.m[i] = m;
            self.v[i] = v;
        }
        Ok(())
    }
}

/// Adam as candle-nn's optimiser: `Adam::new(vars, AdamConfig::default())` then
/// `set_learning_rate` and `backward_step(&loss)`, as with candle-nn's own.
impl Optimizer for Adam {
    type Config = AdamConfig;

    fn new(vars: Vec<Var>, config: AdamConfig) -> Result<Self> {
        Adam::new(vars, config)
    }

    fn step(&mut self, grads: &GradStore) -> Result<()> {
        self.step_with_lr(grads, self.lr)
    }

    fn learning_rate(&self) -> f64 {
        self.lr
    }

    fn set_learning_rate(&mut self, lr: f64) {
        self.lr = lr;
    }
}

/// The scalars of one Adam update: `m' = beta1 m + (1 - beta1) g`,
/// `v' = beta2 v + (1 - beta2) g^2`, `p' = p - lr (m' / c1) / (sqrt(v' / c2) + eps)` with the
/// bias corrections `c1 = 1 - beta1^t`, `c2 = 1 - beta2^t`.
#[derive(Debug, Clone, Copy)]
struct Coefficients {
    beta1: f64,
    beta2: f64,
    eps: f64,
    /// `1 / c1` and `1 / c2`, as Candle's tensor-by-scalar division multiplies by them.
    inv_c1: f64,
    inv_c2: f64,
    lr: f64,
}

impl Coefficients {
    fn new(config: AdamConfig, t: u64, lr: f64, bias_correction: bool) -> Self {
        let AdamConfig { beta1, beta2, eps } = config;
        let t = i32::try_from(t).unwrap_or(i32::MAX);
        let inv = |beta: f64| {
            if bias_correction {
                1.0 / (1.0 - beta.powi(t))
            } else {
                1.0
            }
        };
        Self {
            beta1,
            beta2,
            eps,
            inv_c1: inv(beta1),
            inv_c2: inv(beta2),
            lr,
        }
    }
}

/// The update by Candle ops (any device and float dtype): new `(p, m, v)`.
fn composed_update(
    p: &Tensor,
    g: &Tensor,
    m: &Tensor,
    v: &Tensor,
    k: &Coefficients,
) -> Result<(Tensor, Tensor, Tensor)> {
    let m = ((m * k.beta1)? + (g * (1.0 - k.beta1))?)?.detach();
    let v = ((v * k.beta2)? + (g.sqr()? * (1.0 - k.beta2))?)?.detach();
    let m_hat = m.affine(k.inv_c1, 0.0)?;
    let v_hat = v.affine(k.inv_c2, 0.0)?;
    let update = (m_hat / (v_hat.sqrt()? + k.eps)?)?;
    let p = (p.detach() - (update * k.lr)?)?;
    Ok((p, m, v))
}

/// Fewest elements per task of [`fused_update`].
const ADAM_CHUNK: usize = 1 << 14;

/// The element types of [`fused_update`], with Candle's conversion of its scalars.
trait AdamFloat:
    Copy
    + Send
    + Sync
    + std::ops::Add<Output = Self>
    + std::ops::Sub<Output = Self>
    + std::ops::Mul<Output = Self>
    + std::ops::Div<Output = Self>
{
    fn of(x: f64) -> Self;
    fn sqrt(self) -> Self;
}

impl AdamFloat for f32 {
    #[inline(always)]
    fn of(x: f64) -> Self {
        x as f32
    }
    #[inline(always)]
    fn sqrt(self) -> Self {
        f32::sqrt(self)
    }
}

impl AdamFloat for f64 {
    #[inline(always)]
    fn of(x: f64) -> Self {
        x
    }
    #[inline(always)]
    fn sqrt(self) -> Self {
        f64::sqrt(self)
    }
}

/// [`composed_update`] written over `p`, `m` and `v` in place, in one pass over the elements
/// in parallel chunks: CPU tensors of one float dtype and shape with contiguous layouts and
/// storage of their own. Returns `false` (nothing done) for anything else. Every scalar
/// operation is Candle's (scalars multiplied as `x * mul + add` in the element type, as its
/// `affine` does), in the same order, so the results equal the composed update's bit for bit
/// (a test checks it). One pass that reads four buffers and writes three, with no allocation,
/// instead of the composed update's dozen passes (most of them on one thread) and the copy into
/// the variable.
fn update_in_place(
    p: &Tensor,
    g: &Tensor,
    m: &Tensor,
    v: &Tensor,
    k: &Coefficients,
) -> Result<bool> {
    use candle_core::{CpuStorage, Storage};

    let tensors = [p, g, m, v];
    let same = layers::portable::cpu_kernels_enabled()
        && tensors
            .iter()
            .all(|t| t.device().is_cpu() && t.dtype() == p.dtype() && t.dims() == p.dims());
    // A tensor's layout never changes, so these element ranges hold inside the update too.
    let ([Some(at_p), Some(at_g), Some(at_m), Some(at_v)], true) =
        (tensors.map(|t| t.layout().contiguous_offsets()), same)
    else {
        return Ok(false);
    };
    // The address of each tensor's storage: writing one in place while another reads or writes
    // the same memory would be wrong (and locking one storage twice would never return).
    let mut bases = Vec::with_capacity(4);
    for t in tensors {
        let (storage, _) = t.storage_and_layout();
        let base = match &*storage {
            Storage::Cpu(CpuStorage::F32(data)) => data.as_ptr() as usize,
            Storage::Cpu(CpuStorage::F64(data)) => data.as_ptr() as usize,
            _ => return Ok(false),
        };
        bases.push(base);
    }
    if (1..4).any(|i| bases[..i].contains(&bases[i])) {
        return Ok(false);
    }
    let range = |(start, end): (usize, usize)| start..end;
    with_cpu_storage_mut(m, move |m| {
        with_cpu_storage_mut(v, move |v| {
            with_cpu_storage_mut(p, move |p| {
                let (g, _) = g.storage_and_layout();
                let Storage::Cpu(g) = &*g else {
                    candle_core::bail!("Adam: the gradient left the CPU during the update")
                };
                match (p, m, v, g) {
                    (
                        CpuStorage::F32(p),
                        CpuStorage::F32(m),
                        CpuStorage::F32(v),
                        CpuStorage::F32(g),
                    ) => update_slices(
                        [
                            &mut p[range(at_p)],
                            &mut m[range(at_m)],
                            &mut v[range(at_v)],
                        ],
                        &g[range(at_g)],
                        k,
                    ),
                    (
                        CpuStorage::F64(p),
                        CpuStorage::F64(m),
                        CpuStorage::F64(v),
                        CpuStorage::F64(g),
                    ) => update_slices(
                        [
                            &mut p[range(at_p)],
                            &mut m[range(at_m)],
                            &mut v[range(at_v)],
                        ],
                        &g[range(at_g)],
                        k,
                    ),
                    _ => candle_core::bail!("Adam: the dtypes changed during the update"),
                }
                Ok(())
            })
        })
    })?;
    Ok(true)
}

/// A closure given the CPU storage of a tensor, writable, by [`with_cpu_storage_mut`].
type StorageFn<'f> = Box<dyn FnOnce(&mut candle_core::CpuStorage) -> Result<()> + 'f>;

/// Candle's in-place op that hands the storage to a closure, once.
struct WithStorage<'f>(RefCell<Option<StorageFn<'f>>>);

impl candle_core::InplaceOp1 for WithStorage<'_> {
    fn name(&self) -> &'static str {
        "adam-in-place"
    }

    fn cpu_fwd(&self, storage: &mut candle_core::CpuStorage, _: &Layout) -> Result<()> {
        match self.0.borrow_mut().take() {
            Some(f) => f(storage),
            None => candle_core::bail!("Adam: the in-place update ran twice"),
        }
    }
}

/// Runs `f` on the CPU storage of `t` with Candle's write lock held (other readers and writers
/// of `t` wait). Nested calls on tensors of distinct storage hold several at once.
fn with_cpu_storage_mut<'f>(
    t: &Tensor,
    f: impl FnOnce(&mut candle_core::CpuStorage) -> Result<()> + 'f,
) -> Result<()> {
    t.inplace_op1(&WithStorage(RefCell::new(Some(Box::new(f)))))
}

/// One chunk of Adam's update, compiled into each of [`layers::cpu::vectorised`]'s per-CPU
/// copies.
struct AdamChunk<'a, T> {
    p: &'a mut [T],
    m: &'a mut [T],
    v: &'a mut [T],
    g: &'a [T],
    k: &'a Coefficients,
}

impl<T: AdamFloat> layers::cpu::Kernel for AdamChunk<'_, T> {
    type Output = ();

    #[inline(always)]
    fn run(self) {
        let k = self.k;
        let (b1, one_b1) = (T::of(k.beta1), T::of(1.0 - k.beta1));
        let (b2, one_b2) = (T::of(k.beta2), T::of(1.0 - k.beta2));
        let (inv_c1, inv_c2) = (T::of(k.inv_c1), T::of(k.inv_c2));
        let (one, eps, lr, zero) = (T::of(1.0), T::of(k.eps), T::of(k.lr), T::of(0.0));
        let n = self.p.len();
        let (p, m, v, g) = (self.p, &mut self.m[..n], &mut self.v[..n], &self.g[..n]);
        // Plain indexed loop over slices of one length: it vectorises (iterator adaptors over
        // four zipped slices compiled out of line in an earlier form of such a pass).
        for i in 0..n {
            let gi = g[i];
            let m2 = (m[i] * b1 + zero) + (gi * one_b1 + zero);
            let v2 = (v[i] * b2 + zero) + ((gi * gi) * one_b2 + zero);
            let m_hat = m2 * inv_c1 + zero;
            let v_hat = v2 * inv_c2 + zero;
            let update = m_hat / (v_hat.sqrt() * one + eps);
            p[i] = p[i] - (update * lr + zero);
            m[i] = m2;
            v[i] = v2;
        }
    }
}

/// Adam's update of `[p, m, v]` from `g`, all of one length, in parallel chunks of
/// [`ADAM_CHUNK`] elements.
fn update_slices<T: AdamFloat>([p, m, v]: [&mut [T]; 3], g: &[T], k: &Coefficients) {
    use rayon::prelude::*;
    p.par_chunks_mut(ADAM_CHUNK)
        .zip(m.par_chunks_mut(ADAM_CHUNK))
        .zip(v.par_chunks_mut(ADAM_CHUNK))
        .zip(g.par_chunks(ADAM_CHUNK))
        .for_each(|(((p, m), v), g)| layers::cpu::vectorised(AdamChunk { p, m, v, g, k }));
}

impl Adam {
    /// The variables' values, the moments and `t` as named tensors (`<prefix>param/<i>`,
    /// `<prefix>m/<i>`, `<prefix>v/<i>`, `<prefix>t`), for a checkpoint: copies, which later
    /// steps leave as they are.
    pub fn state_tensors(&self, prefix: &str) -> Result<Vec<(String, Tensor)>> {
        let mut out = Vec::with_capacity(3 * self.vars.len() + 1);
        for (i, var) in self.vars.iter().enumerate() {
            // Copies: the next step overwrites the variables and moments in place.
            out.push((format!("{prefix}param/{i}"), var.as_tensor().copy()?));
            out.push((format!("{prefix}m/{i}"), self.m[i].copy()?));
            out.push((format!("{prefix}v/{i}"), self.v[i].copy()?));
        }
        let t = i64::try_from(self.t).map_err(candle_core::Error::wrap)?;
        out.push((
            format!("{prefix}t"),
            Tensor::new(
                t,
                self.vars
                    .first()
                    .map_or(&candle_core::Device::Cpu, |v| v.device()),
            )?,
        ));
        Ok(out)
    }

    /// Restores what [`Adam::state_tensors`] saved: the variables' values, the moments and `t`.
    ///
    /// # Errors
    /// A missing tensor or one whose shape differs from its variable's.
    pub fn load_state(&mut self, prefix: &str, tensors: &HashMap<String, Tensor>) -> Result<()> {
        let get = |key: String| {
            tensors
                .get(&key)
                .ok_or_else(|| candle_core::Error::Msg(format!("the checkpoint has no `{key}`")))
        };
        for (i, var) in self.vars.iter().enumerate() {
            let (p, m, v) = (
                get(format!("{prefix}param/{i}"))?,
                get(format!("{prefix}m/{i}"))?,
                get(format!("{prefix}v/{i}"))?,
            );
            for (what, t) in [("param", p), ("m", m), ("v", v)] {
                if t.dims() != var.dims() {
                    return Err(candle_core::Error::Msg(format!(
                        "the checkpoint's `{prefix}{what}/{i}` has shape {:?}, the variable {:?}",
                        t.dims(),
                        var.dims()
                    )));
                }
            }
            var.set(p)?;
            self.m[i] = m.to_dtype(var.dtype())?.copy()?;
            self.v[i] = v.to_dtype(var.dtype())?.copy()?;
        }
        let t = get(format!("{prefix}t"))?.to_scalar::<i64>()?;
        self.t = u64::try_from(t).map_err(candle_core::Error::wrap)?;
        Ok(())
    }
}

/// How the learning rate moves over training.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LrSchedule {
    /// Cosine decay to 0 over the run (FD-SM App. C.2).
    #[default]
    Cosine,
    /// The base rate throughout (the GRBM experiments of BiSM and VaGES).
    Constant,
}

impl LrSchedule {
    /// The rate at `step` of `total` for base rate `base`.
    pub fn lr(self, base: f64, step: u64, total: u64) -> f64 {
        match self {
            LrSchedule::Cosine => cosine_lr(base, step, total),
            LrSchedule::Constant => base,
        }
    }
}

/// Cosine decay from `base` at step 0 to 0 at `total` (FD-SM App. C.2).
pub fn cosine_lr(base: f64, step: u64, total: u64) -> f64 {
    if total == 0 {
        return base;
    }
    let progress = (step.min(total) as f64) / total as f64;
    base * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
}

/// Scales all gradients by `min(1, max_norm / norm)` and returns the norm before clipping.
pub fn clip_grad_norm(grads: &mut GradStore, vars: &[Var], max_norm: Option<f64>) -> Result<f64> {
    let mut total = 0.0;
    for v in vars {
        if let Some(g) = grads.get(v.as_tensor()) {
            total += g
                .sqr()?
                .sum_all()?
                .to_dtype(candle_core::DType::F64)?
                .to_scalar::<f64>()?;
        }
    }
    let norm = total.sqrt();
    if let Some(max) = max_norm {
        if norm.is_finite() && norm > max {
            let scale = max / norm;
            for v in vars {
                if let Some(g) = grads.remove(v.as_tensor()) {
                    grads.insert(v.as_tensor(), (g.detach() * scale)?);
                }
            }
        }
    }
    Ok(norm)
}

#[cfg(test)]
mod tests {
    use super::{composed_update, update_in_place, Coefficients};
    use crate::optim::AdamConfig;
    use candle_core::{DType, Device, Result, Tensor};

    /// Deterministic values spread over `[-scale, scale]`, zeros included.
    fn values(n: usize, seed: u64, scale: f64) -> Vec<f64> {
        (0..n as u64)
            .map(|i| {
                let h = (i + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ seed;
                let unit = (h % 2001) as f64 / 1000.0 - 1.0;
                unit * scale
            })
            .collect()
    }

    /// The in-place CPU pass equals the Candle-op update bit for bit, in f32 and f64, over
    /// several steps (the bias corrections change with `t`) and on a tensor of several chunks
    /// with a ragged last one. The oracle is the composed update, Adam's formula in Candle ops.
    #[test]
    fn update_in_place_equals_the_composed_update_exactly() -> Result<()> {
        let n = 3 * super::ADAM_CHUNK + 123;
        for dtype in [DType::F32, DType::F64] {
            let tensor = |seed: u64, scale: f64| {
                Tensor::from_vec(values(n, seed, scale), (n / 3, 3), &Device::Cpu)?.to_dtype(dtype)
            };
            let p_a = tensor(1, 1.0)?;
            let (m_a, v_a) = (p_a.zeros_like()?, p_a.zeros_like()?);
            let mut p_b = tensor(1, 1.0)?;
            let (mut m_b, mut v_b) = (p_b.zeros_like()?, p_b.zeros_like()?);
            for t in 1..=4u64 {
                let g = tensor(10 + t, 0.01)?;
                let k = Coefficients::new(AdamConfig::default(), t, 1e-3, true);
                assert!(update_in_place(&p_a, &g, &m_a, &v_a, &k)?, "a CPU tensor");
                (p_b, m_b, v_b) = composed_update(&p_b, &g, &m_b, &v_b, &k)?;
                for (name, a, b) in [("p", &p_a, &p_b), ("m", &m_a, &m_b), ("v", &v_a, &v_b)] {
                    let (a, b) = (
                        a.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?,
                        b.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?,
                    );
                    let differing = a.iter().zip(&b).filter(|(x, y)| x.to_bits() != y.to_bits());
                    assert_eq!(differing.count(), 0, "{dtype:?} step {t}: {name} differs");
                }
            }
            // The parameters moved: the check compared real updates.
            let moved = (&p_a - tensor(1, 1.0)?)?.abs()?.max_all()?;
            assert!(moved.to_dtype(DType::F64)?.to_scalar::<f64>()? > 1e-4);
        }
        Ok(())
    }

    /// Non-contiguous operands, and operands sharing storage (which one pass cannot both read
    /// and write), take the composed path: `update_in_place` declines them and changes nothing.
    #[test]
    fn update_in_place_declines_strided_and_shared_tensors() -> Result<()> {
        let k = Coefficients::new(AdamConfig::default(), 1, 1e-3, true);
        let strided = Tensor::zeros((4, 6), DType::F32, &Device::Cpu)?.t()?;
        let g = Tensor::ones((6, 4), DType::F32, &Device::Cpu)?;
        let (m, v) = (g.zeros_like()?, g.zeros_like()?);
        assert!(!update_in_place(&strided, &g, &m, &v, &k)?);
        let p = Tensor::ones((6, 4), DType::F32, &Device::Cpu)?;
        let shared = m.clone();
        assert!(!update_in_place(&p, &g, &m, &shared, &k)?);
        assert!(!update_in_place(&p, &g, &m, &g, &k)?);
        let untouched = |t: &Tensor, value: f32| -> Result<bool> {
            Ok(t.flatten_all()?
                .to_vec1::<f32>()?
                .iter()
                .all(|&x| x == value))
        };
        assert!(untouched(&p, 1.0)? && untouched(&m, 0.0)? && untouched(&g, 1.0)?);
        assert!(update_in_place(&p, &g, &m, &v, &k)?);
        assert!(!untouched(&p, 1.0)? && !untouched(&m, 0.0)?);
        Ok(())
    }
}
