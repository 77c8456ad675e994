"""An mpi4py allreduce: every MPI rank adds rank + 1 and prints the sum it got, with where it ran.

``--fail-rank N`` makes MPI rank N exit 1 after the allreduce (the failure test).
"""

import sys

from mpi4py import MPI

comm = MPI.COMM_WORLD
rank, size = comm.Get_rank(), comm.Get_size()
total = comm.allreduce(rank + 1, op=MPI.SUM)
print(f"mpi rank {rank} of {size} on {MPI.Get_processor_name()}: allreduce sum = {total}", flush=True)
if "--fail-rank" in sys.argv and rank == int(sys.argv[sys.argv.index("--fail-rank") + 1]):
    sys.exit(1)
