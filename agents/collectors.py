"""The rollout backend a run uses (``rollout.backend``): where its envs step and who collects rollouts.

``local`` (the default) is the vector env of ``agents.training_envs.make_training_envs`` with
``agents.rollout.RolloutCollector``. ``ray`` is Ray actors (``agents/ray_rollout.py``) behind the
same two objects: an env facade with the vector env's ``num_envs``, single spaces,
``unwrapped.set_attr``/``get_attr``, ``reset`` and ``close`` (what the trainer, checkpoints and
curricula use), and a collector with ``collect(num_steps)``, ``timing`` and ``obs``.

The trainer builds the envs first (the model is built from their spaces), then the collector.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Optional

import torch
from omegaconf import DictConfig

from agents.buffer import RolloutBuffer
from agents.rollout import RolloutCollector
from agents.training_envs import make_training_envs


def make_rollout_envs(cfg: DictConfig, nonfinite_dir: Optional[Path] = None):
    """The training envs of ``cfg``: the local vector env, or ``RayEnvs`` over Ray rollout workers.
    ``nonfinite_dir``: where local env workers write the replay of a physics blow-up (agents/env_guards.py)."""
    if cfg.rollout.backend == "ray":
        return _ray_rollout().RayEnvs(cfg)
    return make_training_envs(cfg, nonfinite_dir)


def make_collector(cfg: DictConfig, envs, model: torch.nn.Module, buffer: RolloutBuffer):
    """The collector that fills ``buffer`` from ``envs`` (as ``make_rollout_envs`` built them)."""
    if cfg.rollout.backend == "ray":
        return _ray_rollout().RayRolloutCollector(envs, model, buffer)
    return RolloutCollector(envs, model, buffer, seed=cfg.seed)


def _ray_rollout() -> ModuleType:
    """``agents.ray_rollout``, imported only for ``rollout.backend=ray`` (ray is an optional extra)."""
    try:
        import ray  # noqa: F401
    except ImportError:
        raise ImportError("rollout.backend=ray needs the ray package: pip install -e '.[ray]'") from None
    from agents import ray_rollout

    return ray_rollout
