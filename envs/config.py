"""Configuration of the insertion environments.

Plain dataclasses, so the same objects serve three users:
``gymnasium.make(..., clearance=0.001)`` (keyword arguments), Hydra structured
configs (``configs/env/*.yaml`` are validated against them) and tests.
Every field is documented where it is declared. Lists are used instead of
tuples so OmegaConf accepts them.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, List, Optional

ROBOTS = ("panda", "floating")
OBS_MODES = ("graph", "flat")
PEG_SHAPES = ("cylinder", "box")
REWARD_KERNELS = ("linear", "multiscale")
RENDERERS = ("tiny", "egl")


@dataclass
class SimConfig:
    """Physics engine settings. ``None`` means "the robot's default" (see ``envs/robots.py``)."""

    time_step: Optional[float] = None  # seconds per stepSimulation call
    substeps: Optional[int] = None  # stepSimulation calls per env step (action)
    solver_iterations: int = 20  # constraint solver iterations per physics step
    collision_margin: float = 0.0005  # metres, applied to peg and hole shapes (small clearances need small margins)
    contact_stiffness: Optional[float] = None  # N/m; None keeps Bullet's default (rigid contact)
    contact_damping: Optional[float] = None  # N*s/m; must be given together with contact_stiffness
    renderer: str = "tiny"  # "tiny" (TinyRenderer, always works headless) or "egl" (plugin, where it loads)
    image_width: int = 320
    image_height: int = 240


@dataclass
class RewardConfig:
    """Keypoint reward: kernel(mean keypoint distance) + bonus - penalties. See ``envs/rewards.py``."""

    kernel: str = "multiscale"  # "linear" or "multiscale"
    # multiscale kernel: sum_i 1 / (exp(a_i x) + b_i + exp(-a_i x)), x in metres
    kernel_params: List[List[float]] = field(default_factory=lambda: [[10.0, 0.0], [100.0, 0.0], [1000.0, 0.0]])
    linear_scale: float = 10.0  # linear kernel: -linear_scale * x
    # Subtract the kernel's value at zero distance, so every step costs (reward <= 0) until success
    # ends the episode. With a positive kernel and termination on success, lingering near the goal
    # would earn more than finishing (kernel / (1 - gamma) > success_bonus).
    relative_to_goal: bool = True
    success_bonus: float = 10.0
    action_penalty: float = 0.0  # times squared norm of the (masked) action
    contact_force_penalty: float = 0.0  # times total normal contact force on the peg, in N


@dataclass
class RandomizationConfig:
    """Optional domain randomization, resampled at every reset. Zero widths disable a term."""

    friction_range: List[float] = field(default_factory=lambda: [0.0, 0.0])  # [low, high]; 0,0 = off
    clearance_range: List[float] = field(default_factory=lambda: [0.0, 0.0])  # [low, high] metres; 0,0 = off
    peg_size_scale_range: List[float] = field(default_factory=lambda: [1.0, 1.0])  # scales radius and length
    observation_noise_std: float = 0.0  # metres / radians, added to node features


@dataclass
class PegInsertionConfig:
    """Everything ``PegInsertionEnv`` accepts as keyword arguments."""

    robot: str = "panda"  # "panda" (Franka arm, IK-driven) or "floating" (peg moved by a constraint)
    obs_mode: str = "graph"  # "graph" (Dict of node/edge arrays) or "flat" (Box)

    # Peg and hole geometry (metres).
    peg_shape: str = "cylinder"  # "cylinder" or "box" (square prism)
    peg_radius: float = 0.012  # cylinder radius, or half the side of the square prism
    peg_length: float = 0.08
    clearance: float = 0.002  # gap between peg side and hole wall, per side
    hole_depth: float = 0.04
    hole_wall_thickness: float = 0.02

    # Randomized hole pose: xy position in the robot base frame and yaw.
    hole_xy_low: List[float] = field(default_factory=lambda: [0.45, -0.10])
    hole_xy_high: List[float] = field(default_factory=lambda: [0.60, 0.10])
    hole_yaw_range: float = math.pi / 4  # yaw sampled in [-range, range]

    # Randomized peg start pose relative to the goal (fully inserted) pose,
    # expressed in the hole frame: [x, y, z, roll, pitch, yaw] low/high.
    # z is the height of the peg tip above the hole's top surface.
    start_low: List[float] = field(default_factory=lambda: [-0.04, -0.04, 0.03, -0.15, -0.15, -0.3])
    start_high: List[float] = field(default_factory=lambda: [0.04, 0.04, 0.08, 0.15, 0.15, 0.3])

    # Delta end-effector pose actions in [-1, 1]^6 scaled by these.
    max_translation: float = 0.01  # metres per step
    max_rotation: float = math.radians(5.0)  # radians per step (roll/pitch/yaw deltas)
    action_mask: List[int] = field(default_factory=lambda: [1, 1, 1, 1, 1, 1])  # active DoFs: x y z roll pitch yaw

    # Keypoints along the peg axis, compared with the same keypoints at the goal pose.
    num_keypoints: int = 3
    keypoint_spacing: float = 0.03  # metres between consecutive keypoints, from the tip upward

    # Success: peg axis within lateral_tolerance of the hole axis and tip within depth_tolerance of the bottom.
    success_lateral_tolerance: float = 0.003
    success_depth_tolerance: float = 0.005
    terminate_on_success: bool = True
    # Off by default: with rewards <= 0 (reward.relative_to_goal), ending the episode by leaving
    # the workspace would be a way to stop paying, which policies learn quickly.
    terminate_out_of_workspace: bool = False
    workspace_radius: float = 0.25  # metres from the hole top; leaving it ends the episode (if enabled)

    reward: RewardConfig = field(default_factory=RewardConfig)
    randomization: RandomizationConfig = field(default_factory=RandomizationConfig)
    sim: SimConfig = field(default_factory=SimConfig)


def _choice(name: str, value: Any, allowed: tuple) -> None:
    if value not in allowed:
        raise ValueError(f"{name}={value!r} is not one of {list(allowed)}")


def _positive(name: str, value: float) -> None:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")


def _pair(name: str, value: List[float]) -> None:
    if len(value) != 2 or not value[0] <= value[1]:
        raise ValueError(f"{name} must be [low, high] with low <= high, got {list(value)!r}")


def validate(config: PegInsertionConfig) -> PegInsertionConfig:
    """Raise ``ValueError`` naming the first bad field; return the config unchanged otherwise."""
    _choice("robot", config.robot, ROBOTS)
    _choice("obs_mode", config.obs_mode, OBS_MODES)
    _choice("peg_shape", config.peg_shape, PEG_SHAPES)
    _choice("reward.kernel", config.reward.kernel, REWARD_KERNELS)
    _choice("sim.renderer", config.sim.renderer, RENDERERS)
    for name in (
        "peg_radius",
        "peg_length",
        "clearance",
        "hole_depth",
        "hole_wall_thickness",
        "max_translation",
        "max_rotation",
        "keypoint_spacing",
        "success_lateral_tolerance",
        "success_depth_tolerance",
        "workspace_radius",
    ):
        _positive(name, getattr(config, name))
    if config.hole_depth >= config.peg_length:
        raise ValueError(f"hole_depth ({config.hole_depth}) must be smaller than peg_length ({config.peg_length})")
    if config.num_keypoints < 1:
        raise ValueError(f"num_keypoints must be >= 1, got {config.num_keypoints}")
    if (config.num_keypoints - 1) * config.keypoint_spacing > config.peg_length:
        raise ValueError("num_keypoints * keypoint_spacing does not fit on the peg (peg_length)")
    if len(config.action_mask) != 6 or any(m not in (0, 1) for m in config.action_mask) or not any(config.action_mask):
        raise ValueError(f"action_mask must be six 0/1 flags with at least one 1, got {list(config.action_mask)!r}")
    for name in ("hole_xy_low", "hole_xy_high"):
        if len(getattr(config, name)) != 2:
            raise ValueError(f"{name} must have 2 entries (x, y)")
    for name in ("start_low", "start_high"):
        if len(getattr(config, name)) != 6:
            raise ValueError(f"{name} must have 6 entries (x, y, z, roll, pitch, yaw)")
    if any(lo > hi for lo, hi in zip(config.start_low, config.start_high)):
        raise ValueError("start_low must be <= start_high element-wise")
    if any(lo > hi for lo, hi in zip(config.hole_xy_low, config.hole_xy_high)):
        raise ValueError("hole_xy_low must be <= hole_xy_high element-wise")
    if config.hole_yaw_range < 0:
        raise ValueError("hole_yaw_range must be >= 0")
    for pair in config.reward.kernel_params:
        if len(pair) != 2:
            raise ValueError(f"reward.kernel_params entries must be [a, b] pairs, got {pair!r}")
    rand = config.randomization
    _pair("randomization.friction_range", rand.friction_range)
    _pair("randomization.clearance_range", rand.clearance_range)
    _pair("randomization.peg_size_scale_range", rand.peg_size_scale_range)
    if rand.clearance_range[1] > 0 and rand.clearance_range[0] <= 0:
        raise ValueError("randomization.clearance_range must be positive when enabled")
    if rand.observation_noise_std < 0:
        raise ValueError("randomization.observation_noise_std must be >= 0")
    sim = config.sim
    if sim.time_step is not None:
        _positive("sim.time_step", sim.time_step)
    if sim.substeps is not None and sim.substeps < 1:
        raise ValueError(f"sim.substeps must be >= 1, got {sim.substeps}")
    if sim.solver_iterations < 1:
        raise ValueError("sim.solver_iterations must be >= 1")
    if sim.collision_margin < 0:
        raise ValueError("sim.collision_margin must be >= 0")
    if (sim.contact_stiffness is None) != (sim.contact_damping is None):
        raise ValueError("sim.contact_stiffness and sim.contact_damping must be set together")
    return config


def build_config(cls, overrides: dict, prefix: str = ""):
    """Build dataclass ``cls`` from nested keyword ``overrides``; unknown keys raise a ``ValueError`` naming them."""
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(overrides) - set(known))
    if unknown:
        raise ValueError(
            f"unknown {cls.__name__} option(s): {', '.join(prefix + k for k in unknown)}; "
            f"valid options are {sorted(known)}"
        )
    values = {}
    for name, value in overrides.items():
        default = known[name].default_factory() if known[name].default_factory is not dataclasses.MISSING else None
        if dataclasses.is_dataclass(default):
            if dataclasses.is_dataclass(value):
                value = dataclasses.asdict(value)
            if not isinstance(value, dict):
                raise ValueError(f"{prefix}{name} must be a mapping, got {type(value).__name__}")
            value = build_config(type(default), dict(value), prefix=f"{prefix}{name}.")
        values[name] = value
    return cls(**values)


def make_peg_insertion_config(**overrides) -> PegInsertionConfig:
    """``PegInsertionConfig`` from keyword overrides (nested dicts allowed), validated."""
    return validate(build_config(PegInsertionConfig, overrides))
