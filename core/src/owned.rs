//! A batch that owns its inputs (needs the `alloc` feature).

use alloc::vec::Vec;

use crate::{Batch, Error, Inputs, Scalar, Shape};

/// A validated batch that owns its inputs, converted from a batch in any
/// precision: for an engine that computes in another precision than its
/// caller's (the GPU's f32 for an f64 batch), and for callers that gather
/// their inputs first.
///
/// ```
/// use conr_core::{Batch, Error, Inputs, OwnedBatch, Shape};
/// let shape = Shape { rows: 2, dim: 1, label_dim: 1 };
/// let wide = Batch::new(shape, Inputs { features: &[1.0f64, 2.0], labels: &[1.0, 1e300], preds: &[0.0, 0.0], eta: None })?;
/// // 1e300 does not fit in f32: the rounded batch is refused, never computed.
/// let err = OwnedBatch::<f32>::converted(&wide).unwrap_err();
/// assert_eq!(err, Error::NonFinite { what: "labels", row: 1 });
/// # Ok::<(), Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct OwnedBatch<T> {
    shape: Shape,
    features: Vec<T>,
    labels: Vec<T>,
    preds: Vec<T>,
    eta: Option<Vec<T>>,
}

impl<T: Scalar> OwnedBatch<T> {
    /// A copy of `batch` in `T`, rounded once, and validated again: a value
    /// that does not fit in `T` becomes infinite and is refused.
    pub fn converted<U: Scalar>(batch: &Batch<'_, U>) -> Result<Self, Error> {
        let convert = |v: &[U]| -> Vec<T> {
            v.iter()
                .map(|x| x.to_f64().and_then(T::from).unwrap_or_else(T::nan))
                .collect()
        };
        Self::new(
            batch.shape(),
            convert(batch.features()),
            convert(batch.labels()),
            convert(batch.preds()),
            batch.etas().map(convert),
        )
    }

    /// A batch of these inputs, validated ([`Batch::new`]).
    pub fn new(
        shape: Shape,
        features: Vec<T>,
        labels: Vec<T>,
        preds: Vec<T>,
        eta: Option<Vec<T>>,
    ) -> Result<Self, Error> {
        let owned = Self {
            shape,
            features,
            labels,
            preds,
            eta,
        };
        Batch::new(shape, owned.inputs())?;
        Ok(owned)
    }

    fn inputs(&self) -> Inputs<'_, T> {
        Inputs {
            features: &self.features,
            labels: &self.labels,
            preds: &self.preds,
            eta: self.eta.as_deref(),
        }
    }

    /// The batch.
    pub fn batch(&self) -> Batch<'_, T> {
        Batch::from_valid(self.shape, self.inputs())
    }
}
