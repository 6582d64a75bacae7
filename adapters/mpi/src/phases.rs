//! One rank's two phases, on any engine: the CPU engines' [`Worker`], or the
//! GPU's row phases (which compute in f32, so a batch in another precision
//! is rounded once and the outcomes converted through their records).

use std::ops::Range;

use anyhow::{Context, Result, bail};
use conr_core::shard::RECORD_LEN;
use conr_core::stats::RowOutcome;
use conr_core::{Batch, Config, Part, Scalar};
use conr_cpu::{Engine, Fast, Reference, Worker};
use conr_wgpu::GpuConr;

use conr_cli::output::Backend;

/// An engine for one rank.
pub enum RankEngine {
    /// The reference engine.
    Reference,
    /// The fast CPU engine.
    Cpu(Fast),
    /// The WGSL engine (f32).
    Gpu(Box<GpuConr>),
}

impl RankEngine {
    /// The engine `backend` names; the GPU one opens the first adapter
    /// (`WGPU_BACKEND` honoured).
    pub fn new(backend: Backend) -> Result<Self> {
        Ok(match backend {
            Backend::Reference => Self::Reference,
            Backend::Cpu => Self::Cpu(Fast::new()),
            Backend::Gpu => Self::Gpu(Box::new(GpuConr::new()?)),
        })
    }

    /// A rank's phases on `batch` (the whole global batch, gathered).
    pub fn phases<'a, T: Scalar>(
        &'a self,
        batch: &'a Batch<'a, T>,
        config: &Config,
    ) -> Result<Box<dyn Phases<T> + 'a>> {
        Ok(match self {
            Self::Reference => Box::new(CpuPhases(Reference.worker(batch, config)?)),
            Self::Cpu(fast) => Box::new(CpuPhases(fast.worker(batch, config)?)),
            Self::Gpu(gpu) => Box::new(GpuPhases::new(gpu, batch, config)?),
        })
    }
}

/// Phase 1 and phase 2 of `conr_core::shard` for one rank's rows.
pub trait Phases<T> {
    /// The outcomes of `rows` against every row.
    fn forward(&mut self, rows: Range<usize>) -> Result<Vec<RowOutcome<T>>>;
    /// Given every row's outcome, the part of the loss and the gradient of `rows`.
    fn backward(&mut self, rows: Range<usize>, outcomes: &[RowOutcome<T>]) -> Result<Part<T>>;
}

struct CpuPhases<'a, T>(Box<dyn Worker<T> + 'a>);

impl<T: Scalar> Phases<T> for CpuPhases<'_, T> {
    fn forward(&mut self, rows: Range<usize>) -> Result<Vec<RowOutcome<T>>> {
        Ok(self.0.forward(rows)?)
    }

    fn backward(&mut self, rows: Range<usize>, outcomes: &[RowOutcome<T>]) -> Result<Part<T>> {
        Ok(self.0.backward(rows, outcomes)?)
    }
}

/// The GPU's phases, on the batch rounded to f32 once.
struct GpuPhases<'a> {
    gpu: &'a GpuConr,
    config: Config,
    shape: conr_core::Shape,
    /// Features, labels, predictions and weights in f32.
    data: [Vec<f32>; 3],
    weights: Option<Vec<f32>>,
}

impl<'a> GpuPhases<'a> {
    fn new<T: Scalar>(gpu: &'a GpuConr, batch: &Batch<'_, T>, config: &Config) -> Result<Self> {
        let narrow =
            |v: &[T]| -> Vec<f32> { v.iter().map(|x| x.to_f32().unwrap_or(f32::NAN)).collect() };
        let phases = Self {
            gpu,
            config: *config,
            shape: batch.shape(),
            data: [
                narrow(batch.features()),
                narrow(batch.labels()),
                narrow(batch.preds()),
            ],
            weights: batch.weights().map(narrow),
        };
        // Values that overflow f32 are refused here, once.
        phases.batch()?.check(config)?;
        Ok(phases)
    }

    fn batch(&self) -> Result<Batch<'_, f32>> {
        let [f, y, p] = &self.data;
        Ok(Batch::new(self.shape, f, y, p, self.weights.as_deref())?)
    }
}

/// An outcome in another precision, through its record.
fn convert<A: Scalar, B: Scalar>(outcome: &RowOutcome<A>) -> Result<RowOutcome<B>> {
    let record = outcome.to_record();
    let mut out = [B::zero(); RECORD_LEN];
    for (o, r) in out.iter_mut().zip(record) {
        *o = r.to_f64().and_then(B::from).unwrap_or_else(B::nan);
    }
    RowOutcome::from_record(&out).context("an outcome does not fit the other precision")
}

impl<T: Scalar> Phases<T> for GpuPhases<'_> {
    fn forward(&mut self, rows: Range<usize>) -> Result<Vec<RowOutcome<T>>> {
        let outcomes = self.gpu.forward_rows(&self.batch()?, &self.config, rows)?;
        outcomes.iter().map(convert).collect()
    }

    fn backward(&mut self, rows: Range<usize>, outcomes: &[RowOutcome<T>]) -> Result<Part<T>> {
        if outcomes.len() != self.shape.rows {
            bail!(
                "{} outcomes for a batch of {} rows",
                outcomes.len(),
                self.shape.rows
            );
        }
        let narrow: Vec<RowOutcome<f32>> = outcomes.iter().map(convert).collect::<Result<_>>()?;
        let part = self
            .gpu
            .backward_rows(&self.batch()?, &self.config, rows, &narrow)?;
        let widen = |x: f32| T::from(x).unwrap_or_else(T::nan);
        Ok(Part {
            loss: widen(part.loss),
            grad_features: part.grad_features.into_iter().map(widen).collect(),
        })
    }
}
