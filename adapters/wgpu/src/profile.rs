//! Where a call's time goes: a device timestamp before the clears, at the
//! start of the pass, after every dispatch and after the readback copies
//! (timestamp queries inside the pass), and the host's own steps on its
//! clock. At the batches people train with a call is fixed cost, not
//! arithmetic, and this tells which part: the host, a kernel, or a kernel
//! with too few workgroups to fill the device.

use std::time::Instant;

use conr_core::Error;

use crate::GpuConr;

/// The device features [`GpuConr::profiled`] needs: timestamps on the
/// encoder and inside the compute pass. [`GpuConr::new`] requests them
/// wherever the adapter has them (Vulkan, DX12, Metal on AMD and Intel).
pub const PROFILE_FEATURES: wgpu::Features = wgpu::Features::TIMESTAMP_QUERY
    .union(wgpu::Features::TIMESTAMP_QUERY_INSIDE_ENCODERS)
    .union(wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES);

/// Timestamps one query set holds (wgpu's limit): a call that records more
/// dispatches than this less three is refused while profiling.
const MAX_QUERIES: u32 = wgpu::QUERY_SET_MAX_QUERIES;

/// One kernel's share of the profiled calls.
#[derive(Debug, Clone, PartialEq)]
pub struct KernelTime {
    /// Its entry point in the shaders.
    pub kernel: &'static str,
    /// Its dispatches, over all profiled calls.
    pub dispatches: usize,
    /// Its workgroups, over all those dispatches. A dispatch of fewer
    /// workgroups than the device has compute units leaves the rest idle.
    pub workgroups: u64,
    /// Device seconds from the end of the work before each dispatch to the
    /// end of the dispatch, added up. Dispatches without a dependency
    /// between them may overlap on the device; each is then charged from
    /// where the one before it ended.
    pub seconds: f64,
}

/// Where the time of the calls inside [`GpuConr::profiled`] went. Every
/// field adds up over the calls; divide by `calls` for one.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Profile {
    /// The calls on host slices that ran (the engine interface's `compute`
    /// and row phases).
    pub calls: usize,
    /// Host seconds from each call's start to its submission: the checks of
    /// the values, the band's sort where the host plans it, the uploads
    /// queued and the passes recorded.
    pub host_record_s: f64,
    /// Host seconds from each submission until every result was mapped: the
    /// uploads, the device's work, the copies back, and the wait itself.
    pub host_wait_s: f64,
    /// Host seconds copying the mapped results out.
    pub host_read_s: f64,
    /// Device seconds clearing the gradient and the status words before the
    /// first dispatch.
    pub clears_s: f64,
    /// Device seconds per kernel, in the order they were first dispatched.
    pub kernels: Vec<KernelTime>,
    /// Device seconds copying the results into the readback buffers.
    pub copies_s: f64,
}

impl Profile {
    /// Device seconds of the dispatches.
    pub fn kernels_s(&self) -> f64 {
        self.kernels.iter().map(|k| k.seconds).sum()
    }

    /// Device seconds from the first clear to the last copy.
    pub fn device_s(&self) -> f64 {
        self.clears_s + self.kernels_s() + self.copies_s
    }

    /// Adds one dispatch of `kernel`, of `workgroups` workgroups, that took `seconds`.
    fn add_dispatch(&mut self, kernel: &'static str, workgroups: u64, seconds: f64) {
        let at = match self.kernels.iter().position(|k| k.kernel == kernel) {
            Some(at) => at,
            None => {
                self.kernels.push(KernelTime {
                    kernel,
                    dispatches: 0,
                    workgroups: 0,
                    seconds: 0.0,
                });
                self.kernels.len() - 1
            }
        };
        let k = &mut self.kernels[at];
        k.dispatches += 1;
        k.workgroups += workgroups;
        k.seconds += seconds;
    }
}

/// A query set, the buffer it resolves into and the one read back: made
/// once per `GpuConr`, when it first profiles.
pub(crate) struct Timer {
    queries: wgpu::QuerySet,
    resolved: wgpu::Buffer,
    pub readback: wgpu::Buffer,
}

impl Timer {
    pub fn new(device: &wgpu::Device) -> Self {
        let bytes = u64::from(MAX_QUERIES) * wgpu::QUERY_SIZE as u64;
        let buffer = |label, usage| {
            device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size: bytes,
                usage,
                mapped_at_creation: false,
            })
        };
        Self {
            queries: device.create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("conr timestamps"),
                ty: wgpu::QueryType::Timestamp,
                count: MAX_QUERIES,
            }),
            resolved: buffer(
                "conr timestamps resolved",
                wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
            ),
            readback: buffer(
                "conr timestamps readback",
                wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            ),
        }
    }
}

/// One call's timestamps as its passes are recorded: slot 0 before the
/// clears, 1 at the start of the pass, `2 + i` after dispatch `i`, and the
/// last after the readback copies.
pub(crate) struct Stamps<'a> {
    timer: &'a Timer,
    /// Each dispatch's kernel and workgroup count, in order.
    dispatches: Vec<(&'static str, u64)>,
    started: Instant,
}

impl<'a> Stamps<'a> {
    /// Starts a call that began on the host at `started`.
    pub fn new(timer: &'a Timer, started: Instant) -> Self {
        Self {
            timer,
            dispatches: Vec::new(),
            started,
        }
    }

    /// Marks the start of the call's commands.
    pub fn begin(&self, encoder: &mut wgpu::CommandEncoder) {
        encoder.write_timestamp(&self.timer.queries, 0);
    }

    /// Marks the start of the pass.
    pub fn begin_pass(&self, pass: &mut wgpu::ComputePass<'_>) {
        pass.write_timestamp(&self.timer.queries, 1);
    }

    /// Marks the end of a dispatch of `kernel` with `workgroups` workgroups.
    pub fn dispatched(
        &mut self,
        pass: &mut wgpu::ComputePass<'_>,
        kernel: &'static str,
        workgroups: u64,
    ) -> Result<(), Error> {
        let slot = 2 + self.dispatches.len() as u32;
        // One more for the copies after the pass.
        if slot + 1 >= MAX_QUERIES {
            return Err(Error::Unsupported {
                what: "profiling",
                why: format!("the call records more than {} dispatches", MAX_QUERIES - 3),
            });
        }
        pass.write_timestamp(&self.timer.queries, slot);
        self.dispatches.push((kernel, workgroups));
        Ok(())
    }

    /// Marks the end of the copies and resolves every timestamp into the
    /// buffer read back; returns the host's time from the call's start to here.
    pub fn finish(&self, encoder: &mut wgpu::CommandEncoder) -> f64 {
        let last = self.last();
        encoder.write_timestamp(&self.timer.queries, last);
        encoder.resolve_query_set(&self.timer.queries, 0..last + 1, &self.timer.resolved, 0);
        let bytes = u64::from(last + 1) * wgpu::QUERY_SIZE as u64;
        encoder.copy_buffer_to_buffer(&self.timer.resolved, 0, &self.timer.readback, 0, bytes);
        self.started.elapsed().as_secs_f64()
    }

    fn last(&self) -> u32 {
        2 + self.dispatches.len() as u32
    }

    /// Adds this call to `profile`, from the mapped timestamps (`ticks`) and
    /// the device's nanoseconds per tick.
    pub fn add_to(
        &self,
        profile: &mut Profile,
        ticks: &[u64],
        period_ns: f32,
        host: [f64; 3],
    ) -> Result<(), Error> {
        let count = self.last() as usize + 1;
        if ticks.len() < count {
            return Err(Error::Device(format!(
                "{} timestamps read back, {count} written",
                ticks.len()
            )));
        }
        // A device whose clock steps back between two stamps charges 0.
        let seconds = |from: usize, to: usize| {
            ticks[to].saturating_sub(ticks[from]) as f64 * f64::from(period_ns) * 1e-9
        };
        profile.calls += 1;
        let [record, wait, read] = host;
        profile.host_record_s += record;
        profile.host_wait_s += wait;
        profile.host_read_s += read;
        profile.clears_s += seconds(0, 1);
        for (i, &(kernel, workgroups)) in self.dispatches.iter().enumerate() {
            profile.add_dispatch(kernel, workgroups, seconds(1 + i, 2 + i));
        }
        profile.copies_s += seconds(count - 2, count - 1);
        Ok(())
    }
}

impl GpuConr {
    /// Whether this device can time its kernels ([`PROFILE_FEATURES`]).
    pub fn can_profile(&self) -> bool {
        self.device.features().contains(PROFILE_FEATURES)
    }

    /// Runs `work`, timing each call on host slices inside it (the engine
    /// interface's `compute` and row phases) kernel by kernel on the device,
    /// and its host steps on the host's clock; returns what `work` returned
    /// and the times of all those calls.
    ///
    /// Timestamps after every dispatch cost a little device time of their
    /// own, so a profiled call is a little slower than one that is not.
    /// Calls from other threads on this `GpuConr` in the meantime are counted
    /// too. [`GpuConr::record`]'s calls, which the caller submits, are not. An [`Error::Unsupported`]
    /// where the device lacks [`PROFILE_FEATURES`] (a device from
    /// [`GpuConr::from_device`] needs them requested), or inside another
    /// `profiled` on the same `GpuConr`.
    ///
    /// ```no_run
    /// use conr_core::{Batch, Config, Engine, Inputs, Shape};
    /// let gpu = conr_wgpu::GpuConr::new()?;
    /// let shape = Shape { rows: 2, dim: 2, label_dim: 1 };
    /// let inputs = Inputs {
    ///     features: &[1.0f32, 0.0, 0.0, 1.0],
    ///     labels: &[20.0, 60.0],
    ///     preds: &[40.0, 40.0],
    ///     eta: None,
    /// };
    /// let batch = Batch::new(shape, inputs)?;
    /// let (out, profile) = gpu.profiled(|| gpu.compute(&batch, &Config::official_agedb()))?;
    /// out?;
    /// for k in &profile.kernels {
    ///     println!("{}: {:.1} µs in {} workgroups", k.kernel, k.seconds * 1e6, k.workgroups);
    /// }
    /// # Ok::<(), conr_core::Error>(())
    /// ```
    pub fn profiled<R>(&self, work: impl FnOnce() -> R) -> Result<(R, Profile), Error> {
        if !self.can_profile() {
            return Err(Error::Unsupported {
                what: "profiling",
                why: format!(
                    "the device lacks {:?}",
                    PROFILE_FEATURES.difference(self.device.features())
                ),
            });
        }
        {
            let mut slot = self.profiling()?;
            if slot.is_some() {
                return Err(Error::Unsupported {
                    what: "profiling",
                    why: "this GpuConr is already profiling".into(),
                });
            }
            *slot = Some(Profile::default());
        }
        // Taken back even if `work` panics, so that the next call may profile.
        struct Taken<'a>(&'a GpuConr);
        impl Drop for Taken<'_> {
            fn drop(&mut self) {
                if let Ok(mut slot) = self.0.profiling.lock() {
                    slot.take();
                }
            }
        }
        let guard = Taken(self);
        let out = work();
        let profile = self.profiling()?.take().unwrap_or_default();
        drop(guard);
        Ok((out, profile))
    }

    /// The profile being gathered, if any.
    pub(crate) fn profiling(&self) -> Result<std::sync::MutexGuard<'_, Option<Profile>>, Error> {
        self.profiling
            .lock()
            .map_err(|_| Error::Device("a profiled call panicked".into()))
    }
}
