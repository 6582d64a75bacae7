//! What `conr compute` and `conr weights` print, on the engine named on the
//! command line.

use anyhow::{Result, bail};
use conr_core::shard::{compute_sharded, even_slices};
use conr_core::{Config, Engine, FloatEngine, Output, Precision, Scalar};
use conr_cpu::density_weights;
use conr_schema::{LossCase, Report, WeightsCase};
use serde::Serialize;

use crate::gpu::Gpu;

/// How `conr compute` runs a case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Run {
    /// The precision to compute in (default: f64 where the engine computes
    /// f64, else the engine's own).
    pub precision: Option<Precision>,
    /// `Some(w)`: as `w` workers of the data-parallel protocol, run one
    /// after another.
    pub shards: Option<usize>,
    /// GPU only: through `GpuConr::record` on device buffers, the band plan
    /// built on the device.
    pub record: bool,
}

/// Runs one loss case on the engine called `backend`, as `how` says.
pub fn compute(case: &LossCase, backend: &str, how: Run) -> Result<Report> {
    let Run {
        precision,
        shards,
        record,
    } = how;
    if shards == Some(0) {
        bail!("--shards must be at least 1");
    }
    let config = case.config.to_config()?;
    let chosen = conr_engines::choose(backend, &Default::default())?;
    let engine: &dyn FloatEngine = &*chosen.engine;
    // Reports name the engine as it names itself, whatever alias was typed.
    let name = Engine::<f32>::name(engine);
    if record {
        let Some(gpu) = Gpu::of(&chosen) else {
            bail!("--record needs --backend gpu");
        };
        if shards.is_some() {
            bail!("--record runs one whole batch: it takes no --shards");
        }
        if precision.is_some_and(|p| p != Precision::F32) {
            bail!("--record computes in f32");
        }
        // An f64 case is rounded to f32 once, as the GPU engine does.
        let owned = case.converted::<f32>()?;
        let output = gpu.compute_recorded(&owned.batch(), &config)?;
        return Ok(Report::new(output.cast(), name, Precision::F32));
    }
    let precision = conr_engines::batch_precision(engine, precision)?;
    let output = match precision {
        Precision::F64 => run::<f64>(engine, case, &config, shards)?,
        _ => run::<f32>(engine, case, &config, shards)?,
    };
    let computed_in = match precision {
        Precision::F64 => Engine::<f64>::precision(engine),
        _ => Engine::<f32>::precision(engine),
    };
    Ok(Report::new(output, name, computed_in))
}

/// The case in `T`, on `engine`, widened to f64.
fn run<T: Scalar>(
    engine: &dyn Engine<T>,
    case: &LossCase,
    config: &Config,
    shards: Option<usize>,
) -> Result<Output<f64>> {
    let owned = case.converted::<T>()?;
    let batch = owned.batch();
    let out = match shards {
        None => engine.compute(&batch, config)?,
        Some(w) => compute_sharded(engine, &batch, config, &even_slices(batch.rows(), w))?,
    };
    Ok(out.cast())
}

/// The JSON object `conr weights` prints.
#[derive(Debug, Clone, Serialize)]
pub struct WeightsReport {
    /// One weight per label, mean 1.
    pub weights: Vec<f64>,
}

/// Runs one density-weight case.
pub fn weights(case: &WeightsCase) -> Result<WeightsReport> {
    let config = case.config.to_config()?;
    Ok(WeightsReport {
        weights: density_weights(&config, case.labels()?)?,
    })
}
