//! A running log-sum-exp: `log Σ e^{x_i}` taken one term at a time, without
//! overflow, and without the underflow of a sum of exponentials shifted by a
//! fixed maximum.

use crate::Scalar;
use crate::math::{exp, ln};

/// The log of a running sum of exponentials, kept as its largest term `m`
/// and `Σ e^{x_i − m}` (at least 1 once a term is in): one exponential per
/// term, and a rescaling only when a new largest term arrives. Starts empty
/// (`log 0 = −∞`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct LogSum<T> {
    max: T,
    sum: T,
}

impl<T: Scalar> LogSum<T> {
    /// The empty sum.
    pub(crate) fn new() -> Self {
        Self {
            max: T::neg_infinity(),
            sum: T::zero(),
        }
    }

    /// Adds `e^x`; returns the factor the previous terms were rescaled by
    /// (1 unless `x` is the new largest term), for sums weighted alike.
    #[inline]
    pub(crate) fn add(&mut self, x: T) -> T {
        if x <= self.max {
            self.sum = self.sum + exp(x - self.max);
            T::one()
        } else {
            let rescale = exp(self.max - x);
            self.sum = self.sum * rescale + T::one();
            self.max = x;
            rescale
        }
    }

    /// `e^{x − m}` of a term already added, for weights against [`Self::sum`].
    #[inline]
    pub(crate) fn shifted(&self, x: T) -> T {
        exp(x - self.max)
    }

    /// `Σ e^{x_i − m}`.
    #[inline]
    pub(crate) fn sum(&self) -> T {
        self.sum
    }

    /// `log Σ e^{x_i}` so far (`−∞` while empty).
    #[inline]
    pub(crate) fn get(&self) -> T {
        if self.sum.is_zero() {
            return T::neg_infinity();
        }
        self.max + ln(self.sum)
    }
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
