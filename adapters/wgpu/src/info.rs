/// A PCI address, `domain:bus:device.function`: where a GPU sits, the one
/// identity that wgpu's Vulkan adapters and CUDA's devices both report, so
/// that a CUDA device's adapter can be found without trusting names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PciAddress {
    /// The PCI domain (segment).
    pub domain: u32,
    /// The bus.
    pub bus: u8,
    /// The device on the bus.
    pub device: u8,
    /// The function of the device.
    pub function: u8,
}

impl PciAddress {
    /// `text` as `domain:bus:device.function` in hex (`0000:01:00.0`, as
    /// Vulkan reports it), or `None`.
    ///
    /// ```
    /// use conr_wgpu::PciAddress;
    /// let a = PciAddress::parse("0000:1b:00.0").unwrap();
    /// assert_eq!((a.domain, a.bus, a.device, a.function), (0, 0x1b, 0, 0));
    /// assert_eq!(a.to_string(), "0000:1b:00.0");
    /// assert_eq!(PciAddress::parse(""), None);
    /// ```
    pub fn parse(text: &str) -> Option<Self> {
        let (domain, rest) = text.trim().split_once(':')?;
        let (bus, rest) = rest.split_once(':')?;
        let (device, function) = rest.split_once('.')?;
        Some(Self {
            domain: u32::from_str_radix(domain, 16).ok()?,
            bus: u8::from_str_radix(bus, 16).ok()?,
            device: u8::from_str_radix(device, 16).ok()?,
            function: u8::from_str_radix(function, 16).ok()?,
        })
    }
}

impl std::fmt::Display for PciAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:04x}:{:02x}:{:02x}.{:x}",
            self.domain, self.bus, self.device, self.function
        )
    }
}

/// One adapter as `conr info` reports it.
#[derive(Debug, Clone)]
pub struct AdapterSummary {
    /// The adapter's name.
    pub name: String,
    /// Vulkan, Metal, Dx12, Gl, ...
    pub backend: String,
    /// DiscreteGpu, IntegratedGpu, Cpu, ...
    pub device_type: String,
    /// The driver and its version.
    pub driver: String,
    /// Where it sits on the PCI bus, where the backend says (Vulkan does;
    /// a CPU adapter has none).
    pub pci: Option<PciAddress>,
    /// The largest storage buffer binding, in bytes.
    pub max_storage_buffer_binding_size: u64,
    /// The largest buffer, in bytes.
    pub max_buffer_size: u64,
    /// Workgroup memory, in bytes.
    pub max_compute_workgroup_storage_size: u32,
    /// Invocations per workgroup.
    pub max_compute_invocations_per_workgroup: u32,
    /// Workgroups per dispatch dimension.
    pub max_compute_workgroups_per_dimension: u32,
    /// Storage buffers per shader stage (conr's kernels bind up to 11).
    pub max_storage_buffers_per_shader_stage: u32,
    /// Whether it supports 16-bit floats in shaders.
    pub shader_f16: bool,
    /// Whether it supports subgroup operations.
    pub subgroups: bool,
}

/// Every adapter the backends in `WGPU_BACKEND` (default: all) can see.
pub fn adapters() -> Vec<AdapterSummary> {
    let instance =
        wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
    let backends = wgpu::Backends::from_env().unwrap_or(wgpu::Backends::all());
    pollster::block_on(instance.enumerate_adapters(backends))
        .into_iter()
        .map(|adapter| {
            let info = adapter.get_info();
            let limits = adapter.limits();
            let features = adapter.features();
            AdapterSummary {
                name: info.name,
                backend: format!("{:?}", info.backend),
                device_type: format!("{:?}", info.device_type),
                driver: format!("{} {}", info.driver, info.driver_info)
                    .trim()
                    .to_string(),
                pci: PciAddress::parse(&info.device_pci_bus_id),
                max_storage_buffer_binding_size: limits.max_storage_buffer_binding_size,
                max_buffer_size: limits.max_buffer_size,
                max_compute_workgroup_storage_size: limits.max_compute_workgroup_storage_size,
                max_compute_invocations_per_workgroup: limits.max_compute_invocations_per_workgroup,
                max_compute_workgroups_per_dimension: limits.max_compute_workgroups_per_dimension,
                max_storage_buffers_per_shader_stage: limits.max_storage_buffers_per_shader_stage,
                shader_f16: features.contains(wgpu::Features::SHADER_F16),
                subgroups: features.contains(wgpu::Features::SUBGROUP),
            }
        })
        .collect()
}
