"""The PyTorch baseline for `conr bench`: the official AgeDB-DIR ConR loss, as published.

The official code is not part of this repository (its license is not conr's).
Point --official at a checkout of it (git clone https://github.com/BorealisAI/ConR);
this script loads `agedb-dir/loss.py` from there and times its `ConR` function
unchanged, dense M×M masks and Python loop included, as users run it. Before
timing, the loaded function is checked against conr's float64 conformance
fixture `tests/fixtures/official-agedb-04.json`, so that a different checkout
is caught rather than timed.

Prints one JSON object per size, with the fields of `conr bench --json`:
  impl, device, m, d, threads, fwd_bwd_s (median), gemm_s (median of one f32
  M×M×D GEMM, TF32 off), gemm_equivalents, peak_bytes (CUDA only), status.

Usage: python3 bench/torch_conr.py --official ../ConR --sizes 1024x512,4096x512 --threads 2 [--device cuda]
"""
import argparse
import importlib.util
import json
import math
import os
import statistics
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))


def load_official(checkout):
    """The `ConR` function of the checkout's `agedb-dir/loss.py`."""
    path = os.path.join(checkout, "agedb-dir", "loss.py")
    if not os.path.isfile(path):
        sys.exit(f"error: {path} does not exist: --official takes a checkout of BorealisAI/ConR")
    spec = importlib.util.spec_from_file_location("official_agedb_loss", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not hasattr(module, "ConR"):
        sys.exit(f"error: {path} defines no ConR function")
    return module.ConR


def check_against_fixture(official):
    """The official loss and gradient of one fixture, in float64, within the
    fixture README's f64 tolerances."""
    with open(os.path.join(HERE, "..", "tests", "fixtures", "official-agedb-04.json")) as f:
        case = json.load(f)
    n, d = case["n"], case["d"]
    column = lambda key: torch.tensor(case[key], dtype=torch.float64).reshape(n, 1)
    feats = torch.tensor(case["features"], dtype=torch.float64).reshape(n, d).requires_grad_()
    cfg = case["config"]
    loss = official(feats, column("labels"), column("preds"), w=cfg["threshold"],
                    weights=column("weights"), e=cfg["pushing"]["scale"])
    loss.backward()
    want = case["expected"]
    if abs(loss.item() - want["loss"]) > 1e-9 * max(1.0, abs(want["loss"])):
        sys.exit(f"error: the official loss gives {loss.item()}, the fixture {want['loss']}")
    got = feats.grad.flatten().tolist()
    scale = max(abs(g) for g in want["grad_features"])
    worst = max(abs(a - b) for a, b in zip(got, want["grad_features"]))
    if worst > 1e-9 * scale + 1e-15:
        sys.exit(f"error: the official gradient is {worst:e} from the fixture's")


def random_batch(m, d, device, generator):
    """AgeDB-like data, as `conr bench` draws it: ages ~ N(35, 15) rounded to [0, 100],
    predictions within N(0, 7) years, N(0, 1) features, sqrt_inv density weights."""
    ages = torch.clamp(torch.round(35 + 15 * torch.randn(m, 1, generator=generator)), 0, 100)
    preds = ages + 7 * torch.randn(m, 1, generator=generator)
    feats = torch.randn(m, d, generator=generator)
    counts = torch.bincount(ages.flatten().long(), minlength=121).double().sqrt()
    weights = 1.0 / counts[ages.flatten().long()]
    weights = (weights * m / weights.sum()).float().reshape(m, 1)
    return [x.to(device) for x in (feats, ages, preds, weights)]


def sync(device):
    if device == "cuda":
        torch.cuda.synchronize()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--official", required=True, help="a checkout of github.com/BorealisAI/ConR")
    parser.add_argument("--sizes", default="1024x512,4096x512")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    args = parser.parse_args()
    official = load_official(args.official)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    check_against_fixture(official)
    generator = torch.Generator().manual_seed(0)
    for item in args.sizes.split(","):
        m, d = (int(x) for x in item.lower().split("x"))
        feats, ages, preds, weights = random_batch(m, d, args.device, generator)
        times, peak, status = [], 0, "ok"
        for rep in range(args.warmup + args.reps):
            x = feats.clone().requires_grad_()
            if args.device == "cuda":
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()
                base = torch.cuda.memory_allocated()
            sync(args.device)
            start = time.perf_counter()
            try:
                loss = official(x, ages, preds, w=1.0, weights=weights)
                loss.backward()
                sync(args.device)
            except torch.OutOfMemoryError:
                status = "out of memory"
                break
            elapsed = time.perf_counter() - start
            if args.device == "cuda":
                peak = max(peak, torch.cuda.max_memory_allocated() - base)
            if rep >= args.warmup:
                times.append(elapsed)
            del x, loss
        gemm_times = []
        z = torch.nn.functional.normalize(feats, dim=1)
        for rep in range(1 + min(args.reps, 3)):
            sync(args.device)
            start = time.perf_counter()
            out = z @ z.T
            sync(args.device)
            if rep > 0:
                gemm_times.append(time.perf_counter() - start)
            del out
        fwd_bwd = statistics.median(times) if times else math.nan
        gemm = statistics.median(gemm_times)
        print(json.dumps({
            "impl": "torch-official-agedb",
            "device": args.device,
            "m": m,
            "d": d,
            "threads": torch.get_num_threads(),
            "fwd_bwd_s": fwd_bwd,
            "gemm_s": gemm,
            "gemm_equivalents": fwd_bwd / gemm,
            "peak_bytes": peak,
            "status": status,
        }), flush=True)


if __name__ == "__main__":
    main()
