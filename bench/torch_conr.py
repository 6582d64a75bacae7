"""The PyTorch baseline for `conr bench`: the official AgeDB-DIR ConR loss, as published.

The official code is not part of this repository (its license is not conr's).
Point --official at a checkout of it (git clone https://github.com/BorealisAI/ConR);
`official.py` loads `agedb-dir/loss.py` from there, checks it against conr's
float64 conformance fixture `tests/fixtures/official-agedb-04.json` (so that
a different checkout is caught rather than timed), and this script times its
`ConR` function unchanged, dense M×M masks and Python loop included, as users
run it.

Prints one JSON object per size, with the fields of `conr bench --json`:
  impl, device, m, d, threads, fwd_bwd_s (median), gemm_s (median of one f32
  M×M×D GEMM, TF32 off), gemm_equivalents, peak_bytes (CUDA only), status.

With --conr PATH (a `conr` binary), the same run then times `conr bench` on
the same sizes and threads, and prints one line per size with the ratios:
the official code over conr, and torch's GEMM over conr's GEMM kernels.

Usage: python3 bench/torch_conr.py --official ../ConR --sizes 1024x512,4096x512 --threads 2 [--device cuda] [--conr target/release/conr]
"""
import argparse
import json
import math
import statistics
import subprocess
import time

import torch

from official import load_official, random_batch


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
    parser.add_argument("--conr", help="a conr binary: run `conr bench` on the same sizes and print the ratios")
    args = parser.parse_args()
    official = load_official(args.official)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    generator = torch.Generator().manual_seed(0)
    official_rows = []
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
        official_rows.append({
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
        })
        print(json.dumps(official_rows[-1]), flush=True)
    if args.conr:
        compare(args, official_rows)


def compare(args, official_rows):
    """Times `conr bench` on the same sizes and threads, and prints the ratios."""
    backend = "gpu" if args.device == "cuda" else "cpu"
    command = [args.conr, "bench", "--backend", backend, "--sizes", args.sizes,
               "--reps", str(args.reps), "--warmup", str(args.warmup),
               "--threads", str(args.threads), "--json"]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    rows = (json.loads(line) for line in output.splitlines() if line.strip())
    conr_rows = {(r["m"], r["d"]): r for r in rows}
    for official in official_rows:
        ours = conr_rows[(official["m"], official["d"])]
        row = {
            "impl": "ratios",
            "m": official["m"],
            "d": official["d"],
            "conr_plan": ours["plan"],
            "conr_fwd_bwd_s": ours["fwd_bwd_s"],
            "conr_peak_bytes": ours["peak_bytes"],
            "official_over_conr": official["fwd_bwd_s"] / ours["fwd_bwd_s"],
        }
        if ours["gemm_s"] is not None:
            row["conr_gemm_equivalents"] = ours["gemm_equivalents"]
            row["conr_over_torch_gemm_equivalents"] = ours["fwd_bwd_s"] / official["gemm_s"]
            row["torch_gemm_over_conr_gemm"] = official["gemm_s"] / ours["gemm_s"]
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
