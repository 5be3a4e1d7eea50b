"""Setup step for the huge-file scenario: writes big.csv (deterministic, about 9 MB)."""

import csv
import random
import sys

rows = int(sys.argv[1]) if len(sys.argv) > 1 else 300_000
rng = random.Random(42)
categories = ["alpha", "beta", "gamma", "delta", "epsilon"]
with open("big.csv", "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["id", "category", "value"])
    for i in range(rows):
        w.writerow([i, categories[rng.randrange(5)], round(rng.random() * 1000, 3)])
