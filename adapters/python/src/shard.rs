//! The data-parallel protocol's two phases on NumPy arrays, for
//! `conr.torch`'s `group=` path: every rank holds the global batch (its
//! inputs all-gathered), computes its own rows' outcomes (phase 1), the
//! ranks exchange those messages, and each computes its rows' gradient and
//! its part of the loss (phase 2).

use conr_core::shard::{Header, gather, message_len, write_message};
use conr_core::{Config, Engine};
use numpy::{IntoPyArray, PyArrayMethods};
use pyo3::prelude::*;

use crate::arrays::{Floats, FromFloats};
use crate::batch::Arrays;
use crate::config::PyConfig;
use crate::engines;

fn forward<T: FromFloats>(
    py: Python<'_>,
    arrays: &Arrays<'_>,
    engine: &dyn Engine<T>,
    config: &Config,
    (start, end): (usize, usize),
) -> PyResult<Py<PyAny>> {
    let header = Header::new(config, arrays.shape());
    let message = arrays.with_batch(py, |batch| {
        let outcomes = engine.forward_rows(batch, config, start..end)?;
        let mut message = vec![T::zero(); message_len(outcomes.len())];
        write_message(&header, start, &outcomes, &mut message)?;
        Ok(message)
    })?;
    Ok(message.into_pyarray(py).into_any().unbind())
}

fn backward<T: FromFloats>(
    py: Python<'_>,
    arrays: &Arrays<'_>,
    engine: &dyn Engine<T>,
    config: &Config,
    (start, end): (usize, usize),
    messages: &[Floats<'_>],
) -> PyResult<(f64, Py<PyAny>)> {
    let header = Header::new(config, arrays.shape());
    let messages: Vec<_> = messages.iter().map(T::values).collect();
    let part = arrays.with_batch(py, |batch| {
        let views: Vec<&[T]> = messages.iter().map(|m| &m[..]).collect();
        let outcomes = gather(&header, &views)?;
        engine.backward_rows(batch, config, start..end, &outcomes)
    })?;
    let dim = arrays.shape().dim;
    let grad = part
        .grad_features
        .into_pyarray(py)
        .reshape([end - start, dim])?;
    Ok((
        part.loss.to_f64().unwrap_or(f64::NAN),
        grad.into_any().unbind(),
    ))
}

/// Phase 1 for the rank that owns rows `start..end` of the global batch:
/// its message (the batch's dtype), to all-gather.
#[pyfunction]
#[allow(clippy::too_many_arguments)]
#[pyo3(signature = (features, labels, preds, weights=None, *, config, engine="fast", rows))]
pub fn forward_rows<'py>(
    py: Python<'py>,
    features: &Bound<'py, PyAny>,
    labels: &Bound<'py, PyAny>,
    preds: &Bound<'py, PyAny>,
    weights: Option<&Bound<'py, PyAny>>,
    config: PyRef<'py, PyConfig>,
    engine: &str,
    rows: (usize, usize),
) -> PyResult<Py<PyAny>> {
    let arrays = Arrays::read(features, labels, preds, weights)?;
    let engine = engines::engine(py, engine)?;
    if arrays.is_f64() {
        forward::<f64>(py, &arrays, &*engine, &config.inner, rows)
    } else {
        forward::<f32>(py, &arrays, &*engine, &config.inner, rows)
    }
}

/// Phase 2 for the rank that owns rows `start..end`, given every rank's
/// message: its part of the loss and its rows' gradient, `(end − start, D)`.
/// Messages from another config or shape, and sets that miss or repeat a
/// row, are refused.
#[pyfunction]
#[allow(clippy::too_many_arguments)]
#[pyo3(signature = (features, labels, preds, weights=None, *, config, engine="fast", rows, messages))]
pub fn backward_rows<'py>(
    py: Python<'py>,
    features: &Bound<'py, PyAny>,
    labels: &Bound<'py, PyAny>,
    preds: &Bound<'py, PyAny>,
    weights: Option<&Bound<'py, PyAny>>,
    config: PyRef<'py, PyConfig>,
    engine: &str,
    rows: (usize, usize),
    messages: Vec<Bound<'py, PyAny>>,
) -> PyResult<(f64, Py<PyAny>)> {
    let arrays = Arrays::read(features, labels, preds, weights)?;
    let messages: Vec<Floats<'py>> = messages
        .iter()
        .map(|m| Floats::read(m, "messages"))
        .collect::<PyResult<_>>()?;
    let engine = engines::engine(py, engine)?;
    if arrays.is_f64() {
        backward::<f64>(py, &arrays, &*engine, &config.inner, rows, &messages)
    } else {
        backward::<f32>(py, &arrays, &*engine, &config.inner, rows, &messages)
    }
}

/// The length of a message carrying `rows` rows' outcomes.
#[pyfunction(name = "message_len")]
pub fn py_message_len(rows: usize) -> usize {
    message_len(rows)
}
