//! [`ConrLoss`]: the batch's checks, the choice of path, and the tensor that
//! carries the gradient.

use burn::backend::{Dispatch, DispatchDevice};
use burn::tensor::{Bool, DType, Device, Tensor};
use conr_core::{Config, Shape};

use crate::extension::{AttachGradient, InPlace};
use crate::host::{HostBatch, HostEngine};
use crate::{Error, SharedWgpu};

/// Where a batch's loss and gradient are computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// Read into host memory, computed by a CPU engine, written back.
    Host,
    /// Computed by conr-wgpu on burn's own wgpu buffers, with no copy
    /// through the host.
    InPlace,
}

/// The ConR loss term for burn, configured once and applied per batch.
///
/// Every float type and backend burn's dispatch offers here (flex, ndarray
/// and the cubecl backends: wgpu, and CUDA, ROCm or the CPU runtime where burn
/// has them) takes the host path. With [`ConrLoss::in_place_on`], f32
/// features on the [`SharedWgpu`] device take the in-place path.
#[derive(Clone, Debug)]
pub struct ConrLoss {
    config: Config,
    engine: HostEngine,
    shared: Option<SharedWgpu>,
    checked: bool,
}

impl ConrLoss {
    /// The loss with `config`, on the fast CPU engine. Refuses an invalid
    /// config (a non-positive temperature, ...).
    pub fn new(config: Config) -> Result<Self, Error> {
        config.params::<f64>()?;
        Ok(Self {
            config,
            engine: HostEngine::default(),
            shared: None,
            checked: false,
        })
    }

    /// The same loss on another CPU engine for the host path.
    pub fn with_engine(mut self, engine: HostEngine) -> Self {
        self.engine = engine;
        self
    }

    /// The same loss, in place for f32 features on `shared`'s device.
    pub fn in_place_on(mut self, shared: SharedWgpu) -> Self {
        self.shared = Some(shared);
        self
    }

    /// The same loss, refusing bad values on the in-place path too: each
    /// batch then costs one read of a flag (a wait for the GPU), and a bad
    /// batch is read once more to name the bad value. Without it, bad values
    /// on the in-place path give a NaN loss and gradient (see
    /// [`ConrLoss::forward`]). The host path always refuses them.
    pub fn checked(mut self, checked: bool) -> Self {
        self.checked = checked;
        self
    }

    /// The config.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The path a batch with these features takes.
    pub fn route(&self, features: &Tensor<2>) -> Route {
        match self.in_place_device(features) {
            Some(_) => Route::InPlace,
            None => Route::Host,
        }
    }

    /// The shared device, where these features take the in-place path.
    fn in_place_device(&self, features: &Tensor<2>) -> Option<&SharedWgpu> {
        self.shared.as_ref().filter(|shared| {
            features.device() == *shared.device() && features.dtype() == DType::F32
        })
    }

    /// The ConR loss (shape `[1]`, the features' float type) of `features`
    /// (M×D). `labels` and `preds` are M or M×L; `weights` (M) are the
    /// pushing powers (all 1 when `None`). They are constants: no gradient
    /// flows into them. On an autodiff device, `backward()` gives `features`
    /// conr's analytic gradient.
    ///
    /// Shapes, devices and the config are checked up front on both paths.
    /// The host path reads the batch and refuses the values conr refuses
    /// (NaN or infinite values, weights outside (0, 1e6]). The in-place path
    /// does not wait for the GPU to read them: it tests them on the device
    /// and makes the loss and the gradient NaN where one is bad, unless
    /// [`ConrLoss::checked`] asks for an error instead.
    pub fn forward<const L: usize>(
        &self,
        features: Tensor<2>,
        labels: Tensor<L>,
        preds: Tensor<L>,
        weights: Option<Tensor<1>>,
    ) -> Result<Tensor<1>, Error> {
        supported(&features.device())?;
        let shape = shape_of(&features, &labels, &preds, weights.as_ref())?;
        let (loss, grad) = match self.in_place_device(&features) {
            None => {
                let batch = HostBatch::read(shape, &features, labels, preds, weights)?;
                let (loss, grad) = batch.compute(&self.engine, &self.config)?;
                // Constants: created without autodiff, they carry no graph.
                let options = (&features.device().without_autodiff(), features.dtype());
                (
                    Tensor::<1>::from_data(loss, options),
                    Tensor::<2>::from_data(grad, options),
                )
            }
            Some(shared) => self.in_place(shared, shape, &features, labels, preds, weights)?,
        };
        let loss = <Dispatch as AttachGradient>::attach_gradient(
            features.into_dispatch(),
            loss.into_dispatch(),
            grad.into_dispatch(),
        );
        Ok(Tensor::from_dispatch(loss))
    }

    fn in_place<const L: usize>(
        &self,
        shared: &SharedWgpu,
        shape: Shape,
        features: &Tensor<2>,
        labels: Tensor<L>,
        preds: Tensor<L>,
        weights: Option<Tensor<1>>,
    ) -> Result<(Tensor<1>, Tensor<2>), Error> {
        shared.gpu().check_record(shape, &self.config)?;
        let device = shared.device();
        let same = |what: &str, other: Device| {
            if other == *device {
                Ok(())
            } else {
                Err(Error::Device(format!(
                    "the {what} are on {other:?}, the features on {device:?}"
                )))
            }
        };
        same("labels", labels.device())?;
        same("predictions", preds.device())?;
        if let Some(w) = &weights {
            same("weights", w.device())?;
        }
        let flat = |t: Tensor<L>| -> Tensor<1> {
            t.inner()
                .cast(DType::F32)
                .reshape([shape.rows * shape.label_dim])
        };
        let features = features.clone().inner();
        let (labels, preds) = (flat(labels), flat(preds));
        let weighted = weights.is_some();
        let weights = match weights {
            Some(w) => w.inner().cast(DType::F32),
            None => Tensor::ones([shape.rows], (device, DType::F32)),
        };
        // The values conr's CPU engines refuse, found on the device.
        let valid = features
            .clone()
            .is_finite()
            .all()
            .bool_and(labels.clone().is_finite().all())
            .bool_and(preds.clone().is_finite().all())
            .bool_and(weights.clone().is_finite().all())
            .bool_and(weights.clone().greater_elem(0.0).all())
            .bool_and(
                weights
                    .clone()
                    .lower_equal_elem(conr_core::MAX_WEIGHT)
                    .all(),
            );
        if self.checked && !read_flag(valid.clone())? {
            // Read the batch to name the bad value, as the host path does.
            let [m, l] = [shape.rows, shape.label_dim];
            let host = HostBatch::read(
                shape,
                &features,
                labels.clone().reshape([m, l]),
                preds.clone().reshape([m, l]),
                weighted.then(|| weights.clone()),
            )?;
            host.check(&self.config)?;
        }
        let (loss, grad) = <Dispatch as InPlace>::conr_in_place(
            features.into_dispatch(),
            labels.into_dispatch(),
            preds.into_dispatch(),
            weights.into_dispatch(),
            shared.job(shape, self.config),
        );
        let invalid = valid.bool_not();
        let loss = Tensor::<1>::from_dispatch(loss).mask_fill(invalid.clone(), f32::NAN);
        let grad = Tensor::<2>::from_dispatch(grad).mask_fill(
            invalid.reshape([1, 1]).expand([shape.rows, shape.dim]),
            f32::NAN,
        );
        Ok((loss, grad))
    }
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

/// A one-element bool tensor's value (a wait for its device).
fn read_flag(flag: Tensor<1, Bool>) -> Result<bool, Error> {
    let data = flag
        .try_into_data()
        .map_err(|e| Error::Burn(format!("reading a flag: {e}")))?;
    Ok(data.iter::<bool>().next().unwrap_or(false))
}

/// Refuses the backends the op's extensions do not cover (burn's dispatch
/// would panic on them).
fn supported(device: &Device) -> Result<(), Error> {
    match device.clone().without_autodiff().as_dispatch() {
        DispatchDevice::NdArray(_) | DispatchDevice::Flex(_) | DispatchDevice::Cube(_) => Ok(()),
        other => Err(Error::Device(format!(
            "conr-burn runs on the ndarray, flex and cubecl backends, not on {other:?}"
        ))),
    }
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
