//! The host path on burn's two CPU backends, flex and ndarray: the fixtures
//! and the reference engine through burn's autodiff, finite differences, the
//! upstream gradient, bad inputs, and a few optimizer steps. Every test runs
//! on both backends.
#![allow(deprecated)] // burn marks NdArray deprecated in favour of Flex; both are tested.

mod common;
// The losses ConR is combined with, on burn's CPU backends.
mod companions;
// FDS, as a burn layer.
mod fds;

use std::sync::Arc;

use burn::tensor::{DType, Device, Tensor};
use common::{HostBatch, OnBurn, agree, loss_and_grad, values};
use conr_burn::{Config, ConrLoss, Error, FloatEngine, conr_loss, conr_loss_with};
use conr_core::Shape;
use conr_cpu::{Fast, Reference};
use conr_tests::budget::{F32_FIXTURE, F64_FIXTURE, F64_VS_F64, F64_VS_FD};
use conr_tests::fixtures::{Expected, loss_cases};
use proptest::prelude::*;

/// burn's CPU backends, without autodiff.
fn backends() -> [(&'static str, Device); 2] {
    [("ndarray", Device::ndarray()), ("flex", Device::flex())]
}

fn through_burn(
    device: &Device,
    b: &HostBatch,
    dtype: DType,
    engine: Arc<dyn FloatEngine>,
) -> Result<(f64, Vec<f64>), Error> {
    let t = b.on(&device.clone().autodiff(), dtype);
    let conr = ConrLoss::new(b.config)?.with_engine(engine);
    let loss = conr.forward(t.features.clone(), t.labels, t.preds, t.weights)?;
    assert_eq!(
        loss.dtype(),
        dtype,
        "the loss keeps the features' float type"
    );
    Ok(loss_and_grad(loss, &t.features))
}

/// `conr_loss_with` is `ConrLoss` on the engine it is given: the same bits,
/// loss and gradient, on the reference engine.
#[test]
fn conr_loss_with_runs_on_the_given_engine() {
    let (file, case) = loss_cases()
        .into_iter()
        .next()
        .expect("the fixtures are in place");
    let b = conr_tests::fixtures::owned_batch(&case);
    let device = Device::flex();
    let reference: Arc<dyn FloatEngine> = Arc::new(Reference);
    let module = through_burn(&device, &b, DType::F64, reference.clone()).unwrap();
    let t = b.on(&device.clone().autodiff(), DType::F64);
    let loss = conr_loss_with(
        t.features.clone(),
        t.labels,
        t.preds,
        t.weights,
        &b.config,
        &reference,
    )
    .unwrap();
    assert_eq!(loss_and_grad(loss, &t.features), module, "{file}");
}

#[test]
fn every_fixture_through_burn_autodiff_in_f64_and_f32() {
    let mut failures = Vec::new();
    let cases = loss_cases();
    assert!(!cases.is_empty(), "the fixtures are in place");
    for (file, case) in cases {
        let want = Expected::of(&case);
        let b = conr_tests::fixtures::owned_batch(&case);
        for (name, device) in backends() {
            for (dtype, budget) in [(DType::F64, &F64_FIXTURE), (DType::F32, &F32_FIXTURE)] {
                let got = through_burn(&device, &b, dtype, Arc::new(Fast::new()))
                    .map_err(|e| e.to_string());
                if let Err(e) = got.and_then(|got| agree(budget, &got, want.loss, &want.grad)) {
                    failures.push(format!("{file} {name} {dtype:?}: {e}"));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// burn's autodiff gives exactly the reference engine's gradient (f64,
    /// 1e-9 relative), on either host engine, for any config and shape.
    #[test]
    fn autodiff_gradient_equals_the_reference(b in conr_tests::random::any_batch(40, 12)) {
        let want = b.reference();
        for (name, device) in backends() {
            let engines: [Arc<dyn FloatEngine>; 2] = [Arc::new(Fast::new()), Arc::new(Reference)];
            for engine in engines {
                let which = conr_core::Engine::<f64>::name(&*engine);
                let got = through_burn(&device, &b, DType::F64, engine)
                    .expect("burn computes");
                agree(&F64_VS_F64, &got, want.loss, &want.grad_features)
                    .map_err(|e| TestCaseError::fail(format!("{name} {which}: {e}")))?;
            }
        }
    }
}

/// The gradient burn reports is the derivative of the loss burn reports:
/// central differences on the op's own forward value.
#[test]
fn gradient_matches_finite_differences() {
    let b = HostBatch {
        shape: Shape {
            rows: 6,
            dim: 3,
            label_dim: 1,
        },
        features: vec![
            1.0, 0.1, 0.3, 0.9, 0.2, -0.1, 0.2, 1.0, 0.4, 0.8, 0.3, 0.0, 0.1, 0.9, 0.2, 0.3, 0.2,
            1.0,
        ],
        labels: vec![20.0, 21.0, 60.0, 20.0, 21.0, 60.0],
        preds: vec![30.0, 30.4, 30.8, 30.1, 30.5, 30.9],
        eta: Some(vec![1.0, 2.0, 0.5, 1.0, 1.5, 1.0]),
        config: Config::official_agedb(),
    };
    for (name, device) in backends() {
        let (_, grad) = through_burn(&device, &b, DType::F64, Arc::new(Fast::new())).unwrap();
        let value = |features: &[f64]| {
            let t = HostBatch {
                features: features.to_vec(),
                ..b.clone()
            }
            .on(&device, DType::F64);
            let loss = conr_loss(t.features, t.labels, t.preds, t.weights, &b.config).unwrap();
            values(loss)[0]
        };
        let numeric: Vec<f64> = (0..b.features.len())
            .map(|i| {
                let h = 1e-6 * b.features[i].abs().max(1.0);
                let mut up = b.features.clone();
                let mut down = b.features.clone();
                up[i] += h;
                down[i] -= h;
                (value(&up) - value(&down)) / (2.0 * h)
            })
            .collect();
        F64_VS_FD
            .vector(
                &format!("{name}: grad vs finite differences"),
                &grad,
                &numeric,
            )
            .unwrap();
        assert!(
            grad.iter().any(|g| g.abs() > 1e-3),
            "{name}: a batch with a gradient"
        );
    }
}

/// The backward step scales conr's gradient by the upstream gradient.
#[test]
fn the_upstream_gradient_scales_the_gradient() {
    let case = &loss_cases()[0].1;
    let b = conr_tests::fixtures::owned_batch(case);
    let want = b.reference();
    for (_, device) in backends() {
        let t = b.on(&device.autodiff(), DType::F64);
        let loss = conr_loss(t.features.clone(), t.labels, t.preds, t.weights, &b.config).unwrap();
        let (_, grad) = loss_and_grad(loss.clone() * 3.0 + 1.0, &t.features);
        for (g, w) in grad.iter().zip(&want.grad_features) {
            approx::assert_relative_eq!(*g, 3.0 * w, max_relative = 1e-9, epsilon = 1e-15);
        }
    }
}

/// Without autodiff the op is the loss value, with the same float type.
#[test]
fn without_autodiff_the_op_is_the_value() {
    let case = &loss_cases()[0].1;
    let b = conr_tests::fixtures::owned_batch(case);
    for (_, device) in backends() {
        let t = b.on(&device, DType::F64);
        let loss = conr_loss(t.features, t.labels, t.preds, t.weights, &b.config).unwrap();
        assert_eq!(loss.dims(), [1]);
        assert_eq!(loss.dtype(), DType::F64);
        approx::assert_relative_eq!(values(loss)[0], b.reference().loss, max_relative = 1e-9);
    }
}

#[test]
fn bad_inputs_are_errors_not_panics() {
    for (_, device) in backends() {
        bad_inputs_on(&device.autodiff());
    }
}

fn bad_inputs_on(d: &Device) {
    let d = d.clone();
    let features = Tensor::<2>::from_floats([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]], &d);
    let labels = Tensor::<1>::from_floats([1.0, 2.0, 3.0], &d);
    let preds = Tensor::<1>::from_floats([1.5, 2.5, 3.5], &d);
    let config = Config::paper();
    let run = |f: Tensor<2>, y: Tensor<1>, p: Tensor<1>, w: Option<Tensor<1>>| {
        conr_loss(f, y, p, w, &config)
    };

    let short = Tensor::<1>::from_floats([1.0, 2.0], &d);
    assert!(matches!(
        run(features.clone(), short.clone(), preds.clone(), None),
        Err(Error::Shape(_))
    ));
    assert!(matches!(
        run(features.clone(), labels.clone(), short.clone(), None),
        Err(Error::Shape(_))
    ));
    assert!(matches!(
        run(features.clone(), labels.clone(), preds.clone(), Some(short)),
        Err(Error::Shape(_))
    ));
    let wide = Tensor::<3>::zeros([3, 1, 1], &d);
    assert!(matches!(
        conr_loss(features.clone(), wide.clone(), wide, None, &config),
        Err(Error::Shape(_))
    ));

    let nan = Tensor::<2>::from_floats([[1.0, f32::NAN], [0.0, 1.0], [0.5, 0.5]], &d);
    assert!(matches!(
        run(nan, labels.clone(), preds.clone(), None),
        Err(Error::Input(_))
    ));
    let inf = Tensor::<1>::from_floats([1.0, f32::INFINITY, 3.0], &d);
    assert!(matches!(
        run(features.clone(), inf, preds.clone(), None),
        Err(Error::Input(_))
    ));
    let negative = Tensor::<1>::from_floats([1.0, -1.0, 1.0], &d);
    assert!(matches!(
        run(
            features.clone(),
            labels.clone(),
            preds.clone(),
            Some(negative)
        ),
        Err(Error::Input(_))
    ));

    let empty = Tensor::<2>::zeros([0, 2], &d);
    let none = Tensor::<1>::zeros([0], &d);
    assert!(matches!(
        run(empty, none.clone(), none, None),
        Err(Error::Input(_))
    ));

    let cold = Config {
        temperature: 0.0,
        ..Config::paper()
    };
    assert!(matches!(ConrLoss::new(cold), Err(Error::Input(_))));

    // After all of that, the op still works.
    assert!(run(features, labels, preds, None).is_ok());
}

/// A small encoder trained on L1 + ConR: a few Adam steps lower the loss.
#[test]
fn optimizer_steps_lower_the_loss() {
    let conr = ConrLoss::new(Config::official_agedb()).unwrap();
    for (name, device) in backends() {
        common::assert_falls(name, &common::train(&conr, &device.autodiff(), 30));
    }
}

/// Every case of the core's bad-input table on the host path, in f64 and
/// f32: the core's own error, or burn's shape error where the tensors'
/// sizes disagree (burn sees that before conr does).
#[test]
fn every_bad_case_gives_the_cores_error() {
    use conr_tests::bad::{Check, cases};
    let mut ran = 0;
    for (name, device) in backends() {
        for case in cases() {
            for dtype in [DType::F64, DType::F32] {
                let Some(t) = common::bad_tensors(&case, &device.clone().autodiff(), dtype) else {
                    continue;
                };
                let got = ConrLoss::new(case.config)
                    .and_then(|conr| conr.forward(t.features, t.labels, t.preds, t.weights));
                match (case.check(), got) {
                    (Check::Lengths, Err(Error::Shape(_))) => {}
                    (_, Err(Error::Input(e))) if e == case.error => {}
                    (_, other) => panic!("{name} {dtype:?}, {}: {other:?}", case.name),
                }
                ran += 1;
            }
        }
    }
    // Every case but the one whose shape no tensor can hold, on both backends in both types.
    assert_eq!(ran, 2 * 2 * (cases().len() - 1));
}
