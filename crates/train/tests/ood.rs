//! The typicality test and the ROC-AUC (FD-SM App. C.3): the AUC against a brute-force count
//! over every (negative, positive) pair with ties, the ROC curve's trapezoid area against the
//! AUC, the typicality scores against their closed form on a Gaussian, and the errors for bad
//! input.

use candle_core::{Device, Tensor};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;
use train::ood::{neg_log_densities, roc_auc, roc_curve, Typicality};

/// Seeded draws: uniform integers and standard normals.
struct Draws(StdRng);

impl Draws {
    fn new(seed: u64) -> Self {
        Self(StdRng::seed_from_u64(seed))
    }

    fn next(&mut self) -> u64 {
        self.0.random()
    }

    fn gaussian(&mut self) -> f64 {
        self.0.sample(StandardNormal)
    }
}

fn brute_force_auc(neg: &[f64], pos: &[f64]) -> f64 {
    let mut wins = 0.0;
    for &p in pos {
        for &n in neg {
            wins += if p > n {
                1.0
            } else if p == n {
                0.5
            } else {
                0.0
            };
        }
    }
    wins / (neg.len() * pos.len()) as f64
}

#[test]
fn auc_equals_the_pairwise_count_with_ties() -> anyhow::Result<()> {
    let mut d = Draws::new(7);
    for (n_neg, n_pos, levels) in [
        (1, 1, 3),
        (5, 9, 4),
        (40, 23, 6),
        (300, 200, 25),
        (97, 1, 2),
    ] {
        // Few distinct values, so that many scores tie within and across the classes.
        let neg: Vec<f64> = (0..n_neg).map(|_| (d.next() % levels) as f64).collect();
        let pos: Vec<f64> = (0..n_pos)
            .map(|_| (d.next() % levels) as f64 + 0.5 * (d.next() % 2) as f64)
            .collect();
        let auc = roc_auc(&neg, &pos)?;
        let brute = brute_force_auc(&neg, &pos);
        assert!((auc - brute).abs() < 1e-12, "{auc} vs {brute}");
    }
    Ok(())
}

#[test]
fn auc_of_separated_reversed_and_tied_classes() -> anyhow::Result<()> {
    assert_eq!(roc_auc(&[0.0, 1.0, 2.0], &[3.0, 4.0])?, 1.0);
    assert_eq!(roc_auc(&[3.0, 4.0], &[0.0, 1.0, 2.0])?, 0.0);
    assert_eq!(roc_auc(&[1.5; 4], &[1.5; 7])?, 0.5);
    Ok(())
}

#[test]
fn roc_curve_area_is_the_auc() -> anyhow::Result<()> {
    let mut d = Draws::new(11);
    let neg: Vec<f64> = (0..500).map(|_| (d.gaussian() * 4.0).round()).collect();
    let pos: Vec<f64> = (0..300)
        .map(|_| (d.gaussian() * 4.0 + 2.0).round())
        .collect();
    let curve = roc_curve(&neg, &pos)?;
    assert_eq!(curve.first(), Some(&(0.0, 0.0)));
    assert_eq!(curve.last(), Some(&(1.0, 1.0)));
    assert!(curve
        .windows(2)
        .all(|w| w[1].0 >= w[0].0 && w[1].1 >= w[0].1));
    let area: f64 = curve
        .windows(2)
        .map(|w| (w[1].0 - w[0].0) * (w[1].1 + w[0].1) / 2.0)
        .sum();
    let auc = roc_auc(&neg, &pos)?;
    assert!((area - auc).abs() < 1e-12, "area {area} vs AUC {auc}");
    assert!(
        auc > 0.6,
        "a shift of half a standard deviation is detected: {auc}"
    );
    Ok(())
}

#[test]
fn typicality_scores_follow_equation_58() -> anyhow::Result<()> {
    let t = Typicality::fit(&[1.0, 2.0, 6.0])?;
    assert_eq!((t.reference, t.count), (3.0, 3));
    // Batches (1, 7) -> |4 - 3|, (3, 2) -> |2.5 - 3|; the odd value left over is dropped.
    assert_eq!(t.scores(&[1.0, 7.0, 3.0, 2.0, 100.0], 2)?, vec![1.0, 0.5]);
    assert_eq!(t.scores(&[5.0], 1)?, vec![2.0]);
    Ok(())
}

#[test]
fn gaussian_model_detects_a_wider_gaussian_and_not_its_own_data() -> anyhow::Result<()> {
    // log p~(x) = -|x|^2 / 2 in 4 dimensions: -log p~ of a sample from the model is chi^2_4 / 2
    // (mean 2), of a sample from N(0, 1.5^2 I) is 2.25 times that.
    let mut d = Draws::new(3);
    let mut sample = |n: usize, scale: f64| -> candle_core::Result<Tensor> {
        let v: Vec<f64> = (0..n * 4).map(|_| d.gaussian() * scale).collect();
        Tensor::from_vec(v, (n, 4), &Device::Cpu)
    };
    let model = |x: &Tensor| -> candle_core::Result<Tensor> { x.sqr()?.sum(1)? * -0.5 };
    let train = sample(5000, 1.0)?;
    // An evaluation batch that does not divide the set.
    let train_values = neg_log_densities(&model, &train, 333)?;
    let direct: Vec<f64> = (train.sqr()?.sum(1)? * 0.5)?.to_vec1()?;
    assert_eq!(train_values, direct);
    let typicality = Typicality::fit(&train_values)?;
    assert!((typicality.reference - 2.0).abs() < 0.1, "{typicality:?}");
    let m = 2;
    let score = |x: &Tensor| -> anyhow::Result<Vec<f64>> {
        Ok(typicality.scores(&neg_log_densities(&model, x, 500)?, m)?)
    };
    let (inside_a, inside_b, wider) = (
        score(&sample(4000, 1.0)?)?,
        score(&sample(4000, 1.0)?)?,
        score(&sample(4000, 1.5)?)?,
    );
    assert_eq!(inside_a.len(), 2000);
    // Two draws from the same distribution: AUC 0.5 within 4 standard errors (Hanley-McNeil at
    // 0.5: sqrt((n1 + n2 + 1) / (12 n1 n2))).
    let same = roc_auc(&inside_a, &inside_b)?;
    let se = (4001.0f64 / (12.0 * 2000.0 * 2000.0)).sqrt();
    assert!(
        (same - 0.5).abs() < 4.0 * se,
        "AUC {same} between two in-distribution draws"
    );
    // The wider Gaussian's population AUC is 0.798 (a simulation with 400 000 scores per
    // class); its Hanley-McNeil standard error at 2000 against 2000 scores is 0.007.
    let detected = roc_auc(&inside_a, &wider)?;
    assert!(
        (detected - 0.798).abs() < 4.0 * 0.007,
        "AUC {detected} for the wider Gaussian"
    );
    Ok(())
}

#[test]
fn bad_input_is_refused_with_a_message() {
    let err = |r: Result<Vec<f64>, train::TrainError>| r.unwrap_err().to_string();
    assert!(roc_auc(&[], &[1.0])
        .unwrap_err()
        .to_string()
        .contains("empty"));
    assert!(roc_auc(&[f64::NAN], &[1.0])
        .unwrap_err()
        .to_string()
        .contains("non-finite"));
    let t = Typicality::fit(&[1.0, 2.0]).unwrap();
    assert!(err(t.scores(&[1.0], 2)).contains("fewer than one batch"));
    assert!(err(t.scores(&[1.0, 2.0], 0)).contains("M must be"));
    assert!(Typicality::fit(&[1.0, f64::INFINITY]).is_err());
    let model = |x: &Tensor| -> candle_core::Result<Tensor> { x.sum(1)?.log() };
    let x = Tensor::new(&[[1.0f64], [-1.0]], &Device::Cpu).unwrap();
    assert!(err(neg_log_densities(&model, &x, 1)).contains("image 1"));
    assert!(err(neg_log_densities(&model, &x, 0)).contains("batch"));
}
