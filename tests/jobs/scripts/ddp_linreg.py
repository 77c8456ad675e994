"""Linear regression on synthetic data with DDP (gloo on CPU): every rank prints rank, world size and final loss.

Run through ``python -m kubelab.jobs.entrypoint`` (torchrun sets RANK/WORLD_SIZE/MASTER_ADDR).
Each rank trains on its shard; DDP all-reduces the gradients, so all replicas stay identical.
"""

import os

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

backend = os.environ.get("KUBELAB_BACKEND", "gloo")
dist.init_process_group(backend)
rank, world = dist.get_rank(), dist.get_world_size()
device = torch.device(f"cuda:{os.environ.get('LOCAL_RANK', '0')}") if backend == "nccl" else torch.device("cpu")

gen = torch.Generator().manual_seed(0)
x = torch.randn(4096, 8, generator=gen)
true_w = torch.arange(1.0, 9.0).unsqueeze(1)
y = x @ true_w + 0.5 + 0.01 * torch.randn(4096, 1, generator=gen)
shard = slice(rank * len(x) // world, (rank + 1) * len(x) // world)
xs, ys = x[shard].to(device), y[shard].to(device)

torch.manual_seed(0)
model = DDP(torch.nn.Linear(8, 1).to(device))
opt = torch.optim.SGD(model.parameters(), lr=0.1)
for _step in range(200):
    opt.zero_grad()
    loss = torch.nn.functional.mse_loss(model(xs), ys)
    loss.backward()
    opt.step()

with torch.no_grad():
    full = torch.nn.functional.mse_loss(model(x.to(device)), y.to(device)).item()
check = torch.tensor([1.0], device=device)
dist.all_reduce(check)
print(f"rank={rank} world_size={world} all_reduce={check.item():g} final_loss={full:.8f}", flush=True)
dist.destroy_process_group()
