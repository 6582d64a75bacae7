//! [`ConrLoss`]: the batch's checks, the choice of path, and the tensor that
//! carries the gradient.

use std::sync::Arc;

use burn::tensor::Tensor;
use conr_core::{Config, FloatEngine, Shape};
use conr_cpu::Fast;

use crate::Error;
use crate::host::HostBatch;
#[cfg(feature = "wgpu")]
use crate::in_place::SharedWgpu;

/// Where a batch's loss and gradient are computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// Read into host memory, computed by a conr engine, written back.
    Host,
    /// Computed by conr-wgpu on burn's own wgpu buffers, with no copy
    /// through the host (feature `wgpu`).
    InPlace,
}

/// The ConR loss term for burn, configured once and applied per batch.
///
/// Every backend and float type burn offers takes the host path. With
/// [`ConrLoss::in_place_on`] (feature `wgpu`, on by default), f32 features
/// on the [`SharedWgpu`] device take the in-place path.
#[derive(Clone, Debug)]
pub struct ConrLoss {
    pub(crate) config: Config,
    engine: Arc<dyn FloatEngine>,
    #[cfg(feature = "wgpu")]
    pub(crate) shared: Option<SharedWgpu>,
    #[cfg(feature = "wgpu")]
    pub(crate) checked: bool,
}

impl ConrLoss {
    /// The loss with `config`, on the fast CPU engine. Refuses an invalid
    /// config (a non-positive temperature, ...).
    pub fn new(config: Config) -> Result<Self, Error> {
        config.validate()?;
        Ok(Self {
            config,
            engine: Arc::new(Fast::new()),
            #[cfg(feature = "wgpu")]
            shared: None,
            #[cfg(feature = "wgpu")]
            checked: false,
        })
    }

    /// The same loss on another engine for the host path: the reference
    /// engine, a fast engine with its own threads, or any other engine of
    /// the core's interface.
    pub fn with_engine(mut self, engine: Arc<dyn FloatEngine>) -> Self {
        self.engine = engine;
        self
    }

    /// The config.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The path a batch with these features takes.
    pub fn route(&self, features: &Tensor<2>) -> Route {
        #[cfg(feature = "wgpu")]
        if self.in_place_device(features).is_some() {
            return Route::InPlace;
        }
        let _ = features;
        Route::Host
    }

    /// The ConR loss (shape `[1]`, the features' float type) of `features`
    /// (M×D). `labels` and `preds` are M or M×L; `weights` (M) are the
    /// pushing powers eta (all 1 when `None`). They are constants: no
    /// gradient flows into them. On an autodiff device, `backward()` gives
    /// `features` conr's analytic gradient.
    ///
    /// Shapes, devices and the config are checked up front on both paths.
    /// The host path reads the batch and refuses the values conr refuses
    /// (NaN or infinite values, eta outside (0, 1e6], zero label vectors
    /// under `angular`). The in-place path does not wait for the GPU to read
    /// them: the device checks the same rules and makes the loss and the
    /// gradient NaN where one breaks, unless [`ConrLoss::checked`] asks for
    /// the error instead.
    pub fn forward<const L: usize>(
        &self,
        features: Tensor<2>,
        labels: Tensor<L>,
        preds: Tensor<L>,
        weights: Option<Tensor<1>>,
    ) -> Result<Tensor<1>, Error> {
        let shape = shape_of(&features, &labels, &preds, weights.as_ref())?;
        #[cfg(feature = "wgpu")]
        if let Some(shared) = self.in_place_device(&features) {
            let (loss, grad) = self.in_place(shared, shape, &features, labels, preds, weights)?;
            return Ok(attach(features, loss, grad));
        }
        let batch = HostBatch::read(shape, &features, labels, preds, weights)?;
        let (loss, grad) = batch.compute(&*self.engine, &self.config)?;
        // Constants: created without autodiff, they carry no graph.
        let options = (&features.device().without_autodiff(), features.dtype());
        let loss = Tensor::<1>::from_data(loss, options);
        let grad = Tensor::<2>::from_data(grad, options);
        Ok(attach(features, loss, grad))
    }
}

/// `loss` as a function of `x` whose gradient is `grad`: `loss + Σ (x − x̄)
/// ⊙ grad`, with `x̄` the input detached. Its value is `loss` exactly
/// (`x − x̄ = 0` for finite inputs), and burn's autodiff gives `x` `grad`
/// times the upstream gradient: conr's analytic gradient, on every backend
/// burn has, with no backend extension.
pub(crate) fn attach<const D: usize>(x: Tensor<D>, loss: Tensor<1>, grad: Tensor<D>) -> Tensor<1> {
    if !x.device().is_autodiff() {
        return loss;
    }
    let frozen = x.clone().detach().set_require_grad(false);
    loss + ((x - frozen) * grad).sum()
}

/// The ConR loss of `features` with `config` on the fast CPU engine: see
/// [`ConrLoss::forward`].
///
/// ```
/// use burn::tensor::{DType, Device, Tensor, TensorData};
/// use conr_burn::{Config, conr_loss};
///
/// let device = Device::flex().autodiff();
/// let features = Tensor::<2>::from_data(
///     TensorData::new(vec![1.0f64, 0.1, 0.9, 0.2, 0.1, 1.0, 0.2, 0.8], [4, 2]),
///     (&device, DType::F64),
/// )
/// .require_grad();
/// let labels = Tensor::<1>::from_data([20.0, 20.5, 60.0, 60.5], (&device, DType::F64));
/// let preds = Tensor::<1>::from_data([40.0, 40.2, 40.4, 40.1], (&device, DType::F64));
/// let loss = conr_loss(features.clone(), labels, preds, None, &Config::official_agedb())?;
/// let grads = loss.backward();
/// assert_eq!(features.grad(&grads).expect("a gradient").dims(), [4, 2]);
/// # Ok::<(), conr_burn::Error>(())
/// ```
pub fn conr_loss<const L: usize>(
    features: Tensor<2>,
    labels: Tensor<L>,
    preds: Tensor<L>,
    weights: Option<Tensor<1>>,
    config: &Config,
) -> Result<Tensor<1>, Error> {
    ConrLoss::new(*config)?.forward(features, labels, preds, weights)
}

/// [`conr_loss`] on any engine, through the host path, as
/// `conr_candle::conr_loss_with` takes one: the reference, a fast engine
/// with its own threads, or a shared GPU context.
pub fn conr_loss_with<const L: usize>(
    features: Tensor<2>,
    labels: Tensor<L>,
    preds: Tensor<L>,
    weights: Option<Tensor<1>>,
    config: &Config,
    engine: &Arc<dyn FloatEngine>,
) -> Result<Tensor<1>, Error> {
    ConrLoss::new(*config)?
        .with_engine(engine.clone())
        .forward(features, labels, preds, weights)
}

/// The batch's shape, from tensors whose ranks and sizes agree.
fn shape_of<const L: usize>(
    features: &Tensor<2>,
    labels: &Tensor<L>,
    preds: &Tensor<L>,
    weights: Option<&Tensor<1>>,
) -> Result<Shape, Error> {
    let [rows, dim] = features.dims();
    let label_dims = labels.dims();
    let label_dim = match label_dims.as_slice() {
        [m] if *m == rows => 1,
        [m, l] if *m == rows => *l,
        _ => {
            return Err(Error::Shape(format!(
                "labels of shape {label_dims:?} for {rows} feature rows (need [{rows}] or [{rows}, L])"
            )));
        }
    };
    if preds.dims() != label_dims {
        return Err(Error::Shape(format!(
            "predictions of shape {:?}, labels of shape {label_dims:?}",
            preds.dims()
        )));
    }
    if let Some(w) = weights
        && w.dims() != [rows]
    {
        return Err(Error::Shape(format!(
            "weights of shape {:?} for {rows} rows",
            w.dims()
        )));
    }
    Ok(Shape {
        rows,
        dim,
        label_dim,
    })
}
