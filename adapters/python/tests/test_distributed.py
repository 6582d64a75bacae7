"""conr_loss(group=...) across torch.distributed ranks (gloo, processes
spawned on this machine): the global batch's loss on every rank, and a
DDP-wrapped model's gradient equal to one process's on the whole batch."""

import os
import socket
import tempfile

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.distributed as dist  # noqa: E402
import torch.multiprocessing as mp  # noqa: E402

import conr  # noqa: E402
from conr.torch import conr_loss  # noqa: E402

ROWS = 23
CONFIG = conr.Config.official_agedb(temperature=0.2)


def batch():
    g = torch.Generator().manual_seed(7)
    x = torch.randn(ROWS, 6, generator=g, dtype=torch.float64)
    y = torch.tensor([float(20 + (j * 7) % 11) for j in range(ROWS)], dtype=torch.float64)
    p = y + torch.randn(ROWS, generator=g, dtype=torch.float64) * 4
    w = torch.linspace(0.5, 1.5, ROWS, dtype=torch.float64)
    return x, y, p, w


def model():
    torch.manual_seed(3)
    return torch.nn.Linear(6, 4).double()


def slices(world):
    """Unequal runs: rank r owns more rows than rank r + 1."""
    cuts = {2: [0, 15, ROWS], 3: [0, 11, 14, ROWS]}[world]
    return list(zip(cuts, cuts[1:]))


def single_process():
    x, y, p, w = batch()
    net = model()
    loss = conr_loss(net(x), y, p, w, config=CONFIG)
    loss.backward()
    return loss.item(), [q.grad.clone() for q in net.parameters()]


def worker(rank, world, init, results):
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    try:
        torch.set_num_threads(1)
        conr.set_num_threads(1)
        x, y, p, w = batch()
        start, end = slices(world)[rank]
        net = torch.nn.parallel.DistributedDataParallel(model())
        loss = conr_loss(net(x[start:end]), y[start:end], p[start:end], w[start:end], config=CONFIG,
                         group=dist.group.WORLD)
        loss.backward()
        results[rank] = (loss.item(), [q.grad.clone() for q in net.parameters()])
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("world", [2, 3])
def test_ddp_gradient_equals_the_whole_batch(world):
    want_loss, want_grads = single_process()
    with tempfile.TemporaryDirectory() as tmp:
        init = "file://" + os.path.join(tmp, "rendezvous")
        manager = mp.Manager()
        results = manager.dict()
        mp.spawn(worker, args=(world, init, results), nprocs=world, join=True)
        results = dict(results)
    assert sorted(results) == list(range(world))
    for rank, (loss, grads) in results.items():
        assert abs(loss - want_loss) <= 1e-12 * abs(want_loss), (rank, loss, want_loss)
        for got, want in zip(grads, want_grads):
            err = (got - want).abs().max().item()
            assert err <= 1e-9 * max(want.abs().max().item(), 1e-12), (rank, err)
