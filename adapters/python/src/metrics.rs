//! `conr.shot_metrics`: the DIR evaluation on NumPy arrays.

use conr_core::Named;
use conr_core::evaluation::{Metrics, Shots, shot_metrics as evaluate};
use numpy::PyReadonlyArray1;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

use crate::errors::to_py;

fn metrics_dict<'py>(
    py: Python<'py>,
    m: &Metrics,
    dict: Option<Bound<'py, PyDict>>,
) -> PyResult<Bound<'py, PyDict>> {
    let d = dict.unwrap_or_else(|| PyDict::new(py));
    d.set_item("count", m.count)?;
    d.set_item("mse", m.mse)?;
    d.set_item("mae", m.mae)?;
    d.set_item("gmean", m.gmean)?;
    Ok(d)
}

/// MSE, MAE and the geometric mean of the absolute errors over all test
/// samples and the many-, medium- and few-shot regions, and per label.
#[pyfunction]
#[pyo3(signature = (preds, labels, train_labels, *, many=100.0, few=20.0, bin_width=None))]
pub fn shot_metrics<'py>(
    py: Python<'py>,
    preds: PyReadonlyArray1<'py, f64>,
    labels: PyReadonlyArray1<'py, f64>,
    train_labels: PyReadonlyArray1<'py, f64>,
    many: f64,
    few: f64,
    bin_width: Option<f64>,
) -> PyResult<Bound<'py, PyDict>> {
    let shots = Shots {
        many,
        few,
        bin_width,
    };
    let (p, l, t) = (
        preds.as_slice()?,
        labels.as_slice()?,
        train_labels.as_slice()?,
    );
    let m = py.detach(|| evaluate(&shots, p, l, t)).map_err(to_py)?;
    let out = PyDict::new(py);
    for (name, region) in [
        ("all", &m.all),
        ("many", &m.many),
        ("medium", &m.medium),
        ("few", &m.few),
    ] {
        out.set_item(name, metrics_dict(py, region, None)?)?;
    }
    let per_label = PyList::empty(py);
    for label in &m.per_label {
        let d = PyDict::new(py);
        d.set_item("label", label.label)?;
        d.set_item("train_count", label.train_count)?;
        d.set_item("region", label.region.name())?;
        per_label.append(metrics_dict(py, &label.metrics, Some(d))?)?;
    }
    out.set_item("per_label", per_label)?;
    Ok(out)
}
