//! The band plan the device builds for `record` (`GpuConr::device_plan`),
//! against the host's `BandPlan`: the same order on adversarial keys, the
//! same runs on ordinary data, and runs that hold the host's where rounding
//! could move a bound. On lavapipe in CI.

use conr_core::band::{BandPlan, Side};
use conr_core::{Batch, Config, OwnedBatch, Shape};
use conr_tests::gpu::band_gpu;
use conr_wgpu::{DevicePlan, GpuConr, TILE};

/// The device's plan of `batch`.
fn on_device(gpu: &GpuConr, batch: &Batch<'_, f32>, config: &Config) -> DevicePlan {
    gpu.device_plan(batch, config)
        .expect("the device plans")
        .expect("a batch with a band")
}

/// The host's plan of the same batch, in the same form.
fn on_host(batch: &Batch<'_, f32>, config: &Config) -> DevicePlan {
    let params = batch.check(config).unwrap();
    let rows = batch.rows();
    let (mut order, mut runs, mut tiles) = ([vec![], vec![]], [vec![], vec![]], 0);
    for (s, side) in [Side::Positives, Side::Negatives].into_iter().enumerate() {
        let (mut sorted, mut keys) = (vec![0u32; rows], vec![0.0f32; rows]);
        let plan = BandPlan::new(batch, &params, side, &mut sorted, &mut keys)
            .unwrap()
            .unwrap();
        runs[s] = plan.block_columns(TILE as usize).collect();
        tiles += plan.tiles(TILE as usize, TILE as usize) as u32;
        order[s] = plan.order().to_vec();
    }
    DevicePlan { order, runs, tiles }
}

/// A batch of these labels and predictions, `label_dim` wide, with features
/// that have no zero row.
fn batch_of(labels: Vec<f32>, preds: Vec<f32>, label_dim: usize) -> OwnedBatch<f32> {
    let rows = labels.len() / label_dim;
    let dim = 3;
    let features = (0..rows * dim)
        .map(|i| ((i * 7919) % 101) as f32 / 50.0 - 0.99)
        .collect();
    let shape = Shape {
        rows,
        dim,
        label_dim,
    };
    OwnedBatch::new(shape, features, labels, preds, None).unwrap()
}

/// A deterministic stream of values in [0, 1).
fn uniform(seed: u64) -> impl FnMut() -> f32 {
    let mut state = seed;
    move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 40) as f32 / (1u64 << 24) as f32
    }
}

/// Keys that break a sort: ties in runs, ±0, ±1e30, the smallest
/// magnitudes, and values a unit in the last place apart.
fn adversarial(rows: usize, seed: u64) -> Vec<f32> {
    let mut next = uniform(seed);
    let pool = [
        0.0,
        -0.0,
        1e30,
        -1e30,
        f32::MIN_POSITIVE,
        -f32::MIN_POSITIVE,
        1e-40,
        -1e-40,
        1.0,
        1.0 + f32::EPSILON,
        1.0 - f32::EPSILON / 2.0,
        42.0,
        f32::MAX / 4.0,
        -f32::MAX / 4.0,
    ];
    (0..rows)
        .map(|_| {
            if next() < 0.7 {
                pool[(next() * pool.len() as f32) as usize % pool.len()]
            } else {
                (next() - 0.5) * 200.0
            }
        })
        .collect()
}

/// Every host run is inside the device's (an empty one anywhere).
fn assert_holds(device: &DevicePlan, host: &DevicePlan, what: &str) {
    for s in 0..2 {
        assert_eq!(device.runs[s].len(), host.runs[s].len(), "{what}: side {s}");
        for (b, (d, h)) in device.runs[s].iter().zip(&host.runs[s]).enumerate() {
            let holds = h.is_empty() || (d.start <= h.start && h.end <= d.end);
            assert!(
                holds,
                "{what}: side {s} block {b}: device {d:?} misses host {h:?}"
            );
        }
    }
}

#[test]
fn the_device_order_is_the_hosts_on_adversarial_keys() {
    let Some(gpu) = band_gpu() else { return };
    let config = Config::paper();
    for rows in [1, 63, 64, 65, 511, 512, 513, 4097] {
        for seed in [1, 2] {
            let owned = batch_of(adversarial(rows, seed), adversarial(rows, seed + 100), 1);
            let batch = owned.batch();
            let (device, host) = (on_device(gpu, &batch, &config), on_host(&batch, &config));
            let what = format!("{rows} rows, seed {seed}");
            assert_eq!(device.order, host.order, "{what}");
            assert_holds(&device, &host, &what);
        }
    }
    // Two-wide labels sort by their first coordinate.
    let wide = adversarial(2 * 130, 9);
    let owned = batch_of(wide.clone(), wide, 2);
    let batch = owned.batch();
    assert_eq!(
        on_device(gpu, &batch, &config).order,
        on_host(&batch, &config).order
    );
}

#[test]
fn device_runs_are_the_hosts_on_ordinary_data() {
    let Some(gpu) = band_gpu() else { return };
    for (rows, seed) in [(70, 3), (1000, 4), (4097, 5)] {
        let mut next = uniform(seed);
        let labels: Vec<f32> = (0..rows).map(|_| (next() * 80.0 + 10.0).round()).collect();
        let preds: Vec<f32> = labels.iter().map(|y| y + (next() - 0.5) * 12.0).collect();
        let owned = batch_of(labels, preds, 1);
        for config in [Config::official_agedb(), Config::paper()] {
            let batch = owned.batch();
            let (device, host) = (on_device(gpu, &batch, &config), on_host(&batch, &config));
            assert_eq!(device, host, "{rows} rows");
        }
    }
}

/// A key just past the host's bound, inside the device's wider one, is the
/// one place the runs differ: the device's run holds the host's and that
/// key besides, on exactly the block whose bound it sits at.
#[test]
fn device_runs_hold_the_hosts_where_rounding_could_move_a_bound() {
    let Some(gpu) = band_gpu() else { return };
    let config = Config {
        threshold: 1.0,
        pred_threshold: Some(1.0),
        ..Config::paper()
    };
    let next_up = |x: f32| f32::from_bits(x.to_bits() + 1);
    let slack = conr_core::band::SLACK_ULPS as f32 * f32::EPSILON;
    let reach = 1.0f32 + slack;
    // Block 0: 64 rows at 50, whose host bound above is `above`.
    let high = 50.0f32;
    let above = high + reach + (high.abs() + reach) * slack;
    // Two units past it: outside the host's bound, well inside the device's.
    let beyond = next_up(next_up(above));
    let mut labels = vec![high; 64];
    labels.extend([above, beyond, 100.0]);
    let owned = batch_of(labels.clone(), labels, 1);
    let batch = owned.batch();
    let (device, host) = (on_device(gpu, &batch, &config), on_host(&batch, &config));
    assert_eq!(device.order, host.order);
    assert_holds(&device, &host, "the sliver");
    for s in 0..2 {
        // Sorted positions: the 64 rows at 50, `above`, `beyond`, 100.
        assert_eq!(
            host.runs[s][0],
            0..65,
            "side {s}: the host stops at `above`"
        );
        assert_eq!(
            device.runs[s][0],
            0..66,
            "side {s}: the device takes `beyond` too"
        );
        assert_eq!(
            device.runs[s][1], host.runs[s][1],
            "side {s}: block 1 is ordinary"
        );
    }
    assert_eq!(
        device.tiles, host.tiles,
        "the extra column stays in the same tiles"
    );
}

/// Where `record` would not take the band, there is no device plan.
#[test]
fn no_band_no_device_plan() {
    let Some(gpu) = band_gpu() else { return };
    let owned = batch_of(vec![1.0, 2.0, 3.0], vec![1.0, 2.0, 3.0], 1);
    let angular = Config {
        label_metric: conr_core::LabelMetric::Angular,
        ..Config::paper()
    };
    assert_eq!(gpu.device_plan(&owned.batch(), &angular).unwrap(), None);
}
