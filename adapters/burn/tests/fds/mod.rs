//! The FDS layer on burn's CPU backends: every FDS fixture in f64 and f32,
//! its gradient through burn's autodiff, and bad inputs.

use burn::tensor::{DType, Device, Tensor, TensorData};
use conr_burn::FdsLayer;
use conr_schema::{FdsCase, FdsStepReport, SmoothReport};
use conr_tests::fds::{F32_TOL, F64_TOL, cases, check, step_report};

use crate::common::values;

fn tensor<const D: usize>(v: &[f64], dims: [usize; D], device: &Device, dtype: DType) -> Tensor<D> {
    Tensor::<D>::from_data(TensorData::new(v.to_vec(), dims), (device, dtype))
}

fn replay(case: &FdsCase, device: &Device, dtype: DType) -> Vec<FdsStepReport> {
    let d = case.feature_dim;
    let layer = FdsLayer::new(case.fds().unwrap(), d).unwrap();
    let mut steps = Vec::new();
    for step in &case.steps {
        let smooth = step.smooth.as_ref().map(|call| {
            let n = call.labels.len();
            let x = tensor(&call.features, [n, d], device, dtype).require_grad();
            let y = tensor(&call.labels, [n, 1], device, dtype);
            let out = layer.smooth(x.clone(), y, step.epoch).unwrap();
            let upstream = tensor(&call.upstream, [n, d], device, dtype);
            let grads = (out.clone() * upstream).sum().backward();
            SmoothReport {
                out: values(out),
                grad_features: values(x.grad(&grads).unwrap()),
            }
        });
        if let Some(call) = &step.update {
            let n = call.labels.len();
            layer.update_last_epoch_stats(step.epoch);
            let features = tensor(&call.features, [n, d], device, dtype);
            let labels = tensor(&call.labels, [n], device, dtype);
            assert!(
                layer
                    .update_running_stats(features, labels, step.epoch)
                    .unwrap()
            );
        }
        steps.push(step_report(step.epoch, smooth, &layer.state().unwrap()));
    }
    steps
}

#[test]
fn every_fds_fixture_through_the_layer() {
    for (backend, device) in [("ndarray", Device::ndarray()), ("flex", Device::flex())] {
        let device = device.autodiff();
        for (name, case) in cases() {
            for (dtype, tol) in [(DType::F64, F64_TOL), (DType::F32, F32_TOL)] {
                check(&case, &replay(&case, &device, dtype), tol)
                    .unwrap_or_else(|e| panic!("{name} on {backend} in {dtype:?}: {e}"));
            }
        }
    }
}

#[test]
fn bad_inputs_are_errors() {
    let device = Device::flex();
    let config = conr_core::fds::Fds {
        bucket_num: 6,
        bucket_start: 0,
        ks: 3,
        ..Default::default()
    };
    let layer = FdsLayer::new(config, 2).unwrap();
    let x = tensor(&[0.0; 6], [3, 2], &device, DType::F32);
    let y = tensor(&[0.0; 4], [4], &device, DType::F32);
    assert!(layer.update_running_stats(x, y, 0).is_err());
    let wide = tensor(&[0.0; 9], [3, 3], &device, DType::F32);
    let y = tensor(&[0.0; 3], [3], &device, DType::F32);
    assert!(matches!(
        layer.update_running_stats(wide, y, 0),
        Err(conr_burn::Error::Input(_))
    ));
    assert!(FdsLayer::new(conr_core::fds::Fds { ks: 4, ..config }, 2).is_err());
}
