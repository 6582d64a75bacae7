//! The companion losses through burn's autodiff on its CPU backends: every
//! fixture in f64 and f32, and bad inputs.

use crate::common::values;
use burn::tensor::{DType, Device, Tensor, TensorData};
use conr_burn::{Error, FloatEngine, balanced_mse_loss, rank_sim_loss, rnc_loss};
use conr_core::dir::balanced_mse::Prior;
use conr_core::dir::ranksim::Subsample;
use conr_cpu::Fast;
use conr_schema::DirCase;
use conr_tests::budget::{Budget, F32_FIXTURE, F64_FIXTURE};
use conr_tests::dir::{F32_FLOOR, F64_FLOOR, cases, floored};

fn tensor<const D: usize>(v: &[f64], dims: [usize; D], device: &Device, dtype: DType) -> Tensor<D> {
    Tensor::<D>::from_data(TensorData::new(v.to_vec(), dims), (device, dtype))
}

fn expected(case: &DirCase, key: &str) -> Vec<f64> {
    let e = case.expected().unwrap();
    e[key]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn check(
    budget: &Budget,
    floor: f64,
    case: &DirCase,
    loss: f64,
    key: &str,
    grad: &[f64],
) -> Result<(), String> {
    budget.loss.scalar(
        "loss",
        loss,
        case.expected().unwrap()["loss"].as_f64().unwrap(),
    )?;
    let want = expected(case, key);
    floored(budget, floor, &want).vector(key, grad, &want)
}

/// One case on `device` in `dtype`: `Ok(false)` where the op does not take
/// the case (RankSim with given rows: the engines' tests cover those).
fn run(
    case: &DirCase,
    device: &Device,
    dtype: DType,
    budget: &Budget,
    floor: f64,
) -> Result<bool, String> {
    let engine: &dyn FloatEngine = &Fast::new();
    let e = |e: Error| e.to_string();
    match case {
        DirCase::RankSim(c) => {
            if c.sampled_rows.is_some() {
                return Ok(false);
            }
            let mut config = c.config().unwrap();
            config.subsample = Subsample::Every;
            let f = tensor(&c.features, [c.n, c.d], device, dtype).require_grad();
            let y = tensor(&c.labels, [c.n, c.label_dim], device, dtype);
            let loss = rank_sim_loss(f.clone(), y, &config, engine).map_err(e)?;
            let grads = loss.clone().backward();
            check(
                budget,
                floor,
                case,
                values(loss)[0],
                "grad_features",
                &values(f.grad(&grads).unwrap()),
            )?;
        }
        DirCase::Rnc(c) => {
            let f = tensor(&c.features, [c.n, c.d], device, dtype).require_grad();
            let y = tensor(&c.labels, [c.n, c.label_dim], device, dtype);
            let loss = rnc_loss(f.clone(), y, &c.config().unwrap(), engine).map_err(e)?;
            let grads = loss.clone().backward();
            check(
                budget,
                floor,
                case,
                values(loss)[0],
                "grad_features",
                &values(f.grad(&grads).unwrap()),
            )?;
        }
        DirCase::BalancedMse(c) => {
            let config = c.config().unwrap();
            let p = tensor(&c.preds, [c.n, c.label_dim], device, dtype).require_grad();
            let y = tensor(&c.labels, [c.n, c.label_dim], device, dtype);
            let sigma = tensor(&[config.noise_sigma], [1], device, dtype).require_grad();
            let loss =
                balanced_mse_loss(p.clone(), y, sigma.clone(), &config.prior, engine).map_err(e)?;
            let grads = loss.clone().backward();
            check(
                budget,
                floor,
                case,
                values(loss)[0],
                "grad_preds",
                &values(p.grad(&grads).unwrap()),
            )?;
            let want = case.expected().unwrap()["grad_noise_sigma"]
                .as_f64()
                .unwrap();
            budget.grad.scalar(
                "grad_noise_sigma",
                values(sigma.grad(&grads).unwrap())[0],
                want,
            )?;
        }
    }
    Ok(true)
}

#[test]
fn every_companion_fixture_through_burn_autodiff() {
    let device = Device::flex().autodiff();
    let mut failures = Vec::new();
    let mut ran = 0;
    for (name, case) in cases() {
        for (dtype, budget, floor) in [
            (DType::F64, &F64_FIXTURE, F64_FLOOR),
            (DType::F32, &F32_FIXTURE, F32_FLOOR),
        ] {
            match run(&case, &device, dtype, budget, floor) {
                Ok(true) => ran += 1,
                Ok(false) => {}
                Err(e) => failures.push(format!("{name} {dtype:?}: {e}")),
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(
        ran,
        2 * (26 - 4),
        "every fixture but the four RankSim cases with given rows, in both types"
    );
}

#[test]
fn bad_inputs_are_errors() {
    let device = Device::flex();
    let engine: &dyn FloatEngine = &Fast::new();
    let f = tensor(&[1.0, 0.0, 0.0, f64::NAN], [2, 2], &device, DType::F64);
    let y = tensor(&[1.0, 2.0], [2], &device, DType::F64);
    let err = rnc_loss(f, y.clone(), &Default::default(), engine).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Input(conr_core::Error::NonFinite {
                what: "features",
                row: 1
            })
        ),
        "{err}"
    );
    let three = tensor(&[1.0, 2.0, 3.0], [3], &device, DType::F64);
    let f = tensor(&[1.0, 0.0, 0.0, 1.0], [2, 2], &device, DType::F64);
    assert!(matches!(
        rnc_loss(f, three.clone(), &Default::default(), engine),
        Err(Error::Shape(_))
    ));
    let sigma = tensor(&[0.0], [1], &device, DType::F64);
    let err = balanced_mse_loss(y.clone(), y.clone(), sigma, &Prior::Batch, engine).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Input(conr_core::Error::InvalidConfig {
                field: "noise_sigma",
                ..
            })
        ),
        "{err}"
    );
    let sigma = tensor(&[1.0], [1], &device, DType::F64);
    assert!(matches!(
        balanced_mse_loss(y, three, sigma, &Prior::Batch, engine),
        Err(Error::Shape(_))
    ));
}
