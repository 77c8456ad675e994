"""Prints the rank and the GPUs this process was given (CUDA_VISIBLE_DEVICES)."""

import os

print(f"rank={os.environ['KUBELAB_RANK']} CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', '')}",
      flush=True)
