//! Batches as burn tensors, and outputs read back from burn.

#![allow(dead_code)]

use burn::tensor::{DType, Device, Tensor, TensorData};
use conr_core::{Config, Shape};

/// A batch in f64 on the host, to be placed on a burn device.
#[derive(Clone, Debug)]
pub struct HostBatch {
    pub shape: Shape,
    pub features: Vec<f64>,
    pub labels: Vec<f64>,
    pub preds: Vec<f64>,
    pub weights: Option<Vec<f64>>,
    pub config: Config,
}

/// The batch's tensors on a device, in a float type.
pub struct Tensors {
    pub features: Tensor<2>,
    pub labels: Tensor<2>,
    pub preds: Tensor<2>,
    pub weights: Option<Tensor<1>>,
}

impl HostBatch {
    pub fn from_case(case: &conr_tests::fixtures::LossCase) -> Self {
        Self {
            shape: case.shape(),
            features: case.features.clone(),
            labels: case.labels.clone(),
            preds: case.preds.clone(),
            weights: case.weights.clone(),
            config: case.config.to_config().expect("a valid fixture config"),
        }
    }

    pub fn from_random(b: &conr_tests::random::RandomBatch) -> Self {
        Self {
            shape: b.shape,
            features: b.features.clone(),
            labels: b.labels.clone(),
            preds: b.preds.clone(),
            weights: b.weights.clone(),
            config: b.config,
        }
    }

    pub fn on(&self, device: &Device, dtype: DType) -> Tensors {
        let Shape {
            rows,
            dim,
            label_dim,
        } = self.shape;
        let t2 = |v: &[f64], cols| {
            Tensor::<2>::from_data(TensorData::new(v.to_vec(), [rows, cols]), (device, dtype))
        };
        let features = t2(&self.features, dim);
        Tensors {
            features: if device.is_autodiff() {
                features.require_grad()
            } else {
                features
            },
            labels: t2(&self.labels, label_dim),
            preds: t2(&self.preds, label_dim),
            weights: self.weights.as_ref().map(|w| {
                Tensor::<1>::from_data(TensorData::new(w.clone(), [rows]), (device, dtype))
            }),
        }
    }
}

/// A tensor's values in f64.
pub fn values<const D: usize>(t: Tensor<D>) -> Vec<f64> {
    t.into_data()
        .convert::<f64>()
        .try_into_vec::<f64>()
        .expect("float data")
}

/// The loss and the features' gradient of `loss.backward()`.
pub fn loss_and_grad(loss: Tensor<1>, features: &Tensor<2>) -> (f64, Vec<f64>) {
    let grads = loss.clone().backward();
    let grad = features.grad(&grads).expect("the features have a gradient");
    (values(loss)[0], values(grad))
}

/// Checks a loss and a gradient against `want` within `budget`.
pub fn agree(
    budget: &conr_tests::budget::Budget,
    (loss, grad): &(f64, Vec<f64>),
    want_loss: f64,
    want_grad: &[f64],
) -> Result<(), String> {
    budget.loss.scalar("loss", *loss, want_loss)?;
    budget.grad.vector("grad", grad, want_grad)
}
