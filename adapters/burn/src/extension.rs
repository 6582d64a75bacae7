//! The two burn backend extensions the loss is built from.
//!
//! - [`AttachGradient`] makes a loss value computed elsewhere differentiable:
//!   its autodiff step hands the features the gradient conr computed with
//!   the value, scaled by the upstream gradient. Every backend the op
//!   supports implements it (the value passes through unchanged).
//! - [`InPlace`] runs conr-wgpu on a cubecl tensor's own wgpu buffers
//!   (see [`crate::in_place`]); only the cubecl backend implements it.
// burn marks NdArray deprecated in favour of Flex; both CPU backends are
// supported, since most burn programs written before 0.22 run on NdArray.
#![allow(deprecated)]

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind, unary};
use burn::backend::fusion::custom::TensorSpec;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Flex, NdArray, backend_extension};
use burn::tensor::Shape;
use burn_cubecl::CubeBackend;

use crate::in_place::Job;

/// A loss whose gradient with respect to the features is known.
#[backend_extension(Autodiff, NdArray, Flex, Cube, Fusion)]
pub trait AttachGradient: Backend {
    /// `loss` (shape `[1]`), differentiable in `features` with
    /// `∂loss/∂features = grad`. Outside autodiff it is `loss` itself.
    #[fusion(default)]
    fn attach_gradient(
        features: FloatTensor<Self>,
        loss: FloatTensor<Self>,
        grad: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        drop((features, grad));
        loss
    }
}

impl AttachGradient for NdArray {}
impl AttachGradient for Flex {}
impl AttachGradient for CubeBackend {}

/// The backward step of ConR: the gradient conr computed in the forward
/// pass, times the upstream gradient of the scalar loss.
#[derive(Debug)]
struct ConrBackward;

impl<B: Backend> Backward<B, 1> for ConrBackward {
    /// ∂loss/∂features from the forward pass.
    type State = FloatTensor<B>;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = ops.state;
        unary::<B, _>(ops.parents, ops.node, grads, |upstream| {
            // The loss is one value: its upstream gradient broadcasts over M×D.
            B::float_mul(grad, B::float_reshape(upstream, Shape::new([1, 1])))
        });
    }
}

impl<B: Backend, C: CheckpointStrategy> AttachGradient for Autodiff<B, C> {
    fn attach_gradient(
        features: FloatTensor<Self>,
        loss: FloatTensor<Self>,
        grad: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        match ConrBackward
            .prepare::<C>([features.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish(grad.into_primitive(), loss.into_primitive()),
            OpsKind::UnTracked(prep) => prep.finish(loss.into_primitive()),
        }
    }
}

/// ConR on the GPU buffers of cubecl wgpu tensors, with conr-wgpu sharing
/// burn's device and queue.
#[backend_extension(Cube, Fusion)]
pub trait InPlace: Backend {
    /// The loss (`[1]`) and `∂loss/∂features` (M×D) of f32 `features` (M×D),
    /// `labels` and `preds` (M×L, flattened) and `weights` (M).
    #[fusion(meta = |features, _labels, _preds, _weights, _job| (
        TensorSpec::new([1].into(), features.dtype),
        features.clone(),
    ))]
    fn conr_in_place(
        features: FloatTensor<Self>,
        labels: FloatTensor<Self>,
        preds: FloatTensor<Self>,
        weights: FloatTensor<Self>,
        job: Job,
    ) -> (FloatTensor<Self>, FloatTensor<Self>);
}

impl InPlace for CubeBackend {
    fn conr_in_place(
        features: FloatTensor<Self>,
        labels: FloatTensor<Self>,
        preds: FloatTensor<Self>,
        weights: FloatTensor<Self>,
        job: Job,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        job.run([features, labels, preds, weights])
    }
}
