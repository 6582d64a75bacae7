"""Feature distribution smoothing (FDS; Yang et al., ICML 2021) as a drop-in
PyTorch module, ``conr.torch.FDS`` (re-exported there).

It takes the reference module's constructor arguments and has its methods
(``update_last_epoch_stats``, ``update_running_stats``, ``smooth``,
``reset``) and buffers (``epoch``, ``running_mean``, ``running_var``,
``running_mean_last_epoch``, ``running_var_last_epoch``,
``smoothed_mean_last_epoch``, ``smoothed_var_last_epoch``,
``num_samples_tracked``), so a state_dict of either loads into the other
and the reference's training loop runs unchanged. The math is conr's core
(one definition for every entry point): the statistics pass on conr's
engines, the smoothing a torch op (``torch.ops.conr.fds_smooth``) whose
gradient is the calibration's per-dimension scale.

``behaviour="official"`` (the default) is the reference's, quirks included:
labels compared as exact values; rows below the start bucket joining it only
when the start label itself is in the batch; ``smooth`` writing into the
features it is given (as the reference does, so that features taken from
the model in training mode are the smoothed ones); and the last-epoch
statistics being the running buffers themselves after the first last-epoch
update. ``behaviour="clean"`` bins real-valued labels by ``bin_width``
(bins ``bucket_start`` to ``bucket_num − 1``, labels outside them in the
first or last bucket), copies the last-epoch statistics, and returns new
features, leaving its input as it was.

With ``group=`` (a torch.distributed process group), ``update_running_stats``
gives every rank the statistics of the concatenated epoch, each rank passing
its own slice: the labels are all-gathered, the per-group sums and squares
all-reduced (O(groups · D) traffic, not the features).
"""

from typing import Optional

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor

from . import _native
from ._devices import to_host

__all__ = ["FDS"]


def _labels64(labels: Tensor) -> np.ndarray:
    return to_host(labels.reshape(-1), torch.float64)


def _features_host(t: Tensor) -> np.ndarray:
    return to_host(t, torch.float64 if t.dtype == torch.float64 else torch.float32)


@torch.library.custom_op("conr::fds_smooth", mutates_args=())
def _fds_smooth_op(
    features: Tensor,
    labels: Tensor,
    mean: Tensor,
    var: Tensor,
    smoothed_mean: Tensor,
    smoothed_var: Tensor,
    bucket_num: int,
    bucket_start: int,
    kernel: str,
    ks: int,
    sigma: float,
    momentum: Optional[float],
    behaviour: str,
    bin_width: float,
) -> tuple[Tensor, Tensor]:
    out, scale = _native.fds_smooth(
        _features_host(features),
        _labels64(labels),
        *(_features_host(t) for t in (mean, var, smoothed_mean, smoothed_var)),
        bucket_num=bucket_num,
        bucket_start=bucket_start,
        kernel=kernel,
        ks=ks,
        sigma=sigma,
        momentum=momentum,
        behaviour=behaviour,
        bin_width=bin_width,
    )

    def back(a):
        return torch.from_numpy(a).to(device=features.device, dtype=features.dtype)

    return back(out), back(scale)


@_fds_smooth_op.register_fake
def _(features, labels, mean, var, smoothed_mean, smoothed_var, *knobs):
    return torch.empty_like(features), torch.empty_like(features)


def _smooth_setup(ctx, inputs, output):
    ctx.save_for_backward(output[1])
    ctx.mark_non_differentiable(output[1])
    ctx.set_materialize_grads(False)
    ctx.constants = len(inputs) - 1


def _smooth_backward(ctx, grad_out, _grad_scale):
    (scale,) = ctx.saved_tensors
    grad = None if grad_out is None else grad_out * scale
    return (grad,) + (None,) * ctx.constants


_fds_smooth_op.register_autograd(_smooth_backward, setup_context=_smooth_setup)


# The knobs the smoothing op carries, in its order (the epochs play no part).
_OP_KNOBS = ("bucket_num", "bucket_start", "kernel", "ks", "sigma", "momentum", "behaviour", "bin_width")


class FDS(torch.nn.Module):
    """FDS with the reference's constructor, methods and buffers.

    ``feature_dim, bucket_num=100, bucket_start=3, start_update=0,
    start_smooth=1, kernel="gaussian", ks=5, sigma=2, momentum=0.9`` are
    the reference's (``momentum=None``: the mean over every sample seen).
    conr's own, by keyword: ``behaviour`` (``"official"`` or ``"clean"``),
    ``bin_width`` (the clean behaviour's label bins), ``group`` (a
    torch.distributed process group, for ``update_running_stats`` across
    ranks) and ``engine`` (``"fast"`` or ``"reference"``: where the
    statistics pass runs).
    """

    def __init__(
        self,
        feature_dim: int,
        bucket_num: int = 100,
        bucket_start: int = 3,
        start_update: int = 0,
        start_smooth: int = 1,
        kernel: str = "gaussian",
        ks: int = 5,
        sigma: float = 2,
        momentum: Optional[float] = 0.9,
        *,
        behaviour: str = "official",
        bin_width: float = 1.0,
        group=None,
        engine: str = "fast",
    ):
        super().__init__()
        self._knobs = dict(
            bucket_num=int(bucket_num),
            bucket_start=int(bucket_start),
            start_update=int(start_update),
            start_smooth=int(start_smooth),
            kernel=kernel,
            ks=int(ks),
            sigma=float(sigma),
            momentum=None if momentum is None else float(momentum),
            behaviour=behaviour,
            bin_width=float(bin_width),
        )
        # Validates every knob, by the core's rules.
        window = _native.fds_window(**self._knobs)
        if int(feature_dim) < 1:
            raise ValueError(f"feature_dim must be at least 1, not {feature_dim}")
        self.feature_dim = int(feature_dim)
        self.bucket_num = int(bucket_num)
        self.bucket_start = int(bucket_start)
        self.kernel_window = torch.tensor(window, dtype=torch.float32)
        self.half_ks = (int(ks) - 1) // 2
        self.momentum = momentum
        self.start_update = int(start_update)
        self.start_smooth = int(start_smooth)
        self.behaviour = behaviour
        self.bin_width = float(bin_width)
        self.group = group
        self.engine = engine

        buckets = self.bucket_num - self.bucket_start
        self.register_buffer("epoch", torch.zeros(1).fill_(start_update))
        self.register_buffer("running_mean", torch.zeros(buckets, feature_dim))
        self.register_buffer("running_var", torch.ones(buckets, feature_dim))
        self.register_buffer("running_mean_last_epoch", torch.zeros(buckets, feature_dim))
        self.register_buffer("running_var_last_epoch", torch.ones(buckets, feature_dim))
        self.register_buffer("smoothed_mean_last_epoch", torch.zeros(buckets, feature_dim))
        self.register_buffer("smoothed_var_last_epoch", torch.ones(buckets, feature_dim))
        self.register_buffer("num_samples_tracked", torch.zeros(buckets))

    def extra_repr(self) -> str:
        k = self._knobs
        return (
            f"{self.feature_dim}, bucket_num={k['bucket_num']}, bucket_start={k['bucket_start']}, "
            f"kernel={k['kernel']!r}, ks={k['ks']}, sigma={k['sigma']}, momentum={k['momentum']}, "
            f"behaviour={k['behaviour']!r}"
        )

    def _counter(self) -> int:
        return int(self.epoch.item())

    def _due(self, epoch: int):
        return _native.fds_due(int(epoch), self._counter(), **self._knobs)

    def reset(self):
        """Means 0, variances 1, nothing seen (the counter is left as it is)."""
        self.running_mean.zero_()
        self.running_var.fill_(1)
        self.running_mean_last_epoch.zero_()
        self.running_var_last_epoch.fill_(1)
        self.smoothed_mean_last_epoch.zero_()
        self.smoothed_var_last_epoch.fill_(1)
        self.num_samples_tracked.zero_()

    def _smoothed(self, t: Tensor) -> Tensor:
        out = _native.fds_smooth_buckets(_features_host(t), **self._knobs)
        return torch.from_numpy(out).to(device=t.device, dtype=t.dtype)

    def _update_last_epoch_stats(self):
        if self.behaviour == "official":
            # The reference's: from here on the last-epoch statistics are
            # the running buffers themselves.
            self.running_mean_last_epoch = self.running_mean
            self.running_var_last_epoch = self.running_var
        else:
            self.running_mean_last_epoch = self.running_mean.clone()
            self.running_var_last_epoch = self.running_var.clone()
        self.smoothed_mean_last_epoch = self._smoothed(self.running_mean)
        self.smoothed_var_last_epoch = self._smoothed(self.running_var)

    @torch.no_grad()
    def update_last_epoch_stats(self, epoch: int):
        """At the end of epoch ``epoch``, before ``update_running_stats``:
        when ``epoch`` is one past the counter, advances it and smooths the
        running statistics into the last epoch's."""
        due, _, _ = self._due(epoch)
        if due:
            self.epoch += 1
            self._update_last_epoch_stats()

    @torch.no_grad()
    def update_running_stats(self, features: Tensor, labels: Tensor, epoch: int):
        """At the end of epoch ``epoch``: updates the running statistics with
        the epoch's features (N, D) and labels (N,) (with ``group``: this
        rank's part of the epoch)."""
        _, due, _ = self._due(epoch)
        if not due:
            return
        if features.dim() != 2 or features.shape[1] != self.feature_dim:
            raise ValueError(
                f"features must have shape (N, {self.feature_dim}), not {tuple(features.shape)}"
            )
        if features.shape[0] != labels.reshape(-1).shape[0]:
            raise ValueError(
                f"features has {features.shape[0]} rows but labels has {labels.reshape(-1).shape[0]}"
            )
        x, y = _features_host(features), _labels64(labels)
        group = self.group
        every = y if group is None else _all_gather_labels(y, features.device, group)
        keys = _native.fds_keys(every, **self._knobs)
        if group is None:
            # One read of the features: sums about each group's first row.
            counts, means, variances = _native.fds_moments(x, y, keys, engine=self.engine, **self._knobs)
        else:
            # Two reads, each summed across ranks: the sums, then the squares
            # about the means they give.
            dev = features.device
            sums, counts = _native.fds_sums(x, y, keys, engine=self.engine, **self._knobs)
            sums, counts = _all_reduce(sums, dev, group), _all_reduce(counts, dev, group)
            means, squares = _native.fds_squares(x, y, keys, sums, counts, engine=self.engine, **self._knobs)
            variances = _native.fds_variances(_all_reduce(squares, dev, group), counts)
        buffers = (self.running_mean, self.running_var, self.num_samples_tracked)
        hosts = [b.numpy() if b.device.type == "cpu" and b.is_contiguous() else b.cpu().contiguous().numpy() for b in buffers]
        _native.fds_apply(*hosts, keys, counts, means, variances, int(epoch), **self._knobs)
        for b, h in zip(buffers, hosts):
            if b.device.type != "cpu" or not b.is_contiguous():
                b.copy_(torch.from_numpy(h))

    def smooth(self, features: Tensor, labels: Tensor, epoch: int) -> Tensor:
        """A training batch's features (n, D), smoothed from epoch
        ``start_smooth`` on (before it, ``features`` as they are). Labels are
        (n,) or (n, 1). The official behaviour writes the result into
        ``features`` and returns them, as the reference does; the clean one
        returns a new tensor."""
        _, _, due = self._due(epoch)
        if not due:
            return features
        if features.dim() != 2 or features.shape[1] != self.feature_dim:
            raise ValueError(
                f"features must have shape (n, {self.feature_dim}), not {tuple(features.shape)}"
            )
        labels = labels.reshape(-1)
        out, _ = _fds_smooth_op(
            features,
            labels,
            self.running_mean_last_epoch,
            self.running_var_last_epoch,
            self.smoothed_mean_last_epoch,
            self.smoothed_var_last_epoch,
            *(self._knobs[k] for k in _OP_KNOBS),
        )
        if self.behaviour == "official":
            features.copy_(out)
            return features
        return out


def _all_gather_labels(y: np.ndarray, device, group) -> np.ndarray:
    world = dist.get_world_size(group)
    n = torch.tensor([y.shape[0]], dtype=torch.int64, device=device)
    sizes = [torch.zeros(1, dtype=torch.int64, device=device) for _ in range(world)]
    dist.all_gather(sizes, n, group=group)
    counts = [int(s.item()) for s in sizes]
    padded = torch.zeros(max(counts), dtype=torch.float64, device=device)
    padded[: y.shape[0]] = torch.from_numpy(y).to(device)
    parts = [torch.empty_like(padded) for _ in counts]
    dist.all_gather(parts, padded, group=group)
    return torch.cat([p[:c] for p, c in zip(parts, counts)]).cpu().numpy()


def _all_reduce(a: np.ndarray, device, group) -> np.ndarray:
    t = torch.from_numpy(np.ascontiguousarray(a)).to(device)
    dist.all_reduce(t, group=group)
    return t.cpu().numpy()
