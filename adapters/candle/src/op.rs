use std::sync::{Arc, Mutex};

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, DType, Device, Layout, Shape as CandleShape, Tensor};
use conr_core::{Batch, Config, Engine, FloatEngine, Inputs, Output, Scalar, Shape};
use conr_cpu::Fast;

/// ConR as a candle [`CustomOp1`] on the features. Labels, predictions and
/// eta are constants captured by the op; the forward pass runs a conr
/// engine and keeps its gradient for [`CustomOp1::bwd`].
struct ConrOp {
    labels: Vec<f64>,
    preds: Vec<f64>,
    eta: Option<Vec<f64>>,
    label_dim: usize,
    config: Config,
    engine: Arc<dyn FloatEngine>,
    /// ∂loss/∂features from the forward pass (f64, row-major).
    grad: Mutex<Option<Vec<f64>>>,
}

pub(crate) fn err(e: impl std::fmt::Display) -> candle_core::Error {
    candle_core::Error::Msg(format!("conr: {e}"))
}

impl ConrOp {
    /// The loss and its gradient (widened to f64) of features in `T`, on
    /// `engine` (the op's engine, for batches of `T`).
    fn forward<T: Scalar>(
        &self,
        engine: &dyn Engine<T>,
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
        let cast = |v: &[f64]| -> Vec<T> {
            v.iter()
                .map(|&x| T::from(x).unwrap_or_else(T::nan))
                .collect()
        };
        let (labels, preds) = (cast(&self.labels), cast(&self.preds));
        let eta = self.eta.as_deref().map(cast);
        let inputs = Inputs {
            features: &data[start..end],
            labels: &labels,
            preds: &preds,
            eta: eta.as_deref(),
        };
        let batch = Batch::new(shape, inputs).map_err(err)?;
        let out: Output<T> = engine.compute(&batch, &self.config).map_err(err)?;
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

/// The ConR loss of `features` (M×D, f32 or f64, on the CPU) as a scalar
/// tensor whose `backward()` fills the features' gradient, on the fast CPU
/// engine.
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
    let fast: Arc<dyn FloatEngine> = Arc::new(Fast::new());
    conr_loss_with(features, labels, preds, weights, config, &fast)
}

/// [`conr_loss`] on any engine: the reference, a fast engine with its own
/// threads, or a shared GPU context (`Arc::new(conr_wgpu::GpuConr::new()?)`).
pub fn conr_loss_with(
    features: &Tensor,
    labels: &Tensor,
    preds: &Tensor,
    weights: Option<&Tensor>,
    config: &Config,
    engine: &Arc<dyn FloatEngine>,
) -> candle_core::Result<Tensor> {
    if !matches!(features.device(), Device::Cpu) {
        return Err(err(
            "conr_loss runs on CPU tensors; use conr-wgpu for GPU buffers",
        ));
    }
    features.dims2()?;
    // M or M×L labels; the core checks every length against the features'.
    let label_dim = match labels.dims() {
        [_] => 1,
        [_, l] => *l,
        other => {
            return Err(err(format!(
                "labels of shape {other:?}: need [M] or [M, L]"
            )));
        }
    };
    let host = |t: &Tensor| -> candle_core::Result<Vec<f64>> {
        t.detach().to_dtype(DType::F64)?.flatten_all()?.to_vec1()
    };
    let op = ConrOp {
        label_dim,
        labels: host(labels)?,
        preds: host(preds)?,
        eta: weights.map(host).transpose()?,
        config: *config,
        engine: Arc::clone(engine),
        grad: Mutex::new(None),
    };
    features.contiguous()?.apply_op1(op)
}
