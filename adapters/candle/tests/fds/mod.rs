//! The FDS layer against the FDS fixtures, in f64 and f32, its gradient
//! through `backward()`.

use candle_core::{DType, Device, Tensor, Var};
use conr_candle::FdsLayer;
use conr_schema::{FdsCase, FdsStepReport, SmoothReport};
use conr_tests::fds::{F32_TOL, F64_TOL, cases, check, step_report};

fn replay(case: &FdsCase, dtype: DType) -> Vec<FdsStepReport> {
    let device = Device::Cpu;
    let d = case.feature_dim;
    let layer = FdsLayer::new(case.fds().unwrap(), d).unwrap();
    let tensor = |v: &[f64], rows: usize, cols: usize| {
        Tensor::from_slice(v, (rows, cols), &device)
            .unwrap()
            .to_dtype(dtype)
            .unwrap()
    };
    let floats = |t: &Tensor| -> Vec<f64> {
        t.to_dtype(DType::F64)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap()
    };
    let mut steps = Vec::new();
    for step in &case.steps {
        let smooth = step.smooth.as_ref().map(|call| {
            let n = call.labels.len();
            let x = Var::from_tensor(&tensor(&call.features, n, d)).unwrap();
            let y = tensor(&call.labels, n, 1);
            let out = layer.smooth(x.as_tensor(), &y, step.epoch).unwrap();
            let upstream = tensor(&call.upstream, n, d);
            let grads = out
                .mul(&upstream)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            SmoothReport {
                out: floats(&out),
                grad_features: floats(grads.get(x.as_tensor()).unwrap()),
            }
        });
        if let Some(call) = &step.update {
            let n = call.labels.len();
            layer.update_last_epoch_stats(step.epoch);
            let updated = layer
                .update_running_stats(
                    &tensor(&call.features, n, d),
                    &tensor(&call.labels, n, 1),
                    step.epoch,
                )
                .unwrap();
            assert!(updated);
        }
        steps.push(step_report(step.epoch, smooth, &layer.state().unwrap()));
    }
    steps
}

#[test]
fn every_fds_fixture_through_the_layer() {
    for (name, case) in cases() {
        for (dtype, tol) in [(DType::F64, F64_TOL), (DType::F32, F32_TOL)] {
            check(&case, &replay(&case, dtype), tol)
                .unwrap_or_else(|e| panic!("{name} {dtype:?}: {e}"));
        }
    }
}

#[test]
fn bad_inputs_are_errors() {
    let config = conr_core::fds::Fds {
        bucket_num: 6,
        bucket_start: 0,
        ks: 3,
        ..Default::default()
    };
    let layer = FdsLayer::new(config, 2).unwrap();
    let x = Tensor::zeros((3, 2), DType::F32, &Device::Cpu).unwrap();
    let y = Tensor::zeros(4, DType::F32, &Device::Cpu).unwrap();
    assert!(layer.update_running_stats(&x, &y, 0).is_err());
    let wide = Tensor::zeros((3, 3), DType::F32, &Device::Cpu).unwrap();
    let y = Tensor::zeros(3, DType::F32, &Device::Cpu).unwrap();
    let err = layer.update_running_stats(&wide, &y, 0).unwrap_err();
    assert!(conr_candle::core_error(&err).is_some(), "{err}");
    assert!(FdsLayer::new(conr_core::fds::Fds { ks: 4, ..config }, 2).is_err());
}
