//! `conr.compute` and `conr.density_weights` on NumPy arrays.

use conr_core::density::DensityConfig;
use conr_core::{Engine, FloatEngine, Output};
use numpy::{IntoPyArray, PyArray1, PyArrayMethods};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::arrays::{Floats, FromFloats};
use crate::batch::Arrays;
use crate::config::PyConfig;
use crate::engines;
use crate::errors::to_py;

/// What one batch gives: the loss, its gradient with respect to the
/// features (M×D, the features' dtype), whether each row is an anchor, and
/// each row's positive and negative counts.
#[pyclass(name = "Output", module = "conr", frozen)]
pub struct PyOutput {
    /// The loss.
    #[pyo3(get)]
    loss: f64,
    /// ∂loss/∂features, (M, D).
    #[pyo3(get)]
    grad_features: Py<PyAny>,
    /// (M,) booleans.
    #[pyo3(get)]
    anchors: Py<PyAny>,
    /// (M,) uint32: |P_j|, the row itself excluded.
    #[pyo3(get)]
    positives: Py<PyAny>,
    /// (M,) uint32: |Q_j|.
    #[pyo3(get)]
    negatives: Py<PyAny>,
}

#[pymethods]
impl PyOutput {
    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let anchors = self.anchors.bind(py).cast::<PyArray1<bool>>()?.to_vec()?;
        Ok(format!(
            "Output(loss={:?}, rows={}, anchors={})",
            self.loss,
            anchors.len(),
            anchors.iter().filter(|&&a| a).count()
        ))
    }
}

fn output<T: FromFloats>(
    py: Python<'_>,
    out: Output<T>,
    rows: usize,
    dim: usize,
) -> PyResult<PyOutput> {
    let grad = out.grad_features.into_pyarray(py).reshape([rows, dim])?;
    Ok(PyOutput {
        loss: out.loss.to_f64().unwrap_or(f64::NAN),
        grad_features: grad.into_any().unbind(),
        anchors: out.anchors.into_pyarray(py).into_any().unbind(),
        positives: out.positives.into_pyarray(py).into_any().unbind(),
        negatives: out.negatives.into_pyarray(py).into_any().unbind(),
    })
}

fn run<T: FromFloats>(
    py: Python<'_>,
    arrays: &Arrays<'_>,
    engine: &dyn Engine<T>,
    config: &conr_core::Config,
) -> PyResult<PyOutput> {
    let out = arrays.with_batch(py, |batch| engine.compute(batch, config))?;
    let shape = arrays.shape();
    output(py, out, shape.rows, shape.dim)
}

/// ConR's loss, gradient, anchors and counts for one batch of NumPy arrays.
///
/// `features` is (M, D), float32 or float64, and sets the precision;
/// `labels` and `preds` are (M,), (M, 1) or (M, L); `weights` (the pushing
/// powers eta) are (M,) or (M, 1). C-contiguous arrays of the features'
/// dtype are read in place; the GIL is released while the engine runs.
/// `engine` is `"fast"`, `"reference"` or `"gpu"`.
#[pyfunction]
#[pyo3(signature = (features, labels, preds, weights=None, *, config, engine="fast"))]
pub fn compute<'py>(
    py: Python<'py>,
    features: &Bound<'py, PyAny>,
    labels: &Bound<'py, PyAny>,
    preds: &Bound<'py, PyAny>,
    weights: Option<&Bound<'py, PyAny>>,
    config: PyRef<'py, PyConfig>,
    engine: &str,
) -> PyResult<PyOutput> {
    let arrays = Arrays::read(features, labels, preds, weights)?;
    let engine: std::sync::Arc<dyn FloatEngine> = engines::engine(py, engine)?;
    let config = config.inner;
    if arrays.is_f64() {
        run::<f64>(py, &arrays, &*engine, &config)
    } else {
        run::<f32>(py, &arrays, &*engine, &config)
    }
}

/// The pushing power of each label from label density (LDS): `reweight`
/// (`"sqrt_inv"` or `"inverse"`), `kernel` (`"gaussian"`, `"triang"`,
/// `"laplace"` or `None`), `kernel_size`, `sigma`, `bins`, `bin_width`,
/// `min_label`, as `conr weights` takes them. Returns float64 weights with
/// mean 1.
#[pyfunction]
#[pyo3(signature = (labels, **config))]
pub fn density_weights<'py>(
    py: Python<'py>,
    labels: &Bound<'py, PyAny>,
    config: Option<&Bound<'py, PyDict>>,
) -> PyResult<Bound<'py, PyArray1<f64>>> {
    let c = crate::config::with_overrides(DensityConfig::default(), "density_weights", config)?;
    let labels = Floats::read(labels, "labels")?;
    let values = f64::values(&labels);
    let weights = py
        .detach(|| conr_cpu::density_weights(&c, &values))
        .map_err(to_py)?;
    Ok(weights.into_pyarray(py))
}
