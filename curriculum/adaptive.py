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

from collections import deque
from typing import Any, Callable, Dict, List, Mapping

import numpy as np
from omegaconf import DictConfig

from curriculum.base import StartCurriculum, start_sampler

BUCKETS = 4  # success is logged per quarter of the difficulty range


class AdaptiveCurriculum(StartCurriculum):
    """``curriculum=adaptive``: see the module docstring; options are ``AdaptiveCurriculumConfig``'s."""

    def __init__(self, cfg: DictConfig, train_cfg: DictConfig):
        super().__init__(cfg, train_cfg)
        self.sample_start = self.start_sampler(train_cfg)
        self.difficulty = float(cfg.initial_difficulty)
        self.window: deque = deque(maxlen=cfg.window)
        self.start_difficulty: Dict[int, float] = {}  # id -> difficulty of the starts that may still be running

    def start_sampler(self, train_cfg: DictConfig) -> Callable[[float, np.random.Generator], Dict[str, Any]]:
        """``(difficulty, rng) -> reset options``: the env's near-goal starts (``start_at_difficulty``)."""
        return start_sampler(train_cfg.env)

    def new_starts(self, count: int) -> List[Any]:
        """The task's own distribution with ``full_distribution_fraction``, else a fresh start at the
        current difficulty."""
        starts = []
        for _ in range(count):
            if self.full_distribution():
                starts.append(None)
                continue
            start_id = self.take_id()
            self.start_difficulty[start_id] = self.difficulty
            starts.append((start_id, self.sample_start(self.difficulty, self.rng)))
        for old in [i for i in self.start_difficulty if i < self.next_id - 1024]:
            del self.start_difficulty[old]
        return starts

    def observe(self, episodes: List[dict]) -> None:
        self.last_rollout.update(self._bucket_success(episodes))
        self.window.extend(float(bool(e["success"])) for e in episodes)
        self._adapt()

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

    def _bucket_success(self, episodes: List[dict]) -> Dict[str, float]:
        """Success of this rollout's curriculum episodes per quarter of the difficulty range."""
        buckets: Dict[int, List[float]] = {}
        for e in episodes:
            difficulty = self.start_difficulty.get(e["start_id"], self.difficulty)
            buckets.setdefault(min(BUCKETS - 1, int(difficulty * BUCKETS)), []).append(float(bool(e["success"])))
        return {
            f"curriculum/success_difficulty_{b / BUCKETS:.2f}-{(b + 1) / BUCKETS:.2f}": float(np.mean(v))
            for b, v in buckets.items()
        }

    def curriculum_metrics(self) -> Dict[str, float]:
        return {
            "curriculum/difficulty": self.difficulty,
            "curriculum/reached_full_distribution": float(self.difficulty >= self.cfg.max_difficulty),
        }

    def schedule_state(self) -> Dict[str, Any]:
        return {
            "difficulty": self.difficulty,
            "window": list(self.window),
            "start_difficulty": dict(self.start_difficulty),
        }

    def load_schedule_state(self, state: Mapping[str, Any]) -> None:
        self.difficulty = float(state["difficulty"])
        self.window = deque(state["window"], maxlen=self.cfg.window)
        self.start_difficulty = {int(k): float(v) for k, v in state["start_difficulty"].items()}
