//! The two ways in: host slices ([`GpuConr::compute`]) and caller-owned
//! buffers recorded into the caller's encoder ([`GpuConr::record`]).

use std::sync::mpsc;

use std::ops::Range;

use conr_core::shard;
use conr_core::stats::{LogSumExp, RowOutcome, RowStats};
use conr_core::{Batch, Config, Output, Part, Shape};
use wgpu::BufferBinding;

use crate::dispatch::{Sources, Steps, record};
use crate::params::Params;
use crate::plan::Plan;
use crate::workspace::{BandBuffers, HostBuffers, Workspace};
use crate::{GpuConr, GpuError};
use conr_core::band::{BandPlan, Side};

/// Caller-owned buffers for [`GpuConr::record`], all f32, row-major.
///
/// Each is a slice of a buffer (`buffer.slice(..)` for a whole one), so that
/// tensors a framework sub-allocates from a larger buffer can be used in
/// place. The features and the gradient must start at a multiple of the
/// device's `min_storage_buffer_offset_alignment`, the others at a multiple of 4.
#[derive(Debug, Clone, Copy)]
pub struct GpuBuffers<'a> {
    /// M×D features; usage `STORAGE`.
    pub features: wgpu::BufferSlice<'a>,
    /// M×L labels; usage `COPY_SRC` (they are copied, O(M·L), so that they
    /// may share a buffer with `grad_features`).
    pub labels: wgpu::BufferSlice<'a>,
    /// M×L predictions; usage `COPY_SRC`.
    pub preds: wgpu::BufferSlice<'a>,
    /// M weights, or `None` for all ones; usage `COPY_SRC`.
    pub weights: Option<wgpu::BufferSlice<'a>>,
    /// Receives ∂L/∂features (M×D); usage `STORAGE | COPY_DST`.
    pub grad_features: wgpu::BufferSlice<'a>,
    /// Receives the loss as one f32 at the slice's start; usage `COPY_DST`.
    pub loss: wgpu::BufferSlice<'a>,
}

fn check(
    what: &'static str,
    slice: wgpu::BufferSlice<'_>,
    needed: u64,
    usage: wgpu::BufferUsages,
    alignment: u64,
) -> Result<(), GpuError> {
    if slice.size() < needed {
        return Err(GpuError::BadBuffer {
            what,
            why: format!("has {} bytes, needs {needed}", slice.size()),
        });
    }
    if !slice.buffer().usage().contains(usage) {
        return Err(GpuError::BadBuffer {
            what,
            why: format!("needs usage {usage:?}, has {:?}", slice.buffer().usage()),
        });
    }
    if slice.offset() % alignment != 0 {
        return Err(GpuError::BadBuffer {
            what,
            why: format!(
                "starts at byte {}, not a multiple of {alignment}",
                slice.offset()
            ),
        });
    }
    Ok(())
}

/// What a run computes: both phases over every row, or one phase over a
/// worker's rows.
enum Phase<'a> {
    Whole,
    Forward(Range<usize>),
    /// The worker's rows and every row's outcome.
    Backward(Range<usize>, &'a [RowOutcome<f32>]),
}

impl Phase<'_> {
    /// The steps the kernels record for this phase on a batch of `rows` rows.
    fn steps(&self, rows: usize) -> Steps {
        match self {
            Phase::Whole => Steps::whole(rows),
            Phase::Forward(own) => Steps {
                forward: true,
                backward: false,
                rows: own.clone(),
            },
            Phase::Backward(own, _) => Steps {
                forward: false,
                backward: true,
                rows: own.clone(),
            },
        }
    }
}

/// What a run reads back: the gradient (M×D, after phase 2) and the row
/// statistics then the totals as words (after phase 1).
struct Readback {
    grad: Vec<f32>,
    words: Vec<u32>,
}

/// The outcomes in the shader's layout (`struct RowOutcome`, 8 words a row)
/// and the totals block (loss, factor, anchor count) of the whole batch.
fn gpu_outcomes(config: &Config, outcomes: &[RowOutcome<f32>]) -> (Vec<u32>, [u32; 4]) {
    let factor = shard::reduction::<f32>(config, outcomes);
    let anchors = outcomes.iter().filter(|o| o.anchor).count() as u32;
    let words = outcomes
        .iter()
        .flat_map(|o| {
            // loss, anchor, |P|, |Q|, weight, ln D, ln Σ_P e^s, |P|/n, 1/n, aggregation
            let r = o.to_record();
            [
                r[0].to_bits(),
                u32::from(o.anchor),
                u32::from(o.contributes()),
                r[5].to_bits(),
                r[6].to_bits(),
                r[7].to_bits(),
                r[8].to_bits(),
                r[4].to_bits(),
            ]
        })
        .collect();
    (words, [0, factor.to_bits(), anchors, 0])
}

fn chunked<'a>(buffer: &'a wgpu::Buffer, base: u64, plan: &Plan) -> Vec<BufferBinding<'a>> {
    (0..plan.chunks())
        .map(|a| BufferBinding {
            buffer,
            offset: base + plan.chunk_offset(a),
            size: wgpu::BufferSize::new(plan.chunk_bytes(a)),
        })
        .collect()
}

impl GpuConr {
    /// Sorts the batch for both band sides on the host and writes the orders
    /// and each 64-row block's column run into `band`. Returns false (a dense
    /// pass) where no band exists (the `angular` metric).
    fn write_band(
        &self,
        band: &BandBuffers,
        batch: &Batch<'_, f32>,
        params: &conr_core::Params<f32>,
    ) -> Result<bool, GpuError> {
        let rows = batch.rows();
        let tile = crate::TILE as usize;
        for (i, side) in [Side::Positives, Side::Negatives].into_iter().enumerate() {
            let (mut order, mut keys) = (vec![0u32; rows], vec![0.0f32; rows]);
            let Some(plan) = BandPlan::new(batch, params, side, &mut order, &mut keys)? else {
                return Ok(false);
            };
            let ranges: Vec<u32> = plan
                .block_columns(tile)
                .flat_map(|cols| [cols.start as u32, cols.end as u32])
                .collect();
            self.queue
                .write_buffer(&band.order[i], 0, bytemuck::cast_slice(plan.order()));
            self.queue
                .write_buffer(&band.ranges[i], 0, bytemuck::cast_slice(&ranges));
        }
        Ok(true)
    }

    /// Takes the cached workspace for `plan`, or builds a new one.
    fn workspace(&self, cache: &mut crate::Cache, plan: Plan) -> Result<(), GpuError> {
        if cache.workspace.as_ref().map(|w| w.plan) != Some(plan) {
            cache.workspace = None;
            cache.host = None;
            cache.workspace = Some(
                self.scoped(|| Workspace::new(&self.device, plan, self.precision, self.tiles))?,
            );
        }
        Ok(())
    }

    /// ConR's loss, gradient, anchors and counts for a batch of host slices.
    ///
    /// Uploads the batch, runs the forward and backward passes, and reads the
    /// results back. Buffers are reused while the shape repeats.
    pub fn compute(
        &self,
        batch: &Batch<'_, f32>,
        config: &Config,
    ) -> Result<Output<f32>, GpuError> {
        let rows = batch.rows();
        let read = self.run(batch, config, Phase::Whole)?;
        let stat = |j: usize, field: usize| read.words[j * 8 + field];
        let positives: Vec<u32> = (0..rows).map(|j| stat(j, 5)).collect();
        let negatives: Vec<u32> = (0..rows).map(|j| stat(j, 6)).collect();
        Ok(Output {
            loss: f32::from_bits(read.words[rows * 8]),
            grad_features: read.grad,
            anchors: negatives.iter().map(|&n| n > 0).collect(),
            positives,
            negatives,
        })
    }

    /// [`GpuConr::compute`] for a batch in any precision: the GPU computes in
    /// f32, so the batch is rounded to f32 and the results converted back.
    pub fn compute_any<T: conr_core::Scalar>(
        &self,
        batch: &Batch<'_, T>,
        config: &Config,
    ) -> Result<Output<T>, GpuError> {
        let narrow =
            |v: &[T]| -> Vec<f32> { v.iter().map(|x| x.to_f32().unwrap_or(f32::NAN)).collect() };
        let (f, y, p) = (
            narrow(batch.features()),
            narrow(batch.labels()),
            narrow(batch.preds()),
        );
        let w = batch.weights().map(narrow);
        let small = Batch::new(batch.shape(), &f, &y, &p, w.as_deref())?;
        Ok(self.compute(&small, config)?.cast())
    }

    /// Phase 1 of the data-parallel protocol ([`conr_core::shard`]) for the
    /// worker that owns `rows`: their outcomes against every row of `batch`.
    ///
    /// The GPU computes each row's statistics; the host finishes them with
    /// `conr_core`'s [`RowStats::finish`], in f32. Row phases visit every tile
    /// (the dense plan) and need [`GpuPrecision::F32`](crate::GpuPrecision).
    ///
    /// ```no_run
    /// use conr_core::{Batch, Config, Shape, shard};
    /// use conr_wgpu::GpuConr;
    /// let gpu = GpuConr::new()?;
    /// let shape = Shape { rows: 4, dim: 2, label_dim: 1 };
    /// let f = [1.0, 0.1, 0.9, 0.2, 0.1, 1.0, 0.2, 0.8];
    /// let batch = Batch::new(shape, &f, &[20.0, 20.5, 60.0, 60.5], &[40.0, 40.2, 40.4, 40.1], None)?;
    /// let config = Config::official_agedb();
    /// // Two workers, one after another.
    /// let mut outcomes = gpu.forward_rows(&batch, &config, 0..2)?;
    /// outcomes.extend(gpu.forward_rows(&batch, &config, 2..4)?);
    /// let first = gpu.backward_rows(&batch, &config, 0..2, &outcomes)?;
    /// let second = gpu.backward_rows(&batch, &config, 2..4, &outcomes)?;
    /// let whole = gpu.compute(&batch, &config)?;
    /// assert!((first.loss + second.loss - whole.loss).abs() < 1e-5);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn forward_rows(
        &self,
        batch: &Batch<'_, f32>,
        config: &Config,
        rows: Range<usize>,
    ) -> Result<Vec<RowOutcome<f32>>, GpuError> {
        let params = batch.check(config)?;
        let read = self.run(batch, config, Phase::Forward(rows.clone()))?;
        Ok(rows
            .map(|j| {
                let w = &read.words[j * 8..j * 8 + 8];
                let f = |i: usize| f32::from_bits(w[i]);
                let stats = RowStats {
                    positive: LogSumExp::from_parts(f(0), f(1)),
                    negative: LogSumExp::from_parts(f(2), f(3)),
                    positive_logit_sum: f(4),
                    positives: w[5],
                    negatives: w[6],
                };
                stats.finish(&params, batch.rows(), batch.weight(j))
            })
            .collect())
    }

    /// Phase 2 of the data-parallel protocol for the worker that owns
    /// `rows`: given every row's outcome (`outcomes.len() == M`), its part of
    /// the loss and `∂L/∂features` of its rows. See
    /// [`GpuConr::forward_rows`].
    pub fn backward_rows(
        &self,
        batch: &Batch<'_, f32>,
        config: &Config,
        rows: Range<usize>,
        outcomes: &[RowOutcome<f32>],
    ) -> Result<Part<f32>, GpuError> {
        let read = self.run(batch, config, Phase::Backward(rows.clone(), outcomes))?;
        let dim = batch.shape().dim;
        Ok(Part {
            loss: shard::part_loss(config, outcomes, rows.clone()),
            grad_features: read.grad[rows.start * dim..rows.end * dim].to_vec(),
        })
    }

    /// Checks, takes the lock, and runs `phase`; a failure drops the cached
    /// buffers, which may be in any state after it.
    fn run(
        &self,
        batch: &Batch<'_, f32>,
        config: &Config,
        phase: Phase<'_>,
    ) -> Result<Readback, GpuError> {
        self.check_lost()?;
        let params = batch.check(config)?;
        let shape = batch.shape();
        if !matches!(phase, Phase::Whole) {
            let steps = phase.steps(shape.rows);
            let outcomes = match &phase {
                Phase::Backward(_, outcomes) => Some(outcomes.len()),
                _ => None,
            };
            shard::check_phase(shape.rows, &steps.rows, outcomes)?;
            if self.precision != crate::GpuPrecision::F32 {
                return Err(GpuError::Unsupported {
                    what: "a row phase in mixed precision",
                    why: "the data-parallel row phases run in f32 only".into(),
                });
            }
        }
        let plan = self.chunk_plan(shape)?;
        let mut cache = self
            .cache
            .lock()
            .map_err(|_| GpuError::Device("a previous call panicked".into()))?;
        let base = Params::new(
            &params,
            shape.rows as u32,
            shape.dim as u32,
            shape.label_dim as u32,
            batch.weights().is_some(),
        );
        let result = self.run_locked(&mut cache, batch, &params, plan, base, phase);
        if result.is_err() {
            *cache = crate::Cache::default();
        }
        result
    }

    fn run_locked(
        &self,
        cache: &mut crate::Cache,
        batch: &Batch<'_, f32>,
        core: &conr_core::Params<f32>,
        plan: Plan,
        base: Params,
        phase: Phase<'_>,
    ) -> Result<Readback, GpuError> {
        self.workspace(cache, plan)?;
        if cache.host.is_none() {
            cache.host = Some(self.scoped(|| HostBuffers::new(&self.device, plan))?);
        }
        let crate::Cache { workspace, host } = cache;
        let (Some(ws), Some(host)) = (workspace.as_ref(), host.as_mut()) else {
            return Err(GpuError::Device("the working buffers are missing".into()));
        };
        let rows = plan.rows;
        let steps = phase.steps(rows);
        // The band plan's orders and column runs, when this batch has a band
        // (whole computations only: a worker's rows are scattered in the sorted order).
        let banded = match (&ws.band, &phase) {
            (Some(band), Phase::Whole) => self.write_band(band, batch, core)?,
            _ => false,
        };
        if host.bound_weights != batch.weights().is_some() || host.bound_band != banded {
            host.bind_groups.clear();
            host.bound_weights = batch.weights().is_some();
            host.bound_band = banded;
        }
        let pipelines = self.pipelines()?;
        self.scoped(|| {
            let d = plan.dim;
            for (a, buffer) in host.features.iter().enumerate() {
                let (start, count) = plan.chunk(a);
                let data = &batch.features()[start * d..(start + count) * d];
                self.queue
                    .write_buffer(buffer, 0, bytemuck::cast_slice(data));
            }
            self.queue
                .write_buffer(&host.labels, 0, bytemuck::cast_slice(batch.labels()));
            self.queue
                .write_buffer(&host.preds, 0, bytemuck::cast_slice(batch.preds()));
            if let Some(w) = batch.weights() {
                self.queue
                    .write_buffer(&host.weights, 0, bytemuck::cast_slice(w));
            }
            if let Phase::Backward(_, outcomes) = &phase {
                // Every row's outcome, and the factor and anchor count of the
                // whole batch, where the forward kernels would have left them.
                let (words, totals) = gpu_outcomes(&core.config, outcomes);
                self.queue
                    .write_buffer(&ws.outcomes, 0, bytemuck::cast_slice(&words));
                self.queue
                    .write_buffer(&ws.totals, 0, bytemuck::cast_slice(&totals));
            }
            fn whole(b: &wgpu::Buffer) -> BufferBinding<'_> {
                b.as_entire_buffer_binding()
            }
            let sources = Sources {
                features: host.features.iter().map(|b| whole(b)).collect(),
                grad: host.grad.iter().map(|b| whole(b)).collect(),
                labels: whole(&host.labels),
                preds: whole(&host.preds),
                weights: batch.weights().map(|_| whole(&host.weights)),
            };
            let mut encoder = self
                .device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                    label: Some("conr compute"),
                });
            // A phase records fewer dispatches than the cached bind groups serve.
            let mut fresh = Vec::new();
            let groups = match phase {
                Phase::Whole => &mut host.bind_groups,
                _ => &mut fresh,
            };
            record(
                pipelines,
                &self.device,
                &self.queue,
                &mut encoder,
                ws,
                &sources,
                base,
                banded,
                &steps,
                groups,
            );
            if steps.backward {
                for (grad, readback) in host.grad.iter().zip(&host.grad_readback) {
                    encoder.copy_buffer_to_buffer(grad, 0, readback, 0, grad.size());
                }
            }
            if steps.forward {
                let stats_bytes = rows as u64 * 32;
                encoder.copy_buffer_to_buffer(&ws.stats, 0, &host.stats_readback, 0, stats_bytes);
                encoder.copy_buffer_to_buffer(&ws.totals, 0, &host.stats_readback, stats_bytes, 16);
            }
            self.queue.submit([encoder.finish()]);
        })?;

        let mut readbacks: Vec<&wgpu::Buffer> = Vec::new();
        if steps.backward {
            readbacks.extend(&host.grad_readback);
        }
        if steps.forward {
            readbacks.push(&host.stats_readback);
        }
        let (sender, receiver) = mpsc::channel();
        for buffer in &readbacks {
            let sender = sender.clone();
            buffer.map_async(wgpu::MapMode::Read, .., move |r| {
                let _ = sender.send(r);
            });
        }
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| GpuError::Readback(e.to_string()))?;
        self.check_lost()?;
        for _ in 0..readbacks.len() {
            let result = receiver
                .recv()
                .map_err(|e| GpuError::Readback(e.to_string()))?;
            result.map_err(|e| GpuError::Readback(e.to_string()))?;
        }
        let mut read = Readback {
            grad: Vec::new(),
            words: Vec::new(),
        };
        if steps.backward {
            read.grad.reserve(rows * plan.dim);
            for buffer in &host.grad_readback {
                let view = buffer
                    .get_mapped_range(..)
                    .map_err(|e| GpuError::Readback(e.to_string()))?;
                read.grad
                    .extend_from_slice(bytemuck::cast_slice::<u8, f32>(&view));
            }
        }
        if steps.forward {
            let view = host
                .stats_readback
                .get_mapped_range(..)
                .map_err(|e| GpuError::Readback(e.to_string()))?;
            read.words = bytemuck::cast_slice::<u8, u32>(&view).to_vec();
        }
        for buffer in readbacks {
            buffer.unmap();
        }
        Ok(read)
    }

    /// The checks [`GpuConr::record`] makes before it looks at the buffers:
    /// a valid config, a batch with rows and widths, and a shape this device
    /// can hold. For callers that must refuse a batch before they can hand
    /// over its buffers (a framework that records later, lazily).
    pub fn check_record(&self, shape: Shape, config: &Config) -> Result<(), GpuError> {
        self.record_plan(shape, config).map(|_| ())
    }

    /// [`GpuConr::check_record`]'s checks, and what they yield for `record`.
    fn record_plan(
        &self,
        shape: Shape,
        config: &Config,
    ) -> Result<(conr_core::Params<f32>, Plan), GpuError> {
        self.check_lost()?;
        let params = config.params::<f32>()?;
        if shape.rows == 0 {
            return Err(conr_core::Error::EmptyBatch.into());
        }
        if shape.dim == 0 || shape.label_dim == 0 {
            let what = if shape.dim == 0 { "features" } else { "labels" };
            return Err(conr_core::Error::ZeroWidth { what }.into());
        }
        Ok((params, self.chunk_plan(shape)?))
    }

    /// Records ConR's forward and backward passes into `encoder`, on
    /// caller-owned buffers, with no copy of the features (the M×L labels,
    /// predictions and weights are copied on the device). After the caller
    /// submits the encoder, `buffers.grad_features` holds ∂L/∂features and
    /// `buffers.loss` holds the loss.
    ///
    /// The uniform blocks are written through `queue.write_buffer`: submit the
    /// encoder before recording another call on this `GpuConr`. The data in the
    /// buffers is not validated (NaNs give NaNs); [`GpuConr::compute`] validates.
    pub fn record(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        shape: Shape,
        buffers: GpuBuffers<'_>,
        config: &Config,
    ) -> Result<(), GpuError> {
        use wgpu::BufferUsages as U;
        // What the device cannot hold is refused before the buffers are looked at.
        let (params, plan) = self.record_plan(shape, config)?;
        let (m, d, l) = (shape.rows as u64, shape.dim as u64, shape.label_dim as u64);
        let align = u64::from(self.device.limits().min_storage_buffer_offset_alignment);
        check("features", buffers.features, m * d * 4, U::STORAGE, align)?;
        let copy_align = wgpu::COPY_BUFFER_ALIGNMENT;
        check("labels", buffers.labels, m * l * 4, U::COPY_SRC, copy_align)?;
        check("preds", buffers.preds, m * l * 4, U::COPY_SRC, copy_align)?;
        if let Some(w) = buffers.weights {
            check("weights", w, m * 4, U::COPY_SRC, copy_align)?;
        }
        check(
            "grad_features",
            buffers.grad_features,
            m * d * 4,
            U::STORAGE | U::COPY_DST,
            align,
        )?;
        check("loss", buffers.loss, 4, U::COPY_DST, copy_align)?;
        let mut cache = self
            .cache
            .lock()
            .map_err(|_| GpuError::Device("a previous call panicked".into()))?;
        self.workspace(&mut cache, plan)?;
        let Some(ws) = cache.workspace.as_ref() else {
            return Err(GpuError::Device("the working buffers are missing".into()));
        };
        fn whole(buffer: &wgpu::Buffer, bytes: u64) -> BufferBinding<'_> {
            BufferBinding {
                buffer,
                offset: 0,
                size: wgpu::BufferSize::new(bytes),
            }
        }
        let base = Params::new(
            &params,
            m as u32,
            d as u32,
            l as u32,
            buffers.weights.is_some(),
        );
        let pipelines = self.pipelines()?;
        let result = self.scoped(|| {
            let [labels, preds, weights] = &ws.copied;
            let mut copy = |from: wgpu::BufferSlice<'_>, to: &wgpu::Buffer, bytes: u64| {
                encoder.copy_buffer_to_buffer(from.buffer(), from.offset(), to, 0, bytes);
            };
            copy(buffers.labels, labels, m * l * 4);
            copy(buffers.preds, preds, m * l * 4);
            if let Some(w) = buffers.weights {
                copy(w, weights, m * 4);
            }
            let (f, g) = (buffers.features, buffers.grad_features);
            let sources = Sources {
                features: chunked(f.buffer(), f.offset(), &plan),
                grad: chunked(g.buffer(), g.offset(), &plan),
                labels: whole(labels, m * l * 4),
                preds: whole(preds, m * l * 4),
                weights: buffers.weights.map(|_| whole(weights, m * 4)),
            };
            record(
                pipelines,
                &self.device,
                &self.queue,
                encoder,
                ws,
                &sources,
                base,
                // The record path has no host copy of the labels to plan with.
                false,
                &Steps::whole(shape.rows),
                // Caller-owned buffers may differ on every call: no cache.
                &mut Vec::new(),
            );
            let loss = buffers.loss;
            encoder.copy_buffer_to_buffer(&ws.totals, 0, loss.buffer(), loss.offset(), 4);
        });
        if result.is_err() {
            *cache = crate::Cache::default();
        }
        result
    }
}
