use std::sync::Arc;

use candle_core::Tensor;
use conr_core::{Batch, Config, Engine, FloatEngine, Inputs, Scalar, Shape};
use conr_cpu::Fast;

use crate::error::{core, msg};
use crate::host_op::{Arg, HostLoss, HostOp, host, narrow, on_cpu, widen};

/// ConR as a [`HostLoss`] of the features. Labels, predictions and eta are
/// constants captured by the op.
struct Conr {
    labels: Vec<f64>,
    preds: Vec<f64>,
    eta: Option<Vec<f64>>,
    label_dim: usize,
    config: Config,
}

impl HostLoss for Conr {
    fn name(&self) -> &'static str {
        "conr"
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
        let (labels, preds) = (narrow(&self.labels), narrow(&self.preds));
        let eta = self.eta.as_deref().map(narrow);
        let inputs = Inputs {
            features,
            labels: &labels,
            preds: &preds,
            eta: eta.as_deref(),
        };
        let batch = Batch::new(shape, inputs).map_err(core("conr_loss"))?;
        let out = engine
            .compute(&batch, &self.config)
            .map_err(core("conr_loss"))?;
        Ok((out.loss, vec![widen(&out.grad_features)]))
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
    on_cpu(features)?;
    features.dims2()?;
    // M or M×L labels; the core checks every length against the features'.
    let (labels, label_dim) = host(labels, "labels")?;
    let (preds, _) = host(preds, "preds")?;
    let eta = weights.map(|w| host(w, "weights")).transpose()?;
    let conr = Conr {
        labels,
        preds,
        eta: eta.map(|(w, _)| w),
        label_dim,
        config: *config,
    };
    let op = HostOp::new(conr, engine);
    features.contiguous()?.apply_op1(op)
}
