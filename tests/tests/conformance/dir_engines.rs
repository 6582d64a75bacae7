//! The companion losses on random batches: the fast engine against the
//! reference, across thread counts, against finite differences, on edge
//! cases that must stay finite, and on bad inputs.

use conr_core::dir::balanced_mse::{BalancedMse, BmseBatch, Prior};
use conr_core::dir::ranksim::{RankSim, RankSimBatch, Subsample, one_per_label};
use conr_core::dir::rnc::{FeatureDistance, RankNContrast, RncBatch};
use conr_core::{Engine, Error, LabelMetric, Shape};
use conr_cpu::{Fast, Reference};
use conr_tests::budget::{F64_VS_F64, F64_VS_FD};
use conr_tests::dir::{F64_FLOOR, floored};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const METRICS: [LabelMetric; 3] = [LabelMetric::L1, LabelMetric::L2, LabelMetric::Linf];

/// A random batch: `n` rows, features with some rows repeated, integer
/// labels in a narrow range (so label distances tie often).
struct Random {
    shape: Shape,
    features: Vec<f64>,
    labels: Vec<f64>,
    preds: Vec<f64>,
}

fn random(rng: &mut ChaCha8Rng, max_rows: usize) -> Random {
    let n = rng.random_range(1..=max_rows);
    let d = rng.random_range(1..=12);
    let l = rng.random_range(1..=3);
    let span = rng.random_range(1..=8);
    let mut features: Vec<f64> = (0..n * d).map(|_| rng.random_range(-1.0..1.0)).collect();
    if n > 2 {
        for _ in 0..n / 8 {
            let (a, b) = (rng.random_range(0..n), rng.random_range(0..n));
            let row: Vec<f64> = features[a * d..(a + 1) * d].to_vec();
            features[b * d..(b + 1) * d].copy_from_slice(&row);
        }
    }
    let labels: Vec<f64> = (0..n * l)
        .map(|_| f64::from(rng.random_range(0..span)))
        .collect();
    let preds = labels
        .iter()
        .map(|&y| y + rng.random_range(-2.0..2.0))
        .collect();
    Random {
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

fn close(what: &str, got: &[f64], want: &[f64]) {
    let tol = floored(&F64_VS_F64, F64_FLOOR, want);
    tol.vector(what, got, want)
        .unwrap_or_else(|e| panic!("{e}"));
}

fn scalar(what: &str, got: f64, want: f64) {
    F64_VS_F64
        .loss
        .scalar(what, got, want)
        .unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn fast_equals_reference_on_random_batches() {
    let fast = Fast::with_threads(2).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let mut runs = [0; 3];
    for case in 0..60 {
        let b = random(&mut rng, 150);
        let metric = METRICS[case % 3];

        let rows: Vec<usize> = (0..b.shape.rows).filter(|_| rng.random_bool(0.6)).collect();
        let given = (case % 4 == 3 && !rows.is_empty()).then_some(&rows[..]);
        let ranksim = RankSimBatch::new(b.shape, &b.features, &b.labels, given).unwrap();
        let config = RankSim {
            lambda: rng.random_range(0.1..4.0),
            label_metric: metric,
            subsample: if case % 2 == 0 {
                Subsample::OnePerLabel
            } else {
                Subsample::Every
            },
            seed: case as u64,
        };
        let (want, got) = (
            Reference.rank_sim(&ranksim, &config).unwrap(),
            fast.rank_sim(&ranksim, &config).unwrap(),
        );
        assert_eq!(got.rows, want.rows);
        scalar("ranksim loss", got.loss, want.loss);
        close("ranksim grad", &got.grad_features, &want.grad_features);
        runs[0] += 1;

        let rnc = RncBatch::new(b.shape, &b.features, &b.labels).unwrap();
        let config = RankNContrast {
            temperature: rng.random_range(0.05..3.0),
            label_metric: metric,
            feature_distance: FeatureDistance::L2,
        };
        let (want, got) = (
            Reference.rank_n_contrast(&rnc, &config).unwrap(),
            fast.rank_n_contrast(&rnc, &config).unwrap(),
        );
        scalar("rnc loss", got.loss, want.loss);
        close("rnc grad", &got.grad_features, &want.grad_features);
        runs[1] += 1;

        let bmse = BmseBatch::new(b.shape.rows, b.shape.label_dim, &b.preds, &b.labels).unwrap();
        let config = BalancedMse {
            noise_sigma: rng.random_range(0.2..3.0),
            prior: Prior::Batch,
        };
        let (want, got) = (
            Reference.balanced_mse(&bmse, &config).unwrap(),
            fast.balanced_mse(&bmse, &config).unwrap(),
        );
        scalar("bmc loss", got.loss, want.loss);
        close("bmc grad", &got.grad_preds, &want.grad_preds);
        scalar("bmc sigma", got.grad_noise_sigma, want.grad_noise_sigma);
        runs[2] += 1;
    }
    assert_eq!(runs, [60; 3]);
}

#[test]
fn fast_is_identical_across_thread_counts() {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let mut b = random(&mut rng, 1);
    while b.shape.rows < 150 {
        b = random(&mut rng, 220);
    }
    let (one, three) = (
        Fast::with_threads(1).unwrap(),
        Fast::with_threads(3).unwrap(),
    );
    let ranksim = RankSimBatch::new(b.shape, &b.features, &b.labels, None).unwrap();
    let config = RankSim {
        subsample: Subsample::Every,
        ..RankSim::default()
    };
    assert_eq!(
        one.rank_sim(&ranksim, &config).unwrap(),
        three.rank_sim(&ranksim, &config).unwrap()
    );
    let rnc = RncBatch::new(b.shape, &b.features, &b.labels).unwrap();
    let config = RankNContrast::default();
    assert_eq!(
        one.rank_n_contrast(&rnc, &config).unwrap(),
        three.rank_n_contrast(&rnc, &config).unwrap()
    );
    let bmse = BmseBatch::new(b.shape.rows, b.shape.label_dim, &b.preds, &b.labels).unwrap();
    let config = BalancedMse {
        noise_sigma: 1.5,
        prior: Prior::Batch,
    };
    assert_eq!(
        one.balanced_mse(&bmse, &config).unwrap(),
        three.balanced_mse(&bmse, &config).unwrap()
    );
}

/// Central differences of `loss` at `x`, one coordinate at a time.
fn finite_differences(x: &[f64], loss: impl Fn(&[f64]) -> f64) -> Vec<f64> {
    (0..x.len())
        .map(|k| {
            let h = 1e-6 * x[k].abs().max(1.0);
            let (mut up, mut down) = (x.to_vec(), x.to_vec());
            up[k] += h;
            down[k] -= h;
            (loss(&up) - loss(&down)) / (2.0 * h)
        })
        .collect()
}

fn near_fd(what: &str, analytic: &[f64], numeric: &[f64]) {
    F64_VS_FD
        .vector(what, analytic, numeric)
        .unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn rnc_gradient_matches_finite_differences() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    for metric in METRICS {
        let shape = Shape {
            rows: 9,
            dim: 4,
            label_dim: 2,
        };
        let features: Vec<f64> = (0..36).map(|_| rng.random_range(-1.0..1.0)).collect();
        let labels: Vec<f64> = (0..18).map(|_| f64::from(rng.random_range(0..3))).collect();
        let config = RankNContrast {
            temperature: 0.7,
            label_metric: metric,
            ..Default::default()
        };
        let loss = |f: &[f64]| {
            Reference
                .rank_n_contrast(&RncBatch::new(shape, f, &labels).unwrap(), &config)
                .unwrap()
                .loss
        };
        let out = Fast::new()
            .rank_n_contrast(&RncBatch::new(shape, &features, &labels).unwrap(), &config)
            .unwrap();
        near_fd(
            "rnc grad",
            &out.grad_features,
            &finite_differences(&features, loss),
        );
    }
}

#[test]
fn balanced_mse_gradients_match_finite_differences() {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let (means, variances, weights) = ([10.0, 30.0, 55.0], [20.0, 0.0, 60.0], [0.5, 0.2, 0.3]);
    let (centers, bucket_weights) = ([0.0, 15.0, 30.0, 45.0, 60.0], [0.1, 0.0, 0.4, 0.3, 0.2]);
    let priors = [
        (Prior::Batch, 2),
        (Prior::Batch, 1),
        (
            Prior::Gmm {
                means: &means,
                variances: &variances,
                weights: &weights,
            },
            1,
        ),
        (
            Prior::Buckets {
                centers: &centers,
                weights: &bucket_weights,
            },
            1,
        ),
    ];
    for (prior, l) in priors {
        let n = 12;
        let labels: Vec<f64> = (0..n * l).map(|_| rng.random_range(0.0..60.0)).collect();
        let preds: Vec<f64> = labels
            .iter()
            .map(|&y| y + rng.random_range(-6.0..6.0))
            .collect();
        let sigma = 4.0;
        let run = |p: &[f64], s: f64| {
            let batch = BmseBatch::new(n, l, p, &labels).unwrap();
            Reference
                .balanced_mse(
                    &batch,
                    &BalancedMse {
                        noise_sigma: s,
                        prior,
                    },
                )
                .unwrap()
        };
        let out = Fast::new()
            .balanced_mse(
                &BmseBatch::new(n, l, &preds, &labels).unwrap(),
                &BalancedMse {
                    noise_sigma: sigma,
                    prior,
                },
            )
            .unwrap();
        near_fd(
            "grad_preds",
            &out.grad_preds,
            &finite_differences(&preds, |p| run(p, sigma).loss),
        );
        // σ's gradient holds the factor 2σ² fixed, as the reference detaches it.
        let scale = |s: f64| sigma * sigma / (s * s);
        let fd = finite_differences(&[sigma], |s| run(&preds, s[0]).loss * scale(s[0]));
        near_fd("grad_noise_sigma", &[out.grad_noise_sigma], &fd);
    }
}

fn engines() -> [(&'static str, Box<dyn Engine<f64>>); 2] {
    [
        ("reference", Box::new(Reference)),
        ("fast", Box::new(Fast::with_threads(2).unwrap())),
    ]
}

#[test]
fn edge_cases_stay_finite() {
    for (name, engine) in engines() {
        // Identical rows: every distance 0, so every pair ties and no gradient flows.
        let shape = Shape {
            rows: 5,
            dim: 3,
            label_dim: 1,
        };
        let same = [0.3, -0.2, 0.9].repeat(5);
        let labels = [1.0, 2.0, 2.0, 5.0, 9.0];
        let out = engine
            .rank_n_contrast(
                &RncBatch::new(shape, &same, &labels).unwrap(),
                &RankNContrast::default(),
            )
            .unwrap();
        assert!(
            out.loss.is_finite() && out.grad_features.iter().all(|&g| g == 0.0),
            "{name}"
        );
        // One row: no pairs, loss 0.
        let one = Shape {
            rows: 1,
            dim: 3,
            label_dim: 1,
        };
        let out = engine
            .rank_n_contrast(
                &RncBatch::new(one, &same[..3], &labels[..1]).unwrap(),
                &RankNContrast::default(),
            )
            .unwrap();
        assert_eq!((out.loss, out.grad_features), (0.0, vec![0.0; 3]), "{name}");
        // Far-apart rows at the smallest temperature: logits of -1e12.
        let far = [
            0.0, 0.0, 0.0, 1e6, 0.0, 0.0, -1e6, 1e6, 0.0, 3e5, 3e5, 3e5, -1e5, 0.0, 7e5,
        ];
        let tight = RankNContrast {
            temperature: 1e-6,
            ..Default::default()
        };
        let out = engine
            .rank_n_contrast(&RncBatch::new(shape, &far, &labels).unwrap(), &tight)
            .unwrap();
        assert!(
            out.loss.is_finite() && out.grad_features.iter().all(|g| g.is_finite()),
            "{name}"
        );
        // A zero feature row in RankSim normalises to zero.
        let mut zero = far;
        zero[..3].fill(0.0);
        let out = engine
            .rank_sim(
                &RankSimBatch::new(shape, &zero, &labels, None).unwrap(),
                &RankSim::default(),
            )
            .unwrap();
        assert!(
            out.loss.is_finite() && out.grad_features.iter().all(|g| g.is_finite()),
            "{name}"
        );
        // Balanced MSE with predictions far from every label at a small σ.
        let preds = [1e6, -1e6, 3.0, 0.0, 5e5];
        let batch = BmseBatch::new(5, 1, &preds, &labels).unwrap();
        let small = BalancedMse {
            noise_sigma: 1e-3,
            prior: Prior::Batch,
        };
        let out = engine.balanced_mse(&batch, &small).unwrap();
        assert!(
            out.loss.is_finite() && out.grad_noise_sigma.is_finite(),
            "{name}"
        );
        assert!(out.grad_preds.iter().all(|g| g.is_finite()), "{name}");
        // A bucket of weight 0 adds nothing.
        let (centers, with_zero) = ([0.0, 4.0, 8.0], [0.5, 0.0, 0.5]);
        let buckets = BalancedMse {
            noise_sigma: 2.0,
            prior: Prior::Buckets {
                centers: &centers,
                weights: &with_zero,
            },
        };
        let dropped = BalancedMse {
            noise_sigma: 2.0,
            prior: Prior::Buckets {
                centers: &[0.0, 8.0],
                weights: &[0.5, 0.5],
            },
        };
        let small_preds = [1.0, 2.0, 3.0, 4.0, 5.0];
        let batch = BmseBatch::new(5, 1, &small_preds, &labels).unwrap();
        assert_eq!(
            engine.balanced_mse(&batch, &buckets).unwrap(),
            engine.balanced_mse(&batch, &dropped).unwrap(),
            "{name}"
        );
    }
}

#[test]
fn one_per_label_keeps_one_row_of_each_label_in_label_order() {
    let labels = [5.0, 2.0, 5.0, -0.0, 2.0, 0.0, 9.0, 5.0];
    let mut picks = std::collections::BTreeSet::new();
    for seed in 0..32 {
        let mut out = [0; 8];
        let b = one_per_label(&labels, 1, seed, &mut out);
        assert_eq!(b, 4, "-0 and +0 are one label");
        let chosen: Vec<f64> = out[..b].iter().map(|&r| labels[r]).collect();
        assert_eq!(chosen, [0.0, 2.0, 5.0, 9.0]);
        let mut again = [0; 8];
        one_per_label(&labels, 1, seed, &mut again);
        assert_eq!(out, again, "the same seed makes the same choice");
        picks.insert(out[..b].to_vec());
    }
    assert!(picks.len() > 4, "seeds choose different rows: {picks:?}");
    let mut out = [0; 4];
    assert_eq!(one_per_label(&[3.0, 1.0, 2.0, 0.0], 1, 9, &mut out), 4);
    assert_eq!(out, [0, 1, 2, 3], "distinct labels keep the batch order");
}

#[test]
fn bad_inputs_are_errors_on_every_engine() {
    let shape = Shape {
        rows: 2,
        dim: 2,
        label_dim: 1,
    };
    let (f, y) = ([1.0, 0.0, 0.0, 1.0], [1.0, 2.0]);
    let nan = [1.0, f64::NAN, 0.0, 1.0];
    let empty = Shape { rows: 0, ..shape };
    assert_eq!(
        RankSimBatch::<f64>::new(empty, &[], &[], None).unwrap_err(),
        Error::EmptyBatch
    );
    assert_eq!(
        RncBatch::new(shape, &f[..3], &y).unwrap_err(),
        Error::ShapeMismatch {
            what: "features",
            expected: 4,
            got: 3
        }
    );
    assert_eq!(
        RncBatch::new(shape, &nan, &y).unwrap_err(),
        Error::NonFinite {
            what: "features",
            row: 0
        }
    );
    assert_eq!(
        BmseBatch::new(2, 1, &y, &[1.0, f64::INFINITY]).unwrap_err(),
        Error::NonFinite {
            what: "labels",
            row: 1
        }
    );
    assert!(matches!(
        RankSimBatch::new(shape, &f, &y, Some(&[0, 2])),
        Err(Error::InvalidConfig { field: "rows", .. })
    ));
    assert!(matches!(
        RankSimBatch::new(shape, &f, &y, Some(&[])),
        Err(Error::InvalidConfig { field: "rows", .. })
    ));
    let ranksim = RankSimBatch::new(shape, &f, &y, None).unwrap();
    let rnc = RncBatch::new(shape, &f, &y).unwrap();
    let wide = BmseBatch::new(1, 2, &y, &y).unwrap();
    let bmse = BmseBatch::new(2, 1, &y, &y).unwrap();
    for (name, engine) in engines() {
        let field = |e: Error| match e {
            Error::InvalidConfig { field, .. } => field,
            other => panic!("{name}: {other}"),
        };
        let lambda = RankSim {
            lambda: 0.0,
            ..Default::default()
        };
        assert_eq!(
            field(engine.rank_sim(&ranksim, &lambda).unwrap_err()),
            "lambda"
        );
        let angular = RankSim {
            label_metric: LabelMetric::Angular,
            ..Default::default()
        };
        assert_eq!(
            field(engine.rank_sim(&ranksim, &angular).unwrap_err()),
            "label_metric"
        );
        let tau = RankNContrast {
            temperature: 1e-9,
            ..Default::default()
        };
        assert_eq!(
            field(engine.rank_n_contrast(&rnc, &tau).unwrap_err()),
            "temperature"
        );
        let sigma = BalancedMse {
            noise_sigma: -1.0,
            prior: Prior::Batch,
        };
        assert_eq!(
            field(engine.balanced_mse(&bmse, &sigma).unwrap_err()),
            "noise_sigma"
        );
        let gmm = Prior::Gmm {
            means: &[0.0],
            variances: &[1.0],
            weights: &[1.0],
        };
        let on_wide = BalancedMse {
            noise_sigma: 1.0,
            prior: gmm,
        };
        assert_eq!(
            field(engine.balanced_mse(&wide, &on_wide).unwrap_err()),
            "variant"
        );
        let zero = BalancedMse {
            noise_sigma: 1.0,
            prior: Prior::Buckets {
                centers: &[0.0],
                weights: &[0.0],
            },
        };
        assert_eq!(
            field(engine.balanced_mse(&bmse, &zero).unwrap_err()),
            "buckets"
        );
        let ragged = BalancedMse {
            noise_sigma: 1.0,
            prior: Prior::Gmm {
                means: &[0.0, 1.0],
                variances: &[1.0],
                weights: &[1.0, 1.0],
            },
        };
        assert_eq!(
            field(engine.balanced_mse(&bmse, &ragged).unwrap_err()),
            "gmm"
        );
        let negative = BalancedMse {
            noise_sigma: 1.0,
            prior: Prior::Gmm {
                means: &[0.0],
                variances: &[-1.0],
                weights: &[1.0],
            },
        };
        assert_eq!(
            field(engine.balanced_mse(&bmse, &negative).unwrap_err()),
            "gmm.variances"
        );
    }
    // σ whose square underflows in f32.
    let tiny = BalancedMse {
        noise_sigma: 1e-30,
        prior: Prior::Batch,
    };
    let y32 = [1.0f32, 2.0];
    let b32 = BmseBatch::new(2, 1, &y32, &y32).unwrap();
    assert!(matches!(
        Fast::new().balanced_mse(&b32, &tiny),
        Err(Error::InvalidConfig {
            field: "noise_sigma",
            ..
        })
    ));
}

#[test]
fn the_gpu_engine_says_it_does_not_compute_them() {
    let Some(gpu) = conr_tests::gpu::gpu() else {
        return;
    };
    let shape = Shape {
        rows: 2,
        dim: 2,
        label_dim: 1,
    };
    let (f, y) = ([1.0f32, 0.0, 0.0, 1.0], [1.0f32, 2.0]);
    let err = gpu
        .rank_n_contrast(
            &RncBatch::new(shape, &f, &y).unwrap(),
            &RankNContrast::default(),
        )
        .unwrap_err();
    assert!(matches!(err, Error::Unsupported { .. }), "{err}");
    assert!(!err.is_input());
}
