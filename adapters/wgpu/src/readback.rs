//! Reading device buffers back to the host.

use conr_core::Error;
use wgpu::BufferUsages as U;

use crate::GpuConr;

/// Copies each `(buffer, bytes)` into one readback buffer, one after the
/// other, submits, waits and reads the words.
pub fn read_back(gpu: &GpuConr, sources: &[(&wgpu::Buffer, u64)]) -> Result<Vec<u32>, Error> {
    let device = gpu.device();
    let size: u64 = sources.iter().map(|(_, bytes)| bytes).sum();
    // A buffer without COPY_SRC, or a range past its end, is an error here.
    let read = gpu.scoped(|| {
        let read = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("conr readback"),
            size: size.max(4),
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
        read
    })?;
    let (sender, receiver) = std::sync::mpsc::channel();
    read.map_async(wgpu::MapMode::Read, .., move |r| {
        let _ = sender.send(r);
    });
    device
        .poll(wgpu::PollType::wait_indefinitely())
        .map_err(|e| Error::Device(format!("waiting for the readback: {e}")))?;
    receiver
        .recv()
        .map_err(|_| Error::Device("the readback never mapped".into()))?
        .map_err(|e| Error::Device(format!("mapping the readback: {e}")))?;
    let words = {
        let view = read
            .get_mapped_range(..)
            .map_err(|e| Error::Device(format!("reading results back: {e}")))?;
        bytemuck::cast_slice(&view).to_vec()
    };
    read.unmap();
    Ok(words)
}
