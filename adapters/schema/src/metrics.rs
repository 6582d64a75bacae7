//! `conr metrics`: the DIR evaluation of predictions against labels, the
//! regions from the training labels ([`conr_core::evaluation`]).

use conr_core::Named;
use conr_core::evaluation::{Metrics, ShotMetrics, Shots, shot_metrics};
use serde::{Deserialize, Serialize};

use crate::Error;

/// The input of `conr metrics`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsCase {
    /// One prediction per test sample.
    pub preds: Vec<f64>,
    /// One label per test sample.
    pub labels: Vec<f64>,
    /// The training labels, which set each label's region.
    pub train_labels: Vec<f64>,
    /// Labels with more training samples than this are many-shot (100).
    #[serde(default)]
    pub many: Option<f64>,
    /// Labels with fewer training samples than this are few-shot (20).
    #[serde(default)]
    pub few: Option<f64>,
    /// Bin every label as `⌊y / bin_width⌋` (real-valued labels).
    #[serde(default)]
    pub bin_width: Option<f64>,
}

/// One set's metrics: `null` values for a set without test samples.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct MetricsJson {
    /// Test samples.
    pub count: usize,
    /// Mean squared error.
    pub mse: Option<f64>,
    /// Mean absolute error.
    pub mae: Option<f64>,
    /// Geometric mean of the absolute errors.
    pub gmean: Option<f64>,
}

/// One test label's metrics.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LabelJson {
    /// The label (or its bin).
    pub label: f64,
    /// Training samples with it.
    pub train_count: usize,
    /// `many`, `medium` or `few`.
    pub region: String,
    /// Its test samples' metrics.
    #[serde(flatten)]
    pub metrics: MetricsJson,
}

/// What `conr metrics` prints.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MetricsReport {
    /// Every test sample.
    pub all: MetricsJson,
    /// The many-shot region.
    pub many: MetricsJson,
    /// The medium-shot region.
    pub medium: MetricsJson,
    /// The few-shot region.
    pub few: MetricsJson,
    /// Each test label, ascending.
    pub per_label: Vec<LabelJson>,
}

impl From<&Metrics> for MetricsJson {
    fn from(m: &Metrics) -> Self {
        Self {
            count: m.count,
            mse: m.mse,
            mae: m.mae,
            gmean: m.gmean,
        }
    }
}

impl From<&ShotMetrics> for MetricsReport {
    fn from(m: &ShotMetrics) -> Self {
        Self {
            all: (&m.all).into(),
            many: (&m.many).into(),
            medium: (&m.medium).into(),
            few: (&m.few).into(),
            per_label: m
                .per_label
                .iter()
                .map(|l| LabelJson {
                    label: l.label,
                    train_count: l.train_count,
                    region: l.region.name().to_string(),
                    metrics: (&l.metrics).into(),
                })
                .collect(),
        }
    }
}

impl MetricsCase {
    /// The thresholds and binning, the defaults where the file is silent.
    pub fn shots(&self) -> Shots {
        let d = Shots::default();
        Shots {
            many: self.many.unwrap_or(d.many),
            few: self.few.unwrap_or(d.few),
            bin_width: self.bin_width,
        }
    }

    /// The evaluation.
    pub fn run(&self) -> Result<MetricsReport, Error> {
        let m = shot_metrics(&self.shots(), &self.preds, &self.labels, &self.train_labels)?;
        Ok((&m).into())
    }
}
