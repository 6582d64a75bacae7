//! The host-slice path: upload a batch, run a call's passes, read the
//! results back.

use std::sync::mpsc;
use std::time::Instant;

use conr_core::band::{BandPlan, Side};
use conr_core::{Batch, Config, Error, Params, shard};
use wgpu::BufferBinding;

use crate::layout::{DeviceOutcome, DeviceStats, Totals, Uniforms};
use crate::plan::{CallPlan, Phase, Source};
use crate::profile::{Stamps, Timer};
use crate::record::{Sources, record_passes};
use crate::workspace::{BandBuffers, HostBuffers, Workspace, bytes_of};
use crate::{Cache, GpuConr};

/// What a call reads back: the gradient (M×D, after phase 2) and each row's
/// statistics and the totals (after phase 1).
pub(crate) struct Readback {
    pub grad: Vec<f32>,
    pub stats: Vec<DeviceStats>,
    pub totals: Totals,
}

impl GpuConr {
    /// Takes the cached workspace if it serves `plan`, or builds a new one.
    pub(crate) fn workspace<'c>(
        &self,
        cache: &'c mut Cache,
        plan: &CallPlan,
    ) -> Result<&'c Workspace, Error> {
        if !cache.workspace.as_ref().is_some_and(|w| w.serves(plan)) {
            cache.workspace = None;
            cache.host = None;
            cache.workspace = Some(self.scoped(|| Workspace::new(&self.device, plan))?);
        }
        cache
            .workspace
            .as_ref()
            .ok_or_else(|| Error::Device("the working buffers are missing".into()))
    }

    /// Sorts the batch for both band sides on the host and writes the orders
    /// and each 64-row block's column run into `band`.
    fn write_band(
        &self,
        band: &BandBuffers,
        batch: &Batch<'_, f32>,
        params: &Params<f32>,
    ) -> Result<(), Error> {
        let rows = batch.rows();
        let tile = crate::TILE as usize;
        for (i, side) in [Side::Positives, Side::Negatives].into_iter().enumerate() {
            let (mut order, mut keys) = (vec![0u32; rows], vec![0.0f32; rows]);
            let Some(plan) = BandPlan::new(batch, params, side, &mut order, &mut keys)? else {
                return Err(Error::Device(
                    "a band plan for a metric without a band".into(),
                ));
            };
            let ranges: Vec<[u32; 2]> = plan
                .block_columns(tile)
                .map(|cols| [cols.start as u32, cols.end as u32])
                .collect();
            let (order, runs) = (band.order_of(i), band.runs_of(i));
            self.queue.write_buffer(
                order.buffer,
                order.offset,
                bytemuck::cast_slice(plan.order()),
            );
            self.queue
                .write_buffer(runs.buffer, runs.offset, bytemuck::cast_slice(&ranges));
        }
        Ok(())
    }

    /// Checks, plans, takes the lock, and runs `phase` on host slices; a
    /// failure drops the cached buffers, which may be in any state after it.
    pub(crate) fn run(
        &self,
        batch: &Batch<'_, f32>,
        config: &Config,
        phase: Phase<'_>,
    ) -> Result<Readback, Error> {
        let started = Instant::now();
        self.check_lost()?;
        let params = batch.check(config)?;
        let shape = batch.shape();
        let plan = self.call_plan(shape, config, &phase, Source::Host)?;
        let outcomes = match &phase {
            Phase::Backward(_, outcomes) => Some(outcomes.len()),
            _ => None,
        };
        shard::check_phase(shape.rows, &plan.steps.rows, outcomes)?;
        let mut cache = self
            .cache
            .lock()
            .map_err(|_| Error::Device("a previous call panicked".into()))?;
        let result = self.run_locked(&mut cache, batch, &params, &plan, &phase, started);
        if result.is_err() {
            *cache = Cache::default();
        }
        result
    }

    /// One call on host slices, under the lock: the buffers, the uploads,
    /// the recorded passes, the results read back.
    fn run_locked(
        &self,
        cache: &mut Cache,
        batch: &Batch<'_, f32>,
        params: &Params<f32>,
        plan: &CallPlan,
        phase: &Phase<'_>,
        started: Instant,
    ) -> Result<Readback, Error> {
        let profiling = self.prepare(cache, plan)?;
        let Cache {
            workspace,
            host,
            timer,
        } = cache;
        let (Some(ws), Some(host)) = (workspace.as_ref(), host.as_mut()) else {
            return Err(Error::Device("the working buffers are missing".into()));
        };
        let mut stamps = match (profiling, timer.as_ref()) {
            (true, Some(timer)) => Some(Stamps::new(timer, started)),
            _ => None,
        };
        if let (true, Some(band)) = (plan.band, &ws.band) {
            self.write_band(band, batch, params)?;
        }
        let has_eta = batch.etas().is_some();
        if host.bound_eta != has_eta || host.bound_band != plan.band {
            host.bind_groups.clear();
            host.bound_eta = has_eta;
            host.bound_band = plan.band;
        }
        let recorded_s = self.scoped(|| {
            // Under the lock and submitted at once: no other call's commands
            // come between these writes and this submission.
            self.upload(ws, host, batch, params, plan, phase);
            self.submit(ws, host, batch, plan, phase, stamps.as_mut())
        })??;
        let submitted = Instant::now();
        self.read_results(
            host,
            timer.as_ref(),
            plan,
            stamps.as_ref(),
            recorded_s,
            submitted,
        )
    }

    /// The workspace, the host buffers and (when profiling) the timer, each
    /// built if the cache lacks it; whether this call is profiled.
    fn prepare(&self, cache: &mut Cache, plan: &CallPlan) -> Result<bool, Error> {
        self.workspace(cache, plan)?;
        if cache.host.is_none() {
            cache.host = Some(self.scoped(|| HostBuffers::new(&self.device, plan.chunking))?);
        }
        let profiling = self.profiling()?.is_some();
        if profiling && cache.timer.is_none() {
            cache.timer = Some(self.scoped(|| Timer::new(&self.device))?);
        }
        Ok(profiling)
    }

    /// Writes the call's uniforms and inputs; for a backward phase, every
    /// row's outcome and the batch's factor and anchor count, where the
    /// forward kernels would have left them.
    fn upload(
        &self,
        ws: &Workspace,
        host: &HostBuffers,
        batch: &Batch<'_, f32>,
        params: &Params<f32>,
        plan: &CallPlan,
        phase: &Phase<'_>,
    ) {
        let has_eta = batch.etas().is_some();
        let uniforms = plan.uniforms(Uniforms::new(params, batch.shape(), has_eta));
        for (buffer, block) in ws.uniforms.iter().zip(&uniforms) {
            self.queue
                .write_buffer(buffer, 0, bytemuck::bytes_of(block));
        }
        let chunking = plan.chunking;
        let d = chunking.dim;
        for (a, buffer) in host.features.iter().enumerate() {
            let (start, count) = chunking.chunk(a);
            let data = &batch.features()[start * d..(start + count) * d];
            self.queue
                .write_buffer(buffer, 0, bytemuck::cast_slice(data));
        }
        self.queue
            .write_buffer(&host.labels, 0, bytemuck::cast_slice(batch.labels()));
        self.queue
            .write_buffer(&host.preds, 0, bytemuck::cast_slice(batch.preds()));
        if let Some(w) = batch.etas() {
            self.queue
                .write_buffer(&host.eta, 0, bytemuck::cast_slice(w));
        }
        if let Phase::Backward(_, outcomes) = phase {
            let words: Vec<DeviceOutcome> = outcomes.iter().map(DeviceOutcome::of).collect();
            let totals = Totals {
                loss: 0.0,
                factor: shard::reduction::<f32>(&params.config, outcomes),
                anchors: outcomes.iter().filter(|o| o.anchor).count() as u32,
                _pad: 0,
            };
            self.queue
                .write_buffer(&ws.outcomes, 0, bytemuck::cast_slice(&words));
            self.queue
                .write_buffer(&ws.totals, 0, bytemuck::bytes_of(&totals));
        }
    }

    /// Records the call's passes and the copies into the readback buffers,
    /// and submits them; the seconds spent recording, when profiled.
    fn submit(
        &self,
        ws: &Workspace,
        host: &mut HostBuffers,
        batch: &Batch<'_, f32>,
        plan: &CallPlan,
        phase: &Phase<'_>,
        mut stamps: Option<&mut Stamps>,
    ) -> Result<f64, Error> {
        fn whole(b: &wgpu::Buffer) -> BufferBinding<'_> {
            b.as_entire_buffer_binding()
        }
        let sources = Sources {
            features: host.features.iter().map(whole).collect(),
            grad: host.grad.iter().map(whole).collect(),
            labels: whole(&host.labels),
            preds: whole(&host.preds),
            eta: batch.etas().map(|_| whole(&host.eta)),
            counts: None,
        };
        let mut encoder = self
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("conr compute"),
            });
        // A row phase records fewer dispatches than the cached bind groups serve.
        let mut fresh = Vec::new();
        let groups = match phase {
            Phase::Whole => &mut host.bind_groups,
            _ => &mut fresh,
        };
        record_passes(
            self.pipelines()?,
            &self.device,
            &mut encoder,
            ws,
            plan,
            &sources,
            &ws.uniforms,
            groups,
            stamps.as_deref_mut(),
        )?;
        if plan.steps.backward {
            for (grad, readback) in host.grad.iter().zip(&host.grad_readback) {
                encoder.copy_buffer_to_buffer(grad, 0, readback, 0, grad.size());
            }
        }
        if plan.steps.forward {
            let stats = bytes_of::<DeviceStats>(plan.chunking.rows);
            let totals = bytes_of::<Totals>(1);
            encoder.copy_buffer_to_buffer(&ws.stats, 0, &host.stats_readback, 0, stats);
            encoder.copy_buffer_to_buffer(&ws.totals, 0, &host.stats_readback, stats, totals);
        }
        let recorded_s = stamps.map_or(0.0, |stamps| stamps.finish(&mut encoder));
        self.queue.submit([encoder.finish()]);
        Ok(recorded_s)
    }

    /// Waits for the call, maps its readback buffers and copies the results
    /// out; adds the call's timings to the profile when it is profiled.
    fn read_results(
        &self,
        host: &HostBuffers,
        timer: Option<&Timer>,
        plan: &CallPlan,
        stamps: Option<&Stamps>,
        recorded_s: f64,
        submitted: Instant,
    ) -> Result<Readback, Error> {
        let steps = &plan.steps;
        let timer = timer.filter(|_| stamps.is_some());
        let mut readbacks: Vec<&wgpu::Buffer> = Vec::new();
        if steps.backward {
            readbacks.extend(&host.grad_readback);
        }
        if steps.forward {
            readbacks.push(&host.stats_readback);
        }
        if let Some(timer) = timer {
            readbacks.push(&timer.readback);
        }
        self.map_all(&readbacks)?;
        let mapped_at = Instant::now();
        let mapped = |buffer: &wgpu::Buffer| {
            buffer
                .get_mapped_range(..)
                .map_err(|e| Error::Device(format!("reading results back: {e}")))
        };
        let mut read = Readback {
            grad: Vec::new(),
            stats: Vec::new(),
            totals: Totals {
                loss: 0.0,
                factor: 0.0,
                anchors: 0,
                _pad: 0,
            },
        };
        if steps.backward {
            read.grad.reserve(plan.chunking.rows * plan.chunking.dim);
            for buffer in &host.grad_readback {
                read.grad
                    .extend_from_slice(bytemuck::cast_slice::<u8, f32>(&mapped(buffer)?));
            }
        }
        if steps.forward {
            let view = mapped(&host.stats_readback)?;
            let rows = plan.chunking.rows;
            let (stats, totals) = view.split_at(bytes_of::<DeviceStats>(rows) as usize);
            read.stats = bytemuck::pod_collect_to_vec(stats);
            read.totals = bytemuck::pod_read_unaligned(totals);
        }
        if let (Some(stamps), Some(timer)) = (stamps, timer) {
            let ticks: Vec<u64> = bytemuck::pod_collect_to_vec(&mapped(&timer.readback)?);
            let host = [
                recorded_s,
                (mapped_at - submitted).as_secs_f64(),
                mapped_at.elapsed().as_secs_f64(),
            ];
            let period = self.queue.get_timestamp_period();
            if let Some(profile) = self.profiling()?.as_mut() {
                stamps.add_to(profile, &ticks, period, host)?;
            }
        }
        for buffer in readbacks {
            buffer.unmap();
        }
        Ok(read)
    }

    /// Maps every buffer of `buffers` for reading and waits until all are.
    fn map_all(&self, buffers: &[&wgpu::Buffer]) -> Result<(), Error> {
        let (sender, receiver) = mpsc::channel();
        for buffer in buffers {
            let sender = sender.clone();
            buffer.map_async(wgpu::MapMode::Read, .., move |r| {
                let _ = sender.send(r);
            });
        }
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| Error::Device(format!("waiting for the GPU: {e}")))?;
        self.check_lost()?;
        for _ in buffers {
            let result = receiver
                .recv()
                .map_err(|e| Error::Device(format!("reading results back: {e}")))?;
            result.map_err(|e| Error::Device(format!("reading results back: {e}")))?;
        }
        Ok(())
    }
}
