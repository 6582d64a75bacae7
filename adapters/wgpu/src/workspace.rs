use wgpu::util::DeviceExt;

use crate::GpuPrecision;
use crate::params::PARAMS_SIZE;
use crate::plan::Plan;
use conr_core::band::TilePlan;

/// The working buffers of one batch shape, reused while the shape repeats.
/// Everything is O(M·D + M·L): no M×M buffer exists.
pub(crate) struct Workspace {
    pub plan: Plan,
    /// Normalised features, one buffer per chunk.
    pub z: Vec<wgpu::Buffer>,
    /// |f_j| per row.
    pub lengths: wgpu::Buffer,
    /// RowStats per row (32 bytes).
    pub stats: wgpu::Buffer,
    /// RowOutcome per row (32 bytes).
    pub outcomes: wgpu::Buffer,
    /// Loss, reduction factor, anchor count.
    pub totals: wgpu::Buffer,
    /// One uniform block per (row chunk, column chunk).
    pub params: Vec<wgpu::Buffer>,
    /// Bound as `weights` when the batch has none (never read then).
    pub no_weights: wgpu::Buffer,
    /// Mixed precision: the padded f16 features and the padded f32 ∂L/∂z.
    pub mixed: Option<MixedBuffers>,
    /// The band plan's orders and column runs (one chunk, f32).
    pub band: Option<BandBuffers>,
    /// Bound as the band buffers in dense passes (never read then).
    pub no_band: wgpu::Buffer,
    /// [`GpuConr::record`](crate::GpuConr::record)'s own copies of the
    /// caller's labels, predictions and weights. The backward kernel binds
    /// them read-only beside the writable gradient, and wgpu refuses one
    /// buffer in both roles in a dispatch: a framework that sub-allocates its
    /// tensors from shared buffers may hand over labels and gradient in one.
    pub copied: [wgpu::Buffer; 3],
}

/// One side each: the rows in sorted order (u32 × M) and each 64-row block's
/// run of sorted columns (2 × u32 per block), written by the host per batch.
pub(crate) struct BandBuffers {
    pub order: [wgpu::Buffer; 2],
    pub ranges: [wgpu::Buffer; 2],
}

/// The mixed kernels' buffers: the padded features (ceil(M/64)·64 rows of
/// `stride` values), one padded gradient block and one block of row
/// statistics per column range.
pub(crate) struct MixedBuffers {
    pub z16: wgpu::Buffer,
    pub dz32: wgpu::Buffer,
    pub stats_part: wgpu::Buffer,
}

/// Buffers for the host-slice API: uploads, the gradient, and readback.
pub(crate) struct HostBuffers {
    pub features: Vec<wgpu::Buffer>,
    pub labels: wgpu::Buffer,
    pub preds: wgpu::Buffer,
    pub weights: wgpu::Buffer,
    pub grad: Vec<wgpu::Buffer>,
    /// Readback of each gradient chunk.
    pub grad_readback: Vec<wgpu::Buffer>,
    /// Readback of the row statistics, then the totals.
    pub stats_readback: wgpu::Buffer,
    /// Bind groups over these buffers, one per dispatch, built on first use.
    pub bind_groups: Vec<wgpu::BindGroup>,
    /// Whether `bind_groups` bind `weights` (a batch with weights) or the stand-in.
    pub bound_weights: bool,
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
    pub fn new(
        device: &wgpu::Device,
        plan: Plan,
        precision: GpuPrecision,
        tiles: TilePlan,
    ) -> Self {
        use wgpu::BufferUsages as U;
        let rows = plan.rows as u64;
        let chunks = plan.chunks();
        // The band runs in f32 only: the mixed kernels visit every tile.
        let banded = tiles == TilePlan::Band && chunks == 1 && precision == GpuPrecision::F32;
        let padded = (plan.padded_rows() * plan.stride()) as u64;
        let mixed = (precision == GpuPrecision::Mixed).then(|| MixedBuffers {
            z16: buffer(device, "conr z f16", padded * 2, U::STORAGE),
            dz32: buffer(
                device,
                "conr dz f32",
                plan.splits as u64 * padded * 4,
                U::STORAGE | U::COPY_DST,
            ),
            stats_part: buffer(
                device,
                "conr row stats per column range",
                plan.splits as u64 * rows * 32,
                U::STORAGE,
            ),
        });
        Self {
            plan,
            z: (0..chunks)
                .map(|a| {
                    buffer(
                        device,
                        &format!("conr z chunk {a}"),
                        plan.chunk_bytes(a),
                        U::STORAGE,
                    )
                })
                .collect(),
            lengths: buffer(device, "conr lengths", rows * 4, U::STORAGE),
            stats: buffer(
                device,
                "conr row stats",
                rows * 32,
                U::STORAGE | U::COPY_SRC,
            ),
            // COPY_DST: a worker's phase 2 writes every row's outcome and the totals.
            outcomes: buffer(
                device,
                "conr row outcomes",
                rows * 32,
                U::STORAGE | U::COPY_DST,
            ),
            totals: buffer(
                device,
                "conr totals",
                16,
                U::STORAGE | U::COPY_SRC | U::COPY_DST,
            ),
            // Dense: one per chunk pair. Band (one chunk): plain, positives, negatives.
            params: (0..(chunks * chunks).max(3))
                .map(|i| {
                    buffer(
                        device,
                        &format!("conr params {i}"),
                        PARAMS_SIZE,
                        U::UNIFORM | U::COPY_DST,
                    )
                })
                .collect(),
            no_weights: device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some("conr no weights"),
                contents: bytemuck::bytes_of(&1.0f32),
                usage: U::STORAGE,
            }),
            mixed,
            band: banded.then(|| {
                let blocks = plan.rows.div_ceil(crate::TILE as usize) as u64;
                let order = |side| {
                    let label = format!("conr band order {side}");
                    buffer(device, &label, rows * 4, U::STORAGE | U::COPY_DST)
                };
                let ranges = |side| {
                    let label = format!("conr band ranges {side}");
                    buffer(device, &label, blocks * 8, U::STORAGE | U::COPY_DST)
                };
                BandBuffers {
                    order: [order(0), order(1)],
                    ranges: [ranges(0), ranges(1)],
                }
            }),
            no_band: buffer(device, "conr no band", 16, U::STORAGE),
            copied: [
                ("conr labels copy", rows * plan.label_dim as u64 * 4),
                ("conr preds copy", rows * plan.label_dim as u64 * 4),
                ("conr weights copy", rows * 4),
            ]
            .map(|(label, size)| buffer(device, label, size, U::STORAGE | U::COPY_DST)),
        }
    }
}

impl HostBuffers {
    pub fn new(device: &wgpu::Device, plan: Plan) -> Self {
        use wgpu::BufferUsages as U;
        let rows = plan.rows as u64;
        let labels = rows * plan.label_dim as u64 * 4;
        let chunks = 0..plan.chunks();
        Self {
            features: chunks
                .clone()
                .map(|a| {
                    let label = format!("conr features chunk {a}");
                    buffer(
                        device,
                        &label,
                        plan.chunk_bytes(a),
                        U::STORAGE | U::COPY_DST,
                    )
                })
                .collect(),
            labels: buffer(device, "conr labels", labels, U::STORAGE | U::COPY_DST),
            preds: buffer(device, "conr preds", labels, U::STORAGE | U::COPY_DST),
            weights: buffer(device, "conr weights", rows * 4, U::STORAGE | U::COPY_DST),
            grad: chunks
                .clone()
                .map(|a| {
                    let label = format!("conr grad chunk {a}");
                    buffer(
                        device,
                        &label,
                        plan.chunk_bytes(a),
                        U::STORAGE | U::COPY_DST | U::COPY_SRC,
                    )
                })
                .collect(),
            grad_readback: chunks
                .map(|a| {
                    let label = format!("conr grad readback {a}");
                    buffer(
                        device,
                        &label,
                        plan.chunk_bytes(a),
                        U::MAP_READ | U::COPY_DST,
                    )
                })
                .collect(),
            stats_readback: buffer(
                device,
                "conr stats readback",
                rows * 32 + 16,
                U::MAP_READ | U::COPY_DST,
            ),
            bind_groups: Vec::new(),
            bound_weights: false,
            bound_band: false,
        }
    }
}
