//! The fast engine's forward pass keeps each block's pairs and logits for
//! the backward pass of the same rows, within one copy of the features'
//! memory. A backward pass on its own worker finds them again. Both must
//! give the same bits: keeping them saves time and never changes a result.

use conr_core::band::TilePlan;
use conr_core::{Config, Output, OwnedBatch};
use conr_cpu::{Engine, Fast, Reference};
use conr_tests::budget::{F64_VS_F64, agree};
use conr_tests::random::agedb_like;

/// Both phases on one worker (pairs kept) against each phase on a worker of
/// its own (pairs found twice), on the dense plan at training batch sizes,
/// on the band at a large batch, and at D = 2 and 1, where one copy of the
/// features holds the pairs of only a few blocks and the rest find them again.
#[test]
fn kept_pairs_give_the_bits_of_pairs_found_again() {
    let config = Config::official_agedb();
    for (rows, dim, plan) in [
        (128, 256, TilePlan::Dense),
        (300, 64, TilePlan::Auto),
        (2048, 16, TilePlan::Band),
        (700, 2, TilePlan::Dense),
        (1500, 1, TilePlan::Band),
    ] {
        let owned: OwnedBatch<f64> = agedb_like(rows, dim);
        let batch = owned.batch();
        let fast = Fast::with_threads(2).unwrap().with_plan(plan);
        let kept = fast.compute(&batch, &config).unwrap();
        let outcomes = fast.forward_rows(&batch, &config, 0..rows).unwrap();
        let part = fast
            .backward_rows(&batch, &config, 0..rows, &outcomes)
            .unwrap();
        let found_again = Output::from_part(part, &outcomes);
        assert_eq!(kept, found_again, "{rows}×{dim}, {plan:?}");
        assert!(kept.anchors.iter().any(|&a| a), "{rows}×{dim}: no anchor");
        let want = Reference.compute(&batch, &config).unwrap();
        agree(&F64_VS_F64, &kept, &want).unwrap_or_else(|e| panic!("{rows}×{dim}, {plan:?}: {e}"));
    }
}

/// A backward pass on other rows than the forward pass's own does not read
/// what that forward pass kept: it gives the rows' part of the whole.
#[test]
fn kept_pairs_serve_only_their_own_rows() {
    let config = Config::official_agedb();
    let owned: OwnedBatch<f64> = agedb_like(200, 32);
    let batch = owned.batch();
    let fast = Fast::with_threads(2).unwrap();
    let whole = fast.compute(&batch, &config).unwrap();
    let all = Engine::<f64>::forward_rows(&fast, &batch, &config, 0..200).unwrap();
    let mut worker = Engine::<f64>::worker(&fast, batch, &config).unwrap();
    worker.forward(0..100).unwrap();
    let part = worker.backward(100..200, &all).unwrap();
    let scale = whole
        .grad_features
        .iter()
        .fold(0.0f64, |m, g| m.max(g.abs()));
    for (got, want) in part
        .grad_features
        .iter()
        .zip(&whole.grad_features[100 * 32..])
    {
        approx::assert_abs_diff_eq!(*got, *want, epsilon = 1e-12 * scale);
    }
}
