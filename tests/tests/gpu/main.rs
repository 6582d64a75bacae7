//! The WGSL engine, one test binary (each links wgpu once): compute against
//! the fixtures and the reference, the adapters by PCI address, the
//! device-built band plan, mixed
//! precision, the record path, and the kernel-by-kernel profile. On CI this
//! runs on lavapipe.

mod adapters;
mod compute;
mod device_plan;
mod mixed;
mod profile;
mod record;
