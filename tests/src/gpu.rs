//! The GPU contexts the tests share, built once, and a batch in device
//! buffers for the record path. Without an adapter the GPU tests skip with
//! a printed reason, unless `CONR_REQUIRE_GPU=1` (as in CI), where a missing
//! adapter fails them.

use std::sync::OnceLock;

use conr_core::band::TilePlan;
use conr_core::{Config, Error, Output, Shape};
use conr_wgpu::{GpuBuffers, GpuConr, Status};
use wgpu::BufferUsages as U;
use wgpu::util::DeviceExt;

/// The shared context, or `None` (with the reason printed) when there is no adapter.
pub fn gpu() -> Option<&'static GpuConr> {
    static GPU: OnceLock<Result<GpuConr, String>> = OnceLock::new();
    match GPU.get_or_init(|| GpuConr::new().map_err(|e| e.to_string())) {
        Ok(gpu) => Some(gpu),
        Err(reason) => {
            if std::env::var("CONR_REQUIRE_GPU").is_ok_and(|v| v == "1") {
                panic!("CONR_REQUIRE_GPU=1 but there is no GPU: {reason}");
            }
            eprintln!("skipping a GPU test: {reason}");
            None
        }
    }
}

/// The dense plan's context, built once.
pub fn dense_gpu() -> Option<&'static GpuConr> {
    static DENSE: OnceLock<GpuConr> = OnceLock::new();
    gpu()?;
    Some(DENSE.get_or_init(|| {
        GpuConr::new()
            .expect("a second context on the adapter")
            .with_plan(TilePlan::Dense)
    }))
}

/// A context whose chunks hold 128 rows of 24 features (more of narrower
/// ones), so that small batches run in several row chunks.
pub fn chunked_gpu() -> Option<&'static GpuConr> {
    static CHUNKED: OnceLock<GpuConr> = OnceLock::new();
    gpu()?;
    Some(CHUNKED.get_or_init(|| {
        GpuConr::new()
            .expect("a second context on the adapter")
            .with_max_binding_bytes(128 * 24 * 4)
    }))
}

/// A batch in buffers of its own on the device, as a framework would hold
/// it, with room for the outputs.
pub struct DeviceBatch {
    /// The shape the buffers hold.
    pub shape: Shape,
    features: wgpu::Buffer,
    labels: wgpu::Buffer,
    preds: wgpu::Buffer,
    eta: Option<wgpu::Buffer>,
    grad: wgpu::Buffer,
    loss: wgpu::Buffer,
    status: wgpu::Buffer,
}

/// What [`DeviceBatch::read`] reads back.
#[derive(Debug, Clone)]
pub struct DeviceResult {
    /// The loss.
    pub loss: f32,
    /// ∂L/∂features.
    pub grad: Vec<f32>,
    /// The device's check of the values.
    pub status: Status,
}

impl DeviceResult {
    /// The result as an output with `counts`' anchors and counts (the record
    /// path leaves them on the device), widened to f64.
    pub fn with_counts(&self, counts: &Output<f64>) -> Output<f64> {
        Output {
            loss: f64::from(self.loss),
            grad_features: self.grad.iter().map(|&g| f64::from(g)).collect(),
            ..counts.clone()
        }
    }
}

impl DeviceBatch {
    /// Uploads the inputs (f32, any values: the record path checks them).
    pub fn new(
        gpu: &GpuConr,
        shape: Shape,
        features: &[f32],
        labels: &[f32],
        preds: &[f32],
        eta: Option<&[f32]>,
    ) -> Self {
        let device = gpu.device();
        // Buffers of at least one value, so that empty inputs still bind.
        let init = |label, data: &[f32], usage| {
            let data = if data.is_empty() { &[0.0][..] } else { data };
            device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some(label),
                contents: bytemuck::cast_slice(data),
                usage,
            })
        };
        let grad = vec![7.0f32; features.len()];
        Self {
            shape,
            features: init("features", features, U::STORAGE),
            labels: init("labels", labels, U::COPY_SRC),
            preds: init("preds", preds, U::COPY_SRC),
            eta: eta.map(|w| init("eta", w, U::COPY_SRC)),
            grad: init("grad", &grad, U::STORAGE | U::COPY_DST | U::COPY_SRC),
            loss: init("loss", &[0.0], U::COPY_DST | U::COPY_SRC),
            status: init("status", &[0.0], U::COPY_DST | U::COPY_SRC),
        }
    }

    /// The buffers, for `GpuConr::record`.
    pub fn buffers(&self) -> GpuBuffers<'_> {
        GpuBuffers {
            features: self.features.slice(..),
            labels: self.labels.slice(..),
            preds: self.preds.slice(..),
            eta: self.eta.as_ref().map(|w| w.slice(..)),
            grad_features: self.grad.slice(..),
            loss: self.loss.slice(..),
            status: Some(self.status.slice(..)),
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
        Ok(self.read(gpu))
    }

    /// Reads the outputs back (after the caller's submission).
    pub fn read(&self, gpu: &GpuConr) -> DeviceResult {
        let sources = [
            (&self.grad, self.grad.size()),
            (&self.loss, 4),
            (&self.status, 4),
        ];
        let words = read_buffers(gpu, &sources);
        let n = words.len();
        DeviceResult {
            loss: words[n - 2],
            grad: words[..n - 2].to_vec(),
            status: Status(words[n - 1].to_bits()),
        }
    }
}

/// Copies each `(buffer, bytes)` into one readback buffer, one after the
/// other, submits, waits and reads them.
pub fn read_buffers(gpu: &GpuConr, sources: &[(&wgpu::Buffer, u64)]) -> Vec<f32> {
    let device = gpu.device();
    let size = sources.iter().map(|(_, bytes)| bytes).sum();
    let read = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("read"),
        size,
        usage: U::MAP_READ | U::COPY_DST,
        mapped_at_creation: false,
    });
    let mut encoder = device.create_command_encoder(&Default::default());
    let mut at = 0;
    for &(buffer, bytes) in sources {
        encoder.copy_buffer_to_buffer(buffer, 0, &read, at, bytes);
        at += bytes;
    }
    gpu.queue().submit([encoder.finish()]);
    read.map_async(wgpu::MapMode::Read, .., |r| r.expect("the readback maps"));
    device
        .poll(wgpu::PollType::wait_indefinitely())
        .expect("the device finishes");
    let words = bytemuck::cast_slice(&read.get_mapped_range(..).expect("mapped")).to_vec();
    read.unmap();
    words
}
