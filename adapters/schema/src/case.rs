//! The cases: one batch with its config, or labels with a density config.

use std::path::Path;

use conr_core::{Batch, Inputs, OwnedBatch, Scalar, Shape};
use serde::Deserialize;

use crate::{ConfigJson, DensityJson, Error};

/// One loss case: a batch and its config. `expected`, if present, is kept
/// for the conformance tests and ignored by the commands.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LossCase {
    /// `"conr-fixture/1"` when present.
    #[serde(default)]
    pub schema: Option<String>,
    /// The fixture family, informational.
    #[serde(default)]
    pub variant: Option<String>,
    /// M, the rows.
    pub n: usize,
    /// D, the feature width.
    pub d: usize,
    /// L, the label width (default 1).
    #[serde(default = "one")]
    pub label_dim: usize,
    /// The config; missing keys take the preset's values.
    #[serde(default)]
    pub config: ConfigJson,
    /// M·D features, row-major.
    pub features: Vec<f64>,
    /// M·L labels.
    pub labels: Vec<f64>,
    /// M·L predictions.
    pub preds: Vec<f64>,
    /// M pushing powers eta; all 1 when absent.
    #[serde(default)]
    pub weights: Option<Vec<f64>>,
    /// The fixture's expected results.
    #[serde(default)]
    pub expected: Option<serde_json::Value>,
}

fn one() -> usize {
    1
}

impl LossCase {
    /// The batch shape.
    pub fn shape(&self) -> Shape {
        Shape {
            rows: self.n,
            dim: self.d,
            label_dim: self.label_dim,
        }
    }

    /// The batch, in f64 as written, validated.
    pub fn batch(&self) -> Result<Batch<'_, f64>, conr_core::Error> {
        let inputs = Inputs {
            features: &self.features,
            labels: &self.labels,
            preds: &self.preds,
            eta: self.weights.as_deref(),
        };
        Batch::new(self.shape(), inputs)
    }

    /// The batch in `T` (rounded once), validated.
    pub fn converted<T: Scalar>(&self) -> Result<OwnedBatch<T>, conr_core::Error> {
        OwnedBatch::converted(&self.batch()?)
    }
}

/// One density-weight case (`variant: "lds-weights"`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeightsCase {
    /// `"conr-fixture/1"` when present.
    #[serde(default)]
    pub schema: Option<String>,
    /// `"lds-weights"` when present.
    #[serde(default)]
    pub variant: Option<String>,
    /// The number of labels, when present (checked).
    #[serde(default)]
    pub n: Option<usize>,
    /// The binning and weighting.
    #[serde(default)]
    pub config: DensityJson,
    /// The labels.
    pub labels: Vec<f64>,
    /// The fixture's expected weights.
    #[serde(default)]
    pub expected: Option<serde_json::Value>,
}

impl WeightsCase {
    /// The labels, after checking `n` against their count.
    pub fn labels(&self) -> Result<&[f64], conr_core::Error> {
        match self.n {
            Some(n) if n != self.labels.len() => Err(conr_core::Error::ShapeMismatch {
                what: "labels",
                expected: n,
                got: self.labels.len(),
            }),
            _ => Ok(&self.labels),
        }
    }
}

/// Reads and parses a JSON file, naming the file in every error.
pub fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, Error> {
    let text = read_text(path)?;
    serde_json::from_str(&text).map_err(|source| Error::Json {
        path: path.to_path_buf(),
        source,
    })
}

/// Reads a file, naming it in the error.
pub(crate) fn read_text(path: &Path) -> Result<String, Error> {
    std::fs::read_to_string(path).map_err(|source| Error::Read {
        path: path.to_path_buf(),
        source,
    })
}
