//! Accuracy of the FD decomposition (Lemma 1, Theorem 1 and its generalisation): exactness on
//! polynomials, the measured convergence order for T = 1..6, and property tests against
//! analytic directional derivatives of smooth multivariate functions.

use fd_core::{Execution, Stencil};
use proptest::prelude::*;

/// `L(x) = exp(a.x) + sin(b.x)`, whose T-th directional derivative along `v` is
/// `(a.v)^T exp(a.x) + (b.v)^T sin(b.x + T pi / 2)`.
struct ExpSin {
    a: Vec<f64>,
    b: Vec<f64>,
}

fn dot(p: &[f64], q: &[f64]) -> f64 {
    p.iter().zip(q).map(|(x, y)| x * y).sum()
}

impl ExpSin {
    fn value(&self, x: &[f64]) -> f64 {
        dot(&self.a, x).exp() + dot(&self.b, x).sin()
    }

    fn directional(&self, x: &[f64], v: &[f64], order: u32) -> f64 {
        let t = order as i32;
        dot(&self.a, v).powi(t) * dot(&self.a, x).exp()
            + dot(&self.b, v).powi(t)
                * (dot(&self.b, x) + f64::from(order) * std::f64::consts::FRAC_PI_2).sin()
    }
}

fn unit(v: &[f64]) -> Vec<f64> {
    let n = dot(v, v).sqrt();
    v.iter().map(|a| a / n).collect()
}

/// Error of the estimate of d^T/du^T L (unit direction u) with step h.
fn derivative_error(stencil: &Stencil, f: &ExpSin, x: &[f64], u: &[f64], h: f64) -> f64 {
    let v: Vec<f64> = u.iter().map(|a| a * h).collect();
    let est = stencil
        .directional_derivative(|p| f.value(p), x, &v, Execution::Sequential)
        .unwrap()
        / h.powi(stencil.order() as i32);
    (est - f.directional(x, u, stencil.order())).abs()
}

#[test]
fn measured_convergence_order_matches_theory_for_t_1_to_6() {
    // Along u the exponential dominates (a.u ~ 1.1 against b.u ~ 0.08), so every Taylor term
    // of the error has the same sign and the leading one is not cancelled by accident.
    let f = ExpSin {
        a: vec![0.9, 0.5, -0.4],
        b: vec![0.3, -0.2, 0.1],
    };
    let x = [0.2, -0.1, 0.4];
    let u = unit(&[1.0, 0.6, -0.5]);
    for order in 1..=6u32 {
        let lemma1: Vec<f64> = (0..=order).map(f64::from).collect();
        let cases = [
            (
                "Lemma 1, one-sided",
                Stencil::from_offsets(order, &lemma1).unwrap(),
                0.1,
            ),
            ("Theorem 1", Stencil::central(order, 0).unwrap(), 0.2),
            (
                "Theorem 1 + 1 pair",
                Stencil::central(order, 1).unwrap(),
                0.4,
            ),
        ];
        for (name, stencil, h) in cases {
            let e1 = derivative_error(&stencil, &f, &x, &u, h);
            let e2 = derivative_error(&stencil, &f, &x, &u, h / 2.0);
            let e3 = derivative_error(&stencil, &f, &x, &u, h / 4.0);
            let p12 = (e1 / e2).log2();
            let p23 = (e2 / e3).log2();
            let p = f64::from(stencil.accuracy());
            assert!(
                (p12 - p).abs() < 0.35 && (p23 - p).abs() < 0.25,
                "{name}, T = {order}: expected order {p}, measured {p12:.3} then {p23:.3} \
                 (errors {e1:.3e}, {e2:.3e}, {e3:.3e})"
            );
        }
    }
}

#[test]
fn exact_on_polynomials_up_to_the_stencil_degree_and_not_beyond() {
    // L(x) = P(a.x) with P(s) = sum_k c_k s^k; (v.grad)^T L(x) = (a.v)^T P^(T)(a.x).
    let a = [0.8, -0.3, 0.5, 0.1];
    let x = [0.3, 0.9, -0.6, 1.2];
    let v = [0.7, -0.2, 0.4, 1.1]; // deliberately not small: exactness holds for any step
    let coeffs: Vec<f64> = (0..12)
        .map(|k| 1.0 + 0.37 * f64::from(k) - 0.05 * f64::from(k * k))
        .collect();
    let poly = |deg: usize, s: f64| (0..=deg).map(|k| coeffs[k] * s.powi(k as i32)).sum::<f64>();
    let poly_deriv = |deg: usize, order: u32, s: f64| {
        (order as usize..=deg)
            .map(|k| {
                let falling: f64 = (0..order as usize).map(|j| (k - j) as f64).product();
                coeffs[k] * falling * s.powi((k - order as usize) as i32)
            })
            .sum::<f64>()
    };
    for order in 1..=6u32 {
        let offsets: Vec<f64> = (0..=order + 1).map(|i| f64::from(i) * 0.6 - 1.0).collect();
        for stencil in [
            Stencil::from_offsets(order, &offsets).unwrap(),
            Stencil::central(order, 0).unwrap(),
            Stencil::central(order, 1).unwrap(),
        ] {
            let deg = stencil.exact_degree() as usize;
            let (ax, av) = (dot(&a, &x), dot(&a, &v));
            let scale = av.abs().powi(order as i32).max(1.0);
            let est = stencil
                .directional_derivative(|p| poly(deg, dot(&a, p)), &x, &v, Execution::Sequential)
                .unwrap();
            let exact = av.powi(order as i32) * poly_deriv(deg, order, ax);
            assert!(
                (est - exact).abs() < 1e-9 * scale * exact.abs().max(1.0),
                "T = {order}, degree {deg}: {est} vs {exact} ({stencil:?})"
            );
            // One degree more is no longer exact: the claimed degree is tight.
            let est = stencil
                .directional_derivative(
                    |p| poly(deg + 1, dot(&a, p)),
                    &x,
                    &v,
                    Execution::Sequential,
                )
                .unwrap();
            let exact = av.powi(order as i32) * poly_deriv(deg + 1, order, ax);
            assert!(
                (est - exact).abs() > 1e-6 * exact.abs().max(1.0),
                "T = {order}: degree {} unexpectedly exact",
                deg + 1
            );
        }
    }
}

fn smooth_case() -> impl Strategy<Value = (usize, Vec<f64>, Vec<f64>, Vec<f64>, Vec<f64>)> {
    (1usize..=6).prop_flat_map(|d| {
        (
            Just(d),
            prop::collection::vec(-1.0f64..1.0, d),
            prop::collection::vec(-1.0f64..1.0, d),
            prop::collection::vec(-1.0f64..1.0, d),
            prop::collection::vec(-1.0f64..1.0, d),
        )
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Every order and construction agrees with the analytic directional derivative to the
    /// accuracy its error order predicts.
    #[test]
    fn fd_matches_analytic_directional_derivatives(
        (_d, a, b, x, dir) in smooth_case(),
        order in 1u32..=4,
        extra in 0usize..=1,
    ) {
        let norm = dot(&dir, &dir).sqrt();
        prop_assume!(norm > 1e-3);
        let f = ExpSin { a, b };
        let u: Vec<f64> = dir.iter().map(|c| c / norm).collect();
        let stencil = Stencil::central(order, extra).unwrap();
        let h = 0.05;
        let err = derivative_error(&stencil, &f, &x, &u, h);
        // |a|, |b| <= sqrt(6) and |x| <= sqrt(6): derivatives up to order 8 stay below ~ 1e4,
        // so the truncation error is below 1e4 * h^accuracy; roundoff adds ~1e-16 * 1e3 / h^T.
        let bound = 1e4 * h.powi(stencil.accuracy() as i32) + 1e-12 / h.powi(order as i32);
        prop_assert!(err < bound, "T = {}, error {:e} > bound {:e}", order, err, bound);
    }

    /// Lemma 1 with random distinct offsets stays within the Lagrange remainder bound:
    /// `|error| <= h / (T+1)! * sum_i |w_i| |gamma_i|^(T+1) * max |d^(T+1) L|` on the stencil's span.
    #[test]
    fn lemma1_error_is_within_the_lagrange_remainder_bound(
        (_d, a, b, x, dir) in smooth_case(),
        order in 1u32..=4,
        mut offsets in prop::collection::vec(-2.0f64..2.0, 6),
        h in 1e-3f64..0.1,
    ) {
        let norm = dot(&dir, &dir).sqrt();
        prop_assume!(norm > 1e-3);
        offsets.truncate(order as usize + 1);
        offsets.sort_by(f64::total_cmp);
        prop_assume!(offsets.windows(2).all(|w| w[1] - w[0] > 0.1));
        let stencil = Stencil::from_offsets(order, &offsets).unwrap();
        let f = ExpSin { a, b };
        let u: Vec<f64> = dir.iter().map(|c| c / norm).collect();
        let err = derivative_error(&stencil, &f, &x, &u, h);
        let (la, lb) = (dot(&f.a, &u).abs(), dot(&f.b, &u).abs());
        let reach = h * offsets.iter().fold(0.0f64, |m, g| m.max(g.abs()));
        let t1 = order as i32 + 1;
        let max_deriv = la.powi(t1) * (dot(&f.a, &x) + la * reach).exp() + lb.powi(t1);
        let fact: f64 = (1..=t1).map(f64::from).product();
        let moment_abs: f64 = stencil
            .offsets()
            .iter()
            .zip(stencil.weights())
            .map(|(g, w)| w.abs() * g.abs().powi(t1))
            .sum();
        let sum_w: f64 = stencil.weights().iter().map(|w| w.abs()).sum();
        let max_f = (dot(&f.a, &x).abs() + la * reach).exp() + 1.0;
        let roundoff = 1e-14 * sum_w * max_f / h.powi(order as i32);
        let bound = h * moment_abs / fact * max_deriv + roundoff;
        prop_assert!(err <= bound, "T = {}, h = {}: error {:e} > bound {:e}", order, h, err, bound);
    }
}
