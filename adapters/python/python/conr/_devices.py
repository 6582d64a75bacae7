"""Which engine computes a torch batch, and how it reaches the host.

``engine="auto"`` (the torch op's default) picks by the features' device:

- CPU tensors: the fast engine, on the tensors' own memory;
- CUDA tensors: conr's gpu engine on the same physical GPU, where wgpu has
  an adapter there, found by PCI address (domain, bus, device), never by
  name; else the fast engine;
- any other device: the fast engine.

The batch reaches either engine through the host (wgpu cannot read CUDA's
memory), so CUDA tensors are copied through pinned host buffers, kept and
reused while the shape stays the same.
"""

import functools
from typing import Optional

import numpy as np
import torch
from torch import Tensor

from . import _native

def choose_engine(engine: str, device_type: str, cuda_pci: Optional[str], adapters) -> str:
    """The engine that computes a batch on a ``device_type`` device (``"cpu"``,
    ``"cuda"``, ...) when the caller asks for ``engine``. Only ``"auto"`` is
    chosen here; any other name is the caller's choice, returned as it is.
    ``cuda_pci`` is the CUDA device's PCI address (``"0000:01:00.0"``), and
    ``adapters`` the adapters wgpu sees (dicts with ``pci`` and
    ``device_type``, as ``conr._native.gpu_adapters()`` gives them)."""
    if engine != "auto":
        return engine
    if device_type == "cuda" and cuda_pci is not None:
        pci = cuda_pci.lower()
        for adapter in adapters:
            if adapter.get("pci") == pci and adapter.get("device_type") != "Cpu":
                return f"gpu@{pci}"
    return "fast"


def pci_address(domain: int, bus: int, device: int) -> str:
    """A CUDA device's PCI address in wgpu's form (function 0: a GPU's)."""
    return f"{domain:04x}:{bus:02x}:{device:02x}.0"


def cuda_pci(device: torch.device) -> Optional[str]:
    """The PCI address of CUDA device ``device``, or None where torch does not report it."""
    props = torch.cuda.get_device_properties(device)
    try:
        return pci_address(props.pci_domain_id, props.pci_bus_id, props.pci_device_id)
    except AttributeError:
        return None


@functools.lru_cache(maxsize=1)
def gpu_adapters() -> tuple:
    """The adapters wgpu sees, listed once per process."""
    return tuple(_native.gpu_adapters())


def engine_for(engine: str, device: torch.device) -> str:
    """``choose_engine`` for a tensor on ``device``, with this machine's identities."""
    if engine != "auto":
        return engine
    if device.type != "cuda":
        return choose_engine(engine, device.type, None, ())
    return choose_engine(engine, "cuda", cuda_pci(device), gpu_adapters())


class PinnedBuffers:
    """Pinned host buffers for CUDA transfers, one per role, each kept while
    the shape and dtype it is asked for stay the same (a training loop's
    steps), replaced when they change."""

    def __init__(self):
        self._buffers = {}

    def get(self, role: str, shape, dtype: torch.dtype) -> Tensor:
        key = (tuple(shape), dtype)
        held = self._buffers.get(role)
        if held is None or held[0] != key:
            held = (key, torch.empty(key[0], dtype=dtype, pin_memory=True))
            self._buffers[role] = held
        return held[1]


_PINNED = PinnedBuffers()


_NUMPY = {torch.float32: np.float32, torch.float64: np.float64}


def to_host(t: Tensor, dtype: torch.dtype, role: Optional[str] = None) -> np.ndarray:
    """``t`` as a contiguous NumPy array of ``dtype`` (float32 or float64) on
    the host: a CPU tensor's own memory where it already is one; a CUDA
    tensor through the pinned buffer of ``role`` (valid until the next
    transfer of that role), or a copy of its own without one.

    NumPy converts, not torch: torch converts a large tensor on its OpenMP
    threads, which then spin for milliseconds, taking the cores from conr's
    work that follows (5 ms of FDS's 18 ms statistics pass on 100,000 rows
    and 2 cores)."""
    t = t.detach()
    if t.device.type == "cuda" and role is not None:
        buffer = _PINNED.get(role, t.shape, dtype)
        buffer.copy_(t)
        return buffer.numpy()
    if t.device.type != "cpu":
        t = t.cpu()
    if t.dtype == torch.bfloat16:
        # NumPy has no bfloat16.
        t = t.float()
    return np.ascontiguousarray(t.numpy(), dtype=_NUMPY[dtype])


def to_device(values: np.ndarray, like: Tensor, role: str) -> Tensor:
    """``values`` as a tensor of ``like``'s device and dtype: through the
    pinned buffer of ``role`` for a CUDA device."""
    host = torch.from_numpy(values)
    if like.device.type != "cuda":
        return host.to(device=like.device, dtype=like.dtype)
    buffer = _PINNED.get(role, host.shape, host.dtype)
    buffer.copy_(host)
    return buffer.to(device=like.device, dtype=like.dtype)
