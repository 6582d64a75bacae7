#[cfg(feature = "wgpu")]
use std::sync::Arc;
use std::sync::Mutex;

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, DType, Device, Layout, Shape as CandleShape, Tensor};
use conr_core::{Batch, Config, Scalar, Shape};
use conr_cpu::{Engine, Fast, Output};
#[cfg(feature = "wgpu")]
use conr_wgpu::GpuConr;

/// Which conr engine computes the loss inside the op.
#[derive(Clone, Debug)]
pub enum ConrEngine {
    /// The fast CPU engine (f32 and f64).
    Cpu(Fast),
    /// The GPU engine (f32; f64 features are rounded to f32 and the gradient
    /// widened). Needs the `wgpu` feature.
    #[cfg(feature = "wgpu")]
    Gpu(Arc<GpuConr>),
}

impl Default for ConrEngine {
    fn default() -> Self {
        ConrEngine::Cpu(Fast::new())
    }
}

/// ConR as a candle [`CustomOp1`] on the features. Labels, predictions and
/// weights are constants captured by the op; the forward pass runs a conr
/// engine and keeps its gradient for [`CustomOp1::bwd`].
struct ConrOp {
    labels: Vec<f64>,
    preds: Vec<f64>,
    weights: Option<Vec<f64>>,
    label_dim: usize,
    config: Config,
    engine: ConrEngine,
    /// ∂loss/∂features from the forward pass (f64, row-major).
    grad: Mutex<Option<Vec<f64>>>,
}

fn err(e: impl std::fmt::Display) -> candle_core::Error {
    candle_core::Error::Msg(format!("conr: {e}"))
}

impl ConrOp {
    fn run<T: Scalar + candle_core::WithDType>(
        &self,
        features: &[T],
        shape: Shape,
    ) -> candle_core::Result<Output<T>> {
        let cast = |v: &[f64]| -> Vec<T> {
            v.iter()
                .map(|&x| T::from(x).unwrap_or_else(T::nan))
                .collect()
        };
        let (labels, preds) = (cast(&self.labels), cast(&self.preds));
        let weights = self.weights.as_deref().map(cast);
        let batch =
            Batch::new(shape, features, &labels, &preds, weights.as_deref()).map_err(err)?;
        match &self.engine {
            ConrEngine::Cpu(fast) => fast.compute(&batch, &self.config).map_err(err),
            #[cfg(feature = "wgpu")]
            ConrEngine::Gpu(gpu) => gpu.compute_any(&batch, &self.config).map_err(err),
        }
    }

    fn forward<T: Scalar + candle_core::WithDType>(
        &self,
        data: &[T],
        layout: &Layout,
    ) -> candle_core::Result<(T, Vec<f64>)> {
        let (rows, dim) = layout.shape().dims2()?;
        let (start, end) = layout
            .contiguous_offsets()
            .ok_or_else(|| err("the features must be contiguous"))?;
        let shape = Shape {
            rows,
            dim,
            label_dim: self.label_dim,
        };
        let out = self.run(&data[start..end], shape)?;
        let grad = out
            .grad_features
            .iter()
            .map(|g| g.to_f64().unwrap_or(f64::NAN))
            .collect();
        Ok((out.loss, grad))
    }
}

impl CustomOp1 for ConrOp {
    fn name(&self) -> &'static str {
        "conr"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, CandleShape)> {
        let (loss, grad) = match storage {
            CpuStorage::F32(data) => {
                let (loss, grad) = self.forward(data, layout)?;
                (CpuStorage::F32(vec![loss]), grad)
            }
            CpuStorage::F64(data) => {
                let (loss, grad) = self.forward(data, layout)?;
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

/// The ConR loss of `features` (M×D, f32 or f64, on the CPU) as a scalar
/// tensor whose `backward()` fills the features' gradient.
///
/// `labels` and `preds` are M or M×L; `weights` (M) are the per-sample pushing
/// powers `eta` (all 1 when `None`). They are constants: no gradient flows into
/// them, as in the paper (the predictions are detached).
///
/// ```
/// use candle_core::{Device, Tensor, Var};
/// use conr_candle::{conr_loss, Config};
///
/// let device = Device::Cpu;
/// let features = Var::from_slice(&[1.0f32, 0.1, 0.9, 0.2, 0.1, 1.0, 0.2, 0.8], (4, 2), &device)?;
/// let labels = Tensor::new(&[20.0f32, 20.5, 60.0, 60.5], &device)?;
/// let preds = Tensor::new(&[40.0f32, 40.2, 40.4, 40.1], &device)?;
/// let loss = conr_loss(features.as_tensor(), &labels, &preds, None, &Config::official_agedb())?;
/// let grads = loss.backward()?;
/// let grad = grads.get(features.as_tensor()).expect("a gradient");
/// assert_eq!(grad.dims(), &[4, 2]);
/// # Ok::<(), candle_core::Error>(())
/// ```
pub fn conr_loss(
    features: &Tensor,
    labels: &Tensor,
    preds: &Tensor,
    weights: Option<&Tensor>,
    config: &Config,
) -> candle_core::Result<Tensor> {
    conr_loss_with(
        features,
        labels,
        preds,
        weights,
        config,
        &ConrEngine::default(),
    )
}

/// [`conr_loss`] on a chosen engine (for example a shared `GpuConr`, with the
/// `wgpu` feature).
pub fn conr_loss_with(
    features: &Tensor,
    labels: &Tensor,
    preds: &Tensor,
    weights: Option<&Tensor>,
    config: &Config,
    engine: &ConrEngine,
) -> candle_core::Result<Tensor> {
    if !matches!(features.device(), Device::Cpu) {
        return Err(err(
            "conr_loss runs on CPU tensors; use conr-wgpu for GPU buffers",
        ));
    }
    let (rows, _) = features.dims2()?;
    let host = |t: &Tensor| -> candle_core::Result<Vec<f64>> {
        t.detach().to_dtype(DType::F64)?.flatten_all()?.to_vec1()
    };
    let labels_host = host(labels)?;
    if rows == 0 || labels_host.len() % rows != 0 {
        return Err(err(format!(
            "{} labels do not split into {rows} rows",
            labels_host.len()
        )));
    }
    let op = ConrOp {
        label_dim: labels_host.len() / rows,
        labels: labels_host,
        preds: host(preds)?,
        weights: weights.map(host).transpose()?,
        config: *config,
        engine: engine.clone(),
        grad: Mutex::new(None),
    };
    features.contiguous()?.apply_op1(op)
}
