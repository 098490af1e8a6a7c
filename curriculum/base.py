"""What every start-state curriculum shares: assigning starts to the env workers, checkpointing them.

A subclass decides the starts (``new_starts``), learns from finished episodes (``observe``) and
reports (``curriculum_metrics``); this base class hands each worker a queue of
``starts_per_rollout`` starts after every rollout (``agents/start_states.py`` applies one per reset,
in turn), splits finished episodes into curriculum and full-distribution ones, and saves each
worker's current start and queue so a resumed run replays the in-flight episodes from the starts
they began with and continues the queues.

Why a queue and not one start per worker: with one, every episode a worker plays in a rollout
begins from the same start, so an update sees only ``num_envs`` distinct starts (four by default),
and a worker given an easy start fills the rollout with many short successful episodes of it.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Mapping, Optional

import numpy as np
from omegaconf import DictConfig, OmegaConf

from agents.config import GROUP_SCHEMAS
from agents.registry import load_target
from agents.start_states import DEFAULT_START_ID, StartQueue, assignment_from_state, assignment_state
from agents.trainer import Trainer, TrainerPlugin

CURRICULUM_STREAM = 0xC0  # spawn key of a curriculum's RNG: it shares no stream with the envs or torch


def start_sampler(env_cfg: DictConfig) -> Callable[[float, np.random.Generator], Dict[str, Any]]:
    """``(difficulty, rng) -> reset options`` for the configured env; a clear error if it has none."""
    target = GROUP_SCHEMAS["env"][env_cfg.name].curriculum_starts
    if target is None:
        raise ValueError(f"env={env_cfg.name} has no near-goal starts (start_at_difficulty); use curriculum=none")
    make_start = load_target(target)
    task_config = OmegaConf.to_object(env_cfg.kwargs)
    return lambda difficulty, rng: make_start(task_config, difficulty, rng)


class StartCurriculum(TrainerPlugin):
    """Base class of curricula; subclasses implement the four methods at the bottom."""

    name = "curriculum"

    def __init__(self, cfg: DictConfig, train_cfg: DictConfig):
        self.cfg, self.train_cfg = cfg, train_cfg
        self.rng = np.random.default_rng(np.random.SeedSequence(train_cfg.seed, spawn_key=(CURRICULUM_STREAM,)))
        self.next_id = 0
        self.restored_starts: Optional[Dict[str, List[Any]]] = None  # on resume: each worker's current/next start
        self.last_rollout: Dict[str, float] = {}
        self._envs = None

    # ------------------------------------------------------------------ plugin hooks
    def after_build(self, trainer: Trainer) -> None:
        """Restart every env's current episode from a curriculum start (the same one on resume, as
        ``restore`` restarts episodes), then assign each worker its next start."""
        self._envs = envs = trainer.envs.unwrapped
        saved = self.restored_starts
        envs.set_attr("assigned_start", saved["current"] if saved else self.start_queues(envs.num_envs))
        envs.set_attr("episode_seeding_next", list(envs.get_attr("episode_seeding_current")))
        trainer.collector.obs, _ = trainer.envs.reset()
        if saved:
            envs.set_attr("assigned_start", [assignment_from_state(s) for s in saved["next"]])

    def after_collect(self, trainer: Trainer, stats: Dict[str, list]) -> None:
        ended = stats["episodes"]
        curriculum = [e for e in ended if e["start_id"] is not None and e["start_id"] != DEFAULT_START_ID]
        full = [e for e in ended if e["start_id"] == DEFAULT_START_ID]
        self.last_rollout = {
            "curriculum/episodes": float(len(curriculum)),
            "curriculum/full_distribution_episodes": float(len(full)),
        }
        if full:
            success = float(np.mean([bool(e["success"]) for e in full]))
            self.last_rollout["curriculum/full_distribution_success"] = success
        self.observe(curriculum)
        self._envs.set_attr("assigned_start", self.start_queues(self._envs.num_envs))
        self.last_rollout["curriculum/rejected_starts"] = float(sum(self._envs.get_attr("rejected_starts")))

    def metrics(self, trainer: Trainer) -> Dict[str, float]:
        return {**self.curriculum_metrics(), **self.last_rollout}

    def state_dict(self) -> Dict[str, Any]:
        starts = {
            "current": list(self._envs.get_attr("current_start")),
            "next": [assignment_state(a) for a in self._envs.get_attr("assigned_start")],
        }
        return {
            "next_id": self.next_id,
            "rng": self.rng.bit_generator.state,
            "starts": starts,
            "schedule": self.schedule_state(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.next_id = int(state["next_id"])
        self.rng.bit_generator.state = state["rng"]
        self.restored_starts = {key: list(value) for key, value in state["starts"].items()}
        self.load_schedule_state(state["schedule"])

    def start_queues(self, num_envs: int) -> List[StartQueue]:
        """Each env's queue of ``starts_per_rollout`` starts from ``new_starts``, env 0's first."""
        per_env = int(self.cfg.starts_per_rollout)
        starts = self.new_starts(num_envs * per_env)
        return [StartQueue(starts[i * per_env : (i + 1) * per_env]) for i in range(num_envs)]

    # ------------------------------------------------------------------ helpers for subclasses
    def take_id(self) -> int:
        start_id, self.next_id = self.next_id, self.next_id + 1
        return start_id

    def full_distribution(self) -> bool:
        """True for a start drawn from the task's own distribution (``full_distribution_fraction``)."""
        return bool(self.rng.random() < self.cfg.full_distribution_fraction)

    # ------------------------------------------------------------------ to implement
    def new_starts(self, count: int) -> List[Any]:
        """One entry per env: ``(start id, reset options)``, or None for the task's own distribution."""
        raise NotImplementedError

    def observe(self, episodes: List[dict]) -> None:
        """Learn from this rollout's finished curriculum episodes (records with ``start_id``, ``success``)."""
        raise NotImplementedError

    def curriculum_metrics(self) -> Dict[str, float]:
        raise NotImplementedError

    def schedule_state(self) -> Dict[str, Any]:
        raise NotImplementedError

    def load_schedule_state(self, state: Mapping[str, Any]) -> None:
        raise NotImplementedError
