"""Writes examples/agedb-batch.json: a synthetic AgeDB-like batch for `conr compute`.

64 ages drawn from a skewed distribution (most in the 25-45 range, a few rare
ages near 5 and 85), two augmented views each (M = 128), 32 random features per
view that drift with age, and predictions within a few years of the truth.
Run from the repository root: python3 examples/make_batch.py
"""
import json
import random

rng = random.Random(7)
B, D = 64, 32
ages = [min(100.0, max(1.0, round(rng.gauss(35, 8)))) for _ in range(B - 6)] + [4.0, 6.0, 7.0, 83.0, 86.0, 90.0]
direction = [rng.gauss(0, 1) for _ in range(D)]
features, labels, preds = [], [], []
for view in range(2):
    for age in ages:
        features += [round(0.02 * age * direction[i] + rng.gauss(0, 1), 6) for i in range(D)]
        labels.append(age)
        preds.append(round(age + rng.gauss(0, 4), 3))
case = {
    "schema": "conr-fixture/1",
    "n": 2 * B,
    "d": D,
    "label_dim": 1,
    "config": {"preset": "official_agedb"},
    "features": features,
    "labels": labels,
    "preds": preds,
}
with open("examples/agedb-batch.json", "w") as f:
    json.dump(case, f)
    f.write("\n")
