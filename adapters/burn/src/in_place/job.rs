//! One batch recorded by conr-wgpu on burn's own tensor buffers.

use std::sync::atomic::Ordering;

use burn::backend::ops::FloatTensorOps;
use burn::tensor::{DType, Shape as BurnShape};
use burn_cubecl::CubeBackend;
use burn_cubecl::cubecl::server::Handle;
use burn_cubecl::cubecl::wgpu::{AutoCompiler, WgpuResource, WgpuServer};
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::tensor::CubeTensor;
use conr_core::{Config, Shape};
use conr_wgpu::GpuBuffers;

use super::{LastBatch, SharedWgpu};
use crate::Error;

/// One batch for the [`InPlace`](super::extension::InPlace) extension:
/// where to run it and how.
#[derive(Clone)]
pub struct Job {
    pub(super) shared: SharedWgpu,
    pub(super) shape: Shape,
    pub(super) config: Config,
    /// Whether the batch has eta (its tensor is ones otherwise, never read).
    pub(super) weighted: bool,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job")
            .field("shape", &self.shape)
            .field("config", &self.config)
            .finish()
    }
}

type Resource = cubecl_runtime::storage::ManagedResource<WgpuResource>;

/// The outputs of one batch: the loss `[1]`, the gradient (M×D), and the
/// device's status word `[1]` (a [`conr_wgpu::Status`] in an f32's bits).
pub(super) type Outputs = (CubeTensor, CubeTensor, CubeTensor);

impl Job {
    /// The outputs of `[features, labels, preds, weights]`. A failure is
    /// kept for [`SharedWgpu::take_error`] and gives a NaN loss and gradient:
    /// burn may run this long after the caller returned.
    pub(super) fn run(self, inputs: [CubeTensor; 4]) -> Outputs {
        let features = &inputs[0];
        let (client, device) = (features.client.clone(), features.device.clone());
        let (m, d) = (self.shape.rows, self.shape.dim);
        let output = |shape: BurnShape| {
            let handle = client.empty(shape.num_elements() * 4);
            CubeTensor::new_contiguous(client.clone(), device.clone(), shape, handle, DType::F32)
        };
        let outputs = (
            output(BurnShape::new([1])),
            output(BurnShape::new([m, d])),
            output(BurnShape::new([1])),
        );
        match self.record(inputs, &outputs) {
            Ok(()) => {
                self.shared.inner.batches.fetch_add(1, Ordering::SeqCst);
                outputs
            }
            Err(e) => {
                if let Ok(mut slot) = self.shared.inner.error.lock() {
                    *slot = Some(e);
                }
                let nan = |t: CubeTensor| CubeBackend::float_add_scalar(t, f32::NAN.into());
                // The status of a batch that never ran means nothing: the
                // error is in `take_error`, which the checked path reads first.
                let (loss, grad, status) = outputs;
                (nan(loss), nan(grad), status)
            }
        }
    }

    fn record(&self, inputs: [CubeTensor; 4], (loss, grad, status): &Outputs) -> Result<(), Error> {
        let gpu = &self.shared.inner.gpu;
        let client = loss.client.clone();
        let resource = |handle: &Handle| -> Result<Resource, Error> {
            client
                .get_resource::<WgpuServer<AutoCompiler>>(handle.clone())
                .map_err(|e| Error::Burn(format!("reaching a tensor's wgpu buffer: {e:?}")))
        };
        // conr binds the features at a storage offset: a view that starts
        // elsewhere is copied (burn allocates at aligned offsets).
        let [features, labels, preds, weights] = inputs.map(into_contiguous);
        let alignment = u64::from(gpu.device().limits().min_storage_buffer_offset_alignment);
        let features_at = resource(&features.handle)?;
        let (features, features_at) = if features_at.resource().offset % alignment == 0 {
            (features, features_at)
        } else {
            let copy = features.copy();
            let at = resource(&copy.handle)?;
            (copy, at)
        };
        let labels_at = resource(&labels.handle)?;
        let preds_at = resource(&preds.handle)?;
        let weights_at = resource(&weights.handle)?;
        let grad_at = resource(&grad.handle)?;
        let loss_at = resource(&loss.handle)?;
        let status_at = resource(&status.handle)?;
        // burn's pending work (what wrote the features) goes first.
        client
            .flush()
            .map_err(|e| Error::Burn(format!("flushing burn's queue: {e:?}")))?;
        fn slice(r: &Resource) -> wgpu::BufferSlice<'_> {
            let r = r.resource();
            r.buffer.slice(r.offset..r.offset + r.size)
        }
        let mut encoder = gpu
            .device()
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("conr in burn"),
            });
        // The batch's tile count, for SharedWgpu::last_plan.
        let tiles = gpu.device().create_buffer(&wgpu::BufferDescriptor {
            label: Some("conr tiles in burn"),
            size: 4,
            usage: wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        let buffers = GpuBuffers {
            features: slice(&features_at),
            labels: slice(&labels_at),
            preds: slice(&preds_at),
            eta: self.weighted.then(|| slice(&weights_at)),
            grad_features: slice(&grad_at),
            loss: slice(&loss_at),
            status: Some(slice(&status_at)),
            counts: None,
            tiles: Some(tiles.slice(..)),
        };
        gpu.record(&mut encoder, self.shape, buffers, &self.config)?;
        gpu.queue().submit([encoder.finish()]);
        if let Ok(mut last) = self.shared.inner.last.lock() {
            *last = Some(LastBatch {
                shape: self.shape,
                config: self.config,
                tiles,
            });
        }
        // The tensors (and so their allocations) stay alive until here; burn
        // reuses freed memory only for work it submits after this.
        drop((features, labels, preds, weights));
        Ok(())
    }
}
