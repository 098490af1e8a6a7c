"""agents/threads.py: one setting limits torch's threads and numpy's BLAS threads."""

import numpy as np  # noqa: F401  (loads numpy's BLAS, which threadpoolctl then finds)
import pytest
import torch
from threadpoolctl import threadpool_info, threadpool_limits

from agents.threads import set_cpu_threads


def blas_threads() -> dict:
    return {info["filepath"]: info["num_threads"] for info in threadpool_info() if info["user_api"] == "blas"}


def test_set_cpu_threads_limits_torch_and_numpy_blas():
    previous_torch = torch.get_num_threads()
    with threadpool_limits(limits=2, user_api="blas"):
        assert any("openblas" in path for path in blas_threads()), blas_threads()  # numpy's own BLAS
        assert set(blas_threads().values()) == {2}
        try:
            set_cpu_threads(1)
            assert set(blas_threads().values()) == {1}
            assert torch.get_num_threads() == 1
        finally:
            torch.set_num_threads(previous_torch)


def test_set_cpu_threads_rejects_zero():
    with pytest.raises(ValueError, match="num_threads must be >= 1"):
        set_cpu_threads(0)
