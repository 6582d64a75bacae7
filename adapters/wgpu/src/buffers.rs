//! The caller-owned-buffer path: [`GpuConr::record`] records a call into the
//! caller's encoder on slices of the caller's buffers.

use conr_core::band::TilePlan;
use conr_core::{Config, Error, PlanReport, Shape};
use wgpu::BufferBinding;
use wgpu::util::DeviceExt;

use crate::layout::Uniforms;
use crate::plan::{CallPlan, Phase, Source};
use crate::record::{Sources, record_passes};
use crate::workspace::bytes_of;
use crate::{Cache, GpuConr};

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
    /// M pushing powers `eta` (the per-sample weights), or `None` for all
    /// ones; usage `COPY_SRC`.
    pub eta: Option<wgpu::BufferSlice<'a>>,
    /// Receives ∂L/∂features (M×D); usage `STORAGE | COPY_DST`.
    pub grad_features: wgpu::BufferSlice<'a>,
    /// Receives the loss as one f32 at the slice's start; usage `COPY_DST`.
    pub loss: wgpu::BufferSlice<'a>,
    /// Receives the device's check of the values as one u32 (a
    /// [`crate::Status`]), or `None`; usage `COPY_DST`.
    pub status: Option<wgpu::BufferSlice<'a>>,
    /// Receives each row's positive and negative counts |P_j| and |Q_j| as
    /// M × `[u32; 2]` (row j is an anchor where |Q_j| > 0), or `None`; usage
    /// `STORAGE`, at a storage offset like the features.
    pub counts: Option<wgpu::BufferSlice<'a>>,
    /// Receives the number of 64×64 tiles the call's tile kernels visit, as
    /// one u32: both band sides together where the call takes the band
    /// (counted on the device), every tile otherwise; or `None`. See
    /// [`GpuConr::record_report`]. Usage `COPY_DST`.
    pub tiles: Option<wgpu::BufferSlice<'a>>,
}

fn check(
    what: &'static str,
    slice: wgpu::BufferSlice<'_>,
    needed: u64,
    usage: wgpu::BufferUsages,
    alignment: u64,
) -> Result<(), Error> {
    let bad = |why: String| Err(Error::BadBuffer { what, why });
    if slice.size() < needed {
        return bad(format!("has {} bytes, needs {needed}", slice.size()));
    }
    if !slice.buffer().usage().contains(usage) {
        return bad(format!(
            "needs usage {usage:?}, has {:?}",
            slice.buffer().usage()
        ));
    }
    if slice.offset() % alignment != 0 {
        return bad(format!(
            "starts at byte {}, not a multiple of {alignment}",
            slice.offset()
        ));
    }
    Ok(())
}

fn chunked<'a>(slice: wgpu::BufferSlice<'a>, plan: &CallPlan) -> Vec<BufferBinding<'a>> {
    let chunking = &plan.chunking;
    (0..chunking.chunks())
        .map(|a| BufferBinding {
            buffer: slice.buffer(),
            offset: slice.offset() + chunking.chunk_offset(a),
            size: wgpu::BufferSize::new(chunking.chunk_bytes(a)),
        })
        .collect()
}

impl GpuConr {
    /// The checks [`GpuConr::record`] makes before it looks at the buffers:
    /// the shape's and the config's rules, and a shape this device can hold.
    /// For callers that must refuse a batch before they can hand over its
    /// buffers (a framework that records later, lazily).
    pub fn check_record(&self, shape: Shape, config: &Config) -> Result<(), Error> {
        self.record_plan(shape, config).map(|_| ())
    }

    /// Whether [`GpuConr::record`] takes the band plan for a batch of
    /// `shape` with `config` (building the plan on the device), after
    /// [`GpuConr::check_record`]'s checks.
    pub fn record_uses_band(&self, shape: Shape, config: &Config) -> Result<bool, Error> {
        Ok(self.record_plan(shape, config)?.1.band)
    }

    /// What a recorded call did, from the tile count it wrote into
    /// [`GpuBuffers::tiles`]: the band and the share of the 64×64 tiles its
    /// two sides visited, or the dense plan.
    pub fn record_report(
        &self,
        shape: Shape,
        config: &Config,
        tiles: u32,
    ) -> Result<PlanReport, Error> {
        if !self.record_uses_band(shape, config)? {
            return Ok(PlanReport::DENSE);
        }
        let blocks = shape.rows.div_ceil(crate::TILE as usize).max(1);
        Ok(PlanReport {
            tiles: TilePlan::Band,
            tile_share: f64::from(tiles) / (blocks * blocks) as f64,
        })
    }

    /// [`GpuConr::check_record`]'s checks, and what they yield for `record`.
    fn record_plan(
        &self,
        shape: Shape,
        config: &Config,
    ) -> Result<(conr_core::Params<f32>, CallPlan), Error> {
        self.check_lost()?;
        shape.validate()?;
        let params = config.params::<f32>()?;
        Ok((
            params,
            self.call_plan(shape, config, &Phase::Whole, Source::Device)?,
        ))
    }

    /// Records ConR's forward and backward passes into `encoder`, on
    /// caller-owned buffers, with no copy of the features (the M×L labels,
    /// predictions and eta are copied on the device). After the caller
    /// submits the encoder, `buffers.grad_features` holds ∂L/∂features and
    /// `buffers.loss` holds the loss.
    ///
    /// Each recorded call carries its own uniform blocks, written into fresh
    /// buffers here rather than through the queue, so calls recorded into one
    /// encoder, or into several submitted in any order, and host calls from
    /// other threads in between, each compute with their own shape and
    /// config. The working buffers are shared; every call writes each of
    /// them before it reads it, and the queue runs one call's commands after
    /// another.
    ///
    /// The values are checked on the device against every rule of
    /// [`conr_core::rules`]: where one breaks, the loss and the gradient are
    /// NaN, and `buffers.status` (if given) receives the rule and the row
    /// ([`crate::Status::error`] names them as the host's checks would).
    pub fn record(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        shape: Shape,
        buffers: GpuBuffers<'_>,
        config: &Config,
    ) -> Result<(), Error> {
        let (plan, uniforms) = self.prepare_record(shape, &buffers, config)?;
        self.record_planned(encoder, &plan, buffers, &uniforms)
    }

    /// `record`'s checks of the shape, the config and the buffers, and the
    /// call's plan and own uniform blocks.
    pub(crate) fn prepare_record(
        &self,
        shape: Shape,
        buffers: &GpuBuffers<'_>,
        config: &Config,
    ) -> Result<(CallPlan, Vec<wgpu::Buffer>), Error> {
        use wgpu::BufferUsages as U;
        // What the device cannot hold is refused before the buffers are looked at.
        let (params, plan) = self.record_plan(shape, config)?;
        let (m, d, l) = (shape.rows, shape.dim, shape.label_dim);
        let align = u64::from(self.device.limits().min_storage_buffer_offset_alignment);
        let copy_align = wgpu::COPY_BUFFER_ALIGNMENT;
        let features = bytes_of::<f32>(m * d);
        let labels = bytes_of::<f32>(m * l);
        check("features", buffers.features, features, U::STORAGE, align)?;
        check("labels", buffers.labels, labels, U::COPY_SRC, copy_align)?;
        check("preds", buffers.preds, labels, U::COPY_SRC, copy_align)?;
        if let Some(w) = buffers.eta {
            check("eta", w, bytes_of::<f32>(m), U::COPY_SRC, copy_align)?;
        }
        let grad_usage = U::STORAGE | U::COPY_DST;
        check(
            "grad_features",
            buffers.grad_features,
            features,
            grad_usage,
            align,
        )?;
        check("loss", buffers.loss, 4, U::COPY_DST, copy_align)?;
        if let Some(status) = buffers.status {
            check("status", status, 4, U::COPY_DST, copy_align)?;
        }
        if let Some(counts) = buffers.counts {
            let bytes = bytes_of::<[u32; 2]>(m);
            check("counts", counts, bytes, U::STORAGE, align)?;
        }
        if let Some(tiles) = buffers.tiles {
            check("tiles", tiles, 4, U::COPY_DST, copy_align)?;
        }
        // This call's own uniform blocks, filled at creation.
        let blocks = plan.uniforms(Uniforms::new(&params, shape, buffers.eta.is_some()));
        let uniforms: Vec<wgpu::Buffer> = blocks
            .iter()
            .map(|block| {
                self.device
                    .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                        label: Some("conr recorded uniforms"),
                        contents: bytemuck::bytes_of(block),
                        usage: U::UNIFORM,
                    })
            })
            .collect();
        Ok((plan, uniforms))
    }

    /// Records a prepared call under the lock.
    pub(crate) fn record_planned(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        plan: &CallPlan,
        buffers: GpuBuffers<'_>,
        uniforms: &[wgpu::Buffer],
    ) -> Result<(), Error> {
        let mut cache = self
            .cache
            .lock()
            .map_err(|_| Error::Device("a previous call panicked".into()))?;
        let result = self.record_locked(&mut cache, encoder, plan, buffers, uniforms);
        if result.is_err() {
            *cache = Cache::default();
        }
        result
    }

    pub(crate) fn record_locked(
        &self,
        cache: &mut Cache,
        encoder: &mut wgpu::CommandEncoder,
        plan: &CallPlan,
        buffers: GpuBuffers<'_>,
        uniforms: &[wgpu::Buffer],
    ) -> Result<(), Error> {
        let ws = self.workspace(cache, plan)?;
        let pipelines = self.pipelines()?;
        let chunking = plan.chunking;
        let (m, l) = (chunking.rows, chunking.label_dim);
        fn whole(buffer: &wgpu::Buffer, bytes: u64) -> BufferBinding<'_> {
            BufferBinding {
                buffer,
                offset: 0,
                size: wgpu::BufferSize::new(bytes),
            }
        }
        self.scoped(|| {
            let [labels, preds, eta] = &ws.copied;
            let mut copy = |from: wgpu::BufferSlice<'_>, to: &wgpu::Buffer, bytes: u64| {
                encoder.copy_buffer_to_buffer(from.buffer(), from.offset(), to, 0, bytes);
            };
            copy(buffers.labels, labels, bytes_of::<f32>(m * l));
            copy(buffers.preds, preds, bytes_of::<f32>(m * l));
            if let Some(w) = buffers.eta {
                copy(w, eta, bytes_of::<f32>(m));
            }
            let sources = Sources {
                features: chunked(buffers.features, plan),
                grad: chunked(buffers.grad_features, plan),
                labels: whole(labels, bytes_of::<f32>(m * l)),
                preds: whole(preds, bytes_of::<f32>(m * l)),
                eta: buffers.eta.map(|_| whole(eta, bytes_of::<f32>(m))),
                counts: buffers.counts.map(|c| BufferBinding {
                    buffer: c.buffer(),
                    offset: c.offset(),
                    size: wgpu::BufferSize::new(bytes_of::<[u32; 2]>(m)),
                }),
            };
            // Caller-owned buffers may differ on every call: no cached bind groups.
            record_passes(
                pipelines,
                &self.device,
                encoder,
                ws,
                plan,
                &sources,
                uniforms,
                &mut Vec::new(),
                None,
            )?;
            let loss = buffers.loss;
            encoder.copy_buffer_to_buffer(&ws.totals, 0, loss.buffer(), loss.offset(), 4);
            if let Some(status) = buffers.status {
                encoder.copy_buffer_to_buffer(&ws.status, 0, status.buffer(), status.offset(), 4);
            }
            if let Some(tiles) = buffers.tiles {
                let (to, at) = (tiles.buffer(), tiles.offset());
                match (&ws.band, plan.device_plan) {
                    (Some(band), true) => encoder.copy_buffer_to_buffer(&band.tiles, 0, to, at, 4),
                    _ => {
                        let blocks = m.div_ceil(crate::TILE as usize);
                        let every = u32::try_from(blocks * blocks).unwrap_or(u32::MAX);
                        let count =
                            self.device
                                .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                                    label: Some("conr dense tiles"),
                                    contents: bytemuck::bytes_of(&every),
                                    usage: wgpu::BufferUsages::COPY_SRC,
                                });
                        encoder.copy_buffer_to_buffer(&count, 0, to, at, 4);
                    }
                }
            }
            Ok(())
        })?
    }
}
