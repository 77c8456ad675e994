"""A tiny deterministic DDP job with knobs: linear regression on synthetic data, gloo all-reduce.

Like the server side's ``tests/jobs/scripts/ddp_linreg.py``, plus ``--steps`` (a long run to
cancel) and ``--fail-rank`` (a rank that fails after joining the process group).

Every rank builds the same data from a fixed seed and trains on its own shard (``rank::world``);
DDP averages the gradients with an all-reduce, so W ranks do full-batch gradient descent on the
whole data set, the same as one process would. Prints ``rank``, ``world_size`` and ``final_loss``
(the loss of the trained model on the whole data, identical on every rank).
Run by ``torchrun`` (via ``kubelab.jobs.entrypoint``), which sets RANK/WORLD_SIZE/MASTER_*.
"""

import argparse

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

parser = argparse.ArgumentParser()
parser.add_argument("--steps", type=int, default=200)
parser.add_argument("--fail-rank", type=int, default=-1, help="this rank exits 1 before training")
args = parser.parse_args()

dist.init_process_group("gloo")
rank, world = dist.get_rank(), dist.get_world_size()
print(f"rank={rank} world_size={world} started", flush=True)
if rank == args.fail_rank:
    raise SystemExit(f"rank={rank} failing on purpose (--fail-rank)")

N, D = 1024, 8  # N divisible by every world size used, so shard means average to the full mean
data = torch.Generator().manual_seed(0)
x = torch.randn(N, D, generator=data)
w_true = torch.linspace(-1.0, 1.0, D)
y = x @ w_true + 0.5 + 0.01 * torch.randn(N, generator=data)

torch.manual_seed(0)
model = torch.nn.Linear(D, 1)
ddp = DistributedDataParallel(model)
opt = torch.optim.SGD(ddp.parameters(), lr=0.1)
xs, ys = x[rank::world], y[rank::world]
for step in range(args.steps):
    opt.zero_grad()
    loss = torch.nn.functional.mse_loss(ddp(xs).squeeze(-1), ys)
    loss.backward()  # the all-reduce of the gradients happens here
    opt.step()
    if step % 50 == 0:
        print(f"rank={rank} step={step} shard_loss={loss.item():.6f}", flush=True)

with torch.no_grad():
    final = torch.nn.functional.mse_loss(model(x).squeeze(-1), y).item()
print(f"rank={rank} world_size={world} final_loss={final:.8f}", flush=True)
dist.destroy_process_group()
