//! The losses ConR is combined with, as differentiable candle ops: RankSim
//! and Rank-N-Contrast on the features, Balanced MSE on the predictions and
//! σ. Each is a [`HostLoss`] on the one host op.

use std::sync::Arc;

use candle_core::Tensor;
use conr_core::dir::balanced_mse::{BalancedMse, BmseBatch, Prior};
use conr_core::dir::ranksim::{RankSim, RankSimBatch};
use conr_core::dir::rnc::{RankNContrast, RncBatch};
use conr_core::{Engine, FloatEngine, Scalar, Shape};

use crate::error::{core, msg};
use crate::host_op::{Arg, HostLoss, HostOp, host, narrow, on_cpu, widen};

/// A loss of the features alone, with its labels (constants).
struct FeatureLoss {
    kind: FeatureKind,
    labels: Vec<f64>,
    label_dim: usize,
}

enum FeatureKind {
    RankSim(RankSim),
    Rnc(RankNContrast),
}

impl HostLoss for FeatureLoss {
    fn name(&self) -> &'static str {
        match self.kind {
            FeatureKind::RankSim(_) => "conr-ranksim",
            FeatureKind::Rnc(_) => "conr-rnc",
        }
    }

    fn run<T: Scalar>(
        &self,
        engine: &dyn Engine<T>,
        args: &[Arg<'_, T>],
    ) -> candle_core::Result<(T, Vec<Vec<f64>>)> {
        let &[(features, &[rows, dim])] = args else {
            return Err(msg("the features must be M×D"));
        };
        let shape = Shape {
            rows,
            dim,
            label_dim: self.label_dim,
        };
        let labels = narrow::<T>(&self.labels);
        let (loss, grad) = match &self.kind {
            FeatureKind::RankSim(config) => {
                let batch = RankSimBatch::new(shape, features, &labels, None)
                    .map_err(core("rank_sim_loss"))?;
                let out = engine
                    .rank_sim(&batch, config)
                    .map_err(core("rank_sim_loss"))?;
                (out.loss, out.grad_features)
            }
            FeatureKind::Rnc(config) => {
                let batch = RncBatch::new(shape, features, &labels).map_err(core("rnc_loss"))?;
                let out = engine
                    .rank_n_contrast(&batch, config)
                    .map_err(core("rnc_loss"))?;
                (out.loss, out.grad_features)
            }
        };
        Ok((loss, vec![widen(&grad)]))
    }
}

fn feature_loss(
    features: &Tensor,
    labels: &Tensor,
    kind: FeatureKind,
    engine: &Arc<dyn FloatEngine>,
) -> candle_core::Result<Tensor> {
    on_cpu(features)?;
    features.dims2()?;
    let (labels, label_dim) = host(labels, "labels")?;
    let loss = FeatureLoss {
        kind,
        labels,
        label_dim,
    };
    features.contiguous()?.apply_op1(HostOp::new(loss, engine))
}

/// RankSim's loss of `features` (M×D, f32 or f64) against `labels` (M or
/// M×L, constants), as a scalar tensor whose `backward()` fills the
/// features' gradient (the blackbox rank gradient).
pub fn rank_sim_loss(
    features: &Tensor,
    labels: &Tensor,
    config: &RankSim,
    engine: &Arc<dyn FloatEngine>,
) -> candle_core::Result<Tensor> {
    feature_loss(features, labels, FeatureKind::RankSim(*config), engine)
}

/// Rank-N-Contrast's loss of `features` (n×D, any rows) against `labels`
/// (n or n×L, constants), as a scalar tensor differentiable in the features.
pub fn rnc_loss(
    features: &Tensor,
    labels: &Tensor,
    config: &RankNContrast,
    engine: &Arc<dyn FloatEngine>,
) -> candle_core::Result<Tensor> {
    feature_loss(features, labels, FeatureKind::Rnc(*config), engine)
}

/// Balanced MSE's prior, owned by the op.
enum OwnedPrior {
    Batch,
    Gmm([Vec<f64>; 3]),
    Buckets([Vec<f64>; 2]),
}

impl OwnedPrior {
    fn of(prior: &Prior<'_>) -> Self {
        match *prior {
            Prior::Batch => Self::Batch,
            Prior::Gmm {
                means,
                variances,
                weights,
            } => Self::Gmm([means.to_vec(), variances.to_vec(), weights.to_vec()]),
            Prior::Buckets { centers, weights } => {
                Self::Buckets([centers.to_vec(), weights.to_vec()])
            }
        }
    }

    fn prior(&self) -> Prior<'_> {
        match self {
            Self::Batch => Prior::Batch,
            Self::Gmm([means, variances, weights]) => Prior::Gmm {
                means,
                variances,
                weights,
            },
            Self::Buckets([centers, weights]) => Prior::Buckets { centers, weights },
        }
    }
}

/// Balanced MSE of (predictions, σ); the labels are constants.
struct BalancedMseLoss {
    prior: OwnedPrior,
    labels: Vec<f64>,
    label_dim: usize,
}

impl HostLoss for BalancedMseLoss {
    fn name(&self) -> &'static str {
        "conr-balanced-mse"
    }

    fn run<T: Scalar>(
        &self,
        engine: &dyn Engine<T>,
        args: &[Arg<'_, T>],
    ) -> candle_core::Result<(T, Vec<Vec<f64>>)> {
        let &[(preds, _), (&[sigma], _)] = args else {
            return Err(msg("noise_sigma must hold one value"));
        };
        let labels = narrow::<T>(&self.labels);
        let rows = labels.len() / self.label_dim.max(1);
        let batch = BmseBatch::new(rows, self.label_dim, preds, &labels)
            .map_err(core("balanced_mse_loss"))?;
        let config = BalancedMse {
            noise_sigma: sigma.to_f64().unwrap_or(f64::NAN),
            prior: self.prior.prior(),
        };
        let out = engine
            .balanced_mse(&batch, &config)
            .map_err(core("balanced_mse_loss"))?;
        let grads = vec![widen(&out.grad_preds), widen(&[out.grad_noise_sigma])];
        Ok((out.loss, grads))
    }
}

/// Balanced MSE of `preds` (n or n×L) against `labels` (constants), with the
/// noise scale `noise_sigma` (a one-element tensor, usually a `Var`), under
/// `prior`: a scalar tensor differentiable in the predictions and σ.
pub fn balanced_mse_loss(
    preds: &Tensor,
    labels: &Tensor,
    noise_sigma: &Tensor,
    prior: &Prior<'_>,
    engine: &Arc<dyn FloatEngine>,
) -> candle_core::Result<Tensor> {
    on_cpu(preds)?;
    on_cpu(noise_sigma)?;
    let (labels, label_dim) = host(labels, "labels")?;
    let loss = BalancedMseLoss {
        prior: OwnedPrior::of(prior),
        labels,
        label_dim,
    };
    preds
        .contiguous()?
        .apply_op2(&noise_sigma.contiguous()?, HostOp::new(loss, engine))
}
