//! Every rule a batch's values must obey, in the order conr checks them.
//!
//! The shape's rules ([`Shape::validate`](crate::Shape::validate)) and the
//! config's ([`Config::validate`](crate::Config::validate)) are checked on
//! the host. The rules on values are listed here once, as [`Rule`]s, and
//! every check reports the first rule broken, at its first row: the core's
//! [`Batch::new`](crate::Batch::new) and [`Batch::check`](crate::Batch::check),
//! and the GPU's check of caller-owned buffers, which mirrors these rules on
//! the device and reports a [`Rule::code`] and a row that
//! [`Rule::error`] turns into the same [`Error`] the host gives.
//!
//! ```
//! use conr_core::rules::Rule;
//! use conr_core::{Error, LabelMetric};
//! assert_eq!(Rule::EtaPositive.error(3), Error::NonPositiveEta { row: 3 });
//! assert_eq!(Rule::from_code(Rule::PredsNonZero.code()), Some(Rule::PredsNonZero));
//! assert!(!Rule::LabelsNonZero.applies(LabelMetric::L1, true));
//! ```

use crate::{Error, LabelMetric, MAX_ETA, Scalar, cast};

/// A rule on one row's values. The order of [`Rule::ALL`] is the order of
/// the checks: an input that breaks several rules is reported by the first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rule {
    /// Every feature is finite.
    FeaturesFinite,
    /// Every label is finite.
    LabelsFinite,
    /// Every prediction is finite.
    PredsFinite,
    /// `eta_j` is finite.
    EtaFinite,
    /// `eta_j > 0`.
    EtaPositive,
    /// `eta_j <= MAX_ETA`.
    EtaAtMost,
    /// Under `angular`, the label vector is not zero.
    LabelsNonZero,
    /// Under `angular`, the prediction vector is not zero.
    PredsNonZero,
}

impl Rule {
    /// Every rule, in the order of the checks.
    pub const ALL: [Rule; 8] = [
        Rule::FeaturesFinite,
        Rule::LabelsFinite,
        Rule::PredsFinite,
        Rule::EtaFinite,
        Rule::EtaPositive,
        Rule::EtaAtMost,
        Rule::LabelsNonZero,
        Rule::PredsNonZero,
    ];

    /// The rule's position in [`Rule::ALL`]: its code on a device.
    pub fn code(self) -> u32 {
        self as u32
    }

    /// The rule with this code.
    pub fn from_code(code: u32) -> Option<Self> {
        Self::ALL.get(code as usize).copied()
    }

    /// Whether the rule applies to a batch under `metric`, with or without `eta`.
    pub fn applies(self, metric: LabelMetric, has_eta: bool) -> bool {
        match self {
            Rule::FeaturesFinite | Rule::LabelsFinite | Rule::PredsFinite => true,
            Rule::EtaFinite | Rule::EtaPositive | Rule::EtaAtMost => has_eta,
            Rule::LabelsNonZero | Rule::PredsNonZero => metric == LabelMetric::Angular,
        }
    }

    /// Whether the rule depends on the config (checked by
    /// [`Batch::check`](crate::Batch::check), after the config itself).
    pub fn needs_config(self) -> bool {
        matches!(self, Rule::LabelsNonZero | Rule::PredsNonZero)
    }

    /// The error of a batch that breaks this rule first at `row`.
    pub fn error(self, row: usize) -> Error {
        match self {
            Rule::FeaturesFinite => Error::NonFinite {
                what: "features",
                row,
            },
            Rule::LabelsFinite => Error::NonFinite {
                what: "labels",
                row,
            },
            Rule::PredsFinite => Error::NonFinite { what: "preds", row },
            Rule::EtaFinite => Error::NonFinite {
                what: "weights",
                row,
            },
            Rule::EtaPositive => Error::NonPositiveEta { row },
            Rule::EtaAtMost => Error::EtaTooLarge { row },
            Rule::LabelsNonZero => Error::ZeroLengthLabel {
                what: "labels",
                row,
            },
            Rule::PredsNonZero => Error::ZeroLengthLabel { what: "preds", row },
        }
    }

    /// Whether one row obeys the rule: `values` is that row of the input the
    /// rule reads (features, labels, predictions, or the one `eta`).
    #[inline]
    pub fn holds<T: Scalar>(self, values: &[T]) -> bool {
        match self {
            Rule::FeaturesFinite | Rule::LabelsFinite | Rule::PredsFinite | Rule::EtaFinite => {
                values.iter().all(|x| x.is_finite())
            }
            Rule::EtaPositive => values.iter().all(|&x| x > T::zero()),
            Rule::EtaAtMost => values.iter().all(|&x| x <= cast::<T>(MAX_ETA)),
            Rule::LabelsNonZero | Rule::PredsNonZero => values.iter().any(|x| !x.is_zero()),
        }
    }
}
