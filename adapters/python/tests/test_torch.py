"""conr.torch: the loss as a torch op, against the fixtures, finite
differences, opcheck and torch.compile, in a training loop, and refusing
bad inputs."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import conr  # noqa: E402
from conr.torch import ConRLoss, conr_loss  # noqa: E402
from conftest import F32, F64, arrays, close, config_of, loss_cases  # noqa: E402


def tensors(case, dtype, labels_2d=True):
    f, y, p, w = arrays(case, np.float64)
    as_t = lambda a: None if a is None else torch.tensor(a, dtype=dtype)
    y, p = (y, p) if labels_2d or y.shape[1] > 1 else (y.ravel(), p.ravel())
    return as_t(f).requires_grad_(), as_t(y), as_t(p), as_t(w)


@pytest.mark.parametrize("dtype, budget", [(torch.float64, F64), (torch.float32, F32)], ids=["f64", "f32"])
def test_every_fixture_through_autograd(dtype, budget):
    for i, (name, case) in enumerate(loss_cases()):
        # (M, L) labels for some, (M,) for the others where L = 1.
        f, y, p, w = tensors(case, dtype, labels_2d=i % 2 == 0)
        loss = conr_loss(f, y, p, w, config=config_of(case))
        assert loss.dim() == 0 and loss.dtype == dtype
        loss.backward()
        close(loss.item(), case["expected"]["loss"], budget["loss"], f"{name} loss")
        close(f.grad.numpy().ravel(), case["expected"]["grad_features"], budget["grad"], f"{name} grad")


def small(dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    f = torch.randn(12, 5, generator=g, dtype=dtype)
    y = torch.tensor([20.0, 21.0, 40.0, 41.0, 60.0, 20.5] * 2, dtype=dtype)
    # Predictions that bunch together: rows of far-apart labels are confused,
    # so that there are anchors and the gradient is not zero.
    p = 40.0 + torch.linspace(0.0, 0.6, 12, dtype=dtype)
    w = torch.linspace(0.5, 2.0, 12, dtype=dtype)
    return f, y, p, w


def test_the_small_batch_has_anchors_and_a_gradient():
    f, y, p, w = small()
    for config in (conr.Config.paper(), conr.Config.official_agedb()):
        out = conr.compute(f.numpy(), y.numpy(), p.numpy(), w.numpy(), config=config)
        assert out.anchors.sum() >= 6 and np.abs(out.grad_features).min(axis=1).max() > 0


def test_gradcheck_in_f64():
    f, y, p, w = small()
    config = conr.Config.official_agedb()
    assert torch.autograd.gradcheck(
        lambda x: conr_loss(x, y, p, w, config=config), (f.requires_grad_(),), eps=1e-6, atol=1e-7
    )


def test_opcheck():
    f, y, p, w = small()
    config = conr.Config.paper()
    for weights in (w, None):
        torch.library.opcheck(
            torch.ops.conr.loss.default, (f.clone().requires_grad_(), y, p, weights, config.to_json(), "fast")
        )
    for dtype in (torch.float64, torch.float32, torch.bfloat16):
        torch.library.opcheck(torch.ops.conr.scale.default, (f.to(dtype), torch.tensor(0.5, dtype=dtype)))


# aot_eager: dynamo's graph capture and AOTAutograd's forward and backward
# graphs (through the fake kernels and the autograd formula); inductor, the
# default, also generates code for the ops around conr's (about 20 s).
@pytest.mark.parametrize("backend", ["aot_eager", "inductor"])
def test_torch_compile_forward_and_backward(backend):
    f, y, p, w = small()
    config = conr.Config.official_agedb()
    eager = f.clone().requires_grad_()
    want = conr_loss(eager, y, p, w, config=config)
    want.backward()

    @torch.compile(fullgraph=True, backend=backend)
    def step(x):
        return conr_loss(x * 2.0, y, p, w, config=config)

    x = (f / 2.0).clone().requires_grad_()
    got = step(x)
    got.backward()
    close(got.item(), want.item(), F64["loss"], "compiled loss")
    close(x.grad.numpy(), 2.0 * eager.grad.numpy(), F64["grad"], "compiled grad")


def test_gradient_flows_to_the_features_only():
    f, y, p, w = small()
    y, p, w = (t.clone().requires_grad_() for t in (y, p, w))
    f.requires_grad_()
    conr_loss(f, y, p, w, config=conr.Config.paper()).backward()
    assert f.grad is not None and f.grad.abs().sum() > 0
    assert y.grad is None and p.grad is None and w.grad is None


def test_half_types_compute_in_f32_and_cast_back():
    f, y, p, w = small(torch.float32)
    config = conr.Config.paper()
    want = conr_loss(f.clone().requires_grad_(), y, p, w, config=config)
    for dtype in (torch.float16, torch.bfloat16):
        x = f.to(dtype).requires_grad_()
        got = conr_loss(x, y, p, w, config=config)
        assert got.dtype == dtype
        got.backward()
        assert x.grad.dtype == dtype and torch.isfinite(x.grad.float()).all()
        assert abs(got.float().item() - want.item()) < 2e-2 * abs(want.item()) + 1e-2


def test_non_contiguous_inputs_and_the_module():
    f, y, p, w = small()
    config = conr.Config.official_agedb()
    want = conr_loss(f, y, p, w, config=config)
    wide = torch.cat([f, f], dim=1)[:, ::2]
    assert not wide.is_contiguous()
    got = ConRLoss(config)(wide, y.reshape(-1, 1), p.reshape(-1, 1), w.reshape(-1, 1))
    assert got.item() == want.item()
    assert "engine='auto'" in repr(ConRLoss(config))


def test_bad_inputs_are_clear_errors():
    f, y, p, w = small()
    config = conr.Config.paper()
    with pytest.raises(ValueError, match="meta tensor"):
        conr_loss(f.to("meta"), y.to("meta"), p.to("meta"), config=config)
    with pytest.raises(ValueError, match="features must have shape"):
        conr_loss(f.ravel(), y, p, config=config)
    with pytest.raises(TypeError, match="floating-point tensor"):
        conr_loss(f.long(), y, p, config=config)
    with pytest.raises(TypeError, match="config must be a conr.Config"):
        conr_loss(f, y, p, config="paper")
    with pytest.raises(ValueError, match="labels has length 11"):
        conr_loss(f, y[:11], p, config=config)
    bad = f.clone()
    bad[3, 1] = float("nan")
    with pytest.raises(ValueError, match="features row 3 holds a NaN"):
        conr_loss(bad, y, p, config=config)
    with pytest.raises(ValueError, match="weights row 0 is zero or negative"):
        conr_loss(f, y, p, -w, config=config)
    with pytest.raises(ValueError, match="unknown `engine`"):
        conr_loss(f, y, p, config=config, engine="tpu")
    # The op still works afterwards.
    assert torch.isfinite(conr_loss(f, y, p, w, config=config))


def test_weights_may_be_a_number_as_in_the_official_call():
    # The official ConR(features, targets, preds, w=1, weights=1, ...) takes a
    # number; 1 is every eta equal to 1, which is also what no weights mean.
    f, y, p, w = small()
    config = conr.Config.official_agedb()
    none = conr_loss(f, y, p, config=config)
    assert conr_loss(f, y, p, 1, config=config).item() == none.item()
    assert ConRLoss(config)(f, y, p, 1.0).item() == none.item()
    full = conr_loss(f, y, p, torch.full((12,), 2.5, dtype=f.dtype), config=config)
    assert conr_loss(f, y, p, 2.5, config=config).item() == full.item()
    with pytest.raises(TypeError, match="weights must be a torch.Tensor, a number or None"):
        conr_loss(f, y, p, True, config=config)
    # A zero weight, which the official code takes, is refused with its reason.
    with pytest.raises(ValueError, match="weights row 0 is zero or negative.*ln eta"):
        conr_loss(f, y, p, 0, config=config)


def test_a_training_loop_lowers_the_loss():
    torch.manual_seed(0)
    x = torch.randn(64, 8)
    y = (x[:, 0] * 3 + 5).round()
    encoder = torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.ReLU(), torch.nn.Linear(32, 16))
    head = torch.nn.Linear(16, 1)
    params = list(encoder.parameters()) + list(head.parameters())
    optimizer = torch.optim.Adam(params, lr=1e-2)
    criterion = ConRLoss(conr.Config.official_agedb(temperature=0.2))
    losses, terms = [], []
    for _ in range(60):
        features = encoder(x)
        preds = head(features).squeeze(1)
        # As in the official code: the predictions pick the anchors, detached.
        term = criterion(features, y, preds.detach())
        loss = (preds - y).abs().mean() + term
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        terms.append(term.item())
    assert losses[-1] < 0.25 * losses[0], losses
    assert terms[-1] < 0.5 * terms[0], terms


def _one_loss(index):
    f, y, p, w = small(seed=index)
    return conr_loss(f, y, p, w, config=conr.Config.official_agedb()).item()


def test_dataloader_workers_fork_after_conr_ran():
    # The parent's engine, and its threads, exist before the workers fork;
    # each worker computes with its own.
    want = [_one_loss(i) for i in range(4)]
    loader = torch.utils.data.DataLoader(
        _Losses(), batch_size=None, num_workers=2, multiprocessing_context="fork", timeout=60
    )
    assert [float(x) for x in loader] == want


class _Losses(torch.utils.data.Dataset):
    """Computes conr's loss in the DataLoader's worker processes."""

    def __len__(self):
        return 4

    def __getitem__(self, index):
        return _one_loss(index)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_tensors_take_the_host_and_come_back():
    f, y, p, w = small()
    config = conr.Config.official_agedb()
    want = conr_loss(f.clone().requires_grad_(), y, p, w, config=config)
    x = f.cuda().requires_grad_()
    got = conr_loss(x, y.cuda(), p.cuda(), w.cuda(), config=config)
    assert got.device.type == "cuda"
    got.backward()
    assert x.grad.device.type == "cuda"
    close(got.item(), want.item(), F64["loss"], "cuda loss")
