"""A Pendulum whose process dies once, mid-episode: a Ray rollout worker lost in the middle of a segment.

``gymnasium.make("crashing_env:CrashOncePendulum-v0", marker=..., crash_at_step=N)`` imports this
module (in the Ray worker too: tests/test_ray_rollout.py puts tests/ on the workers' PYTHONPATH).
The first env of any process to reach its N-th step creates ``marker`` and exits the process at
once; the marker being there, no env crashes again (the restarted worker goes on).
"""

from __future__ import annotations

import os

import gymnasium as gym
from gymnasium.envs.classic_control.pendulum import PendulumEnv

CRASH_EXIT_STATUS = 3


class CrashOncePendulum(PendulumEnv):
    def __init__(self, marker: str, crash_at_step: int, **kwargs):
        super().__init__(**kwargs)
        self.marker, self.crash_at_step, self.steps = marker, crash_at_step, 0

    def step(self, action):
        self.steps += 1
        if self.steps == self.crash_at_step and _first_to_create(self.marker):
            os._exit(CRASH_EXIT_STATUS)
        return super().step(action)


def _first_to_create(path: str) -> bool:
    """Create ``path``; True only for the one process that created it (``O_EXCL`` is atomic)."""
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL))
        return True
    except FileExistsError:
        return False


gym.register("CrashOncePendulum-v0", entry_point=CrashOncePendulum)
