//! Data-parallel ConR (`conr_core::shard`): W workers, each owning a run of
//! rows, exchanging only their rows' outcomes, give the single-worker loss and
//! gradient, with anchors and counts exact, on every engine (the GPU's row
//! phases included), and the protocol refuses what does not add up.

use conr_core::band::TilePlan;
use conr_core::shard::{Header, compute_sharded, even_slices, gather, message_len, write_message};
use conr_core::{Batch, Config, Engine, Inputs, Shape};
use conr_cpu::{Fast, Reference};
use conr_tests::budget::{F64_VS_F64, GPU_VS_CPU, agree, scaled_by_inv_temperature};
use conr_tests::fixtures::widen;
use conr_tests::gpu::{chunked_gpu, dense_gpu, gpu};
use conr_tests::random::{any_batch, band_breaker};
use proptest::prelude::*;
use std::ops::Range;

/// `rows` cut at the given fractions: uneven runs, and empty ones where cuts coincide.
fn cut(rows: usize, fractions: &[f64]) -> Vec<Range<usize>> {
    let mut points: Vec<usize> = fractions
        .iter()
        .map(|f| (f * rows as f64) as usize)
        .collect();
    points.sort_unstable();
    let mut slices = Vec::new();
    let mut start = 0;
    for p in points.into_iter().chain([rows]) {
        slices.push(start..p.max(start));
        start = p.max(start);
    }
    slices
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, max_global_rejects: 100_000, ..ProptestConfig::default() })]

    /// W in {1, 2, 3, 7} even workers, on both engines and both plans.
    #[test]
    fn sharded_equals_single_worker(b in any_batch(200, 12), w in prop::sample::select(vec![1usize, 2, 3, 7])) {
        let batch = b.batch();
        let slices = even_slices(b.shape.rows, w);
        let want = Reference.compute(&batch, &b.config).unwrap();
        let reference = compute_sharded(&Reference, &batch, &b.config, &slices).unwrap();
        agree(&F64_VS_F64, &reference, &want)?;
        for plan in [TilePlan::Auto, TilePlan::Band, TilePlan::Dense] {
            let fast = Fast::new().with_plan(plan);
            let got = compute_sharded(&fast, &batch, &b.config, &slices).unwrap();
            agree(&F64_VS_F64, &got, &want)?;
        }
    }

    /// Uneven and empty slices, on batches made to break the band plan.
    #[test]
    fn uneven_and_empty_slices(b in band_breaker(150, 6), fractions in prop::collection::vec(0.0f64..1.0, 0..6)) {
        let batch = b.batch();
        let slices = cut(b.shape.rows, &fractions);
        let want = Reference.compute(&batch, &b.config).unwrap();
        let got = compute_sharded(&Fast::new().with_plan(TilePlan::Band), &batch, &b.config, &slices).unwrap();
        agree(&F64_VS_F64, &got, &want)?;
    }
}

#[test]
fn slices_are_checked() {
    assert_eq!(cut(10, &[0.5, 0.5, 0.0]), [0..0, 0..5, 5..5, 5..10]);
    assert_eq!(even_slices(3, 7).iter().filter(|s| s.is_empty()).count(), 4);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, max_global_rejects: 100_000, ..ProptestConfig::default() })]

    /// W in {1, 2, 3, 7} workers on the GPU's row phases give the reference's
    /// loss and gradient, in one chunk and in several: the same protocol
    /// through the same engine interface.
    #[test]
    fn gpu_workers_equal_the_reference(b in any_batch(200, 24), w in prop::sample::select(vec![1usize, 2, 3, 7])) {
        let (Some(dense), Some(chunked)) = (dense_gpu(), chunked_gpu()) else { return Ok(()) };
        prop_assume!(b.row_norms_above(0.05) && !b.has_near_ties(1e-5));
        let want = Reference.compute(&b.batch(), &b.config).unwrap();
        let small = b.convert::<f32>();
        let slices = even_slices(b.shape.rows, w);
        let budget = scaled_by_inv_temperature(GPU_VS_CPU, b.config.temperature);
        for gpu in [dense, chunked] {
            let got = compute_sharded(gpu, &small.batch(), &b.config, &slices).unwrap();
            agree(&budget, &widen(got), &want)?;
        }
    }
}

/// A small batch and its config, for the refusals below.
fn four_rows() -> (Shape, [f64; 8], [f64; 4], [f64; 4]) {
    let shape = Shape {
        rows: 4,
        dim: 2,
        label_dim: 1,
    };
    let f = [1.0, 0.1, 0.9, 0.2, 0.1, 1.0, 0.2, 0.8];
    (shape, f, [20.0, 20.5, 60.0, 60.5], [40.0, 40.2, 40.4, 40.1])
}

#[test]
fn missing_or_repeated_rows_and_foreign_configs_are_errors() {
    let (shape, f, y, p) = four_rows();
    let inputs = Inputs {
        features: &f,
        labels: &y,
        preds: &p,
        eta: None,
    };
    let batch = Batch::new(shape, inputs).unwrap();
    let config = Config::official_agedb();
    let header = Header::new(&config, shape);
    let message = |rows: Range<usize>, config: &Config| {
        let outcomes = Reference
            .forward_rows(&batch, config, rows.clone())
            .unwrap();
        let mut m = vec![0.0f64; message_len(outcomes.len())];
        write_message(&Header::new(config, shape), rows.start, &outcomes, &mut m).unwrap();
        m
    };
    let (a, b) = (message(0..2, &config), message(2..4, &config));
    let (a, b) = (a.as_slice(), b.as_slice());
    assert!(gather(&header, &[a, b]).is_ok());
    assert!(gather(&header, &[a]).is_err(), "rows 2..4 missing");
    assert!(gather(&header, &[a, a, b]).is_err(), "rows 0..2 twice");
    let paper = message(2..4, &Config::paper());
    assert!(gather(&header, &[a, &paper]).is_err(), "another config");
    assert!(
        gather(&header, &[a, &b[..b.len() - 1]]).is_err(),
        "a record cut short"
    );
    // Slices that do not cover the batch are refused too, on any engine.
    for engine in [&Reference as &dyn Engine<f64>, &Fast::new()] {
        let short = std::slice::from_ref(&(0..3));
        assert!(compute_sharded(engine, &batch, &config, short).is_err());
        assert!(compute_sharded(engine, &batch, &config, &[0..3, 2..4]).is_err());
        let long = std::slice::from_ref(&(0..5));
        assert!(compute_sharded(engine, &batch, &config, long).is_err());
    }
}

#[test]
fn gpu_row_phases_refuse_bad_rows_and_outcomes() {
    let Some(gpu) = gpu() else { return };
    let (shape, f, y, p) = four_rows();
    let narrow = |v: &[f64]| v.iter().map(|&x| x as f32).collect::<Vec<f32>>();
    let (f, y, p) = (narrow(&f), narrow(&y), narrow(&p));
    let inputs = Inputs {
        features: &f,
        labels: &y,
        preds: &p,
        eta: None,
    };
    let batch = Batch::new(shape, inputs).unwrap();
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
