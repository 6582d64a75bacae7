//! One burn training step with ConR on burn's wgpu device, timed on each
//! path in one run: in place (conr on burn's buffers, with the band plan it
//! builds on the device, and with the dense plan) and through the host (the
//! batch read back, computed by the fast CPU engine, written again).
//!
//! ```sh
//! cargo run -p conr-burn --release --example paths -- --rows 1024 --dim 128 --reps 10
//! ```
//!
//! A step is: a linear encoder (64 inputs → D features), the ConR loss,
//! `backward()`, an Adam step, and a read of the loss (so the step has
//! finished). The report gives each path's median step and their ratio.

use std::time::Instant;

use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::{Device, Tensor, TensorData};
use conr_burn::{Config, ConrLoss, Route, SharedWgpu};
use conr_core::band::TilePlan;

fn arg(name: &str, default: usize) -> Result<usize, String> {
    let mut args = std::env::args().skip_while(|a| a != name);
    match args.nth(1) {
        None => Ok(default),
        Some(v) => v
            .parse()
            .map_err(|_| format!("{name} takes a number, not {v}")),
    }
}

fn median(mut times: Vec<f64>) -> f64 {
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

/// The median seconds of one training step with `conr` on `device`.
fn time_steps(conr: &ConrLoss, device: &Device, rows: usize, dim: usize, reps: usize) -> f64 {
    let inputs = 64;
    let mut encoder: Linear = LinearConfig::new(inputs, dim).init(device);
    let mut adam = AdamConfig::new().init();
    let x: Vec<f32> = (0..rows * inputs)
        .map(|i| ((i * 7919 % 1009) as f32 / 504.5) - 1.0)
        .collect();
    let x = Tensor::<2>::from_data(TensorData::new(x, [rows, inputs]), device);
    // Ages spread over 20-80, and predictions a few years off.
    let labels: Vec<f32> = (0..rows).map(|j| (20 + (j * 37) % 61) as f32).collect();
    let offsets: Vec<f32> = (0..rows).map(|j| ((j * 13) % 15) as f32 - 7.0).collect();
    let y = Tensor::<1>::from_data(TensorData::new(labels, [rows]), device);
    let preds = y.clone() + Tensor::<1>::from_data(TensorData::new(offsets, [rows]), device);
    let mut times = Vec::new();
    for rep in 0..reps + 2 {
        let start = Instant::now();
        let features = encoder.forward(x.clone());
        let loss = conr
            .forward(features, y.clone(), preds.clone(), None)
            .expect("conr computes");
        let grads = GradientsParams::from_grads(loss.clone().backward(), &encoder);
        encoder = adam.step(1e-3, encoder, grads);
        let _ = loss.into_scalar::<f32>();
        // The first two steps compile kernels and fill caches.
        if rep >= 2 {
            times.push(start.elapsed().as_secs_f64());
        }
    }
    let _ = encoder.num_params();
    median(times)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let rows = arg("--rows", 1024)?;
    let dim = arg("--dim", 128)?;
    let reps = arg("--reps", 10)?.max(1);
    let shared = SharedWgpu::init()?;
    let device = shared.device().clone().autodiff();
    println!(
        "adapter {}, M = {rows}, D = {dim}, {reps} steps per path",
        shared.gpu().adapter_name()
    );
    let host = ConrLoss::new(Config::official_agedb())?;
    let in_place = host.clone().in_place_on(shared.clone());
    let probe = Tensor::<2>::zeros([1, 1], &device);
    assert_eq!(in_place.route(&probe), Route::InPlace);
    assert_eq!(host.route(&probe), Route::Host);

    let before = shared.batches();
    let t_in_place = time_steps(&in_place, &device, rows, dim, reps);
    let ran = shared.batches() - before;
    let plan = shared.last_plan()?.map_or("none".into(), |p| {
        format!(
            "{}, {:.0}% of the tiles",
            p.tiles.name(),
            100.0 * p.tile_share
        )
    });
    println!(
        "in place:        {:9.3} ms per step ({ran} batches on burn's buffers; {plan})",
        t_in_place * 1e3
    );
    let dense = shared.with_plan(TilePlan::Dense)?;
    let in_place_dense = host.clone().in_place_on(dense.clone());
    let t_dense = time_steps(&in_place_dense, &device, rows, dim, reps);
    println!("in place, dense: {:9.3} ms per step", t_dense * 1e3);
    let t_host = time_steps(&host, &device, rows, dim, reps);
    println!("host:            {:9.3} ms per step", t_host * 1e3);
    println!(
        "in place dense / in place: {:.2}; host / in place: {:.2}",
        t_dense / t_in_place,
        t_host / t_in_place
    );
    for s in [&shared, &dense] {
        if let Some(e) = s.take_error() {
            return Err(e.into());
        }
    }
    Ok(())
}
