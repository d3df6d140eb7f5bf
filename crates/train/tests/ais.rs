//! AIS against a marginal likelihood known in closed form: a linear-Gaussian decoder
//! `x | z ~ N(W z + b, s^2 I)` with `z ~ N(0, I)` has `p(x) = N(x; b, W W^T + s^2 I)`, computed
//! here by the matrix determinant lemma and the Woodbury identity (K = 2 latent dimensions).
//! Also the schedule's shape and the refusal of bad settings.

use anyhow::Result;
use candle_core::{DType, Device, Tensor, D};
use sm_objectives::NoiseSource;
use train::ais::{ais_log_marginal, sigmoid_schedule, AisSettings};

const W: [[f64; 2]; 4] = [[1.5, 0.0], [0.5, -1.0], [-0.8, 0.7], [0.2, 1.2]];
const B: [f64; 4] = [0.1, -0.3, 0.5, 0.0];
const S: f64 = 0.4;

/// `log N(x; b, W W^T + s^2 I)` by the determinant lemma and Woodbury with `M = s^2 I + W^T W`.
fn exact_log_marginal(x: &[f64; 4]) -> f64 {
    let s2 = S * S;
    let mut m = [[0.0; 2]; 2];
    for (a, row) in m.iter_mut().enumerate() {
        for (c, v) in row.iter_mut().enumerate() {
            *v = (0..4).map(|j| W[j][a] * W[j][c]).sum::<f64>() + if a == c { s2 } else { 0.0 };
        }
    }
    let det_m = m[0][0] * m[1][1] - m[0][1] * m[1][0];
    let inv_m = [
        [m[1][1] / det_m, -m[0][1] / det_m],
        [-m[1][0] / det_m, m[0][0] / det_m],
    ];
    // log det(Sigma) = (D - K) log s^2 + log det M.
    let log_det = 2.0 * s2.ln() + det_m.ln();
    let r: Vec<f64> = (0..4).map(|j| x[j] - B[j]).collect();
    let wtr: Vec<f64> = (0..2)
        .map(|a| (0..4).map(|j| W[j][a] * r[j]).sum())
        .collect();
    let quad_inner: f64 = (0..2)
        .map(|a| (0..2).map(|c| wtr[a] * inv_m[a][c] * wtr[c]).sum::<f64>())
        .sum();
    let quad = (r.iter().map(|v| v * v).sum::<f64>() - quad_inner) / s2;
    -0.5 * (4.0 * (2.0 * std::f64::consts::PI).ln() + log_det + quad)
}

#[test]
fn ais_recovers_a_linear_gaussian_marginal() -> Result<()> {
    let dev = Device::Cpu;
    let data = [
        [0.3, -0.2, 0.9, 0.4],
        [2.0, 0.5, -1.0, -0.7],
        [-1.5, -1.0, 1.2, 1.5],
    ];
    let n = data.len();
    let w = Tensor::new(&W, &dev)?; // [4, 2]
    let b = Tensor::new(&B, &dev)?;
    let settings = AisSettings {
        temperatures: 500,
        chains: 256,
        initial_step: 0.3,
        ..AisSettings::reference()
    };
    // Chain-major repetition: row r is data point r % n.
    let rows: Vec<f64> = (0..settings.chains * n).flat_map(|r| data[r % n]).collect();
    let x = Tensor::from_vec(rows, (settings.chains * n, 4), &dev)?;
    let log_lik = |z: &Tensor| -> candle_core::Result<Tensor> {
        let mean = z.matmul(&w.t()?)?.broadcast_add(&b)?;
        let c = -0.5 * 4.0 * (2.0 * std::f64::consts::PI * S * S).ln();
        ((&x - mean)?.sqr()?.sum(D::Minus1)? * (-0.5 / (S * S)))? + c
    };
    let est = ais_log_marginal(
        log_lik,
        (n, 2),
        &settings,
        &mut NoiseSource::new(11),
        (&dev, DType::F64),
        None,
    )?;
    for (i, point) in data.iter().enumerate() {
        let exact = exact_log_marginal(point);
        let got = est.log_marginal[i];
        assert!(
            (got - exact).abs() < 0.08,
            "point {i}: AIS {got:.4} vs exact {exact:.4} (acceptance {:.2})",
            est.acceptance
        );
    }
    // Without annealing (two temperatures: prior draws as importance samples) the log weights
    // of the point in the tail spread far more: the annealing is what makes 256 chains enough.
    let crude = ais_log_marginal(
        log_lik,
        (n, 2),
        &AisSettings {
            temperatures: 2,
            ..settings
        },
        &mut NoiseSource::new(11),
        (&dev, DType::F64),
        None,
    )?;
    let spread = |e: &train::ais::AisEstimate, i: usize| {
        let w: Vec<f64> = e.log_weights.iter().map(|c| c[i]).collect();
        let mean = w.iter().sum::<f64>() / w.len() as f64;
        (w.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / w.len() as f64).sqrt()
    };
    let (annealed, single) = (spread(&est, 2), spread(&crude, 2));
    assert!(
        single > 3.0 * annealed,
        "log-weight spread: annealed {annealed}, single step {single}"
    );
    Ok(())
}

#[test]
fn the_schedule_runs_from_zero_to_one_densest_at_the_ends() {
    let s = sigmoid_schedule(1000, 4.0);
    assert_eq!(s.len(), 1000);
    assert_eq!((s[0], s[999]), (0.0, 1.0));
    assert!(s.windows(2).all(|w| w[1] > w[0]));
    let (first, middle) = (s[1] - s[0], s[500] - s[499]);
    assert!(first < middle / 10.0, "{first} vs {middle}");
}

#[test]
fn bad_settings_are_refused() {
    let dev = Device::Cpu;
    for (settings, word) in [
        (
            AisSettings {
                chains: 0,
                ..AisSettings::reference()
            },
            "chains",
        ),
        (
            AisSettings {
                step_min: 1.0,
                ..AisSettings::reference()
            },
            "step_min",
        ),
    ] {
        let err = ais_log_marginal(
            |z: &Tensor| z.sum(D::Minus1),
            (1, 2),
            &settings,
            &mut NoiseSource::new(0),
            (&dev, DType::F64),
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains(word), "{err}");
    }
    let err = ais_log_marginal(
        |z: &Tensor| z.sum_all(),
        (2, 2),
        &AisSettings::reference(),
        &mut NoiseSource::new(0),
        (&dev, DType::F64),
        None,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("one value per chain"), "{err}");
}
