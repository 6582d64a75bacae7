//! FDS (feature distribution smoothing) as a candle layer: the statistics
//! live in the layer, the statistics pass runs on a conr engine, and
//! [`FdsLayer::smooth`] is differentiable in the features.

use std::sync::Arc;

use candle_core::{DType, Tensor};
use conr_core::FloatEngine;
use conr_core::fds::{Fds, FdsState};
use conr_cpu::SharedFds;

use crate::error::{core, msg};
use crate::host_op::{host, on_cpu};

/// FDS over candle tensors, with the reference module's three steps: at each
/// epoch's end [`FdsLayer::update_last_epoch_stats`] then
/// [`FdsLayer::update_running_stats`], and during training
/// [`FdsLayer::smooth`]. The statistics are kept in f64 ([`FdsState`]);
/// tensors may be f32 or f64, on the CPU.
///
/// ```
/// use candle_core::{Device, Tensor};
/// use conr_candle::FdsLayer;
/// use conr_core::fds::Fds;
///
/// let fds = FdsLayer::new(Fds { bucket_num: 10, bucket_start: 0, ks: 3, ..Fds::default() }, 2)?;
/// let x = Tensor::new(&[[0.0f32, 1.0], [2.0, 3.0], [4.0, 5.0]], &Device::Cpu)?;
/// let y = Tensor::new(&[1.0f32, 1.0, 2.0], &Device::Cpu)?;
/// fds.update_last_epoch_stats(0);
/// fds.update_running_stats(&x, &y, 0)?;
/// fds.update_last_epoch_stats(1);
/// let smoothed = fds.smooth(&x, &y, 1)?;
/// assert_eq!(smoothed.dims(), [3, 2]);
/// # Ok::<(), candle_core::Error>(())
/// ```
pub struct FdsLayer(SharedFds);

impl FdsLayer {
    /// A fresh layer for features of width `feature_dim`, its statistics
    /// pass on the fast CPU engine.
    pub fn new(config: Fds, feature_dim: usize) -> candle_core::Result<Self> {
        let engine: Arc<dyn FloatEngine> = Arc::new(conr_cpu::Fast::new());
        Self::with_engine(config, feature_dim, &engine)
    }

    /// A fresh layer whose statistics pass runs on `engine`.
    pub fn with_engine(
        config: Fds,
        feature_dim: usize,
        engine: &Arc<dyn FloatEngine>,
    ) -> candle_core::Result<Self> {
        SharedFds::new(config, feature_dim, Arc::clone(engine))
            .map(Self)
            .map_err(core("FdsLayer"))
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
    pub fn update_running_stats(
        &self,
        features: &Tensor,
        labels: &Tensor,
        epoch: u64,
    ) -> candle_core::Result<bool> {
        let (x, y) = rows(features, labels)?;
        self.0
            .update_running_stats(&x, &y, epoch)
            .map_err(core("update_running_stats"))
    }

    /// A training batch's features (`[n, D]`) smoothed (from `start_smooth`
    /// on), differentiable: the gradient is the calibration's per-dimension
    /// scale. Candle tensors are immutable, so the reference's write into
    /// its input is `features = fds.smooth(&features, ...)` here.
    pub fn smooth(
        &self,
        features: &Tensor,
        labels: &Tensor,
        epoch: u64,
    ) -> candle_core::Result<Tensor> {
        let (x, y) = rows(features, labels)?;
        let smoothed = self.0.smooth(&x, &y, epoch).map_err(core("smooth"))?;
        let (dims, device, dtype) = (features.dims2()?, features.device(), features.dtype());
        let out = Tensor::from_vec(smoothed.out, dims, device)?.to_dtype(dtype)?;
        let scale = Tensor::from_vec(smoothed.scale, dims, device)?.to_dtype(dtype)?;
        // The value is `out` exactly (x − x̄ is 0); the gradient is `scale`.
        out + (features - features.detach())?.mul(&scale)?
    }
}

/// The features and labels as host f64 rows.
fn rows(features: &Tensor, labels: &Tensor) -> candle_core::Result<(Vec<f64>, Vec<f64>)> {
    on_cpu(features)?;
    let (n, _) = features.dims2()?;
    let x = features
        .detach()
        .to_dtype(DType::F64)?
        .flatten_all()?
        .to_vec1()?;
    let (y, width) = host(labels, "labels")?;
    if width != 1 || y.len() != n {
        return Err(msg(format!(
            "labels of shape {:?}: need [{n}] or [{n}, 1]",
            labels.dims()
        )));
    }
    Ok((x, y))
}
