"""Rank ``FAIL_RANK`` (default 1) prints a few lines and exits 1; every other rank waits (to be torn down).

With ``FAIL_RANK=none`` every rank just waits (a job to cancel), ``SLEEP`` seconds (default 600),
then succeeds. ``FAIL_AFTER`` delays the failure by that many seconds (default 0).
"""

import os
import sys
import time

rank = int(os.environ["KUBELAB_RANK"]) + int(os.environ.get("KUBELAB_RANK_OFFSET") or 0)
fail_rank = os.environ.get("FAIL_RANK", "1")
for step in range(30):
    print(f"rank {rank}: step {step}", flush=True)
if str(rank) == fail_rank:
    time.sleep(float(os.environ.get("FAIL_AFTER", "0")))
    print(f"rank {rank}: failing on purpose", flush=True)
    sys.exit(1)
time.sleep(float(os.environ.get("SLEEP", "600")))
