"""RankSim, Rank-N-Contrast and Balanced MSE through NumPy and torch: every
companion fixture (tests/fixtures/dir), autograd, opcheck, torch.compile,
the reference's module layouts, a training loop, and bad inputs."""

import json
import os

import numpy as np
import pytest
import torch

import conr
import conr.torch as ct
from conftest import FIXTURES, close

DIR = FIXTURES / "dir"
# The fixture README's tolerances, per element, with a floor of a share of
# the largest expected element (softmax tails of 1e-66 beside values of 1).
F64 = {"loss": (1e-9, 1e-9), "grad": (1e-15, 1e-9), "floor": 1e-12}
F32 = {"loss": (1e-6, 1e-4), "grad": (1e-7, 2e-3), "floor": 1e-5}


def dir_cases():
    names = sorted(p for p in os.listdir(DIR) if p.endswith(".json"))
    return [(name, json.loads((DIR / name).read_text())) for name in names]


CASES = dir_cases()


def test_every_fixture_is_here():
    assert len(CASES) == 26
    assert {c["loss"] for _, c in CASES} == {"ranksim", "rnc", "balanced_mse"}


def grad_close(got, want, budget, what):
    want = np.asarray(want, dtype=np.float64)
    floor = budget["floor"] * np.abs(want).max()
    close(np.asarray(got).reshape(-1), want, (budget["grad"][0] + floor, budget["grad"][1]), what)


def numpy_run(case, dtype, engine):
    n, l = case["n"], case.get("label_dim", 1)
    labels = np.array(case["labels"], dtype=dtype).reshape(n, l)
    config = case["config"]
    if case["loss"] == "balanced_mse":
        preds = np.array(case["preds"], dtype=dtype).reshape(n, l)
        kwargs = {}
        if case["variant"] == "gai":
            kwargs["gmm"] = config["gmm"]
        if case["variant"] == "bni":
            kwargs = {"bucket_centers": config["bucket_centers"], "bucket_weights": config["bucket_weights"]}
        out = conr.balanced_mse(preds, labels, config["noise_sigma"], variant=case["variant"], engine=engine, **kwargs)
        return out.loss, out.grad_preds, out.grad_noise_sigma
    features = np.array(case["features"], dtype=dtype).reshape(n, case["d"])
    if case["loss"] == "rnc":
        out = conr.rank_n_contrast(
            features, labels, temperature=config["temperature"], label_metric=config["label_metric"], engine=engine
        )
        return out.loss, out.grad_features, None
    out = conr.rank_sim(
        features,
        labels,
        interpolation_lambda=config["lambda"],
        label_metric=config["label_metric"],
        rows=case["sampled_rows"],
        subsample="every",
        engine=engine,
    )
    if case["sampled_rows"] is not None:
        assert out.rows == case["sampled_rows"]
    return out.loss, out.grad_features, None


@pytest.mark.parametrize("engine", ["fast", "reference"])
@pytest.mark.parametrize("dtype,budget", [(np.float64, F64), (np.float32, F32)], ids=["f64", "f32"])
@pytest.mark.parametrize("name,case", CASES, ids=[n for n, _ in CASES])
def test_numpy_matches_the_fixture(name, case, dtype, budget, engine):
    loss, grad, sigma = numpy_run(case, dtype, engine)
    want = case["expected"]
    close([loss], [want["loss"]], budget["loss"], "loss")
    key = "grad_preds" if case["loss"] == "balanced_mse" else "grad_features"
    assert grad.dtype == dtype
    grad_close(grad, want[key], budget, key)
    if sigma is not None:
        close([sigma], [want["grad_noise_sigma"]], budget["grad"], "grad_noise_sigma")


def torch_run(case, dtype):
    n, l = case["n"], case.get("label_dim", 1)
    labels = torch.tensor(case["labels"], dtype=dtype).reshape(n, l)
    config = case["config"]
    if case["loss"] == "balanced_mse":
        preds = torch.tensor(case["preds"], dtype=dtype).reshape(n, l).requires_grad_()
        sigma = torch.tensor(config["noise_sigma"], dtype=dtype, requires_grad=True)
        kwargs = {}
        if case["variant"] == "gai":
            kwargs["gmm"] = config["gmm"]
        if case["variant"] == "bni":
            kwargs = {"bucket_centers": config["bucket_centers"], "bucket_weights": config["bucket_weights"]}
        loss = ct.balanced_mse_loss(preds, labels, sigma, variant=case["variant"], **kwargs)
        loss.backward()
        return loss, preds.grad, sigma.grad
    features = torch.tensor(case["features"], dtype=dtype).reshape(n, case["d"]).requires_grad_()
    if case["loss"] == "rnc":
        loss = ct.rnc_loss(features, labels, temperature=config["temperature"], label_metric=config["label_metric"])
    else:
        if case["sampled_rows"] is not None:
            pytest.skip("the torch op chooses its subset by seed; the NumPy test covers given rows")
        loss = ct.rank_sim_loss(
            features, labels, interpolation_lambda=config["lambda"], label_metric=config["label_metric"]
        )
    loss.backward()
    return loss, features.grad, None


@pytest.mark.parametrize("name,case", CASES, ids=[n for n, _ in CASES])
def test_torch_op_matches_the_fixture(name, case):
    loss, grad, sigma = torch_run(case, torch.float64)
    want = case["expected"]
    assert loss.dtype == torch.float64 and loss.dim() == 0
    close([loss.item()], [want["loss"]], F64["loss"], "loss")
    key = "grad_preds" if case["loss"] == "balanced_mse" else "grad_features"
    grad_close(grad.numpy(), want[key], F64, key)
    if sigma is not None:
        close([sigma.item()], [want["grad_noise_sigma"]], F64["grad"], "grad_noise_sigma")


def random_batch(n=10, d=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    features = torch.randn(n, d, generator=g, dtype=torch.float64)
    labels = torch.randint(0, 4, (n,), generator=g).to(torch.float64)
    return features, labels


def test_rnc_gradcheck_and_opcheck():
    features, labels = random_batch()
    features.requires_grad_()
    assert torch.autograd.gradcheck(lambda f: ct.rnc_loss(f, labels, temperature=0.5), (features,))
    torch.library.opcheck(torch.ops.conr.rnc.default, (features, labels, 0.5, "l1", "fast"))


def test_balanced_mse_gradcheck_in_preds_and_opcheck():
    g = torch.Generator().manual_seed(1)
    labels = torch.rand(12, generator=g, dtype=torch.float64) * 50
    preds = (labels + torch.randn(12, generator=g, dtype=torch.float64)).requires_grad_()
    sigma = torch.tensor(3.0, dtype=torch.float64)
    # σ's gradient holds the factor 2σ² fixed (the reference detaches it),
    # so only the predictions are checked against finite differences here.
    assert torch.autograd.gradcheck(lambda p: ct.balanced_mse_loss(p, labels, sigma), (preds,))
    args = (preds, labels, sigma.requires_grad_(), "bni", None, None, None, [0.0, 25.0, 50.0], [0.2, 0.5, 0.3], "fast")
    torch.library.opcheck(torch.ops.conr.balanced_mse.default, args)


def test_rank_sim_opcheck():
    features, labels = random_batch(n=12)
    features.requires_grad_()
    torch.library.opcheck(torch.ops.conr.rank_sim.default, (features, labels, 2.0, "l1", "one_per_label", 3, "fast"))


def test_under_torch_compile_forward_and_backward():
    features, labels = random_batch(n=16)

    def step(f):
        return ct.rnc_loss(f, labels) + ct.rank_sim_loss(f, labels)

    compiled = torch.compile(step, fullgraph=True, backend="eager")
    f1 = features.clone().requires_grad_()
    f2 = features.clone().requires_grad_()
    step(f1).backward()
    compiled(f2).backward()
    assert torch.equal(f1.grad, f2.grad)


def test_rnc_module_takes_the_reference_layout():
    g = torch.Generator().manual_seed(2)
    views = torch.randn(5, 2, 3, generator=g, dtype=torch.float64)
    labels = torch.randint(0, 9, (5, 1), generator=g).to(torch.float64)
    rows = torch.cat([views[:, 0], views[:, 1]])
    want = ct.rnc_loss(rows, labels.repeat(2, 1), temperature=2.0)
    assert torch.equal(ct.RnCLoss(temperature=2.0)(views, labels), want)


def test_balanced_mse_module_learns_sigma():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(64, 4, generator=g)
    y = x @ torch.tensor([1.0, -2.0, 0.5, 3.0]) + 0.3 * torch.randn(64, generator=g)
    model = torch.nn.Linear(4, 1)
    criterion = ct.BalancedMSELoss(init_noise_sigma=1.0)
    optimizer = torch.optim.SGD(list(model.parameters()) + list(criterion.parameters()), lr=0.05)
    losses = []
    for _ in range(60):
        optimizer.zero_grad()
        loss = criterion(model(x).squeeze(1), y)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    assert criterion.noise_sigma.grad is not None


def test_bad_inputs_are_clear_errors():
    features, labels = random_batch()
    with pytest.raises(ValueError, match="lambda"):
        conr.rank_sim(features.numpy(), labels.numpy(), interpolation_lambda=0.0)
    with pytest.raises(ValueError, match="label_metric"):
        conr.rank_n_contrast(features.numpy(), labels.numpy(), label_metric="angular")
    with pytest.raises(TypeError):
        conr.rank_n_contrast(features.numpy().astype(np.int64), labels.numpy())
    with pytest.raises(ValueError, match="NaN"):
        bad = features.numpy().copy()
        bad[1, 1] = np.nan
        conr.rank_n_contrast(bad, labels.numpy())
    with pytest.raises(ValueError, match="noise_sigma"):
        conr.balanced_mse(labels.numpy(), labels.numpy(), -1.0)
    with pytest.raises(ValueError, match="gai"):
        conr.balanced_mse(labels.numpy(), labels.numpy(), 1.0, variant="gai")
    with pytest.raises(ValueError, match="variant"):
        conr.balanced_mse(labels.numpy(), labels.numpy(), 1.0, variant="nope")
    with pytest.raises(ValueError, match="meta"):
        ct.rnc_loss(features.to("meta"), labels)
    # And the ops still work afterwards.
    assert torch.isfinite(ct.rnc_loss(features, labels))


def test_companion_knobs_are_the_cores_table():
    # The defaults come from the core (RankSim::default, RankNContrast::default).
    assert conr.companion_knobs("ranksim") == {
        "interpolation_lambda": 2.0,
        "label_metric": "l1",
        "subsample": "one_per_label",
        "seed": 0,
    }
    assert conr.companion_knobs("rnc", temperature=0.5) == {
        "temperature": 0.5,
        "label_metric": "l1",
        "feature_distance": "l2",
    }
    # Every entry point reads the same table, with its own name in errors.
    with pytest.raises(TypeError, match=r"rank_sim_loss\(\) got an unexpected keyword argument 'lamda'"):
        ct.rank_sim_loss(*random_batch(), lamda=1.0)
    with pytest.raises(TypeError, match="interpolation_lambda, label_metric, subsample, seed"):
        ct.RankSimLoss(lamda=1.0)
    with pytest.raises(TypeError, match="seed must be an int"):
        conr.rank_sim(*(t.numpy() for t in random_batch()), seed="0")
    with pytest.raises(ValueError, match="temperature"):
        ct.RnCLoss(temperature=0.0)
    with pytest.raises(ValueError, match="feature_distance"):
        ct.RnCLoss(feature_sim="cosine")
    assert ct.RnCLoss(label_diff="l2").knobs["label_metric"] == "l2"
    assert ct.RankSimLoss(interpolation_lambda=0.5).knobs["interpolation_lambda"] == 0.5
