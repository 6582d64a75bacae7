//! The burn backend extension the in-place path dispatches through: only
//! the cubecl backend implements it, on its own wgpu buffers.

use burn::backend::fusion::custom::TensorSpec;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, backend_extension};
use burn::tensor::DType;
use burn_cubecl::CubeBackend;

use super::job::Job;

/// ConR on the GPU buffers of cubecl wgpu tensors, with conr-wgpu sharing
/// burn's device and queue.
#[backend_extension(Cube, Fusion)]
pub trait InPlace: Backend {
    /// The loss (`[1]`), `∂loss/∂features` (M×D) and the device's status
    /// word (`[1]`, a `conr_wgpu::Status` in an f32's bits) of f32
    /// `features` (M×D), `labels` and `preds` (M×L, flattened) and eta (M).
    #[fusion(meta = |features, _labels, _preds, _weights, _job| (
        TensorSpec::new([1].into(), features.dtype),
        features.clone(),
        TensorSpec::new([1].into(), DType::F32),
    ))]
    fn conr_in_place(
        features: FloatTensor<Self>,
        labels: FloatTensor<Self>,
        preds: FloatTensor<Self>,
        weights: FloatTensor<Self>,
        job: Job,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);
}

impl InPlace for CubeBackend {
    fn conr_in_place(
        features: FloatTensor<Self>,
        labels: FloatTensor<Self>,
        preds: FloatTensor<Self>,
        weights: FloatTensor<Self>,
        job: Job,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        job.run([features, labels, preds, weights])
    }
}
