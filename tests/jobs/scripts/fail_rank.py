"""Rank 1 prints a few lines and exits 1; every other rank waits (to be torn down)."""

import os
import sys
import time

rank = int(os.environ["KUBELAB_RANK"]) + int(os.environ.get("KUBELAB_RANK_OFFSET") or 0)
for step in range(30):
    print(f"rank {rank}: step {step}", flush=True)
if rank == 1:
    print("rank 1: failing on purpose", flush=True)
    sys.exit(1)
time.sleep(float(os.environ.get("SLEEP", "600")))
