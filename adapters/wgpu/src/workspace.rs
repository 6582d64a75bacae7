use wgpu::util::DeviceExt;

use crate::chunking::Chunking;
use crate::layout::{DeviceOutcome, DeviceStats, Totals, UNIFORMS_SIZE};
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
    /// The band plan's orders and column runs (one chunk, f32).
    pub band: Option<BandBuffers>,
    /// Bound as the band buffers in dense passes (never read then).
    pub no_band: wgpu::Buffer,
    /// [`GpuConr::record`](crate::GpuConr::record)'s own copies of the
    /// caller's labels, predictions and eta. The backward kernel binds
    /// them read-only beside the writable gradient, and wgpu refuses one
    /// buffer in both roles in a dispatch: a framework that sub-allocates its
    /// tensors from shared buffers may hand over labels and gradient in one.
    pub copied: [wgpu::Buffer; 3],
}

/// One side each: the rows in sorted order (u32 × M) and each 64-row block's
/// run of sorted columns (`[u32; 2]` per block), written by the host per batch.
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
        let mixed = (plan.precision == Precision::Mixed).then(|| MixedBuffers {
            z16: buffer(device, "conr z f16", padded * 2, U::STORAGE),
            dz32: buffer(
                device,
                "conr dz f32",
                chunking.splits as u64 * padded * 4,
                U::STORAGE | U::COPY_DST,
            ),
            stats_part: buffer(
                device,
                "conr row stats per column range",
                chunking.splits as u64 * bytes_of::<DeviceStats>(rows),
                U::STORAGE,
            ),
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
            band: plan.band.then(|| {
                let blocks = rows.div_ceil(crate::TILE as usize);
                let order = |side| {
                    let label = format!("conr band order {side}");
                    buffer(
                        device,
                        &label,
                        bytes_of::<u32>(rows),
                        U::STORAGE | U::COPY_DST,
                    )
                };
                let ranges = |side| {
                    let label = format!("conr band ranges {side}");
                    let bytes = bytes_of::<[u32; 2]>(blocks);
                    buffer(device, &label, bytes, U::STORAGE | U::COPY_DST)
                };
                BandBuffers {
                    order: [order(0), order(1)],
                    ranges: [ranges(0), ranges(1)],
                }
            }),
            no_band: buffer(device, "conr no band", 16, U::STORAGE),
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
            .chain(
                self.band
                    .iter()
                    .flat_map(|b| b.order.iter().chain(&b.ranges)),
            );
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
