"""engine="auto": which engine computes a torch batch, by its device and, for
CUDA, by the PCI address of its GPU; and the pinned host buffers of CUDA
transfers. The choice is tested on every machine, with the adapters'
identities given to it; the CUDA paths where CUDA exists."""

import re

import numpy as np
import pytest
import torch

import conr
from conr import _devices
from conr._devices import choose_engine, pci_address
from conr.torch import ConRLoss, conr_loss

H100 = {"name": "NVIDIA H100 80GB HBM3", "backend": "Vulkan", "device_type": "DiscreteGpu", "pci": "0000:1b:00.0"}
OTHER = {"name": "NVIDIA H100 80GB HBM3", "backend": "Vulkan", "device_type": "DiscreteGpu", "pci": "0000:2a:00.0"}
LAVAPIPE = {"name": "llvmpipe (LLVM 19.1.7, 256 bits)", "backend": "Vulkan", "device_type": "Cpu", "pci": None}

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")


def test_cpu_tensors_go_to_the_fast_engine():
    assert choose_engine("auto", "cpu", None, [H100, LAVAPIPE]) == "fast"


def test_cuda_tensors_go_to_the_adapter_on_their_gpu():
    assert choose_engine("auto", "cuda", "0000:1b:00.0", [LAVAPIPE, OTHER, H100]) == "gpu@0000:1b:00.0"
    # The same card by name on another bus is another GPU.
    assert choose_engine("auto", "cuda", "0000:1b:00.0", [OTHER, LAVAPIPE]) == "fast"
    # Addresses compare in one case.
    assert choose_engine("auto", "cuda", "0000:1B:00.0", [H100]) == "gpu@0000:1b:00.0"


def test_without_a_match_the_fast_engine_computes():
    # No adapter at all, a CPU adapter only, or no address from torch.
    assert choose_engine("auto", "cuda", "0000:1b:00.0", []) == "fast"
    assert choose_engine("auto", "cuda", "0000:1b:00.0", [dict(LAVAPIPE, pci="0000:1b:00.0")]) == "fast"
    assert choose_engine("auto", "cuda", None, [H100]) == "fast"
    # Devices without a wgpu adapter of their own.
    for device in ("mps", "xpu", "meta"):
        assert choose_engine("auto", device, None, [H100]) == "fast"


def test_a_named_engine_is_the_callers_choice():
    for name in ("fast", "reference", "gpu", "gpu@0000:1b:00.0"):
        assert choose_engine(name, "cuda", "0000:2a:00.0", [H100]) == name


def test_cuda_addresses_take_wgpus_form():
    assert pci_address(0, 0x1B, 0) == "0000:1b:00.0"
    assert pci_address(1, 0xC1, 0x1F) == "0001:c1:1f.0"


def test_the_adapters_report_their_addresses():
    adapters = conr._native.gpu_adapters()
    assert isinstance(adapters, list)
    for a in adapters:
        assert set(a) == {"name", "backend", "device_type", "pci"}
        assert a["pci"] is None or re.fullmatch(r"[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-9a-f]", a["pci"])


def _batch(m=48, d=8, dtype=torch.float32, device="cpu"):
    g = torch.Generator().manual_seed(5)
    features = torch.randn(m, d, generator=g, dtype=dtype)
    labels = torch.randint(0, 10, (m,), generator=g).to(dtype)
    preds = labels + torch.randn(m, generator=g, dtype=dtype)
    return features.to(device), labels.to(device), preds.to(device)


def test_auto_is_the_default_and_is_the_fast_engine_on_cpu():
    config = conr.Config.official_agedb()
    features, labels, preds = _batch()
    results = []
    for engine in ("auto", "fast", None):
        f = features.clone().requires_grad_()
        loss = ConRLoss(config)(f, labels, preds) if engine is None else conr_loss(f, labels, preds, config=config, engine=engine)
        loss.backward()
        results.append((loss.item(), f.grad.clone()))
    for loss, grad in results[1:]:
        assert loss == results[0][0]
        assert torch.equal(grad, results[0][1])


def test_gpu_at_an_address_that_is_no_adapter_is_an_error():
    config = conr.Config.official_agedb()
    features, labels, preds = _batch()
    with pytest.raises(ValueError, match="PCI address"):
        conr_loss(features, labels, preds, config=config, engine="gpu@not-an-address")
    with pytest.raises(RuntimeError, match="no adapter at PCI address ffff:ff:1f.7"):
        conr_loss(features, labels, preds, config=config, engine="gpu@ffff:ff:1f.7")


@needs_cuda
def test_pinned_buffers_are_kept_while_the_shape_stays():
    buffers = _devices.PinnedBuffers()
    a = buffers.get("features", (64, 8), torch.float32)
    assert a.is_pinned()
    assert buffers.get("features", (64, 8), torch.float32).data_ptr() == a.data_ptr()
    assert buffers.get("features", (32, 8), torch.float32).data_ptr() != a.data_ptr()


@needs_cuda
def test_cuda_tensors_compute_on_auto_as_on_the_host():
    config = conr.Config.official_agedb()
    host = _batch()
    cuda = tuple(t.cuda() for t in host)
    engine = _devices.engine_for("auto", cuda[0].device)
    assert engine == "fast" or engine.startswith("gpu@")
    f_host = host[0].clone().requires_grad_()
    want = conr_loss(f_host, *host[1:], config=config, engine="fast")
    want.backward()
    for step in range(2):  # the second step reuses the pinned buffers
        f = cuda[0].clone().requires_grad_()
        loss = conr_loss(f, *cuda[1:], config=config)
        loss.backward()
        assert loss.device.type == "cuda" and f.grad.device.type == "cuda"
        np.testing.assert_allclose(loss.item(), want.item(), rtol=1e-5)
        np.testing.assert_allclose(f.grad.cpu().numpy(), f_host.grad.numpy(), rtol=1e-4, atol=1e-6)
