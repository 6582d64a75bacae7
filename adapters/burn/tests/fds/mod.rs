//! The FDS layer on burn's CPU backends: every FDS fixture in f64 and f32,
//! its gradient through burn's autodiff, and bad inputs.

use burn::tensor::{DType, Device, Tensor, TensorData};
use conr_burn::FdsLayer;
use conr_schema::{Error, FdsSteps, SmoothCall, SmoothReport, UpdateCall, state_buffers};
use conr_tests::fds::{F32_TOL, F64_TOL, cases, check};

use crate::common::values;

fn tensor<const D: usize>(v: &[f64], dims: [usize; D], device: &Device, dtype: DType) -> Tensor<D> {
    Tensor::<D>::from_data(TensorData::new(v.to_vec(), dims), (device, dtype))
}

/// The layer on burn tensors of one device and dtype.
struct Burn {
    layer: FdsLayer,
    dim: usize,
    device: Device,
    dtype: DType,
}

impl FdsSteps for Burn {
    fn smooth(&mut self, call: &SmoothCall, epoch: u64) -> Result<SmoothReport, Error> {
        let (n, d, device, dtype) = (call.labels.len(), self.dim, &self.device, self.dtype);
        let x = tensor(&call.features, [n, d], device, dtype).require_grad();
        let y = tensor(&call.labels, [n, 1], device, dtype);
        let out = self.layer.smooth(x.clone(), y, epoch).unwrap();
        let upstream = tensor(&call.upstream, [n, d], device, dtype);
        let grads = (out.clone() * upstream).sum().backward();
        Ok(SmoothReport {
            out: values(out),
            grad_features: values(x.grad(&grads).unwrap()),
        })
    }

    fn update(&mut self, call: &UpdateCall, epoch: u64) -> Result<(), Error> {
        let (n, d, device, dtype) = (call.labels.len(), self.dim, &self.device, self.dtype);
        self.layer.update_last_epoch_stats(epoch);
        let features = tensor(&call.features, [n, d], device, dtype);
        let labels = tensor(&call.labels, [n], device, dtype);
        assert!(
            self.layer
                .update_running_stats(features, labels, epoch)
                .unwrap()
        );
        Ok(())
    }

    fn buffers(&self) -> (u64, Vec<Vec<f64>>) {
        state_buffers(&self.layer.state())
    }
}

#[test]
fn every_fds_fixture_through_the_layer() {
    for (backend, device) in [("ndarray", Device::ndarray()), ("flex", Device::flex())] {
        let device = device.autodiff();
        for (name, case) in cases() {
            for (dtype, tol) in [(DType::F64, F64_TOL), (DType::F32, F32_TOL)] {
                let mut burn = Burn {
                    layer: FdsLayer::new(case.fds().unwrap(), case.feature_dim).unwrap(),
                    dim: case.feature_dim,
                    device: device.clone(),
                    dtype,
                };
                check(&case, &case.replay_with(&mut burn).unwrap(), tol)
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
