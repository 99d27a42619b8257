//! Explicit rel+abs tolerance checks for tests (`testing` feature).

/// `|a - b| <= atol + rtol·|b|`.
pub fn close(a: f64, b: f64, rtol: f64, atol: f64) -> bool {
    (a - b).abs() <= atol + rtol * b.abs()
}

/// Panics with a precise message unless every element of `actual` is close to `expected`.
#[track_caller]
pub fn assert_close(actual: &[f64], expected: &[f64], rtol: f64, atol: f64) {
    assert_eq!(actual.len(), expected.len(), "length mismatch");
    for (i, (a, b)) in actual.iter().zip(expected).enumerate() {
        assert!(
            close(*a, *b, rtol, atol),
            "element {i}: got {a:e}, expected {b:e} (rtol {rtol:e}, atol {atol:e})"
        );
    }
}

/// Relative L2 distance `‖a − b‖ / ‖b‖`.
pub fn rel_l2(a: &[f64], b: &[f64]) -> f64 {
    let num: f64 = a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum();
    let den: f64 = b.iter().map(|y| y * y).sum();
    (num / den).sqrt()
}
