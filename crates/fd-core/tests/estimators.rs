//! The estimator front ends of `fd-core` agree with each other (sequential, parallel,
//! concatenated batch, per-offset batch) and reject malformed input with typed errors.

use fd_core::{BatchMode, Execution, FdError, Stencil};

fn quartic(p: &[f64]) -> f64 {
    // Closed form used below: (v.grad)^2 of sum_j p_j^4 is sum_j 12 p_j^2 v_j^2.
    p.iter().map(|a| a.powi(4)).sum()
}

fn batch_eval(points: &[f64], rows: usize) -> Result<Vec<f64>, std::convert::Infallible> {
    let dim = points.len() / rows;
    Ok(points.chunks_exact(dim).map(quartic).collect())
}

#[test]
fn all_execution_modes_agree() {
    let stencil = Stencil::central(2, 1).unwrap(); // exact for polynomials of degree 5
    let dim = 3;
    let xs = [0.1, -0.4, 0.8, 1.5, 0.0, -0.3];
    let vs = [0.2, 0.1, -0.3, -0.5, 0.25, 0.05];
    let expected: Vec<f64> = xs
        .chunks(dim)
        .zip(vs.chunks(dim))
        .map(|(x, v)| x.iter().zip(v).map(|(a, b)| 12.0 * a * a * b * b).sum())
        .collect();
    let concatenated = stencil
        .directional_derivative_batched(&xs, &vs, dim, BatchMode::Concatenated, batch_eval)
        .unwrap();
    let per_offset = stencil
        .directional_derivative_batched(&xs, &vs, dim, BatchMode::PerOffset, batch_eval)
        .unwrap();
    for (b, (x, v)) in xs.chunks(dim).zip(vs.chunks(dim)).enumerate() {
        let seq = stencil
            .directional_derivative(quartic, x, v, Execution::Sequential)
            .unwrap();
        let par = stencil
            .directional_derivative(quartic, x, v, Execution::Parallel)
            .unwrap();
        assert_eq!(seq, par, "parallel evaluation must not change the result");
        assert_eq!(seq, concatenated[b]);
        assert_eq!(seq, per_offset[b]);
        approx::assert_relative_eq!(seq, expected[b], max_relative = 1e-12);
    }
}

#[test]
fn shifted_batch_is_offset_major() {
    let stencil = Stencil::symmetric(1, &[1.0]).unwrap(); // offsets +1, -1
    let pts = stencil
        .shifted_batch(&[1.0, 2.0, 3.0, 4.0], &[0.5, 0.5, 1.0, 1.0], 2)
        .unwrap();
    assert_eq!(pts, vec![1.5, 2.5, 4.0, 5.0, 0.5, 1.5, 2.0, 3.0]);
    let combined = stencil.combine(&[10.0, 20.0, 4.0, 6.0], 2).unwrap();
    assert_eq!(combined, vec![3.0, 7.0]); // (f+ - f-) / 2 per element
}

#[test]
fn estimator_errors_are_typed() {
    let s = Stencil::central(2, 0).unwrap();
    let seq = Execution::Sequential;
    assert!(matches!(
        s.directional_derivative(quartic, &[1.0, 2.0], &[1.0], seq),
        Err(FdError::LengthMismatch {
            expected: 2,
            got: 1,
            ..
        })
    ));
    assert!(matches!(
        s.directional_derivative(quartic, &[1.0, f64::NAN], &[1.0, 1.0], seq),
        Err(FdError::NonFiniteInput {
            what: "x",
            index: 1
        })
    ));
    assert!(matches!(
        s.directional_derivative(quartic, &[1.0, 1.0], &[f64::INFINITY, 1.0], seq),
        Err(FdError::NonFiniteInput {
            what: "v",
            index: 0
        })
    ));
    assert!(matches!(
        s.directional_derivative(|p| 1.0 / p[0], &[0.0], &[1.0], seq),
        Err(FdError::NonFiniteEvaluation { index: 0, offset }) if offset == 0.0
    ));
    assert!(matches!(
        s.shifted_batch(&[1.0, 2.0, 3.0], &[1.0, 2.0, 3.0], 2),
        Err(FdError::LengthMismatch { .. })
    ));
    assert!(matches!(
        s.shifted_batch(&[1.0], &[1.0], 0),
        Err(FdError::LengthMismatch { .. })
    ));
    assert!(matches!(
        s.combine(&[1.0, 2.0], 1),
        Err(FdError::LengthMismatch {
            expected: 3,
            got: 2,
            ..
        })
    ));
    let failing =
        s.directional_derivative_batched(&[1.0], &[1.0], 1, BatchMode::Concatenated, |_, _| {
            Err::<Vec<f64>, _>("device out of memory")
        });
    match failing {
        Err(FdError::Evaluator(e)) => assert_eq!(e.to_string(), "device out of memory"),
        other => panic!("expected an evaluator error, got {other:?}"),
    }
    let short =
        s.directional_derivative_batched(&[1.0], &[1.0], 1, BatchMode::PerOffset, |_, _| {
            Ok::<_, std::convert::Infallible>(vec![])
        });
    assert!(matches!(
        short,
        Err(FdError::LengthMismatch {
            expected: 1,
            got: 0,
            ..
        })
    ));
    let nan = s.directional_derivative_batched(
        &[1.0, 2.0],
        &[1.0, 1.0],
        1,
        BatchMode::Concatenated,
        |p, _| {
            Ok::<_, std::convert::Infallible>(
                p.iter()
                    .map(|&a| if a == 3.0 { f64::NAN } else { a })
                    .collect(),
            )
        },
    );
    // Offsets are [0, +1, -1]; the value 3 is x_1 + 1 * v_1, i.e. evaluation 1 * 2 + 1 = 3.
    assert!(matches!(nan, Err(FdError::NonFiniteEvaluation { index: 3, offset }) if offset == 1.0));
}
