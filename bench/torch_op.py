"""The PyTorch op against the official loss and against conr's own engine.

For each size, in one run: `conr.torch.conr_loss` forward plus backward on
CPU tensors, the same batch through `conr.compute` (the Rust engine's own
call, no torch), and, with --official, the official AgeDB-DIR `ConR` loaded
from a checkout of BorealisAI/ConR (see official.py); the three are timed in
turn within each repetition. Then the peak extra memory of one forward plus
backward through the torch op at --peak, measured in a fresh process as the
growth of its resident set (Linux). Where CUDA is available, --cuda-sizes
times the op on CUDA tensors (the batch to the host and back) with the fast
engine, the gpu engine and engine="auto" (which names the engine it chose),
the bare round trip of the features and the gradient, and the official code
on CUDA.

Prints one JSON object per size: impl, m, d, threads, op_s, engine_s,
official_s (medians), op_over_engine, official_over_op; one for the peak: m,
d, peak_extra_bytes; and one per CUDA size: device, m, d, fast_s, gpu_s,
auto_s, auto_engine, round_trip_s, official_s.

Usage: python3 bench/torch_op.py [--official ../ConR] [--sizes 128x2048,1024x512,8192x512]
                                 [--threads 2] [--reps 5] [--peak 65536x128]
                                 [--cuda-sizes 256x512,4096x512,16384x512]
"""
import argparse
import json
import math
import statistics
import subprocess
import sys
import time

import torch

import conr
from conr.torch import conr_loss
from official import load_official, random_batch

CONFIG = conr.Config.official_agedb()


def medians(runs, reps, warmup=1):
    """The median time of each of `runs`, timed in turn within every
    repetition (so that drifts in the machine's load reach all of them
    alike), in an order rotated each time (so that each follows each of the
    others as often: torch's threads, which spin after the official code's
    work, slow whatever comes next)."""
    times = [[] for _ in runs]
    for rep in range(warmup + reps):
        for i in range(len(runs)):
            which = (rep + i) % len(runs)
            start = time.perf_counter()
            runs[which]()
            if rep >= warmup:
                times[which].append(time.perf_counter() - start)
    return [statistics.median(own) for own in times]


def op_step(x, ages, preds, weights):
    x.grad = None
    conr_loss(x, ages, preds, weights, config=CONFIG).backward()


def engine_step(arrays):
    conr.compute(*arrays, config=CONFIG)


def official_step(official, x, ages, preds, weights):
    x.grad = None
    official(x, ages, preds, w=1.0, weights=weights).backward()


def peak(m, d, threads):
    """The peak extra resident memory of one forward plus backward at M×D,
    beyond the inputs, in a fresh process (Linux): the kernel's high-water
    mark, reset once the inputs exist, less the resident set then."""
    code = f"""
import torch, conr
from conr.torch import conr_loss
from official import random_batch

def status(field):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith(field))

torch.set_num_threads({threads}); conr.set_num_threads({threads})
feats, ages, preds, weights = random_batch({m}, {d}, generator=torch.Generator().manual_seed(1))
x = feats.requires_grad_()
# The engine's threads and the op's registration exist before the measurement.
small = torch.randn(64, {d}).requires_grad_()
conr_loss(small, ages[:64], preds[:64], weights[:64], config=conr.Config.official_agedb()).backward()
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # resets the high-water mark to the resident set
before = status("VmRSS:")
conr_loss(x, ages, preds, weights, config=conr.Config.official_agedb()).backward()
print(status("VmHWM:") - before)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=sys.path[0])
    return int(out.stdout.strip())


def cuda_rows(sizes, official, reps):
    """The op on CUDA tensors through each engine, the host round trip alone,
    and the official code on CUDA, synchronised around each step."""
    def synced(run):
        def step():
            run()
            torch.cuda.synchronize()
        return step

    generator = torch.Generator().manual_seed(2)
    for item in sizes.split(","):
        m, d = (int(x) for x in item.lower().split("x"))
        feats, ages, preds, weights = (t.cuda() for t in random_batch(m, d, generator=generator))
        x = feats.requires_grad_()

        def op(engine):
            x.grad = None
            conr_loss(x, ages, preds, weights, config=CONFIG, engine=engine).backward()

        def round_trip():
            feats.detach().cpu().cuda()

        runs = [synced(lambda: op("fast")), synced(lambda: op("gpu")), synced(lambda: op("auto")), synced(round_trip)]
        if official is not None:
            runs.append(synced(lambda: official_step(official, x, ages, preds, weights)))
        fast_s, gpu_s, auto_s, trip_s, *rest = medians(runs, reps)
        print(json.dumps({
            "device": torch.cuda.get_device_name(),
            "m": m,
            "d": d,
            "fast_s": fast_s,
            "gpu_s": gpu_s,
            "auto_s": auto_s,
            "auto_engine": conr._devices.engine_for("auto", x.device),
            # Features to the host and a tensor of their size back: the
            # transfers the op adds to either engine's own time.
            "round_trip_s": trip_s,
            "official_s": rest[0] if rest else math.nan,
        }), flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--official", help="a checkout of github.com/BorealisAI/ConR")
    parser.add_argument("--sizes", default="128x2048,1024x512,8192x512")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--peak", default="65536x128", help="MxD of the memory measurement ('' to skip)")
    parser.add_argument("--cuda-sizes", default="256x512,4096x512,16384x512",
                        help="sizes timed on CUDA tensors where CUDA is available ('' to skip)")
    args = parser.parse_args()
    official = load_official(args.official) if args.official else None
    torch.set_num_threads(args.threads)
    conr.set_num_threads(args.threads)
    generator = torch.Generator().manual_seed(0)
    for item in args.sizes.split(","):
        m, d = (int(x) for x in item.lower().split("x"))
        feats, ages, preds, weights = random_batch(m, d, generator=generator)
        arrays = [t.numpy() for t in (feats, ages, preds, weights)]
        x = feats.requires_grad_()
        runs = [lambda: op_step(x, ages, preds, weights), lambda: engine_step(arrays)]
        if official is not None:
            runs.append(lambda: official_step(official, x, ages, preds, weights))
        op_s, engine_s, *rest = medians(runs, args.reps)
        official_s = rest[0] if rest else math.nan
        print(json.dumps({
            "impl": "conr.torch",
            "m": m,
            "d": d,
            "threads": args.threads,
            "op_s": op_s,
            "engine_s": engine_s,
            "official_s": official_s,
            "op_over_engine": op_s / engine_s,
            "official_over_op": official_s / op_s,
        }), flush=True)
    if args.peak:
        m, d = (int(x) for x in args.peak.lower().split("x"))
        print(json.dumps({"m": m, "d": d, "threads": args.threads,
                          "peak_extra_bytes": peak(m, d, args.threads)}), flush=True)
    if args.cuda_sizes and torch.cuda.is_available():
        cuda_rows(args.cuda_sizes, official, args.reps)


if __name__ == "__main__":
    main()
