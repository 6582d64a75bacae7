//! ConR on one batch with both CPU engines: the loss, the anchors, the pair
//! counts, and the gradient you add (times β) to your encoder's output gradient.
//!
//! ```sh
//! cargo run -p conr-cpu --release --example batch
//! ```

use conr_cpu::core::density::{DensityConfig, Kernel, Reweight};
use conr_cpu::{Batch, Config, Engine, Fast, Inputs, Reference, Shape, density_weights};

fn main() -> Result<(), conr_cpu::Error> {
    // 512 rows (two views of 256 ages), 64 features, on a fixed pattern.
    let (m, d) = (512, 64);
    let ages: Vec<f64> = (0..m)
        .map(|j| 20.0 + ((j % 256) * 37 % 61) as f64)
        .collect();
    let preds: Vec<f64> = ages
        .iter()
        .enumerate()
        .map(|(j, y)| y + ((j * 13 % 11) as f64 - 5.0))
        .collect();
    let features: Vec<f64> = (0..m * d)
        .map(|i| ((i * 7919 % 997) as f64 / 498.5) - 1.0)
        .collect();

    // Rare ages push harder: square-root inverse density, smoothed (LDS).
    let density = DensityConfig {
        reweight: Reweight::SqrtInv,
        kernel: Some(Kernel::Gaussian),
        ..DensityConfig::default()
    };
    let eta = density_weights(&density, &ages)?;

    let shape = Shape {
        rows: m,
        dim: d,
        label_dim: 1,
    };
    let inputs = Inputs {
        features: &features,
        labels: &ages,
        preds: &preds,
        eta: Some(&eta),
    };
    let batch = Batch::new(shape, inputs)?;
    let config = Config::paper();
    let fast = Fast::new().compute(&batch, &config)?;
    let reference = Reference.compute(&batch, &config)?;

    let anchors = fast.anchors.iter().filter(|&&a| a).count();
    let positives: u64 = fast.positives.iter().map(|&p| u64::from(p)).sum();
    let negatives: u64 = fast.negatives.iter().map(|&q| u64::from(q)).sum();
    println!("loss (fast engine):      {:.12}", fast.loss);
    println!("loss (reference engine): {:.12}", reference.loss);
    println!("anchors: {anchors} of {m}; positive pairs {positives}, negative pairs {negatives}");
    let worst = fast
        .grad_features
        .iter()
        .zip(&reference.grad_features)
        .fold(0.0f64, |w, (a, b)| w.max((a - b).abs()));
    println!("largest gradient difference between the engines: {worst:.2e}");
    Ok(())
}
