//! The companion ops against the fixtures in f64 (through `backward()`),
//! and their errors.

use std::sync::Arc;

use candle_core::{Device, Tensor, Var};
use conr_candle::{FloatEngine, balanced_mse_loss, rank_sim_loss, rnc_loss};
use conr_core::dir::balanced_mse::Prior;
use conr_core::dir::ranksim::{RankSim, Subsample};
use conr_cpu::Fast;
use conr_schema::DirCase;
use conr_tests::budget::F64_FIXTURE;
use conr_tests::dir::{F64_FLOOR, cases, floored};

fn engine() -> Arc<dyn FloatEngine> {
    Arc::new(Fast::with_threads(2).unwrap())
}

fn expected(case: &DirCase, key: &str) -> Vec<f64> {
    let e = case.expected().expect("expected");
    e[key]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn check(name: &str, case: &DirCase, loss: f64, key: &str, grad: &[f64]) {
    let want = case.expected().unwrap()["loss"].as_f64().unwrap();
    F64_FIXTURE
        .loss
        .scalar("loss", loss, want)
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    let want = expected(case, key);
    floored(&F64_FIXTURE, F64_FLOOR, &want)
        .vector(key, grad, &want)
        .unwrap_or_else(|e| panic!("{name}: {e}"));
}

#[test]
fn every_companion_fixture_through_backward() {
    let (device, engine) = (Device::Cpu, engine());
    let mut ran = 0;
    for (name, case) in cases() {
        match &case {
            DirCase::RankSim(c) => {
                if c.sampled_rows.is_some() {
                    continue; // the op takes the config's subset; given rows are the engines' tests
                }
                let mut config = c.config().unwrap();
                config.subsample = Subsample::Every;
                let f = Var::from_slice(&c.features, (c.n, c.d), &device).unwrap();
                let y = Tensor::from_slice(&c.labels, (c.n, c.label_dim), &device).unwrap();
                let loss = rank_sim_loss(f.as_tensor(), &y, &config, &engine).unwrap();
                let grad = loss.backward().unwrap();
                let grad = grad
                    .get(f.as_tensor())
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .to_vec1::<f64>()
                    .unwrap();
                check(
                    &name,
                    &case,
                    loss.to_scalar::<f64>().unwrap(),
                    "grad_features",
                    &grad,
                );
            }
            DirCase::Rnc(c) => {
                let f = Var::from_slice(&c.features, (c.n, c.d), &device).unwrap();
                let y = Tensor::from_slice(&c.labels, (c.n, c.label_dim), &device).unwrap();
                let loss = rnc_loss(f.as_tensor(), &y, &c.config().unwrap(), &engine).unwrap();
                let grad = loss.backward().unwrap();
                let grad = grad
                    .get(f.as_tensor())
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .to_vec1::<f64>()
                    .unwrap();
                check(
                    &name,
                    &case,
                    loss.to_scalar::<f64>().unwrap(),
                    "grad_features",
                    &grad,
                );
            }
            DirCase::BalancedMse(c) => {
                let config = c.config().unwrap();
                let p = Var::from_slice(&c.preds, (c.n, c.label_dim), &device).unwrap();
                let y = Tensor::from_slice(&c.labels, (c.n, c.label_dim), &device).unwrap();
                let sigma = Var::from_slice(&[config.noise_sigma], 1, &device).unwrap();
                let loss =
                    balanced_mse_loss(p.as_tensor(), &y, sigma.as_tensor(), &config.prior, &engine)
                        .unwrap();
                let grads = loss.backward().unwrap();
                let grad = grads
                    .get(p.as_tensor())
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .to_vec1::<f64>()
                    .unwrap();
                check(
                    &name,
                    &case,
                    loss.to_scalar::<f64>().unwrap(),
                    "grad_preds",
                    &grad,
                );
                let d_sigma = grads
                    .get(sigma.as_tensor())
                    .unwrap()
                    .to_vec1::<f64>()
                    .unwrap()[0];
                let want = case.expected().unwrap()["grad_noise_sigma"]
                    .as_f64()
                    .unwrap();
                F64_FIXTURE
                    .grad
                    .scalar("grad_noise_sigma", d_sigma, want)
                    .unwrap_or_else(|e| panic!("{name}: {e}"));
            }
        }
        ran += 1;
    }
    assert_eq!(
        ran,
        26 - 4,
        "every fixture but the four RankSim cases with given rows"
    );
}

#[test]
fn bad_inputs_are_errors() {
    let (device, engine) = (Device::Cpu, engine());
    let f = Tensor::new(&[[1.0f32, 0.0], [0.0, f32::NAN]], &device).unwrap();
    let y = Tensor::new(&[1.0f32, 2.0], &device).unwrap();
    let err = rnc_loss(&f, &y, &Default::default(), &engine)
        .unwrap_err()
        .to_string();
    assert!(err.contains("features row 1"), "{err}");
    let ints = Tensor::new(&[[1u32, 0], [0, 1]], &device).unwrap();
    assert!(rank_sim_loss(&ints, &y, &RankSim::default(), &engine).is_err());
    let sigma = Tensor::new(&[0.0f32], &device).unwrap();
    let err = balanced_mse_loss(&y, &y, &sigma, &Prior::Batch, &engine)
        .unwrap_err()
        .to_string();
    assert!(err.contains("noise_sigma"), "{err}");
    let mixed = Tensor::new(&[1.0f64], &device).unwrap();
    assert!(balanced_mse_loss(&y, &y, &mixed, &Prior::Batch, &engine).is_err());
}
