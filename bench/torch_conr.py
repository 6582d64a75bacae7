"""PyTorch baseline for `conr bench`: the official AgeDB-DIR ConR loss.

The loss below follows the published AgeDB-DIR code (BorealisAI/ConR) line for
line, including its dense M×M masks and its Python loop over the diagonal, so
it is timed as users run it today. It is checked against the float64
conformance fixture `tests/fixtures/official-agedb-04.json` before timing.

Prints one JSON object per size, with the fields of `conr bench --json`:
  impl, device, m, d, threads, fwd_bwd_s (median), gemm_s (median, one f32
  M×M×D GEMM with TF32 off), gemm_equivalents, peak_bytes (CUDA only).

Usage: python3 bench/torch_conr.py --sizes 1024x512,4096x512 --threads 2 [--device cuda]
"""
import argparse
import json
import math
import os
import statistics
import time

import torch


def conr_official(features, targets, preds, w=1, weights=1, t=0.07, e=0.01):
    q = torch.nn.functional.normalize(features, dim=1)
    k = torch.nn.functional.normalize(features, dim=1)

    l_k = targets.flatten()[None, :]
    l_q = targets

    p_k = preds.flatten()[None, :]
    p_q = preds

    l_dist = torch.abs(l_q - l_k)
    p_dist = torch.abs(p_q - p_k)

    pos_i = l_dist.le(w)
    neg_i = (~(l_dist.le(w))) * (p_dist.le(w))

    for i in range(pos_i.shape[0]):
        pos_i[i][i] = 0

    prod = torch.einsum("nc,kc->nk", [q, k]) / t
    pos = prod * pos_i
    neg = prod * neg_i

    pushing_w = weights * torch.exp(l_dist * e)
    neg_exp_dot = (pushing_w * (torch.exp(neg)) * neg_i).sum(1)

    # If there is no negative pair, the row's loss is zeroed out.
    no_neg_flag = (neg_i).sum(1).bool()

    denom = pos_i.sum(1)

    loss = (
        (-torch.log(torch.div(torch.exp(pos), (torch.exp(pos).sum(1) + neg_exp_dot).unsqueeze(-1))) * (pos_i)).sum(1)
        / denom
    )
    loss = (weights * (loss * no_neg_flag).unsqueeze(-1)).mean()
    return loss


def check_against_fixture():
    """The official loss and gradient of one fixture, in float64."""
    here = os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(here, "..", "tests", "fixtures", "official-agedb-04.json")) as f:
        case = json.load(f)
    n, d = case["n"], case["d"]
    feats = torch.tensor(case["features"], dtype=torch.float64).reshape(n, d).requires_grad_()
    labels = torch.tensor(case["labels"], dtype=torch.float64).reshape(n, 1)
    preds = torch.tensor(case["preds"], dtype=torch.float64).reshape(n, 1)
    weights = torch.tensor(case["weights"], dtype=torch.float64).reshape(n, 1)
    cfg = case["config"]
    loss = conr_official(feats, labels, preds, w=cfg["threshold"], weights=weights, t=cfg["temperature"], e=cfg["pushing"]["scale"])
    loss.backward()
    want = case["expected"]
    grad_err = max(abs(a - b) for a, b in zip(feats.grad.flatten().tolist(), want["grad_features"]))
    assert abs(loss.item() - want["loss"]) <= 1e-9 * max(1.0, abs(want["loss"])), (loss.item(), want["loss"])
    assert grad_err <= 1e-9 * max(abs(g) for g in want["grad_features"]), grad_err


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
    parser.add_argument("--sizes", default="1024x512,4096x512")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    args = parser.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    check_against_fixture()
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
                loss = conr_official(x, ages, preds, w=1.0, weights=weights)
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
