"""Deterministic DDP training (gloo, CPU) that checkpoints every EVERY steps and resumes from the latest.

The batch of step s on rank r is drawn from a generator seeded with (s, r), and the checkpoint holds
the model and the optimizer (SGD with momentum, whose state matters), so a run restarted from its
step-s checkpoint takes exactly the steps an uninterrupted run takes. Every rank prints its final
loss over a fixed evaluation set: ``rank=R final_loss=... resumed_from=S``.

Env: STEPS (default 240), EVERY (20), SLEEP (seconds per step, 0.1).
"""

import os
import time

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

from kubelab.jobs import checkpoint, metrics

STEPS = int(os.environ.get("STEPS", "240"))
EVERY = int(os.environ.get("EVERY", "20"))
SLEEP = float(os.environ.get("SLEEP", "0.1"))

dist.init_process_group(os.environ.get("KUBELAB_BACKEND", "gloo"))
rank, world = dist.get_rank(), dist.get_world_size()
true_w = torch.arange(1.0, 9.0).unsqueeze(1)

torch.manual_seed(0)
model = torch.nn.Linear(8, 1)
opt = torch.optim.SGD(model.parameters(), lr=0.02, momentum=0.9)
start = 0
found = checkpoint.latest()
if found is not None:
    model.load_state_dict(found.state["model"])
    opt.load_state_dict(found.state["opt"])
    start = found.step + 1
ddp = DDP(model)

for step in range(start, STEPS):
    gen = torch.Generator().manual_seed(100_003 * step + rank)
    x = torch.randn(64, 8, generator=gen)
    y = x @ true_w + 0.5 + 0.01 * torch.randn(64, 1, generator=gen)
    opt.zero_grad()
    loss = torch.nn.functional.mse_loss(ddp(x), y)
    loss.backward()
    opt.step()
    metrics.log(step, loss=loss.item())
    if step % EVERY == 0 or step == STEPS - 1:
        checkpoint.save({"model": model.state_dict(), "opt": opt.state_dict()}, step)
    if step % 20 == 0:
        print(f"rank {rank} step {step} loss {loss.item():.6f}", flush=True)
    time.sleep(SLEEP)

gen = torch.Generator().manual_seed(7)
x = torch.randn(2048, 8, generator=gen)
y = x @ true_w + 0.5
with torch.no_grad():
    final = torch.nn.functional.mse_loss(model(x), y).item()
print(f"rank={rank} final_loss={final:.12e} resumed_from={start}", flush=True)
dist.destroy_process_group()
