//! Few, wide rows (NYUD2-DIR's shape: 32 images, 2.2 million features each):
//! the fast engine splits a tile's GEMMs along D between threads, writes the
//! gradient in place, and keeps its buffers between calls. None of it may
//! change a result beyond summation order, or the bits across thread counts.

use conr_core::band::TilePlan;
use conr_core::{Config, Output, OwnedBatch};
use conr_cpu::{Engine, Fast, Reference};
use conr_tests::budget::{Budget, F32_VS_F64, F64_VS_F64, agree};
use conr_tests::random::agedb_like;

/// Past two chunks of the engine's split (2¹⁵ features), with a ragged last one.
const WIDE: usize = 2 * (1 << 15) + 7;

fn engine(threads: usize, plan: TilePlan) -> Fast {
    Fast::with_threads(threads).unwrap().with_plan(plan)
}

/// One block of rows (24) and two blocks (70), the dense plan and the band:
/// the reference's result to 1e-9, and the same bits on 1, 2 and 3 threads.
#[test]
fn wide_rows_match_the_reference_on_any_thread_count() {
    let config = Config::official_agedb();
    for rows in [24, 70] {
        let owned: OwnedBatch<f64> = agedb_like(rows, WIDE);
        let batch = owned.batch();
        let want = Reference.compute(&batch, &config).unwrap();
        assert!(want.anchors.iter().any(|&a| a), "{rows} rows: no anchor");
        for plan in [TilePlan::Dense, TilePlan::Band] {
            let one = engine(1, plan).compute(&batch, &config).unwrap();
            agree(&F64_VS_F64, &one, &want)
                .unwrap_or_else(|e| panic!("{rows} rows, {plan:?}: {e}"));
            for threads in [2, 3] {
                let got = engine(threads, plan).compute(&batch, &config).unwrap();
                assert_eq!(got, one, "{rows} rows, {plan:?}, {threads} threads");
            }
        }
    }
}

/// `owned` with row `j`'s features times `scales[j % scales.len()]`.
fn scaled(owned: &OwnedBatch<f64>, scales: &[f64]) -> OwnedBatch<f64> {
    let batch = owned.batch();
    let dim = batch.shape().dim;
    let features = batch
        .features()
        .chunks_exact(dim)
        .zip(scales.iter().cycle())
        .flat_map(|(row, &s)| row.iter().map(move |&x| x * s))
        .collect();
    let (labels, preds) = (batch.labels().to_vec(), batch.preds().to_vec());
    OwnedBatch::new(batch.shape(), features, labels, preds, None).unwrap()
}

/// Each row's gradient times its divisor `max(|f_j|, ε)`: the gradient of
/// its direction, of the same size for a row of any length, so that every
/// row is held to as many digits however long it is.
fn directions(out: &Output<f64>, batch: &OwnedBatch<f64>) -> Vec<f64> {
    let (batch, dim) = (batch.batch(), out.grad_features.len() / out.anchors.len());
    out.grad_features
        .chunks_exact(dim)
        .zip(batch.features().chunks_exact(dim))
        .flat_map(|(g, f)| {
            let divisor = conr_core::normalize::divisor(conr_core::metric::norm(f));
            g.iter().map(move |&x| x * divisor)
        })
        .collect()
}

/// [`directions`] of `got` and `want` (outputs on `batch`) within `budget`.
fn directions_agree(
    budget: &Budget,
    got: &Output<f64>,
    want: &Output<f64>,
    batch: &OwnedBatch<f64>,
) {
    let (got, want) = (directions(got, batch), directions(want, batch));
    assert!(want.iter().any(|&g| g != 0.0));
    budget.grad.vector("grad × length", &got, &want).unwrap();
}

/// Rows whose lengths are far from 1 (past 2³², up to 1e200 in f64 and 1e25
/// in f32, and under ε) take the backward pass that scales each row after
/// its GEMM, not the one that folds both lengths into one factor, which
/// would leave the range of the type there: each row's gradient still
/// matches the reference's to its own size, in f64 and f32.
#[test]
fn wide_rows_of_any_length_match_the_reference() {
    let config = Config::official_agedb();
    // 70 rows, as above: in fewer than 61 no two labels are equal, so no row has a positive.
    let base: OwnedBatch<f64> = agedb_like(70, WIDE);
    let lengths = [
        1.0, 1e200, 1e-150, 0.0, 1e-16, 3.0, 1e-9, 1e12, 1.0, 0.5, 2.0, 7.0,
    ];
    let owned = scaled(&base, &lengths);
    let want = Reference.compute(&owned.batch(), &config).unwrap();
    let got = engine(2, TilePlan::Dense)
        .compute(&owned.batch(), &config)
        .unwrap();
    agree(&F64_VS_F64, &got, &want).unwrap();
    directions_agree(&F64_VS_F64, &got, &want, &owned);

    // f32, on lengths that fold (the batch's own, about 150) and that do not.
    let extreme = [
        1.0, 1e25, 1e-9, 0.0, 1e-16, 3.0, 1e-7, 1e12, 1.0, 0.5, 2.0, 7.0,
    ];
    for lengths in [&[1.0][..], &extreme] {
        let single = OwnedBatch::<f32>::converted(&scaled(&base, lengths).batch()).unwrap();
        // The f64 reference on the f32 inputs, so that only the arithmetic differs.
        let owned = OwnedBatch::<f64>::converted(&single.batch()).unwrap();
        let want = Reference.compute(&owned.batch(), &config).unwrap();
        let got = Engine::<f32>::compute(&engine(2, TilePlan::Dense), &single.batch(), &config)
            .unwrap()
            .cast();
        directions_agree(&F32_VS_F64, &got, &want, &owned);
    }
}

/// A worker's phase 2 on some of the rows (the gradient written in place
/// from a block that does not start at row 0) gives those rows of the whole,
/// up to summation order (its row blocks are others).
#[test]
fn wide_rows_split_between_workers_give_the_whole() {
    let config = Config::official_agedb();
    let owned: OwnedBatch<f64> = agedb_like(70, WIDE);
    let batch = owned.batch();
    let fast = engine(2, TilePlan::Dense);
    let whole = fast.compute(&batch, &config).unwrap();
    let outcomes = fast.forward_rows(&batch, &config, 0..70).unwrap();
    let part = fast
        .backward_rows(&batch, &config, 10..70, &outcomes)
        .unwrap();
    let scale = whole
        .grad_features
        .iter()
        .fold(0.0f64, |m, g| m.max(g.abs()));
    assert!(scale > 0.0);
    for (i, (got, want)) in part
        .grad_features
        .iter()
        .zip(&whole.grad_features[10 * WIDE..])
        .enumerate()
    {
        approx::assert_abs_diff_eq!(*got, *want, epsilon = 1e-12 * scale);
        assert!(got.is_finite(), "element {i}");
    }
    assert_eq!(part.grad_features.len(), 60 * WIDE);
}

/// The engine keeps its feature buffers between calls: a call after a larger
/// batch, a smaller one, another plan or another precision computes what a
/// new engine computes.
#[test]
fn kept_buffers_never_change_a_result() {
    let config = Config::official_agedb();
    let fresh = |owned: &OwnedBatch<f64>, plan| -> Output<f64> {
        engine(2, plan).compute(&owned.batch(), &config).unwrap()
    };
    let kept = engine(2, TilePlan::Auto);
    let small: OwnedBatch<f64> = agedb_like(40, 300);
    let large: OwnedBatch<f64> = agedb_like(2048, 8);
    let wide: OwnedBatch<f64> = agedb_like(12, WIDE);
    for owned in [&small, &large, &small, &wide, &small, &small] {
        let got = kept.compute(&owned.batch(), &config).unwrap();
        assert_eq!(got, fresh(owned, TilePlan::Auto));
        let single = OwnedBatch::<f32>::converted(&owned.batch()).unwrap();
        let got = Engine::<f32>::compute(&kept, &single.batch(), &config).unwrap();
        let want =
            Engine::<f32>::compute(&engine(2, TilePlan::Auto), &single.batch(), &config).unwrap();
        assert_eq!(got, want);
    }
    // The large batch takes the band (two buffers), the small one not.
    assert_eq!(
        kept.plan(&large.batch(), &config).unwrap().tiles,
        TilePlan::Band
    );
    assert_eq!(
        kept.plan(&small.batch(), &config).unwrap().tiles,
        TilePlan::Dense
    );
}

/// Calls from several threads on one engine, each batch of its own size,
/// never share a kept buffer: each computes what a new engine computes.
#[test]
fn concurrent_calls_keep_their_own_buffers() {
    let config = Config::official_agedb();
    let shared = engine(2, TilePlan::Auto);
    let batches: Vec<OwnedBatch<f64>> = [(30, 500), (300, 64), (1500, 8), (31, 500)]
        .into_iter()
        .map(|(rows, dim)| agedb_like(rows, dim))
        .collect();
    let want: Vec<Output<f64>> = batches
        .iter()
        .map(|b| {
            engine(1, TilePlan::Auto)
                .compute(&b.batch(), &config)
                .unwrap()
        })
        .collect();
    std::thread::scope(|scope| {
        for (owned, want) in batches.iter().zip(&want) {
            let shared = &shared;
            let config = &config;
            scope.spawn(move || {
                for _ in 0..6 {
                    assert_eq!(&shared.compute(&owned.batch(), config).unwrap(), want);
                }
            });
        }
    });
}
