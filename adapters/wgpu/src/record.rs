//! The recording of one call's passes into a command encoder, from its
//! [`CallPlan`]: which kernels run over which chunks or band sides, each
//! bound to the buffers its binding list names.

use conr_core::Error;
use wgpu::{BindingResource, BufferBinding};

use crate::kernels::{Binding, Kernel, MixedKernels, Pipelines};
use crate::plan::CallPlan;
use crate::profile::Stamps;
use crate::workspace::{BandBuffers, Workspace};
use crate::{LINEAR_WORKGROUP, TILE};

/// The call's input and output buffers: the caller's, or the host API's.
pub(crate) struct Sources<'a> {
    /// Features, one binding per chunk.
    pub features: Vec<BufferBinding<'a>>,
    /// The gradient output, one binding per chunk (it holds ∂L/∂z until the last kernel).
    pub grad: Vec<BufferBinding<'a>>,
    pub labels: BufferBinding<'a>,
    pub preds: BufferBinding<'a>,
    /// `None`: every eta is 1.
    pub eta: Option<BufferBinding<'a>>,
    /// Receives each row's positive and negative counts, or `None`.
    pub counts: Option<BufferBinding<'a>>,
}

/// Which rows and columns a tile dispatch visits: every tile of a chunk
/// pair, or one side of the band plan (conr_core::band); or, for the
/// kernels that build the plan on the device, their step of the sort.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Pass {
    Dense,
    Positives,
    Negatives,
    Plan(usize),
}

/// One dispatch's place: row chunk, column chunk, pass.
type At = (usize, usize, Pass);

/// The buffers of one call, as the bind groups see them.
struct Bindings<'a, 'b> {
    ws: &'a Workspace,
    plan: &'a CallPlan,
    src: &'a Sources<'b>,
    /// The call's uniform blocks, in the order of [`CallPlan::uniforms`].
    uniforms: &'a [wgpu::Buffer],
}

impl<'a> Bindings<'a, '_> {
    /// What `binding` is for a dispatch at `(a, b, pass)`.
    fn resource(&self, binding: Binding, (a, b, pass): At) -> Result<BindingResource<'a>, Error> {
        let (ws, src) = (self.ws, self.src);
        let whole = wgpu::Buffer::as_entire_binding;
        let side = match pass {
            Pass::Positives => Some(0),
            Pass::Negatives => Some(1),
            Pass::Dense | Pass::Plan(_) => None,
        };
        let band = || {
            ws.band
                .as_ref()
                .ok_or_else(|| Error::Device("a band kernel without band buffers".into()))
        };
        let mixed = || {
            ws.mixed
                .as_ref()
                .ok_or_else(|| Error::Device("a mixed kernel without mixed buffers".into()))
        };
        let chunks = self.plan.chunking.chunks();
        Ok(match binding {
            Binding::Uniforms => {
                let slot = if self.plan.band {
                    side.map_or(0, |s| s + 1)
                } else {
                    a * chunks + b
                };
                whole(&self.uniforms[slot])
            }
            Binding::Features => BindingResource::Buffer(src.features[a].clone()),
            Binding::ZOut | Binding::ZRows => whole(&ws.z[a]),
            Binding::ZCols => whole(&ws.z[b]),
            Binding::Labels => BindingResource::Buffer(src.labels.clone()),
            Binding::Preds => BindingResource::Buffer(src.preds.clone()),
            Binding::Eta => match &src.eta {
                Some(w) => BindingResource::Buffer(w.clone()),
                // Never read: the uniforms say there is no eta.
                None => whole(&ws.no_eta),
            },
            Binding::Lengths => whole(&ws.lengths),
            Binding::Stats => whole(&ws.stats),
            Binding::Outcomes => whole(&ws.outcomes),
            Binding::Totals => whole(&ws.totals),
            Binding::Status => whole(&ws.status),
            Binding::Dz => BindingResource::Buffer(src.grad[a].clone()),
            // backward's accumulator: the gradient, or the ranges' blocks.
            Binding::DzOut => match &ws.splits {
                Some(s) => whole(&s.dz_part),
                None => BindingResource::Buffer(src.grad[a].clone()),
            },
            // Never read without feature ranges.
            Binding::Logits => match &ws.logits {
                Some(l) => whole(l),
                None => whole(&ws.unused_logits),
            },
            // Never read with one range.
            Binding::DzParts => match &ws.splits {
                Some(s) => whole(&s.dz_part),
                None => whole(&ws.unused),
            },
            // One side's block (the first outside band passes): the kernels
            // size a block by it.
            Binding::Z16 => BindingResource::Buffer(mixed()?.z16_of(Some(side.unwrap_or(0)))),
            Binding::Dz32 => BindingResource::Buffer(mixed()?.dz32_of(side)),
            // Never read with one range.
            Binding::StatsPart => match (&ws.mixed, &ws.splits) {
                (Some(m), _) => whole(&m.stats_part),
                (None, Some(s)) => whole(&s.stats_part),
                (None, None) => whole(&ws.unused_out),
            },
            // Never read in a dense pass.
            Binding::BandOrder => match side {
                Some(s) => BindingResource::Buffer(band()?.order_of(s)),
                None => whole(&ws.unused),
            },
            Binding::BandRanges => match side {
                Some(s) => BindingResource::Buffer(band()?.runs_of(s)),
                None => whole(&ws.unused),
            },
            Binding::PlanKeys => whole(&band()?.keys),
            Binding::PlanOrder => whole(&band()?.order),
            Binding::PlanRuns => whole(&band()?.runs),
            Binding::PlanTiles => whole(&band()?.tiles),
            Binding::PlanPositions => whole(&band()?.positions),
            // Never read without the band.
            Binding::BandPositions => match &ws.band {
                Some(band) if self.plan.band => whole(&band.positions),
                _ => whole(&ws.unused),
            },
            Binding::PlanStep => match pass {
                Pass::Plan(step) => BindingResource::Buffer(band()?.step(step)),
                _ => return Err(Error::Device("a sort step outside the plan".into())),
            },
            Binding::Counts => match &src.counts {
                Some(c) => BindingResource::Buffer(c.clone()),
                None => return Err(Error::Device("counts without a buffer for them".into())),
            },
        })
    }

    fn bind_group(
        &self,
        device: &wgpu::Device,
        kernel: &Kernel,
        at: At,
    ) -> Result<wgpu::BindGroup, Error> {
        let entries = kernel
            .bindings
            .iter()
            .map(|&binding| {
                Ok(wgpu::BindGroupEntry {
                    binding: binding as u32,
                    resource: self.resource(binding, at)?,
                })
            })
            .collect::<Result<Vec<_>, Error>>()?;
        Ok(device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(kernel.name),
            layout: &kernel.layout,
            entries: &entries,
        }))
    }
}

/// Records the passes of `plan` into `encoder`, with `uniforms` holding
/// [`CallPlan::uniforms`] in order.
///
/// `groups` caches the bind groups, one per dispatch in order: pass the same
/// vector while the buffers behind `ws`, `src` and `uniforms` and the plan's
/// band stay the same (the host API's own buffers), and an empty one
/// otherwise. With `stamps`, a timestamp goes before the clears, at the
/// start of the pass and after every dispatch ([`GpuConr::profiled`]).
///
/// [`GpuConr::profiled`]: crate::GpuConr::profiled
#[allow(clippy::too_many_arguments)]
pub(crate) fn record_passes(
    pipelines: &Pipelines,
    device: &wgpu::Device,
    encoder: &mut wgpu::CommandEncoder,
    ws: &Workspace,
    plan: &CallPlan,
    src: &Sources<'_>,
    uniforms: &[wgpu::Buffer],
    groups: &mut Vec<wgpu::BindGroup>,
    stamps: Option<&mut Stamps<'_>>,
) -> Result<(), Error> {
    if let Some(stamps) = &stamps {
        stamps.begin(encoder);
    }
    let device_band = clear_outputs(encoder, ws, plan, src)?;
    let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
        label: Some("conr"),
        timestamp_writes: None,
    });
    if let Some(stamps) = &stamps {
        stamps.begin_pass(&mut pass);
    }
    let mut d = Dispatcher {
        pass,
        device,
        bindings: Bindings {
            ws,
            plan,
            src,
            uniforms,
        },
        groups,
        stamps,
        index: 0,
    };
    let chunking = plan.chunking;
    // The values first: the last kernels turn the outputs to NaN if a rule broke.
    for a in 0..chunking.chunks() {
        let rows = chunking.chunk(a).1;
        d.dispatch(&pipelines.check_values, own_chunk(a), linear(rows), 1)?;
    }
    if let Some(band) = device_band {
        record_band_plan(&mut d, pipelines, band, chunking.rows)?;
    }
    // A call for the plan alone (GpuConr::device_plan).
    if !plan.steps.forward && !plan.steps.backward {
        return Ok(());
    }
    match &pipelines.mixed {
        Some(mixed) => record_mixed(&mut d, pipelines, mixed),
        None => record_f32(&mut d, pipelines),
    }
}

/// Clears what the kernels accumulate into: the gradient, the column
/// ranges' partial ∂L/∂z, the status word, and the device plan's tile
/// count; the band buffers when the plan is built on the device.
fn clear_outputs<'w>(
    encoder: &mut wgpu::CommandEncoder,
    ws: &'w Workspace,
    plan: &CallPlan,
    src: &Sources<'_>,
) -> Result<Option<&'w BandBuffers>, Error> {
    for g in &src.grad {
        encoder.clear_buffer(g.buffer, g.offset, g.size.map(|s| s.get()));
    }
    if let Some(m) = &ws.mixed {
        encoder.clear_buffer(&m.dz32, 0, None);
    }
    if let Some(s) = &ws.splits {
        encoder.clear_buffer(&s.dz_part, 0, None);
    }
    encoder.clear_buffer(&ws.status, 0, None);
    match (&ws.band, plan.device_plan) {
        (Some(band), true) => {
            encoder.clear_buffer(&band.tiles, 0, None);
            Ok(Some(band))
        }
        (None, true) => Err(Error::Device("a device plan without band buffers".into())),
        (_, false) => Ok(None),
    }
}

/// The band plan built on the device, both sides at once (y = 2): the
/// keys, the bitonic sort, each row tile's run of columns.
fn record_band_plan(
    d: &mut Dispatcher<'_, '_>,
    pipelines: &Pipelines,
    band: &BandBuffers,
    rows: usize,
) -> Result<(), Error> {
    let kernels = &pipelines.plan;
    let padded = band.padded;
    let blocks = padded / crate::SORT_BLOCK as usize;
    d.dispatch(&kernels.keys_init, (0, 0, Pass::Plan(0)), linear(padded), 2)?;
    for (i, step) in band.sort.iter().enumerate() {
        let at = (0, 0, Pass::Plan(i));
        if step.k == 0 || step.j == 0 {
            d.dispatch(&kernels.sort_block, at, blocks, 2)?;
        } else {
            d.dispatch(&kernels.sort_step, at, blocks, 2)?;
        }
    }
    d.dispatch(&kernels.runs, (0, 0, Pass::Plan(0)), linear(tiles(rows)), 2)
}

/// The mixed-precision passes. One chunk (Chunking::mixed), both phases (the
/// row phases run in f32): the padded f16 features, the forward pass per
/// (row tile, column range), the ranges merged by finish_rows, then the backward pass into
/// one padded f32 block per range. With the band, the features, the tile
/// passes and their blocks are per side, each in its sorted order.
fn record_mixed(
    d: &mut Dispatcher<'_, '_>,
    pipelines: &Pipelines,
    mixed: &MixedKernels,
) -> Result<(), Error> {
    let (plan, ws) = (d.bindings.plan, d.bindings.ws);
    let chunking = plan.chunking;
    let rows = chunking.rows;
    let sides: &[Pass] = if plan.band {
        &[Pass::Positives, Pass::Negatives]
    } else {
        &[Pass::Dense]
    };
    d.dispatch(&pipelines.normalize, ONCE, linear(rows), 1)?;
    if let (true, Some(band)) = (plan.band, &ws.band) {
        let at = (0, 0, Pass::Plan(0));
        d.dispatch(&pipelines.plan.positions, at, linear(band.padded), 2)?;
    }
    for &side in sides {
        let half_rows = linear(chunking.padded_rows());
        d.dispatch(&mixed.to_half, (0, 0, side), half_rows, 1)?;
    }
    for &side in sides {
        let at = (0, 0, side);
        d.dispatch(&mixed.row_stats, at, tiles(rows), chunking.splits)?;
    }
    d.dispatch(&pipelines.finish_rows, ONCE, linear(rows), 1)?;
    d.dispatch(&pipelines.reduce_loss, ONCE, 1, 1)?;
    for &side in sides {
        let at = (0, 0, side);
        d.dispatch(&mixed.backward, at, tiles(rows), chunking.splits)?;
    }
    d.dispatch(&mixed.normalize_backward, ONCE, linear(rows), 1)?;
    if d.bindings.src.counts.is_some() {
        d.dispatch(&pipelines.export_counts, ONCE, linear(rows), 1)?;
    }
    Ok(())
}

/// The f32 passes of the plan's steps: every chunk pair's tiles, or the two
/// sides of the band; in the tile kernels, one workgroup per column range
/// (x) and row tile (y).
fn record_f32(d: &mut Dispatcher<'_, '_>, pipelines: &Pipelines) -> Result<(), Error> {
    let plan = d.bindings.plan;
    let chunking = plan.chunking;
    let splits = chunking.splits;
    let chunks = chunking.chunks();
    let tile_passes: Vec<At> = if plan.band {
        vec![(0, 0, Pass::Positives), (0, 0, Pass::Negatives)]
    } else {
        (0..chunks)
            .flat_map(|a| (0..chunks).map(move |b| (a, b, Pass::Dense)))
            .collect()
    };
    for a in 0..chunks {
        let rows = chunking.chunk(a).1;
        d.dispatch(&pipelines.normalize, own_chunk(a), linear(rows), 1)?;
    }
    // The row tiles of the owned rows of chunk a.
    let owned_tiles = |a: usize| {
        let (begin, end) = plan.owned(a);
        tiles(end - begin)
    };
    let steps = &plan.steps;
    let depth = chunking.depth_splits;
    if steps.forward {
        if depth > 1 {
            // One chunk, dense: every (column tile, feature range, row tile).
            let tiles = tiles(chunking.rows);
            d.dispatch(&pipelines.row_stats_depth, ONCE, tiles * depth, tiles)?;
        }
        for &at in &tile_passes {
            d.dispatch(&pipelines.row_stats, at, splits, owned_tiles(at.0))?;
        }
    }
    if !steps.backward {
        return Ok(());
    }
    if steps.forward {
        d.dispatch(&pipelines.finish_rows, ONCE, linear(chunking.rows), 1)?;
        d.dispatch(&pipelines.reduce_loss, ONCE, 1, 1)?;
    }
    // With feature ranges, each tile's H once, then one workgroup per 64
    // features of ∂L/∂z.
    let across = match depth {
        1 => splits,
        _ => {
            let tiles = tiles(chunking.rows);
            d.dispatch(&pipelines.backward_h, ONCE, tiles, tiles)?;
            chunking.dim.div_ceil(TILE as usize)
        }
    };
    for &at in &tile_passes {
        d.dispatch(&pipelines.backward, at, across, owned_tiles(at.0))?;
    }
    for a in 0..chunks {
        let rows = chunking.chunk(a).1;
        d.dispatch(&pipelines.normalize_backward, own_chunk(a), linear(rows), 1)?;
    }
    if d.bindings.src.counts.is_some() {
        d.dispatch(&pipelines.export_counts, ONCE, linear(chunking.rows), 1)?;
    }
    Ok(())
}

/// The one compute pass of a call, and what each dispatch needs: its bind
/// group (cached in `groups`, one per dispatch in order) and, when
/// profiled, a timestamp after it.
struct Dispatcher<'r, 't> {
    pass: wgpu::ComputePass<'r>,
    device: &'r wgpu::Device,
    bindings: Bindings<'r, 'r>,
    groups: &'r mut Vec<wgpu::BindGroup>,
    stamps: Option<&'r mut Stamps<'t>>,
    index: usize,
}

impl Dispatcher<'_, '_> {
    fn dispatch(&mut self, kernel: &Kernel, at: At, x: usize, y: usize) -> Result<(), Error> {
        if self.index == self.groups.len() {
            let group = self.bindings.bind_group(self.device, kernel, at)?;
            self.groups.push(group);
        }
        self.pass.set_pipeline(&kernel.pipeline);
        self.pass.set_bind_group(0, &self.groups[self.index], &[]);
        self.pass.dispatch_workgroups(x as u32, y as u32, 1);
        if let Some(stamps) = self.stamps.as_deref_mut() {
            stamps.dispatched(&mut self.pass, kernel.name, (x * y) as u64)?;
        }
        self.index += 1;
        Ok(())
    }
}

/// A kernel's dispatch over the whole batch at once.
const ONCE: At = (0, 0, Pass::Dense);

/// A dispatch over chunk `a`'s own rows.
fn own_chunk(a: usize) -> At {
    (a, a, Pass::Dense)
}

/// Workgroups of the one-dimensional kernels for `rows` threads.
fn linear(rows: usize) -> usize {
    rows.div_ceil(LINEAR_WORKGROUP as usize)
}

/// Row tiles of `rows` rows.
fn tiles(rows: usize) -> usize {
    rows.div_ceil(TILE as usize)
}
