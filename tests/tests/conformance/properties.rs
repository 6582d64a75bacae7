//! Properties of the reference engine on random batches and every config knob.

use conr_core::{Config, Shape};
use conr_cpu::{Engine, Output, Reference};
use conr_tests::budget::{F32_VS_F64, F64_VS_F64, F64_VS_FD, scaled_by_inv_temperature};
use conr_tests::fixtures::widen;
use conr_tests::random::{RandomBatch, any_batch, any_config, batch_with};
use proptest::prelude::*;

fn reference(b: &RandomBatch) -> Output<f64> {
    Reference
        .compute(&b.batch(), &b.config)
        .expect("valid batch")
}

fn loss_at(b: &RandomBatch, features: &[f64]) -> f64 {
    let mut c = b.clone();
    c.features = features.to_vec();
    reference(&c).loss
}

fn row_norm(b: &RandomBatch, j: usize) -> f64 {
    let d = b.shape.dim;
    b.features[j * d..(j + 1) * d]
        .iter()
        .map(|x| x * x)
        .sum::<f64>()
        .sqrt()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, max_global_rejects: 100_000, ..ProptestConfig::default() })]

    /// The analytic gradient equals central finite differences of the loss.
    #[test]
    fn gradient_matches_finite_differences(b in any_batch(12, 6)) {
        // Keep rows away from the origin, where the loss's curvature grows as 1/|f|³.
        let mut b = b;
        let d = b.shape.dim;
        for j in 0..b.shape.rows {
            let n = row_norm(&b, j);
            if n < 0.3 {
                b.features[j * d] += if b.features[j * d] < 0.0 { -0.3 } else { 0.3 };
            }
        }
        let analytic = reference(&b).grad_features;
        let mut numeric = vec![0.0; analytic.len()];
        let mut f = b.features.clone();
        for i in 0..f.len() {
            let h = 1e-6;
            let x = f[i];
            f[i] = x + h;
            let up = loss_at(&b, &f);
            f[i] = x - h;
            let down = loss_at(&b, &f);
            f[i] = x;
            numeric[i] = (up - down) / (2.0 * h);
        }
        let tol = conr_tests::Tol { abs: F64_VS_FD.abs / b.config.temperature, ..F64_VS_FD };
        tol.vector("gradient vs finite differences", &analytic, &numeric).map_err(TestCaseError::fail)?;
    }

    /// Scaling a feature row by c > 0 leaves the loss unchanged and scales that row's gradient by 1/c.
    #[test]
    fn loss_is_invariant_to_feature_scale(b in any_batch(16, 8), row in 0usize..16, c in 0.01f64..100.0) {
        let row = row % b.shape.rows;
        prop_assume!(row_norm(&b, row) > 1e-6);
        let base = reference(&b);
        let mut scaled = b.clone();
        let d = b.shape.dim;
        scaled.features[row * d..(row + 1) * d].iter_mut().for_each(|x| *x *= c);
        let out = reference(&scaled);
        F64_VS_F64.loss.scalar("loss", out.loss, base.loss).map_err(TestCaseError::fail)?;
        let mut expected = base.grad_features.clone();
        expected[row * d..(row + 1) * d].iter_mut().for_each(|g| *g /= c);
        F64_VS_F64.grad.vector("grad", &out.grad_features, &expected).map_err(TestCaseError::fail)?;
    }

    /// Permuting the rows permutes every per-row output and keeps the loss.
    #[test]
    fn permuting_rows_permutes_outputs(b in any_batch(16, 6), seed in any::<u64>()) {
        let m = b.shape.rows;
        let (d, l) = (b.shape.dim, b.shape.label_dim);
        // A permutation from the seed (Fisher-Yates with a small LCG).
        let mut perm: Vec<usize> = (0..m).collect();
        let mut s = seed | 1;
        for i in (1..m).rev() {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            perm.swap(i, (s >> 33) as usize % (i + 1));
        }
        let gather = |v: &[f64], w: usize| -> Vec<f64> { perm.iter().flat_map(|&p| v[p * w..(p + 1) * w].to_vec()).collect() };
        let mut permuted = b.clone();
        permuted.features = gather(&b.features, d);
        permuted.labels = gather(&b.labels, l);
        permuted.preds = gather(&b.preds, l);
        permuted.eta = b.eta.as_ref().map(|w| gather(w, 1));
        let (base, out) = (reference(&b), reference(&permuted));
        F64_VS_F64.loss.scalar("loss", out.loss, base.loss).map_err(TestCaseError::fail)?;
        F64_VS_F64.grad.vector("grad", &out.grad_features, &gather(&base.grad_features, d)).map_err(TestCaseError::fail)?;
        for (i, &p) in perm.iter().enumerate() {
            prop_assert_eq!(out.anchors[i], base.anchors[p]);
            prop_assert_eq!(out.positives[i], base.positives[p]);
            prop_assert_eq!(out.negatives[i], base.negatives[p]);
        }
    }

    /// With every prediction far from every other, nothing is an anchor: the loss
    /// and the gradient are exactly zero.
    #[test]
    fn no_anchors_means_zero_loss_and_gradient(b in any_batch(16, 6)) {
        let mut far = b.clone();
        far.config.pred_threshold = Some(0.5);
        far.config.label_metric = conr_core::LabelMetric::L1;
        let l = b.shape.label_dim;
        far.preds = (0..b.shape.rows * l).map(|i| 10.0 * (i / l + 1) as f64).collect();
        let out = reference(&far);
        prop_assert!(out.anchors.iter().all(|&a| !a));
        prop_assert_eq!(out.loss, 0.0);
        prop_assert!(out.grad_features.iter().all(|&g| g == 0.0));
    }

    /// τ = 1e-3 (logits up to 1000, far past e^x's f32 range) stays finite in f32 and f64.
    #[test]
    fn tiny_temperature_stays_finite(b in any_batch(24, 8)) {
        let mut hot = b.clone();
        hot.config.temperature = 1e-3;
        let out64 = reference(&hot);
        let small = hot.convert::<f32>();
        let out32 = widen(Reference.compute(&small.batch(), &hot.config).unwrap());
        for out in [out64, out32] {
            prop_assert!(out.loss.is_finite());
            prop_assert!(out.grad_features.iter().all(|g| g.is_finite()));
        }
    }

    /// Rows without positives (every label distinct and far apart) and zero feature rows stay finite.
    #[test]
    fn rows_without_positives_stay_finite(b in any_batch(16, 6), zero_row in 0usize..16) {
        let mut lonely = b.clone();
        lonely.config.label_metric = conr_core::LabelMetric::L1;
        let l = b.shape.label_dim;
        lonely.labels = (0..b.shape.rows * l).map(|i| 100.0 * (i / l) as f64).collect();
        lonely.preds = vec![1.0; b.shape.rows * l];
        let d = b.shape.dim;
        let z = zero_row % b.shape.rows;
        lonely.features[z * d..(z + 1) * d].fill(0.0);
        let out = reference(&lonely);
        prop_assert!(out.positives.iter().all(|&p| p == 0));
        prop_assert_eq!(out.loss, 0.0);
        prop_assert!(out.grad_features.iter().all(|&g| g == 0.0));
    }

    /// The f32 reference agrees with the f64 reference.
    #[test]
    fn f32_agrees_with_f64(b in any_batch(32, 16)) {
        // The gradient of a row grows as 1/|f|: near the origin f32 rounding is amplified without bound.
        prop_assume!(b.row_norms_above(0.05));
        prop_assume!(!b.has_near_ties(1e-5));
        let want = reference(&b);
        let small = b.convert::<f32>();
        let got = widen(Reference.compute(&small.batch(), &b.config).unwrap());
        let budget = scaled_by_inv_temperature(F32_VS_F64, b.config.temperature);
        budget.loss.scalar("loss", got.loss, want.loss).map_err(TestCaseError::fail)?;
        budget.grad.vector("grad", &got.grad_features, &want.grad_features).map_err(TestCaseError::fail)?;
    }

    /// Every config knob validates and runs on a one-row batch (no pairs at all).
    #[test]
    fn single_row_batches_give_zero(config in any_config()) {
        let shape = Shape { rows: 1, dim: 3, label_dim: 1 };
        let inputs = conr_core::Inputs { features: &[0.5, -1.0, 2.0], labels: &[3.0], preds: &[3.0], eta: None };
        let b = conr_core::Batch::new(shape, inputs).unwrap();
        let out = Reference.compute(&b, &config).unwrap();
        prop_assert_eq!(out.loss, 0.0);
        prop_assert_eq!(out.grad_features, vec![0.0; 3]);
    }
}

#[test]
fn configs_out_of_domain_are_refused() {
    let base = Config::paper();
    for bad in [
        Config {
            temperature: 0.0,
            ..base
        },
        Config {
            temperature: -1.0,
            ..base
        },
        Config {
            temperature: f64::NAN,
            ..base
        },
        Config {
            threshold: f64::NAN,
            ..base
        },
        Config {
            threshold: -0.1,
            ..base
        },
        Config {
            pred_threshold: Some(f64::NAN),
            ..base
        },
    ] {
        assert!(bad.validate().is_err(), "{bad:?}");
    }
    let _unused = batch_with(2, 1, any_config());
}
