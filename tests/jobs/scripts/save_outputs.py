"""A 2-rank DDP job (gloo, on any node) that leaves what a real run leaves: a checkpoint and a
results file under ``KUBELAB_OUTPUT_DIR``, and, to check nothing escapes, a file in ``~`` and one
in ``/tmp`` named after the token given as the first argument.

The results record what the rank saw: its home and working directory, and the sha256 of every
file under ``~/data`` (the job's ``inputs``), so a test can tell the inputs arrived intact.
"""

import hashlib
import json
import os
import pathlib
import sys

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

token = sys.argv[1]
dist.init_process_group("gloo")  # gloo on purpose: the ranks may sit on a GPU node without a GPU
rank, world = dist.get_rank(), dist.get_world_size()

torch.manual_seed(0)
x = torch.randn(256, 4)
y = x.sum(1, keepdim=True)
model = DDP(torch.nn.Linear(4, 1))
opt = torch.optim.SGD(model.parameters(), lr=0.1)
for _step in range(50):
    opt.zero_grad()
    loss = torch.nn.functional.mse_loss(model(x), y)
    loss.backward()
    opt.step()

home = pathlib.Path.home()
data = home / "data"
inputs = {str(p.relative_to(home)): hashlib.sha256(p.read_bytes()).hexdigest()
          for p in sorted(data.rglob("*")) if p.is_file()} if data.is_dir() else {}
out = pathlib.Path(os.environ["KUBELAB_OUTPUT_DIR"])
if rank == 0:
    (out / "checkpoints").mkdir(exist_ok=True)
    torch.save({"model": model.module.state_dict(), "loss": loss.item()}, out / "checkpoints" / "last.pt")
    (out / "results.json").write_text(json.dumps({
        "loss": loss.item(), "world": world, "inputs": inputs, "home": str(home), "cwd": os.getcwd()}))
(out / f"rank-{rank}.txt").write_text(f"rank {rank} of {world}\n")

(home / f"{token}-home.txt").write_text(token)
pathlib.Path("/tmp", f"{token}-tmp.txt").write_text(token)
print(f"rank={rank} world_size={world} final_loss={loss.item():.6f} wrote {sorted(p.name for p in out.iterdir())}")
# Both ranks leave together: gloo aborted rank 1 ("terminate called without an active exception",
# exit -6) once, in CI, when rank 0 tore its connections down first.
dist.barrier()
dist.destroy_process_group()
