//! Records ConR into your own command encoder, on your own buffers, the way a
//! framework that keeps its tensors on the GPU would: no host copy of the
//! features or the gradient, and one submission that also holds your work.
//!
//! ```sh
//! cargo run -p conr-wgpu --example record
//! ```
//! Without a GPU, Mesa's lavapipe runs it: `WGPU_BACKEND=vulkan`.

use conr_core::{Config, Shape};
use conr_wgpu::{GpuBuffers, GpuConr, Status};
use wgpu::BufferUsages as U;
use wgpu::util::DeviceExt;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Your device: conr compiles its pipelines on it once.
    let gpu = GpuConr::new()?;
    let device = gpu.device();
    println!("adapter: {}", gpu.adapter_name());

    // Two views of three samples: ages 20 and 21 are similar, 60 is far from
    // both yet predicted close to them, so it is a confusing negative.
    let shape = Shape {
        rows: 6,
        dim: 3,
        label_dim: 1,
    };
    let features: [f32; 18] = [
        1.0, 0.1, 0.0, 0.9, 0.2, 0.1, 0.2, 1.0, 0.0, //
        1.0, 0.0, 0.1, 0.8, 0.3, 0.0, 0.1, 0.9, 0.2,
    ];
    let labels = [20.0f32, 21.0, 60.0, 20.0, 21.0, 60.0];
    let preds = [30.0f32, 30.4, 30.8, 30.1, 30.5, 30.9];

    // Buffers your framework would already own.
    let init = |label, data: &[f32], usage| {
        device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some(label),
            contents: bytemuck::cast_slice(data),
            usage,
        })
    };
    let f = init("features", &features, U::STORAGE);
    let y = init("labels", &labels, U::COPY_SRC);
    let p = init("preds", &preds, U::COPY_SRC);
    let grad = init("grad", &[0.0; 18], U::STORAGE | U::COPY_DST | U::COPY_SRC);
    let loss = init("loss", &[0.0], U::COPY_DST | U::COPY_SRC);
    // The device checks the values as the host would; this word says what it found.
    let status = init("status", &[0.0], U::COPY_DST | U::COPY_SRC);

    // Record ConR's forward and backward passes next to your own commands.
    let mut encoder = device.create_command_encoder(&Default::default());
    let buffers = GpuBuffers {
        features: f.slice(..),
        labels: y.slice(..),
        preds: p.slice(..),
        eta: None,
        grad_features: grad.slice(..),
        loss: loss.slice(..),
        status: Some(status.slice(..)),
        counts: None,
        tiles: None,
    };
    gpu.record(&mut encoder, shape, buffers, &Config::official_agedb())?;

    // Here the gradient would feed your optimizer on the GPU. To print it, copy it out.
    let read = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("read"),
        size: 20 * 4,
        usage: U::MAP_READ | U::COPY_DST,
        mapped_at_creation: false,
    });
    encoder.copy_buffer_to_buffer(&grad, 0, &read, 0, 18 * 4);
    encoder.copy_buffer_to_buffer(&loss, 0, &read, 18 * 4, 4);
    encoder.copy_buffer_to_buffer(&status, 0, &read, 19 * 4, 4);
    gpu.queue().submit([encoder.finish()]);
    read.map_async(wgpu::MapMode::Read, .., |r| r.expect("the readback maps"));
    device.poll(wgpu::PollType::wait_indefinitely())?;
    let view = read.get_mapped_range(..)?;
    let values: &[f32] = bytemuck::cast_slice(&view);
    let status = Status(values[19].to_bits());
    if let Some(error) = status.error() {
        return Err(error.into());
    }
    println!("loss: {}", values[18]);
    for (j, row) in values[..18].chunks_exact(3).enumerate() {
        println!("∂L/∂f_{j}: {row:?}");
    }
    Ok(())
}
