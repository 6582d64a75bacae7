"""The official AgeDB-DIR ConR loss, loaded from a checkout the user names,
and AgeDB-like batches: shared by the benchmarks in this folder.

The official code is not part of this repository (its license is not
conr's): clone https://github.com/BorealisAI/ConR and pass the folder.
"""
import importlib.util
import json
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))


def load_official(checkout):
    """The `ConR` function of the checkout's `agedb-dir/loss.py`, checked
    against conr's float64 conformance fixture before it is used, so that a
    different checkout is caught rather than timed."""
    path = os.path.join(checkout, "agedb-dir", "loss.py")
    if not os.path.isfile(path):
        sys.exit(f"error: {path} does not exist: --official takes a checkout of BorealisAI/ConR")
    spec = importlib.util.spec_from_file_location("official_agedb_loss", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not hasattr(module, "ConR"):
        sys.exit(f"error: {path} defines no ConR function")
    check_against_fixture(module.ConR)
    return module.ConR


def check_against_fixture(official):
    """The official loss and gradient of one fixture, in float64, within the
    fixture README's f64 tolerances."""
    with open(os.path.join(HERE, "..", "tests", "fixtures", "official-agedb-04.json")) as f:
        case = json.load(f)
    n, d = case["n"], case["d"]
    column = lambda key: torch.tensor(case[key], dtype=torch.float64).reshape(n, 1)
    feats = torch.tensor(case["features"], dtype=torch.float64).reshape(n, d).requires_grad_()
    cfg = case["config"]
    loss = official(feats, column("labels"), column("preds"), w=cfg["threshold"],
                    weights=column("weights"), e=cfg["pushing"]["scale"])
    loss.backward()
    want = case["expected"]
    if abs(loss.item() - want["loss"]) > 1e-9 * max(1.0, abs(want["loss"])):
        sys.exit(f"error: the official loss gives {loss.item()}, the fixture {want['loss']}")
    got = feats.grad.flatten().tolist()
    scale = max(abs(g) for g in want["grad_features"])
    worst = max(abs(a - b) for a, b in zip(got, want["grad_features"]))
    if worst > 1e-9 * scale + 1e-15:
        sys.exit(f"error: the official gradient is {worst:e} from the fixture's")


def random_batch(m, d, device="cpu", generator=None):
    """AgeDB-like data, as `conr bench` draws it: ages ~ N(35, 15) rounded to [0, 100],
    predictions within N(0, 7) years, N(0, 1) features, sqrt_inv density weights."""
    ages = torch.clamp(torch.round(35 + 15 * torch.randn(m, 1, generator=generator)), 0, 100)
    preds = ages + 7 * torch.randn(m, 1, generator=generator)
    feats = torch.randn(m, d, generator=generator)
    counts = torch.bincount(ages.flatten().long(), minlength=121).double().sqrt()
    weights = 1.0 / counts[ages.flatten().long()]
    weights = (weights * m / weights.sum()).float().reshape(m, 1)
    return [x.to(device) for x in (feats, ages, preds, weights)]
