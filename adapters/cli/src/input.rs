//! The input files of `conr compute` and `conr weights`: the `conr-fixture/1`
//! schema of the conformance fixtures. Unknown keys are errors, so a typo in a
//! config key never silently falls back to a default.

use anyhow::{Context, Result, bail};
use conr_core::density::{DensityConfig, Kernel, Reweight};
use conr_core::{Aggregation, Config, LabelMetric, Pushing, PushingKind, Reduction, Shape};
use serde::Deserialize;
use std::path::Path;

/// One loss case: a batch and its config. `expected`, if present, is ignored.
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
    /// M weights; all 1 when absent.
    #[serde(default)]
    pub weights: Option<Vec<f64>>,
    /// The fixture's expected results (ignored by the CLI).
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
}

/// The `config` object. Every key is optional; `preset` (default `paper`) fills the rest.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigJson {
    /// `paper`, `official_agedb` or `official_nyud2`.
    pub preset: Option<String>,
    /// ω.
    pub threshold: Option<f64>,
    /// ω̂.
    pub pred_threshold: Option<f64>,
    /// τ.
    pub temperature: Option<f64>,
    /// `{"kind": "exp"|"linear"|"constant", "scale": e}`.
    pub pushing: Option<PushingJson>,
    /// `l1`, `l2`, `linf`, `angular`.
    pub label_metric: Option<String>,
    /// `mean_of_logs`, `log_of_mean`.
    pub aggregation: Option<String>,
    /// Add `M − |P_j|` to the denominator.
    pub denominator_padding: Option<bool>,
    /// Multiply row losses by their weight.
    pub outer_weight: Option<bool>,
    /// Count the row itself in `n_j`.
    pub self_in_positive_count: Option<bool>,
    /// `mean`, `mean_anchors`, `sum`.
    pub reduction: Option<String>,
}

/// The `pushing` object.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PushingJson {
    /// `exp`, `linear` or `constant`.
    pub kind: String,
    /// The scale e (default 0).
    #[serde(default)]
    pub scale: f64,
}

/// Looks `name` up in `table`, or explains the choices.
fn pick<T: Copy>(field: &str, name: &str, table: &[(&str, T)]) -> Result<T> {
    match table.iter().find(|(n, _)| *n == name) {
        Some(&(_, v)) => Ok(v),
        None => {
            let choices: Vec<&str> = table.iter().map(|(n, _)| *n).collect();
            bail!(
                "config.{field}: unknown value {name:?} (expected one of {})",
                choices.join(", ")
            )
        }
    }
}

/// The preset names, in the order the docs list them.
pub const PRESETS: [&str; 3] = ["paper", "official_agedb", "official_nyud2"];

/// A preset by name.
pub fn preset(name: &str) -> Result<Config> {
    pick(
        "preset",
        name,
        &[
            ("paper", Config::paper as fn() -> Config),
            ("official_agedb", Config::official_agedb),
            ("official_nyud2", Config::official_nyud2),
        ],
    )
    .map(|f| f())
}

impl ConfigJson {
    /// The core config, validated.
    pub fn to_config(&self) -> Result<Config> {
        let mut c = preset(self.preset.as_deref().unwrap_or("paper"))?;
        if let Some(v) = self.threshold {
            c.threshold = v;
        }
        if self.pred_threshold.is_some() {
            c.pred_threshold = self.pred_threshold;
        }
        if let Some(v) = self.temperature {
            c.temperature = v;
        }
        if let Some(p) = &self.pushing {
            let kind = [
                ("exp", PushingKind::Exp),
                ("linear", PushingKind::Linear),
                ("constant", PushingKind::Constant),
            ];
            c.pushing = Pushing {
                kind: pick("pushing.kind", &p.kind, &kind)?,
                scale: p.scale,
            };
        }
        if let Some(m) = &self.label_metric {
            let metrics = [
                ("l1", LabelMetric::L1),
                ("l2", LabelMetric::L2),
                ("linf", LabelMetric::Linf),
                ("angular", LabelMetric::Angular),
            ];
            c.label_metric = pick("label_metric", m, &metrics)?;
        }
        if let Some(a) = &self.aggregation {
            let table = [
                ("mean_of_logs", Aggregation::MeanOfLogs),
                ("log_of_mean", Aggregation::LogOfMean),
            ];
            c.aggregation = pick("aggregation", a, &table)?;
        }
        if let Some(r) = &self.reduction {
            let table = [
                ("mean", Reduction::Mean),
                ("mean_anchors", Reduction::MeanAnchors),
                ("sum", Reduction::Sum),
            ];
            c.reduction = pick("reduction", r, &table)?;
        }
        c.denominator_padding = self.denominator_padding.unwrap_or(c.denominator_padding);
        c.outer_weight = self.outer_weight.unwrap_or(c.outer_weight);
        c.self_in_positive_count = self
            .self_in_positive_count
            .unwrap_or(c.self_in_positive_count);
        c.validate()?;
        Ok(c)
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
    /// The fixture's expected weights (ignored by the CLI).
    #[serde(default)]
    pub expected: Option<serde_json::Value>,
}

/// The density `config` object; missing keys take [`DensityConfig::default`]'s values.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DensityJson {
    /// `sqrt_inv` or `inverse`.
    pub reweight: Option<String>,
    /// `gaussian`, `triang`, `laplace`, or null.
    pub kernel: Option<String>,
    /// The window size.
    pub kernel_size: Option<usize>,
    /// The window width.
    pub sigma: Option<f64>,
    /// The number of bins.
    pub bins: Option<usize>,
    /// The bin width.
    pub bin_width: Option<f64>,
    /// The lower edge of bin 0.
    pub min_label: Option<f64>,
}

impl DensityJson {
    /// The core density config, validated.
    pub fn to_config(&self) -> Result<DensityConfig> {
        let d = DensityConfig::default();
        let reweight = match &self.reweight {
            Some(r) => pick(
                "reweight",
                r,
                &[
                    ("sqrt_inv", Reweight::SqrtInv),
                    ("inverse", Reweight::Inverse),
                ],
            )?,
            None => d.reweight,
        };
        let kernel = match &self.kernel {
            Some(k) => Some(pick(
                "kernel",
                k,
                &[
                    ("gaussian", Kernel::Gaussian),
                    ("triang", Kernel::Triang),
                    ("laplace", Kernel::Laplace),
                ],
            )?),
            None => None,
        };
        let config = DensityConfig {
            reweight,
            kernel,
            kernel_size: self.kernel_size.unwrap_or(d.kernel_size),
            sigma: self.sigma.unwrap_or(d.sigma),
            bins: self.bins.unwrap_or(d.bins),
            bin_width: self.bin_width.unwrap_or(d.bin_width),
            min_label: self.min_label.unwrap_or(d.min_label),
        };
        config.validate()?;
        Ok(config)
    }
}

/// Reads and parses a JSON file, naming the file in every error.
pub fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text)
        .with_context(|| format!("{} is not a valid input file", path.display()))
}
