"""RankSim, Rank-N-Contrast and Balanced MSE (BMC): conr's torch ops against
each method's reference code, forward plus backward, in one run.

The reference code is not part of this repository (it is not conr's): clone
the repositories and name the folders.

    python3 bench/torch_dir.py --ranksim ~/ranksim-imbalanced-regression \\
        --rnc ~/Rank-N-Contrast --bmse ~/BalancedMSE --sizes 256x512,1024x512

Each reference is checked against conr's float64 fixture of it before it is
timed. BalancedMSE's `bmc_loss` moves its targets with `.cuda()`; on a
machine without CUDA that call is made a no-op while it runs, so that the
published function is timed unchanged on the CPU.
"""
import argparse
import contextlib
import importlib.util
import json
import os
import statistics
import sys
import time
import types

import torch

import conr.torch as ct
from official import random_batch

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "..", "tests", "fixtures", "dir")


def load(path, name, extra_path=None):
    if not os.path.isfile(path):
        sys.exit(f"error: {path} does not exist")
    if extra_path:
        sys.path.insert(0, extra_path)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fixture(name):
    with open(os.path.join(FIXTURES, name)) as f:
        return json.load(f)


def agree(what, got, want, grad, want_grad, tol):
    if abs(got - want) > tol * max(1.0, abs(want)):
        sys.exit(f"error: the {what} reference gives loss {got}, the fixture {want}")
    scale = max(abs(x) for x in want_grad)
    worst = max(abs(a - b) for a, b in zip(grad, want_grad))
    if worst > tol * scale + 1e-15:
        sys.exit(f"error: the {what} reference's gradient is {worst:e} from the fixture's")


@contextlib.contextmanager
def cuda_is_identity():
    """`Tensor.cuda()` as a no-op where there is no CUDA (see the module docs)."""
    if torch.cuda.is_available():
        yield
        return
    original = torch.Tensor.cuda
    torch.Tensor.cuda = lambda self, *a, **k: self
    try:
        yield
    finally:
        torch.Tensor.cuda = original


def ranksim_reference(checkout):
    folder = os.path.join(checkout, "agedb-dir")
    module = load(os.path.join(folder, "ranksim.py"), "reference_ranksim", folder)
    case = fixture("ranksim-official-00.json")  # distinct labels: no random subset
    n, d = case["n"], case["d"]
    f = torch.tensor(case["features"], dtype=torch.float64).reshape(n, d).requires_grad_()
    y = torch.tensor(case["labels"], dtype=torch.float64).reshape(n, 1)
    loss = module.batchwise_ranking_regularizer(f, y, case["config"]["lambda"])
    loss.backward()
    # The reference ranks in float32: its own values are the fixture's `official`.
    want = case["official"]
    agree("RankSim", loss.item(), want["loss"], f.grad.flatten().tolist(), want["grad_features"], 1e-6)
    return module.batchwise_ranking_regularizer


def rnc_reference(checkout):
    module = load(os.path.join(checkout, "loss.py"), "reference_rnc")
    case = fixture("rnc-official-00.json")
    n, d = case["n"], case["d"]
    rows = torch.tensor(case["features"], dtype=torch.float64).reshape(n, d)
    views = torch.stack([rows[: n // 2], rows[n // 2 :]], dim=1).requires_grad_()
    y = torch.tensor(case["labels"][: n // 2], dtype=torch.float64).reshape(n // 2, 1)
    loss = module.RnCLoss(temperature=case["config"]["temperature"])(views, y)
    loss.backward()
    grad = torch.cat([views.grad[:, 0], views.grad[:, 1]]).flatten().tolist()
    agree("RnC", loss.item(), case["expected"]["loss"], grad, case["expected"]["grad_features"], 1e-9)
    return module.RnCLoss


def bmc_reference(checkout):
    sys.modules.setdefault("joblib", types.ModuleType("joblib"))  # only its GAI loader needs it
    module = load(os.path.join(checkout, "imdb-wiki-dir", "balanaced_mse.py"), "reference_bmse")
    case = fixture("bmse-bmc-00.json")
    p = torch.tensor(case["preds"], dtype=torch.float64).reshape(-1, 1).requires_grad_()
    y = torch.tensor(case["labels"], dtype=torch.float64).reshape(-1, 1)
    sigma = torch.tensor(case["config"]["noise_sigma"], dtype=torch.float64, requires_grad=True)
    with cuda_is_identity():
        loss = module.bmc_loss(p, y, sigma**2)
    loss.backward()
    agree("BMC", loss.item(), case["expected"]["loss"], p.grad.flatten().tolist(), case["expected"]["grad_preds"], 1e-9)
    return module.bmc_loss


def timed(step, reps):
    step()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ranksim", help="a checkout of BorealisAI/ranksim-imbalanced-regression")
    parser.add_argument("--rnc", help="a checkout of kaiwenzha/Rank-N-Contrast")
    parser.add_argument("--bmse", help="a checkout of jiawei-ren/BalancedMSE")
    parser.add_argument("--sizes", default="256x512,1024x512")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument(
        "--reference-gib",
        type=float,
        default=8.0,
        help="skip a reference whose own estimate of its largest tensors exceeds this many GiB",
    )
    args = parser.parse_args()
    if not (args.ranksim or args.rnc or args.bmse):
        sys.exit("error: name at least one reference checkout (--ranksim, --rnc, --bmse)")
    torch.set_num_threads(args.threads)
    conr_module = sys.modules["conr"]
    conr_module.set_num_threads(args.threads)
    losses = []
    if args.ranksim:
        ranksim = ranksim_reference(args.ranksim)
        # A b×b similarity matrix per call.
        losses.append(("ranksim", lambda f, y, p, s: ranksim(f, y, 2.0), lambda f, y, p, s: ct.rank_sim_loss(f, y), lambda m, d: 8 * m * m))
    if args.rnc:
        their_rnc = rnc_reference(args.rnc)(temperature=2.0)
        our_rnc = ct.RnCLoss(temperature=2.0)

        def views(f):
            return f.reshape(2, -1, f.shape[1]).transpose(0, 1)

        # Its n×n×d difference tensor, kept for the backward pass, and its gradient.
        losses.append(("rnc", lambda f, y, p, s: their_rnc(views(f), y[: f.shape[0] // 2]), lambda f, y, p, s: our_rnc(views(f), y[: f.shape[0] // 2]), lambda m, d: 2 * 4 * m * m * d))
    if args.bmse:
        bmc_loss = bmc_reference(args.bmse)

        def bmc(f, y, p, s):
            with cuda_is_identity():
                return bmc_loss(p, y, s**2)

        # A B×B logit matrix and its softmax.
        losses.append(("bmc", bmc, lambda f, y, p, s: ct.balanced_mse_loss(p, y, s), lambda m, d: 2 * 4 * m * m))
    print(f"{'loss':<8} {'M':>6} {'D':>6}  {'reference (s)':>13}  {'conr (s)':>9}  {'reference over conr':>20}")
    for size in args.sizes.split(","):
        m, d = (int(x) for x in size.lower().split("x"))
        feats, ages, preds, _ = random_batch(m, d, generator=torch.Generator().manual_seed(m ^ d))
        for name, theirs, ours, reference_bytes in losses:
            def step(loss):
                f = feats.clone().requires_grad_()
                p = preds.clone().requires_grad_()
                s = torch.tensor(1.0, requires_grad=True)
                loss(f, ages, p, s).backward()

            conr_s = timed(lambda: step(ours), args.reps)
            gib = reference_bytes(m, d) / 2**30
            if gib > args.reference_gib:
                print(f"{name:<8} {m:>6} {d:>6}  {'skipped':>13}  {conr_s:>9.4f}  (the reference needs about {gib:.0f} GiB)")
                continue
            ref_s = timed(lambda: step(theirs), args.reps)
            print(f"{name:<8} {m:>6} {d:>6}  {ref_s:>13.4f}  {conr_s:>9.4f}  {ref_s / conr_s:>19.1f}×")


if __name__ == "__main__":
    main()
