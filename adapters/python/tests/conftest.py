"""Shared pieces of the Python tests: the conformance fixtures, and the
tolerance budgets of conr's Rust tests (conr_tests::budget), per element."""

import json
import os
import pathlib

import numpy as np
import pytest

try:
    # Before any test opens the gpu engine: conr.torch loads triton's LLVM,
    # which must come before Mesa's (see the note in conr/torch.py).
    import conr.torch  # noqa: F401
except ImportError:
    pass

FIXTURES = pathlib.Path(__file__).resolve().parents[3] / "tests" / "fixtures"

# |got − want| <= abs + rel · max(|got|, |want|), element by element.
F64 = {"loss": (1e-9, 1e-9), "grad": (1e-15, 1e-9)}
F32 = {"loss": (1e-6, 1e-4), "grad": (1e-7, 2e-3)}


def loss_cases():
    """Every loss fixture, as (name, case)."""
    names = sorted(p for p in os.listdir(FIXTURES) if p.startswith(("official-", "general-")))
    return [(name, json.loads((FIXTURES / name).read_text())) for name in names]


def weight_cases():
    names = sorted(p for p in os.listdir(FIXTURES) if p.startswith("lds-weights-"))
    return [(name, json.loads((FIXTURES / name).read_text())) for name in names]


def close(got, want, tol, what):
    """Asserts every element of ``got`` is within ``tol = (abs, rel)`` of ``want``."""
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape, (what, got.shape, want.shape)
    allowed = tol[0] + tol[1] * np.maximum(np.abs(got), np.abs(want))
    err = np.abs(got - want)
    worst = int(np.argmax(err - allowed)) if err.size else 0
    assert np.all(err <= allowed), (
        f"{what}[{worst}]: got {got.flat[worst]!r}, want {want.flat[worst]!r}, "
        f"|Δ| = {err.flat[worst]:e} > {allowed.flat[worst]:e}"
    )


def arrays(case, dtype):
    """A fixture's inputs as NumPy arrays: features (M, D), labels and preds
    (M, L), weights (M,) or None."""
    n, d, l = case["n"], case["d"], case.get("label_dim", 1)
    features = np.array(case["features"], dtype=dtype).reshape(n, d)
    labels = np.array(case["labels"], dtype=dtype).reshape(n, l)
    preds = np.array(case["preds"], dtype=dtype).reshape(n, l)
    weights = None if case.get("weights") is None else np.array(case["weights"], dtype=dtype)
    return features, labels, preds, weights


def config_of(case):
    import conr

    return conr.Config.from_json(json.dumps(case.get("config", {})))


@pytest.fixture(params=[np.float64, np.float32], ids=["f64", "f32"])
def dtype(request):
    return request.param


def budget(dtype):
    return F64 if dtype == np.float64 else F32


def has_gpu():
    """Whether the gpu engine starts here (lavapipe counts); under
    CONR_REQUIRE_GPU=1 a missing adapter is a failure."""
    import conr

    try:
        conr.compute(
            np.ones((2, 1), np.float32), np.ones(2, np.float32), np.ones(2, np.float32),
            config=conr.Config.paper(), engine="gpu",
        )
        return True
    except RuntimeError as e:
        if os.environ.get("CONR_REQUIRE_GPU") == "1":
            raise AssertionError(f"CONR_REQUIRE_GPU=1 but the gpu engine failed: {e}")
        return False
