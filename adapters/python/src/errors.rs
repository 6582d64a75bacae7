//! conr's errors as Python exceptions, with the core's message: a
//! `ValueError` where the input is at fault, a `RuntimeError` where the
//! engine or its device failed.

use pyo3::PyErr;
use pyo3::exceptions::{PyRuntimeError, PyValueError};

/// The Python exception of a core error.
pub fn to_py(error: conr_core::Error) -> PyErr {
    if error.is_input() {
        PyValueError::new_err(error.to_string())
    } else {
        PyRuntimeError::new_err(error.to_string())
    }
}
