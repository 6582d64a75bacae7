"""One training step of a small regression network, with and without ConR:
the loss's share of a real step.

The network is a ResNet-18 (basic blocks [2, 2, 2, 2], 512 features, a
linear head), written here in plain torch so that the script needs nothing
beyond it. A step draws a batch of N random images of S×S (two augmented
views each, as ConR trains: 2N feature rows), runs the network on both views,
and takes an SGD step on

- ``l1``: the L1 regression loss alone;
- ``official``: L1 + the official AgeDB-DIR ConR (from a checkout of
  BorealisAI/ConR, see official.py), where --official names one;
- ``conr``: L1 + ``conr.torch.conr_loss`` (engine "auto", or --engines).

The steps run by turns within each repetition (so that drifts in the
machine's state reach them alike). Prints one JSON object with the device,
N, S, each step's median seconds, and each loss's share of its step
((step − l1) / step).

Usage: python3 bench/train_step.py [--device cuda] [--batch 64] [--size 112]
                                   [--official ../ConR] [--engines auto,fast,gpu] [--reps 10]
"""
import argparse
import json
import statistics
import time

import torch
from torch import nn

import conr
from conr.torch import conr_loss
from official import load_official


class Block(nn.Module):
    """A basic residual block: two 3×3 convolutions, a projection where the
    shape changes."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.project = None
        if stride != 1 or cin != cout:
            self.project = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = torch.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return torch.relu(y + (x if self.project is None else self.project(x)))


class Regressor(nn.Module):
    """ResNet-18's layout, 512 pooled features, and a linear regression head."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(3, 2, 1)
        )
        layers, cin = [], 64
        for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            layers += [Block(cin, cout, stride), Block(cout, cout, 1)]
            cin = cout
        self.layers = nn.Sequential(*layers)
        self.head = nn.Linear(512, 1)

    def forward(self, x):
        features = torch.flatten(nn.functional.adaptive_avg_pool2d(self.layers(self.stem(x)), 1), 1)
        return self.head(features), features


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=64, help="images per step (two views each)")
    parser.add_argument("--size", type=int, default=112, help="image side in pixels")
    parser.add_argument("--official", help="a checkout of github.com/BorealisAI/ConR")
    parser.add_argument("--engines", default="auto", help="conr's engines to time, comma-separated")
    parser.add_argument("--reps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args()
    device = torch.device(args.device)
    official = load_official(args.official) if args.official else None
    config = conr.Config.official_agedb()

    generator = torch.Generator().manual_seed(0)
    n = args.batch
    views = torch.randn(2 * n, 3, args.size, args.size, generator=generator).to(device)
    ages = torch.clamp(torch.round(35 + 15 * torch.randn(n, 1, generator=generator)), 0, 100)
    ages = torch.cat([ages, ages]).to(device)
    weights = torch.ones(2 * n, 1, device=device)
    model = Regressor().to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)

    def step(extra):
        def run():
            optimizer.zero_grad(set_to_none=True)
            preds, features = model(views)
            loss = nn.functional.l1_loss(preds, ages)
            if extra is not None:
                loss = loss + extra(features, preds)
            loss.backward()
            optimizer.step()
            if device.type == "cuda":
                torch.cuda.synchronize()
        return run

    steps = {"l1": step(None)}
    if official is not None:
        steps["official"] = step(
            lambda f, p: official(f, ages, p.detach(), w=1.0, weights=weights, e=0.01)
        )
    for engine in args.engines.split(","):
        steps[f"conr_{engine}"] = step(
            lambda f, p, engine=engine: conr_loss(f, ages, p.detach(), weights, config=config, engine=engine)
        )
    names = list(steps)
    times = {name: [] for name in names}
    for rep in range(args.warmup + args.reps):
        for i in range(len(names)):
            name = names[(rep + i) % len(names)]
            start = time.perf_counter()
            steps[name]()
            if rep >= args.warmup:
                times[name].append(time.perf_counter() - start)
    medians = {name: statistics.median(t) for name, t in times.items()}
    base = medians["l1"]
    print(json.dumps({
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "images": n,
        "rows": 2 * n,
        "size": args.size,
        "step_s": medians,
        "loss_share": {name: (t - base) / t for name, t in medians.items() if name != "l1"},
        "auto_engine": conr._devices.engine_for("auto", views.device),
    }), flush=True)


if __name__ == "__main__":
    main()
