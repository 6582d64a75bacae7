//! FDS's steps on NumPy arrays, for `conr.torch.FDS` (which holds the
//! buffers, as torch tensors, and runs the reference's epoch protocol over
//! these): the window, when each step applies, the statistics pass in its
//! two halves (so that ranks can add up each half), the running update in
//! place, the bucket smoothing, and the smoothing of a batch with its scale.

use conr_core::fds::groups::{self, NO_GROUP, assign, keys, keys_len};
use conr_core::fds::moments::{self, GroupStats, Pass, Rows};
use conr_core::fds::update::{
    GroupMoments, Statistics, last_epoch_due, running_due, smoothing_due,
};
use conr_core::fds::{Fds, calibrate, window};
use conr_core::{Engine, Error};
use numpy::{
    IntoPyArray, PyArray1, PyArrayMethods, PyReadonlyArray1, PyReadwriteArrayDyn,
    PyUntypedArrayMethods,
};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::arrays::{Floats, FromFloats};
use crate::config::with_overrides;
use crate::engines;
use crate::errors::to_py;

fn config(knobs: Option<&Bound<'_, PyDict>>) -> PyResult<Fds> {
    let c = with_overrides(Fds::default(), "FDS", knobs)?;
    c.validate().map_err(to_py)?;
    Ok(c)
}

/// (rows, dim) of a 2-D array.
fn matrix(floats: &Floats<'_>, what: &str) -> PyResult<(usize, usize)> {
    match *floats.shape() {
        [n, d] => Ok((n, d)),
        ref other => Err(PyValueError::new_err(format!(
            "{what} must have shape (N, D), not {other:?}"
        ))),
    }
}

/// The smoothing window, float64, summing to 1 (the official behaviour's
/// values are float32's, as the reference holds them).
#[pyfunction]
#[pyo3(signature = (**knobs))]
pub fn fds_window<'py>(
    py: Python<'py>,
    knobs: Option<&Bound<'py, PyDict>>,
) -> PyResult<Bound<'py, PyArray1<f64>>> {
    let c = config(knobs)?;
    let mut w = vec![0.0; c.ks];
    window::window(&c, &mut w).map_err(to_py)?;
    Ok(w.into_pyarray(py))
}

/// Which steps apply at `epoch`, given the epoch counter: (the last-epoch
/// update, the running update, the smoothing).
#[pyfunction]
#[pyo3(signature = (epoch, counter, **knobs))]
pub fn fds_due(
    epoch: u64,
    counter: u64,
    knobs: Option<&Bound<'_, PyDict>>,
) -> PyResult<(bool, bool, bool)> {
    let c = config(knobs)?;
    Ok((
        last_epoch_due(epoch, counter),
        running_due(epoch, counter),
        smoothing_due(&c, epoch),
    ))
}

/// The ascending keys of the groups the labels of the whole epoch form
/// (every rank's labels, across ranks).
#[pyfunction]
#[pyo3(signature = (labels, **knobs))]
pub fn fds_keys<'py>(
    py: Python<'py>,
    labels: PyReadonlyArray1<'py, f64>,
    knobs: Option<&Bound<'py, PyDict>>,
) -> PyResult<Bound<'py, PyArray1<f64>>> {
    let c = config(knobs)?;
    let labels = labels.as_slice()?;
    let mut k = vec![0.0; keys_len(&c, labels.len())];
    let n = keys(&c, labels, &mut k).map_err(to_py)?;
    k.truncate(n);
    Ok(k.into_pyarray(py))
}

/// An epoch's features (N, D) as the caller gave them, each row's group
/// among `keys`, and the number of groups.
struct Epoch<'py> {
    features: Floats<'py>,
    dim: usize,
    of_row: Vec<u32>,
    groups: usize,
}

impl<'py> Epoch<'py> {
    fn read(c: &Fds, features: &Bound<'py, PyAny>, labels: &[f64], keys: &[f64]) -> PyResult<Self> {
        let features = Floats::read(features, "features")?;
        let (n, dim) = matrix(&features, "features")?;
        if n != labels.len() {
            return Err(PyValueError::new_err(format!(
                "features has {n} rows but labels has {}",
                labels.len()
            )));
        }
        let mut of_row = vec![NO_GROUP; labels.len()];
        assign(c, keys, labels, &mut of_row).map_err(to_py)?;
        Ok(Self {
            features,
            dim,
            of_row,
            groups: keys.len(),
        })
    }

    /// `job` on the epoch's rows, in the features' precision, on the engine
    /// called `engine`, with the GIL released.
    fn run<J: RowsJob>(&self, py: Python<'_>, engine: &str, job: &J) -> PyResult<J::Out> {
        let engine = engines::engine(py, engine)?;
        fn on<T: FromFloats, J: RowsJob>(
            py: Python<'_>,
            epoch: &Epoch<'_>,
            engine: &dyn Engine<T>,
            job: &J,
        ) -> PyResult<J::Out> {
            let f = T::values(&epoch.features);
            let (dim, of_row, groups) = (epoch.dim, &epoch.of_row[..], epoch.groups);
            py.detach(|| job.run(engine, &Rows::new(&f, dim, of_row, groups)?))
                .map_err(to_py)
        }
        if self.features.is_f64() {
            on::<f64, J>(py, self, &*engine, job)
        } else {
            on::<f32, J>(py, self, &*engine, job)
        }
    }
}

/// Work on an epoch's rows, written once for both precisions.
trait RowsJob: Sync {
    type Out: Send;
    fn run<T: FromFloats>(
        &self,
        engine: &dyn Engine<T>,
        rows: &Rows<'_, T>,
    ) -> Result<Self::Out, Error>;
}

/// One pass ([`Pass`]) and the group counts.
struct PassJob<'a>(Pass<'a>);

impl RowsJob for PassJob<'_> {
    type Out = (Vec<f64>, Vec<f64>);
    fn run<T: FromFloats>(
        &self,
        engine: &dyn Engine<T>,
        rows: &Rows<'_, T>,
    ) -> Result<Self::Out, Error> {
        let mut out = vec![0.0; self.0.out_len(rows)];
        engine.fds_pass(rows, self.0, &mut out)?;
        let mut counts = vec![0.0; rows.groups()];
        moments::count(rows, &mut counts)?;
        Ok((out, counts))
    }
}

/// The groups' counts, means and variances in one read.
struct StatsJob;

impl RowsJob for StatsJob {
    type Out = GroupStats;
    fn run<T: FromFloats>(
        &self,
        engine: &dyn Engine<T>,
        rows: &Rows<'_, T>,
    ) -> Result<GroupStats, Error> {
        GroupStats::of(rows, Some(engine))
    }
}

fn grid<'py>(py: Python<'py>, values: Vec<f64>, rows: usize) -> PyResult<Bound<'py, PyAny>> {
    let cols = values.len() / rows.max(1);
    Ok(values.into_pyarray(py).reshape([rows, cols])?.into_any())
}

/// The first half of the statistics pass across ranks: per group, `Σ x`
/// (G, D) and the row count (G,), both float64, to add up across ranks.
#[pyfunction]
#[pyo3(signature = (features, labels, keys, *, engine="fast", **knobs))]
pub fn fds_sums<'py>(
    py: Python<'py>,
    features: &Bound<'py, PyAny>,
    labels: PyReadonlyArray1<'py, f64>,
    keys: PyReadonlyArray1<'py, f64>,
    engine: &str,
    knobs: Option<&Bound<'py, PyDict>>,
) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyArray1<f64>>)> {
    let c = config(knobs)?;
    let keys = keys.as_slice()?;
    let epoch = Epoch::read(&c, features, labels.as_slice()?, keys)?;
    let (sums, counts) = epoch.run(py, engine, &PassJob(Pass::Sums))?;
    Ok((grid(py, sums, keys.len())?, counts.into_pyarray(py)))
}

/// The second half: the group means from the (added-up) sums and counts,
/// and per group `Σ (x − mean)²` (G, D), to add up across ranks.
#[pyfunction]
#[pyo3(signature = (features, labels, keys, sums, counts, *, engine="fast", **knobs))]
#[allow(clippy::too_many_arguments)]
pub fn fds_squares<'py>(
    py: Python<'py>,
    features: &Bound<'py, PyAny>,
    labels: PyReadonlyArray1<'py, f64>,
    keys: PyReadonlyArray1<'py, f64>,
    sums: &Bound<'py, PyAny>,
    counts: PyReadonlyArray1<'py, f64>,
    engine: &str,
    knobs: Option<&Bound<'py, PyDict>>,
) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyAny>)> {
    let c = config(knobs)?;
    let (keys, counts) = (keys.as_slice()?, counts.as_slice()?);
    let epoch = Epoch::read(&c, features, labels.as_slice()?, keys)?;
    let mut means = f64::values(&Floats::read(sums, "sums")?).into_owned();
    if counts.len() != keys.len() || means.len() != keys.len() * epoch.dim {
        return Err(PyValueError::new_err(
            "sums and counts must have one row per key",
        ));
    }
    moments::means(&mut means, counts);
    let (squares, _) = epoch.run(py, engine, &PassJob(Pass::Squares { means: &means }))?;
    Ok((grid(py, means, keys.len())?, grid(py, squares, keys.len())?))
}

/// The groups' variances from their (added-up) squares about the means
/// and their counts (over `k − 1`, or `k` for a group of one).
#[pyfunction]
pub fn fds_variances<'py>(
    py: Python<'py>,
    squares: &Bound<'py, PyAny>,
    counts: PyReadonlyArray1<'py, f64>,
) -> PyResult<Bound<'py, PyAny>> {
    let counts = counts.as_slice()?;
    let mut v = f64::values(&Floats::read(squares, "squares")?).into_owned();
    if v.len() % counts.len().max(1) != 0 {
        return Err(PyValueError::new_err("squares must have one row per count"));
    }
    moments::variances(&mut v, counts);
    grid(py, v, counts.len())
}

/// One process's statistics pass in one read of the features: per group,
/// the count (G,), mean and variance (G, D), all float64.
#[pyfunction]
#[pyo3(signature = (features, labels, keys, *, engine="fast", **knobs))]
#[allow(clippy::type_complexity)]
pub fn fds_moments<'py>(
    py: Python<'py>,
    features: &Bound<'py, PyAny>,
    labels: PyReadonlyArray1<'py, f64>,
    keys: PyReadonlyArray1<'py, f64>,
    engine: &str,
    knobs: Option<&Bound<'py, PyDict>>,
) -> PyResult<(
    Bound<'py, PyArray1<f64>>,
    Bound<'py, PyAny>,
    Bound<'py, PyAny>,
)> {
    let c = config(knobs)?;
    let keys = keys.as_slice()?;
    let epoch = Epoch::read(&c, features, labels.as_slice()?, keys)?;
    let stats = epoch.run(py, engine, &StatsJob)?;
    Ok((
        stats.counts.into_pyarray(py),
        grid(py, stats.means, keys.len())?,
        grid(py, stats.variances, keys.len())?,
    ))
}

/// The running update of epoch `epoch`, in place on the buffers (float32
/// or float64 arrays, C-contiguous), from the groups' counts, means and
/// variances.
#[pyfunction]
#[pyo3(signature = (running_mean, running_var, num_samples_tracked, keys, counts, means, variances, epoch, **knobs))]
#[allow(clippy::too_many_arguments)]
pub fn fds_apply<'py>(
    running_mean: &Bound<'py, PyAny>,
    running_var: &Bound<'py, PyAny>,
    num_samples_tracked: &Bound<'py, PyAny>,
    keys: PyReadonlyArray1<'py, f64>,
    counts: PyReadonlyArray1<'py, f64>,
    means: &Bound<'py, PyAny>,
    variances: &Bound<'py, PyAny>,
    epoch: u64,
    knobs: Option<&Bound<'py, PyDict>>,
) -> PyResult<()> {
    let c = config(knobs)?;
    let (keys, counts) = (keys.as_slice()?, counts.as_slice()?);
    let means = f64::values(&Floats::read(means, "means")?).into_owned();
    let variances = f64::values(&Floats::read(variances, "variances")?).into_owned();
    let groups = GroupMoments {
        keys,
        counts,
        means: &means,
        variances: &variances,
    };
    fn update<'py, T: FromFloats>(
        c: &Fds,
        epoch: u64,
        buffers: [&Bound<'py, PyAny>; 3],
        groups: &GroupMoments<'_, f64>,
    ) -> PyResult<()> {
        let mut arrays = Vec::with_capacity(3);
        for (b, what) in buffers
            .iter()
            .zip(["running_mean", "running_var", "num_samples_tracked"])
        {
            let a: PyReadwriteArrayDyn<'py, T> = b.extract().map_err(|_| {
                PyTypeError::new_err(format!(
                    "{what} must be a writable array of the buffers' dtype"
                ))
            })?;
            if !a.is_c_contiguous() {
                return Err(PyValueError::new_err(format!(
                    "{what} must be C-contiguous"
                )));
            }
            arrays.push(a);
        }
        let [mut m, mut v, mut n] =
            <[_; 3]>::try_from(arrays).map_err(|_| PyValueError::new_err("three buffers"))?;
        let mut stats = Statistics {
            running_mean: m.as_slice_mut()?,
            running_var: v.as_slice_mut()?,
            num_samples_tracked: n.as_slice_mut()?,
        };
        stats.update(c, epoch, groups).map_err(to_py)
    }
    let buffers = [running_mean, running_var, num_samples_tracked];
    if running_mean
        .extract::<PyReadwriteArrayDyn<'py, f32>>()
        .is_ok()
    {
        update::<f32>(&c, epoch, buffers, &groups)
    } else {
        update::<f64>(&c, epoch, buffers, &groups)
    }
}

/// The buckets (B, D) convolved with the window along the bucket axis,
/// reflect-padded, in the array's dtype.
#[pyfunction]
#[pyo3(signature = (values, **knobs))]
pub fn fds_smooth_buckets<'py>(
    py: Python<'py>,
    values: &Bound<'py, PyAny>,
    knobs: Option<&Bound<'py, PyDict>>,
) -> PyResult<Bound<'py, PyAny>> {
    let c = config(knobs)?;
    let values = Floats::read(values, "values")?;
    let (b, dim) = matrix(&values, "values")?;
    if b != c.buckets() {
        return Err(PyValueError::new_err(format!(
            "values has {b} buckets, the config {}",
            c.buckets()
        )));
    }
    let mut w = vec![0.0; c.ks];
    window::window(&c, &mut w).map_err(to_py)?;
    fn run<'py, T: FromFloats>(
        py: Python<'py>,
        values: &Floats<'_>,
        dim: usize,
        w: &[f64],
    ) -> PyResult<Bound<'py, PyAny>> {
        let v = T::values(values);
        let mut out = vec![T::zero(); v.len()];
        window::smooth_buckets(&v, dim, w, &mut out);
        let rows = v.len() / dim.max(1);
        Ok(out.into_pyarray(py).reshape([rows, dim])?.into_any())
    }
    if values.is_f64() {
        run::<f64>(py, &values, dim, &w)
    } else {
        run::<f32>(py, &values, dim, &w)
    }
}

/// Smooths a batch (n, D) with the given statistics (each (B, D)): the
/// smoothed features and `∂out/∂features` (elementwise), in the features'
/// dtype.
#[pyfunction]
#[pyo3(signature = (features, labels, mean, var, smoothed_mean, smoothed_var, **knobs))]
#[allow(clippy::too_many_arguments)]
pub fn fds_smooth<'py>(
    py: Python<'py>,
    features: &Bound<'py, PyAny>,
    labels: PyReadonlyArray1<'py, f64>,
    mean: &Bound<'py, PyAny>,
    var: &Bound<'py, PyAny>,
    smoothed_mean: &Bound<'py, PyAny>,
    smoothed_var: &Bound<'py, PyAny>,
    knobs: Option<&Bound<'py, PyDict>>,
) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyAny>)> {
    let c = config(knobs)?;
    let features = Floats::read(features, "features")?;
    let (n, dim) = matrix(&features, "features")?;
    let (k, of_row) = groups::batch(&c, labels.as_slice()?).map_err(to_py)?;
    let stats = [
        Floats::read(mean, "mean")?,
        Floats::read(var, "var")?,
        Floats::read(smoothed_mean, "smoothed_mean")?,
        Floats::read(smoothed_var, "smoothed_var")?,
    ];
    fn run<'py, T: FromFloats>(
        py: Python<'py>,
        c: &Fds,
        (features, stats): (&Floats<'_>, &[Floats<'_>; 4]),
        (k, of_row): (&[f64], &[u32]),
        (n, dim): (usize, usize),
    ) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyAny>)> {
        let x = T::values(features);
        let [m1, v1, m2, v2] = [0, 1, 2, 3].map(|i| T::values(&stats[i]));
        let mut out = vec![T::zero(); x.len()];
        let mut scale = vec![T::one(); x.len()];
        let cal = calibrate::Calibration {
            mean: &m1,
            var: &v1,
            smoothed_mean: &m2,
            smoothed_var: &v2,
        };
        py.detach(|| calibrate::smooth(c, &cal, k, of_row, &x, &mut out, &mut scale))
            .map_err(to_py)?;
        Ok((
            out.into_pyarray(py).reshape([n, dim])?.into_any(),
            scale.into_pyarray(py).reshape([n, dim])?.into_any(),
        ))
    }
    if features.is_f64() {
        run::<f64>(py, &c, (&features, &stats), (&k, &of_row), (n, dim))
    } else {
        run::<f32>(py, &c, (&features, &stats), (&k, &of_row), (n, dim))
    }
}

/// The knobs that follow the label scale, for labels in `range` (a
/// `(low, high)` pair) at `resolution`: `{"lds": ..., "fds": ...}`, LDS's
/// density knobs (for `conr.density_weights`) and FDS's clean behaviour's
/// (for `conr.torch.FDS`), as the core's `for_labels` derives them.
#[pyfunction]
pub fn knobs_for_labels<'py>(
    py: Python<'py>,
    range: (f64, f64),
    resolution: f64,
) -> PyResult<Bound<'py, PyDict>> {
    let lds = conr_core::density::DensityConfig::for_labels(range, resolution).map_err(to_py)?;
    let fds = Fds::for_labels(range, resolution).map_err(to_py)?;
    let out = PyDict::new(py);
    out.set_item("lds", crate::config::knob_dict(py, &lds)?)?;
    out.set_item("fds", crate::config::knob_dict(py, &fds)?)?;
    Ok(out)
}
