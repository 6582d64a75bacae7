use crate::pairs::RowView;
use crate::{Config, Error, LabelMetric, Params, Scalar};

/// The largest weight `eta_j` a batch may hold. Density weights are about 1
/// (mean 1); the bound keeps every loss and gradient finite in f32.
pub const MAX_WEIGHT: f64 = 1e6;

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

/// A validated, borrowed view of one batch: row-major features (M×D), labels
/// and predictions (M×L), and optional per-sample weights `eta` (M).
///
/// [`Batch::new`] checks the lengths and that every value is finite, and that
/// weights are positive and at most [`MAX_WEIGHT`]; [`Batch::check`] adds the checks that depend on the config.
#[derive(Debug, Clone, Copy)]
pub struct Batch<'a, T> {
    shape: Shape,
    features: &'a [T],
    labels: &'a [T],
    preds: &'a [T],
    weights: Option<&'a [T]>,
}

impl<'a, T: Scalar> Batch<'a, T> {
    /// Validates the inputs and wraps them. `weights: None` means `eta_j = 1`.
    pub fn new(
        shape: Shape,
        features: &'a [T],
        labels: &'a [T],
        preds: &'a [T],
        weights: Option<&'a [T]>,
    ) -> Result<Self, Error> {
        if shape.rows == 0 {
            return Err(Error::EmptyBatch);
        }
        if shape.dim == 0 {
            return Err(Error::ZeroWidth { what: "features" });
        }
        if shape.label_dim == 0 {
            return Err(Error::ZeroWidth { what: "labels" });
        }
        check_rows("features", features, shape.rows, shape.dim)?;
        check_rows("labels", labels, shape.rows, shape.label_dim)?;
        check_rows("preds", preds, shape.rows, shape.label_dim)?;
        if let Some(w) = weights {
            check_rows("weights", w, shape.rows, 1)?;
            if let Some(row) = w.iter().position(|&x| x <= T::zero()) {
                return Err(Error::NonPositiveWeight { row });
            }
            let most = crate::cast::<T>(MAX_WEIGHT);
            if let Some(row) = w.iter().position(|&x| x > most) {
                return Err(Error::WeightTooLarge { row });
            }
        }
        Ok(Self {
            shape,
            features,
            labels,
            preds,
            weights,
        })
    }

    /// Validates `config` against this batch and converts it to `T`.
    ///
    /// With the `angular` metric, every label and prediction vector must have a
    /// non-zero length.
    pub fn check(&self, config: &Config) -> Result<Params<T>, Error> {
        let params = config.params::<T>()?;
        if config.label_metric == LabelMetric::Angular {
            for (what, data) in [("labels", self.labels), ("preds", self.preds)] {
                let zero = data
                    .chunks_exact(self.shape.label_dim)
                    .position(|v| v.iter().all(|x| x.is_zero()));
                if let Some(row) = zero {
                    return Err(Error::ZeroLengthLabel { what, row });
                }
            }
        }
        Ok(params)
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

    /// All features, row-major M×D.
    #[inline]
    pub fn features(&self) -> &'a [T] {
        self.features
    }

    /// All labels, row-major M×L.
    #[inline]
    pub fn labels(&self) -> &'a [T] {
        self.labels
    }

    /// All predictions, row-major M×L.
    #[inline]
    pub fn preds(&self) -> &'a [T] {
        self.preds
    }

    /// The weights, if given.
    #[inline]
    pub fn weights(&self) -> Option<&'a [T]> {
        self.weights
    }

    /// Row `j` of the features.
    #[inline]
    pub fn feature_row(&self, j: usize) -> &'a [T] {
        let d = self.shape.dim;
        &self.features[j * d..(j + 1) * d]
    }

    /// Row `j` of the labels.
    #[inline]
    pub fn label(&self, j: usize) -> &'a [T] {
        let l = self.shape.label_dim;
        &self.labels[j * l..(j + 1) * l]
    }

    /// Row `j` of the predictions.
    #[inline]
    pub fn pred(&self, j: usize) -> &'a [T] {
        let l = self.shape.label_dim;
        &self.preds[j * l..(j + 1) * l]
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

    /// `eta_j`, 1 when no weights were given.
    #[inline]
    pub fn weight(&self, j: usize) -> T {
        self.weights.map_or(T::one(), |w| w[j])
    }
}

fn check_rows<T: Scalar>(
    what: &'static str,
    data: &[T],
    rows: usize,
    width: usize,
) -> Result<(), Error> {
    let expected = rows.checked_mul(width).ok_or(Error::ShapeMismatch {
        what,
        expected: usize::MAX,
        got: data.len(),
    })?;
    if data.len() != expected {
        return Err(Error::ShapeMismatch {
            what,
            expected,
            got: data.len(),
        });
    }
    match data.iter().position(|x| !x.is_finite()) {
        Some(i) => Err(Error::NonFinite {
            what,
            row: i / width,
        }),
        None => Ok(()),
    }
}
