//! The GPU's record path (`GpuConr::record`): ConR recorded into the
//! caller's encoder on caller-owned buffers, against the reference; calls
//! that keep their own config and shape however they are interleaved; and
//! refusals of buffers the kernels cannot use.

use conr_core::{Batch, Config, Engine, Error, Inputs, Output, Shape};
use conr_cpu::Reference;
use conr_tests::budget::{GPU_VS_CPU, scaled_by_inv_temperature};
use conr_tests::fixtures::widen;
use conr_tests::gpu::{DeviceBatch, gpu, read_buffers};
use conr_wgpu::{GpuBuffers, GpuConr};
use proptest::test_runner::TestCaseError;

fn agree(got: &Output<f64>, want: &Output<f64>, temperature: f64) -> Result<(), TestCaseError> {
    conr_tests::budget::agree(
        &scaled_by_inv_temperature(GPU_VS_CPU, temperature),
        got,
        want,
    )
}

/// A batch of `rows` rows in label groups, with eta, as f32 host data.
struct HostData {
    shape: Shape,
    features: Vec<f32>,
    labels: Vec<f32>,
    preds: Vec<f32>,
    eta: Vec<f32>,
}

impl HostData {
    fn new(rows: usize, dim: usize, label_dim: usize) -> Self {
        let features = (0..rows * dim)
            .map(|i| ((i * 7919 % 1009) as f32 / 1009.0) - 0.5)
            .collect();
        let labels: Vec<f32> = (0..rows * label_dim)
            .map(|i| [20.0, 21.0, 40.0, 41.5][(i / label_dim) % 4] + (i % label_dim) as f32)
            .collect();
        let preds = labels.iter().map(|y| 30.0 + 0.1 * y).collect();
        let eta = (0..rows).map(|j| 0.5 + (j % 4) as f32).collect();
        Self {
            shape: Shape {
                rows,
                dim,
                label_dim,
            },
            features,
            labels,
            preds,
            eta,
        }
    }

    fn batch(&self) -> Batch<'_, f32> {
        let inputs = Inputs {
            features: &self.features,
            labels: &self.labels,
            preds: &self.preds,
            eta: Some(&self.eta),
        };
        Batch::new(self.shape, inputs).unwrap()
    }

    fn on_device(&self, gpu: &GpuConr) -> DeviceBatch {
        DeviceBatch::new(
            gpu,
            self.shape,
            &self.features,
            &self.labels,
            &self.preds,
            Some(&self.eta),
        )
        .expect("the batch fits the device")
    }

    fn reference(&self, config: &Config) -> Output<f64> {
        widen(Reference.compute(&self.batch(), config).unwrap())
    }
}

/// `record` refuses `buffers`, naming `what`.
fn assert_refused(gpu: &GpuConr, shape: Shape, buffers: GpuBuffers<'_>, what: &str) {
    let mut encoder = gpu.device().create_command_encoder(&Default::default());
    let err = gpu.record(&mut encoder, shape, buffers, &Config::official_agedb());
    assert!(
        matches!(&err, Err(Error::BadBuffer { what: w, .. }) if *w == what),
        "{err:?}"
    );
}

/// The record path leaves the gradient, the loss and a clean status in the
/// caller's buffers, equal to the reference.
#[test]
fn record_on_caller_buffers() {
    let Some(gpu) = gpu() else { return };
    let data = HostData::new(6, 3, 1);
    let config = Config::official_agedb();
    let on_device = data.on_device(gpu);
    let got = on_device.run(gpu, &config).unwrap();
    assert_eq!(got.status.error(), None);
    let want = data.reference(&config);
    agree(&widen(got.output().unwrap()), &want, config.temperature).unwrap();

    // A buffer without the needed usage is refused before anything is recorded.
    let bad = GpuBuffers {
        grad_features: on_device.buffers().features,
        ..on_device.buffers()
    };
    assert_refused(gpu, data.shape, bad, "grad_features");
}

/// Records in one encoder with different configs and shapes (two of them
/// back to back on one shape, so that they share working buffers), and host
/// calls from another thread between the records and the submission, one
/// of them on the last record's shape: each call computes with its own
/// config and shape.
#[test]
fn recorded_calls_keep_their_own_config_and_shape() {
    let Some(gpu) = gpu() else { return };
    let calls = [
        (HostData::new(70, 5, 2), Config::official_agedb()),
        (
            HostData::new(70, 5, 2),
            Config {
                label_metric: conr_core::LabelMetric::L2,
                reduction: conr_core::Reduction::Sum,
                ..Config::paper()
            },
        ),
        (
            HostData::new(130, 3, 1),
            Config {
                temperature: 0.3,
                threshold: 0.5,
                ..Config::official_nyud2()
            },
        ),
    ];
    let on_device: Vec<DeviceBatch> = calls.iter().map(|(d, _)| d.on_device(gpu)).collect();
    let mut encoder = gpu.device().create_command_encoder(&Default::default());
    for (b, (_, config)) in on_device.iter().zip(&calls) {
        b.record(gpu, &mut encoder, config).unwrap();
    }
    // Host calls from another thread, submitted before the encoder above:
    // one of another shape, one on the last record's shape and another config.
    let other = HostData::new(33, 4, 1);
    let hot = Config {
        temperature: 0.05,
        ..Config::official_agedb()
    };
    let host = std::thread::scope(|s| {
        s.spawn(|| {
            let first = gpu.compute(&other.batch(), &hot).unwrap();
            let second = gpu.compute(&calls[2].0.batch(), &Config::paper()).unwrap();
            (first, second)
        })
        .join()
        .unwrap()
    });
    gpu.queue().submit([encoder.finish()]);
    for (b, (data, config)) in on_device.iter().zip(&calls) {
        let want = data.reference(config);
        let got = b.read(gpu).unwrap();
        agree(&widen(got.output().unwrap()), &want, config.temperature).unwrap();
    }
    agree(&widen(host.0), &other.reference(&hot), hot.temperature).unwrap();
    agree(
        &widen(host.1),
        &calls[2].0.reference(&Config::paper()),
        Config::paper().temperature,
    )
    .unwrap();
}

/// Tensors sub-allocated from one buffer, as a framework's memory pool hands
/// them out: every input and output a slice at its own aligned offset, the
/// labels in the same buffer as the gradient the backward kernel writes.
/// A slice that starts off the storage alignment is refused.
#[test]
fn record_on_slices_of_one_shared_buffer() {
    let Some(gpu) = gpu() else { return };
    let data = HostData::new(70, 5, 2);
    let Shape {
        rows: m,
        dim: d,
        label_dim: l,
    } = data.shape;
    let config = Config::official_agedb();
    let want = data.reference(&config);

    let device = gpu.device();
    let align = u64::from(device.limits().min_storage_buffer_offset_alignment);
    // Slots in one buffer: loss, features, labels, grad, preds, eta, status.
    let sizes = [4, m * d * 4, m * l * 4, m * d * 4, m * l * 4, m * 4, 4].map(|s| s as u64);
    let mut offsets = [0u64; 7];
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
    queue.write_buffer(&pool, offsets[1], bytemuck::cast_slice(&data.features));
    queue.write_buffer(&pool, offsets[2], bytemuck::cast_slice(&data.labels));
    queue.write_buffer(&pool, offsets[4], bytemuck::cast_slice(&data.preds));
    queue.write_buffer(&pool, offsets[5], bytemuck::cast_slice(&data.eta));
    let slot = |i: usize| pool.slice(offsets[i]..offsets[i] + sizes[i]);
    let buffers = GpuBuffers {
        features: slot(1),
        labels: slot(2),
        preds: slot(4),
        eta: Some(slot(5)),
        grad_features: slot(3),
        loss: slot(0),
        status: Some(slot(6)),
        counts: None,
        tiles: None,
    };
    let mut encoder = device.create_command_encoder(&Default::default());
    gpu.record(&mut encoder, data.shape, buffers, &config)
        .unwrap();
    queue.submit([encoder.finish()]);
    let words = read_buffers(gpu, &[(&pool, end)]);
    let at = |i: usize, n: usize| &words[offsets[i] as usize / 4..][..n];
    let got = Output {
        loss: f64::from(at(0, 1)[0]),
        grad_features: at(3, m * d).iter().map(|&g| f64::from(g)).collect(),
        ..want.clone()
    };
    agree(&got, &want, config.temperature).unwrap();
    assert_eq!(at(6, 1)[0].to_bits(), 0, "the values obey every rule");
    // The inputs are untouched.
    assert_eq!(at(2, m * l), &data.labels[..]);
    assert_eq!(at(1, m * d), &data.features[..]);

    if align > 4 {
        let skewed = GpuBuffers {
            features: pool.slice(offsets[1] + 4..offsets[1] + 4 + sizes[1]),
            ..buffers
        };
        assert_refused(gpu, data.shape, skewed, "features");
    }
}

/// An AgeDB-like batch through `record` takes the band the device builds,
/// and visits a fraction of the tiles (counted on the device), equal to the
/// host's plan of the same batch and to the reference; the dense context
/// visits every tile.
#[test]
fn record_takes_the_device_band_on_agedb_like_batches() {
    let (Some(gpu), Some(dense)) = (gpu(), conr_tests::gpu::dense_gpu()) else {
        return;
    };
    let owned = conr_tests::random::agedb_like::<f32>(1024, 4);
    let (batch, shape) = (owned.batch(), owned.batch().shape());
    let config = Config::official_agedb();
    assert!(gpu.record_uses_band(shape, &config).unwrap());
    let (got, plan) = gpu.compute_recorded(&batch, &config).unwrap();
    assert_eq!(plan, gpu.plan(&batch, &config).unwrap(), "the host's plan");
    assert_eq!(plan.tiles, conr_core::band::TilePlan::Band);
    assert!(plan.tile_share < 0.3, "record visits {plan:?}");
    let want = widen(Reference.compute(&batch, &config).unwrap());
    agree(&widen(got), &want, config.temperature).unwrap();
    let (_, every) = dense.compute_recorded(&batch, &config).unwrap();
    assert_eq!(every, conr_core::PlanReport::DENSE);
}

/// Shapes the device cannot hold are refused before the buffers are looked
/// at, and buffers too small for the shape are refused by name.
#[test]
fn impossible_shapes_and_small_buffers_are_refused() {
    let Some(gpu) = gpu() else { return };
    let small = HostData::new(2, 1, 1).on_device(gpu);
    let mut encoder = gpu.device().create_command_encoder(&Default::default());
    let huge = Shape {
        rows: 100_000_000,
        dim: 512,
        label_dim: 1,
    };
    let err = gpu.record(&mut encoder, huge, small.buffers(), &Config::paper());
    assert!(matches!(err, Err(Error::TooLarge { .. })), "{err:?}");
    let wider = Shape {
        rows: 8,
        dim: 4,
        label_dim: 1,
    };
    assert_refused(gpu, wider, small.buffers(), "features");
}

/// A batch larger than the device's largest buffer is an `Err` before any
/// buffer exists, never wgpu's uncaptured-error panic, and the context
/// keeps working: on a device whose buffers are held to 64 KiB.
#[test]
fn an_oversized_device_batch_is_an_error() {
    if gpu().is_none() {
        return;
    }
    let limit = 1u64 << 16;
    let (device, queue) = conr_tests::gpu::own_device(|limits| wgpu::Limits {
        max_buffer_size: limit,
        ..limits
    });
    let small = GpuConr::from_device(device, queue).unwrap();
    // 128 rows of 256 features: 128 KiB of features.
    let big = HostData::new(128, 256, 1);
    let err = DeviceBatch::new(
        &small,
        big.shape,
        &big.features,
        &big.labels,
        &big.preds,
        Some(&big.eta),
    )
    .unwrap_err();
    assert_eq!(
        err,
        Error::TooLarge {
            what: "the features buffer",
            needed: 128 * 256 * 4,
            limit,
        }
    );
    let fits = HostData::new(64, 8, 1);
    let config = Config::official_agedb();
    let got = fits.on_device(&small).run(&small, &config).unwrap();
    agree(
        &widen(got.output().unwrap()),
        &fits.reference(&config),
        config.temperature,
    )
    .unwrap();
}
