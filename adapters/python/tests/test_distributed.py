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


# FDS's update_running_stats across ranks: each rank passes its slice of the
# epoch; every rank ends with the statistics of the whole epoch.

FDS_ROWS = 61


def fds_epoch(epoch):
    g = torch.Generator().manual_seed(11 + epoch)
    x = torch.randn(FDS_ROWS, 5, generator=g, dtype=torch.float64) * 3 + 1
    y = torch.randint(0, 14, (FDS_ROWS,), generator=g).double()
    return x, y


def fds_slices(world):
    cuts = {2: [0, 40, FDS_ROWS], 3: [0, 29, 33, FDS_ROWS]}[world]
    return list(zip(cuts, cuts[1:]))


def fds_run(behaviour, slice_=None, group=None):
    from conr.torch import FDS

    m = FDS(5, bucket_num=12, bucket_start=2, ks=3, momentum=None, behaviour=behaviour, group=group).double()
    for e in range(3):
        x, y = fds_epoch(e)
        if slice_ is not None:
            x, y = x[slice_[0] : slice_[1]], y[slice_[0] : slice_[1]]
        m.update_last_epoch_stats(e)
        m.update_running_stats(x, y, e)
    return {k: v.clone() for k, v in m.state_dict().items()}


def fds_worker(rank, world, init, results):
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    try:
        torch.set_num_threads(1)
        conr.set_num_threads(1)
        results[rank] = {
            b: fds_run(b, fds_slices(world)[rank], dist.group.WORLD) for b in ["official", "clean"]
        }
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("world", [2, 3])
def test_fds_statistics_across_ranks_equal_the_whole_epoch(world):
    want = {b: fds_run(b) for b in ["official", "clean"]}
    with tempfile.TemporaryDirectory() as tmp:
        init = "file://" + os.path.join(tmp, "rendezvous")
        manager = mp.Manager()
        results = manager.dict()
        mp.spawn(fds_worker, args=(world, init, results), nprocs=world, join=True)
        results = dict(results)
    assert sorted(results) == list(range(world))
    for rank, by_behaviour in results.items():
        for behaviour, state in by_behaviour.items():
            for key, value in want[behaviour].items():
                err = (state[key] - value).abs().max().item()
                assert err <= 1e-9 * max(value.abs().max().item(), 1.0), (rank, behaviour, key, err)
