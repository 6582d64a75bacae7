//! A batch held in device buffers of its own, as a framework would hold it,
//! with room for every output of [`GpuConr::record`]: the record path from
//! host data, for the CLI, the benchmarks and the tests (the `hooks`
//! feature).

use std::ops::Range;

use conr_core::{Batch, Config, Error, Output, PlanReport, Shape};
use wgpu::BufferUsages as U;
use wgpu::util::DeviceExt;

use crate::{GpuBuffers, GpuConr, Status, read_back};

/// A batch uploaded into buffers of its own, with buffers for the loss, the
/// gradient, the status word, the counts and the tile count.
#[derive(Debug)]
pub struct DeviceBatch {
    /// The shape the buffers hold.
    pub shape: Shape,
    features: wgpu::Buffer,
    labels: wgpu::Buffer,
    preds: wgpu::Buffer,
    eta: Option<wgpu::Buffer>,
    grad: wgpu::Buffer,
    counts: wgpu::Buffer,
    /// The loss, the status word and the tile count, one word each.
    words: wgpu::Buffer,
}

/// What a recorded call left in a [`DeviceBatch`]'s output buffers.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceResult {
    /// The loss.
    pub loss: f32,
    /// ∂L/∂features, M×D.
    pub grad: Vec<f32>,
    /// Each row's |P_j| and |Q_j|.
    pub counts: Vec<[u32; 2]>,
    /// The device's check of the values.
    pub status: Status,
    /// The 64×64 tiles the tile kernels visited ([`GpuBuffers::tiles`]).
    pub tiles: u32,
}

impl DeviceResult {
    /// The result as the engines' [`Output`], or the error the device's
    /// check of the values reports.
    pub fn output(&self) -> Result<Output<f32>, Error> {
        if let Some(error) = self.status.error() {
            return Err(error);
        }
        Ok(Output {
            loss: self.loss,
            grad_features: self.grad.clone(),
            anchors: self.counts.iter().map(|c| c[1] > 0).collect(),
            positives: self.counts.iter().map(|c| c[0]).collect(),
            negatives: self.counts.iter().map(|c| c[1]).collect(),
        })
    }
}

impl DeviceBatch {
    /// Uploads the inputs. They may hold any values: the record path checks
    /// them on the device ([`DeviceResult::status`]). A buffer larger than
    /// the device allows is [`Error::TooLarge`], before any is created; the
    /// buffers are created inside error scopes, so that a device that runs
    /// out of memory gives [`Error::OutOfMemory`], never a panic.
    pub fn new(
        gpu: &GpuConr,
        shape: Shape,
        features: &[f32],
        labels: &[f32],
        preds: &[f32],
        eta: Option<&[f32]>,
    ) -> Result<Self, Error> {
        let device = gpu.device();
        // A row of counts for each row the labels hold (the shape may be a
        // bad one, which `record` refuses).
        let rows_held = labels.len().checked_div(shape.label_dim).unwrap_or(0);
        let limit = device.limits().max_buffer_size;
        let sizes = [
            ("the features buffer", features.len()),
            ("the labels buffer", labels.len()),
            ("the predictions buffer", preds.len()),
            ("the eta buffer", eta.map_or(0, <[f32]>::len)),
            ("the counts buffer", rows_held.saturating_mul(2)),
        ];
        for (what, words) in sizes {
            let needed = (words as u64).saturating_mul(4);
            if needed > limit {
                return Err(Error::TooLarge {
                    what,
                    needed,
                    limit,
                });
            }
        }
        // At least one word each, so that empty inputs still bind.
        let init = |label, data: &[u8], usage| {
            let data = if data.is_empty() { &[0u8; 4][..] } else { data };
            device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some(label),
                contents: data,
                usage,
            })
        };
        let floats = bytemuck::cast_slice::<f32, u8>;
        // Filled with a value no call leaves, so that a stale output shows.
        let stale = vec![7.0f32; features.len()];
        gpu.scoped(|| Self {
            shape,
            features: init("conr batch features", floats(features), U::STORAGE),
            labels: init("conr batch labels", floats(labels), U::COPY_SRC),
            preds: init("conr batch preds", floats(preds), U::COPY_SRC),
            eta: eta.map(|w| init("conr batch eta", floats(w), U::COPY_SRC)),
            grad: init(
                "conr batch grad",
                floats(&stale),
                U::STORAGE | U::COPY_DST | U::COPY_SRC,
            ),
            counts: init(
                "conr batch counts",
                &vec![0xffu8; rows_held * 8],
                U::STORAGE | U::COPY_SRC,
            ),
            words: init("conr batch words", &[0u8; 12], U::COPY_DST | U::COPY_SRC),
        })
    }

    /// Uploads a host batch: see [`DeviceBatch::new`].
    pub fn upload(gpu: &GpuConr, batch: &Batch<'_, f32>) -> Result<Self, Error> {
        Self::new(
            gpu,
            batch.shape(),
            batch.features(),
            batch.labels(),
            batch.preds(),
            batch.etas(),
        )
    }

    /// The buffers, for [`GpuConr::record`], every output included.
    pub fn buffers(&self) -> GpuBuffers<'_> {
        GpuBuffers {
            features: self.features.slice(..),
            labels: self.labels.slice(..),
            preds: self.preds.slice(..),
            eta: self.eta.as_ref().map(|w| w.slice(..)),
            grad_features: self.grad.slice(..),
            loss: self.words.slice(0..4),
            status: Some(self.words.slice(4..8)),
            counts: Some(self.counts.slice(..)),
            tiles: Some(self.words.slice(8..12)),
        }
    }

    /// Records ConR on these buffers into `encoder`.
    pub fn record(
        &self,
        gpu: &GpuConr,
        encoder: &mut wgpu::CommandEncoder,
        config: &Config,
    ) -> Result<(), Error> {
        gpu.record(encoder, self.shape, self.buffers(), config)
    }

    /// Records, submits and reads back one call.
    pub fn run(&self, gpu: &GpuConr, config: &Config) -> Result<DeviceResult, Error> {
        let mut encoder = gpu.device().create_command_encoder(&Default::default());
        self.record(gpu, &mut encoder, config)?;
        gpu.queue().submit([encoder.finish()]);
        self.read(gpu)
    }

    /// Reads the outputs back (after the caller's submission).
    pub fn read(&self, gpu: &GpuConr) -> Result<DeviceResult, Error> {
        let (grad_bytes, count_bytes) = (self.grad.size(), self.counts.size());
        let sources = [
            (&self.grad, grad_bytes),
            (&self.counts, count_bytes),
            (&self.words, 12),
        ];
        let words = read_back(gpu, &sources)?;
        let (grad, rest) = words.split_at((grad_bytes / 4) as usize);
        let (counts, tail) = rest.split_at((count_bytes / 4) as usize);
        let Shape { rows, dim, .. } = self.shape;
        let grad = grad.iter().take(rows.saturating_mul(dim));
        Ok(DeviceResult {
            loss: f32::from_bits(tail[0]),
            grad: grad.map(|&w| f32::from_bits(w)).collect(),
            counts: counts
                .chunks_exact(2)
                .take(rows)
                .map(|c| [c[0], c[1]])
                .collect(),
            status: Status(tail[1]),
            tiles: tail[2],
        })
    }
}

/// The band plan the device builds for [`GpuConr::record`], read back: for
/// each side (positives, then negatives), the rows in sorted order and each
/// 64-row block's run of sorted columns, as
/// [`conr_core::band::BandPlan`] gives them on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevicePlan {
    /// Row indices in each side's sorted order.
    pub order: [Vec<u32>; 2],
    /// Each block's run of sorted columns, per side.
    pub runs: [Vec<Range<usize>>; 2],
    /// The 64×64 tiles the runs span, both sides together.
    pub tiles: u32,
}

impl GpuConr {
    /// The band plan `record` builds on the device for `batch` (uploaded
    /// here), read back, so that it can be held to the host's; `None` where
    /// `record` would visit every tile (the `angular` metric, chunked
    /// batches, and, under [`TilePlan::Auto`](conr_core::band::TilePlan),
    /// batches too small for the band to pay). Only the plan's kernels run.
    pub fn device_plan(
        &self,
        batch: &Batch<'_, f32>,
        config: &Config,
    ) -> Result<Option<DevicePlan>, Error> {
        batch.check(config)?;
        let on_device = DeviceBatch::upload(self, batch)?;
        let buffers = on_device.buffers();
        let (mut plan, uniforms) = self.prepare_record(batch.shape(), &buffers, config)?;
        if !plan.device_plan {
            return Ok(None);
        }
        plan.steps.forward = false;
        plan.steps.backward = false;
        let mut cache = self
            .cache
            .lock()
            .map_err(|_| Error::Device("a previous call panicked".into()))?;
        let mut encoder = self.device.create_command_encoder(&Default::default());
        if let Err(e) = self.record_locked(&mut cache, &mut encoder, &plan, buffers, &uniforms) {
            *cache = crate::Cache::default();
            return Err(e);
        }
        self.queue.submit([encoder.finish()]);
        let band = cache
            .workspace
            .as_ref()
            .and_then(|ws| ws.band.as_ref())
            .ok_or_else(|| Error::Device("a device plan without band buffers".into()))?;
        let (order_bytes, run_bytes) = (band.order.size(), band.runs.size());
        let words = read_back(
            self,
            &[
                (&band.order, order_bytes),
                (&band.runs, run_bytes),
                (&band.tiles, 4),
            ],
        )?;
        let (order, rest) = words.split_at((order_bytes / 4) as usize);
        let (runs, tiles) = rest.split_at((run_bytes / 4) as usize);
        let rows = batch.rows();
        let blocks = rows.div_ceil(crate::TILE as usize);
        let side_order = |s: usize| order[s * band.padded..][..rows].to_vec();
        let side_runs = |s: usize| {
            runs[2 * s * band.run_stride..][..2 * blocks]
                .chunks_exact(2)
                .map(|r| r[0] as usize..r[1] as usize)
                .collect()
        };
        Ok(Some(DevicePlan {
            order: [side_order(0), side_order(1)],
            runs: [side_runs(0), side_runs(1)],
            tiles: tiles[0],
        }))
    }

    /// [`Engine::compute`](conr_core::Engine::compute) through the record
    /// path: the batch uploaded into device buffers, recorded with
    /// [`GpuConr::record`] (the band plan built on the device), and read
    /// back with what the call did. The values are checked on the device,
    /// and a broken rule is the host's error.
    pub fn compute_recorded(
        &self,
        batch: &Batch<'_, f32>,
        config: &Config,
    ) -> Result<(Output<f32>, PlanReport), Error> {
        let on_device = DeviceBatch::upload(self, batch)?;
        let result = on_device.run(self, config)?;
        let report = self.record_report(batch.shape(), config, result.tiles)?;
        Ok((result.output()?, report))
    }
}
