//! FDS's state behind a lock, with the engine its statistics pass runs on:
//! what a framework's FDS layer (candle's, burn's) holds, whose calls take
//! `&self`.

use std::sync::{Arc, Mutex, MutexGuard};

use conr_core::fds::{Fds, FdsState, Smoothed};
use conr_core::{Engine, Error, FloatEngine};

/// [`FdsState`] in f64 behind a lock, its statistics pass on an engine (the
/// fast engine by default). Features and labels come as host rows in f64.
#[derive(Debug)]
pub struct SharedFds {
    state: Mutex<FdsState<f64>>,
    engine: Arc<dyn FloatEngine>,
}

impl SharedFds {
    /// A fresh state for features of width `dim`, its pass on `engine`.
    pub fn new(config: Fds, dim: usize, engine: Arc<dyn FloatEngine>) -> Result<Self, Error> {
        Ok(Self {
            state: Mutex::new(FdsState::new(config, dim)?),
            engine,
        })
    }

    /// The state. A call that panicked does not lock it for good: every
    /// step checks its inputs before it writes.
    fn lock(&self) -> MutexGuard<'_, FdsState<f64>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A copy of the state: every buffer by the reference's name, and the
    /// epoch counter.
    pub fn state(&self) -> FdsState<f64> {
        self.lock().clone()
    }

    /// Replaces the state (one saved with [`SharedFds::state`], say).
    pub fn set_state(&self, state: FdsState<f64>) {
        *self.lock() = state;
    }

    /// [`FdsState::update_last_epoch_stats`].
    pub fn update_last_epoch_stats(&self, epoch: u64) -> bool {
        self.lock().update_last_epoch_stats(epoch)
    }

    /// [`FdsState::update_running_stats_on`], on this state's engine.
    pub fn update_running_stats(
        &self,
        features: &[f64],
        labels: &[f64],
        epoch: u64,
    ) -> Result<bool, Error> {
        let engine: &dyn Engine<f64> = &*self.engine;
        self.lock()
            .update_running_stats_on(Some(engine), features, labels, epoch)
    }

    /// [`FdsState::smooth`].
    pub fn smooth(
        &self,
        features: &[f64],
        labels: &[f64],
        epoch: u64,
    ) -> Result<Smoothed<f64>, Error> {
        self.lock().smooth(features, labels, epoch)
    }
}
