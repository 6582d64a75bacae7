//! Batches as burn tensors, and outputs read back from burn.

#![allow(dead_code)]

use burn::tensor::{DType, Device, Tensor, TensorData};
use conr_core::Shape;

pub use conr_tests::random::RandomBatch as HostBatch;

/// The batch's tensors on a device, in a float type.
pub struct Tensors {
    pub features: Tensor<2>,
    pub labels: Tensor<2>,
    pub preds: Tensor<2>,
    pub weights: Option<Tensor<1>>,
}

/// A host batch on burn, and its reference result.
pub trait OnBurn {
    /// The reference engine's output, in f64.
    fn reference(&self) -> conr_cpu::Output<f64>;
    /// The batch's tensors on `device` in `dtype` (features tracked on an
    /// autodiff device).
    fn on(&self, device: &Device, dtype: DType) -> Tensors;
}

impl OnBurn for HostBatch {
    fn reference(&self) -> conr_cpu::Output<f64> {
        use conr_cpu::Engine;
        conr_cpu::Reference
            .compute(&self.batch(), &self.config)
            .expect("the reference computes")
    }

    fn on(&self, device: &Device, dtype: DType) -> Tensors {
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
            weights: self.eta.as_ref().map(|w| {
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

/// The last loss is below 90% of the first.
pub fn assert_falls(what: &str, losses: &[f64]) {
    let (first, last) = (losses[0], losses[losses.len() - 1]);
    assert!(
        last < 0.9 * first,
        "{what}: the loss fell from {first} to {last}: {losses:?}"
    );
}

/// `steps` Adam steps of a linear encoder (4 → 8) on ConR alone, over 32
/// rows in four label groups on `device`. Returns the loss of each step.
///
/// Everything is fixed, the encoder's first weights included: with burn's
/// unseeded random init, the first loss (and so the relative drop) varied
/// from run to run. Each input row is its group's one-hot plus a small
/// spread, so a linear encoder can separate the groups and the drop is
/// large, not a few percent past a threshold.
pub fn train(conr: &conr_burn::ConrLoss, device: &Device, steps: usize) -> Vec<f64> {
    use burn::module::{Module, Param};
    use burn::nn::Linear;
    use burn::optim::{AdamConfig, GradientsParams};

    let (inputs, outputs, rows) = (4, 8, 32);
    let spread = |i: usize, modulus: usize| (i * 37 % modulus) as f32 / modulus as f32 - 0.5;
    let weight: Vec<f32> = (0..inputs * outputs)
        .map(|i| 1.0 + 0.1 * spread(i, 29))
        .collect();
    let mut encoder = Linear {
        weight: Param::from_tensor(Tensor::<2>::from_data(
            TensorData::new(weight, [inputs, outputs]),
            device,
        )),
        bias: Some(Param::from_tensor(Tensor::<1>::zeros([outputs], device))),
    };
    let mut adam = AdamConfig::new().init();
    let x: Vec<f32> = (0..rows * inputs)
        .map(|i| f32::from(u8::from(i % inputs == (i / inputs) % 4)) + 0.2 * spread(i, 101))
        .collect();
    let x = Tensor::<2>::from_data(TensorData::new(x, [rows, inputs]), device);
    let labels: Vec<f32> = (0..rows).map(|j| (j % 4) as f32 * 10.0).collect();
    let y = Tensor::<1>::from_data(TensorData::new(labels, [rows]), device);
    let p = Tensor::<1>::full([rows], 15.0, device);
    let mut losses = Vec::new();
    for _ in 0..steps {
        let features = encoder.forward(x.clone());
        let loss = conr.forward(features, y.clone(), p.clone(), None).unwrap();
        losses.push(values(loss.clone())[0]);
        let grads = GradientsParams::from_grads(loss.backward(), &encoder);
        encoder = adam.step(0.05, encoder, grads);
    }
    assert!(encoder.num_params() > 0);
    losses
}

/// A bad case's tensors on `device`: features `[M, D]`, labels and
/// predictions `[n / L, L]` as given (so that a short input has fewer rows),
/// and eta `[M]`; `None` for a shape no tensor can have.
pub fn bad_tensors(
    case: &conr_tests::bad::BadCase,
    device: &Device,
    dtype: DType,
) -> Option<Tensors> {
    let Shape {
        rows,
        dim,
        label_dim,
    } = case.shape;
    rows.checked_mul(dim.max(label_dim))?;
    if rows > 1 << 20 {
        return None;
    }
    let t2 = |v: &[f64], cols: usize| {
        let shape = [v.len().checked_div(cols).unwrap_or(rows), cols];
        Tensor::<2>::from_data(TensorData::new(v.to_vec(), shape), (device, dtype))
    };
    Some(Tensors {
        features: t2(&case.features, dim),
        labels: t2(&case.labels, label_dim),
        preds: t2(&case.preds, label_dim),
        weights: case.eta.as_ref().map(|w| {
            Tensor::<1>::from_data(TensorData::new(w.clone(), [w.len()]), (device, dtype))
        }),
    })
}
