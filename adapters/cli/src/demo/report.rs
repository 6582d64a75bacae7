//! Metrics over seeds, the table, `report.json` and `per_label_mae.svg`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use conr_core::Named;
use conr_core::evaluation::{Region, ShotMetrics, Shots, shot_metrics};

use super::data::{LABELS, Splits};
use super::train::Method;

/// The shot regions of the DIR benchmarks, by training samples per label.
pub const REGIONS: [&str; 4] = ["all", "many", "medium", "few"];

/// Mean and standard deviation over seeds of one method in one region.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct Summary {
    /// Mean absolute error, averaged over seeds.
    pub mae_mean: f64,
    /// Its standard deviation over seeds.
    pub mae_std: f64,
    /// Geometric mean of the absolute errors (0 where one is 0), averaged over seeds.
    pub gm_mean: f64,
    /// Its standard deviation over seeds.
    pub gm_std: f64,
    /// Test wines in the region.
    pub count: usize,
}

/// Everything a demo run measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    /// method → region → summary.
    pub methods: BTreeMap<String, BTreeMap<String, Summary>>,
    /// method → MAE per quality label (3..8), averaged over seeds.
    pub per_label_mae: BTreeMap<String, Vec<f64>>,
    /// Training wines per quality label (3..8).
    pub train_counts: Vec<usize>,
    /// Test wines per quality label (3..8).
    pub test_counts: Vec<usize>,
    /// The seeds run.
    pub seeds: Vec<u64>,
    /// The settings, for the record.
    pub settings: BTreeMap<String, String>,
    /// method → best validation MAE, averaged over seeds (what tuning may look at).
    pub val_mae: BTreeMap<String, f64>,
    /// The GEMM kernels the CPU ran (`conr_cpu::gemm_kernels`): the numbers
    /// repeat, bit for bit, on CPUs that run the same.
    pub gemm_kernels: String,
}

fn mean_std(values: &[f64]) -> (f64, f64) {
    let n = values.len().max(1) as f64;
    let mean = values.iter().sum::<f64>() / n;
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
    (mean, var.sqrt())
}

/// Summarises test predictions: `runs[method]` holds one prediction vector
/// per seed, each scored by the DIR evaluation ([`conr_core::evaluation`]:
/// regions by training wines per quality, many > 100, few < 20).
pub fn summarise(
    splits: &Splits,
    runs: &BTreeMap<Method, Vec<Vec<f32>>>,
    seeds: Vec<u64>,
    settings: BTreeMap<String, String>,
) -> Report {
    let train_counts = splits.train_counts();
    let test = &splits.test;
    let label_index = |y: f64| LABELS.iter().position(|&l| l as f64 == y);
    let mut test_counts = vec![0; LABELS.len()];
    for &y in &test.y {
        if let Some(i) = label_index(f64::from(y)) {
            test_counts[i] += 1;
        }
    }
    let mut methods = BTreeMap::new();
    let mut per_label_mae = BTreeMap::new();
    for (method, predictions) in runs {
        // The labels and predictions are finite, so the evaluation cannot fail.
        let scored: Vec<ShotMetrics> = predictions
            .iter()
            .filter_map(|pred| shot_metrics(&Shots::default(), pred, &test.y, &splits.train.y).ok())
            .collect();
        let mut regions = BTreeMap::new();
        for name in REGIONS {
            let of = |m: &ShotMetrics| match Region::from_name(name) {
                Ok(region) => *m.region(region),
                Err(_) => m.all,
            };
            let maes: Vec<f64> = scored.iter().map(|m| of(m).mae.unwrap_or(0.0)).collect();
            let gms: Vec<f64> = scored.iter().map(|m| of(m).gmean.unwrap_or(0.0)).collect();
            let ((mae_mean, mae_std), (gm_mean, gm_std)) = (mean_std(&maes), mean_std(&gms));
            let count = scored.first().map_or(0, |m| of(m).count);
            regions.insert(
                name.to_string(),
                Summary {
                    mae_mean,
                    mae_std,
                    gm_mean,
                    gm_std,
                    count,
                },
            );
        }
        methods.insert(method.name().to_string(), regions);
        let mut per_seed = vec![Vec::new(); LABELS.len()];
        for m in &scored {
            for label in &m.per_label {
                if let (Some(i), Some(mae)) = (label_index(label.label), label.metrics.mae) {
                    per_seed[i].push(mae);
                }
            }
        }
        let per_label = per_seed.iter().map(|v| mean_std(v).0).collect();
        per_label_mae.insert(method.name().to_string(), per_label);
    }
    Report {
        methods,
        per_label_mae,
        train_counts: train_counts.to_vec(),
        test_counts,
        seeds,
        settings,
        val_mae: BTreeMap::new(),
        gemm_kernels: conr_cpu::gemm_kernels().to_string(),
    }
}

/// How a run compares with a committed report (`conr demo --check`).
#[derive(Debug, Clone, PartialEq)]
pub enum Check {
    /// Every number is the same, bit for bit.
    Same,
    /// The committed report was made on a CPU with other GEMM kernels, whose
    /// runs cannot give the same bits: nothing was compared.
    OtherKernels {
        /// The committed report's kernels.
        committed: String,
        /// This CPU's.
        here: String,
    },
    /// The numbers differ: the committed report is stale. Holds a line per
    /// differing method and region, then both tables.
    Differs(String),
}

impl Report {
    /// The text `write` puts in `report.json`.
    pub fn to_json(&self) -> Result<String, String> {
        serde_json::to_string_pretty(self)
            .map(|text| text + "\n")
            .map_err(|e| e.to_string())
    }

    /// Compares this run with `committed`, the text of a `report.json`,
    /// exactly: the text this run would write must be the same, byte for
    /// byte (floats print as the shortest text that reads back to their bits).
    pub fn check(&self, committed: &str) -> Check {
        let theirs: Report = match serde_json::from_str(committed) {
            Ok(report) => report,
            Err(e) => return Check::Differs(format!("not a demo report: {e}")),
        };
        if theirs.gemm_kernels != self.gemm_kernels {
            return Check::OtherKernels {
                committed: theirs.gemm_kernels,
                here: self.gemm_kernels.clone(),
            };
        }
        let ours = match self.to_json() {
            Ok(text) => text,
            Err(e) => return Check::Differs(e),
        };
        if ours == committed {
            return Check::Same;
        }
        let mut lines = String::new();
        let (a, b) = (ours.lines(), committed.lines());
        for (i, (now, then)) in a.zip(b).enumerate().filter(|(_, (x, y))| x != y).take(8) {
            lines += &format!(
                "line {}: now {}, committed {}\n",
                i + 1,
                now.trim(),
                then.trim()
            );
        }
        if ours.lines().count() != committed.lines().count() {
            lines += "the reports have different numbers of lines\n";
        }
        Check::Differs(format!(
            "{lines}now:\n{}\ncommitted:\n{}",
            self.table(),
            theirs.table()
        ))
    }
}

impl Report {
    /// The table, in Markdown: MAE and GM, mean ± std over seeds, overall
    /// and per region (what `conr demo` prints, and the README shows).
    pub fn table(&self) -> String {
        let all = self.methods.values().next();
        let count = |r: &str| all.and_then(|m| m.get(r)).map_or(0, |s| s.count);
        let mut out = String::from("| method |");
        for r in REGIONS {
            out += &format!(" {r} ({}): MAE | GM |", count(r));
        }
        out += "\n| --- |";
        for _ in REGIONS {
            out += " ---: | ---: |";
        }
        out += "\n";
        // Report order: the baseline first.
        let names = Method::ALL
            .iter()
            .map(|m| m.name())
            .filter(|n| self.methods.contains_key(*n));
        for name in names {
            let regions = &self.methods[name];
            out += &format!("| {name} |");
            for r in REGIONS {
                let s = regions[r];
                out += &format!(
                    " {:.3} ± {:.3} | {:.3} ± {:.3} |",
                    s.mae_mean, s.mae_std, s.gm_mean, s.gm_std
                );
            }
            out += "\n";
        }
        out
    }
}
