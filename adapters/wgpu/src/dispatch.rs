//! The compute pipelines, and the recording of one forward-plus-backward pass.

use wgpu::{BindingResource, BufferBinding};

use crate::params::{FLAG_ACCUMULATE, FLAG_BAND_NEGATIVES, FLAG_BAND_POSITIVES, Params};
use crate::workspace::Workspace;
use crate::{GpuPrecision, LINEAR_WORKGROUP, SHADER, TILE, mixed_shader};

/// One entry point with its bind group layout and the bindings it uses.
pub(crate) struct Kernel {
    pipeline: wgpu::ComputePipeline,
    layout: wgpu::BindGroupLayout,
    bindings: &'static [u32],
    name: &'static str,
}

/// Every kernel of `shaders/conr.wgsl`, created once per device, and the
/// mixed-precision kernels when the context computes in mixed precision.
pub(crate) struct Pipelines {
    normalize: Kernel,
    row_stats: Kernel,
    finish_rows: Kernel,
    reduce_loss: Kernel,
    backward: Kernel,
    normalize_backward: Kernel,
    mixed: Option<MixedKernels>,
}

/// The kernels of `shaders/conr_mixed.wgsl` (compiled with `conr.wgsl`).
struct MixedKernels {
    to_half: Kernel,
    row_stats: Kernel,
    merge_splits: Kernel,
    backward: Kernel,
    normalize_backward: Kernel,
}

// Binding numbers, as declared in the shader.
const PARAMS: u32 = 0;
const FEATURES: u32 = 1;
const Z_OUT: u32 = 2;
const Z_ROWS: u32 = 3;
const Z_COLS: u32 = 4;
const LABELS: u32 = 5;
const PREDS: u32 = 6;
const WEIGHTS: u32 = 7;
const LENGTHS: u32 = 8;
const STATS: u32 = 10;
const OUTCOMES: u32 = 11;
const TOTALS: u32 = 13;
const DZ: u32 = 15;
const Z16: u32 = 16;
const DZ32: u32 = 17;
const STATS_PART: u32 = 18;
const BAND_ORDER: u32 = 19;
const BAND_RANGES: u32 = 20;

/// Which rows and columns a tile dispatch visits: every tile of a chunk pair,
/// or one side of the band plan (conr_core::band).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Pass {
    Dense,
    Positives,
    Negatives,
}

impl Pipelines {
    pub fn new(device: &wgpu::Device, precision: GpuPrecision) -> Self {
        let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some("conr.wgsl"),
            source: wgpu::ShaderSource::Wgsl(SHADER.into()),
        });
        let kernel = |module: &wgpu::ShaderModule, name: &'static str, bindings: &'static [u32]| {
            let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(name),
                layout: None,
                module,
                entry_point: Some(name),
                compilation_options: Default::default(),
                cache: None,
            });
            let layout = pipeline.get_bind_group_layout(0);
            Kernel {
                pipeline,
                layout,
                bindings,
                name,
            }
        };
        let mixed = (precision == GpuPrecision::Mixed).then(|| {
            let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some("conr.wgsl + conr_mixed.wgsl"),
                source: wgpu::ShaderSource::Wgsl(mixed_shader().into()),
            });
            MixedKernels {
                to_half: kernel(&module, "to_half", &[PARAMS, Z_ROWS, Z16]),
                row_stats: kernel(
                    &module,
                    "row_stats_mixed",
                    &[PARAMS, Z16, LABELS, PREDS, WEIGHTS, STATS_PART, BAND_ORDER],
                ),
                merge_splits: kernel(&module, "merge_splits", &[PARAMS, STATS_PART, STATS]),
                backward: kernel(
                    &module,
                    "backward_mixed",
                    &[
                        PARAMS, Z16, DZ32, LABELS, PREDS, WEIGHTS, OUTCOMES, BAND_ORDER,
                    ],
                ),
                normalize_backward: kernel(
                    &module,
                    "normalize_backward_mixed",
                    &[PARAMS, Z_ROWS, LENGTHS, TOTALS, Z16, DZ32, DZ],
                ),
            }
        });
        let m = &module;
        Self {
            normalize: kernel(m, "normalize", &[PARAMS, FEATURES, Z_OUT, LENGTHS]),
            row_stats: kernel(
                m,
                "row_stats",
                &[
                    PARAMS,
                    Z_ROWS,
                    Z_COLS,
                    LABELS,
                    PREDS,
                    WEIGHTS,
                    STATS,
                    BAND_ORDER,
                    BAND_RANGES,
                ],
            ),
            finish_rows: kernel(m, "finish_rows", &[PARAMS, WEIGHTS, STATS, OUTCOMES]),
            reduce_loss: kernel(m, "reduce_loss", &[PARAMS, OUTCOMES, TOTALS]),
            backward: kernel(
                m,
                "backward",
                &[
                    PARAMS,
                    Z_ROWS,
                    Z_COLS,
                    LABELS,
                    PREDS,
                    WEIGHTS,
                    OUTCOMES,
                    TOTALS,
                    DZ,
                    BAND_ORDER,
                    BAND_RANGES,
                ],
            ),
            normalize_backward: kernel(m, "normalize_backward", &[PARAMS, Z_ROWS, LENGTHS, DZ]),
            mixed,
        }
    }
}

/// The caller's (or the host API's) input and output buffers.
pub(crate) struct Sources<'a> {
    /// Features, one binding per chunk.
    pub features: Vec<BufferBinding<'a>>,
    /// The gradient output, one binding per chunk (it holds ∂L/∂z until the last kernel).
    pub grad: Vec<BufferBinding<'a>>,
    pub labels: BufferBinding<'a>,
    pub preds: BufferBinding<'a>,
    /// `None`: every weight is 1.
    pub weights: Option<BufferBinding<'a>>,
}

/// Which phases a recording runs, and the rows its tile kernels own: both
/// phases over every row for a whole computation, or one phase over one
/// worker's rows (conr_core::shard).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Steps {
    /// Phase 1: the row statistics (and, with `backward`, their outcomes and the loss).
    pub forward: bool,
    /// Phase 2: ∂L/∂features, from the outcomes and totals in the workspace.
    pub backward: bool,
    /// The rows whose statistics or gradient the tile kernels compute.
    pub rows: std::ops::Range<usize>,
}

impl Steps {
    /// Both phases over all `rows` rows.
    pub fn whole(rows: usize) -> Self {
        Self {
            forward: true,
            backward: true,
            rows: 0..rows,
        }
    }
}

/// Writes every dispatch's uniform block and records the pass into `encoder`.
///
/// `banded`: the tile kernels visit only the band plan's tiles, whose orders
/// and column runs the caller wrote into `ws.band` (one chunk, f32 only).
/// `groups` caches the bind groups, one per dispatch in order: pass the same
/// vector while the buffers behind `ws` and `src` and `banded` stay the same
/// (the host API's own buffers), and an empty one otherwise.
#[allow(clippy::too_many_arguments)]
pub(crate) fn record(
    pipelines: &Pipelines,
    device: &wgpu::Device,
    queue: &wgpu::Queue,
    encoder: &mut wgpu::CommandEncoder,
    ws: &Workspace,
    src: &Sources<'_>,
    base: Params,
    banded: bool,
    steps: &Steps,
    groups: &mut Vec<wgpu::BindGroup>,
) {
    let plan = ws.plan;
    // Each row chunk's share of the owned rows, local to the chunk.
    let owned = |a: usize| {
        let (offset, count) = plan.chunk(a);
        let local = |r: usize| r.saturating_sub(offset).min(count);
        (local(steps.rows.start), local(steps.rows.end))
    };
    let chunks = plan.chunks();
    let base = Params {
        stride: plan.stride() as u32,
        splits: plan.splits as u32,
        ..base
    };
    let banded = banded && chunks == 1 && ws.band.is_some() && *steps == Steps::whole(plan.rows);
    if banded {
        // One chunk: the plain block, then one per band side; the negatives
        // merge into the positives' statistics.
        let sides = [
            0,
            FLAG_BAND_POSITIVES,
            FLAG_BAND_NEGATIVES | FLAG_ACCUMULATE,
        ];
        for (i, flags) in sides.into_iter().enumerate() {
            let p = Params {
                flags: base.flags | flags,
                ..base
            };
            queue.write_buffer(&ws.params[i], 0, bytemuck::bytes_of(&p));
        }
    }
    for a in 0..chunks {
        for b in 0..chunks {
            let (row_offset, row_count) = plan.chunk(a);
            let (col_offset, col_count) = plan.chunk(b);
            let accumulate = if b > 0 { FLAG_ACCUMULATE } else { 0 };
            let (row_begin, row_end) = owned(a);
            let p = Params {
                row_begin: row_begin as u32,
                row_end: row_end as u32,
                row_offset: row_offset as u32,
                row_count: row_count as u32,
                col_offset: col_offset as u32,
                col_count: col_count as u32,
                flags: base.flags | accumulate,
                ..base
            };
            if !banded {
                queue.write_buffer(&ws.params[a * chunks + b], 0, bytemuck::bytes_of(&p));
            }
        }
    }
    for g in &src.grad {
        encoder.clear_buffer(g.buffer, g.offset, g.size.map(|s| s.get()));
    }
    if let Some(m) = &ws.mixed {
        encoder.clear_buffer(&m.dz32, 0, None);
    }

    fn whole(buffer: &wgpu::Buffer) -> BindingResource<'_> {
        buffer.as_entire_binding()
    }
    let bind = |kernel: &Kernel, a: usize, b: usize, pass: Pass| {
        let side = match pass {
            Pass::Dense => None,
            Pass::Positives => Some(0),
            Pass::Negatives => Some(1),
        };
        let band = side.and_then(|s| ws.band.as_ref().map(|band| (band, s)));
        let resource = |binding: u32| -> BindingResource<'_> {
            match binding {
                PARAMS if banded => whole(&ws.params[side.map_or(0, |s| s + 1)]),
                PARAMS => whole(&ws.params[a * chunks + b]),
                BAND_ORDER => band.map_or_else(|| whole(&ws.no_band), |(b, s)| whole(&b.order[s])),
                BAND_RANGES => {
                    band.map_or_else(|| whole(&ws.no_band), |(b, s)| whole(&b.ranges[s]))
                }
                FEATURES => BindingResource::Buffer(src.features[a].clone()),
                Z_OUT | Z_ROWS => whole(&ws.z[a]),
                Z_COLS => whole(&ws.z[b]),
                LABELS => BindingResource::Buffer(src.labels.clone()),
                PREDS => BindingResource::Buffer(src.preds.clone()),
                WEIGHTS => match &src.weights {
                    Some(w) => BindingResource::Buffer(w.clone()),
                    None => whole(&ws.no_weights),
                },
                LENGTHS => whole(&ws.lengths),
                STATS => whole(&ws.stats),
                OUTCOMES => whole(&ws.outcomes),
                TOTALS => whole(&ws.totals),
                Z16 | DZ32 | STATS_PART => match &ws.mixed {
                    Some(m) if binding == Z16 => whole(&m.z16),
                    Some(m) if binding == DZ32 => whole(&m.dz32),
                    Some(m) => whole(&m.stats_part),
                    // Only the mixed kernels bind these, and only with mixed buffers.
                    None => whole(&ws.no_weights),
                },
                _ => BindingResource::Buffer(src.grad[a].clone()),
            }
        };
        let entries: Vec<wgpu::BindGroupEntry<'_>> = kernel
            .bindings
            .iter()
            .map(|&binding| wgpu::BindGroupEntry {
                binding,
                resource: resource(binding),
            })
            .collect();
        device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(kernel.name),
            layout: &kernel.layout,
            entries: &entries,
        })
    };

    let mut pass_encoder = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
        label: Some("conr forward and backward"),
        timestamp_writes: None,
    });
    let mut index = 0;
    let mut dispatch = |kernel: &Kernel, (a, b, pass): (usize, usize, Pass), x: usize, y: usize| {
        if index == groups.len() {
            groups.push(bind(kernel, a, b, pass));
        }
        pass_encoder_dispatch(&mut pass_encoder, kernel, &groups[index], x, y);
        index += 1;
    };
    let linear = |rows: usize| rows.div_ceil(LINEAR_WORKGROUP as usize);
    let tiles = |rows: usize| rows.div_ceil(TILE as usize);
    let once = (0, 0, Pass::Dense);
    if let Some(mixed) = &pipelines.mixed {
        // One chunk (Plan::mixed), every tile: the padded f16 features, the
        // forward pass per (row tile, column range), the ranges merged, then
        // the backward pass into one padded f32 block per range.
        dispatch(&pipelines.normalize, once, linear(plan.rows), 1);
        dispatch(&mixed.to_half, once, linear(plan.padded_rows()), 1);
        dispatch(&mixed.row_stats, once, tiles(plan.rows), plan.splits);
        dispatch(&mixed.merge_splits, once, linear(plan.rows), 1);
        dispatch(&pipelines.finish_rows, once, linear(plan.rows), 1);
        dispatch(&pipelines.reduce_loss, once, 1, 1);
        dispatch(&mixed.backward, once, tiles(plan.rows), plan.splits);
        dispatch(&mixed.normalize_backward, once, linear(plan.rows), 1);
        return;
    }
    // The tile dispatches: every chunk pair, or the two sides of the band.
    let tile_passes: Vec<(usize, usize, Pass)> = if banded {
        vec![(0, 0, Pass::Positives), (0, 0, Pass::Negatives)]
    } else {
        (0..chunks)
            .flat_map(|a| (0..chunks).map(move |b| (a, b, Pass::Dense)))
            .collect()
    };
    for a in 0..chunks {
        dispatch(
            &pipelines.normalize,
            (a, a, Pass::Dense),
            linear(plan.chunk(a).1),
            1,
        );
    }
    // The row tiles of the owned rows of chunk a.
    let owned_tiles = |a: usize| {
        let (begin, end) = owned(a);
        tiles(end - begin)
    };
    if steps.forward {
        for &(a, b, pass) in &tile_passes {
            dispatch(&pipelines.row_stats, (a, b, pass), owned_tiles(a), 1);
        }
    }
    if !steps.backward {
        return;
    }
    if steps.forward {
        dispatch(&pipelines.finish_rows, once, linear(plan.rows), 1);
        dispatch(&pipelines.reduce_loss, once, 1, 1);
    }
    for &(a, b, pass) in &tile_passes {
        dispatch(&pipelines.backward, (a, b, pass), owned_tiles(a), 1);
    }
    for a in 0..chunks {
        dispatch(
            &pipelines.normalize_backward,
            (a, a, Pass::Dense),
            linear(plan.chunk(a).1),
            1,
        );
    }
}

fn pass_encoder_dispatch(
    pass: &mut wgpu::ComputePass<'_>,
    kernel: &Kernel,
    group: &wgpu::BindGroup,
    x: usize,
    y: usize,
) {
    pass.set_pipeline(&kernel.pipeline);
    pass.set_bind_group(0, group, &[]);
    pass.dispatch_workgroups(x as u32, y as u32, 1);
}
