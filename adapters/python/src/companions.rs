//! The losses ConR is combined with, on NumPy arrays: `conr.rank_sim`,
//! `conr.rank_n_contrast` and `conr.balanced_mse`, on the same engines as
//! `conr.compute`, the GIL released while they run.

use conr_core::dir::balanced_mse::{BalancedMse, BmseBatch, Prior, PriorKind};
use conr_core::dir::ranksim::{RankSim, RankSimBatch};
use conr_core::dir::rnc::{RankNContrast, RncBatch};
use conr_core::{Engine, Named, Shape};
use numpy::{IntoPyArray, PyArrayMethods};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::arrays::{Floats, FromFloats};
use crate::config::{knob_dict, with_overrides};
use crate::engines;
use crate::errors::to_py;

/// RankSim's loss, its gradient with respect to the features (M×D, zero
/// outside the subset), and the subset's rows in the order the ranks were
/// taken over.
#[pyclass(name = "RankSimOutput", module = "conr", frozen)]
pub struct PyRankSimOutput {
    /// The loss (a sum over the subset's rows).
    #[pyo3(get)]
    loss: f64,
    /// ∂loss/∂features, (M, D).
    #[pyo3(get)]
    grad_features: Py<PyAny>,
    /// The subset's rows.
    #[pyo3(get)]
    rows: Vec<usize>,
}

/// Rank-N-Contrast's loss and its gradient with respect to the features.
#[pyclass(name = "RncOutput", module = "conr", frozen)]
pub struct PyRncOutput {
    /// The loss (the mean over ordered pairs).
    #[pyo3(get)]
    loss: f64,
    /// ∂loss/∂features, (n, D).
    #[pyo3(get)]
    grad_features: Py<PyAny>,
}

/// Balanced MSE's loss and its gradients with respect to the predictions
/// and to σ.
#[pyclass(name = "BalancedMseOutput", module = "conr", frozen)]
pub struct PyBalancedMseOutput {
    /// The loss.
    #[pyo3(get)]
    loss: f64,
    /// ∂loss/∂preds, the predictions' shape.
    #[pyo3(get)]
    grad_preds: Py<PyAny>,
    /// ∂loss/∂σ.
    #[pyo3(get)]
    grad_noise_sigma: f64,
}

#[pymethods]
impl PyRankSimOutput {
    fn __repr__(&self) -> String {
        format!(
            "RankSimOutput(loss={:?}, rows={})",
            self.loss,
            self.rows.len()
        )
    }
}

#[pymethods]
impl PyRncOutput {
    fn __repr__(&self) -> String {
        format!("RncOutput(loss={:?})", self.loss)
    }
}

#[pymethods]
impl PyBalancedMseOutput {
    fn __repr__(&self) -> String {
        format!(
            "BalancedMseOutput(loss={:?}, grad_noise_sigma={:?})",
            self.loss, self.grad_noise_sigma
        )
    }
}

/// The (rows, width) of an array of shape (n, w), or of (n,) as width 1
/// where `vector` allows it.
fn rows_and_width(floats: &Floats<'_>, what: &str, vector: bool) -> PyResult<(usize, usize)> {
    match *floats.shape() {
        [n] if vector => Ok((n, 1)),
        [n, w] => Ok((n, w)),
        ref other => {
            let wanted = if vector { "(M,) or (M, L)" } else { "(M, D)" };
            Err(PyValueError::new_err(format!(
                "{what} must have shape {wanted}, not {other:?}"
            )))
        }
    }
}

fn name<N: Named>(value: &str) -> PyResult<N> {
    N::from_name(value).map_err(to_py)
}

fn widen<T: FromFloats>(x: T) -> f64 {
    x.to_f64().unwrap_or(f64::NAN)
}

/// A loss of features and labels: RankSim (with its given rows) or RnC.
enum FeatureLoss<'a> {
    RankSim(&'a RankSim, Option<&'a [usize]>),
    Rnc(&'a RankNContrast),
}

/// Reads `features` (M, D) and `labels` (M,) or (M, L), runs `loss` on the
/// engine named `engine` in the features' precision with the GIL released,
/// and returns the loss, ∂loss/∂features as an (M, D) array, and RankSim's
/// subset rows (empty for RnC).
fn feature_loss(
    py: Python<'_>,
    features: &Bound<'_, PyAny>,
    labels: &Bound<'_, PyAny>,
    engine: &str,
    loss: &FeatureLoss<'_>,
) -> PyResult<(f64, Py<PyAny>, Vec<usize>)> {
    let (features, labels) = (
        Floats::read(features, "features")?,
        Floats::read(labels, "labels")?,
    );
    let (n, dim) = rows_and_width(&features, "features", false)?;
    let (_, label_dim) = rows_and_width(&labels, "labels", true)?;
    let shape = Shape {
        rows: n,
        dim,
        label_dim,
    };
    let engine = engines::engine(py, engine)?;
    fn run<T: FromFloats>(
        py: Python<'_>,
        engine: &dyn Engine<T>,
        shape: Shape,
        (features, labels): (&Floats<'_>, &Floats<'_>),
        loss: &FeatureLoss<'_>,
    ) -> PyResult<(f64, Py<PyAny>, Vec<usize>)> {
        let (f, l) = (T::values(features), T::values(labels));
        let (value, grad, rows) = py
            .detach(|| match *loss {
                FeatureLoss::RankSim(config, rows) => RankSimBatch::new(shape, &f, &l, rows)
                    .and_then(|b| engine.rank_sim(&b, config))
                    .map(|o| (o.loss, o.grad_features, o.rows)),
                FeatureLoss::Rnc(config) => RncBatch::new(shape, &f, &l)
                    .and_then(|b| engine.rank_n_contrast(&b, config))
                    .map(|o| (o.loss, o.grad_features, Vec::new())),
            })
            .map_err(to_py)?;
        let grad = grad
            .into_pyarray(py)
            .reshape([shape.rows, shape.dim])?
            .into_any()
            .unbind();
        Ok((widen(value), grad, rows))
    }
    if features.is_f64() {
        run::<f64>(py, &*engine, shape, (&features, &labels), loss)
    } else {
        run::<f32>(py, &*engine, shape, (&features, &labels), loss)
    }
}

/// RankSim (Gong et al., ICML 2022) on a batch of NumPy arrays.
///
/// `features` is (M, D), float32 or float64, and sets the precision;
/// `labels` is (M,) or (M, L). The knobs are RankSim's, by keyword
/// (`conr.companion_knobs("ranksim")` lists them with their defaults):
/// `interpolation_lambda` is λ of the blackbox rank gradient,
/// `label_metric` `"l1"`, `"l2"` or `"linf"`, `subsample`
/// `"one_per_label"` (the reference's subset, chosen by `seed`) or
/// `"every"`. `rows` gives the subset's rows instead.
#[pyfunction]
#[pyo3(signature = (features, labels, *, rows=None, engine="fast", **knobs))]
pub fn rank_sim<'py>(
    py: Python<'py>,
    features: &Bound<'py, PyAny>,
    labels: &Bound<'py, PyAny>,
    rows: Option<Vec<usize>>,
    engine: &str,
    knobs: Option<&Bound<'py, PyDict>>,
) -> PyResult<PyRankSimOutput> {
    let config = with_overrides(RankSim::default(), "rank_sim", knobs)?;
    let loss = FeatureLoss::RankSim(&config, rows.as_deref());
    let (loss, grad_features, rows) = feature_loss(py, features, labels, engine, &loss)?;
    Ok(PyRankSimOutput {
        loss,
        grad_features,
        rows,
    })
}

/// Rank-N-Contrast (Zha et al., NeurIPS 2023) on a batch of NumPy arrays.
///
/// `features` is (n, D), any rows (the reference's two views are its 2·bs
/// rows, view 0's then view 1's); `labels` is (n,) or (n, L). The knobs
/// are Rank-N-Contrast's, by keyword (`conr.companion_knobs("rnc")`):
/// `temperature` is τ, `label_metric` `"l1"` (summed over label
/// dimensions, as in the reference), `"l2"` or `"linf"`.
#[pyfunction]
#[pyo3(signature = (features, labels, *, engine="fast", **knobs))]
pub fn rank_n_contrast<'py>(
    py: Python<'py>,
    features: &Bound<'py, PyAny>,
    labels: &Bound<'py, PyAny>,
    engine: &str,
    knobs: Option<&Bound<'py, PyDict>>,
) -> PyResult<PyRncOutput> {
    let config = with_overrides(RankNContrast::default(), "rank_n_contrast", knobs)?;
    let loss = FeatureLoss::Rnc(&config);
    let (loss, grad_features, _) = feature_loss(py, features, labels, engine, &loss)?;
    Ok(PyRncOutput {
        loss,
        grad_features,
    })
}

/// Every knob of a companion loss, `"ranksim"` or `"rnc"`, by its Python
/// name: its default, or the value `overrides` gives it, validated. Errors
/// name `caller` as the function called. The torch companions pass these
/// values to their ops.
#[pyfunction]
#[pyo3(signature = (loss, caller=None, **overrides))]
pub fn companion_knobs<'py>(
    py: Python<'py>,
    loss: &str,
    caller: Option<&str>,
    overrides: Option<&Bound<'py, PyDict>>,
) -> PyResult<Bound<'py, PyDict>> {
    let caller = caller.unwrap_or("companion_knobs");
    match loss {
        "ranksim" => knob_dict(py, &with_overrides(RankSim::default(), caller, overrides)?),
        "rnc" => knob_dict(
            py,
            &with_overrides(RankNContrast::default(), caller, overrides)?,
        ),
        other => Err(PyValueError::new_err(format!(
            "loss must be 'ranksim' or 'rnc', not {other:?}"
        ))),
    }
}

/// Balanced MSE (Ren et al., CVPR 2022) on NumPy arrays.
///
/// `preds` and `labels` are (n,) or (n, L), float32 or float64 (the
/// predictions set the precision); `noise_sigma` is σ. `variant` is
/// `"bmc"` (the batch's labels as the prior; any L), `"gai"` (a Gaussian
/// mixture: `gmm` is a dict of `means`, `variances`, `weights`; L = 1) or
/// `"bni"` (`bucket_centers` and `bucket_weights`; L = 1).
#[pyfunction]
#[pyo3(signature = (
    preds, labels, noise_sigma, *, variant="bmc", gmm=None, bucket_centers=None,
    bucket_weights=None, engine="fast"
))]
#[allow(clippy::too_many_arguments)]
pub fn balanced_mse<'py>(
    py: Python<'py>,
    preds: &Bound<'py, PyAny>,
    labels: &Bound<'py, PyAny>,
    noise_sigma: f64,
    variant: &str,
    gmm: Option<std::collections::HashMap<String, Vec<f64>>>,
    bucket_centers: Option<Vec<f64>>,
    bucket_weights: Option<Vec<f64>>,
    engine: &str,
) -> PyResult<PyBalancedMseOutput> {
    let missing = |why: &str| PyValueError::new_err(why.to_string());
    let gmm_list = |key: &str| -> PyResult<&[f64]> {
        gmm.as_ref()
            .and_then(|g| g.get(key))
            .map(Vec::as_slice)
            .ok_or_else(|| missing(&format!("variant 'gai' needs gmm['{key}']")))
    };
    let prior = match name::<PriorKind>(variant)? {
        PriorKind::Bmc => Prior::Batch,
        PriorKind::Gai => Prior::Gmm {
            means: gmm_list("means")?,
            variances: gmm_list("variances")?,
            weights: gmm_list("weights")?,
        },
        PriorKind::Bni => match (&bucket_centers, &bucket_weights) {
            (Some(centers), Some(weights)) => Prior::Buckets { centers, weights },
            _ => {
                return Err(missing(
                    "variant 'bni' needs bucket_centers and bucket_weights",
                ));
            }
        },
    };
    let config = BalancedMse { noise_sigma, prior };
    let (preds_array, labels) = (
        Floats::read(preds, "preds")?,
        Floats::read(labels, "labels")?,
    );
    let (n, label_dim) = rows_and_width(&preds_array, "preds", true)?;
    let engine = engines::engine(py, engine)?;
    let shape = preds_array.shape().to_vec();
    fn run<T: FromFloats>(
        py: Python<'_>,
        engine: &dyn Engine<T>,
        (n, label_dim): (usize, usize),
        (preds, labels): (&Floats<'_>, &Floats<'_>),
        config: &BalancedMse<'_>,
        shape: &[usize],
    ) -> PyResult<PyBalancedMseOutput> {
        let (p, l) = (T::values(preds), T::values(labels));
        let out = py
            .detach(|| {
                BmseBatch::new(n, label_dim, &p, &l).and_then(|b| engine.balanced_mse(&b, config))
            })
            .map_err(to_py)?;
        Ok(PyBalancedMseOutput {
            loss: widen(out.loss),
            grad_preds: out
                .grad_preds
                .into_pyarray(py)
                .reshape(shape)?
                .into_any()
                .unbind(),
            grad_noise_sigma: widen(out.grad_noise_sigma),
        })
    }
    let arrays = (&preds_array, &labels);
    if preds_array.is_f64() {
        run::<f64>(py, &*engine, (n, label_dim), arrays, &config, &shape)
    } else {
        run::<f32>(py, &*engine, (n, label_dim), arrays, &config, &shape)
    }
}
