//! Every engine agrees with the reference on random batches and every config knob.

use conr_core::band::TilePlan;
use conr_cpu::{Engine, Fast, Reference};
use conr_tests::budget::{F32_VS_F64, F64_VS_F64, agree, scaled_by_inv_temperature};
use conr_tests::fixtures::widen;
use conr_tests::random::{any_batch, band_breaker};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use std::sync::OnceLock;

/// The fast engine on three threads, built once.
fn fast() -> &'static Fast {
    static FAST: OnceLock<Fast> = OnceLock::new();
    FAST.get_or_init(|| Fast::with_threads(3).expect("a pool starts"))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, max_global_rejects: 100_000, ..ProptestConfig::default() })]

    /// f64: the fast engine (tiles of 64×256, three threads) equals the reference up to summation order.
    /// Up to 300 rows, so batches span several row blocks and column tiles.
    #[test]
    fn fast_f64_matches_reference(b in any_batch(300, 24)) {
        let want = Reference.compute(&b.batch(), &b.config).unwrap();
        let got = fast().compute(&b.batch(), &b.config).unwrap();
        agree(&F64_VS_F64, &got, &want)?;
    }

    /// f32: the fast engine agrees with the f64 reference.
    #[test]
    fn fast_f32_matches_f64_reference(b in any_batch(300, 24)) {
        prop_assume!(b.row_norms_above(0.05) && !b.has_near_ties(1e-5));
        let want = Reference.compute(&b.batch(), &b.config).unwrap();
        let small = b.convert::<f32>();
        let got = widen(fast().compute(&small.batch(), &b.config).unwrap());
        agree(&scaled_by_inv_temperature(F32_VS_F64, b.config.temperature), &got, &want)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, max_global_rejects: 100_000, ..ProptestConfig::default() })]

    /// The band plan visits every tile that holds a positive or a negative, on
    /// batches chosen to break it (distances exactly at ω and ω̂, ω = 0, equal
    /// labels, far predictions, labels of ±1e30, wide labels in every metric,
    /// duplicated rows): the band, the dense plan and the reference agree, with
    /// anchors and counts exact.
    #[test]
    fn band_plan_matches_dense_and_reference(b in band_breaker(300, 8)) {
        let want = Reference.compute(&b.batch(), &b.config).unwrap();
        let band = fast().clone().with_plan(TilePlan::Band).compute(&b.batch(), &b.config).unwrap();
        let auto = fast().compute(&b.batch(), &b.config).unwrap();
        let dense = fast().clone().with_plan(TilePlan::Dense).compute(&b.batch(), &b.config).unwrap();
        agree(&F64_VS_F64, &band, &want)?;
        agree(&F64_VS_F64, &dense, &want)?;
        prop_assert_eq!(&band.anchors, &dense.anchors);
        prop_assert_eq!(&band.positives, &dense.positives);
        prop_assert_eq!(&band.negatives, &dense.negatives);
        // The default takes one of the two, whole.
        prop_assert!(auto == band || auto == dense);
    }
}

/// An AgeDB-like batch of `m` rows: ages 20–80, predictions within 7 years.
fn agedb_like(m: usize) -> conr_core::OwnedBatch<f64> {
    let labels: Vec<f64> = (0..m).map(|j| (20 + (j * 37) % 61) as f64).collect();
    let preds = labels
        .iter()
        .enumerate()
        .map(|(j, y)| y + ((j * 13) % 15) as f64 - 7.0)
        .collect();
    let features = (0..m * 4)
        .map(|i| ((i * 7919) % 97) as f64 / 48.0 - 1.0)
        .collect();
    let shape = conr_core::Shape {
        rows: m,
        dim: 4,
        label_dim: 1,
    };
    conr_core::OwnedBatch::new(shape, features, labels, preds, None).unwrap()
}

/// The default plan takes the band where its two passes visit fewer tiles
/// than the dense plan's one (a large batch), every tile where they would
/// not (128 rows: each side's band spans every tile), computes exactly what
/// the plan it takes computes, and reports that plan.
#[test]
fn the_auto_plan_takes_the_band_only_where_it_pays() {
    let config = conr_core::Config::official_agedb();
    let engine = |plan| Fast::with_threads(2).unwrap().with_plan(plan);
    for (m, takes_band) in [(128, false), (4096, true)] {
        let owned = agedb_like(m);
        let batch = owned.batch();
        let band = engine(TilePlan::Band).plan(&batch, &config).unwrap();
        let auto = engine(TilePlan::Auto).plan(&batch, &config).unwrap();
        assert_eq!(band.tiles, TilePlan::Band);
        assert_eq!(band.tile_share < 1.0, takes_band, "{m} rows: {band:?}");
        let taken = if takes_band {
            TilePlan::Band
        } else {
            TilePlan::Dense
        };
        assert_eq!(auto, engine(taken).plan(&batch, &config).unwrap());
        let got = engine(TilePlan::Auto).compute(&batch, &config).unwrap();
        let want = engine(taken).compute(&batch, &config).unwrap();
        assert_eq!(got, want, "{m} rows");
    }
}

/// Results are bit-identical across thread counts: each row block sums in a fixed order.
#[test]
fn fast_is_deterministic_across_thread_counts() {
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    for _ in 0..8 {
        let b = any_batch(400, 32).new_tree(&mut runner).unwrap().current();
        let one = Fast::with_threads(1)
            .unwrap()
            .compute(&b.batch(), &b.config)
            .unwrap();
        let two = Fast::with_threads(2)
            .unwrap()
            .compute(&b.batch(), &b.config)
            .unwrap();
        let again = fast().compute(&b.batch(), &b.config).unwrap();
        assert_eq!(one, two);
        assert_eq!(one, again);
        let dense = |threads| {
            Fast::with_threads(threads)
                .unwrap()
                .with_plan(TilePlan::Dense)
                .compute(&b.batch(), &b.config)
                .unwrap()
        };
        assert_eq!(dense(1), dense(2));
    }
}
