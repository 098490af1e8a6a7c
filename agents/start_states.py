"""Start states assigned to env workers: how a curriculum reaches every reset, the automatic ones too.

Gymnasium's vector envs reset a finished sub-environment themselves, without reset options, so
a start chosen by the trainer cannot travel with the reset call. ``AssignedStart`` sits inside
each worker instead: it holds the start assigned to that worker (an id and the env's reset
options, e.g. ``{"peg_pose": [...]}``) and applies it at every reset until another is assigned.
The driver assigns with ``envs.unwrapped.set_attr("assigned_start", [(id, options), ...])`` (one
per env; ``None`` for the env's own start distribution), or with a ``StartQueue`` per env: a list of
such entries taken one per reset, in turn, so consecutive episodes of a worker begin from
different starts (the queue starts over when a rollout has more episodes than entries).

Every step's ``info`` carries ``start_id`` (the id of the start the running episode began from;
-1 for the env's own distribution; the whole start is ``current_start``), so the trainer can
attribute each finished episode to its start. A start the env rejects (its ``reset`` raises
``ValueError``) is never replaced silently: the episode begins from the env's own distribution
with ``start_id = -1``, its reset info carries ``start_rejected`` (the error message) and
``rejected_starts`` counts them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

import gymnasium as gym

DEFAULT_START_ID = -1

Start = Tuple[int, Dict[str, Any]]  # (start id, reset options)


@dataclass
class StartQueue:
    """One worker's starts for its coming episodes: entry ``position`` (modulo the length) is next."""

    starts: List[Optional[Start]]
    position: int = 0

    def __post_init__(self):
        if not self.starts:
            raise ValueError("a StartQueue needs at least one entry (a start, or None for the env's own)")

    def take(self) -> Optional[Start]:
        start = self.starts[self.position % len(self.starts)]
        self.position += 1
        return start

    def to_state(self) -> Dict[str, Any]:
        """Plain lists and numbers, as checkpoints store them."""
        return {"starts": list(self.starts), "position": self.position}

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> "StartQueue":
        return cls([None if s is None else (int(s[0]), s[1]) for s in state["starts"]], int(state["position"]))


Assignment = Union[None, Start, StartQueue]


def assignment_state(assignment: Assignment) -> Any:
    """What a checkpoint stores of one worker's assignment (``assignment_from_state`` reverses it)."""
    return {"queue": assignment.to_state()} if isinstance(assignment, StartQueue) else assignment


def assignment_from_state(state: Any) -> Assignment:
    if isinstance(state, Mapping) and "queue" in state:
        return StartQueue.from_state(state["queue"])
    return state


class AssignedStart(gym.Wrapper):
    """Applies the worker's assigned start at every reset and tags every step with its id."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        self.assigned_start: Assignment = None
        self.current_start: Optional[Start] = None  # the start the running episode began from
        self.rejected_starts = 0
        self._start_id = DEFAULT_START_ID

    def reset(self, *, seed: Optional[int] = None, options: Optional[dict] = None):
        self.current_start = None
        assigned = self.assigned_start
        if isinstance(assigned, StartQueue):
            assigned = assigned.take()
        if assigned is None:
            self._start_id = DEFAULT_START_ID
            obs, info = self.env.reset(seed=seed, options=options)
            return obs, {**info, "start_id": self._start_id}
        start_id, start_options = assigned
        if options:
            raise ValueError(
                f"reset options {sorted(options)} given while start {start_id} is assigned; "
                "assign the start instead (or assign None)"
            )
        try:
            obs, info = self.env.reset(seed=seed, options=dict(start_options))
            self._start_id, self.current_start = int(start_id), assigned
        except ValueError as error:
            self.rejected_starts += 1
            self._start_id = DEFAULT_START_ID
            obs, info = self.env.reset(seed=seed)
            info = {**info, "start_rejected": f"start {start_id}: {error}"}
        return obs, {**info, "start_id": self._start_id}

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        info["start_id"] = self._start_id  # the env's info dict is fresh every step: no copy needed
        return obs, reward, terminated, truncated, info
