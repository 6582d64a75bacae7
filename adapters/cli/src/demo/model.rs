//! A small MLP encoder with a linear head.

use candle_core::{Module, Result, Tensor};
use candle_nn::{Linear, VarBuilder, linear};

/// Width of the encoder's hidden layer.
pub const HIDDEN: usize = 64;
/// Width of the features ConR regularises.
pub const EMBEDDING: usize = 32;

/// `x → relu(W1 x) → relu(W2 ·)` (the features), then `w·features + b` (the prediction).
pub struct Regressor {
    layer1: Linear,
    layer2: Linear,
    head: Linear,
}

impl Regressor {
    /// Fresh weights under `vb`.
    pub fn new(inputs: usize, vb: VarBuilder<'_>) -> Result<Self> {
        Ok(Self {
            layer1: linear(inputs, HIDDEN, vb.pp("layer1"))?,
            layer2: linear(HIDDEN, EMBEDDING, vb.pp("layer2"))?,
            head: linear(EMBEDDING, 1, vb.pp("head"))?,
        })
    }

    /// The encoder's features, B×EMBEDDING.
    pub fn features(&self, x: &Tensor) -> Result<Tensor> {
        self.layer2
            .forward(&self.layer1.forward(x)?.relu()?)?
            .relu()
    }

    /// Predictions from features, B.
    pub fn predict(&self, features: &Tensor) -> Result<Tensor> {
        self.head.forward(features)?.squeeze(1)
    }
}
