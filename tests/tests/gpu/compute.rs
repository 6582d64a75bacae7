//! The WGSL engine against the fixtures and the CPU reference, through the
//! core's engine interface. On CI this runs on lavapipe (Mesa's software
//! Vulkan), about a thousand times slower than a real GPU, so the batches
//! stay small.

use conr_core::band::TilePlan;
use conr_core::{Batch, Config, Engine, Error, Inputs, Output, Shape};
use conr_cpu::Reference;
use conr_tests::budget::{F32_FIXTURE, GPU_VS_CPU, scaled_by_inv_temperature};
use conr_tests::fixtures::{check_runner, f32_batch, widen};
use conr_tests::gpu::{band_gpu, chunked_gpu, dense_gpu, gpu};
use conr_tests::random::{RandomBatch, any_batch, band_breaker};
use conr_wgpu::GpuConr;
use proptest::prelude::*;
use proptest::strategy::ValueTree;

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
        let config = case.config.to_config().map_err(|e| e.to_string())?;
        gpu.compute(&data.batch(), &config)
            .map(widen)
            .map_err(|e| e.to_string())
    });
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The GPU takes f64 batches too, rounded to f32 once, and says so.
#[test]
fn f64_batches_are_rounded_once_and_reported() {
    let Some(gpu) = gpu() else { return };
    assert_eq!(Engine::<f64>::precision(gpu), conr_core::Precision::F32);
    let failures = check_runner("gpu f64 rounded", &F32_FIXTURE, |case| {
        let config = case.config.to_config().map_err(|e| e.to_string())?;
        let batch = case.batch().map_err(|e| e.to_string())?;
        gpu.compute(&batch, &config).map_err(|e| e.to_string())
    });
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // A value that does not fit in f32 is refused, never computed as infinity.
    let shape = Shape {
        rows: 2,
        dim: 1,
        label_dim: 1,
    };
    let inputs = Inputs {
        features: &[1.0, 2.0],
        labels: &[1.0, 1e300],
        preds: &[0.0, 0.0],
        eta: None,
    };
    let wide = Batch::new(shape, inputs).unwrap();
    assert_eq!(
        gpu.compute(&wide, &Config::paper()).unwrap_err(),
        Error::NonFinite {
            what: "labels",
            row: 1
        }
    );
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

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, max_global_rejects: 100_000, ..ProptestConfig::default() })]

    /// The band plan on the GPU against the dense plan on the same device, on
    /// batches chosen to break a planner, through `compute` (the host builds
    /// the plan) and through `record` (the device builds it): the same
    /// anchors and counts, and the same loss and gradient up to f32
    /// summation order.
    #[test]
    fn gpu_band_matches_gpu_dense(b in band_breaker(200, 8)) {
        let (Some(band), Some(dense)) = (band_gpu(), dense_gpu()) else { return Ok(()) };
        prop_assume!(b.row_norms_above(0.05));
        let small = b.convert::<f32>();
        let want = widen(dense.compute(&small.batch(), &b.config).expect("the GPU computes"));
        let got = widen(band.compute(&small.batch(), &b.config).expect("the GPU computes"));
        agree(&got, &want, b.config.temperature)?;
        let (recorded, plan) = band.compute_recorded(&small.batch(), &b.config).expect("the GPU records");
        let has_band = b.config.label_metric != conr_core::LabelMetric::Angular;
        prop_assert_eq!(plan.tiles == TilePlan::Band, has_band);
        agree(&widen(recorded), &want, b.config.temperature)?;
        // And the reference, on the same f32 values.
        let reference = widen(Reference.compute(&small.batch(), &b.config).expect("the reference computes"));
        agree(&want, &reference, b.config.temperature)?;
    }
}

/// An AgeDB-like batch really takes the band: here a quarter of the tiles
/// (both sides together), against every tile for the dense plan; and the
/// plan each reports is the one it takes.
#[test]
fn the_band_plan_skips_tiles_on_agedb_like_batches() {
    let (Some(gpu), Some(dense)) = (gpu(), dense_gpu()) else {
        return;
    };
    let owned = conr_tests::random::agedb_like::<f32>(1024, 4);
    let batch = owned.batch();
    let config = Config::official_agedb();
    let plan = gpu.plan(&batch, &config).unwrap();
    assert_eq!(plan.tiles, TilePlan::Band);
    assert!(plan.tile_share < 0.3, "the band visits {plan:?}");
    assert_eq!(
        dense.plan(&batch, &config).unwrap(),
        conr_core::PlanReport::DENSE
    );
    // Under `angular` there is no band, and the report says so.
    let angular = Config {
        label_metric: conr_core::LabelMetric::Angular,
        ..config
    };
    assert_eq!(
        gpu.plan(&batch, &angular).unwrap(),
        conr_core::PlanReport::DENSE
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
    let Some(chunked) = chunked_gpu() else { return };
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let (mut checked, mut drawn) = (0, 0);
    while checked < 6 && drawn < 60 {
        drawn += 1;
        let mut b = any_batch(200, 24).new_tree(&mut runner).unwrap().current();
        b.shape.rows = b.shape.rows.max(130);
        b.shape.dim = 24;
        let (m, d, l) = (b.shape.rows, b.shape.dim, b.shape.label_dim);
        b.features = (0..m * d)
            .map(|i| ((i * 7919) % 97) as f64 / 48.0 - 1.0)
            .collect();
        b.labels.resize(m * l, 3.0);
        b.preds.resize(m * l, 3.25);
        if let Some(w) = &mut b.eta {
            w.resize(m, 1.5);
        }
        // Distances within 1e-5 of a threshold may round either way in f32.
        if b.has_near_ties(1e-5) {
            continue;
        }
        let want = Reference.compute(&b.batch(), &b.config).unwrap();
        agree(&on_gpu(chunked, &b), &want, b.config.temperature).unwrap();
        checked += 1;
    }
    assert!(
        checked >= 4,
        "only {checked} of 8 batches were away from ties"
    );
}

/// Few rows of many features (AgeDB's 128 × 2048 among them) take the dense
/// plan's feature ranges: each logit tile summed in ranges of features,
/// kept, and read by both passes. The reference's loss and gradient, through
/// `compute` and through `record`.
#[test]
fn few_rows_of_many_features_match_the_reference() {
    let Some(dense) = dense_gpu() else { return };
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    for (m, d) in [(64, 256), (100, 1024), (128, 2048), (130, 1280)] {
        let (mut checked, mut drawn) = (0, 0);
        while checked < 2 && drawn < 40 {
            drawn += 1;
            let mut b = any_batch(8, 4).new_tree(&mut runner).unwrap().current();
            let l = b.shape.label_dim;
            b.shape.rows = m;
            b.shape.dim = d;
            b.features = (0..m * d)
                .map(|i| ((i * 7919) % 193) as f64 / 96.0 - 1.0)
                .collect();
            b.labels = (0..m * l).map(|i| 1.0 + ((i * 37) % 11) as f64).collect();
            b.preds = (0..m * l)
                .map(|i| 1.0 + ((i * 37) % 11) as f64 + ((i * 13) % 7) as f64 * 0.4 - 1.2)
                .collect();
            if let Some(w) = &mut b.eta {
                *w = (0..m).map(|i| 0.5 + (i % 5) as f64 * 0.25).collect();
            }
            // Distances within 1e-5 of a threshold may round either way in f32.
            if b.has_near_ties(1e-5) {
                continue;
            }
            let want = Reference.compute(&b.batch(), &b.config).unwrap();
            // A batch without anchors checks little.
            if want.loss == 0.0 {
                continue;
            }
            agree(&on_gpu(dense, &b), &want, b.config.temperature).unwrap();
            let small = b.convert::<f32>();
            let (recorded, plan) = dense
                .compute_recorded(&small.batch(), &b.config)
                .expect("the GPU records");
            assert_eq!(plan.tiles, TilePlan::Dense);
            agree(&widen(recorded), &want, b.config.temperature).unwrap();
            checked += 1;
        }
        assert!(
            checked >= 1,
            "{m}x{d}: no batch with anchors away from ties"
        );
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
    let inputs = Inputs {
        features: &[1.0f32, 2.0],
        labels: &[1.0, 5.0],
        preds: &[1.0, 1.5],
        eta: None,
    };
    let batch = Batch::new(shape, inputs).unwrap();
    let cold = Config {
        temperature: 0.0,
        ..Config::paper()
    };
    assert!(matches!(
        gpu.compute(&batch, &cold),
        Err(Error::InvalidConfig {
            field: "temperature",
            ..
        })
    ));
    // A device that allows 64 KiB per binding cannot hold the per-row state of 4,096 rows.
    let tight = GpuConr::new().unwrap().with_max_binding_bytes(1 << 16);
    let rows = 4096;
    let (f, y) = (vec![0.5f32; rows], vec![1.0f32; rows]);
    let shape = Shape {
        rows,
        dim: 1,
        label_dim: 1,
    };
    let many = Batch::new(
        shape,
        Inputs {
            features: &f,
            labels: &y,
            preds: &y,
            eta: None,
        },
    )
    .unwrap();
    let err = tight.compute(&many, &Config::paper());
    assert!(
        matches!(
            err,
            Err(Error::TooLarge {
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
                    let inputs = Inputs {
                        features: &features,
                        labels: &labels,
                        preds: &preds,
                        eta: None,
                    };
                    let batch = Batch::new(shape, inputs).unwrap();
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
/// and without eta (same shape) rebinds them.
#[test]
fn repeated_calls_with_and_without_eta() {
    let Some(gpu) = gpu() else { return };
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    // The first batch away from ties and from the origin.
    let b = std::iter::repeat_with(|| any_batch(64, 8).new_tree(&mut runner).unwrap().current())
        .take(50)
        .find(|b| !b.has_near_ties(1e-5) && b.row_norms_above(0.05))
        .expect("one in fifty random batches is away from ties");
    let mut with = b.clone();
    with.eta = Some((0..b.shape.rows).map(|j| 0.5 + (j % 4) as f64).collect());
    let mut without = b.clone();
    without.eta = None;
    for case in [&with, &without, &with, &with, &without] {
        let want = Reference.compute(&case.batch(), &case.config).unwrap();
        agree(&on_gpu(gpu, case), &want, case.config.temperature).unwrap();
    }
}
