//! The GPU engine in mixed precision (f16 tiles on tensor cores through wgpu's
//! cooperative matrices, f32 statistics) against the f64 reference, within
//! `conr_tests::budget::MIXED_VS_F64`. These run wherever the adapter has
//! the features; elsewhere (lavapipe in CI) asking for mixed precision must be
//! a clear `Error::Unsupported`, which is tested instead.

use conr_core::band::TilePlan;
use conr_core::{Batch, Config, Engine, Error, Inputs, Precision, Shape};
use conr_cpu::{Fast, Output, Reference};
use conr_tests::budget::{Budget, MIXED_VS_F64, scaled_by_inv_temperature};
use conr_tests::fixtures::{Expected, f32_batch, loss_cases, widen};
use conr_tests::gpu::gpu;
use conr_tests::random::any_batch;
use conr_tests::skipped;
use conr_wgpu::GpuConr;
use proptest::strategy::{Strategy, ValueTree};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::sync::OnceLock;

/// The mixed-precision context, or `None` where the adapter lacks the
/// features (after checking that asking for it is a clear error there).
fn mixed() -> Option<&'static GpuConr> {
    static MIXED: OnceLock<Option<GpuConr>> = OnceLock::new();
    gpu()?;
    MIXED
        .get_or_init(|| match GpuConr::with_precision(Precision::Mixed) {
            Ok(g) => Some(g),
            Err(e @ Error::Unsupported { .. }) => {
                skipped(
                    "gpu::mixed (the f16 tensor-core kernels)",
                    &format!("the adapter has no cooperative matrices ({e}); only the refusal ran"),
                );
                None
            }
            Err(e) => panic!("asking for mixed precision failed unclearly: {e:?}"),
        })
        .as_ref()
}

/// The worst errors seen, for the printed summary: (relative loss error,
/// gradient error over max |g|, where).
#[derive(Default)]
struct Worst {
    loss: (f64, String),
    grad: (f64, String),
}

impl Worst {
    fn see(&mut self, got: &Output<f64>, want_loss: f64, want_grad: &[f64], what: &str) {
        let loss = (got.loss - want_loss).abs() / want_loss.abs().max(1e-3);
        let scale = want_grad
            .iter()
            .fold(0.0f64, |a, b| a.max(b.abs()))
            .max(1e-12);
        let grad = got
            .grad_features
            .iter()
            .zip(want_grad)
            .fold(0.0f64, |a, (g, w)| a.max((g - w).abs()))
            / scale;
        if loss > self.loss.0 {
            self.loss = (loss, what.into());
        }
        if grad > self.grad.0 {
            self.grad = (grad, what.into());
        }
    }

    fn report(&self, set: &str) {
        eprintln!(
            "mixed precision, {set}: worst loss error {:.2e} relative ({}), worst gradient error {:.2e} of max|g| ({})",
            self.loss.0, self.loss.1, self.grad.0, self.grad.1
        );
    }
}

fn check(budget: &Budget, got: &Output<f64>, want: &Output<f64>) -> Result<(), String> {
    budget.loss.scalar("loss", got.loss, want.loss)?;
    budget
        .grad
        .vector("grad", &got.grad_features, &want.grad_features)?;
    if got.anchors != want.anchors
        || got.positives != want.positives
        || got.negatives != want.negatives
    {
        return Err("anchors or pair counts differ".into());
    }
    Ok(())
}

#[test]
fn mixed_precision_is_a_clear_error_where_the_adapter_lacks_it() {
    let Some(plain) = gpu() else { return };
    let wanted = GpuConr::with_precision(Precision::Mixed);
    match wanted {
        Ok(g) => assert_eq!(Engine::<f32>::precision(&g), Precision::Mixed),
        Err(e) => {
            assert!(
                matches!(
                    e,
                    Error::Unsupported {
                        what: "mixed precision",
                        ..
                    }
                ),
                "{e:?}"
            );
            let text = e.to_string();
            assert!(
                text.starts_with("mixed precision is not supported here: "),
                "{text}"
            );
        }
    }
    // A device made without the features is refused too, never run in f32.
    let device = plain.device().clone();
    let queue = plain.queue().clone();
    if !device
        .features()
        .contains(conr_wgpu::features_for(Precision::Mixed))
    {
        let err =
            GpuConr::from_device_with_precision(device.clone(), queue.clone(), Precision::Mixed)
                .unwrap_err();
        assert!(matches!(err, Error::Unsupported { .. }), "{err:?}");
    }
    // f64 is not a precision the GPU computes in: a clear refusal too.
    let err = GpuConr::from_device_with_precision(device, queue, Precision::F64).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Unsupported {
                what: "f64 on the GPU",
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn mixed_matches_every_loss_fixture() {
    let Some(gpu) = mixed() else { return };
    let mut worst = Worst::default();
    let mut failures = Vec::new();
    for (file, case) in loss_cases() {
        let want = Expected::of(&case);
        let data = f32_batch(&case);
        let config = case.config.to_config().unwrap();
        let got = widen(
            gpu.compute(&data.batch(), &config)
                .expect("the GPU computes"),
        );
        worst.see(&got, want.loss, &want.grad, &file);
        let budget = scaled_by_inv_temperature(MIXED_VS_F64, config.temperature);
        let want_out = Output {
            loss: want.loss,
            grad_features: want.grad.clone(),
            anchors: want.anchors.clone(),
            positives: want.positives.clone(),
            negatives: want.negatives.clone(),
        };
        if let Err(e) = check(&budget, &got, &want_out) {
            failures.push(format!("{file}: {e}"));
        }
    }
    worst.report("fixtures");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn mixed_matches_the_reference_on_random_batches() {
    let Some(gpu) = mixed() else { return };
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let strategy = any_batch(300, 256);
    let mut worst = Worst::default();
    let mut failures = Vec::new();
    let mut checked = 0;
    while checked < 200 {
        let b = strategy.new_tree(&mut runner).unwrap().current();
        if !b.row_norms_above(0.05) || b.has_near_ties(1e-5) {
            continue;
        }
        checked += 1;
        let want = Reference.compute(&b.batch(), &b.config).unwrap();
        let small = b.convert::<f32>();
        let got = widen(
            gpu.compute(&small.batch(), &b.config)
                .expect("the GPU computes"),
        );
        let what = format!(
            "batch {checked}: M={} D={} τ={:.3}",
            b.shape.rows, b.shape.dim, b.config.temperature
        );
        worst.see(&got, want.loss, &want.grad_features, &what);
        let budget = scaled_by_inv_temperature(MIXED_VS_F64, b.config.temperature);
        if let Err(e) = check(&budget, &got, &want) {
            failures.push(format!("{what}: {e}"));
        }
    }
    worst.report("200 random batches");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// AgeDB-like batches at realistic sizes (the bench's distribution), against
/// the fast CPU engine in f64, with the band plan (the default; through
/// `compute`, the host building the plan, and through `record`, the device
/// building it) and dense.
#[test]
fn mixed_matches_the_reference_on_agedb_like_batches() {
    let Some(band) = mixed() else { return };
    let dense = GpuConr::with_precision(Precision::Mixed)
        .unwrap()
        .with_plan(TilePlan::Dense);
    for (gpu, plan) in [(band, "band"), (&dense, "dense")] {
        agedb_like(gpu, plan);
    }
}

fn agedb_like(gpu: &GpuConr, plan: &str) {
    let mut worst = Worst::default();
    let mut failures = Vec::new();
    for (m, d) in [(128, 512), (1000, 100), (4096, 512)] {
        let mut rng = ChaCha8Rng::seed_from_u64(m as u64);
        let mut normal = || rng.sample::<f64, _>(rand_distr::StandardNormal);
        let labels: Vec<f64> = (0..m)
            .map(|_| (35.0 + 15.0 * normal()).round().clamp(0.0, 100.0))
            .collect();
        let preds: Vec<f64> = labels.iter().map(|y| y + 7.0 * normal()).collect();
        let features: Vec<f64> = (0..m * d).map(|_| normal()).collect();
        let (f32s, l32, p32): (Vec<f32>, Vec<f32>, Vec<f32>) = (
            features.iter().map(|&x| x as f32).collect(),
            labels.iter().map(|&x| x as f32).collect(),
            preds.iter().map(|&x| x as f32).collect(),
        );
        // The f64 reference sees exactly the f32 inputs.
        let wide = |v: &[f32]| v.iter().map(|&x| f64::from(x)).collect::<Vec<f64>>();
        let shape = Shape {
            rows: m,
            dim: d,
            label_dim: 1,
        };
        let config = Config::official_agedb();
        let (fw, lw, pw) = (wide(&f32s), wide(&l32), wide(&p32));
        fn inputs<'a, T>(features: &'a [T], labels: &'a [T], preds: &'a [T]) -> Inputs<'a, T> {
            Inputs {
                features,
                labels,
                preds,
                eta: None,
            }
        }
        let wide_batch = Batch::new(shape, inputs(&fw, &lw, &pw)).unwrap();
        let want = Fast::new().compute(&wide_batch, &config).unwrap();
        let small = Batch::new(shape, inputs(&f32s, &l32, &p32)).unwrap();
        let computed = widen(gpu.compute(&small, &config).expect("the GPU computes"));
        let (recorded, report) = gpu
            .compute_recorded(&small, &config)
            .expect("the GPU records");
        let takes_band = plan == "band" && m > 128;
        assert_eq!(
            report.tiles == TilePlan::Band,
            takes_band,
            "M={m}: {report:?}"
        );
        assert_eq!(gpu.plan(&small, &config).unwrap().tiles, report.tiles);
        for (got, path) in [(computed, "compute"), (widen(recorded), "record")] {
            let what = format!("M={m} D={d}, {plan} plan, {path}");
            worst.see(&got, want.loss, &want.grad_features, &what);
            if let Err(e) = check(
                &scaled_by_inv_temperature(MIXED_VS_F64, config.temperature),
                &got,
                &want,
            ) {
                failures.push(format!("{what}: {e}"));
            }
        }
    }
    worst.report("AgeDB-like batches");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
