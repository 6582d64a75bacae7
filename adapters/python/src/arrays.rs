//! NumPy arrays in: float32 or float64, read in place where they are
//! C-contiguous and of the batch's precision, converted otherwise.

use std::borrow::Cow;

use conr_core::Scalar;
use numpy::{PyReadonlyArrayDyn, PyUntypedArray, PyUntypedArrayMethods};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;

/// A float array as the caller gave it.
pub enum Floats<'py> {
    F32(PyReadonlyArrayDyn<'py, f32>),
    F64(PyReadonlyArrayDyn<'py, f64>),
}

impl<'py> Floats<'py> {
    /// `value` as a float32 or float64 NumPy array, or a `TypeError` naming `what`.
    pub fn read(value: &Bound<'py, PyAny>, what: &str) -> PyResult<Self> {
        if let Ok(a) = value.extract::<PyReadonlyArrayDyn<'py, f32>>() {
            return Ok(Floats::F32(a));
        }
        if let Ok(a) = value.extract::<PyReadonlyArrayDyn<'py, f64>>() {
            return Ok(Floats::F64(a));
        }
        let kind = match value.cast::<PyUntypedArray>() {
            Ok(array) => format!("a numpy array of {}", array.dtype()),
            Err(_) => value.get_type().name()?.to_string(),
        };
        Err(PyTypeError::new_err(format!(
            "{what} must be a float32 or float64 numpy array, not {kind}"
        )))
    }

    /// Whether the values are float64.
    pub fn is_f64(&self) -> bool {
        matches!(self, Floats::F64(_))
    }

    /// The array's shape.
    pub fn shape(&self) -> &[usize] {
        match self {
            Floats::F32(a) => a.shape(),
            Floats::F64(a) => a.shape(),
        }
    }
}

/// A scalar type a batch is computed in, read from either kind of array.
pub trait FromFloats: Scalar + numpy::Element {
    /// The values of `floats` in row-major order: the array's own memory
    /// where it is C-contiguous and of this type, a copy otherwise.
    fn values<'a>(floats: &'a Floats<'_>) -> Cow<'a, [Self]>;
}

fn row_major<A: numpy::Element + Copy, T>(
    array: &PyReadonlyArrayDyn<'_, A>,
    convert: impl Fn(A) -> T,
) -> Vec<T> {
    array.as_array().iter().map(|&x| convert(x)).collect()
}

/// The array's own memory where it is C-contiguous, a row-major copy
/// otherwise. (`as_slice` alone also takes Fortran-ordered arrays, whose
/// memory is column-major.)
fn in_place<'a, T: numpy::Element + Copy>(array: &'a PyReadonlyArrayDyn<'_, T>) -> Cow<'a, [T]> {
    match array.as_slice() {
        Ok(values) if array.is_c_contiguous() => Cow::Borrowed(values),
        _ => Cow::Owned(row_major(array, |x| x)),
    }
}

impl FromFloats for f32 {
    fn values<'a>(floats: &'a Floats<'_>) -> Cow<'a, [f32]> {
        match floats {
            Floats::F32(a) => in_place(a),
            Floats::F64(a) => Cow::Owned(row_major(a, |x| x as f32)),
        }
    }
}

impl FromFloats for f64 {
    fn values<'a>(floats: &'a Floats<'_>) -> Cow<'a, [f64]> {
        match floats {
            Floats::F64(a) => in_place(a),
            Floats::F32(a) => Cow::Owned(row_major(a, f64::from)),
        }
    }
}
