//! The same bits in every build graph: the core's exp, ln, sqrt and atan2
//! are the `libm` crate's, here in a build where num-traits has its `std`
//! feature (this crate turns it on), where `num_traits::Float::exp` would
//! be the platform's.

use conr_core::math;
use conr_core::stats::LogSumExp;

/// Arguments over many binades, both signs, and the edges: 0, subnormals,
/// the largest finite values, and where exp overflows and underflows.
fn sweep() -> Vec<f64> {
    let mut xs = vec![
        0.0,
        -0.0,
        f64::MIN_POSITIVE,
        5e-324,
        f64::MAX,
        709.78,
        -745.1,
        88.7,
        -103.9,
    ];
    let mut x = 1e-300f64;
    while x < 1e300 {
        xs.extend([x, -x, x * 1.234_567, -x * 7.654_321]);
        x *= 1.7;
    }
    // Dense where the losses live: log-sum-exps of logits over τ.
    xs.extend((-20_000..=20_000).map(|i| f64::from(i) * 0.012_345));
    xs
}

#[test]
fn exp_ln_sqrt_and_atan2_are_libm_in_f64() {
    let same = |a: f64, b: f64| a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan());
    for x in sweep() {
        assert!(same(math::exp(x), libm::exp(x)), "exp({x:e})");
        assert!(same(math::ln(x), libm::log(x)), "ln({x:e})");
        assert!(same(math::sqrt(x), libm::sqrt(x)), "sqrt({x:e})");
        assert!(
            same(math::atan2(x, 0.75), libm::atan2(x, 0.75)),
            "atan2({x:e}, 0.75)"
        );
    }
}

#[test]
fn exp_ln_sqrt_and_atan2_are_libm_in_f32() {
    let same = |a: f32, b: f32| a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan());
    for x in sweep().into_iter().map(|x| x as f32) {
        assert!(same(math::exp(x), libm::expf(x)), "exp({x:e})");
        assert!(same(math::ln(x), libm::logf(x)), "ln({x:e})");
        assert!(same(math::sqrt(x), libm::sqrtf(x)), "sqrt({x:e})");
        assert!(
            same(math::atan2(x, 0.75), libm::atan2f(x, 0.75)),
            "atan2({x:e}, 0.75)"
        );
    }
}

/// The streaming log-sum-exp, the core's hot transcendental path, gives
/// the bits of the same recurrence written out with libm.
#[test]
fn the_log_sum_exp_is_libms() {
    let values = [3.5f64, -1.25, 7.0, 6.999, -40.0, 0.1, 7.5, -3.0e2, 12.25];
    let mut lse = LogSumExp::default();
    let (mut max, mut sum) = (f64::NEG_INFINITY, 0.0f64);
    for &x in &values {
        lse.push(x);
        if x > max {
            sum = sum * libm::exp(max - x) + 1.0;
            max = x;
        } else {
            sum += libm::exp(x - max);
        }
    }
    assert_eq!(lse.value().to_bits(), (max + libm::log(sum)).to_bits());
}
