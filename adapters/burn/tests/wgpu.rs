//! burn's wgpu backend (lavapipe on CI): the in-place path against the
//! reference and against the host path, proof that a batch really runs in
//! place, bad inputs, and a few optimizer steps.
//!
//! burn initialises a wgpu device once per process, so every test shares
//! one [`SharedWgpu`]. Without an adapter the tests skip with a printed
//! reason, unless `CONR_REQUIRE_GPU=1` (as in CI).

mod common;

use std::sync::{Mutex, MutexGuard, OnceLock};

use burn::tensor::{DType, Tensor, TensorData};
use common::{HostBatch, OnBurn, agree, loss_and_grad, values};
use conr_burn::{Config, ConrLoss, Error, Route, SharedWgpu};
use conr_core::Shape;
use conr_tests::budget::{F32_FIXTURE, GPU_VS_CPU, scaled_by_inv_temperature};
use conr_tests::fixtures::{Expected, loss_cases};

/// The shared device, and a lock: the batch counter is per device, so the
/// tests that read it run one at a time.
fn shared() -> Option<(SharedWgpu, MutexGuard<'static, ()>)> {
    static SHARED: OnceLock<Result<SharedWgpu, String>> = OnceLock::new();
    static LOCK: Mutex<()> = Mutex::new(());
    match SHARED.get_or_init(|| SharedWgpu::init().map_err(|e| e.to_string())) {
        Ok(shared) => {
            let lock = LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            // burn runs work lazily: finish what an earlier test left queued,
            // so that the batch counter counts this test's batches only.
            shared
                .device()
                .sync()
                .expect("the device finishes its work");
            Some((shared.clone(), lock))
        }
        Err(reason) => {
            if conr_tests::gpu::required() {
                panic!("CONR_REQUIRE_GPU=1 but burn's wgpu device failed: {reason}");
            }
            conr_tests::skipped("conr-burn's wgpu tests", &format!("no device: {reason}"));
            None
        }
    }
}

/// A batch of `rows` rows in four label groups, with rare labels predicted
/// into the common ones (so that there are anchors).
fn grouped(rows: usize, dim: usize, config: Config) -> HostBatch {
    let features = (0..rows * dim)
        .map(|i| ((i * 7919 % 1009) as f64 / 1009.0) - 0.5)
        .collect();
    let labels: Vec<f64> = (0..rows).map(|j| [20.0, 21.0, 40.0, 60.0][j % 4]).collect();
    let preds = labels.iter().map(|y| 40.0 + 0.02 * y).collect();
    HostBatch {
        shape: Shape {
            rows,
            dim,
            label_dim: 1,
        },
        features,
        labels,
        preds,
        eta: Some((0..rows).map(|j| 0.5 + (j % 3) as f64).collect()),
        config,
    }
}

/// Runs `b` through `conr` on `device`, returning the loss and gradient and
/// how many batches ran in place meanwhile.
fn run(
    conr: &ConrLoss,
    shared: &SharedWgpu,
    b: &HostBatch,
    dtype: DType,
) -> ((f64, Vec<f64>), u64) {
    let before = shared.batches();
    let t = b.on(&shared.device().clone().autodiff(), dtype);
    let loss = conr
        .forward(t.features.clone(), t.labels, t.preds, t.weights)
        .expect("conr computes");
    let out = loss_and_grad(loss, &t.features);
    assert!(
        shared.take_error().is_none(),
        "no batch failed on the device"
    );
    (out, shared.batches() - before)
}

#[test]
fn in_place_matches_every_fixture() {
    let Some((shared, _lock)) = shared() else {
        return;
    };
    let mut failures = Vec::new();
    for (file, case) in loss_cases() {
        let b = conr_tests::fixtures::owned_batch(&case);
        let conr = ConrLoss::new(b.config).unwrap().in_place_on(shared.clone());
        let want = Expected::of(&case);
        let (got, in_place) = run(&conr, &shared, &b, DType::F32);
        assert_eq!(in_place, 1, "{file} ran in place");
        if let Err(e) = agree(&F32_FIXTURE, &got, want.loss, &want.grad) {
            failures.push(format!("{file}: {e}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The in-place path and the host path on the same wgpu tensors agree, and
/// each takes the route it says: the in-place batch is counted by the code
/// that records on burn's buffers, the host batch is not.
#[test]
fn in_place_equals_the_host_path_and_really_runs_in_place() {
    let Some((shared, _lock)) = shared() else {
        return;
    };
    for (rows, dim, config) in [
        (48, 16, Config::official_agedb()),
        (100, 24, Config::paper()),
        (7, 5, Config::official_agedb()),
    ] {
        let b = grouped(rows, dim, config);
        let host = ConrLoss::new(config).unwrap();
        let in_place = host.clone().in_place_on(shared.clone());
        let probe = b.on(shared.device(), DType::F32).features;
        assert_eq!(host.route(&probe), Route::Host);
        assert_eq!(in_place.route(&probe), Route::InPlace);

        let (by_host, host_batches) = run(&host, &shared, &b, DType::F32);
        let (by_gpu, gpu_batches) = run(&in_place, &shared, &b, DType::F32);
        assert_eq!(host_batches, 0, "the host path leaves burn's buffers alone");
        assert_eq!(
            gpu_batches, 1,
            "the in-place path recorded on burn's buffers"
        );

        let want = b.reference();
        let budget = scaled_by_inv_temperature(GPU_VS_CPU, config.temperature);
        agree(&budget, &by_gpu, want.loss, &want.grad_features).unwrap();
        agree(&budget, &by_gpu, by_host.0, &by_host.1).unwrap();
        assert!(want.anchors.iter().any(|&a| a), "the batch has anchors");
    }
}

/// An AgeDB-like batch in place takes the band conr builds on the device
/// from burn's buffers, visiting a fraction of the tiles, and agrees with the
/// host path; a small one visits every tile, where the band cannot pay.
#[test]
fn in_place_batches_take_the_band_built_on_the_device() {
    let Some((shared, _lock)) = shared() else {
        return;
    };
    let config = Config::official_agedb();
    let owned = conr_tests::random::agedb_like::<f64>(1024, 8);
    let batch = owned.batch();
    let b = HostBatch {
        shape: batch.shape(),
        features: batch.features().to_vec(),
        labels: batch.labels().to_vec(),
        preds: batch.preds().to_vec(),
        eta: None,
        config,
    };
    let host = ConrLoss::new(config).unwrap();
    let in_place = host.clone().in_place_on(shared.clone());
    let (by_gpu, batches) = run(&in_place, &shared, &b, DType::F32);
    assert_eq!(batches, 1);
    let plan = shared.last_plan().unwrap().expect("a batch ran");
    assert_eq!(plan.tiles, conr_core::band::TilePlan::Band);
    assert!(plan.tile_share < 0.3, "in place visits {plan:?}");
    let (by_host, _) = run(&host, &shared, &b, DType::F32);
    let budget = scaled_by_inv_temperature(GPU_VS_CPU, config.temperature);
    agree(&budget, &by_gpu, by_host.0, &by_host.1).unwrap();

    let small = grouped(48, 16, config);
    run(&in_place, &shared, &small, DType::F32);
    assert_eq!(
        shared.last_plan().unwrap(),
        Some(conr_core::PlanReport::DENSE)
    );
}

/// Features that are a view into a larger tensor (rows 8.. of 40) and
/// labels in two columns still run in place and agree with the reference.
#[test]
fn views_and_wide_labels_run_in_place() {
    let Some((shared, _lock)) = shared() else {
        return;
    };
    let device = shared.device().clone().autodiff();
    let mut b = grouped(32, 8, Config::official_agedb());
    b.shape.label_dim = 2;
    b.labels = b.labels.iter().flat_map(|&y| [y, 0.5 * y]).collect();
    b.preds = b.preds.iter().flat_map(|&p| [p, 0.5 * p + 1.0]).collect();
    let whole: Vec<f64> = (0..8 * 8)
        .map(|i| i as f64 * 0.01)
        .chain(b.features.clone())
        .collect();
    let whole = Tensor::<2>::from_data(TensorData::new(whole, [40, 8]), (&device, DType::F32))
        .require_grad();
    let features = whole.clone().slice([8..40, 0..8]);
    let t = b.on(&device, DType::F32);
    let conr = ConrLoss::new(b.config).unwrap().in_place_on(shared.clone());
    assert_eq!(conr.route(&features), Route::InPlace);
    let before = shared.batches();
    let loss = conr
        .forward(features, t.labels, t.preds, t.weights)
        .unwrap();
    let grads = loss.clone().backward();
    let grad = values(whole.grad(&grads).expect("a gradient"));
    assert_eq!(shared.batches() - before, 1);
    let want = b.reference();
    assert!(
        grad[..64].iter().all(|&g| g == 0.0),
        "rows outside the view get no gradient"
    );
    agree(
        &GPU_VS_CPU,
        &(values(loss)[0], grad[64..].to_vec()),
        want.loss,
        &want.grad_features,
    )
    .unwrap();
}

#[test]
fn bad_inputs_are_errors_not_panics() {
    let Some((shared, _lock)) = shared() else {
        return;
    };
    let d = shared.device().clone().autodiff();
    let conr = ConrLoss::new(Config::paper())
        .unwrap()
        .in_place_on(shared.clone());
    let features = Tensor::<2>::from_floats([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]], &d);
    let labels = Tensor::<1>::from_floats([1.0, 2.0, 3.0], &d);
    let preds = Tensor::<1>::from_floats([1.5, 2.5, 3.5], &d);
    let short = Tensor::<1>::from_floats([1.0, 2.0], &d);
    let before = shared.batches();
    assert!(matches!(
        conr.forward(features.clone(), short.clone(), preds.clone(), None),
        Err(Error::Shape(_))
    ));
    assert!(matches!(
        conr.forward(features.clone(), labels.clone(), preds.clone(), Some(short)),
        Err(Error::Shape(_))
    ));
    #[allow(deprecated)] // burn marks NdArray deprecated in favour of Flex.
    let cpu = burn::tensor::Device::ndarray();
    let on_cpu = Tensor::<1>::from_floats([1.0, 2.0, 3.0], &cpu);
    assert!(matches!(
        conr.forward(features.clone(), on_cpu, preds.clone(), None),
        Err(Error::Device(_))
    ));
    let empty = Tensor::<2>::zeros([0, 2], &d);
    let none = Tensor::<1>::zeros([0], &d);
    assert!(matches!(
        conr.forward(empty, none.clone(), none, None),
        Err(Error::Input(_))
    ));
    assert_eq!(
        shared.batches(),
        before,
        "nothing was recorded for refused batches"
    );

    // NaN features: the host path refuses them; the in-place path checks
    // them on the device, without waiting for it, and gives a NaN loss.
    let nan = Tensor::<2>::from_floats([[1.0, f32::NAN], [0.0, 1.0], [0.5, 0.5]], &d);
    let host = ConrLoss::new(Config::paper()).unwrap();
    assert!(matches!(
        host.forward(nan.clone(), labels.clone(), preds.clone(), None),
        Err(Error::Input(_))
    ));
    let loss = conr
        .forward(nan.clone(), labels.clone(), preds.clone(), None)
        .unwrap();
    assert!(values(loss)[0].is_nan());
    let tracked = nan.clone().require_grad();
    let (_, grad) = loss_and_grad(
        conr.forward(tracked.clone(), labels.clone(), preds.clone(), None)
            .unwrap(),
        &tracked,
    );
    assert!(grad.iter().all(|g| g.is_nan()));
    let negative = Tensor::<1>::from_floats([1.0, -1.0, 1.0], &d);
    let loss = conr
        .forward(
            features.clone(),
            labels.clone(),
            preds.clone(),
            Some(negative.clone()),
        )
        .unwrap();
    assert!(values(loss)[0].is_nan());
    // Checked, the in-place path names the bad value as the host path does.
    let checked = conr.clone().checked(true);
    assert!(matches!(
        checked.forward(nan, labels.clone(), preds.clone(), None),
        Err(Error::Input(conr_core::Error::NonFinite {
            what: "features",
            row: 0
        }))
    ));
    assert!(matches!(
        checked.forward(
            features.clone(),
            labels.clone(),
            preds.clone(),
            Some(negative)
        ),
        Err(Error::Input(conr_core::Error::NonPositiveEta { row: 1 }))
    ));
    assert!(
        checked
            .forward(features.clone(), labels.clone(), preds.clone(), None)
            .is_ok()
    );

    // And the device is still usable.
    let loss = conr.forward(features, labels, preds, None).unwrap();
    assert!(values(loss)[0].is_finite());
    assert!(shared.take_error().is_none());
}

/// f64 features on the shared device take the host path (conr's GPU engine
/// is f32), where wgpu has f64 at all.
#[test]
fn other_float_types_take_the_host_path() {
    let Some((shared, _lock)) = shared() else {
        return;
    };
    let conr = ConrLoss::new(Config::official_agedb())
        .unwrap()
        .in_place_on(shared.clone());
    if shared.device().supports_dtype(DType::F64) {
        let b = grouped(16, 4, Config::official_agedb());
        let probe = b.on(shared.device(), DType::F64).features;
        assert_eq!(conr.route(&probe), Route::Host);
        let (got, in_place) = run(&conr, &shared, &b, DType::F64);
        assert_eq!(in_place, 0);
        let want = b.reference();
        agree(
            &conr_tests::budget::F64_VS_F64,
            &got,
            want.loss,
            &want.grad_features,
        )
        .unwrap();
    } else {
        eprintln!("this wgpu device has no f64: skipped");
    }
}

/// A small encoder trained in place on L1 + ConR: a few Adam steps lower
/// the loss, and every step ran in place.
#[test]
fn optimizer_steps_lower_the_loss_in_place() {
    let Some((shared, _lock)) = shared() else {
        return;
    };
    let conr = ConrLoss::new(Config::official_agedb())
        .unwrap()
        .in_place_on(shared.clone());
    let before = shared.batches();
    let losses = common::train(&conr, &shared.device().clone().autodiff(), 30);
    assert_eq!(shared.batches() - before, 30);
    common::assert_falls("in place", &losses);
}

/// Every case of the core's bad-input table on the in-place path: refused
/// before anything is recorded where the host can see it (the shape, the
/// config, burn's sizes), and for the values the device's check: a NaN loss
/// unchecked, and with `checked(true)` the same error the host path gives.
#[test]
fn every_bad_case_gives_the_cores_error_in_place() {
    use conr_tests::bad::{Check, cases};
    let Some((shared, _lock)) = shared() else {
        return;
    };
    let device = shared.device().clone().autodiff();
    let mut value_cases = 0;
    for case in cases() {
        let Some(t) = common::bad_tensors(&case, &device, DType::F32) else {
            continue;
        };
        let Ok(conr) = ConrLoss::new(case.config) else {
            assert_eq!(case.check(), Check::Config, "{}", case.name);
            continue;
        };
        let conr = conr.in_place_on(shared.clone());
        let checked = conr.clone().checked(true);
        let forward = |conr: &ConrLoss| {
            conr.forward(
                t.features.clone(),
                t.labels.clone(),
                t.preds.clone(),
                t.weights.clone(),
            )
        };
        match case.check() {
            Check::Lengths => assert!(
                matches!(forward(&conr), Err(Error::Shape(_))),
                "{}",
                case.name
            ),
            Check::Shape | Check::Config => {
                let got = forward(&conr);
                assert!(
                    matches!(&got, Err(Error::Input(e)) if *e == case.error),
                    "{}: {got:?}",
                    case.name
                );
            }
            Check::Values => {
                let loss = forward(&conr).expect("the in-place path does not wait for the values");
                assert!(values(loss)[0].is_nan(), "{}", case.name);
                let got = forward(&checked);
                assert!(
                    matches!(&got, Err(Error::Input(e)) if *e == case.error),
                    "{}: {got:?}",
                    case.name
                );
                value_cases += 1;
            }
        }
    }
    assert_eq!(
        value_cases,
        cases()
            .iter()
            .filter(|c| c.check() == Check::Values)
            .count()
    );
    assert!(shared.take_error().is_none());
}
