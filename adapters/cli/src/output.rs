//! What `conr compute` and `conr weights` print, and the dispatch to an engine.

use anyhow::{Result, bail};
use conr_core::{Batch, Scalar};
use conr_cpu::{Engine, Fast, Output, Reference, compute_sharded, density_weights, even_slices};
use serde::Serialize;

use crate::input::{LossCase, WeightsCase};

/// Which engine computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// The reference engine: plain loops, the oracle.
    Reference,
    /// The fast CPU engine.
    Cpu,
    /// The WGSL engine on a GPU through wgpu (f32 only).
    Gpu,
}

/// The floating-point precision of the computation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// 32-bit floats.
    F32,
    /// 64-bit floats.
    F64,
}

/// The JSON object `conr compute` prints.
#[derive(Debug, Clone, Serialize)]
pub struct ComputeReport {
    /// The loss.
    pub loss: f64,
    /// ∂loss/∂features, M·D values, row-major.
    pub grad_features: Vec<f64>,
    /// Whether each row is an anchor.
    pub anchors: Vec<bool>,
    /// |P_j| per row.
    pub positives: Vec<u32>,
    /// |Q_j| per row.
    pub negatives: Vec<u32>,
    /// The engine that ran.
    pub backend: Backend,
    /// The precision it ran in.
    pub precision: Precision,
}

/// Runs one loss case on `backend` in `precision` (default: f64 on the CPU, f32 on the GPU).
pub fn compute(
    case: &LossCase,
    backend: Backend,
    precision: Option<Precision>,
) -> Result<ComputeReport> {
    compute_with(case, backend, precision, None)
}

/// [`compute`] with the data-parallel protocol of `conr_core::shard`:
/// `Some(w)` splits the rows into `w` even runs, one worker each, run one
/// after another (CPU engines). The report is the same object.
pub fn compute_with(
    case: &LossCase,
    backend: Backend,
    precision: Option<Precision>,
    shards: Option<usize>,
) -> Result<ComputeReport> {
    if let Some(w) = shards {
        if w == 0 {
            bail!("--shards must be at least 1");
        }
        if backend == Backend::Gpu {
            bail!(
                "--shards runs on the CPU engines (reference, cpu); across GPUs, run conr-mpi --backend gpu"
            );
        }
    }
    let config = case.config.to_config()?;
    let precision = Precision::resolve(backend, precision)?;
    let output = match precision {
        Precision::F64 => run::<f64>(case, &config, backend, shards)?,
        Precision::F32 => run::<f32>(case, &config, backend, shards)?,
    };
    Ok(ComputeReport::new(output, backend, precision))
}

impl Precision {
    /// The precision `backend` computes in when asked for `asked`: f64 by
    /// default on the CPU, f32 (its only one) on the GPU.
    pub fn resolve(backend: Backend, asked: Option<Precision>) -> Result<Self> {
        Ok(match (backend, asked) {
            (Backend::Gpu, Some(Precision::F64)) => {
                bail!("the gpu backend computes in f32 only: use --precision f32")
            }
            (Backend::Gpu, _) => Precision::F32,
            (_, p) => p.unwrap_or(Precision::F64),
        })
    }
}

impl ComputeReport {
    /// The report of `output`, computed by `backend` in `precision`.
    pub fn new(output: Output<f64>, backend: Backend, precision: Precision) -> Self {
        Self {
            loss: output.loss,
            grad_features: output.grad_features,
            anchors: output.anchors,
            positives: output.positives,
            negatives: output.negatives,
            backend,
            precision,
        }
    }
}

/// Converts the case to `T` and runs it, returning the output widened to f64.
fn run<T: Scalar>(
    case: &LossCase,
    config: &conr_core::Config,
    backend: Backend,
    shards: Option<usize>,
) -> Result<Output<f64>> {
    let convert = |v: &[f64]| -> Vec<T> {
        v.iter()
            .map(|&x| T::from(x).unwrap_or_else(T::nan))
            .collect()
    };
    let (features, labels, preds) = (
        convert(&case.features),
        convert(&case.labels),
        convert(&case.preds),
    );
    let weights = case.weights.as_deref().map(convert);
    let batch = Batch::new(case.shape(), &features, &labels, &preds, weights.as_deref())?;
    let slices = shards.map(|w| even_slices(batch.rows(), w));
    let out = match (backend, &slices) {
        (Backend::Reference, None) => Reference.compute(&batch, config)?,
        (Backend::Reference, Some(s)) => compute_sharded(&Reference, &batch, config, s)?,
        (Backend::Cpu, None) => Fast::new().compute(&batch, config)?,
        (Backend::Cpu, Some(s)) => compute_sharded(&Fast::new(), &batch, config, s)?,
        (Backend::Gpu, _) => conr_wgpu::GpuConr::new()?.compute_any(&batch, config)?,
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
    if let Some(n) = case.n
        && n != case.labels.len()
    {
        bail!("n is {n}, but there are {} labels", case.labels.len());
    }
    let config = case.config.to_config()?;
    Ok(WeightsReport {
        weights: density_weights(&config, &case.labels)?,
    })
}
