//! The native module of the `conr` Python package: ConR, the contrastive
//! regularizer for deep imbalanced regression, on NumPy arrays, through
//! conr's engines. The Python package (`python/conr`) builds `conr.torch` on
//! it.
#![deny(unsafe_code)]

mod arrays;
mod batch;
mod companions;
mod compute;
mod config;
mod engines;
mod errors;
mod fds;
mod metrics;
mod shard;

use pyo3::prelude::*;

/// Sets the threads of the fast engine (0: one per core, the default).
#[pyfunction]
fn set_num_threads(py: Python<'_>, threads: usize) {
    engines::set_num_threads(py, threads);
}

/// The threads the fast engine computes on.
#[pyfunction]
fn get_num_threads() -> usize {
    engines::num_threads()
}

/// The adapters the gpu engine can see: a list of dicts with `name`,
/// `backend`, `device_type` and `pci` (`"0000:01:00.0"`, or None where the
/// backend gives none), for ``engine="auto"`` and ``gpu@<pci>``.
#[pyfunction]
fn gpu_adapters(py: Python<'_>) -> PyResult<Vec<Bound<'_, pyo3::types::PyDict>>> {
    conr_engines::gpu_adapters()
        .into_iter()
        .map(|a| {
            let d = pyo3::types::PyDict::new(py);
            d.set_item("name", a.name)?;
            d.set_item("backend", a.backend)?;
            d.set_item("device_type", a.device_type)?;
            d.set_item("pci", a.pci)?;
            Ok(d)
        })
        .collect()
}

/// For `os.register_at_fork(after_in_child=...)`: the child forgets the
/// parent's engines (their threads and devices live in the parent) and
/// builds its own on first use.
#[pyfunction]
fn _after_fork_in_child(py: Python<'_>) {
    engines::after_fork_in_child(py);
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_class::<config::PyConfig>()?;
    m.add_class::<compute::PyOutput>()?;
    m.add_function(wrap_pyfunction!(compute::compute, m)?)?;
    m.add_function(wrap_pyfunction!(compute::density_weights, m)?)?;
    m.add_class::<companions::PyRankSimOutput>()?;
    m.add_class::<companions::PyRncOutput>()?;
    m.add_class::<companions::PyBalancedMseOutput>()?;
    m.add_function(wrap_pyfunction!(companions::rank_sim, m)?)?;
    m.add_function(wrap_pyfunction!(companions::rank_n_contrast, m)?)?;
    m.add_function(wrap_pyfunction!(companions::balanced_mse, m)?)?;
    m.add_function(wrap_pyfunction!(companions::companion_knobs, m)?)?;
    m.add_function(wrap_pyfunction!(fds::fds_window, m)?)?;
    m.add_function(wrap_pyfunction!(fds::fds_due, m)?)?;
    m.add_function(wrap_pyfunction!(fds::fds_keys, m)?)?;
    m.add_function(wrap_pyfunction!(fds::fds_sums, m)?)?;
    m.add_function(wrap_pyfunction!(fds::fds_squares, m)?)?;
    m.add_function(wrap_pyfunction!(fds::fds_moments, m)?)?;
    m.add_function(wrap_pyfunction!(fds::fds_variances, m)?)?;
    m.add_function(wrap_pyfunction!(fds::fds_apply, m)?)?;
    m.add_function(wrap_pyfunction!(fds::fds_smooth_buckets, m)?)?;
    m.add_function(wrap_pyfunction!(fds::fds_smooth, m)?)?;
    m.add_function(wrap_pyfunction!(fds::knobs_for_labels, m)?)?;
    m.add_function(wrap_pyfunction!(metrics::shot_metrics, m)?)?;
    m.add_function(wrap_pyfunction!(shard::forward_rows, m)?)?;
    m.add_function(wrap_pyfunction!(shard::backward_rows, m)?)?;
    m.add_function(wrap_pyfunction!(shard::py_message_len, m)?)?;
    m.add_function(wrap_pyfunction!(set_num_threads, m)?)?;
    m.add_function(wrap_pyfunction!(get_num_threads, m)?)?;
    m.add_function(wrap_pyfunction!(gpu_adapters, m)?)?;
    m.add_function(wrap_pyfunction!(_after_fork_in_child, m)?)?;
    Ok(())
}
