//! What only the GPU engine has: the record path on device buffers, kernel
//! by kernel profiles, and the list of adapters. It is compiled with the
//! `gpu` feature (on by default). Without it, `Gpu` has no values, `Gpu::of`
//! finds none, and every GPU-only request is an error that names the
//! feature, so that the commands are written once for both builds.

#[cfg(feature = "gpu")]
pub use on::{Gpu, adapters};

#[cfg(not(feature = "gpu"))]
pub use off::{Gpu, adapters};

/// The error of a GPU-only request in a build without the GPU engine.
#[cfg(not(feature = "gpu"))]
const NO_GPU: &str = "this conr was built without the GPU engine (the `gpu` feature)";

#[cfg(feature = "gpu")]
mod on {
    use std::time::Instant;

    use anyhow::Result;
    use conr_core::{Batch, Config, Output, PlanReport};
    use conr_engines::Chosen;
    use conr_wgpu::{GpuBuffers, GpuConr};

    use crate::bench::{BenchOptions, KernelRow, ProfileRow, RandomBatch, median};

    /// The GPU engine behind an engine handle.
    #[derive(Clone, Copy)]
    pub struct Gpu<'a>(&'a GpuConr);

    impl<'a> Gpu<'a> {
        /// The GPU engine, if it is the one chosen.
        pub fn of(chosen: &'a Chosen) -> Option<Self> {
            chosen.gpu.as_deref().map(Gpu)
        }

        /// The adapter's name.
        pub fn adapter_name(self) -> String {
            self.0.adapter_name().to_string()
        }

        /// Device bytes of the working buffers and the gradient, beyond the inputs.
        pub fn working_bytes(self) -> u64 {
            self.0.working_bytes()
        }

        /// Whether the adapter is a CPU (lavapipe, SwiftShader).
        pub fn is_software(self) -> bool {
            self.0
                .adapter_info()
                .is_some_and(|info| info.device_type == wgpu::DeviceType::Cpu)
        }

        /// One whole batch through `GpuConr::record` on buffers uploaded to
        /// the device, the band plan built on the device.
        pub fn compute_recorded(
            self,
            batch: &Batch<'_, f32>,
            config: &Config,
        ) -> Result<Output<f32>> {
            Ok(self.0.compute_recorded(batch, config)?.0)
        }

        /// Median seconds of the record path: the batch in device buffers,
        /// then per repetition one encoder, `calls` × `record`, one
        /// submission, and the wait; divided by `calls`. And the plan the
        /// calls took, as the device counted their tiles.
        pub fn time_record(
            self,
            data: &RandomBatch,
            config: &Config,
            options: &BenchOptions,
            calls: usize,
        ) -> Result<(f64, PlanReport)> {
            use wgpu::BufferUsages as U;
            use wgpu::util::DeviceExt;
            let gpu = self.0;
            let device = gpu.device();
            let init = |label, values: &[f32], usage| {
                device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                    label: Some(label),
                    contents: bytemuck::cast_slice(values),
                    usage,
                })
            };
            let features = init("bench features", &data.features, U::STORAGE);
            let labels = init("bench labels", &data.labels, U::COPY_SRC);
            let preds = init("bench preds", &data.preds, U::COPY_SRC);
            let weights = init("bench weights", &data.weights, U::COPY_SRC);
            let output = |label, size, usage| {
                device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some(label),
                    size,
                    usage,
                    mapped_at_creation: false,
                })
            };
            let grad_bytes = (data.features.len() * 4) as u64;
            let grad = output("bench grad", grad_bytes, U::STORAGE | U::COPY_DST);
            let loss = output("bench loss", 4, U::COPY_DST);
            let tiles = output("bench tiles", 4, U::COPY_DST | U::COPY_SRC);
            let buffers = GpuBuffers {
                features: features.slice(..),
                labels: labels.slice(..),
                preds: preds.slice(..),
                eta: Some(weights.slice(..)),
                grad_features: grad.slice(..),
                loss: loss.slice(..),
                status: None,
                counts: None,
                tiles: Some(tiles.slice(..)),
            };
            let mut times = Vec::new();
            for rep in 0..options.warmup + options.reps {
                let start = Instant::now();
                let mut encoder = device.create_command_encoder(&Default::default());
                for _ in 0..calls {
                    gpu.record(&mut encoder, data.shape, buffers, config)?;
                }
                gpu.queue().submit([encoder.finish()]);
                device
                    .poll(wgpu::PollType::wait_indefinitely())
                    .map_err(|e| anyhow::anyhow!("waiting for the GPU: {e}"))?;
                if rep >= options.warmup {
                    times.push(start.elapsed().as_secs_f64() / calls as f64);
                }
            }
            let visited = conr_wgpu::read_back(gpu, &[(&tiles, 4)])?[0];
            let plan = gpu.record_report(data.shape, config, visited)?;
            Ok((median(times), plan))
        }

        /// Where the calls made by `calls` spent their time, per call: a
        /// `GpuConr::profiled` profile divided by the number of calls.
        pub fn profile(self, calls: impl FnOnce() -> Result<()>) -> Result<ProfileRow> {
            let (outcome, profile) = self.0.profiled(calls)?;
            outcome?;
            let per = |x: f64| x / profile.calls.max(1) as f64;
            Ok(ProfileRow {
                calls: profile.calls,
                host_record_s: per(profile.host_record_s),
                host_wait_s: per(profile.host_wait_s),
                host_read_s: per(profile.host_read_s),
                device_s: per(profile.device_s()),
                clears_s: per(profile.clears_s),
                copies_s: per(profile.copies_s),
                kernels: profile
                    .kernels
                    .iter()
                    .map(|k| KernelRow {
                        kernel: k.kernel,
                        dispatches: per(k.dispatches as f64),
                        workgroups: per(k.workgroups as f64),
                        device_s: per(k.seconds),
                    })
                    .collect(),
            })
        }
    }

    /// The adapters wgpu can see, with their backend, type, driver and key
    /// limits: what `conr info` prints.
    pub fn adapters() -> Result<serde_json::Value> {
        let adapters: Vec<serde_json::Value> = conr_wgpu::adapters()
            .into_iter()
            .map(|a| {
                serde_json::json!({
                    "name": a.name,
                    "backend": a.backend,
                    "device_type": a.device_type,
                    "driver": a.driver,
                    "pci": a.pci.map(|p| p.to_string()),
                    "max_storage_buffer_binding_size": a.max_storage_buffer_binding_size,
                    "max_buffer_size": a.max_buffer_size,
                    "max_compute_workgroup_storage_size": a.max_compute_workgroup_storage_size,
                    "max_compute_invocations_per_workgroup": a.max_compute_invocations_per_workgroup,
                    "max_compute_workgroups_per_dimension": a.max_compute_workgroups_per_dimension,
                    "max_storage_buffers_per_shader_stage": a.max_storage_buffers_per_shader_stage,
                    "shader_f16": a.shader_f16,
                    "subgroups": a.subgroups,
                })
            })
            .collect();
        Ok(serde_json::json!({ "adapters": adapters }))
    }
}

#[cfg(not(feature = "gpu"))]
mod off {
    use std::convert::Infallible;
    use std::marker::PhantomData;

    use anyhow::{Result, bail};
    use conr_core::{Batch, Config, Output, PlanReport};
    use conr_engines::Chosen;

    use super::NO_GPU;
    use crate::bench::{BenchOptions, ProfileRow, RandomBatch};

    /// No GPU engine is compiled in: this type has no values.
    #[derive(Clone, Copy)]
    pub struct Gpu<'a>(Infallible, PhantomData<&'a ()>);

    impl<'a> Gpu<'a> {
        /// None: no engine is the GPU engine in this build.
        pub fn of(_chosen: &'a Chosen) -> Option<Self> {
            None
        }

        /// Never called: there is no `Gpu`.
        pub fn adapter_name(self) -> String {
            match self.0 {}
        }

        /// Never called: there is no `Gpu`.
        pub fn working_bytes(self) -> u64 {
            match self.0 {}
        }

        /// Never called: there is no `Gpu`.
        pub fn is_software(self) -> bool {
            match self.0 {}
        }

        /// Never called: there is no `Gpu`.
        pub fn compute_recorded(self, _: &Batch<'_, f32>, _: &Config) -> Result<Output<f32>> {
            match self.0 {}
        }

        /// Never called: there is no `Gpu`.
        pub fn time_record(
            self,
            _: &RandomBatch,
            _: &Config,
            _: &BenchOptions,
            _: usize,
        ) -> Result<(f64, PlanReport)> {
            match self.0 {}
        }

        /// Never called: there is no `Gpu`.
        pub fn profile(self, _: impl FnOnce() -> Result<()>) -> Result<ProfileRow> {
            match self.0 {}
        }
    }

    /// An error: there is no wgpu in this build to list adapters with.
    pub fn adapters() -> Result<serde_json::Value> {
        bail!("{NO_GPU}")
    }
}
