//! FDS with buffers of its own: what a layer (candle, burn, the CLI) holds.

use alloc::vec;
use alloc::vec::Vec;

use super::calibrate::{Calibration, smooth};
use super::groups::batch;
use super::moments::{GroupStats, Rows};
use super::update::{GroupMoments, Statistics, last_epoch_due, running_due, smoothing_due};
use super::window::{smooth_buckets, window};
use super::{Behaviour, Fds};
use crate::{Engine, Error, Scalar};

/// FDS's state, by the reference's buffer names: the running, last-epoch and
/// smoothed statistics (`buckets × dim` each), the samples each bucket has
/// seen, and the epoch counter.
#[derive(Debug, Clone, PartialEq)]
pub struct FdsState<T> {
    config: Fds,
    dim: usize,
    window: Vec<f64>,
    /// The epoch counter (`epoch`): the last epoch whose last-epoch update ran.
    pub epoch: u64,
    /// `running_mean`.
    pub running_mean: Vec<T>,
    /// `running_var`.
    pub running_var: Vec<T>,
    /// `running_mean_last_epoch`, while it is a buffer of its own.
    last_mean: Vec<T>,
    /// `running_var_last_epoch`, while it is a buffer of its own.
    last_var: Vec<T>,
    /// `smoothed_mean_last_epoch`.
    pub smoothed_mean_last_epoch: Vec<T>,
    /// `smoothed_var_last_epoch`.
    pub smoothed_var_last_epoch: Vec<T>,
    /// `num_samples_tracked`.
    pub num_samples_tracked: Vec<T>,
    /// Whether the last-epoch statistics are the running ones (the official
    /// behaviour after its first last-epoch update).
    aliased: bool,
}

/// A smoothed batch: the features out, and `∂out/∂features` elementwise.
#[derive(Debug, Clone, PartialEq)]
pub struct Smoothed<T> {
    /// The smoothed features.
    pub out: Vec<T>,
    /// `∂out/∂features`: the gradient is `scale ⊙ upstream`.
    pub scale: Vec<T>,
}

/// The buffers' names, in the order [`FdsState::buffers`] gives them.
pub const BUFFER_NAMES: [&str; 7] = [
    "running_mean",
    "running_var",
    "running_mean_last_epoch",
    "running_var_last_epoch",
    "smoothed_mean_last_epoch",
    "smoothed_var_last_epoch",
    "num_samples_tracked",
];

impl<T: Scalar> FdsState<T> {
    /// A fresh state for features of width `dim`: means 0, variances 1,
    /// nothing seen, the counter at `start_update`.
    pub fn new(config: Fds, dim: usize) -> Result<Self, Error> {
        config.validate()?;
        if dim == 0 {
            return Err(Error::ZeroWidth { what: "features" });
        }
        let n = config
            .buckets()
            .checked_mul(dim)
            .ok_or(Error::InvalidConfig {
                field: "bucket_num",
                why: "buckets × dim must fit in a usize",
            })?;
        let mut w = vec![0.0; config.ks];
        window(&config, &mut w)?;
        let (zeros, ones) = (vec![T::zero(); n], vec![T::one(); n]);
        Ok(Self {
            config,
            dim,
            window: w,
            epoch: config.start_update,
            running_mean: zeros.clone(),
            running_var: ones.clone(),
            last_mean: zeros.clone(),
            last_var: ones.clone(),
            smoothed_mean_last_epoch: zeros,
            smoothed_var_last_epoch: ones,
            num_samples_tracked: vec![T::zero(); config.buckets()],
            aliased: false,
        })
    }

    /// The config.
    pub fn config(&self) -> &Fds {
        &self.config
    }

    /// The feature width.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The smoothing window.
    pub fn window(&self) -> &[f64] {
        &self.window
    }

    /// `running_mean_last_epoch`.
    pub fn running_mean_last_epoch(&self) -> &[T] {
        if self.aliased {
            &self.running_mean
        } else {
            &self.last_mean
        }
    }

    /// `running_var_last_epoch`.
    pub fn running_var_last_epoch(&self) -> &[T] {
        if self.aliased {
            &self.running_var
        } else {
            &self.last_var
        }
    }

    /// Every buffer, named as in [`BUFFER_NAMES`].
    pub fn buffers(&self) -> [(&'static str, &[T]); 7] {
        [
            (BUFFER_NAMES[0], &self.running_mean),
            (BUFFER_NAMES[1], &self.running_var),
            (BUFFER_NAMES[2], self.running_mean_last_epoch()),
            (BUFFER_NAMES[3], self.running_var_last_epoch()),
            (BUFFER_NAMES[4], &self.smoothed_mean_last_epoch),
            (BUFFER_NAMES[5], &self.smoothed_var_last_epoch),
            (BUFFER_NAMES[6], &self.num_samples_tracked),
        ]
    }

    /// At the end of epoch `epoch`, before the running update: when `epoch`
    /// is one past the counter, advances it, takes the running statistics as
    /// the last epoch's (the same buffers, officially; a copy, in the clean
    /// behaviour) and smooths them. Returns whether it did.
    pub fn update_last_epoch_stats(&mut self, epoch: u64) -> bool {
        if !last_epoch_due(epoch, self.epoch) {
            return false;
        }
        self.epoch = epoch;
        match self.config.behaviour {
            Behaviour::Official => self.aliased = true,
            Behaviour::Clean => {
                self.last_mean.copy_from_slice(&self.running_mean);
                self.last_var.copy_from_slice(&self.running_var);
            }
        }
        let dim = self.dim;
        smooth_buckets(
            &self.running_mean,
            dim,
            &self.window,
            &mut self.smoothed_mean_last_epoch,
        );
        smooth_buckets(
            &self.running_var,
            dim,
            &self.window,
            &mut self.smoothed_var_last_epoch,
        );
        true
    }

    /// At the end of epoch `epoch`: the running update by the epoch's
    /// features (`rows × dim`) and labels, the statistics pass on the
    /// core's serial loop. Returns whether it updated.
    pub fn update_running_stats(
        &mut self,
        features: &[T],
        labels: &[T],
        epoch: u64,
    ) -> Result<bool, Error> {
        self.update_running_stats_on(None, features, labels, epoch)
    }

    /// [`FdsState::update_running_stats`] with the statistics pass on
    /// `engine` ([`Engine::fds_pass`]: the fast engine's is multi-threaded).
    pub fn update_running_stats_on(
        &mut self,
        engine: Option<&dyn Engine<T>>,
        features: &[T],
        labels: &[T],
        epoch: u64,
    ) -> Result<bool, Error> {
        if !running_due(epoch, self.epoch) {
            return Ok(false);
        }
        let (k, of_row) = batch(&self.config, labels)?;
        let rows = Rows::new(features, self.dim, &of_row, k.len())?;
        let stats = GroupStats::of(&rows, engine)?;
        let moments = GroupMoments {
            keys: &k,
            counts: &stats.counts,
            means: &stats.means,
            variances: &stats.variances,
        };
        let mut running = Statistics {
            running_mean: &mut self.running_mean,
            running_var: &mut self.running_var,
            num_samples_tracked: &mut self.num_samples_tracked,
        };
        running.update(&self.config, epoch, &moments)?;
        Ok(true)
    }

    /// Smooths a training batch (`rows × dim`) of epoch `epoch`: the
    /// identity before `start_smooth`.
    pub fn smooth(&self, features: &[T], labels: &[T], epoch: u64) -> Result<Smoothed<T>, Error> {
        let mut out = vec![T::zero(); features.len()];
        let mut scale = vec![T::one(); features.len()];
        if !smoothing_due(&self.config, epoch) {
            crate::dir::check_rows(
                "features",
                features,
                labels.len(),
                self.dim,
                crate::rules::Rule::FeaturesFinite,
            )?;
            out.copy_from_slice(features);
            return Ok(Smoothed { out, scale });
        }
        let (k, of_row) = batch(&self.config, labels)?;
        let stats = Calibration {
            mean: self.running_mean_last_epoch(),
            var: self.running_var_last_epoch(),
            smoothed_mean: &self.smoothed_mean_last_epoch,
            smoothed_var: &self.smoothed_var_last_epoch,
        };
        smooth(
            &self.config,
            &stats,
            &k,
            &of_row,
            features,
            &mut out,
            &mut scale,
        )?;
        Ok(Smoothed { out, scale })
    }
}
