//! The losses ConR is combined with, on every burn backend through the host
//! path: RankSim and Rank-N-Contrast differentiable in the features,
//! Balanced MSE in the predictions and the noise scale σ. Each reads its
//! tensors into host memory, runs a conr engine, and attaches the gradient
//! as [`crate::loss`] does for ConR.

use burn::tensor::{DType, Element, Tensor, TensorData};
use conr_core::dir::balanced_mse::{BalancedMse, BmseBatch, Prior};
use conr_core::dir::ranksim::{RankSim, RankSimBatch};
use conr_core::dir::rnc::{RankNContrast, RncBatch};
use conr_core::{Engine, FloatEngine, Scalar, Shape};

use crate::Error;
use crate::host::{read, values};
use crate::loss::attach;

/// A loss of the features alone.
enum FeatureLoss<'c> {
    RankSim(&'c RankSim),
    Rnc(&'c RankNContrast),
}

/// The rows and width of a `[n]` or `[n, L]` tensor.
fn rows_and_width(dims: &[usize], what: &str) -> Result<(usize, usize), Error> {
    match *dims {
        [n] => Ok((n, 1)),
        [n, l] => Ok((n, l)),
        _ => Err(Error::Shape(format!(
            "{what} of shape {dims:?}: need [n] or [n, L]"
        ))),
    }
}

fn feature_terms<T: Scalar + Element>(
    engine: &dyn Engine<T>,
    shape: Shape,
    features: TensorData,
    labels: TensorData,
    loss: &FeatureLoss<'_>,
) -> Result<(TensorData, TensorData), Error> {
    let (features, labels) = (values::<T>(features)?, values::<T>(labels)?);
    let (value, grad) = match loss {
        FeatureLoss::RankSim(config) => {
            let out =
                engine.rank_sim(&RankSimBatch::new(shape, &features, &labels, None)?, config)?;
            (out.loss, out.grad_features)
        }
        FeatureLoss::Rnc(config) => {
            let out = engine.rank_n_contrast(&RncBatch::new(shape, &features, &labels)?, config)?;
            (out.loss, out.grad_features)
        }
    };
    Ok((
        TensorData::new(vec![value], [1]),
        TensorData::new(grad, [shape.rows, shape.dim]),
    ))
}

fn feature_loss<const L: usize>(
    features: Tensor<2>,
    labels: Tensor<L>,
    loss: FeatureLoss<'_>,
    engine: &dyn FloatEngine,
) -> Result<Tensor<1>, Error> {
    let [rows, dim] = features.dims();
    let (label_rows, label_dim) = rows_and_width(&labels.dims(), "labels")?;
    if label_rows != rows {
        return Err(Error::Shape(format!(
            "{label_rows} label rows for {rows} feature rows"
        )));
    }
    let shape = Shape {
        rows,
        dim,
        label_dim,
    };
    let (data, labels) = (read("features", features.clone())?, read("labels", labels)?);
    let (value, grad) = match data.dtype() {
        DType::F64 => feature_terms::<f64>(engine, shape, data, labels, &loss)?,
        _ => feature_terms::<f32>(engine, shape, data, labels, &loss)?,
    };
    let options = (&features.device().without_autodiff(), features.dtype());
    let (value, grad) = (
        Tensor::<1>::from_data(value, options),
        Tensor::<2>::from_data(grad, options),
    );
    Ok(attach(features, value, grad))
}

/// RankSim's loss (shape `[1]`) of `features` (M×D) against `labels` (M or
/// M×L, constants), on `engine`. On an autodiff device, `backward()` gives
/// the features the blackbox rank gradient.
pub fn rank_sim_loss<const L: usize>(
    features: Tensor<2>,
    labels: Tensor<L>,
    config: &RankSim,
    engine: &dyn FloatEngine,
) -> Result<Tensor<1>, Error> {
    feature_loss(features, labels, FeatureLoss::RankSim(config), engine)
}

/// Rank-N-Contrast's loss (shape `[1]`) of `features` (n×D, any rows)
/// against `labels` (n or n×L, constants), on `engine`, differentiable in
/// the features.
pub fn rnc_loss<const L: usize>(
    features: Tensor<2>,
    labels: Tensor<L>,
    config: &RankNContrast,
    engine: &dyn FloatEngine,
) -> Result<Tensor<1>, Error> {
    feature_loss(features, labels, FeatureLoss::Rnc(config), engine)
}

fn bmse_terms<T: Scalar + Element>(
    engine: &dyn Engine<T>,
    (rows, label_dim): (usize, usize),
    preds: TensorData,
    labels: TensorData,
    config: &BalancedMse<'_>,
) -> Result<(TensorData, TensorData, TensorData), Error> {
    let (preds, labels) = (values::<T>(preds)?, values::<T>(labels)?);
    let out = engine.balanced_mse(&BmseBatch::new(rows, label_dim, &preds, &labels)?, config)?;
    Ok((
        TensorData::new(vec![out.loss], [1]),
        TensorData::new(out.grad_preds, [rows * label_dim]),
        TensorData::new(vec![out.grad_noise_sigma], [1]),
    ))
}

/// Balanced MSE (shape `[1]`) of `preds` (n or n×L) against `labels`
/// (constants, the predictions' shape), with the noise scale `noise_sigma`
/// (shape `[1]`, usually a parameter) under `prior`, on `engine`. On an
/// autodiff device, `backward()` gives the predictions and σ their
/// gradients (σ's with the factor 2σ² held constant, as the reference does).
pub fn balanced_mse_loss<const L: usize>(
    preds: Tensor<L>,
    labels: Tensor<L>,
    noise_sigma: Tensor<1>,
    prior: &Prior<'_>,
    engine: &dyn FloatEngine,
) -> Result<Tensor<1>, Error> {
    let dims = preds.dims();
    let (rows, label_dim) = rows_and_width(&dims, "predictions")?;
    if labels.dims() != dims {
        return Err(Error::Shape(format!(
            "labels of shape {:?}, predictions of shape {dims:?}",
            labels.dims()
        )));
    }
    if noise_sigma.dims() != [1] {
        return Err(Error::Shape(format!(
            "noise_sigma of shape {:?}: need [1]",
            noise_sigma.dims()
        )));
    }
    let sigma = read("noise_sigma", noise_sigma.clone())?;
    let sigma = values::<f64>(sigma)?[0];
    let config = BalancedMse {
        noise_sigma: sigma,
        prior: *prior,
    };
    let (data, labels) = (read("predictions", preds.clone())?, read("labels", labels)?);
    let shape = (rows, label_dim);
    let (value, grad_preds, grad_sigma) = match data.dtype() {
        DType::F64 => bmse_terms::<f64>(engine, shape, data, labels, &config)?,
        _ => bmse_terms::<f32>(engine, shape, data, labels, &config)?,
    };
    let options = (&preds.device().without_autodiff(), preds.dtype());
    let value = Tensor::<1>::from_data(value, options);
    let grad_preds = Tensor::<1>::from_data(grad_preds, options).reshape(dims);
    let sigma_options = (
        &noise_sigma.device().without_autodiff(),
        noise_sigma.dtype(),
    );
    let grad_sigma = Tensor::<1>::from_data(grad_sigma, sigma_options);
    Ok(attach(
        noise_sigma,
        attach(preds, value, grad_preds),
        grad_sigma,
    ))
}
