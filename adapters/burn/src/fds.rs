//! FDS (feature distribution smoothing) as a burn layer, on every backend
//! through the host path: the statistics live in the layer, the statistics
//! pass runs on a conr engine, and [`FdsLayer::smooth`] is differentiable
//! in the features.

use std::sync::Arc;

use burn::tensor::{Tensor, TensorData};
use conr_core::FloatEngine;
use conr_core::fds::{Fds, FdsState};
use conr_cpu::{Fast, SharedFds};

use crate::Error;
use crate::host::{read, values};

/// FDS over burn tensors, with the reference module's three steps: at each
/// epoch's end [`FdsLayer::update_last_epoch_stats`] then
/// [`FdsLayer::update_running_stats`], and during training
/// [`FdsLayer::smooth`]. The statistics are kept in f64 ([`FdsState`]).
///
/// ```
/// use burn::tensor::{Device, Tensor};
/// use conr_burn::FdsLayer;
/// use conr_core::fds::Fds;
///
/// let device = Device::flex().autodiff();
/// let fds = FdsLayer::new(Fds { bucket_num: 10, bucket_start: 0, ks: 3, ..Fds::default() }, 2)?;
/// let x = Tensor::<2>::from_floats([[0.0, 1.0], [2.0, 3.0], [4.0, 5.0]], &device);
/// let y = Tensor::<1>::from_floats([1.0, 1.0, 2.0], &device);
/// fds.update_last_epoch_stats(0);
/// fds.update_running_stats(x.clone(), y.clone(), 0)?;
/// fds.update_last_epoch_stats(1);
/// let smoothed = fds.smooth(x.require_grad(), y, 1)?;
/// assert_eq!(smoothed.dims(), [3, 2]);
/// # Ok::<(), conr_burn::Error>(())
/// ```
pub struct FdsLayer(SharedFds);

impl FdsLayer {
    /// A fresh layer for features of width `feature_dim`, its statistics
    /// pass on the fast CPU engine.
    pub fn new(config: Fds, feature_dim: usize) -> Result<Self, Error> {
        Self::with_engine(config, feature_dim, Arc::new(Fast::new()))
    }

    /// A fresh layer whose statistics pass runs on `engine`.
    pub fn with_engine(
        config: Fds,
        feature_dim: usize,
        engine: Arc<dyn FloatEngine>,
    ) -> Result<Self, Error> {
        Ok(Self(SharedFds::new(config, feature_dim, engine)?))
    }

    /// A copy of the state: every buffer by the reference's name, and the
    /// epoch counter.
    pub fn state(&self) -> FdsState<f64> {
        self.0.state()
    }

    /// Replaces the state (one saved with [`FdsLayer::state`], say).
    pub fn set_state(&self, state: FdsState<f64>) {
        self.0.set_state(state);
    }

    /// At the end of epoch `epoch`, before the running update: smooths the
    /// running statistics into the last epoch's when `epoch` is one past the
    /// counter. Returns whether it did.
    pub fn update_last_epoch_stats(&self, epoch: u64) -> bool {
        self.0.update_last_epoch_stats(epoch)
    }

    /// At the end of epoch `epoch`: updates the running statistics with the
    /// epoch's features (`[N, D]`) and labels (`[N]` or `[N, 1]`). Returns
    /// whether it updated.
    pub fn update_running_stats<const L: usize>(
        &self,
        features: Tensor<2>,
        labels: Tensor<L>,
        epoch: u64,
    ) -> Result<bool, Error> {
        let (x, y) = rows(features, labels)?;
        Ok(self.0.update_running_stats(&x, &y, epoch)?)
    }

    /// A training batch's features (`[n, D]`) smoothed (from `start_smooth`
    /// on), differentiable on an autodiff device: the gradient is the
    /// calibration's per-dimension scale. burn's tensors are values, so the
    /// reference's write into its input is `features = fds.smooth(features, ...)`.
    pub fn smooth<const L: usize>(
        &self,
        features: Tensor<2>,
        labels: Tensor<L>,
        epoch: u64,
    ) -> Result<Tensor<2>, Error> {
        let dims = features.dims();
        let (x, y) = rows(features.clone(), labels)?;
        let smoothed = self.0.smooth(&x, &y, epoch)?;
        let device = features.device();
        let autodiff = device.is_autodiff();
        // Constants: created without autodiff, they carry no graph.
        let options = (&device.without_autodiff(), features.dtype());
        let out = Tensor::<2>::from_data(TensorData::new(smoothed.out, dims), options);
        if !autodiff {
            return Ok(out);
        }
        let scale = Tensor::<2>::from_data(TensorData::new(smoothed.scale, dims), options);
        // The value is `out` exactly (x − x̄ is 0); the gradient is `scale`.
        let frozen = features.clone().detach().set_require_grad(false);
        Ok((features - frozen) * scale + out)
    }
}

/// The features and labels as host f64 rows.
fn rows<const L: usize>(
    features: Tensor<2>,
    labels: Tensor<L>,
) -> Result<(Vec<f64>, Vec<f64>), Error> {
    let [n, _] = features.dims();
    let label_dims = labels.dims();
    if !matches!(label_dims[..], [m] | [m, 1] if m == n) {
        return Err(Error::Shape(format!(
            "labels of shape {label_dims:?}: need [{n}] or [{n}, 1]"
        )));
    }
    Ok((
        values::<f64>(read("features", features)?)?,
        values::<f64>(read("labels", labels)?)?,
    ))
}
