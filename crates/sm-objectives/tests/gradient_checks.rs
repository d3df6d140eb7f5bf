//! Parameter gradients of every objective (autodiff, through second derivatives where the
//! objective has them) against central differences of the loss, in f64, on an MLP and a small
//! conv net with ELU and softplus activations and on a noise-conditional score network.

mod common;

use candle_core::{Result, Tensor};
use common::*;
use sm_objectives::autodiff::enable_higher_order;
use sm_objectives::{
    annealed_dsm, annealed_fd_ssmvr, annealed_ssmvr, dsm, fd_dsm, fd_mdsm, fd_ssm, fd_ssmvr, mdsm,
    sliced_dsm, sm_exact, ssm, ssmvr, ssmvr_score, BatchMode, Directions, Graph, LogDensity,
    NoiseLevels, NoiseSource, Reduction,
};

const M: Reduction = Reduction::Mean;

/// Seed of the weights every check runs on.
const SEED: u64 = 7;

type Objective = fn(&dyn LogDensity, &Inputs) -> Result<Tensor>;

struct Inputs {
    x: Tensor,
    z: Tensor,
    sigmas: Tensor,
    proj: sm_objectives::Projection,
    gauss_proj: sm_objectives::Projection,
}

fn inputs(x: Tensor) -> Inputs {
    let mut noise = NoiseSource::new(5);
    let z = noise.gaussian_like(&x).unwrap();
    let b = x.dim(0).unwrap();
    let sigmas = Tensor::new(
        sm_objectives::noise::linear_sigmas(0.05, 1.2, b)
            .unwrap()
            .as_slice(),
        &DEV,
    )
    .unwrap();
    let proj = noise
        .projection(&x, Directions::Sphere { radius: 0.05 })
        .unwrap();
    let gauss_proj = noise.projection(&x, Directions::Rademacher).unwrap();
    Inputs {
        x,
        z,
        sigmas,
        proj,
        gauss_proj,
    }
}

fn log_density_objectives() -> Vec<(&'static str, Objective)> {
    vec![
        ("exact SM", |md, i| sm_exact(md, &i.x, Graph::Keep, M)),
        ("SSM", |md, i| ssm(md, &i.x, &i.gauss_proj, M)),
        ("SSMVR", |md, i| ssmvr(md, &i.x, &i.gauss_proj, M)),
        ("DSM", |md, i| dsm(md, &i.x, &i.z, 0.3, M)),
        ("sliced DSM", |md, i| {
            sliced_dsm(md, &i.x, &i.z, 0.3, &i.proj, M)
        }),
        ("MDSM", |md, i| mdsm(md, &i.x, &i.z, &i.sigmas, 0.1, M)),
        ("FD-SSM", |md, i| {
            fd_ssm(md, &i.x, &i.proj, BatchMode::Concatenated, M)
        }),
        ("FD-SSM*", |md, i| {
            fd_ssm(md, &i.x, &i.proj, BatchMode::PerOffset, M)
        }),
        ("FD-DSM", |md, i| {
            fd_dsm(md, &i.x, &i.z, 0.3, &i.proj, BatchMode::Concatenated, M)
        }),
        ("FD-MDSM", |md, i| {
            fd_mdsm(
                md,
                &i.x,
                &i.z,
                &i.sigmas,
                0.1,
                &i.proj,
                BatchMode::Concatenated,
                M,
            )
        }),
    ]
}

fn check_all(model: &dyn LogDensity, vm: &candle_nn::VarMap, inp: &Inputs, label: &str) {
    for (name, objective) in log_density_objectives() {
        let worst = max_param_grad_error(vm, 3, &|| objective(model, inp))
            .unwrap_or_else(|e| panic!("{label}, {name}: {e}"));
        assert!(worst < 1e-4, "{label}, {name}: relative error {worst}");
    }
}

#[test]
fn mlp_parameter_gradients_match_central_differences() {
    enable_higher_order().expect("Candle's higher-order mode");
    for act in [Act::Elu, Act::Softplus] {
        let (vm, vb) = varmap();
        let mlp = Mlp::new(4, 8, act, vb).unwrap();
        reseed(&vm, SEED);
        check_all(
            &mlp,
            &vm,
            &inputs(pattern(3, 4, 0.5)),
            &format!("MLP {act:?}"),
        );
    }
}

#[test]
fn conv_net_parameter_gradients_match_central_differences() {
    enable_higher_order().expect("Candle's higher-order mode");
    for act in [Act::Elu, Act::Softplus] {
        let (vm, vb) = varmap();
        let net = ConvNet::new(act, vb).unwrap();
        reseed(&vm, SEED);
        let x = pattern(2, 16, 2.0).reshape((2, 1, 4, 4)).unwrap();
        check_all(&net, &vm, &inputs(x), &format!("conv net {act:?}"));
    }
}

#[test]
fn score_network_parameter_gradients_match_central_differences() -> Result<()> {
    enable_higher_order().expect("Candle's higher-order mode");
    let (vm, vb) = varmap();
    let net = ScoreMlp::new(4, 8, 3, vb)?;
    reseed(&vm, SEED);
    let inp = inputs(pattern(3, 4, 1.5));
    let idx = Tensor::new(&[2u32, 0, 1], &DEV)?;
    let sigmas = [1.0, 0.3, 0.1];
    let levels = NoiseLevels {
        index: &idx,
        sigmas: &sigmas,
    };
    let m = Reduction::Mean;
    let cases: Vec<NamedLoss> = vec![
        (
            "SSMVR (score)",
            Box::new(|| ssmvr_score(&net, &inp.x, &inp.gauss_proj, m)),
        ),
        (
            "FD-SSMVR",
            Box::new(|| fd_ssmvr(&net, &inp.x, &inp.proj, BatchMode::Concatenated, m)),
        ),
        (
            "annealed DSM",
            Box::new(|| annealed_dsm(&net, &inp.x, &inp.z, levels, m)),
        ),
        (
            "annealed SSMVR",
            Box::new(|| annealed_ssmvr(&net, &inp.x, &inp.z, &inp.gauss_proj, levels, m)),
        ),
        (
            "annealed FD-SSMVR",
            Box::new(|| {
                annealed_fd_ssmvr(
                    &net,
                    &inp.x,
                    &inp.z,
                    &inp.proj,
                    levels,
                    BatchMode::PerOffset,
                    m,
                )
            }),
        ),
    ];
    for (name, loss) in cases {
        let worst = max_param_grad_error(&vm, 3, loss.as_ref())
            .map_err(|e| candle_core::Error::Msg(format!("{name}: {e}")))?;
        assert!(worst < 1e-4, "{name}: relative error {worst}");
    }
    Ok(())
}
