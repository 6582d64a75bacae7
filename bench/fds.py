"""FDS: conr.torch.FDS's statistics pass against NumPy's mean over the same
array, and its smoothing against the reference module's, in one run.

    python3 bench/fds.py --threads 2
    python3 bench/fds.py --reference ~/imbalanced-regression --threads 2

The statistics pass is ``update_running_stats`` on an epoch of N × D float32
features (100,000 × 512 by default, labels in 100 buckets): its time over
that of ``numpy.mean(x, axis=0)``, one pass over the same array. The
smoothing is ``smooth`` on a batch of 256 × 2048, forward and backward,
against the FDS module of YyzHarry/imbalanced-regression (``agedb-dir/fds.py``,
from a checkout named with ``--reference``; not part of this repository),
which is first checked against conr's FDS fixtures. The reference builds its
window with ``.cuda()``; on a machine without CUDA that call is made a no-op
while it loads. Each number is the median of ``--reps`` runs.
"""
import argparse
import json
import os
import statistics
import sys
import time

import numpy as np
import torch

import conr
from conr.torch import FDS
from torch_dir import cuda_is_identity, load, timed

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "..", "tests", "fixtures", "fds")


def load_reference(checkout):
    folder = os.path.join(checkout, "agedb-dir")
    path = os.path.join(folder, "fds.py")
    if not os.path.isfile(path):
        sys.exit(f"error: {path} does not exist: --reference takes a checkout of YyzHarry/imbalanced-regression")
    return load(path, "reference_fds", folder).FDS


def reference(cls, *args, **kwargs):
    with cuda_is_identity():
        return cls(*args, **kwargs)


def check_reference(cls):
    """The reference's buffers after one fixture's updates, in float64,
    within 1e-12 of the fixture's."""
    with open(os.path.join(FIXTURES, "fds-official-00.json")) as f:
        case = json.load(f)
    d = case["feature_dim"]
    m = reference(cls, d, **case["config"]).double()
    m.kernel_window = m.kernel_window.double()
    for step in case["steps"]:
        if "update" in step:
            u = step["update"]
            x = torch.tensor(u["features"], dtype=torch.float64).reshape(-1, d)
            m.update_last_epoch_stats(step["epoch"])
            m.update_running_stats(x, torch.tensor(u["labels"], dtype=torch.float64), step["epoch"])
        want = np.asarray(step["after"]["running_mean"])
        got = m.running_mean.numpy().ravel()
        if np.abs(got - want).max() > 1e-12 * max(1.0, np.abs(want).max()):
            sys.exit("error: the reference FDS disagrees with conr's fixture fds-official-00.json")


def timed_together(a, b, reps):
    """The median times of `a` and of `b`, run by turns after one warm-up each."""
    a()
    b()
    times = ([], [])
    for _ in range(reps):
        for step, out in zip((a, b), times):
            start = time.perf_counter()
            step()
            out.append(time.perf_counter() - start)
    return statistics.median(times[0]), statistics.median(times[1])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--batch", default="256x2048", help="the smoothed batch, ROWSxDIM")
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--threads", type=int, default=0, help="torch's and conr's threads (0: default)")
    parser.add_argument("--reference", help="a checkout of YyzHarry/imbalanced-regression")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
        conr.set_num_threads(args.threads)

    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.rows, args.dim), dtype=np.float32)
    y = rng.integers(0, 100, args.rows).astype(np.float32)
    features, labels = torch.from_numpy(x), torch.from_numpy(y)
    fds = FDS(args.dim, bucket_num=100, bucket_start=3)
    stats, mean = timed_together(
        lambda: fds.update_running_stats(features, labels, 0), lambda: np.mean(x, axis=0), args.reps
    )
    rows = [{
        "what": f"statistics pass, {args.rows}x{args.dim} f32",
        "conr_s": stats,
        "numpy_mean_s": mean,
        "ratio": stats / mean,
    }]

    n, d = (int(v) for v in args.batch.split("x"))
    xb = torch.randn(n, d)
    yb = torch.randint(0, 100, (n, 1)).float()
    upstream = torch.randn(n, d)

    def smoothing(module):
        module.update_running_stats(torch.randn(4 * n, d), torch.randint(0, 100, (4 * n,)).float(), 0)
        module.update_last_epoch_stats(1)
        module.update_running_stats(torch.randn(4 * n, d), torch.randint(0, 100, (4 * n,)).float(), 1)

        def step():
            leaf = xb.clone().requires_grad_()
            out = module.smooth(leaf * 1, yb, 1)
            (out * upstream).sum().backward()

        return timed(step, args.reps)

    ours = smoothing(FDS(d, bucket_num=100, bucket_start=3))
    row = {"what": f"smooth, forward and backward, {n}x{d} f32", "conr_s": ours}
    if args.reference:
        cls = load_reference(args.reference)
        check_reference(cls)
        theirs = smoothing(reference(cls, d, bucket_num=100, bucket_start=3))
        row.update({"reference_s": theirs, "ratio": ours / theirs})
    rows.append(row)
    for r in rows:
        print(json.dumps(r))


if __name__ == "__main__":
    main()
