"""Non-finite observations and rewards from an env (a physics blow-up) end that episode, not the run.

A NaN or Inf that reaches the rollout buffer poisons the advantages, the loss and then every
parameter, and the run dies much later with a misleading error. ``NonFiniteGuard`` sits inside
each env worker, next to the env: on a step whose observation or reward is not finite it
truncates the episode there (the last finite observation, reward 0, ``truncated=True``, so the
value is bootstrapped from a sane state), marks the step's info with ``nonfinite`` (counted by the
rollout as ``rollout/nonfinite_episodes``) and, given a directory, writes what is needed to
inspect and replay the blow-up: the episode's reset seed and options, its actions, and the
simulator state (PyBullet's ``saveBullet``) when the env has one.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import gymnasium as gym
import numpy as np

NONFINITE_KEY = "nonfinite"  # info entry of the step that was cut: the path of its dump (or True)


def all_finite(value: Any) -> bool:
    """Whether every number of an observation (an array or a dict of arrays) is finite. Checked on
    every step, so cheaply: integer arrays are always finite, and a plain loop with one
    ``isfinite(...).all()`` per float array (no ``np.errstate``, which alone costs microseconds)."""
    for item in value.values() if isinstance(value, dict) else (value,):
        if isinstance(item, dict):
            if not all_finite(item):
                return False
            continue
        array = np.asarray(item)
        if array.dtype.kind in "fc" and not np.isfinite(array).all():
            return False
    return True


class NonFiniteGuard(gym.Wrapper):
    """Truncates an episode at its first non-finite observation or reward; see the module docstring."""

    def __init__(self, env: gym.Env, dump_dir: Optional[str] = None):
        super().__init__(env)
        self.dump_dir = None if dump_dir is None else Path(dump_dir)
        self.nonfinite_episodes = 0
        self._last_obs = None
        self._reset_args: Dict[str, Any] = {}
        self._actions: List[np.ndarray] = []  # this episode's actions (copies), for the replay recipe

    def reset(self, *, seed: Optional[int] = None, options: Optional[dict] = None):
        obs, info = self.env.reset(seed=seed, options=options)
        self._last_obs, self._reset_args, self._actions = obs, {"seed": seed, "options": options}, []
        return obs, info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._actions.append(np.array(action))
        if all_finite(obs) and np.isfinite(reward):
            self._last_obs = obs
            return obs, reward, terminated, truncated, info
        self.nonfinite_episodes += 1
        dump = self._dump(obs, reward)
        return self._last_obs, 0.0, False, True, {**info, NONFINITE_KEY: str(dump) if dump else True}

    def _dump(self, obs, reward) -> Optional[Path]:
        """Write the replay recipe (and the simulator state, when there is one); returns the JSON's path."""
        if self.dump_dir is None:
            return None
        self.dump_dir.mkdir(parents=True, exist_ok=True)
        stem = self.dump_dir / f"pid{os.getpid()}-{time.strftime('%Y%m%d-%H%M%S')}-{self.nonfinite_episodes}"
        record = {
            "reset": self._reset_args,
            "actions": [np.asarray(a, dtype=np.float64).tolist() for a in self._actions],
            "reward": repr(float(reward)) if np.ndim(reward) == 0 else repr(reward),
            "nonfinite_observation": not all_finite(obs),
            "replay": "env.reset(**record['reset']); then env.step(a) for a in record['actions']",
        }
        sim = getattr(self.env.unwrapped, "sim", None)
        if sim is not None and hasattr(sim, "client"):
            bullet = stem.with_suffix(".bullet")
            sim.client.saveBullet(str(bullet))
            record["simulator_state"] = bullet.name
        path = stem.with_suffix(".json")
        path.write_text(json.dumps(record, indent=1, default=_plain))
        return path


def _plain(value: Any) -> Any:
    """JSON for the numpy values reset options may hold."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return repr(value)
