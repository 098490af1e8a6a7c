"""One setting for a process's CPU threads: torch's intra-op pool and numpy's BLAS pool.

Rollouts act through a numpy snapshot of the policy (agents/rollout_policy.py). numpy's OpenBLAS
splits a large enough matmul over one thread per core and synchronises them by spinning, so while
the env workers keep every core busy a BLAS thread spins waiting for a descheduled partner.
Measured on the 2-core machine with another process busy (``scripts/benchmark_gnn.py``, 2026-12-02):
the MLP snapshot's ``act`` on 256 observations took 32 ms with OpenBLAS's default threads and
0.5 ms with one; the graph snapshot's on 256 graphs of 10 nodes 144 ms against 69 ms.
``threadpoolctl`` finds whichever BLAS numpy (and torch) loaded.
"""

from __future__ import annotations

import torch
from threadpoolctl import threadpool_limits


def set_cpu_threads(num_threads: int) -> None:
    """Use ``num_threads`` threads for torch ops and for BLAS calls (numpy's included) from now on."""
    if num_threads < 1:
        raise ValueError(f"num_threads must be >= 1, got {num_threads}")
    torch.set_num_threads(num_threads)
    threadpool_limits(limits=num_threads, user_api="blas")
