//! Pair classification and pushing weights: which `k` are positives `P_jk` and
//! negatives `Q_jk` of row `j`, and how hard each negative is pushed (`S_jk`).

use crate::math::ln;
use crate::metric::distance;
use crate::{Params, PushingKind, Scalar};

/// One row as pair classification sees it: its index, label and prediction.
#[derive(Debug, Clone, Copy)]
pub struct RowView<'a, T> {
    /// The row index (a row is never its own positive).
    pub index: usize,
    /// The label vector `y`.
    pub label: &'a [T],
    /// The prediction vector `p`.
    pub pred: &'a [T],
}

/// What row `k` is to row `j`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pair<T> {
    /// Neither similar label nor confusable prediction (or `k = j`): no term.
    Neither,
    /// `P_jk`: `d(y_j, y_k) <= ω` and `j != k`. Pulled together.
    Positive,
    /// `Q_jk`: `d(y_j, y_k) > ω` and `d(p_j, p_k) <= ω̂`. Pushed apart with weight
    /// `S_jk = e^{log_weight}` (−∞ when the weight is 0, e.g. linear pushing with e = 0).
    Negative {
        /// `ln S_jk = ln eta_j + ln g(d(y_j, y_k))`.
        log_weight: T,
    },
}

impl<T: Scalar> Pair<T> {
    /// Classifies row `k` relative to row `j`. `log_eta_j` is `ln eta_j`.
    ///
    /// Labels are compared first, so predictions are only read for pairs with
    /// far labels.
    #[inline]
    pub fn classify(
        params: &Params<T>,
        j: RowView<'_, T>,
        k: RowView<'_, T>,
        log_eta_j: T,
    ) -> Self {
        Self::classify_both(params, j, k, log_eta_j, log_eta_j).0
    }

    /// Classifies the pair both ways at once: what `k` is to `j`, and what `j`
    /// is to `k`. Both relations are symmetric in the labels and predictions;
    /// only the pushing weight differs, through `eta_j` or `eta_k`. The backward
    /// pass needs both `G_jk` and `G_kj` from one tile.
    #[inline]
    pub fn classify_both(
        params: &Params<T>,
        j: RowView<'_, T>,
        k: RowView<'_, T>,
        log_eta_j: T,
        log_eta_k: T,
    ) -> (Self, Self) {
        if j.index == k.index {
            return (Pair::Neither, Pair::Neither);
        }
        let metric = params.config.label_metric;
        let label_distance = distance(metric, j.label, k.label);
        if label_distance <= params.threshold {
            return (Pair::Positive, Pair::Positive);
        }
        if distance(metric, j.pred, k.pred) <= params.pred_threshold {
            let weight = |log_eta| Pair::Negative {
                log_weight: log_pushing_weight(params, log_eta, label_distance),
            };
            (weight(log_eta_j), weight(log_eta_k))
        } else {
            (Pair::Neither, Pair::Neither)
        }
    }

    /// True for [`Pair::Positive`].
    #[inline]
    pub fn is_positive(&self) -> bool {
        matches!(self, Pair::Positive)
    }

    /// True for [`Pair::Negative`].
    #[inline]
    pub fn is_negative(&self) -> bool {
        matches!(self, Pair::Negative { .. })
    }
}

/// `ln S_jk = ln eta_j + ln g(d)`, the pushing weight in log space.
///
/// Kept in log space so that `e^{s_jk} S_jk` joins the log-sum-exp as one
/// exponent, `s_jk + ln S_jk`, and a huge label distance cannot overflow.
/// The result is capped at [`LOG_WEIGHT_CEILING`]: a weight of `e^10000` is
/// already beyond any meaning, and the cap keeps every loss and gradient finite
/// in f32 (see docs/guarantees.md).
///
/// ```
/// use conr_core::{Config, pairs::log_pushing_weight};
/// let params = Config::paper().params::<f64>()?; // exp pushing, e = 0.01
/// let w = log_pushing_weight(&params, 0.0, 50.0).exp();
/// assert!((w - (0.5f64).exp()).abs() < 1e-15);
/// # Ok::<(), conr_core::Error>(())
/// ```
#[inline]
pub fn log_pushing_weight<T: Scalar>(params: &Params<T>, log_eta: T, label_distance: T) -> T {
    let log_g = match params.config.pushing.kind {
        PushingKind::Exp => params.scale * label_distance,
        PushingKind::Linear => params.log_scale + ln(label_distance),
        PushingKind::Constant => T::zero(),
    };
    (log_eta + log_g).min(crate::cast(LOG_WEIGHT_CEILING))
}

/// The cap on `ln S_jk`.
pub const LOG_WEIGHT_CEILING: f64 = 1e4;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Config, Pushing};

    fn row<'a>(index: usize, label: &'a [f64], pred: &'a [f64]) -> RowView<'a, f64> {
        RowView { index, label, pred }
    }

    #[test]
    fn threshold_is_inclusive_for_positives_and_predictions() {
        let params = Config::paper().params::<f64>().unwrap();
        let pair = |yk, pk| Pair::classify(&params, row(0, &[10.0], &[10.0]), row(1, yk, pk), 0.0);
        assert_eq!(pair(&[11.0], &[40.0]), Pair::Positive);
        assert!(pair(&[12.0], &[11.0]).is_negative());
        assert_eq!(pair(&[12.0], &[10.5]), Pair::Negative { log_weight: 0.02 });
        assert_eq!(pair(&[12.0], &[11.01]), Pair::Neither);
        assert_eq!(
            Pair::classify(&params, row(3, &[1.0], &[1.0]), row(3, &[1.0], &[1.0]), 0.0),
            Pair::Neither
        );
    }

    #[test]
    fn classify_both_agrees_with_classify() {
        let params = Config::paper().params::<f64>().unwrap();
        let (a, b) = (row(0, &[10.0], &[10.0]), row(1, &[30.0], &[10.5]));
        let (jk, kj) = Pair::classify_both(&params, a, b, 0.5, -0.25);
        assert_eq!(jk, Pair::classify(&params, a, b, 0.5));
        assert_eq!(kj, Pair::classify(&params, b, a, -0.25));
        assert!(jk.is_negative());
    }

    #[test]
    fn linear_pushing_with_zero_scale_has_no_weight() {
        let config = Config {
            pushing: Pushing {
                kind: PushingKind::Linear,
                scale: 0.0,
            },
            ..Config::paper()
        };
        let params = config.params::<f32>().unwrap();
        assert_eq!(log_pushing_weight(&params, 0.0, 3.0), f32::NEG_INFINITY);
    }
}
