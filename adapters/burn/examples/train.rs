//! A burn training loop with L1 + β·ConR: a small encoder and head fitted to
//! an imbalanced synthetic regression task. The loss falls as it trains.
//!
//! ```sh
//! cargo run -p conr-burn --release --example train                  # ndarray, host path
//! cargo run -p conr-burn --release --example train -- --backend flex  # flex, host path
//! cargo run -p conr-burn --release --example train -- --backend wgpu  # burn's wgpu, in place
//! ```

use burn::module::Module;
use burn::nn::{Linear, LinearConfig, Relu};
use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::{Device, Tensor, TensorData};
use conr_burn::{Config, ConrLoss};

/// β, the weight of the ConR term (the AgeDB-DIR runs use 4).
const BETA: f64 = 4.0;

#[derive(Module, Debug)]
struct Model {
    enc1: Linear,
    relu: Relu,
    enc2: Linear,
    head: Linear,
}

impl Model {
    fn new(device: &Device) -> Self {
        Self {
            enc1: LinearConfig::new(8, 32).init(device),
            relu: Relu::new(),
            enc2: LinearConfig::new(32, 16).init(device),
            head: LinearConfig::new(16, 1).init(device),
        }
    }

    /// The features (N×16) and the predictions (N).
    fn forward(&self, x: Tensor<2>) -> (Tensor<2>, Tensor<1>) {
        let features = self.enc2.forward(self.relu.forward(self.enc1.forward(x)));
        let preds = self.head.forward(features.clone()).squeeze_dim(1);
        (features, preds)
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let backend = std::env::args()
        .skip_while(|a| a != "--backend")
        .nth(1)
        .unwrap_or_else(|| "ndarray".into());
    let config = Config {
        threshold: 1.0,
        temperature: 0.2,
        ..Config::paper()
    };
    let conr = ConrLoss::new(config)?;
    let (device, conr) = match backend.as_str() {
        #[allow(deprecated)] // burn marks NdArray deprecated in favour of Flex.
        "ndarray" => (Device::ndarray(), conr),
        "flex" => (Device::flex(), conr),
        #[cfg(feature = "wgpu")]
        "wgpu" => {
            // One device and one queue for burn and conr, created once.
            let shared = conr_burn::SharedWgpu::init()?;
            println!("wgpu adapter: {}", shared.gpu().adapter_name());
            (shared.device().clone(), conr.in_place_on(shared))
        }
        other => return Err(format!("--backend is ndarray, flex or wgpu, not {other}").into()),
    };
    let device = device.autodiff();
    println!("backend {backend}");

    // 256 samples with 8 inputs; the label is a smooth function of the inputs,
    // and most labels sit near the middle of its range.
    let n = 256;
    let x: Vec<f32> = (0..n * 8)
        .map(|i| ((i * 7919 % 1009) as f32 / 504.5) - 1.0)
        .collect();
    let y: Vec<f32> = x
        .chunks_exact(8)
        .map(|r| 50.0 + 20.0 * (r[0] * r[1] + r[2]).tanh() + 5.0 * r[3])
        .collect();
    let x = Tensor::<2>::from_data(TensorData::new(x, [n, 8]), &device);
    let y = Tensor::<1>::from_data(TensorData::new(y, [n]), &device);

    let mut model = Model::new(&device);
    let mut optimizer = AdamConfig::new().init();
    let mut first = None;
    let mut last = 0.0;
    for epoch in 0..=200 {
        let (features, preds) = model.forward(x.clone());
        let regression = (preds.clone() - y.clone()).abs().mean();
        // The predictions only choose the negatives: pass them detached.
        let term = conr.forward(features, y.clone(), preds.detach(), None)?;
        let loss = regression.clone() + term.clone() * BETA;
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        if epoch % 25 == 0 {
            let value = loss.into_scalar::<f32>();
            first.get_or_insert(value);
            last = value;
            println!(
                "epoch {epoch:3}: loss {value:8.4}  (L1 {:8.4}, ConR {:.4})",
                regression.into_scalar::<f32>(),
                term.into_scalar::<f32>()
            );
        }
        model = optimizer.step(3e-3, model, grads);
    }
    let first = first.unwrap_or(last);
    if last >= first {
        return Err(format!("the loss did not fall: {first} -> {last}").into());
    }
    Ok(())
}
