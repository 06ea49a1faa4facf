# The demo cell: what a notebook user would mark with %%save_for_remote.
# Every rank computes a part, MPI sums it, and each rank leaves a file behind.
import os
import socket

from mpi4py import MPI

comm = MPI.COMM_WORLD
part = (rank + 1) ** 2
total = comm.allreduce(part, op=MPI.SUM)
print(f"rank {rank}/{world_size} on {socket.gethostname()}: part {part}, allreduce sum {total}")

with open(os.path.join(os.environ["PYSTRIB_RESULTS"], f"rank{rank}.txt"), "w") as f:
    f.write(f"{rank} {part} {total}\n")
