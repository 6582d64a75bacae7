//! The GPU contexts the tests share, built once, and the record path's
//! device batches. Without an adapter the GPU tests skip with
//! a printed reason, unless `CONR_REQUIRE_GPU=1` (as in CI), where a missing
//! adapter fails them.

use std::sync::OnceLock;

use conr_core::band::TilePlan;
use conr_wgpu::GpuConr;

use crate::skipped;

/// Whether `CONR_REQUIRE_GPU=1`: CI's promise that the adapter is there,
/// with timestamp queries (lavapipe has them).
pub fn required() -> bool {
    std::env::var("CONR_REQUIRE_GPU").is_ok_and(|v| v == "1")
}

/// The shared context, or `None` (with the reason printed) when there is no adapter.
pub fn gpu() -> Option<&'static GpuConr> {
    static GPU: OnceLock<Result<GpuConr, String>> = OnceLock::new();
    match GPU.get_or_init(|| GpuConr::new().map_err(|e| e.to_string())) {
        Ok(gpu) => Some(gpu),
        Err(reason) => {
            if required() {
                panic!("CONR_REQUIRE_GPU=1 but there is no GPU: {reason}");
            }
            skipped("the GPU tests", &format!("no adapter: {reason}"));
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

/// The band plan's context (taken wherever a band exists, even where it
/// cannot pay), built once.
pub fn band_gpu() -> Option<&'static GpuConr> {
    static BAND: OnceLock<GpuConr> = OnceLock::new();
    gpu()?;
    Some(BAND.get_or_init(|| {
        GpuConr::new()
            .expect("a second context on the adapter")
            .with_plan(TilePlan::Band)
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

pub use conr_wgpu::{DeviceBatch, DeviceResult};

/// A device of its own, without features, on the adapter the shared context
/// found, with the adapter's limits as `limits` changes them: for tests of
/// what a plainer or smaller device gives.
pub fn own_device(
    limits: impl FnOnce(wgpu::Limits) -> wgpu::Limits,
) -> (wgpu::Device, wgpu::Queue) {
    let instance =
        wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
    let adapter = pollster::block_on(instance.request_adapter(&wgpu::RequestAdapterOptions {
        power_preference: wgpu::PowerPreference::HighPerformance,
        ..Default::default()
    }))
    .expect("the adapter the shared context found");
    pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
        required_limits: limits(adapter.limits()),
        ..Default::default()
    }))
    .expect("a device of its own")
}

/// Copies each `(buffer, bytes)` into one readback buffer, one after the
/// other, submits, waits and reads them as f32.
pub fn read_buffers(gpu: &GpuConr, sources: &[(&wgpu::Buffer, u64)]) -> Vec<f32> {
    conr_wgpu::read_back(gpu, sources)
        .expect("the readback")
        .into_iter()
        .map(f32::from_bits)
        .collect()
}
