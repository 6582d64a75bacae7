//! The losses ConR is combined with, as differentiable candle ops: RankSim
//! and Rank-N-Contrast on the features, Balanced MSE on the predictions and
//! σ. Each runs a conr engine on the host and keeps its gradient for the
//! backward pass.

use std::sync::{Arc, Mutex};

use candle_core::backend::BackendStorage;
use candle_core::{
    CpuStorage, CustomOp1, CustomOp2, DType, Device, Layout, Shape as CandleShape, Tensor,
};
use conr_core::dir::balanced_mse::{BalancedMse, BmseBatch, Prior};
use conr_core::dir::ranksim::{RankSim, RankSimBatch};
use conr_core::dir::rnc::{RankNContrast, RncBatch};
use conr_core::{Engine, FloatEngine, Scalar, Shape};

use crate::op::err;

/// A loss of the features alone.
enum FeatureLoss {
    RankSim(RankSim),
    Rnc(RankNContrast),
}

/// A [`FeatureLoss`] as a candle op on the features; the labels are constants.
struct FeatureOp {
    loss: FeatureLoss,
    labels: Vec<f64>,
    label_dim: usize,
    engine: Arc<dyn FloatEngine>,
    /// ∂loss/∂features from the forward pass (f64, row-major).
    grad: Mutex<Option<Vec<f64>>>,
}

fn cast<T: Scalar>(v: &[f64]) -> Vec<T> {
    v.iter()
        .map(|&x| T::from(x).unwrap_or_else(T::nan))
        .collect()
}

fn widen<T: Scalar>(v: &[T]) -> Vec<f64> {
    v.iter().map(|g| g.to_f64().unwrap_or(f64::NAN)).collect()
}

fn contiguous<'a, T>(data: &'a [T], layout: &Layout) -> candle_core::Result<&'a [T]> {
    let (start, end) = layout
        .contiguous_offsets()
        .ok_or_else(|| err("the input must be contiguous"))?;
    Ok(&data[start..end])
}

impl FeatureOp {
    fn forward<T: Scalar>(
        &self,
        engine: &dyn Engine<T>,
        data: &[T],
        layout: &Layout,
    ) -> candle_core::Result<(T, Vec<f64>)> {
        let (rows, dim) = layout.shape().dims2()?;
        let shape = Shape {
            rows,
            dim,
            label_dim: self.label_dim,
        };
        let features = contiguous(data, layout)?;
        let labels = cast::<T>(&self.labels);
        let (loss, grad) = match &self.loss {
            FeatureLoss::RankSim(config) => {
                let batch = RankSimBatch::new(shape, features, &labels, None).map_err(err)?;
                let out = engine.rank_sim(&batch, config).map_err(err)?;
                (out.loss, out.grad_features)
            }
            FeatureLoss::Rnc(config) => {
                let batch = RncBatch::new(shape, features, &labels).map_err(err)?;
                let out = engine.rank_n_contrast(&batch, config).map_err(err)?;
                (out.loss, out.grad_features)
            }
        };
        Ok((loss, widen(&grad)))
    }
}

impl CustomOp1 for FeatureOp {
    fn name(&self) -> &'static str {
        match self.loss {
            FeatureLoss::RankSim(_) => "conr-ranksim",
            FeatureLoss::Rnc(_) => "conr-rnc",
        }
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, CandleShape)> {
        let (loss, grad) = match storage {
            CpuStorage::F32(data) => {
                let (loss, grad) = self.forward::<f32>(&*self.engine, data, layout)?;
                (CpuStorage::F32(vec![loss]), grad)
            }
            CpuStorage::F64(data) => {
                let (loss, grad) = self.forward::<f64>(&*self.engine, data, layout)?;
                (CpuStorage::F64(vec![loss]), grad)
            }
            other => {
                return Err(err(format!(
                    "features must be f32 or f64, not {:?}",
                    other.dtype()
                )));
            }
        };
        *self
            .grad
            .lock()
            .map_err(|_| err("a previous call panicked"))? = Some(grad);
        Ok((loss, CandleShape::from(())))
    }

    fn bwd(
        &self,
        arg: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        let grad = self
            .grad
            .lock()
            .map_err(|_| err("a previous call panicked"))?;
        let grad = grad
            .as_ref()
            .ok_or_else(|| err("backward before forward"))?;
        let grad = Tensor::from_slice(grad, arg.shape(), arg.device())?.to_dtype(arg.dtype())?;
        Ok(Some(grad.broadcast_mul(grad_res)?))
    }
}

/// The host copy of a tensor, and its width: `[n]` is one wide.
fn host(t: &Tensor, what: &str) -> candle_core::Result<(Vec<f64>, usize)> {
    let width = match t.dims() {
        [_] => 1,
        [_, w] => *w,
        other => {
            return Err(err(format!(
                "{what} of shape {other:?}: need [n] or [n, L]"
            )));
        }
    };
    Ok((
        t.detach().to_dtype(DType::F64)?.flatten_all()?.to_vec1()?,
        width,
    ))
}

fn on_cpu(t: &Tensor) -> candle_core::Result<()> {
    if matches!(t.device(), Device::Cpu) {
        Ok(())
    } else {
        Err(err("the companion losses run on CPU tensors"))
    }
}

fn feature_loss(
    features: &Tensor,
    labels: &Tensor,
    loss: FeatureLoss,
    engine: &Arc<dyn FloatEngine>,
) -> candle_core::Result<Tensor> {
    on_cpu(features)?;
    features.dims2()?;
    let (labels, label_dim) = host(labels, "labels")?;
    let op = FeatureOp {
        loss,
        labels,
        label_dim,
        engine: Arc::clone(engine),
        grad: Mutex::new(None),
    };
    features.contiguous()?.apply_op1(op)
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
    feature_loss(features, labels, FeatureLoss::RankSim(*config), engine)
}

/// Rank-N-Contrast's loss of `features` (n×D, any rows) against `labels`
/// (n or n×L, constants), as a scalar tensor differentiable in the features.
pub fn rnc_loss(
    features: &Tensor,
    labels: &Tensor,
    config: &RankNContrast,
    engine: &Arc<dyn FloatEngine>,
) -> candle_core::Result<Tensor> {
    feature_loss(features, labels, FeatureLoss::Rnc(*config), engine)
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

/// Balanced MSE as a candle op on (predictions, σ); the labels are constants.
struct BalancedMseOp {
    prior: OwnedPrior,
    labels: Vec<f64>,
    label_dim: usize,
    engine: Arc<dyn FloatEngine>,
    /// ∂loss/∂preds and ∂loss/∂σ from the forward pass.
    grad: Mutex<Option<(Vec<f64>, f64)>>,
}

impl BalancedMseOp {
    fn forward<T: Scalar>(
        &self,
        engine: &dyn Engine<T>,
        (preds, l1): (&[T], &Layout),
        (sigma, l2): (&[T], &Layout),
    ) -> candle_core::Result<(T, (Vec<f64>, f64))> {
        let preds = contiguous(preds, l1)?;
        let sigma = contiguous(sigma, l2)?;
        let [sigma] = sigma else {
            return Err(err("noise_sigma must hold one value"));
        };
        let labels = cast::<T>(&self.labels);
        let rows = labels.len() / self.label_dim.max(1);
        let batch = BmseBatch::new(rows, self.label_dim, preds, &labels).map_err(err)?;
        let config = BalancedMse {
            noise_sigma: sigma.to_f64().unwrap_or(f64::NAN),
            prior: self.prior.prior(),
        };
        let out = engine.balanced_mse(&batch, &config).map_err(err)?;
        let d_sigma = out.grad_noise_sigma.to_f64().unwrap_or(f64::NAN);
        Ok((out.loss, (widen(&out.grad_preds), d_sigma)))
    }
}

impl CustomOp2 for BalancedMseOp {
    fn name(&self) -> &'static str {
        "conr-balanced-mse"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, CandleShape)> {
        let (loss, grad) = match (s1, s2) {
            (CpuStorage::F32(p), CpuStorage::F32(s)) => {
                let (loss, grad) = self.forward::<f32>(&*self.engine, (p, l1), (s, l2))?;
                (CpuStorage::F32(vec![loss]), grad)
            }
            (CpuStorage::F64(p), CpuStorage::F64(s)) => {
                let (loss, grad) = self.forward::<f64>(&*self.engine, (p, l1), (s, l2))?;
                (CpuStorage::F64(vec![loss]), grad)
            }
            (a, b) => {
                return Err(err(format!(
                    "preds and noise_sigma must both be f32 or both f64, not {:?} and {:?}",
                    a.dtype(),
                    b.dtype()
                )));
            }
        };
        *self
            .grad
            .lock()
            .map_err(|_| err("a previous call panicked"))? = Some(grad);
        Ok((loss, CandleShape::from(())))
    }

    fn bwd(
        &self,
        preds: &Tensor,
        sigma: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let grad = self
            .grad
            .lock()
            .map_err(|_| err("a previous call panicked"))?;
        let (grad_preds, grad_sigma) = grad
            .as_ref()
            .ok_or_else(|| err("backward before forward"))?;
        let grad_preds = Tensor::from_slice(grad_preds, preds.shape(), preds.device())?
            .to_dtype(preds.dtype())?;
        let grad_sigma = Tensor::from_slice(&[*grad_sigma], sigma.shape(), sigma.device())?
            .to_dtype(sigma.dtype())?;
        Ok((
            Some(grad_preds.broadcast_mul(grad_res)?),
            Some(grad_sigma.broadcast_mul(grad_res)?),
        ))
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
    let op = BalancedMseOp {
        prior: OwnedPrior::of(prior),
        labels,
        label_dim,
        engine: Arc::clone(engine),
        grad: Mutex::new(None),
    };
    preds
        .contiguous()?
        .apply_op2(&noise_sigma.contiguous()?, op)
}
