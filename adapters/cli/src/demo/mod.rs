//! The wine-quality demo: does ConR help the rare qualities?
//!
//! Red wine quality (1,599 wines; quality 3 to 8, with 10 and 18 wines at the
//! extremes and 681 at quality 5) is a small, heavily imbalanced regression
//! task. The demo trains the same MLP several ways, over several seeds: with an
//! L1 loss alone, with ConR added, with ConR whose pushing power comes from
//! label density (`sqrt_inv` + LDS), and with the paper's combinations (L1 +
//! RankSim, L1 + ConR + RankSim, Balanced MSE's BMC, BMC + ConR, LDS + FDS,
//! LDS + FDS + ConR). It reports
//! MAE and GM on a test set that keeps every quality, overall and per shot
//! region.
//!
//! ```no_run
//! use conr_cli::demo::{DemoOptions, run};
//! let report = run(&DemoOptions { quick: true, ..DemoOptions::default() }, &|_, _| {})?;
//! println!("{}", report.table());
//! # Ok::<(), candle_core::Error>(())
//! ```

pub mod data;
pub mod model;
pub mod plot;
pub mod report;
pub mod train;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use conr_core::dir::ranksim::RankSim;
use conr_core::fds::Fds;
use conr_core::{Config, FloatEngine};
use conr_cpu::Fast;
pub use report::{Check, Report};
use train::{Method, TrainOptions};

/// The seed of the train/validation/test split.
pub const DATA_SEED: u64 = 2024;

/// The demo's knobs.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Seeds (each seed: an initialisation, a batch order, augmentation noise;
    /// the data split is fixed).
    pub seeds: usize,
    /// Epochs per run.
    pub epochs: usize,
    /// β, the weight of the ConR term.
    pub beta: f64,
    /// γ, the weight of the RankSim term.
    pub gamma: f64,
    /// ω: qualities within this distance are positives. ω̂ is the same.
    pub threshold: f64,
    /// τ.
    pub temperature: f64,
    /// FDS's window size (gaussian).
    pub fds_ks: usize,
    /// FDS's window width σ.
    pub fds_sigma: f64,
    /// Where ConR runs.
    pub engine: Arc<dyn FloatEngine>,
    /// One seed and a few epochs, for smoke tests.
    pub quick: bool,
}

impl Default for DemoOptions {
    fn default() -> Self {
        Self {
            seeds: 5,
            epochs: 150,
            beta: 1.0,
            gamma: 10.0,
            threshold: 0.5,
            temperature: 0.1,
            fds_ks: 3,
            fds_sigma: 1.0,
            engine: Arc::new(Fast::new()),
            quick: false,
        }
    }
}

impl DemoOptions {
    /// The seeds and epochs in effect (`quick` cuts them).
    pub fn effective(&self) -> (usize, usize) {
        if self.quick {
            (1, self.epochs.min(8))
        } else {
            (self.seeds.max(1), self.epochs.max(1))
        }
    }

    /// The ConR config: the paper's loss (exp pushing, e = 0.01, no padding)
    /// with this demo's ω and τ.
    pub fn config(&self) -> Config {
        Config {
            threshold: self.threshold,
            temperature: self.temperature,
            ..Config::paper()
        }
    }

    /// FDS for the qualities 3 to 8 (one bucket each), as the reference runs
    /// it (updates from epoch 0, smoothing from epoch 1, momentum 0.9), with
    /// this demo's window.
    pub fn fds(&self) -> Fds {
        Fds {
            bucket_num: 9,
            bucket_start: 3,
            ks: self.fds_ks,
            sigma: self.fds_sigma,
            ..Fds::default()
        }
    }
}

/// Runs every method on every seed, the runs spread over the machine's
/// threads (each run is seeded on its own, so the order in which runs finish
/// changes nothing). `progress(done, total)` is called after each epoch of
/// each run, from whichever thread ran it.
pub fn run(
    options: &DemoOptions,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> candle_core::Result<Report> {
    let config = options.config();
    config
        .validate()
        .map_err(|e| candle_core::Error::Msg(e.to_string()))?;
    let fds = options.fds();
    fds.validate()
        .map_err(|e| candle_core::Error::Msg(e.to_string()))?;
    let (seeds, epochs) = options.effective();
    let train_options = TrainOptions {
        epochs,
        batch: 64,
        lr: 3e-3,
        weight_decay: 1e-4,
        beta: options.beta,
        config,
        gamma: options.gamma,
        // λ = 2 and one row per label, as RankSim's reference runs.
        rank_sim: RankSim::default(),
        // BMC's reference starts σ at 1 with its own learning rate 1e-2.
        init_noise_sigma: 1.0,
        sigma_lr: 1e-2,
        engine: options.engine.clone(),
        noise: 0.1,
        dropout: 0.1,
        fds,
    };
    // One fixed split, so that every seed is scored on the same test wines.
    let splits = data::load(DATA_SEED);
    let seed_list: Vec<u64> = (0..seeds as u64).collect();
    let jobs: Vec<(u64, Method)> = seed_list
        .iter()
        .flat_map(|&seed| Method::ALL.map(|method| (seed, method)))
        .collect();
    let total = jobs.len() * epochs;
    let done = AtomicUsize::new(0);
    let outputs = parallel_map(&jobs, |&(seed, method)| {
        train::train(method, &splits, seed, &train_options, &mut || {
            progress(done.fetch_add(1, Ordering::Relaxed) + 1, total);
        })
    });
    let mut runs: BTreeMap<Method, Vec<Vec<f32>>> = BTreeMap::new();
    let mut val_mae: BTreeMap<Method, Vec<f64>> = BTreeMap::new();
    for (&(_, method), out) in jobs.iter().zip(outputs) {
        let out = out?;
        runs.entry(method).or_default().push(out.test_pred);
        val_mae.entry(method).or_default().push(out.val_mae);
    }
    let settings = BTreeMap::from([
        ("epochs".to_string(), epochs.to_string()),
        ("beta".to_string(), options.beta.to_string()),
        ("gamma".to_string(), options.gamma.to_string()),
        ("threshold".to_string(), options.threshold.to_string()),
        ("temperature".to_string(), options.temperature.to_string()),
        (
            "fds".to_string(),
            format!(
                "gaussian, ks {}, sigma {}",
                options.fds_ks, options.fds_sigma
            ),
        ),
        (
            "batch".to_string(),
            "64 wines (128 ConR rows: two views)".to_string(),
        ),
    ]);
    let mut report = report::summarise(&splits, &runs, seed_list, settings);
    report.val_mae = val_mae
        .into_iter()
        .map(|(m, v)| {
            (
                m.name().to_string(),
                v.iter().sum::<f64>() / v.len().max(1) as f64,
            )
        })
        .collect();
    Ok(report)
}

/// `f` over `items` on as many threads as the machine has, each thread
/// taking the next item when it is free; the results come back in the
/// items' order.
fn parallel_map<I: Sync, R: Send>(items: &[I], f: impl Fn(&I) -> R + Sync) -> Vec<R> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let next = AtomicUsize::new(0);
    let mut results: Vec<(usize, R)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads.min(items.len()))
            .map(|_| {
                scope.spawn(|| {
                    let mut mine = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(item) = items.get(i) else { break };
                        mine.push((i, f(item)));
                    }
                    mine
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|worker| {
                worker
                    .join()
                    .unwrap_or_else(|e| std::panic::resume_unwind(e))
            })
            .collect()
    });
    results.sort_by_key(|&(i, _)| i);
    results.into_iter().map(|(_, r)| r).collect()
}

/// Writes `report.json` and `per_label_mae.svg` into `dir` (created if needed).
pub fn write(report: &Report, dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let text = report.to_json()?;
    let path = dir.join("report.json");
    std::fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    plot::per_label_mae(report, &dir.join("per_label_mae.svg"))
}
