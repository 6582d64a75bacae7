"""The losses ConR is combined with, as PyTorch ops: RankSim, Rank-N-Contrast
and Balanced MSE (re-exported by ``conr.torch``).

Each is a real torch op (``torch.ops.conr.rank_sim``, ``conr.rnc``,
``conr.balanced_mse``: ``custom_op`` with a fake kernel and an autograd
formula) computed by conr's engines on the host: exact, in O(n·D) memory,
finite for every finite input. RankSim and Rank-N-Contrast give a gradient
to the features only; Balanced MSE to the predictions and to σ.
"""

from typing import Optional

import torch
from torch import Tensor

from . import _native
from ._devices import to_host

__all__ = [
    "BalancedMSELoss",
    "RankSimLoss",
    "RnCLoss",
    "balanced_mse_loss",
    "rank_sim_loss",
    "rnc_loss",
]


def _dtype(t: Tensor, what: str) -> torch.dtype:
    if t.dtype == torch.float64:
        return torch.float64
    if t.dtype in (torch.float32, torch.float16, torch.bfloat16):
        return torch.float32
    raise TypeError(f"{what} must be a floating-point tensor, not {t.dtype}")


def _tensors(**named):
    for name, t in named.items():
        if not isinstance(t, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, not {type(t).__name__}")
        if t.device.type == "meta":
            raise ValueError(f"{name} is a meta tensor: conr computes on real data (CPU or CUDA tensors)")


def _back(array, like: Tensor) -> Tensor:
    return torch.from_numpy(array).to(device=like.device, dtype=like.dtype)


def _features_backward(ctx, grad_loss, _grad):
    (grad,) = ctx.saved_tensors
    features = None if grad_loss is None else grad * grad_loss
    return (features,) + (None,) * ctx.constants


def _features_context(constants):
    def setup(ctx, inputs, output):
        ctx.save_for_backward(output[1])
        ctx.mark_non_differentiable(output[1])
        ctx.set_materialize_grads(False)
        ctx.constants = constants

    return setup


@torch.library.custom_op("conr::rank_sim", mutates_args=())
def _rank_sim_op(
    features: Tensor,
    labels: Tensor,
    interpolation_lambda: float,
    label_metric: str,
    subsample: str,
    seed: int,
    engine: str,
) -> tuple[Tensor, Tensor]:
    dtype = _dtype(features, "features")
    out = _native.rank_sim(
        to_host(features, dtype),
        to_host(labels, dtype),
        interpolation_lambda=interpolation_lambda,
        label_metric=label_metric,
        subsample=subsample,
        seed=seed,
        engine=engine,
    )
    loss = torch.tensor(out.loss, dtype=features.dtype, device=features.device)
    return loss, _back(out.grad_features, features)


@_rank_sim_op.register_fake
def _(features, labels, interpolation_lambda, label_metric, subsample, seed, engine):
    return features.new_empty(()), features.new_empty(features.shape)


_rank_sim_op.register_autograd(_features_backward, setup_context=_features_context(6))


@torch.library.custom_op("conr::rnc", mutates_args=())
def _rnc_op(features: Tensor, labels: Tensor, temperature: float, label_metric: str, engine: str) -> tuple[Tensor, Tensor]:
    dtype = _dtype(features, "features")
    out = _native.rank_n_contrast(
        to_host(features, dtype),
        to_host(labels, dtype),
        temperature=temperature,
        label_metric=label_metric,
        engine=engine,
    )
    loss = torch.tensor(out.loss, dtype=features.dtype, device=features.device)
    return loss, _back(out.grad_features, features)


@_rnc_op.register_fake
def _(features, labels, temperature, label_metric, engine):
    return features.new_empty(()), features.new_empty(features.shape)


_rnc_op.register_autograd(_features_backward, setup_context=_features_context(4))


@torch.library.custom_op("conr::balanced_mse", mutates_args=())
def _balanced_mse_op(
    preds: Tensor,
    labels: Tensor,
    noise_sigma: Tensor,
    variant: str,
    gmm_means: Optional[list[float]],
    gmm_variances: Optional[list[float]],
    gmm_weights: Optional[list[float]],
    bucket_centers: Optional[list[float]],
    bucket_weights: Optional[list[float]],
    engine: str,
) -> tuple[Tensor, Tensor, Tensor]:
    dtype = _dtype(preds, "preds")
    gmm = None
    if gmm_means is not None:
        gmm = {"means": gmm_means, "variances": gmm_variances, "weights": gmm_weights}
    out = _native.balanced_mse(
        to_host(preds, dtype),
        to_host(labels, dtype),
        float(noise_sigma.detach().cpu().reshape(())),
        variant=variant,
        gmm=gmm,
        bucket_centers=bucket_centers,
        bucket_weights=bucket_weights,
        engine=engine,
    )
    loss = torch.tensor(out.loss, dtype=preds.dtype, device=preds.device)
    sigma = torch.tensor(out.grad_noise_sigma, dtype=noise_sigma.dtype, device=noise_sigma.device)
    return loss, _back(out.grad_preds, preds), sigma.reshape(noise_sigma.shape)


@_balanced_mse_op.register_fake
def _(preds, labels, noise_sigma, variant, gm, gv, gw, bc, bw, engine):
    return preds.new_empty(()), preds.new_empty(preds.shape), noise_sigma.new_empty(noise_sigma.shape)


def _bmse_context(ctx, inputs, output):
    ctx.save_for_backward(output[1], output[2])
    ctx.mark_non_differentiable(output[1], output[2])
    ctx.set_materialize_grads(False)


def _bmse_backward(ctx, grad_loss, _g1, _g2):
    grad_preds, grad_sigma = ctx.saved_tensors
    if grad_loss is None:
        return (None,) * 10
    return (grad_preds * grad_loss, None, grad_sigma * grad_loss) + (None,) * 7


_balanced_mse_op.register_autograd(_bmse_backward, setup_context=_bmse_context)


# Every knob of each companion loss with its default, from the core's tables,
# read once here: a call under torch.compile merges its keywords over these
# in Python, which dynamo traces (the op checks the values when it runs).
_DEFAULTS = {loss: _native.companion_knobs(loss) for loss in ("ranksim", "rnc")}


def _knobs(loss: str, caller: str, given: dict) -> dict:
    """Every knob of ``loss``, ``given`` over the defaults; checked here, with
    the core's errors naming ``caller``, outside torch.compile."""
    if torch.compiler.is_compiling():
        return {**_DEFAULTS[loss], **given}
    return _native.companion_knobs(loss, caller, **given)


def rank_sim_loss(features: Tensor, labels: Tensor, *, engine: str = "fast", **knobs) -> Tensor:
    """RankSim's loss (Gong et al., ICML 2022) of ``features`` (M, D) against
    ``labels`` (M,) or (M, L), differentiable in the features.

    The knobs are RankSim's, by keyword, with the core's defaults
    (``conr.companion_knobs("ranksim")``): ``interpolation_lambda`` (λ),
    ``label_metric``, ``subsample``, ``seed``. The reference keeps one row
    per distinct label, at random; here the choice comes from ``seed``
    (``subsample="every"`` takes every row). The loss is the sum over the
    subset's rows, as in the reference.
    """
    k = _knobs("ranksim", "rank_sim_loss", knobs)
    _tensors(features=features, labels=labels)
    if features.dim() != 2:
        raise ValueError(f"features must have shape (M, D), not {tuple(features.shape)}")
    loss, _ = torch.ops.conr.rank_sim(
        features, labels, float(k["interpolation_lambda"]), k["label_metric"], k["subsample"], int(k["seed"]), engine
    )
    return loss


def rnc_loss(features: Tensor, labels: Tensor, *, engine: str = "fast", **knobs) -> Tensor:
    """Rank-N-Contrast's loss (Zha et al., NeurIPS 2023) of any rows:
    ``features`` (n, D), ``labels`` (n,) or (n, L). The knobs are
    Rank-N-Contrast's, by keyword, with the core's defaults
    (``conr.companion_knobs("rnc")``): ``temperature`` (τ), ``label_metric``,
    ``feature_distance``. See :class:`RnCLoss` for the reference's two-view
    layout."""
    k = _knobs("rnc", "rnc_loss", knobs)
    _tensors(features=features, labels=labels)
    if features.dim() != 2:
        raise ValueError(f"features must have shape (n, D), not {tuple(features.shape)}")
    loss, _ = torch.ops.conr.rnc(features, labels, float(k["temperature"]), k["label_metric"], engine)
    return loss


def balanced_mse_loss(
    preds: Tensor,
    labels: Tensor,
    noise_sigma: Tensor,
    *,
    variant: str = "bmc",
    gmm: Optional[dict] = None,
    bucket_centers=None,
    bucket_weights=None,
    engine: str = "fast",
) -> Tensor:
    """Balanced MSE (Ren et al., CVPR 2022): ``preds`` and ``labels`` (n,) or
    (n, L), ``noise_sigma`` σ as a tensor (usually a learnable parameter).
    Differentiable in ``preds`` and ``noise_sigma``. ``variant`` is ``"bmc"``,
    ``"gai"`` (with ``gmm``: ``means``, ``variances``, ``weights``) or
    ``"bni"`` (with ``bucket_centers`` and ``bucket_weights``)."""
    _tensors(preds=preds, labels=labels, noise_sigma=noise_sigma)
    if noise_sigma.numel() != 1:
        raise ValueError(f"noise_sigma must hold one value, not {tuple(noise_sigma.shape)}")

    def floats(values):
        return None if values is None else [float(x) for x in values]

    gmm = gmm or {}
    loss, _, _ = torch.ops.conr.balanced_mse(
        preds,
        labels,
        noise_sigma,
        variant,
        floats(gmm.get("means")),
        floats(gmm.get("variances")),
        floats(gmm.get("weights")),
        floats(bucket_centers),
        floats(bucket_weights),
        engine,
    )
    return loss


class RankSimLoss(torch.nn.Module):
    """RankSim as a module: ``RankSimLoss(interpolation_lambda=2.0, ...)``, any
    of RankSim's knobs by keyword (checked here, once), then ``loss =
    module(features, labels)``. Multiply by the regularizer's weight γ
    yourself, as the reference's training loop does."""

    def __init__(self, *, engine="fast", **knobs):
        super().__init__()
        self.knobs = _native.companion_knobs("ranksim", "RankSimLoss", **knobs)
        self.engine = engine

    def forward(self, features, labels):
        return rank_sim_loss(features, labels, engine=self.engine, **self.knobs)


class RnCLoss(torch.nn.Module):
    """Rank-N-Contrast with the reference's layout: ``features`` [bs, 2, D]
    (two views) and ``labels`` [bs, L]; the rows are view 0's, then view
    1's, as the reference concatenates them.

    It takes the reference module's arguments: ``temperature`` (τ),
    ``label_diff`` (the knob ``label_metric``) and ``feature_sim`` (the knob
    ``feature_distance``), each defaulting to the core's value."""

    def __init__(self, temperature=None, label_diff=None, feature_sim=None, engine="fast"):
        super().__init__()
        given = dict(temperature=temperature, label_metric=label_diff, feature_distance=feature_sim)
        overrides = {knob: value for knob, value in given.items() if value is not None}
        self.knobs = _native.companion_knobs("rnc", "RnCLoss", **overrides)
        self.engine = engine

    def forward(self, features, labels):
        _tensors(features=features, labels=labels)
        if features.dim() != 3:
            raise ValueError(f"features must have shape (bs, views, D), not {tuple(features.shape)}")
        rows = torch.cat(features.unbind(1), dim=0)
        labels = labels.reshape(labels.shape[0], -1).repeat(features.shape[1], 1)
        return rnc_loss(rows, labels, engine=self.engine, **self.knobs)


class BalancedMSELoss(torch.nn.Module):
    """Balanced MSE with a learnable σ: ``BalancedMSELoss(init_noise_sigma,
    variant="bmc", ...)``, then ``loss = module(preds, labels)``. Give
    ``module.noise_sigma`` to the optimizer (the reference uses its own
    learning rate for it)."""

    def __init__(self, init_noise_sigma=1.0, variant="bmc", gmm=None, bucket_centers=None, bucket_weights=None, engine="fast"):
        super().__init__()
        self.noise_sigma = torch.nn.Parameter(torch.tensor(float(init_noise_sigma)))
        self.options = dict(
            variant=variant, gmm=gmm, bucket_centers=bucket_centers, bucket_weights=bucket_weights, engine=engine
        )

    def forward(self, preds, labels):
        return balanced_mse_loss(preds, labels, self.noise_sigma, **self.options)
