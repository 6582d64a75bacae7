//! Data-parallel ConR (`conr_core::shard`): W workers, each owning a run of
//! rows, exchanging only their rows' outcomes, give the single-worker loss and
//! gradient, with anchors and counts exact.

use conr_core::band::TilePlan;
use conr_cpu::{Engine, Fast, Reference, compute_sharded, even_slices};
use conr_tests::budget::{F64_VS_F64, agree};
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
        for plan in [TilePlan::Band, TilePlan::Dense] {
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
        let got = compute_sharded(&Fast::new(), &batch, &b.config, &slices).unwrap();
        agree(&F64_VS_F64, &got, &want)?;
    }
}

#[test]
fn slices_are_checked() {
    assert_eq!(cut(10, &[0.5, 0.5, 0.0]), [0..0, 0..5, 5..5, 5..10]);
    assert_eq!(even_slices(3, 7).iter().filter(|s| s.is_empty()).count(), 4);
}
