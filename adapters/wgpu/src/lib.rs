//! # conr-wgpu
//!
//! ConR on any GPU through wgpu: WGSL compute shaders (`shaders/`, see [`shaders`])
//! that mirror `conr-core` function by function in f32, and are held to the
//! CPU reference by property tests.
//!
//! - [`GpuConr`] implements the core's engine interface,
//!   [`Engine`](conr_core::Engine), for f32 batches, and for f64 batches
//!   rounded to f32 once ([`Engine::precision`](conr_core::Engine::precision)
//!   says so): the same [`Output`](conr_core::Output) as the CPU engines,
//!   whole or in the row phases of the data-parallel protocol.
//! - The forward pass computes logit tiles in workgroup memory with an online
//!   log-sum-exp per row; the backward pass recomputes them, forms
//!   `G_jk + G_kj`, and accumulates `∂z`. No M×M buffer exists: GPU memory is
//!   O(M·D + M·L).
//! - [`GpuConr::record`] records into the caller's command encoder on
//!   caller-owned buffers, for frameworks that keep tensors on the GPU; it
//!   checks the values on the device against the core's rules ([`Status`]).
//! - Pipelines are created once per `GpuConr`; working buffers are reused
//!   while the batch shape repeats.
//! - Batches larger than one storage binding run in row chunks.
//! - [`GpuConr::profiled`] times the calls made inside it kernel by kernel
//!   (timestamp queries) and step by step on the host: a [`Profile`].
//! - Out-of-memory, validation and device-loss conditions become
//!   [`conr_core::Error`]s through error scopes, never a panic.
//!
//! ```no_run
//! use conr_core::{Batch, Config, Engine, Inputs, Shape};
//! use conr_wgpu::GpuConr;
//!
//! let gpu = GpuConr::new()?; // honours WGPU_BACKEND
//! let shape = Shape { rows: 4, dim: 2, label_dim: 1 };
//! let features = [1.0f32, 0.1, 0.9, 0.2, 0.1, 1.0, 0.2, 0.8];
//! let inputs = Inputs {
//!     features: &features,
//!     labels: &[20.0, 20.5, 60.0, 60.5],
//!     preds: &[40.0, 40.2, 40.4, 40.1],
//!     eta: None,
//! };
//! let out = gpu.compute(&Batch::new(shape, inputs)?, &Config::official_agedb())?;
//! println!("loss {} on {}", out.loss, gpu.adapter_name());
//! # Ok::<(), conr_core::Error>(())
//! ```
#![deny(unsafe_code)]
#![warn(missing_docs)]

/// The crate README's examples, run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

mod buffers;
mod chunking;
#[cfg(feature = "hooks")]
mod device_batch;
mod engine;
mod host;
mod info;
mod kernels;
mod layout;
mod mixed;
mod plan;
mod profile;
mod readback;
mod record;
pub mod shaders;
mod status;
mod workspace;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

pub use buffers::GpuBuffers;
pub use conr_core::{Error, Precision};
#[cfg(feature = "hooks")]
pub use device_batch::{DeviceBatch, DevicePlan, DeviceResult};
pub use info::{AdapterSummary, PciAddress, adapters};
pub use mixed::{features_for, mixed_support};
pub use profile::{KernelTime, PROFILE_FEATURES, Profile};
pub use readback::read_back;
pub use status::Status;

use conr_core::band::TilePlan;
use kernels::Pipelines;
use workspace::{HostBuffers, Workspace};

/// Rows (and columns) of a logit tile in the tiled kernels.
pub const TILE: u32 = 64;
/// The workgroup size of the tiled kernels (16×16 threads, 4×4 logits each).
pub const TILE_WORKGROUP: [u32; 3] = [16, 16, 1];
/// Workgroup memory the f32 backward kernel needs: two staged 16×64 slices
/// and the 64×64 tile of H in f32, and the tile's 64 column keys (label,
/// prediction, ln eta) and outcomes. Every mainstream GPU has at least 32 KiB.
pub const WORKGROUP_MEMORY: u32 =
    2 * 16 * 64 * 4 + 64 * 64 * 4 + 64 * (3 * 4 + size_of::<layout::DeviceOutcome>() as u32);
/// Workgroup memory the mixed-precision kernels need: the 64×64 logit tile in
/// f32, the tile of H in f16, one RowStats per row, and the column keys and
/// outcomes.
pub const MIXED_WORKGROUP_MEMORY: u32 = 64 * 64 * 4
    + 64 * 64 * 2
    + 64 * size_of::<layout::DeviceStats>() as u32
    + 64 * (3 * 4 + size_of::<layout::DeviceOutcome>() as u32);
/// The workgroup size of the per-row kernels.
pub const LINEAR_WORKGROUP: u32 = 64;
/// The workgroup size of the mixed-precision tile kernels: four subgroups of 32.
pub const MIXED_WORKGROUP: u32 = 128;
/// The workgroup size of the loss reduction (one workgroup).
pub const REDUCE_WORKGROUP: u32 = 256;
/// The workgroup size of the device band plan's sort kernels.
pub const SORT_WORKGROUP: u32 = 256;
/// Keys one sort workgroup orders in workgroup memory: each side of the
/// device's sort holds a power of two of at least this many slots.
pub const SORT_BLOCK: u32 = 2 * SORT_WORKGROUP;

/// A GPU context for ConR: a device, its queue, the compiled pipelines, and
/// reusable working buffers. Build it once and call it for every batch,
/// through the core's [`Engine`](conr_core::Engine) interface or
/// [`GpuConr::record`].
///
/// `GpuConr` is `Send + Sync`. Calls from several threads are safe: they take
/// turns on an internal lock that guards the working buffers.
pub struct GpuConr {
    device: wgpu::Device,
    queue: wgpu::Queue,
    adapter: Option<wgpu::AdapterInfo>,
    pipelines: Option<Pipelines>,
    cache: Mutex<Cache>,
    max_binding: u64,
    precision: Precision,
    tiles: TilePlan,
    lost: Arc<LostFlag>,
    /// Some while [`GpuConr::profiled`] runs: the calls' times so far.
    profiling: Mutex<Option<Profile>>,
}

#[derive(Default)]
struct Cache {
    workspace: Option<Workspace>,
    host: Option<HostBuffers>,
    timer: Option<profile::Timer>,
}

#[derive(Default)]
struct LostFlag {
    lost: AtomicBool,
    reason: Mutex<String>,
}

impl std::fmt::Debug for GpuConr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpuConr")
            .field("adapter", &self.adapter_name())
            .field("max_binding", &self.max_binding)
            .field("precision", &self.precision)
            .finish_non_exhaustive()
    }
}

impl GpuConr {
    /// Picks a high-performance adapter (honouring `WGPU_BACKEND` and
    /// `WGPU_POWER_PREF`) and opens a device on it, for f32.
    pub fn new() -> Result<Self, Error> {
        pollster::block_on(Self::new_async())
    }

    /// The async form of [`GpuConr::new`].
    pub async fn new_async() -> Result<Self, Error> {
        Self::with_precision_async(Precision::F32).await
    }

    /// [`GpuConr::new`] in the given precision: [`Precision::F32`] or
    /// [`Precision::Mixed`]. Mixed precision on an adapter without tensor
    /// cores reachable through wgpu is an [`Error::Unsupported`] that says
    /// what is missing, and so is f64, which the GPU does not compute in.
    ///
    /// ```no_run
    /// use conr_core::{Engine, Precision};
    /// use conr_wgpu::GpuConr;
    /// let gpu = GpuConr::with_precision(Precision::Mixed)?;
    /// assert_eq!(Engine::<f32>::precision(&gpu), Precision::Mixed);
    /// # Ok::<(), conr_core::Error>(())
    /// ```
    pub fn with_precision(precision: Precision) -> Result<Self, Error> {
        pollster::block_on(Self::with_precision_async(precision))
    }

    /// The async form of [`GpuConr::with_precision`].
    pub async fn with_precision_async(precision: Precision) -> Result<Self, Error> {
        refuse_f64(precision)?;
        let descriptor = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
        let tried = format!("{:?}", descriptor.backends);
        let instance = wgpu::Instance::new(descriptor);
        let options = wgpu::RequestAdapterOptions {
            power_preference: wgpu::PowerPreference::from_env()
                .unwrap_or(wgpu::PowerPreference::HighPerformance),
            ..Default::default()
        };
        let adapter = instance.request_adapter(&options).await.map_err(|e| {
            Error::Unavailable(format!(
                "no GPU adapter found (backends tried: {tried}): {e}"
            ))
        })?;
        Self::open(adapter, precision).await
    }

    /// [`GpuConr::with_precision`] on the adapter at PCI address `address`
    /// (the backends in `WGPU_BACKEND`, default all; Vulkan's where several
    /// backends see it): the GPU a CUDA device is, found by where it sits
    /// rather than by its name. No such adapter is [`Error::Unavailable`].
    pub fn on_pci_address(address: PciAddress, precision: Precision) -> Result<Self, Error> {
        pollster::block_on(async {
            refuse_f64(precision)?;
            let descriptor = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
            let backends = descriptor.backends;
            let instance = wgpu::Instance::new(descriptor);
            let mut found: Vec<wgpu::Adapter> = instance
                .enumerate_adapters(backends)
                .await
                .into_iter()
                .filter(|a| PciAddress::parse(&a.get_info().device_pci_bus_id) == Some(address))
                .collect();
            found.sort_by_key(|a| a.get_info().backend != wgpu::Backend::Vulkan);
            match found.into_iter().next() {
                Some(adapter) => Self::open(adapter, precision).await,
                None => Err(Error::Unavailable(format!(
                    "no adapter at PCI address {address} (backends tried: {backends:?})"
                ))),
            }
        })
    }

    /// A device on `adapter`, for `precision`.
    async fn open(adapter: wgpu::Adapter, precision: Precision) -> Result<Self, Error> {
        let experimental_features = match precision {
            Precision::Mixed => {
                mixed_support(&adapter)?;
                // SAFETY: wgpu marks cooperative matrices experimental: its
                // validation of them may be incomplete. The kernels keep to what
                // the adapter reports (checked just above) and to uniform
                // control flow, and the tests hold their results to the
                // reference wherever the feature exists.
                #[allow(unsafe_code)]
                unsafe {
                    wgpu::ExperimentalFeatures::enabled()
                }
            }
            _ => wgpu::ExperimentalFeatures::disabled(),
        };
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("conr"),
                // Timestamps where the adapter has them, for GpuConr::profiled.
                required_features: features_for(precision)
                    | (adapter.features() & PROFILE_FEATURES),
                // The adapter's own limits: storage bindings of up to 2 GiB on large GPUs.
                required_limits: adapter.limits(),
                experimental_features,
                memory_hints: wgpu::MemoryHints::Performance,
                trace: wgpu::Trace::Off,
            })
            .await
            .map_err(|e| Error::Unavailable(format!("the GPU adapter gave no device: {e}")))?;
        let mut gpu = Self::from_device_with_precision(device, queue, precision)?;
        gpu.adapter = Some(adapter.get_info());
        Ok(gpu)
    }

    /// Uses a device the caller already owns, for f32. Pipelines are compiled here, once.
    ///
    /// The device needs [`WORKGROUP_MEMORY`] bytes of workgroup memory
    /// (`max_compute_workgroup_storage_size`) and as many storage buffers per
    /// shader stage as the kernels bind (11; the error says when a device
    /// allows fewer). Errors on this device that escape conr's error scopes
    /// go to the caller's uncaptured-error handler.
    pub fn from_device(device: wgpu::Device, queue: wgpu::Queue) -> Result<Self, Error> {
        Self::from_device_with_precision(device, queue, Precision::F32)
    }

    /// [`GpuConr::from_device`] in the given precision. For
    /// [`Precision::Mixed`] the device must have been created with
    /// [`features_for`]`(Precision::Mixed)` (and
    /// `ExperimentalFeatures::enabled()`) on an adapter that
    /// [`mixed_support`] accepts; the features and the subgroup width are
    /// checked here.
    pub fn from_device_with_precision(
        device: wgpu::Device,
        queue: wgpu::Queue,
        precision: Precision,
    ) -> Result<Self, Error> {
        Self::build(device, queue, precision, true)
    }

    /// [`GpuConr::from_device`] on a device that another runtime owns and
    /// watches (a framework's wgpu device): conr leaves the device's lost
    /// callback to its owner, because wgpu keeps one callback per device and
    /// setting conr's would silence the owner's.
    pub fn from_shared_device(device: wgpu::Device, queue: wgpu::Queue) -> Result<Self, Error> {
        Self::build(device, queue, Precision::F32, false)
    }

    fn build(
        device: wgpu::Device,
        queue: wgpu::Queue,
        precision: Precision,
        watch_loss: bool,
    ) -> Result<Self, Error> {
        refuse_f64(precision)?;
        if precision == Precision::Mixed {
            mixed::check_features(device.features())?;
            mixed::check_subgroups(&device.adapter_info())?;
        }
        let limits = device.limits();
        let workgroup_memory = match precision {
            Precision::Mixed => WORKGROUP_MEMORY.max(MIXED_WORKGROUP_MEMORY),
            _ => WORKGROUP_MEMORY,
        };
        if limits.max_compute_workgroup_storage_size < workgroup_memory {
            return Err(Error::TooLarge {
                what: "workgroup memory (bytes)",
                needed: u64::from(workgroup_memory),
                limit: u64::from(limits.max_compute_workgroup_storage_size),
            });
        }
        let storage = kernels::storage_buffers_needed(precision);
        if limits.max_storage_buffers_per_shader_stage < storage {
            return Err(Error::TooLarge {
                what: "storage buffers per shader stage",
                needed: u64::from(storage),
                limit: u64::from(limits.max_storage_buffers_per_shader_stage),
            });
        }
        let lost = Arc::new(LostFlag::default());
        if watch_loss {
            let flag = Arc::clone(&lost);
            device.set_device_lost_callback(move |_, message| {
                if let Ok(mut reason) = flag.reason.lock() {
                    *reason = message;
                }
                flag.lost.store(true, Ordering::SeqCst);
            });
        }
        let max_binding = limits
            .max_storage_buffer_binding_size
            .min(limits.max_buffer_size);
        let adapter = Some(device.adapter_info());
        let mut gpu = Self {
            pipelines: None,
            device,
            queue,
            adapter,
            cache: Mutex::new(Cache::default()),
            max_binding,
            precision,
            tiles: TilePlan::default(),
            lost,
            profiling: Mutex::new(None),
        };
        gpu.pipelines = Some(gpu.scoped(|| Pipelines::new(&gpu.device, precision))?);
        Ok(gpu)
    }

    fn pipelines(&self) -> Result<&Pipelines, Error> {
        self.pipelines
            .as_ref()
            .ok_or_else(|| Error::Device("the pipelines were not created".into()))
    }

    /// Lowers the largest storage binding conr uses (bytes), so that batches
    /// split into more row chunks. For tests of the chunked path (the
    /// `hooks` feature); the device's own limit always applies too.
    #[cfg(feature = "hooks")]
    pub fn with_max_binding_bytes(mut self, bytes: u64) -> Self {
        self.max_binding = self.max_binding.min(bytes);
        self
    }

    /// The same context with another tile plan. [`TilePlan::Band`] makes
    /// [`Engine::compute`](conr_core::Engine::compute) and
    /// [`GpuConr::record`] visit only the tiles that can hold a positive or
    /// a negative, in f32 and in mixed precision, for batches that fit one
    /// chunk: `compute` sorts the labels on the host, `record` on the device
    /// (`shaders/band_plan.wgsl`, the same order and runs). The default,
    /// [`TilePlan::Auto`], does the same on batches of more than two 64-row
    /// blocks, where the band can pay (two sides visit at least two tiles a
    /// block). Chunked batches, the `angular` metric and the row phases
    /// visit every tile. [`Engine::plan`](conr_core::Engine::plan) and
    /// [`GpuConr::record_report`] say which a batch took.
    pub fn with_plan(mut self, tiles: TilePlan) -> Self {
        if let Ok(cache) = self.cache.get_mut() {
            *cache = Cache::default();
        }
        self.tiles = tiles;
        self
    }

    /// The device.
    pub fn device(&self) -> &wgpu::Device {
        &self.device
    }

    /// The queue.
    pub fn queue(&self) -> &wgpu::Queue {
        &self.queue
    }

    /// The adapter's description (wgpu reports it for a caller's device too).
    pub fn adapter_info(&self) -> Option<&wgpu::AdapterInfo> {
        self.adapter.as_ref()
    }

    /// The adapter's name and backend, or `"caller's device"` where wgpu did not say.
    pub fn adapter_name(&self) -> String {
        match &self.adapter {
            Some(info) => format!("{} ({:?})", info.name, info.backend),
            None => "caller's device".into(),
        }
    }

    /// Bytes of device memory conr holds for the current shape, beyond the
    /// inputs: normalised features, per-row state, uniforms, the copies of
    /// the labels, and (after a host call) the gradient. Host-visible
    /// readback buffers are not counted.
    pub fn working_bytes(&self) -> u64 {
        let Ok(cache) = self.cache.lock() else {
            return 0;
        };
        let ws = cache.workspace.as_ref().map_or(0, Workspace::bytes);
        ws + cache.host.as_ref().map_or(0, HostBuffers::gradient_bytes)
    }

    fn check_lost(&self) -> Result<(), Error> {
        if self.lost.lost.load(Ordering::SeqCst) {
            let reason = self
                .lost
                .reason
                .lock()
                .map(|r| r.clone())
                .unwrap_or_default();
            return Err(Error::DeviceLost(reason));
        }
        Ok(())
    }

    /// Runs `work` inside out-of-memory, validation and internal error
    /// scopes, and turns what they catch into [`Error::OutOfMemory`] or
    /// [`Error::Device`].
    fn scoped<R>(&self, work: impl FnOnce() -> R) -> Result<R, Error> {
        let internal = self.device.push_error_scope(wgpu::ErrorFilter::Internal);
        let memory = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let validation = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let out = work();
        let one_line = |e: wgpu::Error| e.to_string().replace('\n', " ");
        // Every scope is popped, innermost first, before any is reported.
        let caught = [
            pollster::block_on(validation.pop()).map(|e| Error::Device(one_line(e))),
            pollster::block_on(memory.pop()).map(|e| Error::OutOfMemory(one_line(e))),
            pollster::block_on(internal.pop()).map(|e| Error::Device(one_line(e))),
        ];
        match caught.into_iter().flatten().next() {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }
}

/// The GPU computes in f32 or mixed precision, never in f64.
fn refuse_f64(precision: Precision) -> Result<(), Error> {
    if precision == Precision::F64 {
        return Err(Error::Unsupported {
            what: "f64 on the GPU",
            why: "the GPU engine computes in f32 or mixed precision (an f64 batch is rounded to f32 once)".into(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod shader_tests {
    use super::*;

    fn validate(
        name: &str,
        source: &str,
        caps: naga::valid::Capabilities,
    ) -> (naga::Module, naga::valid::ModuleInfo) {
        let module = naga::front::wgsl::parse_str(source)
            .unwrap_or_else(|e| panic!("{name}: {}", e.emit_to_string(source)));
        let info = naga::valid::Validator::new(naga::valid::ValidationFlags::all(), caps)
            .validate(&module)
            .unwrap_or_else(|e| panic!("{name}: {}", e.emit_to_string(source)));
        (module, info)
    }

    /// Every entry point's workgroup size equals the Rust constant.
    fn check_workgroups(module: &naga::Module) {
        for ep in &module.entry_points {
            let expected = match ep.name.as_str() {
                "row_stats_depth" | "row_stats" | "backward_h" | "backward" => TILE_WORKGROUP,
                "reduce_loss" => [REDUCE_WORKGROUP, 1, 1],
                "plan_sort_block" | "plan_sort_step" => [SORT_WORKGROUP, 1, 1],
                "row_stats_mixed" | "backward_mixed" => [MIXED_WORKGROUP, 1, 1],
                _ => [LINEAR_WORKGROUP, 1, 1],
            };
            assert_eq!(ep.workgroup_size, expected, "entry point {}", ep.name);
        }
    }

    /// Every file of `shaders/` parses and validates with naga (no GPU
    /// needed) as the module [`shaders::module`] makes of it: the file and
    /// the files it names, nothing else. The mixed module needs the f16 and
    /// cooperative-matrix capabilities and no other; every entry point's
    /// workgroup size equals the Rust constant.
    #[test]
    fn shaders_validate_and_match_the_rust_constants() {
        use naga::valid::Capabilities as Caps;
        for (name, _) in shaders::FILES {
            let caps = if name == shaders::MIXED {
                Caps::SHADER_FLOAT16 | Caps::COOPERATIVE_MATRIX
            } else {
                Caps::default()
            };
            let (module, _) = validate(name, &shaders::module(name), caps);
            check_workgroups(&module);
        }
        let (mixed, info) = validate(
            shaders::MIXED,
            &shaders::module(shaders::MIXED),
            Caps::SHADER_FLOAT16 | Caps::COOPERATIVE_MATRIX,
        );
        for name in [
            "to_half",
            "row_stats_mixed",
            "backward_mixed",
            "normalize_backward_mixed",
        ] {
            assert!(mixed.entry_points.iter().any(|e| e.name == name), "{name}");
        }
        // What the Vulkan backend will compile: the SPIR-V writer accepts it.
        let options = naga::back::spv::Options {
            lang_version: (1, 5),
            ..Default::default()
        };
        naga::back::spv::write_vec(&mixed, &info, &options, None)
            .expect("SPIR-V for the mixed module");
        // Without the cooperative-matrix capability the mixed module is
        // refused: it really runs its tiles on cooperative matrices.
        assert!(
            naga::valid::Validator::new(naga::valid::ValidationFlags::all(), Caps::SHADER_FLOAT16)
                .validate(&mixed)
                .is_err()
        );
        // The tile the shader uses must be the Rust one.
        assert_eq!(TILE_WORKGROUP[0] * 4, TILE);
        // The sort's sizes, and the host's slack, are the Rust ones.
        let band_plan = shaders::source(shaders::BAND_PLAN).unwrap();
        for line in [
            format!("const PLAN_SORT: u32 = {SORT_WORKGROUP}u;"),
            format!("const PLAN_BLOCK: u32 = {SORT_BLOCK}u;"),
        ] {
            assert!(band_plan.contains(&line), "{line}");
        }
        let slack = conr_core::band::SLACK_ULPS as f32 * f32::EPSILON;
        assert_eq!(slack, 7.629_394_5e-6);
        assert!(band_plan.contains("const PLAN_SLACK: f32 = 7.62939453125e-6;"));
    }
}
