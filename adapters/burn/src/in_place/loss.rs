//! [`ConrLoss`]'s in-place path: the batch's tensors on burn's wgpu device,
//! handed to conr-wgpu without a copy through the host.

use burn::backend::Dispatch;
use burn::tensor::{DType, Device, Tensor};
use conr_core::Shape;
use conr_wgpu::Status;

use super::SharedWgpu;
use super::extension::InPlace;
use crate::{ConrLoss, Error};

impl ConrLoss {
    /// The same loss, in place for f32 features on `shared`'s device.
    pub fn in_place_on(mut self, shared: SharedWgpu) -> Self {
        self.shared = Some(shared);
        self
    }

    /// The same loss, refusing bad values on the in-place path too: each
    /// batch then costs one read of the device's status word (a wait for
    /// the GPU), which names the first bad value as the host path does.
    /// Without it, bad values on the in-place path give a NaN loss and
    /// gradient (see [`ConrLoss::forward`]). The host path always refuses them.
    pub fn checked(mut self, checked: bool) -> Self {
        self.checked = checked;
        self
    }

    /// The shared device, where these features take the in-place path.
    pub(crate) fn in_place_device(&self, features: &Tensor<2>) -> Option<&SharedWgpu> {
        self.shared.as_ref().filter(|shared| {
            features.device() == *shared.device() && features.dtype() == DType::F32
        })
    }

    /// The loss and the gradient of a batch on `shared`'s device, recorded
    /// on burn's own buffers.
    pub(crate) fn in_place<const L: usize>(
        &self,
        shared: &SharedWgpu,
        shape: Shape,
        features: &Tensor<2>,
        labels: Tensor<L>,
        preds: Tensor<L>,
        weights: Option<Tensor<1>>,
    ) -> Result<(Tensor<1>, Tensor<2>), Error> {
        shared.gpu().check_record(shape, &self.config)?;
        let device = shared.device();
        same_device("labels", labels.device(), device)?;
        same_device("predictions", preds.device(), device)?;
        if let Some(w) = &weights {
            same_device("weights", w.device(), device)?;
        }
        let flat = |t: Tensor<L>| -> Tensor<1> {
            t.inner()
                .cast(DType::F32)
                .reshape([shape.rows * shape.label_dim])
        };
        let features = features.clone().inner();
        let (labels, preds) = (flat(labels), flat(preds));
        let weighted = weights.is_some();
        // The extension takes four tensors; without eta this one is never read.
        let weights = match weights {
            Some(w) => w.inner().cast(DType::F32),
            None => Tensor::ones([shape.rows], (device, DType::F32)),
        };
        let (loss, grad, status) = <Dispatch as InPlace>::conr_in_place(
            features.into_dispatch(),
            labels.into_dispatch(),
            preds.into_dispatch(),
            weights.into_dispatch(),
            shared.job(shape, self.config, weighted),
        );
        if self.checked {
            let status = Tensor::<1>::from_dispatch(status)
                .try_into_data()
                .map_err(|e| Error::Burn(format!("reading the status: {e}")))?;
            if let Some(e) = shared.take_error() {
                return Err(e);
            }
            let bits = status
                .as_slice::<f32>()
                .map_err(|e| Error::Burn(format!("reading the status: {e:?}")))?
                .first()
                .map_or(0, |word| word.to_bits());
            if let Some(e) = Status(bits).error() {
                return Err(e.into());
            }
        }
        Ok((Tensor::from_dispatch(loss), Tensor::from_dispatch(grad)))
    }
}

/// The devices of a batch's other tensors, against the features'.
fn same_device(what: &str, other: Device, features: &Device) -> Result<(), Error> {
    if other == *features {
        Ok(())
    } else {
        Err(Error::Device(format!(
            "the {what} are on {other:?}, the features on {features:?}"
        )))
    }
}
