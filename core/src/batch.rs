use crate::pairs::RowView;
use crate::rules::Rule;
use crate::{Config, Error, Params, Scalar};

/// The largest pushing power `eta_j` a batch may hold. Density weights are
/// about 1 (mean 1); the bound keeps every loss and gradient finite in f32.
pub const MAX_ETA: f64 = 1e6;

/// The sizes of a batch: `rows` samples (M), `dim` features each (D), `label_dim`
/// label values each (L). Predictions have the labels' shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    /// M, the number of rows (usually two augmented views of B samples: M = 2B).
    pub rows: usize,
    /// D, the feature width.
    pub dim: usize,
    /// L, the label width (1 for ages and depths).
    pub label_dim: usize,
}

impl Shape {
    /// The shape's own rules: at least one row, widths of at least 1, and
    /// inputs whose lengths fit in a `usize`.
    ///
    /// ```
    /// use conr_core::{Error, Shape};
    /// assert!(Shape { rows: 2, dim: 3, label_dim: 1 }.validate().is_ok());
    /// let wide = Shape { rows: 2, dim: 0, label_dim: 1 };
    /// assert_eq!(wide.validate(), Err(Error::ZeroWidth { what: "features" }));
    /// ```
    pub fn validate(&self) -> Result<(), Error> {
        if self.rows == 0 {
            return Err(Error::EmptyBatch);
        }
        if self.dim == 0 {
            return Err(Error::ZeroWidth { what: "features" });
        }
        if self.label_dim == 0 {
            return Err(Error::ZeroWidth { what: "labels" });
        }
        let fits = |width: usize| self.rows.checked_mul(width).is_some();
        if !fits(self.dim) || !fits(self.label_dim) {
            return Err(Error::InvalidConfig {
                field: "shape",
                why: "M·D and M·L must fit in a usize",
            });
        }
        Ok(())
    }
}

/// The inputs of one batch, each by name, so that no two can be swapped
/// unnoticed: row-major features (M×D), labels and predictions (M×L), and
/// optional pushing powers `eta` (M, the per-sample weights; all 1 when `None`).
#[derive(Debug, Clone, Copy)]
pub struct Inputs<'a, T> {
    /// M×D features, not normalised.
    pub features: &'a [T],
    /// M×L labels.
    pub labels: &'a [T],
    /// M×L predictions (constants: they only choose the negatives).
    pub preds: &'a [T],
    /// `eta_j`, the pushing power of each row; `None` means 1 for every row.
    pub eta: Option<&'a [T]>,
}

/// A validated, borrowed view of one batch.
///
/// [`Batch::new`] checks the shape, the lengths and every rule of
/// [`crate::rules`] that does not depend on the config; [`Batch::check`]
/// adds the config and the rules that depend on it.
///
/// ```
/// use conr_core::{Batch, Error, Inputs, Shape};
/// let shape = Shape { rows: 2, dim: 2, label_dim: 1 };
/// let inputs = Inputs { features: &[1.0, 0.0, 0.0, 1.0], labels: &[20.0, 60.0], preds: &[30.0, 30.5], eta: None };
/// let batch = Batch::new(shape, inputs)?;
/// assert_eq!(batch.eta(1), 1.0);
/// let bad = Inputs { labels: &[20.0, f64::NAN], ..inputs };
/// assert_eq!(Batch::new(shape, bad).unwrap_err(), Error::NonFinite { what: "labels", row: 1 });
/// # Ok::<(), conr_core::Error>(())
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Batch<'a, T> {
    shape: Shape,
    inputs: Inputs<'a, T>,
}

impl<'a, T: Scalar> Batch<'a, T> {
    /// Validates the inputs against `shape` and wraps them.
    pub fn new(shape: Shape, inputs: Inputs<'a, T>) -> Result<Self, Error> {
        shape.validate()?;
        let lengths = [
            ("features", inputs.features.len(), shape.dim),
            ("labels", inputs.labels.len(), shape.label_dim),
            ("preds", inputs.preds.len(), shape.label_dim),
        ];
        let eta = inputs.eta.map(|w| ("weights", w.len(), 1));
        for (what, got, width) in lengths.into_iter().chain(eta) {
            let expected = shape.rows * width;
            if got != expected {
                return Err(Error::ShapeMismatch {
                    what,
                    expected,
                    got,
                });
            }
        }
        let batch = Self { shape, inputs };
        batch.obeys(|rule| !rule.needs_config())?;
        Ok(batch)
    }

    /// A batch of inputs that [`Batch::new`] already accepted with `shape`.
    #[cfg(feature = "alloc")]
    pub(crate) fn from_valid(shape: Shape, inputs: Inputs<'a, T>) -> Self {
        Self { shape, inputs }
    }

    /// Validates `config` against this batch and converts it to `T`: the
    /// config's own domain, then the rules that depend on it (under
    /// `angular`, every label and prediction vector must have a non-zero length).
    pub fn check(&self, config: &Config) -> Result<Params<T>, Error> {
        let params = config.params::<T>()?;
        self.obeys(|rule| rule.needs_config() && rule.applies(config.label_metric, true))?;
        Ok(params)
    }

    /// Checks the rules `which` selects, in order, and reports the first one
    /// broken at its first row.
    fn obeys(&self, which: impl Fn(Rule) -> bool) -> Result<(), Error> {
        for rule in Rule::ALL.into_iter().filter(|&r| which(r)) {
            // Without eta, its rules read no rows.
            let (values, width) = self.read_by(rule);
            if let Some(row) = values.chunks_exact(width).position(|v| !rule.holds(v)) {
                return Err(rule.error(row));
            }
        }
        Ok(())
    }

    /// The input `rule` reads, and its width.
    fn read_by(&self, rule: Rule) -> (&'a [T], usize) {
        let Inputs {
            features,
            labels,
            preds,
            eta,
        } = self.inputs;
        match rule {
            Rule::FeaturesFinite => (features, self.shape.dim),
            Rule::LabelsFinite | Rule::LabelsNonZero => (labels, self.shape.label_dim),
            Rule::PredsFinite | Rule::PredsNonZero => (preds, self.shape.label_dim),
            Rule::EtaFinite | Rule::EtaPositive | Rule::EtaAtMost => (eta.unwrap_or(&[]), 1),
        }
    }

    /// The batch's sizes.
    #[inline]
    pub fn shape(&self) -> Shape {
        self.shape
    }

    /// M, the number of rows.
    #[inline]
    pub fn rows(&self) -> usize {
        self.shape.rows
    }

    /// The inputs, by name.
    #[inline]
    pub fn inputs(&self) -> Inputs<'a, T> {
        self.inputs
    }

    /// All features, row-major M×D.
    #[inline]
    pub fn features(&self) -> &'a [T] {
        self.inputs.features
    }

    /// All labels, row-major M×L.
    #[inline]
    pub fn labels(&self) -> &'a [T] {
        self.inputs.labels
    }

    /// All predictions, row-major M×L.
    #[inline]
    pub fn preds(&self) -> &'a [T] {
        self.inputs.preds
    }

    /// Every row's `eta`, if given.
    #[inline]
    pub fn etas(&self) -> Option<&'a [T]> {
        self.inputs.eta
    }

    /// Row `j` of the features.
    #[inline]
    pub fn feature_row(&self, j: usize) -> &'a [T] {
        let d = self.shape.dim;
        &self.inputs.features[j * d..(j + 1) * d]
    }

    /// Row `j` of the labels.
    #[inline]
    pub fn label(&self, j: usize) -> &'a [T] {
        let l = self.shape.label_dim;
        &self.inputs.labels[j * l..(j + 1) * l]
    }

    /// Row `j` of the predictions.
    #[inline]
    pub fn pred(&self, j: usize) -> &'a [T] {
        let l = self.shape.label_dim;
        &self.inputs.preds[j * l..(j + 1) * l]
    }

    /// Row `j`'s label and prediction, as pair classification reads them.
    #[inline]
    pub fn row(&self, j: usize) -> RowView<'a, T> {
        RowView {
            index: j,
            label: self.label(j),
            pred: self.pred(j),
        }
    }

    /// `eta_j`, 1 when no `eta` was given.
    #[inline]
    pub fn eta(&self, j: usize) -> T {
        self.inputs.eta.map_or(T::one(), |w| w[j])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_come_before_values_and_rules_in_order() {
        let shape = Shape {
            rows: 2,
            dim: 1,
            label_dim: 1,
        };
        let good = Inputs {
            features: &[1.0, f64::NAN],
            labels: &[1.0, 2.0],
            preds: &[1.0, 2.0],
            eta: Some(&[1.0, -1.0]),
        };
        // NaN features and a negative eta: features are checked first.
        assert_eq!(
            Batch::new(shape, good).unwrap_err(),
            Error::NonFinite {
                what: "features",
                row: 1
            }
        );
        let short = Inputs {
            preds: &[1.0],
            ..good
        };
        assert_eq!(
            Batch::new(shape, short).unwrap_err(),
            Error::ShapeMismatch {
                what: "preds",
                expected: 2,
                got: 1
            }
        );
        let eta = Inputs {
            features: &[1.0, 2.0],
            ..good
        };
        assert_eq!(
            Batch::new(shape, eta).unwrap_err(),
            Error::NonPositiveEta { row: 1 }
        );
    }
}
