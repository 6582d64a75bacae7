//! One training run: an MLP regressor on the wine data, with a regression
//! loss (L1, L1 weighted by LDS, or Balanced MSE's BMC with a learnable noise
//! scale) and, by method, FDS on the features, `β · L_ConR` and
//! `γ · L_RankSim` on the features of two augmented views.

use candle_core::{DType, Device, Result, Tensor, Var};
use candle_nn::{AdamW, Optimizer, ParamsAdamW, VarBuilder, VarMap};
use conr_core::Config;
use conr_core::density::{DensityConfig, Kernel, Reweight};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;

use super::data::{FEATURES, Split, Splits};
use super::model::{EMBEDDING, Regressor};
use conr_candle::{FdsLayer, balanced_mse_loss, conr_loss_with, rank_sim_loss};
use conr_core::FloatEngine;
use conr_core::dir::balanced_mse::Prior;
use conr_core::dir::ranksim::RankSim;
use conr_core::fds::Fds;
use std::sync::Arc;

/// The regression loss and the terms added to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Method {
    /// L1 alone.
    Baseline,
    /// L1 + β·ConR with every `eta_j = 1`.
    Conr,
    /// L1 + β·ConR with `eta` from `sqrt_inv` counts smoothed by a gaussian LDS window.
    ConrLds,
    /// L1 + γ·RankSim.
    RankSim,
    /// L1 + β·ConR + γ·RankSim.
    ConrRankSim,
    /// Balanced MSE (BMC, the batch's labels as the prior) with a learnable σ.
    Bmc,
    /// BMC + β·ConR.
    BmcConr,
    /// L1 weighted by LDS (`sqrt_inv` + gaussian window), with FDS on the features.
    LdsFds,
    /// LDS + FDS + β·ConR, `eta` from LDS.
    LdsFdsConr,
}

/// The regression loss of a method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Regression {
    /// Mean absolute error.
    L1,
    /// Mean absolute error, each row weighted by its LDS weight.
    WeightedL1,
    /// Balanced MSE with the batch-based prior.
    Bmc,
}

impl Method {
    /// Every method, in report order.
    pub const ALL: [Method; 9] = [
        Method::Baseline,
        Method::Conr,
        Method::ConrLds,
        Method::RankSim,
        Method::ConrRankSim,
        Method::Bmc,
        Method::BmcConr,
        Method::LdsFds,
        Method::LdsFdsConr,
    ];

    /// The name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Method::Baseline => "baseline (L1)",
            Method::Conr => "L1 + ConR",
            Method::ConrLds => "L1 + ConR, LDS eta",
            Method::RankSim => "L1 + RankSim",
            Method::ConrRankSim => "L1 + ConR + RankSim",
            Method::Bmc => "BMC",
            Method::BmcConr => "BMC + ConR",
            Method::LdsFds => "LDS + FDS",
            Method::LdsFdsConr => "LDS + FDS + ConR",
        }
    }

    /// Its regression loss.
    pub fn regression(self) -> Regression {
        match self {
            Method::Bmc | Method::BmcConr => Regression::Bmc,
            Method::LdsFds | Method::LdsFdsConr => Regression::WeightedL1,
            _ => Regression::L1,
        }
    }

    /// Whether β·ConR is added.
    pub fn conr(self) -> bool {
        matches!(
            self,
            Method::Conr
                | Method::ConrLds
                | Method::ConrRankSim
                | Method::BmcConr
                | Method::LdsFdsConr
        )
    }

    /// Whether FDS smooths the features.
    pub fn fds(self) -> bool {
        matches!(self, Method::LdsFds | Method::LdsFdsConr)
    }

    /// Whether ConR's `eta` comes from LDS.
    fn lds_eta(self) -> bool {
        matches!(self, Method::ConrLds | Method::LdsFdsConr)
    }

    /// Whether γ·RankSim is added.
    pub fn rank_sim(self) -> bool {
        matches!(self, Method::RankSim | Method::ConrRankSim)
    }
}

/// Training settings shared by every run.
#[derive(Debug, Clone)]
pub struct TrainOptions {
    /// Passes over the training split.
    pub epochs: usize,
    /// Wines per step (each contributes two views to ConR, so M = 2·batch).
    pub batch: usize,
    /// AdamW learning rate.
    pub lr: f64,
    /// AdamW weight decay.
    pub weight_decay: f64,
    /// β, the weight of the ConR term.
    pub beta: f64,
    /// The ConR config.
    pub config: Config,
    /// γ, the weight of the RankSim term.
    pub gamma: f64,
    /// The RankSim config; each step draws its one-row-per-label subset
    /// with its own seed.
    pub rank_sim: RankSim,
    /// σ's starting value for BMC.
    pub init_noise_sigma: f64,
    /// σ's own AdamW learning rate.
    pub sigma_lr: f64,
    /// Where ConR runs.
    pub engine: Arc<dyn FloatEngine>,
    /// Standard deviation of the Gaussian feature noise of both views.
    pub noise: f64,
    /// Input dropout of the second view.
    pub dropout: f64,
    /// FDS, for the methods that smooth their features.
    pub fds: Fds,
}

/// The LDS density weights of each training wine (ConR's `eta` and the
/// weighted L1's weights).
pub fn lds_weights(train: &Split) -> Vec<f32> {
    let config = DensityConfig {
        reweight: Reweight::SqrtInv,
        kernel: Some(Kernel::Gaussian),
        kernel_size: 5,
        sigma: 2.0,
        bins: 11,
        bin_width: 1.0,
        min_label: 0.0,
    };
    // The config above is valid and the labels are finite, so this cannot fail.
    conr_cpu::density_weights(&config, &train.y).unwrap_or_else(|_| vec![1.0; train.len()])
}

/// The model's predictions for a split.
fn predict(model: &Regressor, split: &Split, device: &Device) -> Result<Vec<f32>> {
    let x = Tensor::from_slice(&split.x, (split.len(), FEATURES), device)?;
    model.predict(&model.features(&x)?)?.to_vec1()
}

fn mae(pred: &[f32], truth: &[f32]) -> f64 {
    pred.iter()
        .zip(truth)
        .map(|(p, y)| f64::from((p - y).abs()))
        .sum::<f64>()
        / truth.len().max(1) as f64
}

/// Weights like candle's default for linear layers (uniform in ±1/√fan_in),
/// but from a seeded generator, so that a seed reproduces a run.
fn init(varmap: &VarMap, rng: &mut ChaCha8Rng) -> Result<()> {
    let vars = varmap
        .data()
        .lock()
        .map_err(|_| candle_core::Error::Msg("poisoned".into()))?;
    let mut names: Vec<&String> = vars.keys().collect();
    names.sort();
    for name in names {
        let var = &vars[name];
        let dims = var.dims().to_vec();
        let fan_in = if name.ends_with("weight") {
            dims[1]
        } else {
            dims[0]
        };
        let bound = 1.0 / (fan_in as f64).sqrt();
        let values: Vec<f32> = (0..var.elem_count())
            .map(|_| (rng.random_range(-1.0..1.0) * bound) as f32)
            .collect();
        var.set(&Tensor::from_vec(values, dims, var.device())?)?;
    }
    Ok(())
}

/// Two augmented views of rows `idx` of the training split: Gaussian noise,
/// and noise after input dropout.
fn views(train: &Split, idx: &[usize], options: &TrainOptions, rng: &mut ChaCha8Rng) -> Vec<f32> {
    let mut out = Vec::with_capacity(2 * idx.len() * FEATURES);
    for view in 0..2 {
        for &i in idx {
            for &v in &train.x[i * FEATURES..(i + 1) * FEATURES] {
                let kept = if view == 1 && rng.random::<f64>() < options.dropout {
                    0.0
                } else if view == 1 {
                    f64::from(v) / (1.0 - options.dropout)
                } else {
                    f64::from(v)
                };
                out.push((kept + options.noise * rng.sample::<f64, _>(StandardNormal)) as f32);
            }
        }
    }
    out
}

/// The encoder's features of every training wine (no augmentation), as the
/// FDS reference's training loop feeds them at an epoch's end: taken in
/// training mode, so smoothed by FDS from `start_smooth` on.
fn epoch_features(
    model: &Regressor,
    fds: &FdsLayer,
    train: &Split,
    epoch: u64,
    device: &Device,
) -> Result<(Tensor, Tensor)> {
    let x = Tensor::from_slice(&train.x, (train.len(), FEATURES), device)?;
    let y = Tensor::from_slice(&train.y, train.len(), device)?;
    let features = fds.smooth(&model.features(&x)?.detach(), &y, epoch)?;
    Ok((features, y))
}

/// What one run produced: the test predictions of the epoch with the lowest
/// validation MAE, and that MAE.
#[derive(Debug, Clone)]
pub struct RunOutput {
    /// Predictions for the test split.
    pub test_pred: Vec<f32>,
    /// The best validation MAE (the only number used to choose anything).
    pub val_mae: f64,
}

/// Trains one model and returns its test predictions, from the epoch with the
/// lowest validation MAE. `step` is called once per epoch.
pub fn train(
    method: Method,
    splits: &Splits,
    seed: u64,
    options: &TrainOptions,
    step: &mut dyn FnMut(),
) -> Result<RunOutput> {
    let device = Device::Cpu;
    let varmap = VarMap::new();
    let model = Regressor::new(
        FEATURES,
        VarBuilder::from_varmap(&varmap, DType::F32, &device),
    )?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    init(&varmap, &mut rng)?;
    let params = ParamsAdamW {
        lr: options.lr,
        weight_decay: options.weight_decay,
        ..Default::default()
    };
    let mut optimizer = AdamW::new(varmap.all_vars(), params)?;
    // σ lives outside the model's VarMap: `init` leaves it alone and the
    // kept-epoch snapshot does not need it (predictions do not read it).
    let noise_sigma = Var::new(&[options.init_noise_sigma as f32], &device)?;
    let sigma_params = ParamsAdamW {
        lr: options.sigma_lr,
        weight_decay: 0.0,
        ..Default::default()
    };
    let mut sigma_optimizer = AdamW::new(vec![noise_sigma.clone()], sigma_params)?;
    let eta = lds_weights(&splits.train);
    let train = &splits.train;
    let fds = FdsLayer::with_engine(options.fds, EMBEDDING, &options.engine)?;
    let mut order: Vec<usize> = (0..train.len()).collect();
    let mut best = (f64::INFINITY, Vec::new());
    let mut steps = 0u64;
    for epoch in 0..options.epochs as u64 {
        order.shuffle(&mut rng);
        for idx in order.chunks(options.batch) {
            let b = idx.len();
            let x = Tensor::from_vec(
                views(train, idx, options, &mut rng),
                (2 * b, FEATURES),
                &device,
            )?;
            let labels: Vec<f32> = idx.iter().chain(idx).map(|&i| train.y[i]).collect();
            let y = Tensor::from_slice(&labels, 2 * b, &device)?;
            let mut features = model.features(&x)?;
            if method.fds() {
                features = fds.smooth(&features, &y, epoch)?;
            }
            let pred = model.predict(&features)?;
            let rows_eta = || -> Result<Tensor> {
                let w: Vec<f32> = idx.iter().chain(idx).map(|&i| eta[i]).collect();
                Tensor::from_vec(w, 2 * b, &device)
            };
            let mut loss = match method.regression() {
                Regression::L1 => (&pred - &y)?.abs()?.mean_all()?,
                Regression::WeightedL1 => ((&pred - &y)?.abs()? * rows_eta()?)?.mean_all()?,
                Regression::Bmc => balanced_mse_loss(
                    &pred,
                    &y,
                    noise_sigma.as_tensor(),
                    &Prior::Batch,
                    &options.engine,
                )?,
            };
            if method.conr() && b > 1 {
                let weights = if method.lds_eta() {
                    Some(rows_eta()?)
                } else {
                    None
                };
                let conr = conr_loss_with(
                    &features,
                    &y,
                    &pred.detach(),
                    weights.as_ref(),
                    &options.config,
                    &options.engine,
                )?;
                loss = (loss + (conr * options.beta)?)?;
            }
            if method.rank_sim() && b > 1 {
                // The subset's seed comes from the step, not from `rng`, so
                // that every method sees the same batches and views.
                let config = RankSim {
                    seed: seed.wrapping_mul(1 << 32).wrapping_add(steps),
                    ..options.rank_sim
                };
                let rank_sim = rank_sim_loss(&features, &y, &config, &options.engine)?;
                loss = (loss + (rank_sim * options.gamma)?)?;
            }
            let grads = loss.backward()?;
            optimizer.step(&grads)?;
            if method.regression() == Regression::Bmc {
                sigma_optimizer.step(&grads)?;
            }
            steps += 1;
        }
        if method.fds() && epoch >= options.fds.start_update {
            let (features, y) = epoch_features(&model, &fds, train, epoch, &device)?;
            fds.update_last_epoch_stats(epoch);
            fds.update_running_stats(&features, &y, epoch)?;
        }
        let val = mae(&predict(&model, &splits.val, &device)?, &splits.val.y);
        if val < best.0 {
            let snapshot: Result<Vec<Tensor>> = varmap
                .all_vars()
                .iter()
                .map(|v| v.as_tensor().copy())
                .collect();
            best = (val, snapshot?);
        }
        step();
    }
    for (var, saved) in varmap.all_vars().iter().zip(&best.1) {
        var.set(saved)?;
    }
    Ok(RunOutput {
        test_pred: predict(&model, &splits.test, &device)?,
        val_mae: best.0,
    })
}
