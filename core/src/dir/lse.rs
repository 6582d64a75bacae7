//! A running log-sum-exp: `log Σ e^{x_i}` taken one term at a time, without
//! overflow, and without the underflow of a sum of exponentials shifted by a
//! fixed maximum.

use crate::Scalar;

/// The log of a running sum of exponentials. Starts empty (`log 0 = −∞`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct LogSum<T> {
    value: T,
}

impl<T: Scalar> LogSum<T> {
    /// The empty sum.
    pub(crate) fn new() -> Self {
        Self {
            value: T::neg_infinity(),
        }
    }

    /// Adds `e^x`.
    #[inline]
    pub(crate) fn add(&mut self, x: T) {
        self.value = log_add(self.value, x);
    }

    /// `log Σ e^{x_i}` so far (`−∞` while empty).
    #[inline]
    pub(crate) fn get(&self) -> T {
        self.value
    }
}

/// `log(e^a + e^b)`, exact for `−∞` on either side.
#[inline]
pub(crate) fn log_add<T: Scalar>(a: T, b: T) -> T {
    let (hi, lo) = if a >= b { (a, b) } else { (b, a) };
    if lo == T::neg_infinity() {
        return hi;
    }
    hi + (lo - hi).exp().ln_1p()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_direct_sum_and_survives_extremes() {
        let mut s = LogSum::<f64>::new();
        assert_eq!(s.get(), f64::NEG_INFINITY);
        for x in [0.5, -1.0, 2.0] {
            s.add(x);
        }
        let direct = (0.5f64.exp() + (-1.0f64).exp() + 2.0f64.exp()).ln();
        assert!((s.get() - direct).abs() < 1e-15);
        let mut far = LogSum::<f32>::new();
        far.add(-1e4);
        far.add(-1e4);
        assert!((far.get() - (-1e4 + core::f32::consts::LN_2)).abs() < 1e-2);
    }
}
