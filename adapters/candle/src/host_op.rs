//! The one candle op every conr loss uses: its forward pass runs a conr
//! engine on the host in the arguments' precision, and keeps the gradient in
//! each argument for the backward pass.

use std::sync::{Arc, Mutex};

use candle_core::backend::BackendStorage;
use candle_core::{
    CpuStorage, CustomOp1, CustomOp2, DType, Device, Layout, Shape as CandleShape, Tensor,
    WithDType,
};
use conr_core::{Engine, FloatEngine, Scalar};

use crate::error::msg;

/// An argument in `T`: its contiguous values and its dimensions.
pub(crate) type Arg<'a, T> = (&'a [T], &'a [usize]);

/// A loss computed on the host: its value and its gradient in each of its
/// arguments (the tensors the op differentiates; constants live in `self`).
pub(crate) trait HostLoss: Send + Sync + 'static {
    /// The op's name.
    fn name(&self) -> &'static str;

    /// The loss of `args` on `engine`, and `∂loss/∂arg` for each argument in
    /// order, widened to f64.
    fn run<T: Scalar>(
        &self,
        engine: &dyn Engine<T>,
        args: &[Arg<'_, T>],
    ) -> candle_core::Result<(T, Vec<Vec<f64>>)>;
}

/// A [`HostLoss`] as a candle op of one or two arguments.
pub(crate) struct HostOp<L> {
    loss: L,
    engine: Arc<dyn FloatEngine>,
    /// The gradients from the forward pass.
    grads: Mutex<Option<Vec<Vec<f64>>>>,
}

/// Values in `T` to f64, for the op's stored gradient.
pub(crate) fn widen<T: Scalar>(v: &[T]) -> Vec<f64> {
    v.iter().map(|g| g.to_f64().unwrap_or(f64::NAN)).collect()
}

/// Values in f64 to `T` (constants captured by a loss).
pub(crate) fn narrow<T: Scalar>(v: &[f64]) -> Vec<T> {
    v.iter()
        .map(|&x| T::from(x).unwrap_or_else(T::nan))
        .collect()
}

/// The host copy of a constant tensor, and its width: `[n]` is one wide.
pub(crate) fn host(t: &Tensor, what: &str) -> candle_core::Result<(Vec<f64>, usize)> {
    let width = match t.dims() {
        [_] => 1,
        [_, w] => *w,
        other => {
            return Err(msg(format!(
                "{what} of shape {other:?}: need [n] or [n, L]"
            )));
        }
    };
    Ok((
        t.detach().to_dtype(DType::F64)?.flatten_all()?.to_vec1()?,
        width,
    ))
}

/// Refuses tensors off the CPU: the op reads them as host slices.
pub(crate) fn on_cpu(t: &Tensor) -> candle_core::Result<()> {
    if matches!(t.device(), Device::Cpu) {
        Ok(())
    } else {
        Err(msg(
            "conr's candle ops run on CPU tensors; use conr-wgpu for GPU buffers",
        ))
    }
}

impl<L: HostLoss> HostOp<L> {
    pub(crate) fn new(loss: L, engine: &Arc<dyn FloatEngine>) -> Self {
        Self {
            loss,
            engine: Arc::clone(engine),
            grads: Mutex::new(None),
        }
    }

    fn forward(
        &self,
        args: &[(&CpuStorage, &Layout)],
    ) -> candle_core::Result<(CpuStorage, CandleShape)> {
        let dtype = args[0].0.dtype();
        if args.iter().any(|(s, _)| s.dtype() != dtype) {
            return Err(msg("the differentiated tensors must share one dtype"));
        }
        let (loss, grads) = match dtype {
            DType::F32 => {
                let (loss, grads) = self.run_in::<f32>(&*self.engine, args)?;
                (CpuStorage::F32(vec![loss]), grads)
            }
            DType::F64 => {
                let (loss, grads) = self.run_in::<f64>(&*self.engine, args)?;
                (CpuStorage::F64(vec![loss]), grads)
            }
            other => return Err(msg(format!("need f32 or f64 tensors, not {other:?}"))),
        };
        *self
            .grads
            .lock()
            .map_err(|_| msg("a previous call panicked"))? = Some(grads);
        Ok((loss, CandleShape::from(())))
    }

    fn run_in<T: Scalar + WithDType>(
        &self,
        engine: &dyn Engine<T>,
        args: &[(&CpuStorage, &Layout)],
    ) -> candle_core::Result<(T, Vec<Vec<f64>>)> {
        let slices = args
            .iter()
            .map(|(storage, layout)| {
                let (start, end) = layout
                    .contiguous_offsets()
                    .ok_or_else(|| msg("the inputs must be contiguous"))?;
                Ok((&storage.as_slice::<T>()?[start..end], layout.dims()))
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        self.loss.run(engine, &slices)
    }

    /// Argument `i`'s gradient, times the output's.
    fn grad(
        &self,
        i: usize,
        arg: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        let grads = self
            .grads
            .lock()
            .map_err(|_| msg("a previous call panicked"))?;
        let grad = grads
            .as_ref()
            .and_then(|g| g.get(i))
            .ok_or_else(|| msg("backward before forward"))?;
        let grad = Tensor::from_slice(grad, arg.shape(), arg.device())?.to_dtype(arg.dtype())?;
        Ok(Some(grad.broadcast_mul(grad_res)?))
    }
}

impl<L: HostLoss> CustomOp1 for HostOp<L> {
    fn name(&self) -> &'static str {
        self.loss.name()
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, CandleShape)> {
        self.forward(&[(storage, layout)])
    }

    fn bwd(
        &self,
        arg: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        self.grad(0, arg, grad_res)
    }
}

impl<L: HostLoss> CustomOp2 for HostOp<L> {
    fn name(&self) -> &'static str {
        self.loss.name()
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, CandleShape)> {
        self.forward(&[(s1, l1), (s2, l2)])
    }

    fn bwd(
        &self,
        a: &Tensor,
        b: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        Ok((self.grad(0, a, grad_res)?, self.grad(1, b, grad_res)?))
    }
}
