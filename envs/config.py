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
import numbers
from dataclasses import dataclass, field
from typing import Any, List, Optional

ROBOTS = ("panda", "floating")
OBS_MODES = ("graph", "flat")
PEG_SHAPES = ("cylinder", "box")
REWARD_KERNELS = ("linear", "multiscale", "sparse")
RENDERERS = ("tiny", "egl")


@dataclass
class SimConfig:
    """Physics engine settings. ``None`` means "the robot's default" (see ``envs/robots.py``)."""

    time_step: Optional[float] = None  # seconds per stepSimulation call
    substeps: Optional[int] = None  # stepSimulation calls per env step (action)
    solver_iterations: int = 20  # constraint solver iterations per physics step
    # The solver stops iterating once its residual falls below this; None keeps Bullet's default (1e-7).
    # 1e-5 cuts the packed-objects physics by ~20% (resting contacts converge in a few iterations) with
    # the scripted controllers' results unchanged (README, "Throughput"); it changes trajectories.
    solver_residual_threshold: Optional[float] = None
    collision_margin: float = 0.0005  # metres, applied to peg and hole shapes (small clearances need small margins)
    contact_stiffness: Optional[float] = None  # N/m; None keeps Bullet's default (rigid contact)
    contact_damping: Optional[float] = None  # N*s/m; must be given together with contact_stiffness
    renderer: str = "tiny"  # "tiny" (TinyRenderer, always works headless) or "egl" (plugin, where it loads)
    image_width: int = 320
    image_height: int = 240


@dataclass
class RewardConfig:
    """Keypoint reward: kernel(mean keypoint distance) + bonus - penalties. See ``envs/rewards.py``."""

    # "linear", "multiscale" or "sparse" (no keypoint term: with zero penalties the reward is the
    # success bonus alone, the setting in which plain RL gets no signal and a curriculum is needed)
    kernel: str = "multiscale"
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


# Upper bounds of the validated ranges, chosen as "clearly a mistake" rather than "unusual".
MAX_TRANSLATION = 0.05  # m per step (5x the default): a bigger jump crosses a whole hole opening in one step
MAX_ROTATION = math.pi / 4  # rad per step (9x the default): past that a step is no longer a small delta
MAX_TIME_STEP = 0.02  # s (robots default to 1/400 and 1/500): coarser, mm-clearance contacts tunnel and explode
MAX_COLLISION_MARGIN = 0.005  # m: a margin of more than a few mm leaves no room for mm clearances
MAX_SOLVER_RESIDUAL = 1e-3  # the loosest solver residual threshold measured (README, "Throughput")
MAX_IMAGE_SIZE = 4096  # pixels per side of rendered frames
MAX_HOLE_YAW_RANGE = math.pi  # rad: [-pi, pi] already covers every yaw
MIN_KERNEL_B = -2.0  # exclusive: exp(ax) + b + exp(-ax) >= 2 + b must stay positive


@dataclass
class TaskConfig:
    """What every insertion task shares: robot, actions, keypoints, success, termination, reward, sim.

    A task's config subclasses it and adds its own fields; the task's validate function calls
    ``validate_task_config`` for these.
    """

    robot: str = "panda"  # "panda" (Franka arm, IK-driven) or "floating" (object moved by a constraint)
    obs_mode: str = "graph"  # "graph" (Dict of node/edge arrays) or "flat" (Box)

    # Delta end-effector pose actions in [-1, 1]^6 scaled by these.
    max_translation: float = 0.01  # metres per step
    max_rotation: float = math.radians(5.0)  # radians per step (roll/pitch/yaw deltas)
    action_mask: List[int] = field(default_factory=lambda: [1, 1, 1, 1, 1, 1])  # active DoFs: x y z roll pitch yaw

    # Keypoints along the held object's axis, compared with the same keypoints at the goal pose.
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


@dataclass
class PegInsertionConfig(TaskConfig):
    """Everything ``PegInsertionEnv`` accepts as keyword arguments: ``TaskConfig`` plus the peg and hole."""

    # Peg and hole geometry (metres).
    peg_shape: str = "cylinder"  # "cylinder" or "box" (square prism)
    # Weight of the alignment reward term: the kernel of the keypoints' mean distance across the hole
    # axis (depth left out), so lining the peg up over the hole pays at any height. None: 1.0 for a
    # box peg, whose yaw must be right before it can enter (README, "Square peg"), 0.0 for a cylinder.
    alignment_weight: Optional[float] = None
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


# ------------------------------------------------------------------ checks
# Each raises ValueError naming the field (dotted path) and the value it got. Bools are neither
# numbers nor integers here, so ``terminate_on_success=1`` and ``sim.substeps=True`` both fail.


def _fail(name: str, requirement: str, value: Any) -> None:
    raise ValueError(f"{name} must be {requirement}, got {value!r}")


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_list(value: Any) -> bool:
    return isinstance(value, (list, tuple))


def _finite(name: str, value: Any, low: float = -math.inf, high: float = math.inf, low_open: bool = False) -> None:
    """A finite real number in [low, high], or (low, high] if ``low_open``."""
    is_number = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    if not (is_number and (value > low if low_open else value >= low) and value <= high):
        left = "(" if low_open or low == -math.inf else "["
        right = "]" if high < math.inf else ")"
        _fail(name, f"a finite number in {left}{low:g}, {high:g}{right}", value)


def _positive(name: str, value: Any, high: float = math.inf) -> None:
    _finite(name, value, 0.0, high, low_open=True)


def _non_negative(name: str, value: Any, high: float = math.inf) -> None:
    _finite(name, value, 0.0, high)


def _int_at_least(name: str, value: Any, low: int, high: Optional[int] = None) -> None:
    if not (_is_int(value) and value >= low and (high is None or value <= high)):
        _fail(name, f"an integer >= {low}" + (f" and <= {high}" if high is not None else ""), value)


def _bool(name: str, value: Any) -> None:
    if not isinstance(value, bool):
        _fail(name, "true or false", value)


def _choice(name: str, value: Any, allowed: tuple) -> None:
    if value not in allowed:
        raise ValueError(f"{name}={value!r} is not one of {list(allowed)}")


def _finite_list(name: str, value: Any, length: int, low: float = -math.inf, low_open: bool = False) -> None:
    """A list of ``length`` finite numbers, each checked like ``_finite(..., low, low_open=low_open)``."""
    if not (_is_list(value) and len(value) == length):
        _fail(name, f"a list of {length} numbers", value)
    for i, entry in enumerate(value):
        _finite(f"{name}[{i}]", entry, low, low_open=low_open)


def _low_high(low_name: str, low: Any, high_name: str, high: Any, length: int) -> None:
    """Two lists of ``length`` finite numbers, ``low <= high`` element-wise (the bounds of a uniform draw)."""
    _finite_list(low_name, low, length)
    _finite_list(high_name, high, length)
    if any(lo > hi for lo, hi in zip(low, high)):
        raise ValueError(f"{low_name} must be <= {high_name} element-wise, got {list(low)!r} and {list(high)!r}")


def _range(name: str, value: Any, low: float = -math.inf, low_open: bool = False) -> None:
    """A [low, high] pair of finite numbers with low <= high, both above ``low``."""
    _finite_list(name, value, 2, low, low_open)
    if value[0] > value[1]:
        _fail(name, "[low, high] with low <= high", value)


def _section(config: Any, name: str, cls: type) -> Any:
    """The nested config ``name``, which must be a ``cls`` (a dict here means it bypassed ``build_config``)."""
    value = getattr(config, name)
    if not isinstance(value, cls):
        _fail(name, f"a {cls.__name__}", value)
    return value


def _validate_reward(reward: RewardConfig) -> None:
    _choice("reward.kernel", reward.kernel, REWARD_KERNELS)
    params = reward.kernel_params
    if not (_is_list(params) and params):
        _fail("reward.kernel_params", "a non-empty list of [a, b] pairs", params)
    for i, pair in enumerate(params):
        _finite_list(f"reward.kernel_params[{i}]", pair, 2)
        if not (pair[0] > 0 and pair[1] > MIN_KERNEL_B):
            _fail(f"reward.kernel_params[{i}]", "[a, b] with a > 0 and b > -2 (so exp(ax) + b + exp(-ax) > 0)", pair)
    _non_negative("reward.linear_scale", reward.linear_scale)
    _bool("reward.relative_to_goal", reward.relative_to_goal)
    for name in ("success_bonus", "action_penalty", "contact_force_penalty"):
        _non_negative(f"reward.{name}", getattr(reward, name))


def _validate_randomization(rand: RandomizationConfig) -> None:
    _range("randomization.friction_range", rand.friction_range, 0.0)
    _range("randomization.clearance_range", rand.clearance_range, 0.0)
    if rand.clearance_range[1] > 0 and rand.clearance_range[0] <= 0:
        _fail("randomization.clearance_range", "[0, 0] (off) or two positive numbers", rand.clearance_range)
    _range("randomization.peg_size_scale_range", rand.peg_size_scale_range, 0.0, low_open=True)
    _non_negative("randomization.observation_noise_std", rand.observation_noise_std)


def _validate_sim(sim: SimConfig) -> None:
    if sim.time_step is not None:
        _positive("sim.time_step", sim.time_step, MAX_TIME_STEP)
    if sim.substeps is not None:
        _int_at_least("sim.substeps", sim.substeps, 1)
    _int_at_least("sim.solver_iterations", sim.solver_iterations, 1)
    if sim.solver_residual_threshold is not None:
        _positive("sim.solver_residual_threshold", sim.solver_residual_threshold, MAX_SOLVER_RESIDUAL)
    _non_negative("sim.collision_margin", sim.collision_margin, MAX_COLLISION_MARGIN)
    if (sim.contact_stiffness is None) != (sim.contact_damping is None):
        raise ValueError("sim.contact_stiffness and sim.contact_damping must be set together (or both None)")
    if sim.contact_stiffness is not None:
        _positive("sim.contact_stiffness", sim.contact_stiffness)
        _non_negative("sim.contact_damping", sim.contact_damping)
    _choice("sim.renderer", sim.renderer, RENDERERS)
    _int_at_least("sim.image_width", sim.image_width, 1, MAX_IMAGE_SIZE)
    _int_at_least("sim.image_height", sim.image_height, 1, MAX_IMAGE_SIZE)


def validate_task_config(config: TaskConfig) -> TaskConfig:
    """Check the ``TaskConfig`` fields; raise ``ValueError`` naming the first bad one, else return ``config``."""
    _choice("robot", config.robot, ROBOTS)
    _choice("obs_mode", config.obs_mode, OBS_MODES)
    _positive("max_translation", config.max_translation, MAX_TRANSLATION)
    _positive("max_rotation", config.max_rotation, MAX_ROTATION)
    mask = config.action_mask
    if not (_is_list(mask) and len(mask) == 6 and all(_is_int(m) and m in (0, 1) for m in mask) and any(mask)):
        _fail("action_mask", "six 0/1 integers (x y z roll pitch yaw) with at least one 1", mask)
    _int_at_least("num_keypoints", config.num_keypoints, 1)
    for name in ("keypoint_spacing", "success_lateral_tolerance", "success_depth_tolerance", "workspace_radius"):
        _positive(name, getattr(config, name))
    _bool("terminate_on_success", config.terminate_on_success)
    _bool("terminate_out_of_workspace", config.terminate_out_of_workspace)
    _validate_reward(_section(config, "reward", RewardConfig))
    _validate_randomization(_section(config, "randomization", RandomizationConfig))
    _validate_sim(_section(config, "sim", SimConfig))
    return config


def alignment_weight(config: PegInsertionConfig) -> float:
    """The alignment term's weight, ``alignment_weight`` or its per-shape default."""
    if config.alignment_weight is not None:
        return config.alignment_weight
    return 1.0 if config.peg_shape == "box" else 0.0


def validate(config: PegInsertionConfig) -> PegInsertionConfig:
    """Check a peg-insertion config (the task fields, then the peg and hole); raise or return ``config``."""
    validate_task_config(config)
    _choice("peg_shape", config.peg_shape, PEG_SHAPES)
    if config.alignment_weight is not None:
        _non_negative("alignment_weight", config.alignment_weight)
    for name in ("peg_radius", "peg_length", "clearance", "hole_depth", "hole_wall_thickness"):
        _positive(name, getattr(config, name))
    _low_high("hole_xy_low", config.hole_xy_low, "hole_xy_high", config.hole_xy_high, 2)
    _non_negative("hole_yaw_range", config.hole_yaw_range, MAX_HOLE_YAW_RANGE)
    _low_high("start_low", config.start_low, "start_high", config.start_high, 6)
    # Size randomization scales the peg, not the hole or the keypoint spacing: check the shortest peg.
    scale = config.randomization.peg_size_scale_range[0]
    shortest = config.peg_length * scale
    if config.hole_depth >= shortest:
        raise ValueError(
            f"hole_depth ({config.hole_depth}) must be smaller than the shortest peg: "
            f"peg_length ({config.peg_length}) * randomization.peg_size_scale_range[0] ({scale})"
        )
    span = (config.num_keypoints - 1) * config.keypoint_spacing
    if span > shortest:
        raise ValueError(
            f"num_keypoints ({config.num_keypoints}) at keypoint_spacing ({config.keypoint_spacing}) span {span:g} m, "
            f"more than the shortest peg ({shortest:g} m = peg_length * randomization.peg_size_scale_range[0])"
        )
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


# ------------------------------------------------------------------ packed objects
MAX_PACKED_OBJECTS = 32  # more boxes than this is a mistake, not an arrangement task
MAX_TRAY_YAW_RANGE = math.pi


@dataclass
class PackedObjectsConfig(TaskConfig):
    """Everything ``PackedObjectsEnv`` accepts: ``TaskConfig`` plus the tray, the packed boxes and their start.

    The goal arrangement is a grid of ``num_objects + 1`` slots (``grid_rows`` rows, filled row by
    row) of square-footprint boxes ``gap`` apart; slot ``held_slot`` belongs to the held box, the
    others to the packed boxes in slot order. Lengths are metres, angles radians, all in the tray
    frame (origin at the centre of the tray floor's top, x along the grid's rows).
    """

    # Three keypoints 3 cm apart would not fit on the 4 cm packed boxes.
    keypoint_spacing: float = 0.015
    # The held box's success (``success_lateral_tolerance`` / ``success_depth_tolerance``): its bottom
    # centre within the lateral tolerance of the slot centre and within the depth tolerance of the floor.
    # ``terminate_out_of_workspace`` also ends the episode when a packed box leaves the tray.

    num_objects: int = 4  # packed boxes (the held box comes on top)
    grid_rows: int = 1  # rows of the goal grid; columns = ceil((num_objects + 1) / grid_rows)
    held_slot: Optional[int] = None  # the held box's slot (row-major index); None: the middle slot
    box_half_size: float = 0.02  # half the side of every box's square footprint (held box too)
    box_height: float = 0.04  # packed boxes
    held_box_height: float = 0.06  # taller, so the robot can push the packed boxes with it
    box_mass: float = 0.1  # kg, each packed box
    # The packed boxes as maximal-coordinate rigid bodies built anew at every reset (~25-30% less physics
    # per step than one-link multibodies, False); a save_state snapshot then restores only within its episode.
    rigid_boxes: bool = True
    gap: float = 0.004  # between neighbouring goal slots, and from the outer slots to the walls (minimum)
    tray_size: Optional[List[float]] = None  # inner [x, y] size; None: the grid plus tray_margin on each side
    tray_margin: float = 0.01  # space between the outer slots and the walls when tray_size is None
    tray_wall_height: float = 0.03
    tray_wall_thickness: float = 0.01

    # Randomized tray pose: xy in the robot base frame and yaw.
    tray_xy_low: List[float] = field(default_factory=lambda: [0.45, -0.05])
    tray_xy_high: List[float] = field(default_factory=lambda: [0.55, 0.05])
    tray_yaw_range: float = math.pi / 6  # yaw sampled in [-range, range]

    # Occluders: ``num_displaced`` grid neighbours of the held slot are pushed from their goal toward
    # (into) the slot by a distance in ``occluder_shift_range``, offset sideways by up to
    # ``occluder_lateral_range`` and yawed by up to ``occluder_yaw_range``; overlapping draws are redrawn.
    num_displaced: int = 1
    occluder_shift_range: List[float] = field(default_factory=lambda: [0.012, 0.03])
    occluder_lateral_range: float = 0.003
    occluder_yaw_range: float = 0.25

    # Held box start relative to its slot (tray frame): [x, y, z, roll, pitch, yaw] of its bottom
    # centre, z its height above the floor; the default starts above the packed boxes (4 cm tall).
    start_low: List[float] = field(default_factory=lambda: [-0.01, -0.01, 0.05, -0.1, -0.1, -0.2])
    start_high: List[float] = field(default_factory=lambda: [0.01, 0.01, 0.08, 0.1, 0.1, 0.2])

    # Success of a packed box: centre within this distance of its goal centre and orientation within
    # this angle of a goal orientation (any orientation that maps the box onto itself: any quarter turn
    # about the vertical and, for a cube, any face down; for an upright box, its yaw error mod 90 deg).
    object_position_tolerance: float = 0.005
    object_yaw_tolerance: float = 0.1

    # Reward: the keypoint term is the weighted mean of the kernel over all objects with these
    # weights; the insertion term is insertion_weight * kernel(distance of the held box's bottom
    # centre to the slot's floor centre).
    held_object_weight: float = 1.0
    other_object_weight: float = 1.0
    insertion_weight: float = 0.5
    # alignment_weight * kernel(mean distance of the held box's keypoints across the vertical): lining
    # the held box up over its slot pays at any height, as peg insertion's alignment term. 0: off.
    alignment_weight: float = 0.0
    # -in_place_weight * (fraction of objects NOT in place): a step cost for every packed box outside its
    # tolerance and for the held box while unseated, the success test's own criterion. Unlike the keypoint
    # kernel, which is nearly flat across a few millimetres, it charges the full price the moment a
    # seated held box shoves a neighbour out of tolerance, and pays it back the moment an occluder is
    # pushed home. 0: off. One curriculum probe with weight 1 learned no better (docs/experiments/packed_objects.md).
    in_place_weight: float = 0.0
    # End the episode (terminated, nothing bootstrapped) once the held box is seated while a packed box
    # is out of place (info["is_wedged"]): nothing pushes a neighbour back from under a seated box, and
    # the positive per-step reward of wedging in would otherwise keep paying for this dead end.
    terminate_when_wedged: bool = False


def slot_cells(num_slots: int, rows: int) -> List[tuple]:
    """(row, column) of each goal slot, row-major; the last row may be partly filled."""
    columns = -(-num_slots // rows)
    return [divmod(index, columns) for index in range(num_slots)]


def default_held_slot(num_slots: int, rows: int) -> int:
    """The slot nearest the grid's centre (the middle of a row), so it has neighbours all round."""
    cells = slot_cells(num_slots, rows)
    columns = -(-num_slots // rows)
    centre = ((rows - 1) / 2, (columns - 1) / 2)
    return min(range(num_slots), key=lambda i: (cells[i][0] - centre[0]) ** 2 + (cells[i][1] - centre[1]) ** 2)


def slot_neighbours(num_slots: int, rows: int, slot: int) -> List[int]:
    """Slots sharing a side with ``slot`` (the boxes that can be pushed into it)."""
    cells = slot_cells(num_slots, rows)
    row, column = cells[slot]
    return [i for i, (r, c) in enumerate(cells) if abs(r - row) + abs(c - column) == 1]


def tray_inner_size(config: PackedObjectsConfig) -> List[float]:
    """Inner [x, y] size of the tray: ``tray_size``, or the grid plus ``tray_margin`` on each side."""
    if config.tray_size is not None:
        return list(config.tray_size)
    rows = config.grid_rows
    columns = -(-(config.num_objects + 1) // rows)
    pitch = 2 * config.box_half_size + config.gap
    return [n * pitch - config.gap + 2 * config.tray_margin for n in (columns, rows)]


def validate_packed_objects(config: PackedObjectsConfig) -> PackedObjectsConfig:
    """Check a packed-objects config (the task fields, then the tray, boxes and start); raise or return it."""
    validate_task_config(config)
    _int_at_least("num_objects", config.num_objects, 1, MAX_PACKED_OBJECTS)
    num_slots = config.num_objects + 1
    _int_at_least("grid_rows", config.grid_rows, 1, num_slots)
    if config.held_slot is not None:
        _int_at_least("held_slot", config.held_slot, 0, num_slots - 1)
    for name in ("box_half_size", "box_height", "held_box_height", "box_mass", "gap"):
        _positive(name, getattr(config, name))
    _non_negative("tray_margin", config.tray_margin)
    _bool("rigid_boxes", config.rigid_boxes)
    _positive("tray_wall_height", config.tray_wall_height)
    _positive("tray_wall_thickness", config.tray_wall_thickness)
    if config.tray_size is not None:
        _finite_list("tray_size", config.tray_size, 2, 0.0, low_open=True)
    _check_boxes_fit_tray(config)
    _low_high("tray_xy_low", config.tray_xy_low, "tray_xy_high", config.tray_xy_high, 2)
    _non_negative("tray_yaw_range", config.tray_yaw_range, MAX_TRAY_YAW_RANGE)
    held_slot = config.held_slot if config.held_slot is not None else default_held_slot(num_slots, config.grid_rows)
    neighbours = len(slot_neighbours(num_slots, config.grid_rows, held_slot))
    _int_at_least("num_displaced", config.num_displaced, 0, neighbours)
    _range("occluder_shift_range", config.occluder_shift_range, 0.0)
    _non_negative("occluder_lateral_range", config.occluder_lateral_range)
    _non_negative("occluder_yaw_range", config.occluder_yaw_range, math.pi / 4)
    _low_high("start_low", config.start_low, "start_high", config.start_high, 6)
    _positive("object_position_tolerance", config.object_position_tolerance)
    _positive("object_yaw_tolerance", config.object_yaw_tolerance, math.pi / 4)
    for name in ("held_object_weight", "other_object_weight"):
        _non_negative(name, getattr(config, name))
    if not config.held_object_weight + config.other_object_weight > 0:
        raise ValueError("held_object_weight and other_object_weight must not both be 0")
    _non_negative("insertion_weight", config.insertion_weight)
    _non_negative("alignment_weight", config.alignment_weight)
    _non_negative("in_place_weight", config.in_place_weight)
    _bool("terminate_when_wedged", config.terminate_when_wedged)
    rand = config.randomization
    if rand.clearance_range != [0.0, 0.0] or rand.peg_size_scale_range != [1.0, 1.0]:
        raise ValueError(
            "randomization.clearance_range and randomization.peg_size_scale_range are peg-insertion options; "
            "packed objects supports only randomization.friction_range and randomization.observation_noise_std"
        )
    span = (config.num_keypoints - 1) * config.keypoint_spacing
    if span > min(config.box_height, config.held_box_height):
        raise ValueError(
            f"num_keypoints ({config.num_keypoints}) at keypoint_spacing ({config.keypoint_spacing}) span {span:g} m, "
            f"more than the shortest box (box_height {config.box_height}, held_box_height {config.held_box_height})"
        )
    return config


def _check_boxes_fit_tray(config: PackedObjectsConfig) -> None:
    """The goal grid, with ``gap`` to the walls, must fit in the tray."""
    rows = config.grid_rows
    columns = -(-(config.num_objects + 1) // rows)
    pitch = 2 * config.box_half_size + config.gap
    needed = [n * pitch + config.gap for n in (columns, rows)]
    inner = tray_inner_size(config)
    if any(size < need - 1e-12 for size, need in zip(inner, needed)):
        raise ValueError(
            f"the boxes cannot fit in the tray: a {rows} x {columns} grid of {2 * config.box_half_size:g} m boxes "
            f"{config.gap:g} m apart needs an inner size of at least {[round(n, 6) for n in needed]} m, "
            f"but tray_size is {[round(s, 6) for s in inner]} m"
        )


def make_packed_objects_config(**overrides) -> PackedObjectsConfig:
    """``PackedObjectsConfig`` from keyword overrides (nested dicts allowed), validated."""
    return validate_packed_objects(build_config(PackedObjectsConfig, overrides))
