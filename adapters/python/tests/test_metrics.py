"""conr.shot_metrics against an independent reading of the LDS/FDS
reference's shot_metrics: per test label value, training labels cast to
integers, many-shot above the high threshold, few-shot below the low one,
each region's MSE and MAE its summed errors over its samples, and the
geometric mean of its absolute errors."""

import math

import numpy as np
import pytest
import torch

import conr


def reading(preds, labels, train_labels, many=100, few=20):
    """The definition, written out with plain loops."""
    train = [int(t) for t in train_labels]
    regions = {"many": [], "medium": [], "few": []}
    per_label = []
    for value in sorted(set(labels.tolist())):
        count = sum(1 for t in train if t == value)
        errors = [p - y for p, y in zip(preds, labels) if y == value]
        region = "many" if count > many else ("few" if count < few else "medium")
        regions[region] += errors
        per_label.append((value, count, region, errors))

    def metrics(errors):
        if not errors:
            return {"count": 0, "mse": None, "mae": None, "gmean": None}
        a = [abs(e) for e in errors]
        g = 0.0 if min(a) == 0 else math.exp(sum(math.log(x) for x in a) / len(a))
        return {"count": len(a), "mse": sum(x * x for x in a) / len(a), "mae": sum(a) / len(a), "gmean": g}

    out = {name: metrics(errors) for name, errors in regions.items()}
    out["all"] = metrics([p - y for p, y in zip(preds, labels)])
    out["per_label"] = [(v, c, r, metrics(e)) for v, c, r, e in per_label]
    return out


def same(got, want):
    assert got["count"] == want["count"]
    for key in ["mse", "mae", "gmean"]:
        if want[key] is None:
            assert got[key] is None
        else:
            assert got[key] == pytest.approx(want[key], rel=1e-12, abs=1e-300)


@pytest.mark.parametrize("seed", range(5))
def test_matches_the_definition(seed):
    rng = np.random.default_rng(seed)
    train = np.concatenate([rng.integers(0, 30, 400), rng.integers(30, 60, 40), np.full(150, 12)]) + 0.4
    labels = rng.integers(0, 70, 300).astype(np.float64)
    preds = labels + rng.normal(0, 3, 300)
    preds[:5] = labels[:5]  # exact predictions: a zero geometric mean
    got = conr.shot_metrics(preds, labels, train, many=60, few=8)
    want = reading(preds, labels, train, many=60, few=8)
    for region in ["all", "many", "medium", "few"]:
        same(got[region], want[region])
    assert len(got["per_label"]) == len(want["per_label"])
    for g, (value, count, region, m) in zip(got["per_label"], want["per_label"]):
        assert (g["label"], g["train_count"], g["region"]) == (value, count, region)
        same(g, m)


def test_takes_tensors_and_reports_empty_regions():
    labels = torch.tensor([[3.0], [3.0], [4.0]])
    preds = torch.tensor([[2.0], [3.5], [4.0]])
    got = conr.shot_metrics(preds, labels, [3.0] * 150 + [4.0] * 150)
    assert got["many"]["count"] == 3
    assert got["medium"] == {"count": 0, "mse": None, "mae": None, "gmean": None}
    assert got["few"]["mae"] is None
    assert got["all"]["mae"] == pytest.approx(0.5)


def test_bins_real_valued_labels():
    train = np.array([0.05, 0.12, 0.18, 0.31, 0.33])
    labels = np.array([0.11, 0.32, 0.95])
    preds = labels + 0.1
    got = conr.shot_metrics(preds, labels, train, many=2, few=1, bin_width=0.1)
    assert [p["train_count"] for p in got["per_label"]] == [2, 2, 0]
    assert [p["region"] for p in got["per_label"]] == ["medium", "medium", "few"]
    with pytest.raises(ValueError, match="bin_width"):
        conr.shot_metrics(preds, labels, train, bin_width=0.0)
    with pytest.raises(ValueError, match="preds"):
        conr.shot_metrics(preds[:2], labels, train)
