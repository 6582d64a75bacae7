//! The FDS layer against the FDS fixtures, in f64 and f32, its gradient
//! through `backward()`.

use candle_core::{DType, Device, Tensor, Var};
use conr_candle::FdsLayer;
use conr_schema::{Error, FdsSteps, SmoothCall, SmoothReport, UpdateCall, state_buffers};
use conr_tests::fds::{F32_TOL, F64_TOL, cases, check};

/// The layer on candle tensors of one dtype.
struct Candle {
    layer: FdsLayer,
    dim: usize,
    dtype: DType,
}

impl Candle {
    fn tensor(&self, v: &[f64], rows: usize, cols: usize) -> Tensor {
        Tensor::from_slice(v, (rows, cols), &Device::Cpu)
            .unwrap()
            .to_dtype(self.dtype)
            .unwrap()
    }
}

fn floats(t: &Tensor) -> Vec<f64> {
    t.to_dtype(DType::F64)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap()
}

impl FdsSteps for Candle {
    fn smooth(&mut self, call: &SmoothCall, epoch: u64) -> Result<SmoothReport, Error> {
        let n = call.labels.len();
        let x = Var::from_tensor(&self.tensor(&call.features, n, self.dim)).unwrap();
        let y = self.tensor(&call.labels, n, 1);
        let out = self.layer.smooth(x.as_tensor(), &y, epoch).unwrap();
        let upstream = self.tensor(&call.upstream, n, self.dim);
        let loss = out.mul(&upstream).unwrap().sum_all().unwrap();
        let grads = loss.backward().unwrap();
        Ok(SmoothReport {
            out: floats(&out),
            grad_features: floats(grads.get(x.as_tensor()).unwrap()),
        })
    }

    fn update(&mut self, call: &UpdateCall, epoch: u64) -> Result<(), Error> {
        let n = call.labels.len();
        self.layer.update_last_epoch_stats(epoch);
        let (x, y) = (
            self.tensor(&call.features, n, self.dim),
            self.tensor(&call.labels, n, 1),
        );
        assert!(self.layer.update_running_stats(&x, &y, epoch).unwrap());
        Ok(())
    }

    fn buffers(&self) -> (u64, Vec<Vec<f64>>) {
        state_buffers(&self.layer.state())
    }
}

#[test]
fn every_fds_fixture_through_the_layer() {
    for (name, case) in cases() {
        for (dtype, tol) in [(DType::F64, F64_TOL), (DType::F32, F32_TOL)] {
            let mut candle = Candle {
                layer: FdsLayer::new(case.fds().unwrap(), case.feature_dim).unwrap(),
                dim: case.feature_dim,
                dtype,
            };
            check(&case, &case.replay_with(&mut candle).unwrap(), tol)
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
