"""Reverse curriculum generation (Florensa et al. 2017): starts grown backward from the goal.

New starts come from short random walks ("Brownian motion") in the simulator: a driver-side copy
of the env is reset to a parent start and driven by ``brownian_steps`` random actions; then the
objects the robot does not hold are moved too (``object_walk_scale``, ``Task.perturb_start``: the
robot alone rarely pushes a packed box far, so without it every start keeps the arrangement at its
goal); the state it ends in (``get_start_state()``) is the new start, checked by the env's own
start tests (a walk the env rejects is counted and dropped). The first parent is the goal
(``start_at_difficulty(..., 0)``). Each start's success rate is measured from the episodes that
began from it; a start is *good* when that rate lies in [``r_min``, ``r_max``] after
``min_visits`` episodes: hard enough to teach, easy enough to be solved. Parents are drawn from
the good starts, or while there are none from the *deepest* mastered ones (most walks from the
goal), so the frontier moves outward as the policy improves; ``replay_fraction`` of the starts
are old ones (a replay buffer against forgetting) and ``full_distribution_fraction`` come from
the task's own distribution throughout.
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional

import numpy as np
from omegaconf import DictConfig

from agents.training_envs import env_kwargs, make_env
from curriculum.base import StartCurriculum, start_sampler

WALK_ATTEMPTS = 5  # walks tried per new start before the parent itself is used again


class ReverseCurriculum(StartCurriculum):
    """``curriculum=reverse``: see the module docstring; options are ``ReverseCurriculumConfig``'s."""

    def __init__(self, cfg: DictConfig, train_cfg: DictConfig):
        super().__init__(cfg, train_cfg)
        self.goal = start_sampler(train_cfg.env)(0.0, self.rng)
        # The walker keeps going at the goal (a walk starts there) and is only ever reset explicitly.
        kwargs = {**env_kwargs(train_cfg.env), "terminate_on_success": False}
        self.walker = make_env(train_cfg.env.id, train_cfg.env.max_episode_steps, **kwargs)
        self.starts: Dict[int, Dict[str, Any]] = {}  # id -> {"options", "depth", "visits", "successes"}
        self.invalid_walks = 0
        self.new_this_rollout = 0

    # ------------------------------------------------------------------ starts
    def new_starts(self, count: int) -> List[Any]:
        """Per env: the task's own distribution, an old start (replay), or a walk from a good start."""
        self.new_this_rollout = 0
        starts = []
        for _ in range(count):
            if self.full_distribution():
                starts.append(None)
            elif self.starts and self.rng.random() < self.cfg.replay_fraction:
                start_id = int(self.rng.choice(list(self.starts)))
                starts.append((start_id, self.starts[start_id]["options"]))
            else:
                starts.append(self._grow())
        return starts

    def _grow(self) -> Any:
        """A new start by a random walk from a random good start; while there is none, from the deepest
        starts the policy already masters (success above ``r_max``: the frontier lies beyond them), and
        at first from the goal. (Florensa et al. walk from good starts only; when every start near the
        goal is mastered at once, as here, that would keep the walks at the goal for ever. Walking from
        any mastered start instead grows a random tree whose depth, walks from the goal, grows only
        with the logarithm of its size: 2,000 starts lay a median 1 mm from the packed goal.)"""
        parents = self.good_starts() or self._deepest_mastered_starts()
        parent = self.starts[int(self.rng.choice(parents))] if parents else {"options": self.goal, "depth": 0}
        for _ in range(WALK_ATTEMPTS):
            options = self._walk(parent["options"])
            if options is not None:
                break
        else:  # no valid walk: the parent itself again, never a default start
            options = parent["options"]
        start_id = self.take_id()
        self.starts[start_id] = {"options": options, "depth": parent["depth"] + 1, "visits": 0, "successes": 0}
        self.new_this_rollout += 1
        self._forget()
        return start_id, options

    def _walk(self, options: Dict[str, Any]) -> Optional[Dict[str, Any]]:
        """Where ``brownian_steps`` random actions take the walker from ``options``, or None (counted in
        ``invalid_walks``) when the state it ends in is not a valid start (pushed into a wall, say)."""
        seed = int(self.rng.integers(2**31))
        self.walker.reset(seed=seed, options=options)
        for _ in range(self.cfg.brownian_steps):
            action = self.rng.uniform(-1.0, 1.0, self.walker.action_space.shape) * self.cfg.walk_action_scale
            _, _, _, truncated, _ = self.walker.step(action.astype(np.float32))
            if truncated:
                break
        env = self.walker.unwrapped
        state = env.perturb_start_state(env.get_start_state(), self.rng, self.cfg.object_walk_scale)
        try:
            self.walker.reset(seed=seed, options=state)  # the env's own start checks decide validity
        except ValueError:
            self.invalid_walks += 1
            return None
        return state

    def _forget(self) -> None:
        """Keep at most ``max_starts``: drop the oldest starts that are not good."""
        excess = len(self.starts) - self.cfg.max_starts
        if excess <= 0:
            return
        good = set(self.good_starts())
        for start_id in [i for i in sorted(self.starts) if i not in good][:excess]:
            del self.starts[start_id]

    def _mastered_starts(self) -> List[int]:
        cfg = self.cfg
        return [
            i
            for i, s in self.starts.items()
            if s["visits"] >= cfg.min_visits and s["successes"] / s["visits"] > cfg.r_max
        ]

    def _deepest_mastered_starts(self) -> List[int]:
        mastered = self._mastered_starts()
        if not mastered:
            return []
        deepest = max(self.starts[i]["depth"] for i in mastered)
        return [i for i in mastered if self.starts[i]["depth"] == deepest]

    def good_starts(self) -> List[int]:
        cfg = self.cfg
        return [
            i
            for i, s in self.starts.items()
            if s["visits"] >= cfg.min_visits and cfg.r_min <= s["successes"] / s["visits"] <= cfg.r_max
        ]

    # ------------------------------------------------------------------ learning, reporting, state
    def observe(self, episodes: List[dict]) -> None:
        for e in episodes:
            start = self.starts.get(e["start_id"])
            if start is not None:  # a start forgotten while its episode ran is not counted
                start["visits"] += 1
                start["successes"] += int(bool(e["success"]))

    def curriculum_metrics(self) -> Dict[str, float]:
        visited = [s for s in self.starts.values() if s["visits"]]
        return {
            "curriculum/starts": float(len(self.starts)),
            "curriculum/good_starts": float(len(self.good_starts())),
            "curriculum/new_starts": float(self.new_this_rollout),
            "curriculum/invalid_walks": float(self.invalid_walks),
            "curriculum/max_depth": float(max((s["depth"] for s in self.starts.values()), default=0)),
            "curriculum/start_success": float(np.mean([s["successes"] / s["visits"] for s in visited]))
            if visited
            else float("nan"),
        }

    def schedule_state(self) -> Dict[str, Any]:
        return {"starts": {i: dict(s) for i, s in self.starts.items()}, "invalid_walks": self.invalid_walks}

    def load_schedule_state(self, state: Mapping[str, Any]) -> None:
        self.starts = {int(i): dict(s) for i, s in state["starts"].items()}
        self.invalid_walks = int(state["invalid_walks"])
