"""ConR, the contrastive regularizer for deep imbalanced regression (ICLR 2024).

conr computes the ConR loss and its analytic gradient exactly, in O(M·D)
memory (no M×M matrix), with finite results for every finite input. This
package is conr's engines on NumPy arrays; ``conr.torch`` is the loss as a
PyTorch op.

>>> import numpy as np, conr
>>> config = conr.Config.official_agedb()
>>> features = np.array([[1.0, 0.1], [0.9, 0.2], [0.1, 1.0], [0.2, 0.8]])
>>> out = conr.compute(features, np.array([20.0, 20.5, 60.0, 60.5]),
...                    np.array([40.0, 40.2, 40.4, 40.1]), config=config)
>>> out.grad_features.shape
(4, 2)

Errors are Python exceptions with conr's message: ``ValueError`` for bad
values (a NaN, a length that disagrees, a config value out of its domain),
``TypeError`` for bad types (an integer array, an unknown keyword), and
``RuntimeError`` where an engine's device fails.

Threads: the fast engine runs on a pool of its own, of
``set_num_threads(n)`` threads (one per core by default). It computes while
the caller waits (torch's own threads are idle then), so the two take turns
on the cores rather than compete; but torch's OpenMP threads spin for a while
after their own parallel work, and ``OMP_WAIT_POLICY=PASSIVE`` (set before
torch starts) makes them sleep at once. After ``fork`` (DataLoader workers)
the child builds its own engines on first use.
"""

import os as _os

from . import _native
from ._native import (
    BalancedMseOutput,
    Output,
    RankSimOutput,
    RncOutput,
    __version__,
    balanced_mse,
    companion_knobs,
    density_weights,
    get_num_threads,
    knobs_for_labels,
    rank_n_contrast,
    rank_sim,
    set_num_threads,
)

__all__ = [
    "BalancedMseOutput",
    "Config",
    "Output",
    "RankSimOutput",
    "RncOutput",
    "__version__",
    "backward_rows",
    "balanced_mse",
    "companion_knobs",
    "compute",
    "density_weights",
    "forward_rows",
    "get_num_threads",
    "knobs_for_labels",
    "rank_n_contrast",
    "rank_sim",
    "set_num_threads",
    "shot_metrics",
]


class Config:
    """ConR's config: every knob of the general formulation, validated.

    Build one from a preset with keyword overrides, by the core's names:
    ``Config.paper(temperature=0.1)``, ``Config.official_agedb()`` (the
    official AgeDB-DIR code's loss), ``Config.official_nyud2()``.
    ``Config.knobs()`` lists the knobs: ``(name, type, domain, what it
    does)``, from the core's one table (``pushing`` is a ``(kind, scale)``
    tuple or a ``{"kind", "scale"}`` dict). An unknown keyword is a
    ``TypeError``; a value out of its domain a ``ValueError``. Each knob
    reads back as an attribute.
    """

    __slots__ = ("_native", "_json")

    def __init__(self, native):
        if not isinstance(native, _native.Config):
            raise TypeError("build a Config with Config.paper(), Config.official_agedb() or Config.official_nyud2()")
        self._native = native
        # Kept as a plain string: what the torch op carries, and what
        # torch.compile can read without calling into native code.
        self._json = native.to_json()

    @classmethod
    def paper(cls, **overrides):
        """The paper's loss (exp pushing, e = 0.01, ω = 1, τ = 0.07, no padding)."""
        return cls(_native.Config.paper(**overrides))

    @classmethod
    def official_agedb(cls, **overrides):
        """The official AgeDB-DIR / IMDB-WIKI-DIR code's loss."""
        return cls(_native.Config.official_agedb(**overrides))

    @classmethod
    def for_labels(cls, range, resolution, **overrides):
        """The paper's loss with its thresholds in the labels' units: ω = ω̂ =
        ``resolution`` for labels in ``range = (low, high)``. Ages 0–100 at
        resolution 1 give the official AgeDB-DIR values. ``knobs_for_labels``
        derives LDS's and FDS's bins from the same two values."""
        return cls(_native.Config.for_labels(tuple(range), float(resolution), **overrides))

    @classmethod
    def official_nyud2(cls, **overrides):
        """The official NYUD2-DIR code's loss."""
        return cls(_native.Config.official_nyud2(**overrides))

    @staticmethod
    def knobs():
        """Every knob, in order: ``(name, type, domain, what it does)``."""
        return _native.Config.knobs()

    @classmethod
    def from_json(cls, text):
        """A config from ``to_json()``'s text, or a ``conr-fixture/1`` config object."""
        return cls(_native.Config.from_json(text))

    def replace(self, **overrides):
        """The same config with some knobs changed."""
        return Config(self._native.replace(**overrides))

    def to_json(self):
        """The config as the ``conr-fixture/1`` schema's ``config`` object."""
        return self._json

    def __getattr__(self, name):
        return getattr(self._native, name)

    def __repr__(self):
        return repr(self._native)

    def __eq__(self, other):
        return isinstance(other, Config) and self._json == other._json

    def __hash__(self):
        return hash(self._json)

    def __reduce__(self):
        return (Config.from_json, (self._json,))


def _native_config(config):
    if not isinstance(config, Config):
        raise TypeError(f"config must be a conr.Config, not {type(config).__name__}")
    return config._native


def compute(features, labels, preds, weights=None, *, config, engine="fast"):
    """ConR's loss, gradient, anchors and counts for one batch of NumPy arrays.

    ``features`` is (M, D), float32 or float64, and sets the precision;
    ``labels`` and ``preds`` are (M,), (M, 1) or (M, L); ``weights`` (the
    pushing powers eta) are (M,) or (M, 1). C-contiguous arrays of the
    features' dtype are read in place, and the GIL is released while the
    engine runs (do not modify the arrays from another thread meanwhile).
    ``engine`` is ``"fast"``, ``"reference"`` or ``"gpu"``. Returns an
    ``Output`` with ``loss``, ``grad_features`` (M, D), ``anchors``,
    ``positives`` and ``negatives``.
    """
    return _native.compute(features, labels, preds, weights, config=_native_config(config), engine=engine)


def forward_rows(features, labels, preds, weights=None, *, config, engine="fast", rows):
    """Phase 1 of the data-parallel protocol for the rows ``rows = (start, end)``
    of the global batch: their message, to all-gather (see ``conr.torch``)."""
    return _native.forward_rows(
        features, labels, preds, weights, config=_native_config(config), engine=engine, rows=rows
    )


def backward_rows(features, labels, preds, weights=None, *, config, engine="fast", rows, messages):
    """Phase 2 for the rows ``rows``, given every rank's message: this rank's
    part of the loss and its rows' gradient."""
    return _native.backward_rows(
        features,
        labels,
        preds,
        weights,
        config=_native_config(config),
        engine=engine,
        rows=rows,
        messages=messages,
    )


def shot_metrics(preds, labels, train_labels, *, many=100, few=20, bin_width=None):
    """The DIR evaluation, as the LDS/FDS reference's ``shot_metrics``
    computes it: MSE, MAE and the geometric mean of the absolute errors
    (``gmean``, 0 when any error is 0) over every test sample (``"all"``)
    and over the many-, medium- and few-shot labels, by training samples
    per label (more than ``many``; fewer than ``few``; the rest).

    ``preds`` and ``labels`` hold one value per test sample and
    ``train_labels`` the training set's labels (NumPy arrays, torch tensors
    or sequences). Labels are compared as the reference compares them
    (training labels truncated to integers, test labels by exact value),
    or, with ``bin_width``, each as its bin ``floor(y / bin_width)``.

    Returns ``{"all", "many", "medium", "few": {"count", "mse", "mae",
    "gmean"}, "per_label": [{"label", "train_count", "region", "count",
    "mse", "mae", "gmean"}, ...]}``; a region without test samples has
    ``count`` 0 and ``None`` values.
    """
    import numpy as np

    def values(x):
        if hasattr(x, "detach"):
            x = x.detach().cpu().numpy()
        return np.ascontiguousarray(np.asarray(x, dtype=np.float64).reshape(-1))

    return _native.shot_metrics(
        values(preds), values(labels), values(train_labels), many=float(many), few=float(few), bin_width=bin_width
    )


# A child after fork (a DataLoader worker, say) has none of the parent's
# threads: it forgets the parent's engines and builds its own when it needs one.
if hasattr(_os, "register_at_fork"):
    _os.register_at_fork(after_in_child=_native._after_fork_in_child)
