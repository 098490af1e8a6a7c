"""Demonstration curriculum: starts taken from scripted demonstrations, from their end backward.

The idea of "Backplay" (Resnick et al. 2018) and of learning Montezuma's Revenge from a single
demonstration (Salimans and Chen 2018): begin the episodes near the end of a successful
demonstration and move the starts back along it as the policy succeeds, until they are the
demonstration's own first states.

Why it exists: the adaptive curriculum's near-goal starts (the env's ``start_at_difficulty``)
interpolate between the goal and the task's starts. On packed objects that means occluders pushed in
part of the way with the held box already low, and a policy that masters them has not learned what the
task's own starts need (an occluder pushed in a few millimetres is pushed back differently from one that
blocks the slot; docs/experiments/packed_objects.md). A demonstration's states lie on a path that
works from a real start: the held box tilted behind an occluder, the occluder half pushed back, the
slot free and the box above it.

When training starts, the env's scripted controller (the env schema's ``demonstrator``, e.g.
``envs.scripted_packing.ScriptedPackingPolicy``) plays ``demonstrations`` episodes from the task's own
starts, seeded from the run seed. Each successful one keeps its states ``s_0 .. s_T``
(``get_start_state()`` before each action and after the last, velocities included: restarted at rest, a
state near the end looked to the cloned policy like the first state of an episode, and it failed from
there); failed ones are dropped. The adaptive
schedule (``AdaptiveCurriculum``: same thresholds, step, window and bounds) moves a difficulty ``d``,
and a start is a random demonstration's state ``s_i`` with ``i = round((1 - d') T)``, ``d'`` uniform in
``[d - step, d]`` (the band the schedule has just reached, as Backplay samples a window). So ``d = 0``
is the solved final state and ``d = 1`` the demonstration's first state, itself a start of the task's
own distribution. With ``task_starts_at_full_difficulty`` a start at ``d = 1`` is instead a fresh draw from
the task's own distribution (the env's ``start_at_difficulty(1.0)``), counted in the schedule's window like
any curriculum start: at the last level a policy otherwise trains on the demonstrations' few dozen first
states (90% of its episodes with the default mix) and generalises to the task's other starts slowly
(docs/experiments/packed_objects.md); failing the task's starts drops the difficulty back onto the
demonstrations. The demonstrations depend only on the run seed and the env config, so a resumed run
records the same ones again and checkpoints keep only the schedule.
"""

from __future__ import annotations

import copy
from typing import Any, Callable, Dict

import numpy as np
from omegaconf import DictConfig

from agents.demonstrations import record_demonstrations
from curriculum.adaptive import AdaptiveCurriculum
from curriculum.base import start_sampler


class DemoCurriculum(AdaptiveCurriculum):
    """``curriculum=demo``: see the module docstring; options are ``DemoCurriculumConfig``'s."""

    def start_sampler(self, train_cfg: DictConfig) -> Callable[[float, np.random.Generator], Dict[str, Any]]:
        """Records the demonstrations; the adaptive schedule's difficulty then picks states along them."""
        recorded, self.failed_demonstrations = record_demonstrations(train_cfg, self.cfg.demonstrations)
        self.demonstrations = [demonstration.states for demonstration in recorded]
        self.task_start = start_sampler(train_cfg.env) if self.cfg.task_starts_at_full_difficulty else None
        return self.start_at

    def start_at(self, difficulty: float, rng: np.random.Generator) -> Dict[str, Any]:
        """A start along a demonstration, or the task's own at difficulty 1 with ``task_starts_at_full_difficulty``."""
        if self.task_start is not None and difficulty >= 1.0:
            return self.task_start(1.0, rng)
        return self.start_along_a_demonstration(difficulty, rng)

    def start_along_a_demonstration(self, difficulty: float, rng: np.random.Generator) -> Dict[str, Any]:
        """The state ``round((1 - d') T)`` of a random demonstration, ``d'`` uniform in [d - step, d]."""
        demonstration = self.demonstrations[int(rng.integers(len(self.demonstrations)))]
        lowest = max(self.cfg.min_difficulty, difficulty - self.cfg.step)
        drawn = float(rng.uniform(lowest, difficulty)) if difficulty > lowest else difficulty
        index = int(round((1.0 - drawn) * (len(demonstration) - 1)))
        return copy.deepcopy(demonstration[index])

    def curriculum_metrics(self) -> Dict[str, float]:
        return {
            **super().curriculum_metrics(),
            "curriculum/demonstrations": float(len(self.demonstrations)),
            "curriculum/failed_demonstrations": float(self.failed_demonstrations),
        }
