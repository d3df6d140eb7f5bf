//! Adam (Kingma and Ba 2015) with its moments exposed for checkpointing (candle-nn's `AdamW`
//! keeps them private), RMSProp as its special case (no first moment, no bias correction; the
//! implicit-encoder autoencoders of FD-SM Table 6 use it), the cosine learning-rate schedule and global-norm gradient clipping of
//! the deep-EBM runs (FD-SM App. C.2: Adam (0.9, 0.95), cosine to 0, clip 0.1).

use std::collections::HashMap;

use candle_core::backprop::GradStore;
use candle_core::{Result, Tensor, Var};
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
    /// First moments, one per variable.
    pub m: Vec<Tensor>,
    /// Second moments, one per variable.
    pub v: Vec<Tensor>,
}

impl Adam {
    /// Fresh state (zero moments) for `vars`.
    pub fn new(vars: Vec<Var>, config: AdamConfig) -> Result<Self> {
        let m = vars
            .iter()
            .map(|v| v.as_tensor().zeros_like())
            .collect::<Result<Vec<_>>>()?;
        let v = m.clone();
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

    /// One update with learning rate `lr`. A variable without a gradient in `grads` (one the
    /// loss does not depend on) is skipped: its value and moments stay as they are, as in
    /// PyTorch. The bias corrections use the optimiser's step count `t`, which every call
    /// advances (PyTorch counts per parameter; the two differ only for parameters that miss
    /// steps).
    ///
    /// On the CPU (f32 or f64, contiguous) each variable is updated in one multithreaded pass;
    /// elsewhere by Candle ops. Both do the same floating-point operations in the same order,
    /// so the results are identical.
    pub fn step_with_lr(&mut self, grads: &GradStore, lr: f64) -> Result<()> {
        self.t += 1;
        let k = Coefficients::new(self.config, self.t, lr, self.bias_correction);
        for (i, var) in self.vars.iter().enumerate() {
            let Some(g) = grads.get(var.as_tensor()) else {
                continue;
            };
            let g = g.detach();
            let p = var.as_tensor();
            let (p, m, v) = match fused_update(p, &g, &self.m[i], &self.v[i], &k)? {
                Some(updated) => updated,
                None => composed_update(p, &g, &self.m[i], &self.v[i], &k)?,
            };
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

/// [`composed_update`] in one pass over the elements, in parallel chunks, on CPU tensors of
/// one float dtype with contiguous layouts; `None` for anything else. Every scalar operation
/// is Candle's (scalars multiplied as `x * mul + add` in the element type, as its `affine`
/// does), in the same order, so the results equal the composed update's bit for bit (a test
/// checks it): one pass instead of about twelve, most of which Candle runs on one thread.
fn fused_update(
    p: &Tensor,
    g: &Tensor,
    m: &Tensor,
    v: &Tensor,
    k: &Coefficients,
) -> Result<Option<(Tensor, Tensor, Tensor)>> {
    use candle_core::{CpuStorage, Storage};

    fn run<T: AdamFloat>([p, g, m, v]: [&[T]; 4], k: &Coefficients) -> (Vec<T>, Vec<T>, Vec<T>) {
        use layers::cpu::{par_build_in_order, vectorised};
        let (b1, one_b1) = (T::of(k.beta1), T::of(1.0 - k.beta1));
        let (b2, one_b2) = (T::of(k.beta2), T::of(1.0 - k.beta2));
        let (inv_c1, inv_c2) = (T::of(k.inv_c1), T::of(k.inv_c2));
        let (one, eps, lr, zero) = (T::of(1.0), T::of(k.eps), T::of(k.lr), T::of(0.0));
        // Three passes over fixed chunks, each written straight into a fresh vector (no
        // zero-filling) by a loop compiled for the CPU's widest vector unit; one pass unzipping
        // into three vectors stayed scalar and took a sixth of a small network's step.
        let n = p.len();
        fn chunk<T>(s: &[T], i: usize, w: usize) -> &[T] {
            &s[i * ADAM_CHUNK..][..w]
        }
        let m2: Vec<T> = par_build_in_order(n, ADAM_CHUNK, 1, |i, out| {
            let w = out.capacity();
            let (m, g) = (chunk(m, i, w), chunk(g, i, w));
            vectorised(|| out.extend_map2(m, g, |m, g| (m * b1 + zero) + (g * one_b1 + zero)));
        });
        let v2: Vec<T> = par_build_in_order(n, ADAM_CHUNK, 1, |i, out| {
            let w = out.capacity();
            let (v, g) = (chunk(v, i, w), chunk(g, i, w));
            vectorised(|| {
                out.extend_map2(v, g, |v, g| (v * b2 + zero) + ((g * g) * one_b2 + zero));
            });
        });
        let p2: Vec<T> = par_build_in_order(n, ADAM_CHUNK, 1, |i, out| {
            let w = out.capacity();
            let (p, m, v) = (chunk(p, i, w), chunk(&m2, i, w), chunk(&v2, i, w));
            vectorised(|| {
                out.extend_map3(p, m, v, |p, m, v| {
                    let m_hat = m * inv_c1 + zero;
                    let v_hat = v * inv_c2 + zero;
                    let update = m_hat / (v_hat.sqrt() * one + eps);
                    p - (update * lr + zero)
                });
            });
        });
        (p2, m2, v2)
    }

    let tensors = [p, g, m, v];
    let same = layers::portable::cpu_kernels_enabled()
        && tensors
            .iter()
            .all(|t| t.device().is_cpu() && t.dtype() == p.dtype() && t.dims() == p.dims());
    if !same {
        return Ok(None);
    }
    let guards = tensors.map(|t| t.storage_and_layout());
    let mut slices_f32: Vec<&[f32]> = Vec::with_capacity(4);
    let mut slices_f64: Vec<&[f64]> = Vec::with_capacity(4);
    for (storage, layout) in &guards {
        let Some((start, end)) = layout.contiguous_offsets() else {
            return Ok(None);
        };
        match &**storage {
            Storage::Cpu(CpuStorage::F32(data)) => slices_f32.push(&data[start..end]),
            Storage::Cpu(CpuStorage::F64(data)) => slices_f64.push(&data[start..end]),
            _ => return Ok(None),
        }
    }
    let (shape, dev) = (p.shape(), p.device());
    let out = if let Ok(slices) = <[&[f32]; 4]>::try_from(slices_f32) {
        let (p, m, v) = run(slices, k);
        (
            Tensor::from_vec(p, shape, dev)?,
            Tensor::from_vec(m, shape, dev)?,
            Tensor::from_vec(v, shape, dev)?,
        )
    } else if let Ok(slices) = <[&[f64]; 4]>::try_from(slices_f64) {
        let (p, m, v) = run(slices, k);
        (
            Tensor::from_vec(p, shape, dev)?,
            Tensor::from_vec(m, shape, dev)?,
            Tensor::from_vec(v, shape, dev)?,
        )
    } else {
        return Ok(None);
    };
    Ok(Some(out))
}

impl Adam {
    /// The variables' values, the moments and `t` as named tensors (`<prefix>param/<i>`,
    /// `<prefix>m/<i>`, `<prefix>v/<i>`, `<prefix>t`), for a checkpoint.
    pub fn state_tensors(&self, prefix: &str) -> Result<Vec<(String, Tensor)>> {
        let mut out = Vec::with_capacity(3 * self.vars.len() + 1);
        for (i, var) in self.vars.iter().enumerate() {
            out.push((format!("{prefix}param/{i}"), var.as_tensor().detach()));
            out.push((format!("{prefix}m/{i}"), self.m[i].clone()));
            out.push((format!("{prefix}v/{i}"), self.v[i].clone()));
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
            self.m[i] = m.to_dtype(var.dtype())?;
            self.v[i] = v.to_dtype(var.dtype())?;
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
    use super::{composed_update, fused_update, Coefficients};
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

    /// The fused CPU pass equals the Candle-op update bit for bit, in f32 and f64, over
    /// several steps (the bias corrections change with `t`) and on a tensor of several chunks
    /// with a ragged last one. The oracle is the composed update, Adam's formula in Candle ops.
    #[test]
    fn fused_update_equals_the_composed_update_exactly() -> Result<()> {
        let n = 3 * super::ADAM_CHUNK + 123;
        for dtype in [DType::F32, DType::F64] {
            let tensor = |seed: u64, scale: f64| {
                Tensor::from_vec(values(n, seed, scale), (n / 3, 3), &Device::Cpu)?.to_dtype(dtype)
            };
            let (mut p_a, mut p_b) = (tensor(1, 1.0)?, tensor(1, 1.0)?);
            let zeros = p_a.zeros_like()?;
            let (mut m_a, mut v_a) = (zeros.clone(), zeros.clone());
            let (mut m_b, mut v_b) = (zeros.clone(), zeros);
            for t in 1..=4u64 {
                let g = tensor(10 + t, 0.01)?;
                let k = Coefficients::new(AdamConfig::default(), t, 1e-3, true);
                let fused = fused_update(&p_a, &g, &m_a, &v_a, &k)?.expect("a CPU tensor");
                let composed = composed_update(&p_b, &g, &m_b, &v_b, &k)?;
                (p_a, m_a, v_a) = fused;
                (p_b, m_b, v_b) = composed;
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

    /// Non-contiguous operands take the composed path: `fused_update` declines them.
    #[test]
    fn fused_update_declines_strided_tensors() -> Result<()> {
        let p = Tensor::zeros((4, 6), DType::F32, &Device::Cpu)?.t()?;
        let k = Coefficients::new(AdamConfig::default(), 1, 1e-3, true);
        assert!(fused_update(&p, &p, &p, &p, &k)?.is_none());
        Ok(())
    }
}
