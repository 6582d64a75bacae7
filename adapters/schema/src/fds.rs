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

    /// Replays the case in `T`: for each step, smooths its batch (if any),
    /// then feeds its epoch's features (if any), and records the buffers.
    /// The statistics passes run on `engine`, or the core's serial loop.
    pub fn replay<T: Scalar>(
        &self,
        engine: Option<&dyn Engine<T>>,
    ) -> Result<Vec<FdsStepReport>, Error> {
        let mut state =
            FdsState::<T>::new(self.fds()?, self.feature_dim).map_err(Error::Invalid)?;
        let cast = |v: &[f64]| {
            v.iter()
                .map(|&x| T::from(x).unwrap_or_else(T::nan))
                .collect::<Vec<T>>()
        };
        let widen = |v: &[T]| {
            v.iter()
                .map(|x| x.to_f64().unwrap_or(f64::NAN))
                .collect::<Vec<f64>>()
        };
        let mut steps = Vec::with_capacity(self.steps.len());
        for step in &self.steps {
            let smooth = match &step.smooth {
                Some(call) => {
                    let smoothed = state
                        .smooth(&cast(&call.features), &cast(&call.labels), step.epoch)
                        .map_err(Error::Invalid)?;
                    let grad = smoothed
                        .scale
                        .iter()
                        .zip(&call.upstream)
                        .map(|(s, u)| s.to_f64().unwrap_or(f64::NAN) * u)
                        .collect();
                    Some(SmoothReport {
                        out: widen(&smoothed.out),
                        grad_features: grad,
                    })
                }
                None => None,
            };
            if let Some(call) = &step.update {
                state.update_last_epoch_stats(step.epoch);
                state
                    .update_running_stats_on(
                        engine,
                        &cast(&call.features),
                        &cast(&call.labels),
                        step.epoch,
                    )
                    .map_err(Error::Invalid)?;
            }
            let mut after = BTreeMap::new();
            after.insert("epoch_buffer".to_string(), Value::from(state.epoch as f64));
            for (name, values) in state.buffers() {
                after.insert(name.to_string(), Value::from(widen(values)));
            }
            debug_assert_eq!(after.len(), BUFFER_NAMES.len() + 1);
            steps.push(FdsStepReport {
                epoch: step.epoch,
                smooth,
                after,
            });
        }
        Ok(steps)
    }
}
