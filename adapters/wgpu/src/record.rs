//! The recording of one call's passes into a command encoder, from its
//! [`CallPlan`]: which kernels run over which chunks or band sides, each
//! bound to the buffers its binding list names.

use conr_core::Error;
use wgpu::{BindingResource, BufferBinding};

use crate::kernels::{Binding, Kernel, Pipelines};
use crate::plan::CallPlan;
use crate::profile::Stamps;
use crate::workspace::Workspace;
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
            // One side's block (the first outside band passes): the kernels
            // size a block by it.
            Binding::Z16 => BindingResource::Buffer(mixed()?.z16_of(Some(side.unwrap_or(0)))),
            Binding::Dz32 => BindingResource::Buffer(mixed()?.dz32_of(side)),
            Binding::StatsPart => whole(&mixed()?.stats_part),
            // Never read in a dense pass.
            Binding::BandOrder => match side {
                Some(s) => BindingResource::Buffer(band()?.order_of(s)),
                None => whole(&ws.no_band),
            },
            Binding::BandRanges => match side {
                Some(s) => BindingResource::Buffer(band()?.runs_of(s)),
                None => whole(&ws.no_band),
            },
            Binding::PlanKeys => whole(&band()?.keys),
            Binding::PlanOrder => whole(&band()?.order),
            Binding::PlanRuns => whole(&band()?.runs),
            Binding::PlanTiles => whole(&band()?.tiles),
            Binding::PlanPositions => whole(&band()?.positions),
            // Never read without the band.
            Binding::BandPositions => match &ws.band {
                Some(band) if self.plan.band => whole(&band.positions),
                _ => whole(&ws.no_band),
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
    mut stamps: Option<&mut Stamps<'_>>,
) -> Result<(), Error> {
    let bindings = Bindings {
        ws,
        plan,
        src,
        uniforms,
    };
    let chunking = plan.chunking;
    let chunks = chunking.chunks();
    if let Some(stamps) = &stamps {
        stamps.begin(encoder);
    }
    for g in &src.grad {
        encoder.clear_buffer(g.buffer, g.offset, g.size.map(|s| s.get()));
    }
    if let Some(m) = &ws.mixed {
        encoder.clear_buffer(&m.dz32, 0, None);
    }
    encoder.clear_buffer(&ws.status, 0, None);
    let device_band = match (&ws.band, plan.device_plan) {
        (Some(band), true) => {
            encoder.clear_buffer(&band.tiles, 0, None);
            Some(band)
        }
        (None, true) => return Err(Error::Device("a device plan without band buffers".into())),
        (_, false) => None,
    };

    let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
        label: Some("conr"),
        timestamp_writes: None,
    });
    if let Some(stamps) = &stamps {
        stamps.begin_pass(&mut pass);
    }
    let mut index = 0;
    let mut dispatch = |kernel: &Kernel, at: At, x: usize, y: usize| -> Result<(), Error> {
        if index == groups.len() {
            groups.push(bindings.bind_group(device, kernel, at)?);
        }
        pass.set_pipeline(&kernel.pipeline);
        pass.set_bind_group(0, &groups[index], &[]);
        pass.dispatch_workgroups(x as u32, y as u32, 1);
        if let Some(stamps) = stamps.as_deref_mut() {
            stamps.dispatched(&mut pass, kernel.name, (x * y) as u64)?;
        }
        index += 1;
        Ok(())
    };
    let linear = |rows: usize| rows.div_ceil(LINEAR_WORKGROUP as usize);
    let tiles = |rows: usize| rows.div_ceil(TILE as usize);
    let once = (0, 0, Pass::Dense);
    let own_chunk = |a: usize| (a, a, Pass::Dense);
    // The values first: the last kernels turn the outputs to NaN if a rule broke.
    for a in 0..chunks {
        dispatch(
            &pipelines.check_values,
            own_chunk(a),
            linear(chunking.chunk(a).1),
            1,
        )?;
    }
    if let Some(band) = device_band {
        // Both sides at once (y = 2): keys, the bitonic sort, the runs.
        let kernels = &pipelines.plan;
        let padded = band.padded;
        let sort_block = crate::SORT_BLOCK as usize;
        dispatch(&kernels.keys_init, (0, 0, Pass::Plan(0)), linear(padded), 2)?;
        for (i, step) in band.sort.iter().enumerate() {
            let at = (0, 0, Pass::Plan(i));
            if step.k == 0 || step.j == 0 {
                dispatch(&kernels.sort_block, at, padded / sort_block, 2)?;
            } else {
                dispatch(&kernels.sort_step, at, padded / sort_block, 2)?;
            }
        }
        dispatch(
            &kernels.runs,
            (0, 0, Pass::Plan(0)),
            linear(tiles(chunking.rows)),
            2,
        )?;
    }
    // A call for the plan alone (GpuConr::device_plan).
    if !plan.steps.forward && !plan.steps.backward {
        return Ok(());
    }
    if let Some(mixed) = &pipelines.mixed {
        // One chunk (Chunking::mixed), both phases (the row phases run in
        // f32): the padded f16 features, the forward pass per (row tile,
        // column range), the ranges merged, then the backward pass into one
        // padded f32 block per range. With the band, the features, the tile
        // passes and their blocks are per side, each in its sorted order.
        let rows = chunking.rows;
        let sides: &[Pass] = if plan.band {
            &[Pass::Positives, Pass::Negatives]
        } else {
            &[Pass::Dense]
        };
        dispatch(&pipelines.normalize, once, linear(rows), 1)?;
        if let (true, Some(band)) = (plan.band, &ws.band) {
            let at = (0, 0, Pass::Plan(0));
            dispatch(&pipelines.plan.positions, at, linear(band.padded), 2)?;
        }
        for &side in sides {
            let at = (0, 0, side);
            dispatch(&mixed.to_half, at, linear(chunking.padded_rows()), 1)?;
        }
        for &side in sides {
            let at = (0, 0, side);
            dispatch(&mixed.row_stats, at, tiles(rows), chunking.splits)?;
        }
        dispatch(&mixed.merge_splits, once, linear(rows), 1)?;
        dispatch(&pipelines.finish_rows, once, linear(rows), 1)?;
        dispatch(&pipelines.reduce_loss, once, 1, 1)?;
        for &side in sides {
            let at = (0, 0, side);
            dispatch(&mixed.backward, at, tiles(rows), chunking.splits)?;
        }
        dispatch(&mixed.normalize_backward, once, linear(rows), 1)?;
        if src.counts.is_some() {
            dispatch(&pipelines.export_counts, once, linear(rows), 1)?;
        }
        return Ok(());
    }
    // The tile dispatches: every chunk pair, or the two sides of the band.
    let tile_passes: Vec<At> = if plan.band {
        vec![(0, 0, Pass::Positives), (0, 0, Pass::Negatives)]
    } else {
        (0..chunks)
            .flat_map(|a| (0..chunks).map(move |b| (a, b, Pass::Dense)))
            .collect()
    };
    for a in 0..chunks {
        dispatch(
            &pipelines.normalize,
            own_chunk(a),
            linear(chunking.chunk(a).1),
            1,
        )?;
    }
    // The row tiles of the owned rows of chunk a.
    let owned_tiles = |a: usize| {
        let (begin, end) = plan.owned(a);
        tiles(end - begin)
    };
    let steps = &plan.steps;
    if steps.forward {
        for &at in &tile_passes {
            dispatch(&pipelines.row_stats, at, owned_tiles(at.0), 1)?;
        }
    }
    if !steps.backward {
        return Ok(());
    }
    if steps.forward {
        dispatch(&pipelines.finish_rows, once, linear(chunking.rows), 1)?;
        dispatch(&pipelines.reduce_loss, once, 1, 1)?;
    }
    for &at in &tile_passes {
        dispatch(&pipelines.backward, at, owned_tiles(at.0), 1)?;
    }
    for a in 0..chunks {
        dispatch(
            &pipelines.normalize_backward,
            own_chunk(a),
            linear(chunking.chunk(a).1),
            1,
        )?;
    }
    if src.counts.is_some() {
        dispatch(&pipelines.export_counts, once, linear(chunking.rows), 1)?;
    }
    Ok(())
}
