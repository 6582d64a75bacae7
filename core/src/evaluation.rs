//! The DIR evaluation: MSE, MAE and the geometric mean of the absolute
//! errors, over every test sample and over the many-, medium- and few-shot
//! regions, as the LDS/FDS reference's `shot_metrics` computes them.
//!
//! A test label's region comes from how many *training* samples have its
//! label: many-shot above `many` (strictly), few-shot below `few`
//! (strictly), medium-shot otherwise. Labels are compared as the reference
//! compares them, the training labels truncated to integers and each test
//! label by its exact value, unless a bin width is given: then every label,
//! training or test, is its bin `⌊y / bin_width⌋`, for real-valued labels.
//!
//! Each region's MSE and MAE are its squared and absolute errors summed over
//! its labels and divided by its test samples; its geometric mean is
//! `exp(mean ln |e|)`, 0 when any error is 0. A region without test samples
//! is reported as empty (`None` values), not as NaN.
//!
//! ```
//! use conr_core::evaluation::{Shots, shot_metrics};
//!
//! let train = [1.0, 1.0, 1.0, 2.0];
//! let shots = Shots { many: 2.0, few: 1.0, bin_width: None };
//! let m = shot_metrics(&shots, &[1.5, 2.0, 0.0], &[1.0, 2.0, 3.0], &train)?;
//! assert_eq!((m.many.count, m.medium.count, m.few.count), (1, 1, 1));
//! assert_eq!(m.many.mae, Some(0.5));
//! assert_eq!(m.medium.gmean, Some(0.0)); // one exact prediction
//! assert_eq!(m.all.mse, Some((0.25 + 0.0 + 9.0) / 3.0));
//! # Ok::<(), conr_core::Error>(())
//! ```

use alloc::vec::Vec;

use crate::config::named;
use crate::{Error, Named, Scalar};

/// The regions, by training samples per label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Region {
    /// More than [`Shots::many`] training samples.
    Many,
    /// Between the two thresholds, both included.
    Medium,
    /// Fewer than [`Shots::few`] training samples.
    Few,
}

named!(
    Region,
    "region",
    [
        ("many", Region::Many),
        ("medium", Region::Medium),
        ("few", Region::Few)
    ]
);

/// The thresholds and the binning of the evaluation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Shots {
    /// Labels with more training samples than this are many-shot.
    pub many: f64,
    /// Labels with fewer training samples than this are few-shot.
    pub few: f64,
    /// `None`: labels compared as the reference compares them; `Some(w)`:
    /// every label is its bin `⌊y / w⌋`.
    pub bin_width: Option<f64>,
}

impl Default for Shots {
    /// The DIR benchmarks' thresholds, 100 and 20, and the reference's labels.
    fn default() -> Self {
        Self {
            many: 100.0,
            few: 20.0,
            bin_width: None,
        }
    }
}

impl Shots {
    /// Checks the thresholds and the bin width.
    pub fn validate(&self) -> Result<(), Error> {
        if !(self.many.is_finite() && self.few.is_finite()) {
            return Err(Error::InvalidConfig {
                field: "many",
                why: "the thresholds must be finite",
            });
        }
        if let Some(w) = self.bin_width
            && !(w.is_finite() && w > 0.0)
        {
            return Err(Error::InvalidConfig {
                field: "bin_width",
                why: "must be finite and > 0",
            });
        }
        Ok(())
    }

    /// The region of a label with `train_count` training samples.
    pub fn region(&self, train_count: usize) -> Region {
        let n = train_count as f64;
        if n > self.many {
            Region::Many
        } else if n < self.few {
            Region::Few
        } else {
            Region::Medium
        }
    }

    /// The key a label is compared by: its bin, with a bin width; without,
    /// a training label truncated to an integer and a test label as it is.
    pub fn key(&self, y: f64, training: bool) -> f64 {
        match self.bin_width {
            Some(w) => libm::floor(y / w),
            None if training => libm::trunc(y),
            None => y,
        }
    }
}

/// The metrics of a set of test samples; `None` when it has none.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Metrics {
    /// The test samples.
    pub count: usize,
    /// Mean squared error.
    pub mse: Option<f64>,
    /// Mean absolute error.
    pub mae: Option<f64>,
    /// Geometric mean of the absolute errors.
    pub gmean: Option<f64>,
}

/// Running sums of errors, from which [`Metrics`] are read.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Errors {
    count: usize,
    squares: f64,
    absolutes: f64,
    logs: f64,
    zeros: usize,
}

impl Errors {
    /// Adds one error `prediction − label`.
    pub fn add(&mut self, error: f64) {
        let a = libm::fabs(error);
        self.count += 1;
        self.squares += a * a;
        self.absolutes += a;
        if a > 0.0 {
            self.logs += libm::log(a);
        } else {
            self.zeros += 1;
        }
    }

    /// Adds another set's sums.
    pub fn merge(&mut self, other: &Errors) {
        self.count += other.count;
        self.squares += other.squares;
        self.absolutes += other.absolutes;
        self.logs += other.logs;
        self.zeros += other.zeros;
    }

    /// The metrics of the errors added so far.
    pub fn metrics(&self) -> Metrics {
        if self.count == 0 {
            return Metrics::default();
        }
        let n = self.count as f64;
        let gmean = if self.zeros > 0 {
            0.0
        } else {
            libm::exp(self.logs / n)
        };
        Metrics {
            count: self.count,
            mse: Some(self.squares / n),
            mae: Some(self.absolutes / n),
            gmean: Some(gmean),
        }
    }
}

/// One test label's metrics.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LabelMetrics {
    /// The label's key ([`Shots::key`]): its value, or its bin.
    pub label: f64,
    /// Training samples with this key.
    pub train_count: usize,
    /// Its region.
    pub region: Region,
    /// Its test samples' metrics.
    pub metrics: Metrics,
}

/// Everything [`shot_metrics`] reports.
#[derive(Debug, Clone, PartialEq)]
pub struct ShotMetrics {
    /// Every test sample.
    pub all: Metrics,
    /// The many-shot labels' samples.
    pub many: Metrics,
    /// The medium-shot labels' samples.
    pub medium: Metrics,
    /// The few-shot labels' samples.
    pub few: Metrics,
    /// Each test label, ascending.
    pub per_label: Vec<LabelMetrics>,
}

impl ShotMetrics {
    /// The metrics of `region`.
    pub fn region(&self, region: Region) -> &Metrics {
        match region {
            Region::Many => &self.many,
            Region::Medium => &self.medium,
            Region::Few => &self.few,
        }
    }
}

/// The evaluation of `preds` against `labels` (one value per test sample),
/// with regions from `train_labels`. Every value must be finite.
pub fn shot_metrics<T: Scalar>(
    shots: &Shots,
    preds: &[T],
    labels: &[T],
    train_labels: &[T],
) -> Result<ShotMetrics, Error> {
    shots.validate()?;
    if preds.len() != labels.len() {
        return Err(Error::ShapeMismatch {
            what: "preds",
            expected: labels.len(),
            got: preds.len(),
        });
    }
    let wide = |v: T| v.to_f64().unwrap_or(f64::NAN);
    for (what, values) in [
        ("preds", preds),
        ("labels", labels),
        ("train_labels", train_labels),
    ] {
        if let Some(row) = values.iter().position(|v| !v.is_finite()) {
            return Err(Error::NonFinite { what, row });
        }
    }
    let mut train: Vec<f64> = train_labels
        .iter()
        .map(|&y| shots.key(wide(y), true))
        .collect();
    train.sort_unstable_by(f64::total_cmp);
    let train_count = |key: f64| {
        let lo = train.partition_point(|&t| t < key);
        let hi = train.partition_point(|&t| t <= key);
        hi - lo
    };
    let mut test: Vec<(f64, f64)> = preds
        .iter()
        .zip(labels)
        .map(|(&p, &y)| (shots.key(wide(y), false), wide(p) - wide(y)))
        .collect();
    // By key, each key's samples in their order.
    test.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut all = Errors::default();
    let mut regions = [Errors::default(); 3];
    let mut per_label = Vec::new();
    for run in test.chunk_by(|a, b| a.0 == b.0) {
        let mut errors = Errors::default();
        run.iter().for_each(|&(_, e)| errors.add(e));
        let key = run[0].0;
        let count = train_count(key);
        let region = shots.region(count);
        regions[region as usize].merge(&errors);
        all.merge(&errors);
        per_label.push(LabelMetrics {
            label: key,
            train_count: count,
            region,
            metrics: errors.metrics(),
        });
    }
    Ok(ShotMetrics {
        all: all.metrics(),
        many: regions[0].metrics(),
        medium: regions[1].metrics(),
        few: regions[2].metrics(),
        per_label,
    })
}
