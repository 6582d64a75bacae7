//! Properties of the companion losses on random batches, on both CPU
//! engines: RankSim's gradient against a direct, dense implementation of the
//! blackbox interpolation; invariance to the order of the rows; and the
//! invariances each loss has (RankSim to the scale of each feature row and
//! of the labels, Rank-N-Contrast to the scale of the labels, Balanced MSE to
//! a shift of predictions and labels together).

use conr_core::dir::balanced_mse::{BalancedMse, BmseBatch, Prior};
use conr_core::dir::ranksim::{RankSim, RankSimBatch, Subsample};
use conr_core::dir::rnc::{RankNContrast, RncBatch};
use conr_core::{Engine, LabelMetric, Shape};
use conr_cpu::{Fast, Reference};
use conr_tests::budget::F64_VS_F64;
use conr_tests::dir::{F64_FLOOR, floored};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Random batches per property.
const CASES: u64 = 40;

/// Continuous features and labels: no ties anywhere, so that every rank is
/// the same under any order of the rows.
struct Batch {
    shape: Shape,
    features: Vec<f64>,
    labels: Vec<f64>,
    preds: Vec<f64>,
}

fn batch(seed: u64) -> Batch {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let n = rng.random_range(2..=24);
    // Two dimensions at least: in one, every cosine similarity is ±1 and
    // ties decide the ranks.
    let d = rng.random_range(2..=9);
    let l = rng.random_range(1..=2);
    let mut values = |k: usize, scale: f64| -> Vec<f64> {
        (0..k).map(|_| rng.random_range(-scale..scale)).collect()
    };
    let features = values(n * d, 1.0);
    let labels = values(n * l, 30.0);
    let preds = labels
        .iter()
        .zip(values(n * l, 3.0))
        .map(|(y, e)| y + e)
        .collect();
    Batch {
        shape: Shape {
            rows: n,
            dim: d,
            label_dim: l,
        },
        features,
        labels,
        preds,
    }
}

fn engines() -> [(&'static str, Box<dyn Engine<f64>>); 2] {
    [
        ("reference", Box::new(Reference)),
        ("fast", Box::new(Fast::with_threads(2).expect("a pool"))),
    ]
}

fn close(what: &str, got: &[f64], want: &[f64]) {
    floored(&F64_VS_F64, F64_FLOOR, want)
        .vector(what, got, want)
        .unwrap_or_else(|e| panic!("{e}"));
}

fn scalar(what: &str, got: f64, want: f64) {
    F64_VS_F64
        .loss
        .scalar(what, got, want)
        .unwrap_or_else(|e| panic!("{e}"));
}

/// Rows `order[k]` of `values` (rows of `width`), in that order.
fn gather(values: &[f64], width: usize, order: &[usize]) -> Vec<f64> {
    order
        .iter()
        .flat_map(|&k| values[k * width..(k + 1) * width].iter().copied())
        .collect()
}

/// Normalised ranks, written out as the reference defines them: position in
/// a descending order, plus one, over b; ties by index, the later first.
fn ranks(values: &[f64]) -> Vec<f64> {
    let b = values.len();
    let mut order: Vec<usize> = (0..b).collect();
    order.sort_by(|&x, &y| values[y].total_cmp(&values[x]).then(y.cmp(&x)));
    let mut out = vec![0.0; b];
    for (position, &k) in order.iter().enumerate() {
        out[k] = (position + 1) as f64 / b as f64;
    }
    out
}

/// RankSim over every row, from dense matrices: the similarity matrix
/// `S = ẐẐᵀ`, each row's ranks and their blackbox gradient
/// `G_i = (rank(S_i + λ·2(r_i − r̂_i)/b) − r_i)/(λ + 1e-8)`, then
/// `∂L/∂Ẑ = (G + Gᵀ)Ẑ` and the normalisation's Jacobian.
fn rank_sim_direct(b: &Batch, lambda: f64) -> (f64, Vec<f64>) {
    let Shape {
        rows: n,
        dim: d,
        label_dim: l,
    } = b.shape;
    let norms: Vec<f64> = b
        .features
        .chunks(d)
        .map(|f| f.iter().map(|x| x * x).sum::<f64>().sqrt())
        .collect();
    let z: Vec<f64> = (0..n * d).map(|i| b.features[i] / norms[i / d]).collect();
    let sim = |i: usize, j: usize| (0..d).map(|c| z[i * d + c] * z[j * d + c]).sum::<f64>();
    let label_sim = |i: usize, j: usize| {
        -(0..l)
            .map(|c| (b.labels[i * l + c] - b.labels[j * l + c]).abs())
            .sum::<f64>()
    };
    let mut loss = 0.0;
    let mut g = vec![0.0; n * n];
    for i in 0..n {
        let s: Vec<f64> = (0..n).map(|j| sim(i, j)).collect();
        let r = ranks(&s);
        let r_label = ranks(&(0..n).map(|j| label_sim(i, j)).collect::<Vec<_>>());
        loss += (0..n).map(|j| (r[j] - r_label[j]).powi(2)).sum::<f64>() / n as f64;
        let perturbed: Vec<f64> = (0..n)
            .map(|j| s[j] + lambda * 2.0 * (r[j] - r_label[j]) / n as f64)
            .collect();
        let r_perturbed = ranks(&perturbed);
        for j in 0..n {
            g[i * n + j] = (r_perturbed[j] - r[j]) / (lambda + 1e-8);
        }
    }
    let mut grad = vec![0.0; n * d];
    for i in 0..n {
        let dz: Vec<f64> = (0..d)
            .map(|c| {
                (0..n)
                    .map(|j| (g[i * n + j] + g[j * n + i]) * z[j * d + c])
                    .sum::<f64>()
            })
            .collect();
        let along: f64 = (0..d).map(|c| dz[c] * z[i * d + c]).sum();
        for c in 0..d {
            grad[i * d + c] = (dz[c] - along * z[i * d + c]) / norms[i];
        }
    }
    (loss, grad)
}

fn every_row(lambda: f64) -> RankSim {
    RankSim {
        lambda,
        label_metric: LabelMetric::L1,
        subsample: Subsample::Every,
        seed: 0,
    }
}

#[test]
fn rank_sim_gradient_is_the_direct_blackbox_interpolation() {
    for seed in 0..CASES {
        let b = batch(seed);
        for lambda in [0.5, 2.0, 40.0] {
            let (loss, grad) = rank_sim_direct(&b, lambda);
            let rs = RankSimBatch::new(b.shape, &b.features, &b.labels, None).expect("a batch");
            for (name, engine) in engines() {
                let out = engine.rank_sim(&rs, &every_row(lambda)).expect("valid");
                let what = format!("{name}, seed {seed}, λ = {lambda}");
                scalar(&format!("RankSim loss, {what}"), out.loss, loss);
                close(
                    &format!("RankSim gradient, {what}"),
                    &out.grad_features,
                    &grad,
                );
            }
        }
    }
}

#[test]
fn every_loss_is_invariant_to_the_order_of_the_rows() {
    for seed in 0..CASES {
        let b = batch(seed);
        let Shape {
            rows: n,
            dim: d,
            label_dim: l,
        } = b.shape;
        let mut order: Vec<usize> = (0..n).collect();
        order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed + 1000));
        let features = gather(&b.features, d, &order);
        let labels = gather(&b.labels, l, &order);
        let preds = gather(&b.preds, l, &order);
        for (name, engine) in engines() {
            let what = format!("{name}, seed {seed}");
            // RankSim over every row.
            let run = |f: &[f64], y: &[f64]| {
                let rs = RankSimBatch::new(b.shape, f, y, None).expect("a batch");
                engine.rank_sim(&rs, &every_row(2.0)).expect("valid")
            };
            let (whole, permuted) = (run(&b.features, &b.labels), run(&features, &labels));
            scalar(&format!("RankSim, {what}"), permuted.loss, whole.loss);
            let want = gather(&whole.grad_features, d, &order);
            close(&format!("RankSim, {what}"), &permuted.grad_features, &want);
            // Rank-N-Contrast.
            let run = |f: &[f64], y: &[f64]| {
                let batch = RncBatch::new(b.shape, f, y).expect("a batch");
                engine
                    .rank_n_contrast(&batch, &RankNContrast::default())
                    .expect("valid")
            };
            let (whole, permuted) = (run(&b.features, &b.labels), run(&features, &labels));
            scalar(&format!("RnC, {what}"), permuted.loss, whole.loss);
            let want = gather(&whole.grad_features, d, &order);
            close(&format!("RnC, {what}"), &permuted.grad_features, &want);
            // BMC.
            let config = BalancedMse {
                noise_sigma: 1.5,
                prior: Prior::Batch,
            };
            let run = |p: &[f64], y: &[f64]| {
                let batch = BmseBatch::new(n, l, p, y).expect("a batch");
                engine.balanced_mse(&batch, &config).expect("valid")
            };
            let (whole, permuted) = (run(&b.preds, &b.labels), run(&preds, &labels));
            scalar(&format!("BMC, {what}"), permuted.loss, whole.loss);
            scalar(
                &format!("BMC σ, {what}"),
                permuted.grad_noise_sigma,
                whole.grad_noise_sigma,
            );
            let want = gather(&whole.grad_preds, l, &order);
            close(&format!("BMC, {what}"), &permuted.grad_preds, &want);
        }
    }
}

#[test]
fn each_loss_keeps_its_invariances() {
    for seed in 0..CASES {
        let b = batch(seed);
        let Shape {
            rows: n,
            dim: d,
            label_dim: l,
        } = b.shape;
        let mut rng = ChaCha8Rng::seed_from_u64(seed + 2000);
        // A positive scale per feature row, one for the labels, one shift.
        let row_scale: Vec<f64> = (0..n).map(|_| rng.random_range(0.1..10.0)).collect();
        let label_scale = rng.random_range(0.1..10.0);
        let shift = rng.random_range(-50.0..50.0);
        let scaled: Vec<f64> = (0..n * d)
            .map(|i| b.features[i] * row_scale[i / d])
            .collect();
        let stretched: Vec<f64> = b.labels.iter().map(|y| y * label_scale).collect();
        for (name, engine) in engines() {
            let what = format!("{name}, seed {seed}");
            // RankSim reads cosine similarities and ranks of label
            // distances: scaling a feature row scales its gradient by the
            // inverse, and stretching the labels changes nothing.
            let run = |f: &[f64], y: &[f64]| {
                let rs = RankSimBatch::new(b.shape, f, y, None).expect("a batch");
                engine.rank_sim(&rs, &every_row(2.0)).expect("valid")
            };
            let whole = run(&b.features, &b.labels);
            let out = run(&scaled, &b.labels);
            scalar(
                &format!("RankSim, scaled rows, {what}"),
                out.loss,
                whole.loss,
            );
            let want: Vec<f64> = (0..n * d)
                .map(|i| whole.grad_features[i] / row_scale[i / d])
                .collect();
            close(
                &format!("RankSim, scaled rows, {what}"),
                &out.grad_features,
                &want,
            );
            let out = run(&b.features, &stretched);
            scalar(
                &format!("RankSim, scaled labels, {what}"),
                out.loss,
                whole.loss,
            );
            close(
                &format!("RankSim, scaled labels, {what}"),
                &out.grad_features,
                &whole.grad_features,
            );
            // Rank-N-Contrast reads only the order of label distances.
            let run = |y: &[f64]| {
                let batch = RncBatch::new(b.shape, &b.features, y).expect("a batch");
                engine
                    .rank_n_contrast(&batch, &RankNContrast::default())
                    .expect("valid")
            };
            let (whole, out) = (run(&b.labels), run(&stretched));
            scalar(&format!("RnC, scaled labels, {what}"), out.loss, whole.loss);
            close(
                &format!("RnC, scaled labels, {what}"),
                &out.grad_features,
                &whole.grad_features,
            );
            // BMC reads only differences of predictions and labels.
            let config = BalancedMse {
                noise_sigma: 2.0,
                prior: Prior::Batch,
            };
            let run = |p: &[f64], y: &[f64]| {
                let batch = BmseBatch::new(n, l, p, y).expect("a batch");
                engine.balanced_mse(&batch, &config).expect("valid")
            };
            let moved = |v: &[f64]| v.iter().map(|x| x + shift).collect::<Vec<_>>();
            let whole = run(&b.preds, &b.labels);
            let out = run(&moved(&b.preds), &moved(&b.labels));
            scalar(&format!("BMC, shifted, {what}"), out.loss, whole.loss);
            close(
                &format!("BMC, shifted, {what}"),
                &out.grad_preds,
                &whole.grad_preds,
            );
        }
    }
}
