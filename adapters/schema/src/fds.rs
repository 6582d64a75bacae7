//! The `fds-fixture/1` cases: FDS's calls of a training run, epoch by epoch,
//! and what each left in the buffers; and the object `conr compute` prints
//! for one (the same `steps`, computed).

use std::collections::BTreeMap;
use std::path::Path;

use conr_core::fds::{BUFFER_NAMES, Fds, FdsState};
use conr_core::{Engine, Scalar};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::Error;
use crate::config::knobs_from;

/// The schema name of these cases.
pub const FDS_SCHEMA: &str = "fds-fixture/1";

/// One FDS case: the config, the feature width, and the epochs' calls.
#[derive(Debug, Clone, Deserialize)]
pub struct FdsCase {
    /// `"fds-fixture/1"`.
    pub schema: String,
    /// The feature width D.
    pub feature_dim: usize,
    /// Any of [`Fds`]'s knobs, by name.
    pub config: serde_json::Map<String, Value>,
    /// The smoothing window the case expects, informational.
    #[serde(default)]
    pub kernel_window: Option<Vec<f64>>,
    /// One per epoch, in order.
    pub steps: Vec<FdsStep>,
    /// Anything else the file records (its source, seed, quirks).
    #[serde(flatten)]
    pub other: BTreeMap<String, Value>,
}

/// One epoch: a batch smoothed during training, then the epoch's features
/// fed at its end, and the buffers after it.
#[derive(Debug, Clone, Deserialize)]
pub struct FdsStep {
    /// The epoch.
    pub epoch: u64,
    /// A training batch smoothed in this epoch.
    #[serde(default)]
    pub smooth: Option<SmoothCall>,
    /// The epoch's features and labels, fed at its end
    /// (`update_last_epoch_stats`, then `update_running_stats`).
    #[serde(default)]
    pub update: Option<UpdateCall>,
    /// The buffers after the step (the expected values, where given).
    #[serde(default)]
    pub after: Option<BTreeMap<String, Value>>,
}

/// A batch to smooth, and an upstream gradient to take its gradient against.
#[derive(Debug, Clone, Deserialize)]
pub struct SmoothCall {
    /// n·D features, row-major.
    pub features: Vec<f64>,
    /// n labels.
    pub labels: Vec<f64>,
    /// n·D: the gradient is `∂ Σ(out ⊙ upstream) / ∂ features`.
    pub upstream: Vec<f64>,
    /// The expected smoothed features.
    #[serde(default)]
    pub out: Option<Vec<f64>>,
    /// The expected gradient.
    #[serde(default)]
    pub grad_features: Option<Vec<f64>>,
}

/// An epoch's features and labels.
#[derive(Debug, Clone, Deserialize)]
pub struct UpdateCall {
    /// N·D features, row-major.
    pub features: Vec<f64>,
    /// N labels.
    pub labels: Vec<f64>,
}

/// What `conr compute` prints for an FDS case.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FdsReport {
    /// `"fds"`.
    pub loss: String,
    /// The engine that ran the statistics passes.
    pub backend: String,
    /// `"f64"` or `"f32"`.
    pub precision: String,
    /// One per step of the case.
    pub steps: Vec<FdsStepReport>,
}

/// One step's results.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FdsStepReport {
    /// The epoch.
    pub epoch: u64,
    /// The smoothed batch and its gradient, where the step smooths one.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub smooth: Option<SmoothReport>,
    /// Every buffer after the step, by the reference's names, and the
    /// epoch counter as `epoch_buffer`.
    pub after: BTreeMap<String, Value>,
}

/// A smoothed batch.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SmoothReport {
    /// The smoothed features.
    pub out: Vec<f64>,
    /// `∂ Σ(out ⊙ upstream) / ∂ features`.
    pub grad_features: Vec<f64>,
}

impl FdsCase {
    /// Whether a parsed JSON object is an FDS case.
    pub fn is_fds(value: &Value) -> bool {
        value.get("schema").and_then(Value::as_str) == Some(FDS_SCHEMA)
    }

    /// Reads an FDS case from `path`.
    pub fn read(path: &Path) -> Result<Self, Error> {
        crate::read_json(path)
    }

    /// The config, validated.
    pub fn fds(&self) -> Result<Fds, Error> {
        knobs_from(&self.config)
    }

    /// Replays the case in `T` on an [`FdsState`], the statistics passes on
    /// `engine` or, without one, the core's loop.
    pub fn replay<T: Scalar>(
        &self,
        engine: Option<&dyn Engine<T>>,
    ) -> Result<Vec<FdsStepReport>, Error> {
        let state = FdsState::<T>::new(self.fds()?, self.feature_dim)?;
        self.replay_with(&mut OnState { state, engine })
    }

    /// Replays the case through `fds` (an entry point's FDS): for each
    /// step, smooths its batch (if any), then feeds its epoch's features (if
    /// any: the last-epoch update, then the running update), and records
    /// every buffer.
    pub fn replay_with(&self, fds: &mut impl FdsSteps) -> Result<Vec<FdsStepReport>, Error> {
        let mut steps = Vec::with_capacity(self.steps.len());
        for step in &self.steps {
            let smooth = match &step.smooth {
                Some(call) => Some(fds.smooth(call, step.epoch)?),
                None => None,
            };
            if let Some(call) = &step.update {
                fds.update(call, step.epoch)?;
            }
            let (epoch, buffers) = fds.buffers();
            let mut after = BTreeMap::new();
            after.insert("epoch_buffer".to_string(), Value::from(epoch as f64));
            for (name, values) in BUFFER_NAMES.iter().zip(buffers) {
                after.insert(name.to_string(), Value::from(values));
            }
            steps.push(FdsStepReport {
                epoch: step.epoch,
                smooth,
                after,
            });
        }
        Ok(steps)
    }
}

/// An entry point's FDS, driven through a case's steps by
/// [`FdsCase::replay_with`].
pub trait FdsSteps {
    /// Smooths the call's batch at `epoch`: the output, and the gradient of
    /// `Σ(out ⊙ upstream)`.
    fn smooth(&mut self, call: &SmoothCall, epoch: u64) -> Result<SmoothReport, Error>;
    /// The end of `epoch`: the last-epoch update, then the running update.
    fn update(&mut self, call: &UpdateCall, epoch: u64) -> Result<(), Error>;
    /// The epoch counter and every buffer, in f64, in [`BUFFER_NAMES`]' order.
    fn buffers(&self) -> (u64, Vec<Vec<f64>>);
}

/// The core's [`FdsState`] as [`FdsSteps`].
struct OnState<'e, T: Scalar> {
    state: FdsState<T>,
    engine: Option<&'e dyn Engine<T>>,
}

fn cast<T: Scalar>(v: &[f64]) -> Vec<T> {
    v.iter()
        .map(|&x| T::from(x).unwrap_or_else(T::nan))
        .collect()
}

fn widen<T: Scalar>(v: &[T]) -> Vec<f64> {
    v.iter().map(|x| x.to_f64().unwrap_or(f64::NAN)).collect()
}

impl<T: Scalar> FdsSteps for OnState<'_, T> {
    fn smooth(&mut self, call: &SmoothCall, epoch: u64) -> Result<SmoothReport, Error> {
        let smoothed = self
            .state
            .smooth(&cast(&call.features), &cast(&call.labels), epoch)?;
        let grad_features = widen(&smoothed.scale)
            .iter()
            .zip(&call.upstream)
            .map(|(s, u)| s * u)
            .collect();
        Ok(SmoothReport {
            out: widen(&smoothed.out),
            grad_features,
        })
    }

    fn update(&mut self, call: &UpdateCall, epoch: u64) -> Result<(), Error> {
        self.state.update_last_epoch_stats(epoch);
        let (x, y) = (cast(&call.features), cast(&call.labels));
        self.state
            .update_running_stats_on(self.engine, &x, &y, epoch)?;
        Ok(())
    }

    fn buffers(&self) -> (u64, Vec<Vec<f64>>) {
        state_buffers(&self.state)
    }
}

/// [`FdsSteps::buffers`] of an [`FdsState`]: its epoch counter and every
/// buffer in f64, for any entry point that keeps one (the core's, the
/// candle and burn layers').
pub fn state_buffers<T: Scalar>(state: &FdsState<T>) -> (u64, Vec<Vec<f64>>) {
    let buffers = state.buffers().iter().map(|(_, v)| widen(v)).collect();
    (state.epoch, buffers)
}
