"""conr.torch.FDS against the FDS fixtures (tests/fixtures/fds: the reference
module's buffers, outputs and gradients over a training run), its state_dict
layout, the torch op (opcheck), and the reference's training-loop protocol;
with CONR_FDS_REFERENCE naming a checkout of YyzHarry/imbalanced-regression,
against the reference module itself."""

import importlib.util
import json
import os
import sys

import numpy as np
import pytest
import torch

from conftest import FIXTURES
from conr.torch import FDS

BUFFERS = [
    "running_mean",
    "running_var",
    "running_mean_last_epoch",
    "running_var_last_epoch",
    "smoothed_mean_last_epoch",
    "smoothed_var_last_epoch",
    "num_samples_tracked",
]


def fds_cases():
    folder = FIXTURES / "fds"
    names = sorted(p.name for p in folder.glob("*.json"))
    return [(name, json.loads((folder / name).read_text())) for name in names]


def test_every_fixture_is_here():
    assert len(fds_cases()) == 6


def close(got, want, tol, what):
    got, want = np.asarray(got, dtype=np.float64).ravel(), np.asarray(want, dtype=np.float64).ravel()
    assert got.shape == want.shape, what
    bad = np.abs(got - want) > tol * np.maximum(np.abs(want), 1.0)
    assert not bad.any(), f"{what}: worst {np.abs(got - want).max()} (tol {tol})"


def replay(case, module, dtype):
    """The reference's training-loop calls, in order, on ``module``;
    yields (step, smoothed out, gradient) as each step ends."""
    d = case["feature_dim"]
    for step in case["steps"]:
        e = step["epoch"]
        out = grad = None
        if "smooth" in step:
            s = step["smooth"]
            leaf = torch.tensor(s["features"], dtype=dtype).reshape(-1, d).requires_grad_()
            labels = torch.tensor(s["labels"], dtype=dtype).reshape(-1, 1)
            # The reference smooths the encoder's output (not a leaf), in place.
            x = leaf * 1
            result = module.smooth(x, labels, e)
            upstream = torch.tensor(s["upstream"], dtype=dtype).reshape(-1, d)
            (result * upstream).sum().backward()
            out, grad = result.detach(), leaf.grad
        if "update" in step:
            u = step["update"]
            module.update_last_epoch_stats(e)
            module.update_running_stats(
                torch.tensor(u["features"], dtype=dtype).reshape(-1, d), torch.tensor(u["labels"], dtype=dtype), e
            )
        yield step, out, grad


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
@pytest.mark.parametrize("name,case", fds_cases(), ids=[n for n, _ in fds_cases()])
def test_fixture_replays_through_the_module(name, case, dtype, tol):
    module = FDS(case["feature_dim"], **case["config"]).to(dtype)
    assert module.kernel_window.tolist() == case["kernel_window"]
    for step, out, grad in replay(case, module, dtype):
        want = step["after"]
        assert module.epoch.item() == want["epoch_buffer"]
        for b in BUFFERS:
            close(getattr(module, b), want[b], tol, f"{name} step {step['epoch']} {b}")
        if out is not None:
            close(out, step["smooth"]["out"], tol, f"{name} out")
            close(grad, step["smooth"]["grad_features"], tol, f"{name} grad")


def test_state_dict_has_the_reference_layout_and_round_trips():
    name, case = fds_cases()[0]
    module = FDS(case["feature_dim"], **case["config"])
    assert list(module.state_dict()) == ["epoch"] + BUFFERS
    assert module.epoch.dtype == torch.float32 and module.epoch.shape == (1,)
    buckets = case["config"]["bucket_num"] - case["config"]["bucket_start"]
    assert module.num_samples_tracked.shape == (buckets,)
    for _ in replay(case, module, torch.float32):
        pass
    # After the first last-epoch update the last-epoch statistics are the
    # running buffers themselves, as in the reference.
    assert module.running_mean_last_epoch is module.running_mean
    fresh = FDS(case["feature_dim"], **case["config"])
    fresh.load_state_dict(module.state_dict())
    for key, value in module.state_dict().items():
        assert torch.equal(fresh.state_dict()[key], value), key
    x = torch.randn(5, case["feature_dim"])
    y = torch.tensor([5.0, 8.0, 9.0, 3.0, 12.0])
    assert torch.equal(module.smooth(x.clone(), y, 9), fresh.smooth(x.clone(), y, 9))


def test_smooth_is_in_place_officially_and_not_in_the_clean_behaviour():
    x = torch.randn(6, 3)
    y = torch.tensor([1.0, 1.0, 2.0, 2.0, 3.0, 3.0])
    for behaviour in ["official", "clean"]:
        m = FDS(3, bucket_num=6, bucket_start=0, ks=3, behaviour=behaviour)
        m.update_running_stats(x, y, 0)
        m.update_last_epoch_stats(1)
        m.update_running_stats(x * 2, y, 1)
        before = x.clone()
        out = m.smooth(x, y, 1)
        if behaviour == "official":
            assert out is x and not torch.equal(x, before)
        else:
            assert out is not x and torch.equal(x, before) and not torch.equal(out, before)
            # Clean: the last-epoch statistics are a copy, left as they were.
            assert not torch.equal(m.running_mean_last_epoch, m.running_mean)
        x = before


def test_before_start_smooth_features_pass_through():
    m = FDS(2, bucket_num=5, bucket_start=0, ks=3, start_smooth=3)
    x = torch.randn(3, 2)
    assert m.smooth(x, torch.tensor([1.0, 2.0, 3.0]), 2) is x


def test_the_smoothing_op_passes_opcheck():
    m = FDS(3, bucket_num=8, bucket_start=1, ks=3).double()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(40, 3, generator=g, dtype=torch.float64)
    y = torch.randint(0, 9, (40,), generator=g).double()
    m.update_running_stats(x, y, 0)
    m.update_last_epoch_stats(1)
    args = (
        torch.randn(7, 3, dtype=torch.float64, requires_grad=True),
        torch.tensor([0.0, 1.0, 2.0, 3.0, 5.0, 7.0, 8.0], dtype=torch.float64),
        m.running_mean_last_epoch,
        m.running_var_last_epoch,
        m.smoothed_mean_last_epoch,
        m.smoothed_var_last_epoch,
        8,
        1,
        "gaussian",
        3,
        2.0,
        0.9,
        "official",
        1.0,
    )
    torch.library.opcheck(torch.ops.conr.fds_smooth.default, args)


def test_bad_inputs_are_clear_errors():
    with pytest.raises(ValueError, match="ks"):
        FDS(4, ks=4)
    with pytest.raises(ValueError, match="momentum"):
        FDS(4, momentum=1.0)
    with pytest.raises(TypeError, match="behaviour|knob"):
        FDS(4, behaviour=3)
    m = FDS(4)
    with pytest.raises(ValueError, match=r"\(N, 4\)"):
        m.update_running_stats(torch.zeros(3, 5), torch.zeros(3), 0)
    with pytest.raises(ValueError, match="NaN|finite"):
        m.update_running_stats(torch.full((2, 4), float("nan")), torch.tensor([5.0, 6.0]), 0)


def reference_module():
    """The reference FDS class, from the checkout CONR_FDS_REFERENCE names
    (its agedb-dir folder), with its one .cuda() call made a no-op on a
    machine without CUDA."""
    root = os.environ.get("CONR_FDS_REFERENCE")
    if not root:
        pytest.skip("CONR_FDS_REFERENCE names no checkout of YyzHarry/imbalanced-regression")
    pytest.importorskip("scipy")
    folder = os.path.join(root, "agedb-dir")
    sys.path.insert(0, folder)
    try:
        spec = importlib.util.spec_from_file_location("reference_fds", os.path.join(folder, "fds.py"))
        module = importlib.util.module_from_spec(spec)
        if not torch.cuda.is_available():
            torch.Tensor.cuda = lambda self, *a, **k: self
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(folder)
    return module.FDS


def test_state_dicts_load_both_ways_with_the_reference():
    Reference = reference_module()
    for name, case in fds_cases():
        ours = FDS(case["feature_dim"], **case["config"]).double()
        theirs = Reference(case["feature_dim"], **case["config"]).double()
        # Its window is a plain float32 attribute, which .double() leaves alone.
        theirs.kernel_window = theirs.kernel_window.double()
        for _ in replay(case, ours, torch.float64):
            pass
        for _ in replay(case, theirs, torch.float64):
            pass
        for key, value in theirs.state_dict().items():
            close(ours.state_dict()[key], value, 1e-12, f"{name} {key}")
        fresh_theirs = Reference(case["feature_dim"], **case["config"]).double()
        fresh_theirs.kernel_window = fresh_theirs.kernel_window.double()
        fresh_theirs.load_state_dict(ours.state_dict())
        fresh_ours = FDS(case["feature_dim"], **case["config"]).double()
        fresh_ours.load_state_dict(theirs.state_dict())
        x = torch.randn(9, case["feature_dim"], dtype=torch.float64)
        y = torch.tensor(case["steps"][-1]["update"]["labels"][:9], dtype=torch.float64).reshape(-1, 1)
        e = case["steps"][-1]["epoch"] + 1
        close(fresh_ours.smooth(x.clone(), y, e), fresh_theirs.smooth(x.clone(), y, e), 1e-12, name)


def test_knobs_that_follow_the_label_scale():
    import conr

    assert conr.Config.for_labels((0, 100), 1) == conr.Config.paper()
    assert conr.Config.for_labels((0.7, 10.0), 0.1, temperature=0.2).threshold == 0.1
    knobs = conr.knobs_for_labels((0.7, 10.0), 0.1)
    assert knobs["lds"]["bin_width"] == 0.1 and knobs["lds"]["kernel"] == "gaussian"
    depths = np.linspace(0.7, 10.0, 500)
    assert conr.density_weights(depths, **knobs["lds"]).mean() == pytest.approx(1.0)
    m = FDS(4, **knobs["fds"])
    assert m.behaviour == "clean" and m.bin_width == 0.1
    x = torch.randn(500, 4)
    m.update_running_stats(x, torch.from_numpy(depths), 0)
    assert int(m.num_samples_tracked.sum()) == 500
    with pytest.raises(ValueError, match="range"):
        conr.Config.for_labels((1, 1), 1)
