//! The object `conr compute` (and rank 0 of `conr-mpi`) prints.

use conr_core::{Named, Output, Precision};
use serde::Serialize;

/// `{"loss", "grad_features", "anchors", "positives", "negatives", "backend", "precision"}`.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The loss.
    pub loss: f64,
    /// ∂loss/∂features, M·D values, row-major.
    pub grad_features: Vec<f64>,
    /// Whether each row is an anchor.
    pub anchors: Vec<bool>,
    /// |P_j| per row.
    pub positives: Vec<u32>,
    /// |Q_j| per row.
    pub negatives: Vec<u32>,
    /// The engine that ran, as the caller named it.
    pub backend: String,
    /// The precision it computed in.
    pub precision: &'static str,
}

impl Report {
    /// The report of `output`, computed by `backend` in `precision`.
    pub fn new(output: Output<f64>, backend: &str, precision: Precision) -> Self {
        Self {
            loss: output.loss,
            grad_features: output.grad_features,
            anchors: output.anchors,
            positives: output.positives,
            negatives: output.negatives,
            backend: backend.to_string(),
            precision: precision.name(),
        }
    }
}
