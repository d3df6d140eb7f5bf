//! Adam (Kingma and Ba 2015) with its moments exposed for checkpointing (candle-nn's `AdamW`
//! keeps them private), the cosine learning-rate schedule and global-norm gradient clipping of
//! the deep-EBM runs (FD-SM App. C.2: Adam (0.9, 0.95), cosine to 0, clip 0.1).

use std::collections::HashMap;

use candle_core::backprop::GradStore;
use candle_core::{Result, Tensor, Var};

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

/// Adam over a fixed, ordered list of variables; its state is `(t, m, v)`.
#[derive(Debug)]
pub struct Adam {
    vars: Vec<Var>,
    config: AdamConfig,
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
            t: 0,
            m,
            v,
        })
    }

    /// The variables, in state order.
    pub fn vars(&self) -> &[Var] {
        &self.vars
    }

    /// One update with learning rate `lr`; variables without a gradient are left unchanged
    /// (their moments still decay, as in PyTorch when the gradient is zero).
    pub fn step(&mut self, grads: &GradStore, lr: f64) -> Result<()> {
        self.t += 1;
        let AdamConfig { beta1, beta2, eps } = self.config;
        let c1 = 1.0 - beta1.powi(self.t as i32);
        let c2 = 1.0 - beta2.powi(self.t as i32);
        for (i, var) in self.vars.iter().enumerate() {
            let g = match grads.get(var.as_tensor()) {
                Some(g) => g.detach(),
                None => var.as_tensor().zeros_like()?,
            };
            self.m[i] = ((&self.m[i] * beta1)? + (&g * (1.0 - beta1))?)?.detach();
            self.v[i] = ((&self.v[i] * beta2)? + (g.sqr()? * (1.0 - beta2))?)?.detach();
            let m_hat = (&self.m[i] / c1)?;
            let v_hat = (&self.v[i] / c2)?;
            let update = (m_hat / (v_hat.sqrt()? + eps)?)?;
            var.set(&(var.as_tensor().detach() - (update * lr)?)?)?;
        }
        Ok(())
    }
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
