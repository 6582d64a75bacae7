use wgpu::util::DeviceExt;

use crate::SORT_BLOCK;
use crate::chunking::Chunking;
use crate::layout::{DeviceOutcome, DeviceStats, PlanStep, Totals, UNIFORMS_SIZE};
use crate::plan::CallPlan;
use conr_core::Precision;

/// The bytes of `rows` values of type `T` on the device.
pub(crate) fn bytes_of<T>(rows: usize) -> u64 {
    (rows * std::mem::size_of::<T>()) as u64
}

/// The working buffers of one batch shape, reused while the shape repeats.
/// Everything is O(M·D + M·L): no M×M buffer exists.
pub(crate) struct Workspace {
    pub chunking: Chunking,
    pub precision: Precision,
    /// Normalised features, one buffer per chunk.
    pub z: Vec<wgpu::Buffer>,
    /// |f_j| per row.
    pub lengths: wgpu::Buffer,
    /// [`DeviceStats`] per row.
    pub stats: wgpu::Buffer,
    /// [`DeviceOutcome`] per row.
    pub outcomes: wgpu::Buffer,
    /// [`Totals`]: loss, reduction factor, anchor count.
    pub totals: wgpu::Buffer,
    /// The status word of the device's check of the values ([`crate::Status`]).
    pub status: wgpu::Buffer,
    /// The host path's uniform blocks, one per (row chunk, column chunk), or
    /// three for the band. A recorded call brings its own.
    pub uniforms: Vec<wgpu::Buffer>,
    /// Bound as `eta` when the batch has none (never read then).
    pub no_eta: wgpu::Buffer,
    /// Mixed precision: the padded f16 features and the padded f32 ∂L/∂z.
    pub mixed: Option<MixedBuffers>,
    /// f32 with column ranges: their partial statistics and ∂L/∂z.
    pub splits: Option<SplitBuffers>,
    /// f32 with feature ranges: the kept partial logit tiles.
    pub logits: Option<wgpu::Buffer>,
    /// The band plan's orders and column runs (one chunk, f32), and what the
    /// device needs to build them.
    pub band: Option<BandBuffers>,
    /// Bound where a kernel's read-only binding is never read in a call: the
    /// band buffers in dense passes, the column ranges' gradient blocks with
    /// one range.
    pub unused: wgpu::Buffer,
    /// The same for a writable binding (a buffer cannot be bound both ways
    /// in one dispatch): the column ranges' statistics with one range.
    pub unused_out: wgpu::Buffer,
    /// The kept logit tiles' stand-in without feature ranges: a buffer of
    /// its own, so that no two writable bindings of a dispatch alias.
    pub unused_logits: wgpu::Buffer,
    /// [`GpuConr::record`](crate::GpuConr::record)'s own copies of the
    /// caller's labels, predictions and eta. The backward kernel binds
    /// them read-only beside the writable gradient, and wgpu refuses one
    /// buffer in both roles in a dispatch: a framework that sub-allocates its
    /// tensors from shared buffers may hand over labels and gradient in one.
    pub copied: [wgpu::Buffer; 3],
}

/// The band plan's buffers (one chunk, f32), both sides in each: the rows
/// in each side's sorted order (`padded` u32 slots per side, the rows first)
/// and each 64-row block's run of sorted columns (`run_stride` `[u32; 2]`
/// slots per side). The host writes them from its own sort, or the device
/// builds them (`shaders/band_plan.wgsl`) with the sort keys, the tile
/// counter and the sort's steps.
pub(crate) struct BandBuffers {
    /// Slots per side of `order` and `keys`: a power of two, at least [`SORT_BLOCK`].
    pub padded: usize,
    /// Slots per side of `runs`: the blocks, rounded up to 256 bytes (every
    /// storage offset alignment divides it).
    pub run_stride: usize,
    pub order: wgpu::Buffer,
    pub runs: wgpu::Buffer,
    pub keys: wgpu::Buffer,
    /// The tiles both sides' runs span, counted by the device.
    pub tiles: wgpu::Buffer,
    /// Each row's position in each side's order (`padded` slots per side),
    /// for the mixed kernels.
    pub positions: wgpu::Buffer,
    /// One [`PlanStep`] per sort dispatch, `step_stride` bytes apart.
    pub steps: wgpu::Buffer,
    pub step_stride: u64,
    /// The sort's dispatches, in order ([`sort_steps`]).
    pub sort: Vec<PlanStep>,
}

/// The bitonic sort's dispatches over `padded` slots per side: the blocks
/// sorted from scratch (`k = 0`), then for each stage `k` above a block
/// the global steps (`j` from `k/2` down to a block) and the block merge
/// (`j = 0`). The first also serves the key and run kernels.
pub(crate) fn sort_steps(padded: usize, run_stride: usize) -> Vec<PlanStep> {
    let step = |k: usize, j: usize| PlanStep {
        padded: padded as u32,
        run_stride: run_stride as u32,
        k: k as u32,
        j: j as u32,
    };
    let block = SORT_BLOCK as usize;
    let mut steps = vec![step(0, 0)];
    let mut k = 2 * block;
    while k <= padded {
        let mut j = k / 2;
        while j >= block {
            steps.push(step(k, j));
            j /= 2;
        }
        steps.push(step(k, 0));
        k *= 2;
    }
    steps
}

impl BandBuffers {
    fn new(device: &wgpu::Device, rows: usize) -> Self {
        use wgpu::BufferUsages as U;
        let padded = rows.next_power_of_two().max(SORT_BLOCK as usize);
        let run_stride = rows.div_ceil(crate::TILE as usize).next_multiple_of(32);
        let sort = sort_steps(padded, run_stride);
        let alignment = u64::from(device.limits().min_uniform_buffer_offset_alignment);
        let step_stride = alignment.max(size_of::<PlanStep>() as u64);
        let mut bytes = vec![0u8; sort.len() * step_stride as usize];
        for (i, step) in sort.iter().enumerate() {
            let at = i * step_stride as usize;
            bytes[at..at + size_of::<PlanStep>()].copy_from_slice(bytemuck::bytes_of(step));
        }
        let storage = |label: &str, size: u64, usage| buffer(device, label, size, usage);
        Self {
            padded,
            run_stride,
            order: storage(
                "conr band order",
                2 * bytes_of::<u32>(padded),
                U::STORAGE | U::COPY_DST | U::COPY_SRC,
            ),
            runs: storage(
                "conr band runs",
                2 * bytes_of::<[u32; 2]>(run_stride),
                U::STORAGE | U::COPY_DST | U::COPY_SRC,
            ),
            keys: storage("conr band keys", 2 * bytes_of::<u32>(padded), U::STORAGE),
            positions: storage(
                "conr band positions",
                2 * bytes_of::<u32>(padded),
                U::STORAGE,
            ),
            tiles: storage(
                "conr band tiles",
                bytes_of::<u32>(1),
                U::STORAGE | U::COPY_SRC | U::COPY_DST,
            ),
            steps: device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some("conr band sort steps"),
                contents: &bytes,
                usage: U::UNIFORM,
            }),
            step_stride,
            sort,
        }
    }

    /// The bytes of `side`'s order (0: positives, 1: negatives).
    pub fn order_of(&self, side: usize) -> wgpu::BufferBinding<'_> {
        let bytes = bytes_of::<u32>(self.padded);
        wgpu::BufferBinding {
            buffer: &self.order,
            offset: side as u64 * bytes,
            size: wgpu::BufferSize::new(bytes),
        }
    }

    /// The bytes of `side`'s runs.
    pub fn runs_of(&self, side: usize) -> wgpu::BufferBinding<'_> {
        let bytes = bytes_of::<[u32; 2]>(self.run_stride);
        wgpu::BufferBinding {
            buffer: &self.runs,
            offset: side as u64 * bytes,
            size: wgpu::BufferSize::new(bytes),
        }
    }

    /// The uniform block of sort dispatch `index`.
    pub fn step(&self, index: usize) -> wgpu::BufferBinding<'_> {
        wgpu::BufferBinding {
            buffer: &self.steps,
            offset: index as u64 * self.step_stride,
            size: wgpu::BufferSize::new(size_of::<PlanStep>() as u64),
        }
    }

    fn buffers(&self) -> [&wgpu::Buffer; 6] {
        [
            &self.order,
            &self.runs,
            &self.keys,
            &self.tiles,
            &self.positions,
            &self.steps,
        ]
    }
}

/// The mixed kernels' buffers: the padded features (ceil(M/64)·64 rows of
/// `stride` values), one padded gradient block and one block of row
/// statistics per column range; with the band, each side's, one after the
/// other (the positives' first).
pub(crate) struct MixedBuffers {
    pub z16: wgpu::Buffer,
    pub dz32: wgpu::Buffer,
    pub stats_part: wgpu::Buffer,
    /// The bytes of one side's features and one side's gradient blocks.
    pub z16_block: u64,
    pub dz32_block: u64,
}

impl MixedBuffers {
    /// `side`'s features (0: positives, 1: negatives), or all of them for `None`.
    pub fn z16_of(&self, side: Option<usize>) -> wgpu::BufferBinding<'_> {
        Self::part(&self.z16, self.z16_block, side)
    }

    /// `side`'s gradient blocks, or all of them for `None`.
    pub fn dz32_of(&self, side: Option<usize>) -> wgpu::BufferBinding<'_> {
        Self::part(&self.dz32, self.dz32_block, side)
    }

    fn part(buffer: &wgpu::Buffer, block: u64, side: Option<usize>) -> wgpu::BufferBinding<'_> {
        match side {
            Some(s) => wgpu::BufferBinding {
                buffer,
                offset: s as u64 * block,
                size: wgpu::BufferSize::new(block),
            },
            None => buffer.as_entire_buffer_binding(),
        }
    }
}

/// The f32 tile kernels' column ranges' outputs (with more than one range):
/// one block of row statistics (M rows) and one block of ∂L/∂z (M×D) per
/// range, per band side (the positives' first).
pub(crate) struct SplitBuffers {
    pub stats_part: wgpu::Buffer,
    pub dz_part: wgpu::Buffer,
}

/// Buffers for the host-slice API: uploads, the gradient, and readback.
pub(crate) struct HostBuffers {
    pub features: Vec<wgpu::Buffer>,
    pub labels: wgpu::Buffer,
    pub preds: wgpu::Buffer,
    pub eta: wgpu::Buffer,
    pub grad: Vec<wgpu::Buffer>,
    /// Readback of each gradient chunk.
    pub grad_readback: Vec<wgpu::Buffer>,
    /// Readback of the row statistics, then the totals.
    pub stats_readback: wgpu::Buffer,
    /// Bind groups over these buffers, one per dispatch, built on first use.
    pub bind_groups: Vec<wgpu::BindGroup>,
    /// Whether `bind_groups` bind `eta` (a batch with eta) or the stand-in.
    pub bound_eta: bool,
    /// Whether `bind_groups` are those of a band pass.
    pub bound_band: bool,
}

fn buffer(
    device: &wgpu::Device,
    label: &str,
    size: u64,
    usage: wgpu::BufferUsages,
) -> wgpu::Buffer {
    device.create_buffer(&wgpu::BufferDescriptor {
        label: Some(label),
        size: size.max(4),
        usage,
        mapped_at_creation: false,
    })
}

impl Workspace {
    pub fn new(device: &wgpu::Device, plan: &CallPlan) -> Self {
        use wgpu::BufferUsages as U;
        let chunking = plan.chunking;
        let rows = chunking.rows;
        let chunks = chunking.chunks();
        let padded = (chunking.padded_rows() * chunking.stride()) as u64;
        // With the band, each side has its own blocks, in its own order.
        let sides = if plan.band { 2 } else { 1 };
        let mixed = (plan.precision == Precision::Mixed).then(|| {
            let splits = chunking.splits as u64;
            MixedBuffers {
                z16_block: padded * 2,
                dz32_block: splits * padded * 4,
                z16: buffer(device, "conr z f16", sides * padded * 2, U::STORAGE),
                dz32: buffer(
                    device,
                    "conr dz f32",
                    sides * splits * padded * 4,
                    U::STORAGE | U::COPY_DST,
                ),
                stats_part: buffer(
                    device,
                    "conr row stats per column range",
                    sides * splits * bytes_of::<DeviceStats>(rows),
                    U::STORAGE,
                ),
            }
        });
        let splits = (plan.precision == Precision::F32 && chunking.splits > 1).then(|| {
            let parts = sides as usize * chunking.splits;
            SplitBuffers {
                stats_part: buffer(
                    device,
                    "conr row stats per column range",
                    bytes_of::<DeviceStats>(parts * rows),
                    U::STORAGE,
                ),
                dz_part: buffer(
                    device,
                    "conr dz per column range",
                    bytes_of::<f32>(parts * rows * chunking.dim),
                    U::STORAGE | U::COPY_DST,
                ),
            }
        });
        let logits = (chunking.logits_bytes() > 0).then(|| {
            buffer(
                device,
                "conr kept logit tiles",
                chunking.logits_bytes(),
                U::STORAGE,
            )
        });
        let labels = bytes_of::<f32>(rows * chunking.label_dim);
        Self {
            chunking,
            precision: plan.precision,
            z: (0..chunks)
                .map(|a| {
                    buffer(
                        device,
                        &format!("conr z chunk {a}"),
                        chunking.chunk_bytes(a),
                        U::STORAGE,
                    )
                })
                .collect(),
            lengths: buffer(device, "conr lengths", bytes_of::<f32>(rows), U::STORAGE),
            stats: buffer(
                device,
                "conr row stats",
                bytes_of::<DeviceStats>(rows),
                U::STORAGE | U::COPY_SRC,
            ),
            // COPY_DST: a worker's phase 2 writes every row's outcome and the totals.
            outcomes: buffer(
                device,
                "conr row outcomes",
                bytes_of::<DeviceOutcome>(rows),
                U::STORAGE | U::COPY_DST,
            ),
            totals: buffer(
                device,
                "conr totals",
                bytes_of::<Totals>(1),
                U::STORAGE | U::COPY_SRC | U::COPY_DST,
            ),
            status: buffer(
                device,
                "conr status",
                bytes_of::<u32>(1),
                U::STORAGE | U::COPY_SRC | U::COPY_DST,
            ),
            // Dense: one per chunk pair. Band (one chunk): plain, positives, negatives.
            uniforms: (0..(chunks * chunks).max(3))
                .map(|i| {
                    buffer(
                        device,
                        &format!("conr uniforms {i}"),
                        UNIFORMS_SIZE,
                        U::UNIFORM | U::COPY_DST,
                    )
                })
                .collect(),
            no_eta: device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some("conr no eta"),
                contents: bytemuck::bytes_of(&1.0f32),
                usage: U::STORAGE,
            }),
            mixed,
            splits,
            logits,
            band: plan.band.then(|| BandBuffers::new(device, rows)),
            // One row's statistics, the largest element a stand-in binds.
            unused: buffer(
                device,
                "conr unused input",
                bytes_of::<DeviceStats>(1),
                U::STORAGE,
            ),
            unused_out: buffer(
                device,
                "conr unused output",
                bytes_of::<DeviceStats>(1),
                U::STORAGE,
            ),
            unused_logits: buffer(device, "conr unused logit tiles", 4, U::STORAGE),
            copied: [
                ("conr labels copy", labels),
                ("conr preds copy", labels),
                ("conr eta copy", bytes_of::<f32>(rows)),
            ]
            .map(|(label, size)| buffer(device, label, size, U::STORAGE | U::COPY_DST)),
        }
    }

    /// Whether this workspace's buffers serve `plan`: the same chunking and
    /// precision, and band buffers where the plan takes the band.
    pub fn serves(&self, plan: &CallPlan) -> bool {
        self.chunking == plan.chunking
            && self.precision == plan.precision
            && (self.band.is_some() || !plan.band)
    }

    /// Bytes of device memory the workspace holds.
    pub fn bytes(&self) -> u64 {
        let buffers = self
            .z
            .iter()
            .chain(&self.uniforms)
            .chain([
                &self.lengths,
                &self.stats,
                &self.outcomes,
                &self.totals,
                &self.status,
            ])
            .chain(self.copied.iter())
            .chain(
                self.mixed
                    .iter()
                    .flat_map(|m| [&m.z16, &m.dz32, &m.stats_part]),
            )
            .chain(self.splits.iter().flat_map(|s| [&s.stats_part, &s.dz_part]))
            .chain(self.band.iter().flat_map(BandBuffers::buffers));
        buffers.map(wgpu::Buffer::size).sum()
    }
}

impl HostBuffers {
    pub fn new(device: &wgpu::Device, chunking: Chunking) -> Self {
        use wgpu::BufferUsages as U;
        let rows = chunking.rows;
        let labels = bytes_of::<f32>(rows * chunking.label_dim);
        let chunks = 0..chunking.chunks();
        let per_chunk = |what: &str, usage| -> Vec<wgpu::Buffer> {
            chunks
                .clone()
                .map(|a| {
                    let label = format!("conr {what} chunk {a}");
                    buffer(device, &label, chunking.chunk_bytes(a), usage)
                })
                .collect()
        };
        Self {
            features: per_chunk("features", U::STORAGE | U::COPY_DST),
            labels: buffer(device, "conr labels", labels, U::STORAGE | U::COPY_DST),
            preds: buffer(device, "conr preds", labels, U::STORAGE | U::COPY_DST),
            eta: buffer(
                device,
                "conr eta",
                bytes_of::<f32>(rows),
                U::STORAGE | U::COPY_DST,
            ),
            grad: per_chunk("grad", U::STORAGE | U::COPY_DST | U::COPY_SRC),
            grad_readback: per_chunk("grad readback", U::MAP_READ | U::COPY_DST),
            stats_readback: buffer(
                device,
                "conr stats readback",
                bytes_of::<DeviceStats>(rows) + bytes_of::<Totals>(1),
                U::MAP_READ | U::COPY_DST,
            ),
            bind_groups: Vec::new(),
            bound_eta: false,
            bound_band: false,
        }
    }

    /// Bytes of device memory the gradient holds (readback buffers are host-visible).
    pub fn gradient_bytes(&self) -> u64 {
        self.grad.iter().map(wgpu::Buffer::size).sum()
    }
}
