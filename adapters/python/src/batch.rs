//! A batch of NumPy arrays: its shape from the arrays' shapes, and the
//! core's batch over their memory, in the features' precision.

use conr_core::{Batch, Inputs, Shape};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::arrays::{Floats, FromFloats};
use crate::errors::to_py;

/// The arrays of one batch.
pub struct Arrays<'py> {
    features: Floats<'py>,
    labels: Floats<'py>,
    preds: Floats<'py>,
    eta: Option<Floats<'py>>,
    shape: Shape,
}

impl<'py> Arrays<'py> {
    /// `features` (M, D); `labels` and `preds` (M,), (M, 1) or (M, L);
    /// `weights` (M,) or (M, 1). The lengths are the core's to check.
    pub fn read(
        features: &Bound<'py, PyAny>,
        labels: &Bound<'py, PyAny>,
        preds: &Bound<'py, PyAny>,
        weights: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Self> {
        let features = Floats::read(features, "features")?;
        let labels = Floats::read(labels, "labels")?;
        let preds = Floats::read(preds, "preds")?;
        let eta = weights.map(|w| Floats::read(w, "weights")).transpose()?;
        let (rows, dim) = match *features.shape() {
            [rows, dim] => (rows, dim),
            ref other => {
                return Err(PyValueError::new_err(format!(
                    "features must have shape (M, D), not {other:?}"
                )));
            }
        };
        let label_dim = match *labels.shape() {
            [_] => 1,
            [_, l] => l,
            ref other => {
                return Err(PyValueError::new_err(format!(
                    "labels must have shape (M,) or (M, L), not {other:?}"
                )));
            }
        };
        if preds.shape().len() > 2 {
            return Err(PyValueError::new_err(format!(
                "preds must have shape (M,) or (M, L), not {:?}",
                preds.shape()
            )));
        }
        if let Some(w) = &eta
            && !matches!(*w.shape(), [_] | [_, 1])
        {
            return Err(PyValueError::new_err(format!(
                "weights must have shape (M,) or (M, 1), not {:?}",
                w.shape()
            )));
        }
        Ok(Self {
            features,
            labels,
            preds,
            eta,
            shape: Shape {
                rows,
                dim,
                label_dim,
            },
        })
    }

    /// The batch's shape.
    pub fn shape(&self) -> Shape {
        self.shape
    }

    /// Whether the batch computes in f64 (its features are float64).
    pub fn is_f64(&self) -> bool {
        self.features.is_f64()
    }

    /// Runs `work` on the batch in `T`, validated by the core, without the
    /// GIL.
    pub fn with_batch<T: FromFloats, R: Send>(
        &self,
        py: Python<'_>,
        work: impl FnOnce(&Batch<'_, T>) -> Result<R, conr_core::Error> + Send,
    ) -> PyResult<R> {
        let features = T::values(&self.features);
        let labels = T::values(&self.labels);
        let preds = T::values(&self.preds);
        let eta = self.eta.as_ref().map(T::values);
        let inputs = Inputs {
            features: &features,
            labels: &labels,
            preds: &preds,
            eta: eta.as_deref(),
        };
        let shape = self.shape;
        py.detach(move || Batch::new(shape, inputs).and_then(|batch| work(&batch)))
            .map_err(to_py)
    }
}
