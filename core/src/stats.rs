//! The streaming per-row statistics of the forward pass, the row loss, and the
//! gradient coefficients `G_jk` of the backward pass (DESIGN §2).
//!
//! Every quantity of ConR is a reduction over `k` within row `j`. An engine
//! visits the pairs of row `j` in any order and in any number of tiles, pushes
//! each into a [`RowStats`] (merging partial stats with [`RowStats::merge`]),
//! then calls [`RowStats::finish`]. The backward pass recomputes each logit
//! (or reads it where the engine kept it) and asks the row's [`RowGrad`] for `G_jk`.
//!
//! Sums of exponentials are kept as log-sum-exp with a running maximum, and the
//! pushing weight joins the exponent (`s + ln S`), so no finite input overflows.

use crate::math::{exp, ln};
use crate::pairs::Pair;
use crate::{Aggregation, Params, Reduction, Scalar, cast};

/// A running `ln Σ e^{x_i}`, stored as a maximum and a sum scaled by it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LogSumExp<T> {
    max: T,
    sum: T,
}

impl<T: Scalar> Default for LogSumExp<T> {
    fn default() -> Self {
        Self {
            max: T::neg_infinity(),
            sum: T::zero(),
        }
    }
}

impl<T: Scalar> LogSumExp<T> {
    /// A sum kept elsewhere as a running maximum and the sum of `e^{x − max}`
    /// (another engine's statistics, read back): empty when `sum` is 0.
    ///
    /// ```
    /// use conr_core::stats::LogSumExp;
    /// let mut a = LogSumExp::default();
    /// a.push(1.0f64);
    /// a.push(2.0);
    /// let b = LogSumExp::from_parts(2.0, 1.0 + (-1.0f64).exp());
    /// assert!((a.value() - b.value()).abs() < 1e-15);
    /// assert!(LogSumExp::from_parts(7.0f64, 0.0).is_empty());
    /// ```
    pub fn from_parts(max: T, sum: T) -> Self {
        if sum.is_zero() {
            Self::default()
        } else {
            Self { max, sum }
        }
    }

    /// Adds `e^x` for a finite `x`.
    #[inline]
    pub fn push(&mut self, x: T) {
        if x > self.max {
            self.sum = self.sum * exp(self.max - x) + T::one();
            self.max = x;
        } else {
            self.sum = self.sum + exp(x - self.max);
        }
    }

    /// Adds all of `other`'s terms.
    #[inline]
    pub fn merge(&mut self, other: &Self) {
        if other.sum.is_zero() {
            return;
        }
        if self.sum.is_zero() {
            *self = *other;
            return;
        }
        let max = self.max.max(other.max);
        self.sum = self.sum * exp(self.max - max) + other.sum * exp(other.max - max);
        self.max = max;
    }

    /// True when nothing was pushed.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.sum.is_zero()
    }

    /// `ln Σ e^{x_i}`, −∞ when empty.
    #[inline]
    pub fn value(&self) -> T {
        if self.is_empty() {
            T::neg_infinity()
        } else {
            self.max + ln(self.sum)
        }
    }

    /// `ln Σ e^{x_i} − shift`, computed as `(max − shift) + ln sum` so that a
    /// result much smaller than the terms keeps its digits.
    #[inline]
    pub fn value_minus(&self, shift: T) -> T {
        (self.max - shift) + ln(self.sum)
    }
}

/// What one row `j` accumulates over its pairs in the forward pass.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RowStats<T> {
    /// `ln Σ_k P_jk e^{s_jk}`.
    pub positive: LogSumExp<T>,
    /// `ln Σ_k Q_jk S_jk e^{s_jk}`.
    pub negative: LogSumExp<T>,
    /// `Σ_k P_jk s_jk`.
    pub positive_logit_sum: T,
    /// `|P_j|`, self excluded.
    pub positives: u32,
    /// `|Q_j|`.
    pub negatives: u32,
}

impl<T: Scalar> Default for RowStats<T> {
    fn default() -> Self {
        Self {
            positive: LogSumExp::default(),
            negative: LogSumExp::default(),
            positive_logit_sum: T::zero(),
            positives: 0,
            negatives: 0,
        }
    }
}

impl<T: Scalar> RowStats<T> {
    /// Adds pair `(j, k)` with logit `s = z_j·z_k / τ`.
    #[inline]
    pub fn push(&mut self, pair: Pair<T>, s: T) {
        match pair {
            Pair::Neither => {}
            Pair::Positive => {
                self.positive.push(s);
                self.positive_logit_sum = self.positive_logit_sum + s;
                self.positives += 1;
            }
            Pair::Negative { log_weight } => {
                self.negatives += 1;
                // A zero weight counts the negative (it still makes an anchor) but adds no term.
                if log_weight > T::neg_infinity() {
                    self.negative.push(s + log_weight);
                }
            }
        }
    }

    /// Adds the pairs another tile of the same row accumulated.
    #[inline]
    pub fn merge(&mut self, other: &Self) {
        self.positive.merge(&other.positive);
        self.negative.merge(&other.negative);
        self.positive_logit_sum = self.positive_logit_sum + other.positive_logit_sum;
        self.positives += other.positives;
        self.negatives += other.negatives;
    }

    /// Row `j` is an anchor when it has a negative.
    #[inline]
    pub fn is_anchor(&self) -> bool {
        self.negatives > 0
    }

    /// The row's loss `l_j` and what its backward pass needs.
    ///
    /// `rows` is M (for the padding term) and `eta` is the row's pushing power `eta_j`.
    /// A row that is not an anchor, or has no positive, has `l_j = 0`: where the
    /// official code divides 0 by 0, this row simply does not contribute.
    pub fn finish(&self, params: &Params<T>, rows: usize, eta: T) -> RowOutcome<T> {
        let config = &params.config;
        let mut outcome = RowOutcome {
            loss: T::zero(),
            anchor: self.is_anchor(),
            positives: self.positives,
            negatives: self.negatives,
            outer: if config.outer_weight { eta } else { T::one() },
            log_denominator: T::zero(),
            log_positive_sum: T::zero(),
            positive_share: T::zero(),
            inv_count: T::zero(),
            aggregation: config.aggregation,
        };
        if !outcome.contributes() {
            return outcome;
        }
        // D_j = Σ P e^s + Σ Q S e^s [+ (M − |P_j|)]: one log-sum-exp of three parts.
        let mut denominator = self.positive;
        denominator.merge(&self.negative);
        if config.denominator_padding {
            let padding = rows.saturating_sub(self.positives as usize).max(1);
            denominator.merge(&LogSumExp {
                max: ln(cast::<T>(padding as f64)),
                sum: T::one(),
            });
        }
        let positives = cast::<T>(self.positives as f64);
        let count = positives
            + if config.self_in_positive_count {
                T::one()
            } else {
                T::zero()
            };
        outcome.log_denominator = denominator.value();
        outcome.log_positive_sum = self.positive.value();
        outcome.positive_share = positives / count;
        outcome.inv_count = T::one() / count;
        let row_loss = match config.aggregation {
            // (|P|/n) (log D − mean_P s): the difference is formed before the large terms meet.
            Aggregation::MeanOfLogs => {
                let mean_logit = self.positive_logit_sum / positives;
                outcome.positive_share * denominator.value_minus(mean_logit)
            }
            // log D + log n − log Σ_P e^s
            Aggregation::LogOfMean => denominator.value_minus(outcome.log_positive_sum) + ln(count),
        };
        outcome.loss = outcome.outer * row_loss;
        outcome
    }
}

/// One row's result of the forward pass: its loss and what the backward pass needs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RowOutcome<T> {
    /// `l_j`, including the outer factor, before the reduction.
    pub loss: T,
    /// Whether the row has a negative.
    pub anchor: bool,
    /// `|P_j|`.
    pub positives: u32,
    /// `|Q_j|`.
    pub negatives: u32,
    /// The outer factor of `l_j`: `eta_j` with `outer_weight`, else 1.
    outer: T,
    log_denominator: T,
    log_positive_sum: T,
    positive_share: T,
    inv_count: T,
    aggregation: Aggregation,
}

impl<T: Scalar> Default for RowOutcome<T> {
    /// A row with no pair at all: no loss, no anchor, outer factor 1.
    fn default() -> Self {
        Self {
            loss: T::zero(),
            anchor: false,
            positives: 0,
            negatives: 0,
            outer: T::one(),
            log_denominator: T::zero(),
            log_positive_sum: T::zero(),
            positive_share: T::zero(),
            inv_count: T::zero(),
            aggregation: Aggregation::MeanOfLogs,
        }
    }
}

impl<T: Scalar> RowOutcome<T> {
    /// The backward pass's values: the outer factor, ln D, ln Σ_P e^s, |P|/n, 1/n.
    pub(crate) fn parts(&self) -> [T; 5] {
        [
            self.outer,
            self.log_denominator,
            self.log_positive_sum,
            self.positive_share,
            self.inv_count,
        ]
    }

    /// The aggregation the row was finished with.
    pub(crate) fn aggregation(&self) -> Aggregation {
        self.aggregation
    }

    /// An outcome from its parts (the inverse of the shard record).
    pub(crate) fn from_parts(
        loss: T,
        anchor: bool,
        positives: u32,
        negatives: u32,
        [
            outer,
            log_denominator,
            log_positive_sum,
            positive_share,
            inv_count,
        ]: [T; 5],
        aggregation: Aggregation,
    ) -> Self {
        Self {
            loss,
            anchor,
            positives,
            negatives,
            outer,
            log_denominator,
            log_positive_sum,
            positive_share,
            inv_count,
            aggregation,
        }
    }

    /// Whether `l_j` can be non-zero: an anchor with at least one positive.
    #[inline]
    pub fn contributes(&self) -> bool {
        self.anchor && self.positives > 0
    }

    /// `ln D_j` (0 for a row that does not contribute).
    #[inline]
    pub fn log_denominator(&self) -> T {
        self.log_denominator
    }

    /// The coefficients of row `j`'s gradient, given the reduction's factor
    /// (see [`reduction_factor`]).
    #[inline]
    pub fn gradient(&self, factor: T) -> RowGrad<T> {
        let c = factor * self.outer;
        let (push, pull) = match self.aggregation {
            Aggregation::MeanOfLogs => (c * self.positive_share, c * self.inv_count),
            Aggregation::LogOfMean => (c, c),
        };
        RowGrad {
            active: self.contributes(),
            push,
            pull,
            log_denominator: self.log_denominator,
            log_positive_sum: self.log_positive_sum,
            aggregation: self.aggregation,
        }
    }
}

/// The factor that turns `Σ_j l_j` into the loss: `1/M`, `1/max(#anchors, 1)` or 1.
#[inline]
pub fn reduction_factor<T: Scalar>(reduction: Reduction, rows: usize, anchors: usize) -> T {
    match reduction {
        Reduction::Mean => T::one() / cast(rows.max(1) as f64),
        Reduction::MeanAnchors => T::one() / cast(anchors.max(1) as f64),
        Reduction::Sum => T::one(),
    }
}

/// Row `j`'s backward coefficients: `G_jk = c_j ∂l_j/∂s_jk` for each kind of pair.
///
/// - `mean_of_logs`: `∂l_j/∂s_jk = (|P_j|/n_j)(P_jk + Q_jk S_jk) e^{s_jk}/D_j − P_jk/n_j`
/// - `log_of_mean`: `∂l_j/∂s_jk = (P_jk + Q_jk S_jk) e^{s_jk}/D_j − P_jk e^{s_jk}/Σ_i P_ji e^{s_ji}`
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RowGrad<T> {
    active: bool,
    push: T,
    pull: T,
    log_denominator: T,
    log_positive_sum: T,
    aggregation: Aggregation,
}

impl<T: Scalar> RowGrad<T> {
    /// `G_jk` for pair `(j, k)` with logit `s`.
    #[inline]
    pub fn coefficient(&self, pair: Pair<T>, s: T) -> T {
        if !self.active {
            return T::zero();
        }
        match pair {
            Pair::Neither => T::zero(),
            Pair::Positive => {
                let softmax = self.push * exp(s - self.log_denominator);
                match self.aggregation {
                    Aggregation::MeanOfLogs => softmax - self.pull,
                    Aggregation::LogOfMean => softmax - self.pull * exp(s - self.log_positive_sum),
                }
            }
            Pair::Negative { log_weight } => {
                if log_weight > T::neg_infinity() {
                    self.push * exp(s + log_weight - self.log_denominator)
                } else {
                    T::zero()
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Config;

    #[test]
    fn log_sum_exp_survives_huge_logits() {
        let mut a = LogSumExp::<f32>::default();
        for x in [1000.0, 999.0, -5.0] {
            a.push(x);
        }
        let mut b = LogSumExp::default();
        b.push(1001.0f32);
        a.merge(&b);
        let expected = 1001.0 + (1.0f32 + (-1.0f32).exp() + (-2.0f32).exp()).ln();
        assert!((a.value() - expected).abs() < 1e-3);
        assert_eq!(LogSumExp::<f64>::default().value(), f64::NEG_INFINITY);
    }

    #[test]
    fn rows_without_positives_or_negatives_give_zero() {
        let params = Config::paper().params::<f64>().unwrap();
        let mut only_negatives = RowStats::default();
        only_negatives.push(Pair::Negative { log_weight: 0.0 }, 3.0);
        let outcome = only_negatives.finish(&params, 4, 1.0);
        assert!(outcome.anchor && !outcome.contributes());
        assert_eq!(outcome.loss, 0.0);
        assert_eq!(
            outcome
                .gradient(1.0)
                .coefficient(Pair::Negative { log_weight: 0.0 }, 3.0),
            0.0
        );
    }

    #[test]
    fn gradient_coefficients_sum_to_zero_without_padding() {
        // mean_of_logs: Σ_k ∂l/∂s_jk = (|P|/n)·1 − |P|/n = 0 when D holds every term.
        let params = Config::paper().params::<f64>().unwrap();
        let pairs = [
            (Pair::Positive, 1.0),
            (Pair::Positive, -0.5),
            (Pair::Negative { log_weight: 0.3 }, 2.0),
        ];
        let mut stats = RowStats::default();
        pairs.iter().for_each(|&(p, s)| stats.push(p, s));
        let grad = stats.finish(&params, 4, 1.0).gradient(1.0);
        let total: f64 = pairs.iter().map(|&(p, s)| grad.coefficient(p, s)).sum();
        assert!(total.abs() < 1e-15);
    }
}
