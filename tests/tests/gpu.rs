//! The WGSL engine against the fixtures and the CPU reference. On CI this runs
//! on lavapipe (Mesa's software Vulkan), about a thousand times slower than a
//! real GPU, so the batches stay small.

use conr_core::band::TilePlan;
use conr_core::{Batch, Config, Shape};
use conr_cpu::{Engine, Output, Reference};
use conr_tests::budget::{F32_FIXTURE, GPU_VS_CPU, scaled_by_inv_temperature};
use conr_tests::fixtures::{check_runner, f32_batch, widen};
use conr_tests::gpu::gpu;
use conr_tests::random::{RandomBatch, any_batch, band_breaker};
use conr_wgpu::{GpuBuffers, GpuConr, GpuError};
use proptest::prelude::*;
use wgpu::util::DeviceExt;

fn agree(got: &Output<f64>, want: &Output<f64>, temperature: f64) -> Result<(), TestCaseError> {
    conr_tests::budget::agree(
        &scaled_by_inv_temperature(GPU_VS_CPU, temperature),
        got,
        want,
    )
}

fn on_gpu(gpu: &GpuConr, b: &RandomBatch) -> Output<f64> {
    let small = b.convert::<f32>();
    widen(
        gpu.compute(&small.batch(), &b.config)
            .expect("the GPU computes"),
    )
}

#[test]
fn gpu_matches_every_loss_fixture() {
    let Some(gpu) = gpu() else { return };
    let failures = check_runner("gpu f32", &F32_FIXTURE, |case| {
        let data = f32_batch(case);
        let config = case.config.to_config().map_err(|e| format!("{e:#}"))?;
        gpu.compute(&data.batch(), &config)
            .map(widen)
            .map_err(|e| e.to_string())
    });
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, max_global_rejects: 100_000, ..ProptestConfig::default() })]

    /// Random shapes (M up to 300, D up to 256, label width 1–3), labels and every config knob.
    #[test]
    fn gpu_matches_reference(b in any_batch(300, 256)) {
        let Some(gpu) = gpu() else { return Ok(()) };
        prop_assume!(b.row_norms_above(0.05) && !b.has_near_ties(1e-5));
        let want = Reference.compute(&b.batch(), &b.config).unwrap();
        agree(&on_gpu(gpu, &b), &want, b.config.temperature)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, max_global_rejects: 100_000, ..ProptestConfig::default() })]

    /// Many small batches: every knob, more often.
    #[test]
    fn gpu_matches_reference_on_small_batches(b in any_batch(40, 12)) {
        let Some(gpu) = gpu() else { return Ok(()) };
        prop_assume!(b.row_norms_above(0.05) && !b.has_near_ties(1e-5));
        let want = Reference.compute(&b.batch(), &b.config).unwrap();
        agree(&on_gpu(gpu, &b), &want, b.config.temperature)?;
    }
}

/// The GPU's dense-plan context, built once.
fn dense_gpu() -> Option<&'static GpuConr> {
    static DENSE: std::sync::OnceLock<GpuConr> = std::sync::OnceLock::new();
    gpu()?;
    Some(DENSE.get_or_init(|| GpuConr::new().unwrap().with_plan(TilePlan::Dense)))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, max_global_rejects: 100_000, ..ProptestConfig::default() })]

    /// The band plan on the GPU (the default) against the dense plan on the
    /// same device, on batches chosen to break a planner: the same anchors and
    /// counts, and the same loss and gradient up to f32 summation order.
    #[test]
    fn gpu_band_matches_gpu_dense(b in band_breaker(200, 8)) {
        let (Some(band), Some(dense)) = (gpu(), dense_gpu()) else { return Ok(()) };
        prop_assume!(b.row_norms_above(0.05));
        let small = b.convert::<f32>();
        let got = widen(band.compute(&small.batch(), &b.config).expect("the GPU computes"));
        let want = widen(dense.compute(&small.batch(), &b.config).expect("the GPU computes"));
        agree(&got, &want, b.config.temperature)?;
    }
}

/// An AgeDB-like batch really takes the band: here a quarter of the tiles
/// (both sides together), against every tile for the dense plan.
#[test]
fn the_band_plan_skips_tiles_on_agedb_like_batches() {
    let Some(gpu) = gpu() else { return };
    let m = 1024;
    let labels: Vec<f32> = (0..m).map(|j| (20 + (j * 37) % 61) as f32).collect();
    let preds: Vec<f32> = labels
        .iter()
        .enumerate()
        .map(|(j, y)| y + ((j * 13) % 15) as f32 - 7.0)
        .collect();
    let features: Vec<f32> = (0..m * 4)
        .map(|i| ((i * 7919) % 97) as f32 / 48.0 - 1.0)
        .collect();
    let shape = Shape {
        rows: m,
        dim: 4,
        label_dim: 1,
    };
    let batch = Batch::new(shape, &features, &labels, &preds, None).unwrap();
    let config = Config::official_agedb();
    let share = gpu.tile_share(&batch, &config).unwrap();
    assert!(share < 0.3, "the band visits {share:.3} of the tiles");
    assert_eq!(
        dense_gpu().unwrap().tile_share(&batch, &config).unwrap(),
        1.0
    );
    let want = Reference.compute(&batch, &config).unwrap();
    agree(
        &widen(gpu.compute(&batch, &config).unwrap()),
        &widen(want),
        config.temperature,
    )
    .unwrap();
}

/// A batch split into several row chunks (a deliberately small binding limit)
/// gives the same result as one chunk.
#[test]
fn chunked_batches_match_the_reference() {
    let Some(shared) = gpu() else { return };
    let _ = shared;
    // 128 rows of 24 features per chunk: every batch below splits in two or more.
    let small = GpuConr::new().unwrap().with_max_binding_bytes(128 * 24 * 4);
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    for _ in 0..6 {
        let mut b = proptest::strategy::ValueTree::current(
            &any_batch(200, 24).new_tree(&mut runner).unwrap(),
        );
        b.shape.rows = b.shape.rows.max(130);
        b.shape.dim = 24;
        let (m, d, l) = (b.shape.rows, b.shape.dim, b.shape.label_dim);
        b.features = (0..m * d)
            .map(|i| ((i * 7919) % 97) as f64 / 48.0 - 1.0)
            .collect();
        b.labels.resize(m * l, 3.0);
        b.preds.resize(m * l, 3.25);
        if let Some(w) = &mut b.weights {
            w.resize(m, 1.5);
        }
        if b.has_near_ties(1e-5) {
            continue;
        }
        let want = Reference.compute(&b.batch(), &b.config).unwrap();
        agree(&on_gpu(&small, &b), &want, b.config.temperature).unwrap();
    }
}

/// The buffer-level API records into the caller's encoder on caller-owned
/// buffers and leaves the gradient and the loss there.
#[test]
fn record_on_caller_buffers() {
    let Some(gpu) = gpu() else { return };
    let shape = Shape {
        rows: 6,
        dim: 3,
        label_dim: 1,
    };
    let features: [f32; 18] = [
        1.0, 0.1, 0.0, 0.9, 0.2, 0.1, 0.2, 1.0, 0.0, 1.0, 0.0, 0.1, 0.8, 0.3, 0.0, 0.1, 0.9, 0.2,
    ];
    let labels = [20.0f32, 21.0, 60.0, 20.0, 21.0, 60.0];
    let preds = [30.0f32, 30.4, 30.8, 30.1, 30.5, 30.9];
    let config = Config::official_agedb();
    let want = Reference
        .compute(
            &Batch::new(shape, &features, &labels, &preds, None).unwrap(),
            &config,
        )
        .unwrap();

    let device = gpu.device();
    use wgpu::BufferUsages as U;
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
    let grad = init("grad", &[7.0; 18], U::STORAGE | U::COPY_DST | U::COPY_SRC);
    let loss = init("loss", &[0.0], U::COPY_DST | U::COPY_SRC);
    let mut encoder = device.create_command_encoder(&Default::default());
    let buffers = GpuBuffers {
        features: f.slice(..),
        labels: y.slice(..),
        preds: p.slice(..),
        weights: None,
        grad_features: grad.slice(..),
        loss: loss.slice(..),
    };
    gpu.record(&mut encoder, shape, buffers, &config).unwrap();
    let got = submit_and_read(gpu, encoder, &[(&grad, 72), (&loss, 4)]);
    approx::assert_relative_eq!(got[18], want.loss, max_relative = 1e-5, epsilon = 1e-5);
    let scale = want
        .grad_features
        .iter()
        .fold(0.0f32, |a, b| a.max(b.abs()));
    for (g, w) in got[..18].iter().zip(&want.grad_features) {
        approx::assert_abs_diff_eq!(g, w, epsilon = 2e-3 * scale + 1e-6);
    }

    // A buffer without the needed usage is refused before anything is recorded.
    let bad = GpuBuffers {
        grad_features: f.slice(..),
        ..buffers
    };
    assert_refused(gpu, shape, bad, &config, "grad_features");
}

/// Submits `encoder` with copies of each `(buffer, bytes)` appended, and
/// reads the copies back, one after the other.
fn submit_and_read(
    gpu: &GpuConr,
    mut encoder: wgpu::CommandEncoder,
    sources: &[(&wgpu::Buffer, u64)],
) -> Vec<f32> {
    let device = gpu.device();
    let size = sources.iter().map(|(_, bytes)| bytes).sum();
    let read = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("read"),
        size,
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let mut at = 0;
    for &(buffer, bytes) in sources {
        encoder.copy_buffer_to_buffer(buffer, 0, &read, at, bytes);
        at += bytes;
    }
    gpu.queue().submit([encoder.finish()]);
    read.map_async(wgpu::MapMode::Read, .., |r| r.unwrap());
    device.poll(wgpu::PollType::wait_indefinitely()).unwrap();
    let words = bytemuck::cast_slice(&read.get_mapped_range(..).unwrap()).to_vec();
    read.unmap();
    words
}

/// `record` refuses `buffers`, naming `what`.
fn assert_refused(
    gpu: &GpuConr,
    shape: Shape,
    buffers: GpuBuffers<'_>,
    config: &Config,
    what: &str,
) {
    let mut encoder = gpu.device().create_command_encoder(&Default::default());
    let err = gpu.record(&mut encoder, shape, buffers, config);
    assert!(
        matches!(&err, Err(GpuError::BadBuffer { what: w, .. }) if *w == what),
        "{err:?}"
    );
}

/// Tensors sub-allocated from one buffer, as a framework's memory pool hands
/// them out: every input and output a slice at its own aligned offset, the
/// labels in the same buffer as the gradient the backward kernel writes.
/// A slice that starts off the storage alignment is refused.
#[test]
fn record_on_slices_of_one_shared_buffer() {
    let Some(gpu) = gpu() else { return };
    let shape = Shape {
        rows: 70,
        dim: 5,
        label_dim: 2,
    };
    let (m, d, l) = (shape.rows, shape.dim, shape.label_dim);
    let features: Vec<f32> = (0..m * d)
        .map(|i| ((i * 7919 % 1009) as f32 / 1009.0) - 0.5)
        .collect();
    let labels: Vec<f32> = (0..m * l).map(|i| [20.0, 21.0, 40.0][i % 3]).collect();
    let preds: Vec<f32> = labels.iter().map(|y| 30.0 + 0.1 * y).collect();
    let weights: Vec<f32> = (0..m).map(|j| 0.5 + (j % 4) as f32).collect();
    let config = Config::official_agedb();
    let batch = Batch::new(shape, &features, &labels, &preds, Some(&weights)).unwrap();
    let want = widen(Reference.compute(&batch, &config).unwrap());

    let device = gpu.device();
    let align = u64::from(device.limits().min_storage_buffer_offset_alignment);
    // Slots in one buffer: loss, features, labels, grad, preds, weights.
    let sizes = [4, m * d * 4, m * l * 4, m * d * 4, m * l * 4, m * 4].map(|s| s as u64);
    let mut offsets = [0u64; 6];
    let mut end = 0u64;
    for (slot, size) in sizes.iter().enumerate() {
        offsets[slot] = end.next_multiple_of(align) + align;
        end = offsets[slot] + size;
    }
    use wgpu::BufferUsages as U;
    let pool = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("pool"),
        size: end,
        usage: U::STORAGE | U::COPY_SRC | U::COPY_DST,
        mapped_at_creation: false,
    });
    let queue = gpu.queue();
    queue.write_buffer(&pool, offsets[1], bytemuck::cast_slice(&features));
    queue.write_buffer(&pool, offsets[2], bytemuck::cast_slice(&labels));
    queue.write_buffer(&pool, offsets[4], bytemuck::cast_slice(&preds));
    queue.write_buffer(&pool, offsets[5], bytemuck::cast_slice(&weights));
    let slot = |i: usize| pool.slice(offsets[i]..offsets[i] + sizes[i]);
    let buffers = GpuBuffers {
        features: slot(1),
        labels: slot(2),
        preds: slot(4),
        weights: Some(slot(5)),
        grad_features: slot(3),
        loss: slot(0),
    };
    let mut encoder = device.create_command_encoder(&Default::default());
    gpu.record(&mut encoder, shape, buffers, &config).unwrap();
    let words = submit_and_read(gpu, encoder, &[(&pool, end)]);
    let at = |i: usize, n: usize| &words[offsets[i] as usize / 4..][..n];
    let got = Output {
        loss: f64::from(at(0, 1)[0]),
        grad_features: at(3, m * d).iter().map(|&g| f64::from(g)).collect(),
        ..want.clone()
    };
    agree(&got, &want, config.temperature).unwrap();
    // The inputs are untouched.
    assert_eq!(at(2, m * l), &labels[..]);
    assert_eq!(at(1, m * d), &features[..]);

    if align > 4 {
        let skewed = GpuBuffers {
            features: pool.slice(offsets[1] + 4..offsets[1] + 4 + sizes[1]),
            ..buffers
        };
        assert_refused(gpu, shape, skewed, &config, "features");
    }
}

/// Errors leave the context usable, and absurd sizes are refused up front.
#[test]
fn errors_do_not_poison_the_context() {
    let Some(gpu) = gpu() else { return };
    let shape = Shape {
        rows: 2,
        dim: 1,
        label_dim: 1,
    };
    let batch = Batch::new(shape, &[1.0f32, 2.0], &[1.0, 5.0], &[1.0, 1.5], None).unwrap();
    let cold = Config {
        temperature: 0.0,
        ..Config::paper()
    };
    assert!(matches!(
        gpu.compute(&batch, &cold),
        Err(GpuError::Input(_))
    ));
    let huge = Shape {
        rows: 100_000_000,
        dim: 512,
        label_dim: 1,
    };
    let mut encoder = gpu.device().create_command_encoder(&Default::default());
    let dummy = gpu.device().create_buffer(&wgpu::BufferDescriptor {
        label: Some("dummy"),
        size: 4,
        usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let buffers = GpuBuffers {
        features: dummy.slice(..),
        labels: dummy.slice(..),
        preds: dummy.slice(..),
        weights: None,
        grad_features: dummy.slice(..),
        loss: dummy.slice(..),
    };
    let err = gpu.record(&mut encoder, huge, buffers, &Config::paper());
    assert!(matches!(err, Err(GpuError::TooLarge { .. })), "{err:?}");
    let small = Shape {
        rows: 8,
        dim: 4,
        label_dim: 1,
    };
    let err = gpu.record(&mut encoder, small, buffers, &Config::paper());
    assert!(
        matches!(
            err,
            Err(GpuError::BadBuffer {
                what: "features",
                ..
            })
        ),
        "{err:?}"
    );
    // A device that allows 64 KiB per binding cannot hold the per-row state of 4,096 rows.
    let tight = GpuConr::new().unwrap().with_max_binding_bytes(1 << 16);
    let rows = 4096;
    let (f, y) = (vec![0.5f32; rows], vec![1.0f32; rows]);
    let many = Batch::new(
        Shape {
            rows,
            dim: 1,
            label_dim: 1,
        },
        &f,
        &y,
        &y,
        None,
    )
    .unwrap();
    let err = tight.compute(&many, &Config::paper());
    assert!(
        matches!(
            err,
            Err(GpuError::TooLarge {
                what: "the row statistics",
                ..
            })
        ),
        "{err:?}"
    );
    assert!(
        tight.compute(&batch, &Config::paper()).is_ok(),
        "a refused call leaves the context usable"
    );
    let out = gpu.compute(&batch, &Config::paper()).unwrap();
    assert!(out.loss.is_finite());
}

/// `GpuConr` is shared across threads; calls take turns and agree.
#[test]
fn calls_from_several_threads_agree() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<GpuConr>();
    let Some(gpu) = gpu() else { return };
    let shape = Shape {
        rows: 8,
        dim: 4,
        label_dim: 1,
    };
    let features: Vec<f32> = (0..32).map(|i| ((i * 7) % 11) as f32 - 5.0).collect();
    let labels: Vec<f32> = (0..8).map(|i| (i % 4) as f32).collect();
    let preds: Vec<f32> = (0..8).map(|i| 1.5 + (i % 2) as f32 * 0.5).collect();
    let results: Vec<Output<f32>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| {
                s.spawn(|| {
                    let batch = Batch::new(shape, &features, &labels, &preds, None).unwrap();
                    gpu.compute(&batch, &Config::paper()).unwrap()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for r in &results[1..] {
        assert_eq!(r, &results[0]);
    }
}

/// Repeated calls reuse the cached bind groups; switching between batches with
/// and without weights (same shape) rebinds them.
#[test]
fn repeated_calls_with_and_without_weights() {
    let Some(gpu) = gpu() else { return };
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let b =
        proptest::strategy::ValueTree::current(&any_batch(64, 8).new_tree(&mut runner).unwrap());
    let mut with = b.clone();
    with.weights = Some((0..b.shape.rows).map(|j| 0.5 + (j % 4) as f64).collect());
    let mut without = b.clone();
    without.weights = None;
    for case in [&with, &without, &with, &with, &without] {
        if case.has_near_ties(1e-5) || !case.row_norms_above(0.05) {
            return;
        }
        let want = Reference.compute(&case.batch(), &case.config).unwrap();
        agree(&on_gpu(gpu, case), &want, case.config.temperature).unwrap();
    }
}

/// The data-parallel protocol on the GPU's row phases: the workers that own
/// `slices` (in order, covering the batch), one after another.
fn sharded_on_gpu(
    gpu: &GpuConr,
    b: &RandomBatch,
    slices: &[std::ops::Range<usize>],
) -> Result<Output<f64>, GpuError> {
    let small = b.convert::<f32>();
    let batch = small.batch();
    let mut outcomes = Vec::with_capacity(b.shape.rows);
    for slice in slices {
        outcomes.extend(gpu.forward_rows(&batch, &b.config, slice.clone())?);
    }
    let mut part = conr_core::Part {
        loss: 0.0,
        grad_features: Vec::new(),
    };
    for slice in slices {
        let mine = gpu.backward_rows(&batch, &b.config, slice.clone(), &outcomes)?;
        part.loss += mine.loss;
        part.grad_features.extend(mine.grad_features);
    }
    Ok(widen(Output::from_part(part, &outcomes)))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, max_global_rejects: 100_000, ..ProptestConfig::default() })]

    /// W in {1, 2, 3, 7} workers on the GPU's row phases give the reference's
    /// loss and gradient, in one chunk and in several.
    #[test]
    fn gpu_row_phases_equal_the_reference(b in any_batch(200, 24), w in prop::sample::select(vec![1usize, 2, 3, 7])) {
        let Some(gpu) = dense_gpu() else { return Ok(()) };
        prop_assume!(b.row_norms_above(0.05) && !b.has_near_ties(1e-5));
        let want = Reference.compute(&b.batch(), &b.config).unwrap();
        let slices = conr_cpu::even_slices(b.shape.rows, w);
        agree(&sharded_on_gpu(gpu, &b, &slices).unwrap(), &want, b.config.temperature)?;
        let chunked = chunked_gpu();
        agree(&sharded_on_gpu(chunked, &b, &slices).unwrap(), &want, b.config.temperature)?;
    }
}

/// A context whose chunks hold 128 rows of 24 features (more of narrower ones).
fn chunked_gpu() -> &'static GpuConr {
    static CHUNKED: std::sync::OnceLock<GpuConr> = std::sync::OnceLock::new();
    CHUNKED.get_or_init(|| GpuConr::new().unwrap().with_max_binding_bytes(128 * 24 * 4))
}

#[test]
fn gpu_row_phases_refuse_bad_rows_and_outcomes() {
    let Some(gpu) = gpu() else { return };
    let shape = Shape {
        rows: 4,
        dim: 2,
        label_dim: 1,
    };
    let f = [1.0, 0.1, 0.9, 0.2, 0.1, 1.0, 0.2, 0.8];
    let (y, p) = ([20.0, 20.5, 60.0, 60.5], [40.0, 40.2, 40.4, 40.1]);
    let batch = Batch::new(shape, &f, &y, &p, None).unwrap();
    let config = Config::official_agedb();
    assert!(gpu.forward_rows(&batch, &config, 2..5).is_err());
    let outcomes = gpu.forward_rows(&batch, &config, 0..4).unwrap();
    assert_eq!(gpu.forward_rows(&batch, &config, 1..1).unwrap().len(), 0);
    assert!(
        gpu.backward_rows(&batch, &config, 0..2, &outcomes[..3])
            .is_err()
    );
    let part = gpu.backward_rows(&batch, &config, 1..3, &outcomes).unwrap();
    assert_eq!(part.grad_features.len(), 4);
}
