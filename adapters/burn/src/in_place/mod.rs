//! The in-place path: conr-wgpu on burn's own wgpu device, queue and tensor
//! buffers.
//!
//! burn's wgpu runtime (cubecl) hands out the exact `wgpu::Device` and
//! `wgpu::Queue` it runs on ([`Device::wgpu_options`]'s `init_with_setup`),
//! and, for a tensor, the buffer, offset and size of its allocation
//! (`Client::get_resource`). A [`job::Job`] takes those for the features,
//! the labels, the predictions, eta and three fresh outputs, flushes burn's
//! pending work into the queue, and submits conr's passes after it on the
//! same queue. wgpu runs one queue's submissions in order, so conr reads the
//! features after burn wrote them, and burn's later work (the backward pass
//! that reads the gradient) runs after conr wrote it.
//!
//! - [`SharedWgpu`] (here): the device and queue both runtimes share;
//! - [`loss`]: [`ConrLoss`](crate::ConrLoss)'s in-place path;
//! - [`extension`]: the burn backend extension the path dispatches through;
//! - [`job`]: one batch recorded on burn's buffers.
//!
//! conr builds the band plan on the device from the labels and predictions
//! in burn's buffers (no host copy of them); [`SharedWgpu::last_plan`] says
//! what a batch visited.

mod extension;
mod job;
mod loss;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use burn::tensor::Device;
use burn::tensor::wgpu::{WgpuOptions, WgpuSetup};
use conr_core::band::TilePlan;
use conr_core::{Config, PlanReport, Shape};
use conr_wgpu::GpuConr;

use crate::Error;
use job::Job;

/// burn's wgpu runtime and conr's GPU engine on one device and one queue.
///
/// Create it once per process, before any tensor touches burn's default wgpu
/// device, and use [`SharedWgpu::device`] for the model and the batch: burn
/// refuses to initialise a wgpu device twice, and a tensor on another wgpu
/// device takes the host path. Cloning is cheap (the state is shared).
///
/// ```no_run
/// use burn::tensor::{Tensor, TensorData};
/// use conr_burn::{Config, ConrLoss, Route, SharedWgpu};
///
/// let shared = SharedWgpu::init()?;
/// let device = shared.device().clone().autodiff();
/// let conr = ConrLoss::new(Config::official_agedb())?.in_place_on(shared.clone());
/// let features = Tensor::<2>::from_data(
///     TensorData::new(vec![1.0f32, 0.1, 0.9, 0.2, 0.1, 1.0, 0.2, 0.8], [4, 2]),
///     &device,
/// )
/// .require_grad();
/// assert_eq!(conr.route(&features), Route::InPlace);
/// let labels = Tensor::<1>::from_floats([20.0, 20.5, 60.0, 60.5], &device);
/// let preds = Tensor::<1>::from_floats([40.0, 40.2, 40.4, 40.1], &device);
/// let loss = conr.forward(features.clone(), labels, preds, None)?;
/// let grads = loss.backward();
/// assert!(features.grad(&grads).is_some());
/// # Ok::<(), conr_burn::Error>(())
/// ```
#[derive(Clone)]
pub struct SharedWgpu {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    device: Device,
    gpu: GpuConr,
    pub(crate) batches: AtomicU64,
    pub(crate) error: Mutex<Option<Error>>,
    /// The last recorded batch's shape and config, and the buffer its tile
    /// count went to.
    pub(crate) last: Mutex<Option<LastBatch>>,
}

/// What [`SharedWgpu::last_plan`] reads.
pub(crate) struct LastBatch {
    pub shape: Shape,
    pub config: Config,
    pub tiles: wgpu::Buffer,
}

impl std::fmt::Debug for SharedWgpu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedWgpu")
            .field("device", &self.inner.device)
            .field("adapter", &self.inner.gpu.adapter_name())
            .field("batches", &self.batches())
            .finish()
    }
}

impl SharedWgpu {
    /// Brings up burn's wgpu runtime on its default adapter, and conr on the
    /// same device and queue.
    pub fn init() -> Result<Self, Error> {
        Self::init_with(Device::wgpu_options())
    }

    /// [`SharedWgpu::init`] with burn's wgpu options (adapter, graphics API,
    /// memory policy).
    pub fn init_with(options: WgpuOptions) -> Result<Self, Error> {
        let (device, setup) = options
            .init_with_setup()
            .map_err(|e| Error::Burn(format!("bringing up wgpu: {e}")))?;
        Self::from_setup(device, &setup)
    }

    /// conr on a setup already registered with burn: `device` must be the
    /// burn device that `Device::wgpu_options().setup(setup).init()` or
    /// `init_with_setup` returned for `setup`.
    pub fn from_setup(device: Device, setup: &WgpuSetup) -> Result<Self, Error> {
        if !matches!(device.as_dispatch(), burn::backend::DispatchDevice::Cube(_)) {
            return Err(Error::Device(format!(
                "{device:?} is not a wgpu device of burn's cubecl backend"
            )));
        }
        let gpu = GpuConr::from_shared_device(setup.device.clone(), setup.queue.clone())?;
        Ok(Self {
            inner: Arc::new(Inner {
                device: device.without_autodiff(),
                gpu,
                batches: AtomicU64::new(0),
                error: Mutex::new(None),
                last: Mutex::new(None),
            }),
        })
    }

    /// The same device and queue, with conr's engine on another tile plan
    /// ([`TilePlan::Dense`] to visit every tile); the batch counter and
    /// error slot are its own. The engine's pipelines are compiled again.
    pub fn with_plan(&self, tiles: TilePlan) -> Result<Self, Error> {
        let (device, queue) = (self.inner.gpu.device(), self.inner.gpu.queue());
        let gpu = GpuConr::from_shared_device(device.clone(), queue.clone())?.with_plan(tiles);
        Ok(Self {
            inner: Arc::new(Inner {
                device: self.inner.device.clone(),
                gpu,
                batches: AtomicU64::new(0),
                error: Mutex::new(None),
                last: Mutex::new(None),
            }),
        })
    }

    /// The burn device whose tensors take the in-place path (use
    /// `.autodiff()` on a clone to train).
    pub fn device(&self) -> &Device {
        &self.inner.device
    }

    /// conr's engine on burn's device and queue.
    pub fn gpu(&self) -> &GpuConr {
        &self.inner.gpu
    }

    /// How many batches conr has recorded on burn's buffers so far. burn runs
    /// work lazily: a batch counts once burn executes it (at the latest when
    /// its loss or gradient is read).
    pub fn batches(&self) -> u64 {
        self.inner.batches.load(Ordering::SeqCst)
    }

    /// The tile plan of the last batch conr recorded on burn's buffers, as the
    /// device ran it: the band (built on the device) and the share of tiles
    /// it visited, or the dense plan; `None` before the first batch. It
    /// waits for that batch to finish.
    pub fn last_plan(&self) -> Result<Option<PlanReport>, Error> {
        let last = self
            .inner
            .last
            .lock()
            .map_err(|_| Error::Device("a batch panicked".into()))?;
        let Some(last) = last.as_ref() else {
            return Ok(None);
        };
        let gpu = &self.inner.gpu;
        let words = conr_wgpu::read_back(gpu, &[(&last.tiles, 4)])?;
        Ok(Some(gpu.record_report(
            last.shape,
            &last.config,
            words[0],
        )?))
    }

    /// The error of the last batch that failed on the device, if any, and
    /// clears it. Such a batch was refused after [`crate::ConrLoss::forward`]
    /// returned (burn executes lazily); its loss and gradient are NaN.
    pub fn take_error(&self) -> Option<Error> {
        self.inner.error.lock().ok().and_then(|mut e| e.take())
    }

    pub(crate) fn job(&self, shape: Shape, config: Config, weighted: bool) -> Job {
        Job {
            shared: self.clone(),
            shape,
            config,
            weighted,
        }
    }
}
