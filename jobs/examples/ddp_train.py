"""Example: a small PyTorch DDP training that you can watch from the launcher.

Linear regression on synthetic data; every rank trains on its shard, DDP averages the gradients,
and every step each rank logs its loss with ``kubelab.jobs.metrics.log`` (the launcher and the
hub's jobs page draw it per rank). Runs on CPU (gloo) or GPU (NCCL, one GPU per process).

    python -m kubelab.jobs.entrypoint -- --steps 300          # what each rank runs (JobClient does it)

Options: ``--steps N`` (default 300), ``--lr`` (0.05), ``--sleep S`` seconds per step (0.02, so
that a run lasts long enough to watch), ``--tensorboard [DIR]`` to also write TensorBoard scalars
under DIR/rank-<r> (default: the job's ``$KUBELAB_LOG_DIR``, which the user's server sees; needs
the ``tensorboard`` package; the job view then offers "Open TensorBoard").
"""

from __future__ import annotations

import argparse
import os
import time

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from kubelab.jobs import metrics

parser = argparse.ArgumentParser()
parser.add_argument("--steps", type=int, default=300)
parser.add_argument("--lr", type=float, default=0.05)
parser.add_argument("--sleep", type=float, default=0.02)
parser.add_argument("--tensorboard", nargs="?", const=os.environ.get("KUBELAB_LOG_DIR", "runs"), default=None,
                    help="folder for TensorBoard event files (alone: the job's $KUBELAB_LOG_DIR)")
args = parser.parse_args()

backend = os.environ.get("KUBELAB_BACKEND", "gloo")
dist.init_process_group(backend)
rank, world = dist.get_rank(), dist.get_world_size()
device = torch.device(f"cuda:{os.environ.get('LOCAL_RANK', '0')}") if backend == "nccl" else torch.device("cpu")

gen = torch.Generator().manual_seed(0)
x = torch.randn(2048, 8, generator=gen)
y = x @ torch.linspace(-1.0, 1.0, 8) + 0.5 + 0.05 * torch.randn(2048, generator=gen)
xs, ys = x[rank::world].to(device), y[rank::world].to(device)

torch.manual_seed(0)
model = DistributedDataParallel(torch.nn.Linear(8, 1).to(device))
opt = torch.optim.SGD(model.parameters(), lr=args.lr)
writer = None
if args.tensorboard:
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(os.path.join(args.tensorboard, f"rank-{rank}"))

for step in range(args.steps):
    opt.zero_grad()
    loss = torch.nn.functional.mse_loss(model(xs).squeeze(-1), ys)
    loss.backward()  # DDP all-reduces the gradients here
    opt.step()
    metrics.log(step, loss=loss.item())  # buffered: costs microseconds, never blocks training
    if writer is not None:
        writer.add_scalar("loss", loss.item(), step)
    if step % 50 == 0:
        print(f"rank={rank} step={step} loss={loss.item():.5f}", flush=True)
    time.sleep(args.sleep)

if writer is not None:
    writer.close()
print(f"rank={rank} world_size={world} final_loss={loss.item():.6f}", flush=True)
dist.destroy_process_group()
