"""ConR as a PyTorch op: ``conr_loss`` and the module ``ConRLoss``.

The loss is a real torch op (``torch.ops.conr.loss``, registered with
``torch.library.custom_op``, with a fake kernel and an autograd formula), so
it works under ``torch.compile(fullgraph=True)``, forward and backward. Its
gradient is conr's analytic gradient and flows to the features only: the
labels, predictions and weights are constants, as in the paper (pass the
predictions detached or not; no gradient reaches them either way).

- f32 and f64 features are computed as given; f16 and bf16 in f32, cast back.
- ``engine="auto"`` (the default) computes CPU tensors on the fast engine,
  and CUDA tensors on conr's gpu engine where wgpu has an adapter on the
  same physical GPU (matched by PCI address), else on the fast engine
  (``conr._devices``). ``"fast"``, ``"reference"``, ``"gpu"`` and
  ``"gpu@0000:01:00.0"`` name one.
- CPU tensors reach the engine without a copy (non-contiguous ones are made
  contiguous first).
- CUDA tensors take the host, through pinned buffers reused while the shape
  stays the same: the batch goes to the CPU, conr computes, and the loss and
  gradient come back (two M×D transfers).

With ``group=`` (a ``torch.distributed`` process group) the loss is that of
the global batch, every rank's rows concatenated in rank order (unequal
sizes allowed), computed exactly with conr's two-phase protocol: the ranks
all-gather the inputs (detached), each computes its rows' outcomes, they
all-gather those (10 values a row), and each computes its rows' gradient.
Every rank returns the same global loss. Gradient convention: each rank's
backward gives its rows ``world_size × ∂L/∂features``, so that
DistributedDataParallel, which averages the ranks' parameter gradients,
produces exactly the parameter gradient of the global-batch loss. No
differentiable all-gather is used.
"""

import functools
from typing import Optional, Union

import numpy as np
import torch

# The first call of a custom op imports torch._dynamo, and with it triton,
# which carries its own LLVM. Loaded after a Mesa Vulkan driver (lavapipe,
# which conr's gpu engine may open) has loaded the system's LLVM, it crashes
# the process; loaded first, both work. So it is loaded here, up front.
import torch._dynamo  # noqa: E402, F401
import torch.distributed as dist  # noqa: E402
from torch import Tensor

from . import Config, _native
from ._devices import engine_for, to_device, to_host
from ._fds import FDS  # noqa: E402
from ._torch_companions import (  # noqa: E402
    BalancedMSELoss,
    RankSimLoss,
    RnCLoss,
    balanced_mse_loss,
    rank_sim_loss,
    rnc_loss,
)

__all__ = [
    "BalancedMSELoss",
    "ConRLoss",
    "FDS",
    "RankSimLoss",
    "RnCLoss",
    "balanced_mse_loss",
    "conr_loss",
    "rank_sim_loss",
    "rnc_loss",
]


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """The precision a batch is computed in: f64 and f32 as given, f16 and bf16 in f32."""
    if dtype == torch.float64:
        return torch.float64
    if dtype in (torch.float32, torch.float16, torch.bfloat16):
        return torch.float32
    raise TypeError(f"features must be a floating-point tensor, not {dtype}")


@functools.lru_cache(maxsize=64)
def _config(text: str) -> Config:
    return Config.from_json(text)


@torch.library.custom_op("conr::loss", mutates_args=())
def _loss_op(
    features: Tensor,
    labels: Tensor,
    preds: Tensor,
    weights: Optional[Tensor],
    config: str,
    engine: str,
) -> tuple[Tensor, Tensor]:
    dtype = _compute_dtype(features.dtype)
    out = _native.compute(
        to_host(features, dtype, "features"),
        to_host(labels, dtype, "labels"),
        to_host(preds, dtype, "preds"),
        None if weights is None else to_host(weights, dtype, "weights"),
        config=_config(config)._native,
        engine=engine_for(engine, features.device),
    )
    loss = torch.tensor(out.loss, dtype=features.dtype, device=features.device)
    grad = to_device(out.grad_features, features, "grad")
    return loss, grad


@_loss_op.register_fake
def _(features, labels, preds, weights, config, engine):
    return features.new_empty(()), features.new_empty(features.shape)


def _setup_context(ctx, inputs, output):
    ctx.save_for_backward(output[1])
    ctx.mark_non_differentiable(output[1])
    # The gradient output gets no gradient: without this, autograd would
    # fill an M×D tensor of zeros for it on every backward.
    ctx.set_materialize_grads(False)


def _backward(ctx, grad_loss, _grad_grad):
    (grad,) = ctx.saved_tensors
    # The features only: labels, predictions, weights and the strings get
    # none; and none at all where the loss has none (it is not materialized).
    grad_features = None if grad_loss is None else torch.ops.conr.scale(grad, grad_loss)
    return grad_features, None, None, None, None, None


@torch.library.custom_op("conr::scale", mutates_args=())
def _scale(grad: Tensor, by: Tensor) -> Tensor:
    """``by · grad``, the backward's product. f32 and f64 CPU tensors are
    scaled by NumPy, on the calling thread: torch's intra-op threads, woken
    for an elementwise product, would spin on the cores that conr's own
    threads take next (measured: 1.2 ms against 2.1 ms a step at 128×2048 on
    two cores)."""
    if grad.device.type == "cpu" and grad.dtype in (torch.float32, torch.float64):
        return torch.from_numpy(np.multiply(grad.numpy(), by.item()))
    return grad * by


@_scale.register_fake
def _(grad, by):
    return torch.empty_like(grad)


_loss_op.register_autograd(_backward, setup_context=_setup_context)


class _Attach(torch.autograd.Function):
    """``loss``, differentiable in ``features`` with ∂loss/∂features = ``grad``."""

    @staticmethod
    def forward(ctx, features, loss, grad):
        ctx.save_for_backward(grad)
        return loss.clone()

    @staticmethod
    def backward(ctx, grad_loss):
        (grad,) = ctx.saved_tensors
        return torch.ops.conr.scale(grad, grad_loss), None, None


def _weights_tensor(weights, features):
    """``weights`` as the op takes them: a tensor, None, or a Python number
    given to every row (the official code's default is ``weights=1``)."""
    if isinstance(weights, (int, float)) and not isinstance(weights, bool):
        if not isinstance(features, Tensor) or features.dim() != 2:
            return weights  # _check reports the features
        return torch.full(
            (features.shape[0],), float(weights), dtype=features.dtype, device=features.device
        )
    return weights


def _check(features, labels, preds, weights, config, engine):
    for name, t in (("features", features), ("labels", labels), ("preds", preds)):
        if not isinstance(t, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, not {type(t).__name__}")
    if weights is not None and not isinstance(weights, Tensor):
        raise TypeError(f"weights must be a torch.Tensor, a number or None, not {type(weights).__name__}")
    if not isinstance(config, Config):
        raise TypeError(f"config must be a conr.Config, not {type(config).__name__}")
    if not isinstance(engine, str):
        raise TypeError(f"engine must be a string, not {type(engine).__name__}")
    if features.dim() != 2:
        raise ValueError(f"features must have shape (M, D), not {tuple(features.shape)}")
    _compute_dtype(features.dtype)
    for name, t in (("features", features), ("labels", labels), ("preds", preds), ("weights", weights)):
        if t is not None and t.device.type == "meta":
            raise ValueError(f"{name} is a meta tensor: conr computes on real data (CPU or CUDA tensors)")


def _all_gather_rows(t: Tensor, counts: list, group) -> Tensor:
    """Every rank's rows of ``t``, concatenated in rank order (unequal row
    counts: padded to the largest for the collective, then cut back)."""
    most = max(counts)
    padded = t.new_zeros((most,) + tuple(t.shape[1:]))
    padded[: t.shape[0]] = t
    parts = [torch.empty_like(padded) for _ in counts]
    dist.all_gather(parts, padded, group=group)
    return torch.cat([p[:n] for p, n in zip(parts, counts)])


def _distributed(features, labels, preds, weights, config, engine, group):
    engine = engine_for(engine, features.device)
    world = dist.get_world_size(group)
    rank = dist.get_rank(group)
    dtype = _compute_dtype(features.dtype)
    # Collectives on the features' device (CUDA for NCCL), computation on the host.
    device = features.device
    m = features.shape[0]
    sizes = [torch.zeros(1, dtype=torch.int64, device=device) for _ in range(world)]
    dist.all_gather(sizes, torch.tensor([m], dtype=torch.int64, device=device), group=group)
    counts = [int(s.item()) for s in sizes]
    start = sum(counts[:rank])
    rows = (start, start + m)

    def gathered(t):
        if t is None:
            return None
        return to_host(_all_gather_rows(t.detach().to(dtype).reshape(m, -1), counts, group), dtype)

    inputs = [gathered(features), gathered(labels), gathered(preds), gathered(weights)]
    if weights is not None:
        inputs[3] = inputs[3].reshape(-1)
    message = _native.forward_rows(*inputs, config=config._native, engine=engine, rows=rows)
    message = torch.from_numpy(message).to(device)
    lengths = [_native.message_len(n) for n in counts]
    most = max(lengths)
    padded = message.new_zeros(most)
    padded[: message.shape[0]] = message
    parts = [torch.empty_like(padded) for _ in counts]
    dist.all_gather(parts, padded, group=group)
    messages = [to_host(p[:n], dtype) for p, n in zip(parts, lengths)]
    part, grad = _native.backward_rows(
        *inputs, config=config._native, engine=engine, rows=rows, messages=messages
    )
    total = torch.tensor([part], dtype=torch.float64, device=device)
    dist.all_reduce(total, group=group)
    loss = total[0].to(features.dtype)
    grad = torch.from_numpy(grad).to(device=device, dtype=features.dtype) * world
    return _Attach.apply(features, loss, grad)


def conr_loss(
    features: Tensor,
    labels: Tensor,
    preds: Tensor,
    weights: Union[Tensor, float, None] = None,
    *,
    config: Config,
    engine: str = "auto",
    group=None,
) -> Tensor:
    """The ConR loss of ``features`` (M, D), as a 0-d tensor of the features'
    dtype and device, differentiable in ``features``.

    ``labels`` and ``preds`` are (M,), (M, 1) or (M, L); ``weights`` (the
    pushing powers eta) are (M,) or (M, 1), or one number for every row, as
    the official code's ``weights=1``. ``engine`` is ``"auto"`` (see the
    module's docs), ``"fast"``, ``"reference"``, ``"gpu"`` or
    ``"gpu@<PCI address>"``. With ``group`` (a process group, or
    ``torch.distributed.group.WORLD``) it is the loss of the global batch
    across the group's ranks (see the module's docs for the gradient
    convention).
    """
    weights = _weights_tensor(weights, features)
    _check(features, labels, preds, weights, config, engine)
    if group is not None:
        return _distributed(features, labels, preds, weights, config, engine, group)
    loss, _ = torch.ops.conr.loss(features, labels, preds, weights, config._json, engine)
    return loss


class ConRLoss(torch.nn.Module):
    """ConR as a module: ``ConRLoss(config, engine="auto", group=None)``, then
    ``loss = module(features, labels, preds, weights=None)``."""

    def __init__(self, config: Config, engine: str = "auto", group=None):
        super().__init__()
        if not isinstance(config, Config):
            raise TypeError(f"config must be a conr.Config, not {type(config).__name__}")
        self.config = config
        self.engine = engine
        self.group = group

    def forward(self, features, labels, preds, weights=None):
        return conr_loss(
            features, labels, preds, weights, config=self.config, engine=self.engine, group=self.group
        )

    def extra_repr(self):
        return f"config={self.config!r}, engine={self.engine!r}"
