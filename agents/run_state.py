"""What a run carries across checkpoints besides model, algorithm and RNG, and how it is stopped."""

from __future__ import annotations

import random
import signal
import sys
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Deque, Dict, List, Mapping, Optional

import numpy as np
import torch
from tqdm import tqdm


@dataclass
class RunState:
    """Counters and statistics that a checkpoint carries besides model/algorithm/RNG."""

    global_step: int = 0
    updates: int = 0
    best_metric: Optional[float] = None
    best_metric_name: Optional[str] = None
    best_tie_breaker: Optional[float] = None  # e.g. the mean return of the best success rate
    elapsed: float = 0.0  # seconds of training over all (resumed) processes
    recent_returns: Deque[float] = field(default_factory=deque)
    recent_successes: Deque[float] = field(default_factory=deque)

    def improves(self, measured: Optional[tuple]) -> bool:
        """Record ``measured = (name, value, tie_breaker)`` as the best if it beats the best so far:
        a higher value, or an equal value with a higher tie-breaker (``episode_metric``).

        If the metric's kind changes (an env starts reporting success), the
        old best is on another scale and is dropped.
        """
        if measured is None:
            return False
        name, value, tie_breaker = measured
        if self.best_metric is not None and name == self.best_metric_name:
            if value < self.best_metric or (
                value == self.best_metric and not _beats(tie_breaker, self.best_tie_breaker)
            ):
                return False
        self.best_metric_name, self.best_metric, self.best_tie_breaker = name, value, tie_breaker
        return True

    def extra(self, episode_index: List[int], reward_stats: Optional[Dict[str, float]]) -> Dict[str, Any]:
        return {
            "best_metric_name": self.best_metric_name,
            "best_tie_breaker": self.best_tie_breaker,
            "elapsed": self.elapsed,
            "recent_returns": list(self.recent_returns),
            "recent_successes": list(self.recent_successes),
            "episode_index": list(episode_index),
            "reward_statistics": reward_stats,
        }

    @classmethod
    def from_checkpoint(cls, checkpoint: Mapping, window: int) -> "RunState":
        extra = checkpoint["trainer"]
        return cls(
            global_step=checkpoint["global_step"],
            updates=checkpoint["updates"],
            best_metric=checkpoint["best_metric"],
            best_metric_name=extra["best_metric_name"],
            # Checkpoints written before the tie-breaker existed have none: any tie then replaces the best.
            best_tie_breaker=extra.get("best_tie_breaker"),
            elapsed=extra["elapsed"],
            recent_returns=deque(extra["recent_returns"], maxlen=window),
            recent_successes=deque(extra["recent_successes"], maxlen=window),
        )


def _beats(tie_breaker: Optional[float], best: Optional[float]) -> bool:
    if tie_breaker is None:
        return False
    return best is None or tie_breaker > best


# What asks a run to stop: Ctrl-C, a kill/stop by SLURM, systemd or a container runtime, and the
# signals SLURM sends ahead of a time limit or preemption (``--signal=USR1@90``).
STOP_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGTERM", "SIGINT", "SIGUSR1", "SIGUSR2") if hasattr(signal, name)
)


class StopSignal:
    """Turns the first stop signal (``STOP_SIGNALS``) into a stop request; a second one raises
    ``KeyboardInterrupt``."""

    def __init__(self):
        self.signum: Optional[int] = None
        self._previous = {}

    def __enter__(self) -> "StopSignal":
        for signum in STOP_SIGNALS:
            self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, exc_type, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        previous = self._previous.get(self.signum)
        if exc_type is None and callable(previous) and previous is not signal.default_int_handler:
            # The checkpoint is written: now the handler this one displaced sees the signal too, e.g.
            # submitit's, which requeues a SLURM job on SIGUSR2 (it then continues from latest.pt).
            previous(self.signum, None)

    def _handle(self, signum, frame) -> None:
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum
        tqdm.write(
            f"{signal.Signals(signum).name} received: stopping after the current rollout/update "
            "and writing checkpoints/latest.pt (signal again to stop without it)",
            file=sys.stderr,
        )

    @property
    def requested(self) -> bool:
        return self.signum is not None


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
