//! The host path: the batch is read into host memory, a conr engine
//! computes the loss and the gradient, and both come back as tensors on the
//! features' device. It runs on every backend burn offers.

use burn::tensor::{DType, Element, Tensor, TensorData};
use conr_core::{Batch, Config, Engine, FloatEngine, Inputs, Scalar, Shape};

use crate::Error;

/// The batch as host tensors' data, already checked for shape.
pub(crate) struct HostBatch {
    pub shape: Shape,
    pub features: TensorData,
    pub labels: TensorData,
    pub preds: TensorData,
    pub weights: Option<TensorData>,
}

pub(crate) fn read<const D: usize>(what: &str, tensor: Tensor<D>) -> Result<TensorData, Error> {
    tensor
        .try_into_data()
        .map_err(|e| Error::Burn(format!("reading the {what}: {e}")))
}

impl HostBatch {
    pub fn read<const L: usize>(
        shape: Shape,
        features: &Tensor<2>,
        labels: Tensor<L>,
        preds: Tensor<L>,
        weights: Option<Tensor<1>>,
    ) -> Result<Self, Error> {
        Ok(Self {
            shape,
            features: read("features", features.clone())?,
            labels: read("labels", labels)?,
            preds: read("predictions", preds)?,
            weights: weights.map(|w| read("weights", w)).transpose()?,
        })
    }

    /// The loss (`[1]`) and `∂loss/∂features` (M×D) as host data, on
    /// `engine`: in f64 for f64 features, in f32 for every other float type.
    pub fn compute(
        self,
        engine: &dyn FloatEngine,
        config: &Config,
    ) -> Result<(TensorData, TensorData), Error> {
        match self.features.dtype() {
            DType::F64 => self.compute_in::<f64>(engine, config),
            _ => self.compute_in::<f32>(engine, config),
        }
    }

    fn compute_in<T: Scalar + Element>(
        self,
        engine: &dyn Engine<T>,
        config: &Config,
    ) -> Result<(TensorData, TensorData), Error> {
        let values = Values::<T>::of(self)?;
        let out = engine.compute(&values.batch()?, config)?;
        let rows = [values.shape.rows, values.shape.dim];
        Ok((
            TensorData::new(vec![out.loss], [1]),
            TensorData::new(out.grad_features, rows),
        ))
    }
}

/// A host batch's values in one precision.
struct Values<T> {
    shape: Shape,
    features: Vec<T>,
    labels: Vec<T>,
    preds: Vec<T>,
    weights: Option<Vec<T>>,
}

impl<T: Scalar + Element> Values<T> {
    fn of(batch: HostBatch) -> Result<Self, Error> {
        Ok(Self {
            shape: batch.shape,
            features: values::<T>(batch.features)?,
            labels: values::<T>(batch.labels)?,
            preds: values::<T>(batch.preds)?,
            weights: batch.weights.map(values::<T>).transpose()?,
        })
    }

    /// The batch, with conr's checks of its values.
    fn batch(&self) -> Result<Batch<'_, T>, Error> {
        let inputs = Inputs {
            features: &self.features,
            labels: &self.labels,
            preds: &self.preds,
            eta: self.weights.as_deref(),
        };
        Ok(Batch::new(self.shape, inputs)?)
    }
}

/// A tensor's host data as values of `T`, converted from its float type.
pub(crate) fn values<T: Element>(data: TensorData) -> Result<Vec<T>, Error> {
    data.convert::<T>()
        .try_into_vec::<T>()
        .map_err(|e| Error::Burn(format!("converting a tensor: {e:?}")))
}
