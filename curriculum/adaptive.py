"""Adaptive difficulty: starts near the goal, moved outward while the policy succeeds.

One scalar ``difficulty`` in [min_difficulty, max_difficulty] decides how far from the goal the
curriculum's starts lie (the env's ``start_at_difficulty``: 0 is the goal, 1 the task's own start
distribution). After each rollout the success rate over the last ``window`` curriculum episodes
moves it: above ``upper`` it rises by ``step``, below ``lower`` it falls by ``step`` (IndustReal's
sampling-based curriculum uses 0.75 / 0.5), and the window restarts. A fraction
``full_distribution_fraction`` of the starts come from the task's own distribution throughout, so
the policy never forgets the real task, and their success is reported apart.

The starts reach the env workers through ``agents/start_states.py`` (every reset, automatic ones
included); each worker's in-flight start, the difficulty, the window and the RNG are checkpointed,
so a resumed run continues the curriculum exactly.
"""

from __future__ import annotations

import importlib
from collections import deque
from typing import Any, Callable, Dict, List, Mapping, Optional

import numpy as np
from omegaconf import DictConfig, OmegaConf

from agents.config import GROUP_SCHEMAS
from agents.start_states import DEFAULT_START_ID
from agents.trainer import Trainer, TrainerPlugin

CURRICULUM_STREAM = 0xC0  # spawn key of the curriculum's RNG: it shares no stream with the envs or torch
BUCKETS = 4  # success is logged per quarter of the difficulty range


def start_sampler(env_cfg: DictConfig) -> Callable[[float, np.random.Generator], Dict[str, Any]]:
    """``(difficulty, rng) -> reset options`` for the configured env; a clear error if it has none."""
    target = GROUP_SCHEMAS["env"][env_cfg.name].curriculum_starts
    if target is None:
        raise ValueError(f"env={env_cfg.name} has no near-goal starts (start_at_difficulty); use curriculum=none")
    module, name = target.split(":")
    make_start = getattr(importlib.import_module(module), name)
    task_config = OmegaConf.to_object(env_cfg.kwargs)
    return lambda difficulty, rng: make_start(task_config, difficulty, rng)


class AdaptiveCurriculum(TrainerPlugin):
    """``curriculum=adaptive``: see the module docstring; options are ``AdaptiveCurriculumConfig``'s."""

    name = "curriculum"

    def __init__(self, cfg: DictConfig, train_cfg: DictConfig):
        self.cfg = cfg
        self.sample_start = start_sampler(train_cfg.env)
        self.rng = np.random.default_rng(np.random.SeedSequence(train_cfg.seed, spawn_key=(CURRICULUM_STREAM,)))
        self.difficulty = float(cfg.initial_difficulty)
        self.window: deque = deque(maxlen=cfg.window)
        self.next_id = 0
        self.start_difficulty: Dict[int, float] = {}  # id -> difficulty of the starts that may still be running
        self.restored_starts: Optional[Dict[str, List[Any]]] = None  # on resume: each worker's current/next start
        self.last_rollout: Dict[str, float] = {}
        self._envs = None

    # ------------------------------------------------------------------ hooks
    def after_build(self, trainer: Trainer) -> None:
        """Restart every env's current episode from a curriculum start (the same one on resume, as
        ``restore`` restarts episodes), then assign each worker its next start."""
        self._envs = envs = trainer.envs.unwrapped
        saved = self.restored_starts
        envs.set_attr("assigned_start", saved["current"] if saved else self._new_starts(envs.num_envs))
        envs.set_attr("episode_seeding_next", list(envs.get_attr("episode_seeding_current")))
        trainer.collector.obs, _ = trainer.envs.reset()
        if saved:
            envs.set_attr("assigned_start", saved["next"])

    def after_collect(self, trainer: Trainer, stats: Dict[str, list]) -> None:
        ended = stats["episodes"]
        curriculum = [e for e in ended if e["start_id"] is not None and e["start_id"] != DEFAULT_START_ID]
        full = [e for e in ended if e["start_id"] == DEFAULT_START_ID]
        self.last_rollout = self._rollout_metrics(curriculum, full)
        self.window.extend(float(bool(e["success"])) for e in curriculum)
        self._adapt()
        envs = trainer.envs.unwrapped
        envs.set_attr("assigned_start", self._new_starts(envs.num_envs))
        self.last_rollout["curriculum/rejected_starts"] = float(sum(envs.get_attr("rejected_starts")))

    def metrics(self, trainer: Trainer) -> Dict[str, float]:
        return {
            "curriculum/difficulty": self.difficulty,
            "curriculum/reached_full_distribution": float(self.difficulty >= self.cfg.max_difficulty),
            **self.last_rollout,
        }

    # ------------------------------------------------------------------ schedule
    def _adapt(self) -> None:
        """Move the difficulty once the window is full; restart the window after a move."""
        cfg = self.cfg
        if len(self.window) < cfg.window:
            return
        success = float(np.mean(self.window))
        if success > cfg.upper:
            self.difficulty = min(cfg.max_difficulty, self.difficulty + cfg.step)
            self.window.clear()
        elif success < cfg.lower:
            self.difficulty = max(cfg.min_difficulty, self.difficulty - cfg.step)
            self.window.clear()

    def _new_starts(self, count: int) -> List[Any]:
        """One start per env: the task's own distribution (None) with ``full_distribution_fraction``,
        else a fresh start at the current difficulty."""
        starts = []
        for _ in range(count):
            if self.rng.random() < self.cfg.full_distribution_fraction:
                starts.append(None)
                continue
            start_id, self.next_id = self.next_id, self.next_id + 1
            self.start_difficulty[start_id] = self.difficulty
            starts.append((start_id, self.sample_start(self.difficulty, self.rng)))
        self._forget_old_starts()
        return starts

    def _forget_old_starts(self, keep: int = 1024) -> None:
        for start_id in [i for i in self.start_difficulty if i < self.next_id - keep]:
            del self.start_difficulty[start_id]

    def _rollout_metrics(self, curriculum: List[dict], full: List[dict]) -> Dict[str, float]:
        """Success of this rollout's curriculum episodes per difficulty bucket, and of the full-distribution ones."""
        metrics = {
            "curriculum/episodes": float(len(curriculum)),
            "curriculum/full_distribution_episodes": float(len(full)),
        }
        if full:
            metrics["curriculum/full_distribution_success"] = float(np.mean([bool(e["success"]) for e in full]))
        buckets: Dict[int, List[float]] = {}
        for e in curriculum:
            difficulty = self.start_difficulty.get(e["start_id"], self.difficulty)
            bucket = min(BUCKETS - 1, int(difficulty * BUCKETS))
            buckets.setdefault(bucket, []).append(float(bool(e["success"])))
        for bucket, successes in buckets.items():
            low, high = bucket / BUCKETS, (bucket + 1) / BUCKETS
            metrics[f"curriculum/success_difficulty_{low:.2f}-{high:.2f}"] = float(np.mean(successes))
        return metrics

    # ------------------------------------------------------------------ state
    def state_dict(self) -> Dict[str, Any]:
        return {
            "difficulty": self.difficulty,
            "window": list(self.window),
            "next_id": self.next_id,
            "start_difficulty": dict(self.start_difficulty),
            "rng": self.rng.bit_generator.state,
            "starts": {
                "current": list(self._envs.get_attr("current_start")),
                "next": list(self._envs.get_attr("assigned_start")),
            },
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.difficulty, self.next_id = float(state["difficulty"]), int(state["next_id"])
        self.window = deque(state["window"], maxlen=self.cfg.window)
        self.start_difficulty = {int(k): float(v) for k, v in state["start_difficulty"].items()}
        self.rng.bit_generator.state = state["rng"]
        self.restored_starts = {key: list(value) for key, value in state["starts"].items()}
