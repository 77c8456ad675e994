"""One trial of a test sweep: a made-up loss with a known best, logged with kubelab.jobs.metrics.

``--lr`` (log scale, best at 10**-2.5) and ``--width`` (best at 16) set the loss the curve falls to;
STEPS (default 10) points are logged, SLEEP seconds apart (default 0.3).
"""

import argparse
import math
import os
import time

from kubelab.jobs import metrics

parser = argparse.ArgumentParser()
parser.add_argument("--lr", type=float, required=True)
parser.add_argument("--width", type=int, default=16)
args, _ = parser.parse_known_args()
steps = int(os.environ.get("STEPS", "10"))
target = (math.log10(args.lr) + 2.5) ** 2 + abs(args.width - 16) / 100
loss = float("nan")
for step in range(steps):
    loss = target + 2.0 * math.exp(-step / 2)
    metrics.log(step, loss=loss)
    time.sleep(float(os.environ.get("SLEEP", "0.3")))
print(f"trial lr={args.lr} width={args.width}: final loss {loss:.6f}", flush=True)
