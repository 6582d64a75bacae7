//! A candle training loop with L1 + β·ConR: a small encoder and head fitted to
//! an imbalanced synthetic regression task. The loss falls as it trains.
//!
//! ```sh
//! cargo run -p conr-candle --release --example candle_train
//! ```

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{AdamW, Optimizer, ParamsAdamW, VarBuilder, VarMap};
use conr_candle::{Config, conr_loss};

/// β, the weight of the ConR term (the AgeDB-DIR runs use 4).
const BETA: f64 = 4.0;

fn main() -> candle_core::Result<()> {
    let device = Device::Cpu;
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
    let x = Tensor::from_vec(x, (n, 8), &device)?;
    let y = Tensor::from_vec(y, n, &device)?;

    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &device);
    let encoder = candle_nn::seq()
        .add(candle_nn::linear(8, 32, vb.pp("enc1"))?)
        .add(candle_nn::Activation::Relu)
        .add(candle_nn::linear(32, 16, vb.pp("enc2"))?);
    let head = candle_nn::linear(16, 1, vb.pp("head"))?;
    let params = ParamsAdamW {
        lr: 3e-3,
        ..Default::default()
    };
    let mut optimizer = AdamW::new(varmap.all_vars(), params)?;
    let config = Config {
        threshold: 1.0,
        temperature: 0.2,
        ..Config::paper()
    };

    for epoch in 0..=200 {
        let features = encoder.forward(&x)?;
        let preds = head.forward(&features)?.squeeze(1)?;
        let regression = (&preds - &y)?.abs()?.mean_all()?;
        // The predictions only choose the negatives: pass them detached.
        let conr = conr_loss(&features, &y, &preds.detach(), None, &config)?;
        let loss = (&regression + (&conr * BETA)?)?;
        optimizer.backward_step(&loss)?;
        if epoch % 25 == 0 {
            println!(
                "epoch {epoch:3}: loss {:8.4}  (L1 {:8.4}, ConR {:.4})",
                loss.to_scalar::<f32>()?,
                regression.to_scalar::<f32>()?,
                conr.to_scalar::<f32>()?
            );
        }
    }
    Ok(())
}
