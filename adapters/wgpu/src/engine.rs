//! The GPU behind the core's engine interface: [`Engine<f32>`], and
//! [`Engine<f64>`] on the batch rounded to f32 once.

use std::ops::Range;

use conr_core::band;
use conr_core::shard::RECORD_LEN;
use conr_core::stats::RowOutcome;
use conr_core::{
    Batch, Config, Engine, Error, OwnedBatch, Params, Part, PlanReport, Precision, Scalar, Worker,
    shard,
};

use crate::GpuConr;
use crate::plan::{Phase, Source};

impl Engine<f32> for GpuConr {
    fn name(&self) -> &'static str {
        "gpu"
    }

    /// [`Precision::F32`], or [`Precision::Mixed`] for a context built with it.
    fn precision(&self) -> Precision {
        self.precision
    }

    fn worker<'a>(
        &'a self,
        batch: Batch<'a, f32>,
        config: &Config,
    ) -> Result<Box<dyn Worker<f32> + 'a>, Error> {
        Ok(Box::new(GpuWorker::new(
            self,
            Data::Borrowed(batch),
            config,
        )?))
    }

    /// Uploads the batch, runs both phases fused (with the band plan where
    /// it applies), and reads the results back.
    fn compute(
        &self,
        batch: &Batch<'_, f32>,
        config: &Config,
    ) -> Result<conr_core::Output<f32>, Error> {
        let read = self.run(batch, config, Phase::Whole)?;
        let positives: Vec<u32> = read.stats.iter().map(|s| s.positives).collect();
        let negatives: Vec<u32> = read.stats.iter().map(|s| s.negatives).collect();
        Ok(conr_core::Output {
            loss: read.totals.loss,
            grad_features: read.grad,
            anchors: negatives.iter().map(|&n| n > 0).collect(),
            positives,
            negatives,
        })
    }

    /// The band's share of the 64×64 tiles where [`Engine::compute`] takes
    /// the band plan (one chunk, a metric with a band; see
    /// [`GpuConr::with_plan`]), every tile elsewhere (chunked batches,
    /// `angular`).
    fn plan(&self, batch: &Batch<'_, f32>, config: &Config) -> Result<PlanReport, Error> {
        let params = batch.check(config)?;
        let plan = self.call_plan(batch.shape(), config, &Phase::Whole, Source::Host)?;
        if !plan.band {
            return Ok(PlanReport::DENSE);
        }
        let (rows, tile) = (batch.rows(), crate::TILE as usize);
        let (mut order, mut keys) = (vec![0u32; rows], vec![0.0f32; rows]);
        let share = band::tile_share(batch, &params, tile, tile, &mut order, &mut keys)?;
        Ok(share.map_or(PlanReport::DENSE, |tile_share| PlanReport {
            tiles: band::TilePlan::Band,
            tile_share,
        }))
    }
}

/// An f64 batch on the GPU: rounded to f32 once (a value that does not fit
/// is refused), computed in f32, and the results widened. [`Engine::precision`]
/// says so.
impl Engine<f64> for GpuConr {
    fn name(&self) -> &'static str {
        "gpu"
    }

    fn precision(&self) -> Precision {
        self.precision
    }

    fn worker<'a>(
        &'a self,
        batch: Batch<'a, f64>,
        config: &Config,
    ) -> Result<Box<dyn Worker<f64> + 'a>, Error> {
        let rounded = OwnedBatch::converted(&batch)?;
        Ok(Box::new(Widened(GpuWorker::new(
            self,
            Data::Owned(rounded),
            config,
        )?)))
    }

    fn compute(
        &self,
        batch: &Batch<'_, f64>,
        config: &Config,
    ) -> Result<conr_core::Output<f64>, Error> {
        let rounded = OwnedBatch::<f32>::converted(batch)?;
        Ok(Engine::<f32>::compute(self, &rounded.batch(), config)?.cast())
    }

    fn plan(&self, batch: &Batch<'_, f64>, config: &Config) -> Result<PlanReport, Error> {
        let rounded = OwnedBatch::<f32>::converted(batch)?;
        Engine::<f32>::plan(self, &rounded.batch(), config)
    }
}

/// The batch a worker computes on.
enum Data<'a> {
    /// The caller's f32 batch.
    Borrowed(Batch<'a, f32>),
    /// A batch rounded to f32.
    Owned(OwnedBatch<f32>),
}

impl Data<'_> {
    fn batch(&self) -> Batch<'_, f32> {
        match self {
            Data::Borrowed(batch) => *batch,
            Data::Owned(owned) => owned.batch(),
        }
    }
}

/// One worker's phases on the GPU: each uploads the batch and runs one
/// phase over the worker's rows (every tile: the band's sorted order would
/// scatter a worker's rows).
struct GpuWorker<'a> {
    gpu: &'a GpuConr,
    data: Data<'a>,
    params: Params<f32>,
}

impl<'a> GpuWorker<'a> {
    fn new(gpu: &'a GpuConr, data: Data<'a>, config: &Config) -> Result<Self, Error> {
        let params = data.batch().check(config)?;
        Ok(Self { gpu, data, params })
    }
}

impl Worker<f32> for GpuWorker<'_> {
    /// The GPU computes each row's statistics; the host finishes them with
    /// the core's `RowStats::finish`, in f32.
    fn forward(&mut self, rows: Range<usize>) -> Result<Vec<RowOutcome<f32>>, Error> {
        let batch = self.data.batch();
        let read = self
            .gpu
            .run(&batch, &self.params.config, Phase::Forward(rows.clone()))?;
        Ok(rows
            .map(|j| {
                read.stats[j]
                    .stats()
                    .finish(&self.params, batch.rows(), batch.eta(j))
            })
            .collect())
    }

    fn backward(
        &mut self,
        rows: Range<usize>,
        outcomes: &[RowOutcome<f32>],
    ) -> Result<Part<f32>, Error> {
        let batch = self.data.batch();
        let config = &self.params.config;
        let read = self
            .gpu
            .run(&batch, config, Phase::Backward(rows.clone(), outcomes))?;
        let dim = batch.shape().dim;
        Ok(Part {
            loss: shard::part_loss(config, outcomes, rows.clone()),
            grad_features: read.grad[rows.start * dim..rows.end * dim].to_vec(),
        })
    }
}

/// An f32 worker for an f64 caller: outcomes cross through their shard
/// records, and the gradient is widened.
struct Widened<W>(W);

/// An outcome in another precision, through its record.
fn convert<A: Scalar, B: Scalar>(outcome: &RowOutcome<A>) -> Result<RowOutcome<B>, Error> {
    let record = outcome.to_record();
    let mut out = [B::zero(); RECORD_LEN];
    for (o, r) in out.iter_mut().zip(record) {
        *o = r.to_f64().and_then(B::from).unwrap_or_else(B::nan);
    }
    RowOutcome::from_record(&out).ok_or(Error::InvalidConfig {
        field: "outcomes",
        why: "an outcome does not fit in f32",
    })
}

impl<W: Worker<f32>> Worker<f64> for Widened<W> {
    fn forward(&mut self, rows: Range<usize>) -> Result<Vec<RowOutcome<f64>>, Error> {
        self.0.forward(rows)?.iter().map(convert).collect()
    }

    fn backward(
        &mut self,
        rows: Range<usize>,
        outcomes: &[RowOutcome<f64>],
    ) -> Result<Part<f64>, Error> {
        let narrow: Vec<RowOutcome<f32>> =
            outcomes.iter().map(convert).collect::<Result<_, _>>()?;
        let part = self.0.backward(rows, &narrow)?;
        Ok(Part {
            loss: f64::from(part.loss),
            grad_features: part.grad_features.into_iter().map(f64::from).collect(),
        })
    }
}
