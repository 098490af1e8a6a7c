"""The task interface: what an insertion task defines on top of ``envs.base.InsertionEnv``.

The base environment owns the simulator, the robot that holds the object, the delta-pose
action and the step/reset/save/render skeleton. A task owns everything that makes one
problem different from another: the scene it builds, its start states (sampled, checked,
encoded as reset options and decoded back), the object nodes it observes, its reward terms
and its success test. A new task is a new file with a subclass of ``Task``
(``envs/peg_insertion.py`` is the reference).

Frames: every task has a task frame (its goal's frame, e.g. the hole's) that observations and
actions are expressed in. It is yawed in the world only (``frame_yaw``), so the action's
translation and rotation axes are the world's rotated about z.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Hashable, Optional, Sequence, Tuple

import numpy as np

from envs.config import TaskConfig
from envs.robots import HeldObjectSpec
from envs.sim import Camera, Simulator

Pose = Tuple[Sequence[float], Sequence[float]]  # (xyz, quaternion xyzw) in the world
HeldState = Tuple[Sequence[float], Sequence[float], Sequence[float], Sequence[float]]  # pos, quat, linvel, angvel
# Reset option of every task, handled by the base env: the held object's velocity [vx, vy, vz, wx, wy, wz]
# (m/s, rad/s, task frame); absent means at rest. ``get_start_state`` always reports it.
HELD_VELOCITY = "held_velocity"
OptionShapes = Dict[str, Tuple[Tuple[int, ...], str]]  # reset option -> (array shape, what it must be)
HELD_VELOCITY_REQUIREMENT = "6 finite numbers [vx, vy, vz, wx, wy, wz] (m/s, rad/s, task frame)"


@dataclass(frozen=True)
class SceneSpec:
    """What the bodies are built from. Equal specs share bodies: the scene is rebuilt only when it changes."""

    held_object: HeldObjectSpec
    geometry: Hashable  # the task's own dimensions (e.g. hole clearance)


class Task:
    """Base class of insertion tasks; every method below is called by ``InsertionEnv``."""

    max_nodes: int  # nodes of the graph observation (held object first)
    # Whether free objects collide with the ground plane. Without it an object pushed out of the scene
    # falls forever, and its unbounded coordinates swamp the observation normaliser's statistics.
    ground_collides: bool = False

    def __init__(self, config: TaskConfig):
        self.config = config

    # -- reset -------------------------------------------------------------------------------------------
    def option_shapes(self) -> OptionShapes:
        """The task's own reset options: key -> (array shape, what it must be, for the error message)."""
        raise NotImplementedError

    def check_options(self, options: Optional[Dict[str, Any]]) -> Dict[str, Any]:
        """Validated reset options as float arrays (``ValueError`` naming a bad or unknown key): the task's
        ``option_shapes`` plus ``HELD_VELOCITY``, which every task accepts (the base env applies it)."""
        if options is None:
            return {}
        if not isinstance(options, dict):
            raise ValueError(f"reset options must be a dict, got {type(options).__name__}")
        shapes = {**self.option_shapes(), HELD_VELOCITY: ((6,), HELD_VELOCITY_REQUIREMENT)}
        unknown = sorted(set(options) - set(shapes))
        if unknown:
            raise ValueError(f"unknown reset option(s) {unknown}; valid options are {list(shapes)}")
        checked = {}
        for key, (shape, requirement) in shapes.items():
            if options.get(key) is None:
                continue
            try:
                value = np.asarray(options[key], dtype=np.float64)
            except (TypeError, ValueError):
                value = None
            if value is None or value.shape != shape or not np.all(np.isfinite(value)):
                raise ValueError(f"reset option {key!r} must be {requirement}, got {options[key]!r}")
            checked[key] = value
        return checked

    def sample_scene(self, rng: np.random.Generator) -> SceneSpec:
        """The scene of the next episode (randomized dimensions)."""
        raise NotImplementedError

    def build_scene(self, sim: Simulator, scene: SceneSpec) -> None:
        """Create the task's bodies in an empty world (the robot is built after them)."""
        raise NotImplementedError

    def reset_objects(
        self, sim: Simulator, held: Tuple[int, int], rng: np.random.Generator, options: Dict[str, Any]
    ) -> Pose:
        """Place the scene for a new episode (from ``options`` where given, else sampled); check the
        start; return the world pose the robot must hold the object at. ``held`` is (body, link)."""
        raise NotImplementedError

    # -- every step ---------------------------------------------------------------------------------------
    def frame_yaw(self) -> Tuple[float, float]:
        """(cos, sin) of the task frame's yaw in the world."""
        raise NotImplementedError

    def observe(self, held_state: HeldState, rng: np.random.Generator) -> Tuple[np.ndarray, Dict[str, float]]:
        """(node rows, float32 (num_nodes, node_dim), held object first; measurements for ``evaluate``)."""
        raise NotImplementedError

    def evaluate(
        self, measurements: Dict[str, float], action: np.ndarray, contact_force: float
    ) -> Tuple[bool, Dict[str, float], bool]:
        """(success, reward terms, left the workspace) after a step; the reward is the terms' sum."""
        raise NotImplementedError

    def dead_end(self, measurements: Dict[str, Any]) -> bool:
        """Whether the episode has reached a state the task treats as failed for good; the env then
        terminates it (``terminated``: no value is bootstrapped past it). Default: never."""
        return False

    # -- state -------------------------------------------------------------------------------------------
    def start_state(self, held_pose: Pose) -> Dict[str, list]:
        """The current state in the form ``reset(options=...)`` accepts."""
        raise NotImplementedError

    def perturb_start(self, start: Dict[str, Any], rng: np.random.Generator, scale: float) -> Dict[str, Any]:
        """``start`` (a ``start_state``) with the objects the robot does not move displaced at random by
        ``scale`` times the task's own start ranges, each move kept only where the start stays valid.

        A reverse curriculum's random walks move only what the robot moves; this is their other half,
        for tasks whose starts displace other objects (packed boxes pushed into a slot). The default
        has nothing to move: the peg task's only other body is the hole, its goal."""
        return start

    def save_state(self) -> Dict[str, Any]:
        """What ``restore_state`` needs beyond the simulator's own snapshot."""
        raise NotImplementedError

    def restore_problem(self, state: Dict[str, Any]) -> Optional[str]:
        """Why a ``save_state`` snapshot cannot be restored now (checked before the engine restores), or None."""
        return None

    def restore_state(self, state: Dict[str, Any]) -> None:
        raise NotImplementedError

    def camera(self) -> Camera:
        raise NotImplementedError
