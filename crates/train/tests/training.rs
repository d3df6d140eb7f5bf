//! The shared training library: Adam against its update rule computed by hand, the cosine
//! schedule and clipping in closed form, exact resume (bit-identical parameters), the divergence
//! guard keeping the last good checkpoint, refusing another run's checkpoint, and an
//! experiment's own state carried through a pause and a resume.

use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{Module, VarBuilder, VarMap};
use sm_objectives::{fd_ssm, BatchMode, Directions, NoiseSource, Reduction};
use train::optim::{clip_grad_norm, cosine_lr, Adam, AdamConfig, LrSchedule, RmsPropConfig};
use train::trainer::{named_vars, train, train_with_state, TrainOptions, TrainState};
use train::{checkpoint, step_seed, TrainError};

#[test]
fn adam_follows_its_update_rule() {
    let x = Var::new(&[1.0f64, -2.0], &Device::Cpu).unwrap();
    let cfg = AdamConfig {
        beta1: 0.9,
        beta2: 0.95,
        eps: 1e-8,
    };
    let mut adam = Adam::new(vec![x.clone()], cfg).unwrap();
    // Loss sum(x^3): gradient 3 x^2.
    let (mut m, mut v, mut p) = ([0.0f64; 2], [0.0f64; 2], [1.0f64, -2.0]);
    for t in 1..=3 {
        let grads = x
            .as_tensor()
            .powf(3.0)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        adam.step_with_lr(&grads, 0.1).unwrap();
        for i in 0..2 {
            let g = 3.0 * p[i] * p[i];
            m[i] = 0.9 * m[i] + 0.1 * g;
            v[i] = 0.95 * v[i] + 0.05 * g * g;
            let mh = m[i] / (1.0 - 0.9f64.powi(t));
            let vh = v[i] / (1.0 - 0.95f64.powi(t));
            p[i] -= 0.1 * mh / (vh.sqrt() + 1e-8);
        }
        let got = x.as_tensor().to_vec1::<f64>().unwrap();
        for i in 0..2 {
            assert!((got[i] - p[i]).abs() < 1e-12, "step {t}: {got:?} vs {p:?}");
        }
    }
    assert_eq!(adam.t, 3);
}

#[test]
fn rmsprop_follows_pytorchs_update_rule() {
    let x = Var::new(&[1.0f64, -2.0], &Device::Cpu).unwrap();
    let cfg = RmsPropConfig {
        alpha: 0.9,
        eps: 1e-8,
    };
    let mut opt = Adam::rmsprop(vec![x.clone()], cfg).unwrap();
    // Loss sum(x^3): gradient 3 x^2; PyTorch's RMSprop without momentum or centring.
    let (mut v, mut p) = ([0.0f64; 2], [1.0f64, -2.0]);
    for t in 1..=4 {
        let grads = x
            .as_tensor()
            .powf(3.0)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        opt.step_with_lr(&grads, 0.05).unwrap();
        for i in 0..2 {
            let g = 3.0 * p[i] * p[i];
            v[i] = 0.9 * v[i] + 0.1 * g * g;
            p[i] -= 0.05 * g / (v[i].sqrt() + 1e-8);
        }
        let got = x.as_tensor().to_vec1::<f64>().unwrap();
        for i in 0..2 {
            assert!((got[i] - p[i]).abs() < 1e-12, "step {t}: {got:?} vs {p:?}");
        }
    }
    for bad in [
        RmsPropConfig {
            alpha: 1.0,
            eps: 1e-8,
        },
        RmsPropConfig {
            alpha: 0.99,
            eps: f64::NAN,
        },
    ] {
        let err = Adam::rmsprop(vec![x.clone()], bad).unwrap_err().to_string();
        assert!(err.contains("RMSProp needs"), "{err}");
    }
}

#[test]
fn cosine_schedule_and_clipping_in_closed_form() {
    assert_eq!(cosine_lr(1.0, 0, 100), 1.0);
    assert!((cosine_lr(1.0, 50, 100) - 0.5).abs() < 1e-15);
    assert!(cosine_lr(1.0, 100, 100).abs() < 1e-15);
    assert!((cosine_lr(2.0, 25, 100) - (1.0 + std::f64::consts::FRAC_PI_4.cos())).abs() < 1e-12);
    let a = Var::new(&[3.0f64], &Device::Cpu).unwrap();
    let b = Var::new(&[4.0f64], &Device::Cpu).unwrap();
    let loss = ((a.as_tensor() * 3.0).unwrap() + (b.as_tensor() * 4.0).unwrap())
        .unwrap()
        .sum_all()
        .unwrap();
    let mut grads = loss.backward().unwrap();
    let norm = clip_grad_norm(&mut grads, &[a.clone(), b.clone()], Some(1.0)).unwrap();
    assert!((norm - 5.0).abs() < 1e-12, "norm of (3, 4)");
    let ga = grads.get(a.as_tensor()).unwrap().to_vec1::<f64>().unwrap()[0];
    let gb = grads.get(b.as_tensor()).unwrap().to_vec1::<f64>().unwrap()[0];
    assert!((ga - 0.6).abs() < 1e-12 && (gb - 0.8).abs() < 1e-12);
}

/// A small log-density `-|W2 softplus(W1 x)|^2` on `[B, 6]` data.
struct Tiny {
    l1: candle_nn::Linear,
    l2: candle_nn::Linear,
}

impl sm_objectives::LogDensity for Tiny {
    fn log_density(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let h = layers::softplus(&self.l1.forward(x)?)?;
        self.l2.forward(&h)?.sqr()?.sum(1)?.neg()
    }
}

fn tiny(seed: u64) -> (VarMap, Tiny) {
    let vm = VarMap::new();
    let vb = VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu);
    let net = Tiny {
        l1: candle_nn::linear(6, 8, vb.pp("l1")).unwrap(),
        l2: candle_nn::linear(8, 3, vb.pp("l2")).unwrap(),
    };
    // Deterministic parameters from our seeded generator.
    let mut noise = NoiseSource::new(seed);
    for v in named_vars(&vm).1 {
        v.set(&(noise.gaussian_like(v.as_tensor()).unwrap() * 0.3).unwrap())
            .unwrap();
    }
    (vm, net)
}

fn options(dir: &std::path::Path, iters: u64, lr: f64) -> TrainOptions {
    TrainOptions {
        iters,
        lr,
        schedule: LrSchedule::Cosine,
        adam: AdamConfig::default(),
        rmsprop: None,
        clip: Some(1.0),
        checkpoint: Some(dir.join("ckpt.safetensors")),
        checkpoint_every: 2,
        resume: true,
        stop_after: None,
        explode_threshold: 1e6,
        progress: false,
        label: "test".into(),
        config_json: "{\"test\":1}".into(),
    }
}

fn loss_fn<'a>(
    net: &'a Tiny,
    data: &Tensor,
) -> impl FnMut(u64) -> candle_core::Result<Tensor> + 'a {
    let data = data.clone();
    move |step| {
        let mut noise = NoiseSource::new(step_seed(7, step));
        let x = (&data + (noise.gaussian_like(&data)? * 0.1)?)?;
        let proj = noise.projection(&x, Directions::Sphere { radius: 0.1 })?;
        fd_ssm(net, &x, &proj, BatchMode::Concatenated, Reduction::Mean)
    }
}

fn tmp(name: &str) -> PathBuf {
    let d =
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn params(vm: &VarMap) -> Vec<Vec<f32>> {
    named_vars(vm)
        .1
        .iter()
        .map(|v| {
            v.as_tensor()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
        })
        .collect()
}

#[test]
fn resume_continues_to_bit_identical_parameters() {
    let data = seeded_data();
    // Straight through: 7 steps.
    let dir_a = tmp("straight");
    let (vm_a, net_a) = tiny(1);
    let summary = train(
        &vm_a,
        &options(&dir_a, 7, 0.01),
        &mut loss_fn(&net_a, &data),
        &mut |_| Ok(()),
    )
    .unwrap();
    assert_eq!(summary.records.len(), 7);
    assert!(
        summary.records.last().unwrap().loss < summary.records[0].loss,
        "training reduces the loss"
    );
    // Interrupted after 4 steps (the checkpoint holds step 4), then resumed by a fresh process.
    let dir_b = tmp("resumed");
    let (vm_b, net_b) = tiny(1);
    let stop = train(
        &vm_b,
        &options(&dir_b, 7, 0.01),
        &mut loss_fn(&net_b, &data),
        &mut |r| {
            if r.step == 4 {
                Err(TrainError::Config("simulated interruption".into()))
            } else {
                Ok(())
            }
        },
    );
    assert!(stop.is_err());
    let meta = checkpoint::load(&dir_b.join("ckpt.safetensors"), &Device::Cpu)
        .unwrap()
        .meta;
    assert_eq!(meta.step, 4);
    let (vm_c, net_c) = tiny(99); // different initial values: everything must come from the checkpoint
    let resumed = train(
        &vm_c,
        &options(&dir_b, 7, 0.01),
        &mut loss_fn(&net_c, &data),
        &mut |_| Ok(()),
    )
    .unwrap();
    assert_eq!(resumed.resumed_from, Some(4));
    assert_eq!(resumed.records.len(), 3);
    assert_eq!(
        params(&vm_a),
        params(&vm_c),
        "resumed parameters differ from the uninterrupted run"
    );
    assert!(!dir_b.join("ckpt.safetensors.tmp").exists());
}

#[test]
fn divergence_stops_with_the_last_good_checkpoint_kept() {
    let data = seeded_data();
    let dir = tmp("diverge");
    let (vm, net) = tiny(2);
    let mut opts = options(&dir, 10, 0.01);
    let mut inner = loss_fn(&net, &data);
    let mut loss_at = |step: u64| -> candle_core::Result<Tensor> {
        let l = inner(step)?;
        if step == 5 {
            l * f64::NAN
        } else {
            Ok(l)
        }
    };
    let err = train(&vm, &opts, &mut loss_at, &mut |_| Ok(())).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, TrainError::Diverged { step: 5, .. }), "{msg}");
    assert!(msg.contains("step 4") && msg.contains("intact"), "{msg}");
    assert_eq!(
        checkpoint::load(
            opts.checkpoint.as_deref().expect("checkpointed"),
            &Device::Cpu
        )
        .unwrap()
        .meta
        .step,
        4
    );
    // Another configuration refuses the checkpoint instead of silently mixing runs.
    opts.config_json = "{\"test\":2}".into();
    let err = train(&vm, &opts, &mut loss_fn(&net, &data), &mut |_| Ok(())).unwrap_err();
    assert!(err.to_string().contains("different configuration"), "{err}");
    // Bad options are refused up front.
    let bad = TrainOptions {
        iters: 0,
        ..options(&dir, 10, 0.01)
    };
    assert!(matches!(
        train(&vm, &bad, &mut loss_fn(&net, &data), &mut |_| Ok(())),
        Err(TrainError::Config(_))
    ));
}

/// Fixed training data, so that every run of the tests sees the same problem.
fn seeded_data() -> Tensor {
    NoiseSource::new(11)
        .gaussian((16, 6), DType::F32, &Device::Cpu)
        .unwrap()
}

/// A state carried across steps: a tensor that each step's loss reads and updates, and the
/// losses seen so far.
#[derive(Debug)]
struct Carried {
    scale: Tensor,
    losses: Vec<f64>,
}

impl TrainState for Carried {
    fn tensors(&self) -> train::Result<Vec<(String, Tensor)>> {
        Ok(vec![("scale".into(), self.scale.clone())])
    }

    fn json(&self) -> train::Result<serde_json::Value> {
        Ok(serde_json::json!(self.losses))
    }

    fn restore(
        &mut self,
        tensors: &HashMap<String, Tensor>,
        json: &serde_json::Value,
    ) -> train::Result<()> {
        self.scale = tensors["scale"].clone();
        self.losses = serde_json::from_value(json.clone()).unwrap();
        Ok(())
    }
}

#[test]
fn stop_after_and_resume_carry_the_experiments_state() {
    let data = seeded_data();
    let run = |dir: &std::path::Path, seed: u64, stop_after: Option<u64>| {
        let (vm, net) = tiny(seed);
        let mut inner = loss_fn(&net, &data);
        let mut state = Carried {
            scale: Tensor::new(1f32, &Device::Cpu).unwrap(),
            losses: Vec::new(),
        };
        let opts = TrainOptions {
            stop_after,
            ..options(dir, 7, 0.01)
        };
        let summary = train_with_state(
            &vm,
            &opts,
            &mut state,
            &mut |step, st: &mut Carried| {
                // The loss depends on the carried state, which every step changes.
                st.scale = (&st.scale * 1.1)?;
                inner(step)?.broadcast_mul(&st.scale)
            },
            &mut |r, st| {
                st.losses.push(r.loss);
                Ok::<(), TrainError>(())
            },
        )
        .unwrap();
        (summary, state, params(&vm))
    };
    let (dir_a, dir_b) = (tmp("carried-straight"), tmp("carried-paused"));
    let (whole, state_a, params_a) = run(&dir_a, 3, None);
    assert_eq!(whole.completed, 7);
    // Paused after step 3 (checkpoints fall at 2, 4, 6: the pause writes its own).
    let (paused, _, _) = run(&dir_b, 3, Some(3));
    assert_eq!((paused.completed, paused.records.len()), (3, 3));
    let meta = checkpoint::load(&dir_b.join("ckpt.safetensors"), &Device::Cpu)
        .unwrap()
        .meta;
    assert_eq!(meta.step, 3);
    let (resumed, state_b, params_b) = run(&dir_b, 50, None);
    assert_eq!((resumed.resumed_from, resumed.completed), (Some(3), 7));
    assert_eq!(params_a, params_b);
    assert_eq!(state_a.losses, state_b.losses);
    assert_eq!(
        state_a.scale.to_scalar::<f32>().unwrap(),
        state_b.scale.to_scalar::<f32>().unwrap()
    );
    assert!((state_b.scale.to_scalar::<f32>().unwrap() - 1.1f32.powi(7)).abs() < 1e-5);
}

#[test]
fn adam_state_round_trips_through_named_tensors() {
    let cfg = AdamConfig::default();
    let loss = |x: &Var| x.as_tensor().powf(3.0).unwrap().sum_all().unwrap();
    let x = Var::new(&[1.0f64, -2.0, 0.5], &Device::Cpu).unwrap();
    let mut adam = Adam::new(vec![x.clone()], cfg).unwrap();
    for _ in 0..2 {
        adam.step_with_lr(&loss(&x).backward().unwrap(), 0.1)
            .unwrap();
    }
    let saved: HashMap<String, Tensor> = adam.state_tensors("q/").unwrap().into_iter().collect();
    // A fresh optimiser over a fresh variable takes over the state exactly.
    let y = Var::new(&[9.0f64, 9.0, 9.0], &Device::Cpu).unwrap();
    let mut other = Adam::new(vec![y.clone()], cfg).unwrap();
    other.load_state("q/", &saved).unwrap();
    assert_eq!(other.t, 2);
    let snapshot = |key: &str| saved[key].to_vec1::<f64>().unwrap();
    let before = ["q/param/0", "q/m/0", "q/v/0"].map(snapshot);
    adam.step_with_lr(&loss(&x).backward().unwrap(), 0.1)
        .unwrap();
    // The saved state is a copy: the step, which updates in place, left it as it was.
    assert_eq!(["q/param/0", "q/m/0", "q/v/0"].map(snapshot), before);
    assert_ne!(x.as_tensor().to_vec1::<f64>().unwrap(), before[0]);
    other
        .step_with_lr(&loss(&y).backward().unwrap(), 0.1)
        .unwrap();
    assert_eq!(
        x.as_tensor().to_vec1::<f64>().unwrap(),
        y.as_tensor().to_vec1::<f64>().unwrap()
    );
    // A state of another shape or under another prefix is refused with its name.
    let z = Var::new(&[0.0f64, 0.0], &Device::Cpu).unwrap();
    let err = Adam::new(vec![z], cfg)
        .unwrap()
        .load_state("q/", &saved)
        .unwrap_err();
    assert!(err.to_string().contains("q/param/0"), "{err}");
    let err = other.load_state("p/", &saved).unwrap_err();
    assert!(err.to_string().contains("p/param/0"), "{err}");
}

/// A checkpoint whose tensor data changed on disk (one byte flipped) is refused with an
/// explanation, and training does not resume from it; the intact file loads.
#[test]
fn a_corrupted_checkpoint_is_refused() {
    let data = seeded_data();
    let dir = tmp("corrupted");
    let (vm, net) = tiny(1);
    let mut opts = options(&dir, 4, 0.01);
    opts.stop_after = Some(2);
    train(&vm, &opts, &mut loss_fn(&net, &data), &mut |_| Ok(())).unwrap();
    let path = dir.join("ckpt.safetensors");
    checkpoint::load(&path, &Device::Cpu).expect("the intact checkpoint loads");
    let mut bytes = std::fs::read(&path).unwrap();
    let header = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let last = bytes.len() - 1;
    assert!(last > 8 + header, "the file has a data section");
    bytes[last] ^= 0x01;
    std::fs::write(&path, &bytes).unwrap();
    let err = checkpoint::load(&path, &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("SHA-256") && err.contains("ckpt.safetensors"),
        "{err}"
    );
    let (vm2, net2) = tiny(1);
    let resumed = train(
        &vm2,
        &options(&dir, 4, 0.01),
        &mut loss_fn(&net2, &data),
        &mut |_| Ok(()),
    );
    let err = resumed
        .expect_err("resumed from a corrupted checkpoint")
        .to_string();
    assert!(err.contains("SHA-256"), "{err}");
}

/// A state that asks to stop once it has seen `after` steps (early stopping's shape).
#[derive(Default)]
struct StopAfter {
    seen: u64,
    after: u64,
}

impl train::trainer::TrainState for StopAfter {
    fn tensors(&self) -> train::Result<Vec<(String, Tensor)>> {
        Ok(Vec::new())
    }
    fn json(&self) -> train::Result<serde_json::Value> {
        Ok(serde_json::json!(self.seen))
    }
    fn restore(
        &mut self,
        _: &std::collections::HashMap<String, Tensor>,
        json: &serde_json::Value,
    ) -> train::Result<()> {
        self.seen = json.as_u64().unwrap_or(0);
        Ok(())
    }
    fn stop_requested(&self) -> bool {
        self.seen >= self.after
    }
}

#[test]
fn a_state_can_stop_training_early_and_a_resume_stays_stopped() {
    let data = seeded_data();
    let dir = tmp("early-stop");
    let (vm, net) = tiny(3);
    let mut loss = loss_fn(&net, &data);
    let mut state = StopAfter { seen: 0, after: 3 };
    let summary = train::train_with_state(
        &vm,
        &options(&dir, 10, 0.01),
        &mut state,
        &mut |step, _| loss(step),
        &mut |_, s: &mut StopAfter| -> Result<(), TrainError> {
            s.seen += 1;
            Ok(())
        },
    )
    .unwrap();
    assert_eq!((summary.completed, summary.stopped_early), (3, true));
    assert_eq!(summary.records.len(), 3);
    // The stop step is checkpointed (checkpoint_every is 2, so only because of the stop).
    let meta = checkpoint::load(&dir.join("ckpt.safetensors"), &Device::Cpu)
        .unwrap()
        .meta;
    assert_eq!(meta.step, 3);
    let before = params(&vm);
    // Resumed, the restored state still asks to stop: no step is trained.
    let (vm2, net2) = tiny(4);
    let mut loss2 = loss_fn(&net2, &data);
    let mut state2 = StopAfter { seen: 0, after: 3 };
    let again = train::train_with_state(
        &vm2,
        &options(&dir, 10, 0.01),
        &mut state2,
        &mut |step, _| loss2(step),
        &mut |_, s: &mut StopAfter| -> Result<(), TrainError> {
            s.seen += 1;
            Ok(())
        },
    )
    .unwrap();
    assert_eq!(
        (again.records.len(), again.completed, again.stopped_early),
        (0, 3, true)
    );
    assert_eq!(params(&vm2), before);
}
