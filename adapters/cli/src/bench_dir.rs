//! `conr bench --loss ranksim|rnc|balanced_mse`: a companion loss on random
//! AgeDB-like batches, on the chosen engine, timed in the same run as
//! conr's reference engine (which takes the reference code's algorithm:
//! Rank-N-Contrast in O(n³), RankSim one row at a time) and as one M×M×D
//! f32 GEMM of the same shape, so the results read as ratios.

use std::time::Instant;

use anyhow::{Result, bail};
use conr_core::dir::balanced_mse::{BalancedMse, BmseBatch, Prior};
use conr_core::dir::ranksim::{RankSim, RankSimBatch};
use conr_core::dir::rnc::{RankNContrast, RncBatch};
use conr_core::{Engine, Shape};
use conr_cpu::Reference;
use serde::Serialize;

use crate::bench::{BenchOptions, RandomBatch, time_gemm};
use crate::memory;

/// `--loss`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Loss {
    /// ConR itself (the default).
    Conr,
    /// RankSim, every row in the subset (`subsample: every`), λ = 2.
    Ranksim,
    /// Rank-N-Contrast, τ = 2, `l1` labels.
    Rnc,
    /// Balanced MSE (BMC), σ = 1, on the batch's predictions. The name is
    /// the one `dir-fixture/1` files and the Python package use; `bmc` is
    /// taken as well.
    #[value(name = "balanced_mse", alias = "bmc")]
    #[serde(rename = "balanced_mse")]
    BalancedMse,
}

/// The largest batch the reference engine is timed on: beyond it the
/// O(n³) Rank-N-Contrast reference takes minutes.
const REFERENCE_MAX_ROWS: usize = 2048;

/// One size's result; `--json` prints one per line.
#[derive(Debug, Clone, Serialize)]
pub struct CompanionRow {
    /// The loss.
    pub loss: Loss,
    /// The engine, as named on the command line.
    pub backend: String,
    /// Rows.
    pub m: usize,
    /// Feature width.
    pub d: usize,
    /// The CPU threads of the engine and the GEMM.
    pub threads: usize,
    /// Median seconds of one loss and gradient on the engine.
    pub fwd_bwd_s: f64,
    /// Median seconds of the same on conr's reference engine, where timed.
    pub reference_s: Option<f64>,
    /// `reference_s / fwd_bwd_s`.
    pub speedup: Option<f64>,
    /// Seconds of one M×M×D f32 GEMM on the same threads.
    pub gemm_s: f64,
    /// `fwd_bwd_s / gemm_s`.
    pub gemm_equivalents: f64,
    /// Peak heap bytes the engine allocated above its inputs.
    pub peak_bytes: u64,
}

fn median(mut times: Vec<f64>) -> f64 {
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

/// One call of `loss` on `engine`, returning its (finite) loss.
fn call(engine: &dyn Engine<f32>, loss: Loss, data: &RandomBatch) -> Result<f32> {
    let shape: Shape = data.shape;
    let value = match loss {
        Loss::Conr => bail!("ConR is timed by the main bench"),
        Loss::Ranksim => {
            let batch = RankSimBatch::new(shape, &data.features, &data.labels, None)?;
            let config = RankSim {
                subsample: conr_core::dir::ranksim::Subsample::Every,
                ..RankSim::default()
            };
            engine.rank_sim(&batch, &config)?.loss
        }
        Loss::Rnc => {
            let batch = RncBatch::new(shape, &data.features, &data.labels)?;
            engine
                .rank_n_contrast(&batch, &RankNContrast::default())?
                .loss
        }
        Loss::BalancedMse => {
            let batch = BmseBatch::new(shape.rows, 1, &data.preds, &data.labels)?;
            let config = BalancedMse {
                noise_sigma: 1.0,
                prior: Prior::Batch,
            };
            engine.balanced_mse(&batch, &config)?.loss
        }
    };
    if !value.is_finite() {
        bail!("M={} D={}: the loss is not finite", shape.rows, shape.dim);
    }
    Ok(value)
}

fn time(
    engine: &dyn Engine<f32>,
    loss: Loss,
    data: &RandomBatch,
    options: &BenchOptions,
) -> Result<(f64, u64)> {
    let mut times = Vec::new();
    let mut peak = 0;
    for rep in 0..options.warmup + options.reps {
        let baseline = memory::start();
        let start = Instant::now();
        call(engine, loss, data)?;
        let elapsed = start.elapsed().as_secs_f64();
        peak = peak.max(memory::peak_since(baseline) as u64);
        if rep >= options.warmup {
            times.push(elapsed);
        }
    }
    Ok((median(times), peak))
}

/// Runs `loss` on every size of `options`.
pub fn run(
    loss: Loss,
    options: &BenchOptions,
    mut progress: impl FnMut(&str),
) -> Result<Vec<CompanionRow>> {
    if options.reps == 0 {
        bail!("--reps must be at least 1");
    }
    let engine = conr_engines::engine_with(
        &options.backend,
        &conr_engines::Options {
            threads: options.threads,
            plan: options.plan,
            mixed: options.mixed,
        },
    )?;
    let threads = match options.threads {
        0 => std::thread::available_parallelism().map_or(1, usize::from),
        n => n,
    };
    let mut rows = Vec::new();
    for &(m, d) in &options.sizes {
        let data = RandomBatch::new(m, d, 0x5EED ^ (m as u64) << 20 ^ d as u64, options.labels)?;
        progress(&format!("{loss:?} M={m} D={d}: {}", options.backend));
        let (fwd_bwd_s, peak_bytes) = time(&*engine, loss, &data, options)?;
        let reference_s = if m <= REFERENCE_MAX_ROWS && Engine::<f32>::name(&*engine) != "reference"
        {
            progress(&format!("{loss:?} M={m} D={d}: reference"));
            let quick = BenchOptions {
                reps: options.reps.min(3),
                warmup: 0,
                ..options.clone()
            };
            Some(time(&Reference, loss, &data, &quick)?.0)
        } else {
            None
        };
        progress(&format!("{loss:?} M={m} D={d}: GEMM"));
        let gemm = (0..options.reps.min(3)).map(|_| time_gemm(&data.features, m, d, threads));
        let gemm_s = median(gemm.collect::<Result<_>>()?);
        rows.push(CompanionRow {
            loss,
            backend: Engine::<f32>::name(&*engine).to_string(),
            m,
            d,
            threads,
            fwd_bwd_s,
            reference_s,
            speedup: reference_s.map(|r| r / fwd_bwd_s),
            gemm_s,
            gemm_equivalents: fwd_bwd_s / gemm_s,
            peak_bytes,
        });
    }
    Ok(rows)
}

/// The human-readable table of a companion run.
pub fn table(rows: &[CompanionRow]) -> String {
    let mut out = String::from(
        "loss     backend       M      D  threads  fwd+bwd (s)  reference (s)  speedup   GEMM (s)  GEMM-equivalents  peak extra memory\n",
    );
    let or_dash =
        |x: Option<f64>, digits: usize| x.map_or("-".to_string(), |v| format!("{v:.digits$}"));
    for r in rows {
        out += &format!(
            "{:<8} {:<9} {:>6} {:>6} {:>8}  {:>11.4}  {:>13}  {:>7}  {:>9.4}  {:>16.2}  {:>10.1} MiB\n",
            format!("{:?}", r.loss).to_lowercase(),
            r.backend,
            r.m,
            r.d,
            r.threads,
            r.fwd_bwd_s,
            or_dash(r.reference_s, 4),
            or_dash(r.speedup, 1),
            r.gemm_s,
            r.gemm_equivalents,
            r.peak_bytes as f64 / (1024.0 * 1024.0)
        );
    }
    out.trim_end().to_string()
}
