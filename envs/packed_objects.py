"""Packed objects: put the held box into its slot in a tray of packed boxes, after pushing the occluders away.

The scene is a static tray (floor and four walls) holding ``num_objects`` free boxes in a goal
grid of ``num_objects + 1`` slots a few millimetres apart (``envs.config.PackedObjectsConfig``);
one slot belongs to the box the robot holds. At reset one or more of the slot's neighbours are
pushed into it (randomized shift, sideways offset and yaw), so the held box cannot go straight in.

The task frame is the tray frame: origin at the centre of the tray floor's top, +z up, yawed in
the world with the tray. Start states (``reset(options=...)``, ``get_start_state()``):

- ``tray_pose = [x, y, yaw]``: the tray in the world;
- ``object_poses = [[x, y, yaw], ...]``: each packed box's centre and yaw in the tray frame,
  resting on the floor (a box that tipped over is reported by these three numbers only, taken from
  its symmetric orientation nearest upright: exact for a cube rolled onto a side);
- ``held_pose = [x, y, z, roll, pitch, yaw]``: the held box's bottom centre relative to its
  slot's centre on the floor, and its orientation (extrinsic roll/pitch/yaw in the tray frame);
  the seated goal is all zeros.

The reward compares every object's keypoints with its goal keypoints (the arrangement term,
weighted held box vs the others) and adds the held box's insertion term; the episode succeeds
when the held box is seated and every packed box is back at its goal pose.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import pybullet

from envs import graph_obs, keypoints
from envs.base import TaskEnv
from envs.config import (
    PackedObjectsConfig,
    default_held_slot,
    make_packed_objects_config,
    slot_cells,
    slot_neighbours,
    tray_inner_size,
    validate_packed_objects,
)
from envs.geometry import box_penetration, euler_to_matrix, quat_to_matrix
from envs.rewards import KeypointReward
from envs.robots import HeldObjectSpec
from envs.scene import FLOOR_THICKNESS, add_dynamic_box, add_tray, box_shapes, tray_boxes
from envs.sim import Camera, Simulator
from envs.task import HeldState, OptionShapes, Pose, SceneSpec, Task

HELD_BOX_MASS = 0.1
DEFAULT_FRICTION = 0.5
BOX_COLOR = [0.2, 0.45, 0.8, 1.0]
TRAY_PARTS = ("+x wall", "-x wall", "+y wall", "-y wall", "floor")  # the order of scene.tray_boxes
START_TOLERANCE = 5e-4  # metres of interpenetration a start may have: resting and pushing contacts settle
# this deep, and the states the env itself produced (reverse-curriculum walks) must be valid starts again
MAX_SAMPLE_TRIES = 100  # redraws of an overlapping sampled start before the config is declared infeasible
STATE_WIDTH = 3 + 9 + 3 + 3  # position, rotation matrix, linear and angular velocity of one object
WITHDRAW_SHARE = 0.25  # of the curriculum's difficulty range: lifting the held box out of its slot


@dataclass(frozen=True)
class GoalLayout:
    """Where the goal grid puts every object (tray frame xy), from the config alone."""

    slot_xy: np.ndarray  # [2]: the held box's slot
    goal_xy: np.ndarray  # [N + 1, 2]: each object's goal, held box first
    neighbours: List[int]  # packed-box indices (0-based among the packed boxes) bordering the slot


def goal_layout(config: PackedObjectsConfig) -> GoalLayout:
    """Goal slots of the grid, which is the held box's and which packed boxes border it."""
    num_slots, rows = config.num_objects + 1, config.grid_rows
    cells = np.array(slot_cells(num_slots, rows), dtype=np.float64)
    columns = -(-num_slots // rows)
    pitch = 2 * config.box_half_size + config.gap
    slots_xy = (cells[:, ::-1] - [(columns - 1) / 2, (rows - 1) / 2]) * pitch  # column -> x, row -> y
    held = config.held_slot if config.held_slot is not None else default_held_slot(num_slots, rows)
    packed = [i for i in range(num_slots) if i != held]
    neighbours = [packed.index(i) for i in slot_neighbours(num_slots, rows, held)]
    return GoalLayout(slots_xy[held], slots_xy[[held] + packed], neighbours)


def displaced_occluders(
    config: PackedObjectsConfig, layout: GoalLayout, rng: np.random.Generator, scale: float = 1.0
) -> np.ndarray:
    """Packed boxes' [x, y, yaw] at their goals except ``num_displaced`` neighbours of the slot, pushed
    into it by ``scale`` times the occluder ranges (1: the task's own start distribution)."""
    poses = np.column_stack([layout.goal_xy[1:], np.zeros(config.num_objects)])
    for i in rng.permutation(layout.neighbours)[: config.num_displaced]:
        toward = layout.slot_xy - poses[i, :2]
        toward /= np.linalg.norm(toward)
        sideways = np.array([-toward[1], toward[0]])
        shift = scale * rng.uniform(*config.occluder_shift_range)
        lateral = scale * rng.uniform(-config.occluder_lateral_range, config.occluder_lateral_range)
        poses[i, :2] += shift * toward + lateral * sideways
        poses[i, 2] = scale * rng.uniform(-config.occluder_yaw_range, config.occluder_yaw_range)
    return poses


def start_at_difficulty(config: PackedObjectsConfig, difficulty: float, rng: np.random.Generator) -> Dict[str, list]:
    """Reset options of a start at ``difficulty`` in [0, 1], for near-goal curricula.

    0 is the goal (held box seated, every box in place), 1 the task's own start distribution. The
    first ``WITHDRAW_SHARE`` of the path lifts the held box straight out of its slot to the lowest
    start height (``start_low[2]``) with every packed box in place; the rest widens the held box's
    start ranges and pushes the occluders into the slot in proportion, so the hardest starts are
    exactly the full distribution. Displaced boxes that would overlap are redrawn.
    """
    if not 0.0 <= difficulty <= 1.0:
        raise ValueError(f"difficulty must be in [0, 1], got {difficulty}")
    layout = goal_layout(config)
    above = config.start_low[2]
    if difficulty <= WITHDRAW_SHARE:
        held = [0.0, 0.0, difficulty / WITHDRAW_SHARE * above, 0.0, 0.0, 0.0]
        objects = np.column_stack([layout.goal_xy[1:], np.zeros(config.num_objects)])
        return {"held_pose": held, "object_poses": objects.tolist()}
    scale = (difficulty - WITHDRAW_SHARE) / (1.0 - WITHDRAW_SHARE)
    base = np.array([0.0, 0.0, above, 0.0, 0.0, 0.0])
    low, high = (
        base + scale * (np.asarray(config.start_low) - base),
        base + scale * (np.asarray(config.start_high) - base),
    )
    for _ in range(MAX_SAMPLE_TRIES):
        objects = displaced_occluders(config, layout, rng, scale)
        if not _boxes_overlap(config, objects):
            break
    else:
        raise ValueError(f"no occluder draw without overlaps in {MAX_SAMPLE_TRIES} tries; check the occluder ranges")
    return {"held_pose": rng.uniform(low, high).tolist(), "object_poses": objects.tolist()}


def _boxes_overlap(config: PackedObjectsConfig, object_poses: np.ndarray) -> bool:
    half = np.array([config.box_half_size, config.box_half_size, config.box_height / 2])
    obbs = [(np.array([x, y, half[2]]), euler_to_matrix(0.0, 0.0, yaw), half) for x, y, yaw in object_poses]
    return any(box_penetration(*obbs[i], *obbs[j]) > START_TOLERANCE for i in range(len(obbs)) for j in range(i))


class PackedObjectsTask(Task):
    """Nodes: the held box (0), the packed boxes (1..N), the tray with the held box's slot (N + 1)."""

    ground_collides = True  # a box pushed out of the tray lands beside it (the tray's bottom is at z = 0)

    def __init__(self, config: PackedObjectsConfig):
        super().__init__(config)
        n = config.num_objects
        self.max_nodes = n + 2
        self.layout = graph_obs.NodeLayout(config.num_keypoints)
        self._reward = KeypointReward(config.reward)
        self._weights = (config.held_object_weight,) + (config.other_object_weight,) * n
        self._inner_half = np.asarray(tray_inner_size(config)) / 2
        self._init_slots()
        self._init_objects()
        self._scene = SceneSpec(
            HeldObjectSpec("box", config.box_half_size, config.held_box_height, HELD_BOX_MASS),
            (("num_objects", n), ("tray_inner_half", tuple(self._inner_half.round(9).tolist()))),
        )

    def _init_slots(self) -> None:
        self._layout = layout = goal_layout(self.config)
        self._slot_xy, self._goal_xy, self._neighbours = layout.slot_xy, layout.goal_xy, layout.neighbours

    def _init_objects(self) -> None:
        """Sizes, goal poses, keypoints and goal keypoints of every object, held box first (tray frame)."""
        cfg, n = self.config, self.config.num_objects
        half = cfg.box_half_size
        self._heights = np.array([cfg.held_box_height] + [cfg.box_height] * n)
        self._half_extents = np.stack([np.full(n + 1, half), np.full(n + 1, half), self._heights / 2], axis=1)
        self._goal_positions = np.column_stack([self._goal_xy, self._heights / 2])
        points = [
            keypoints.local_keypoints("box", half, height, cfg.num_keypoints, cfg.keypoint_spacing)
            for height in self._heights
        ]
        self._keypoints = np.stack(points)
        # A packed box fits its slot in every orientation that maps its extents onto themselves (a cube in 24:
        # rolled onto any face). The held box turns only about its axis in the robot's hand, so its goals
        # are the quarter turns: an upside-down goal, never reachable, would pull its reward off the slot.
        self._box_symmetries = keypoints.box_symmetry_rotations(self._half_extents[1])
        self._symmetry_rows = self._box_symmetries.reshape(-1, 9).T  # trace(S^T R) = <S, R> of flattened matrices
        groups = [keypoints.symmetry_rotations("box")] + [self._box_symmetries] * n
        upright = np.broadcast_to(np.eye(3), (n + 1, 3, 3))
        symmetries = keypoints.stack_symmetries(groups)
        self._goals = keypoints.goal_keypoints(self._goal_positions, upright, self._keypoints, symmetries)
        self._node_types = np.array([graph_obs.TYPE_CONTROLLED] + [graph_obs.TYPE_OTHER] * n)
        self._sizes = np.column_stack([np.full(n + 1, half), self._heights])
        tray_node = self.layout.row(
            graph_obs.TYPE_RECEPTACLE,
            pos=[*self._slot_xy, 0.0],
            rot6d=[1, 0, 0, 0, 1, 0],
            size=[half + cfg.gap, cfg.tray_wall_height],
        )
        # Every step copies this and fills in the moving features: types, sizes and the tray are fixed.
        objects = self.layout.rows(self._node_types, size=self._sizes)
        self._node_template = np.concatenate([objects, tray_node[None]])
        self._moving_features = [self.layout.slice(name) for name in ("pos", "rot6d", "keypoints", "linvel", "angvel")]
        extents, positions = tray_boxes(*self._inner_half, cfg.tray_wall_height, cfg.tray_wall_thickness)
        self._tray_parts = list(zip(TRAY_PARTS, np.array(positions), np.array(extents)))

    # ================================================================== scene
    def sample_scene(self, rng: np.random.Generator) -> SceneSpec:
        return self._scene  # fixed dimensions: the bodies are built once

    def build_scene(self, sim: Simulator, scene: SceneSpec) -> None:
        cfg = self.config
        self._sim = sim
        self._tray_id = add_tray(sim, *self._inner_half, cfg.tray_wall_height, cfg.tray_wall_thickness)
        extents = [cfg.box_half_size, cfg.box_half_size, cfg.box_height / 2]
        self._box_shapes = box_shapes(sim, extents, BOX_COLOR)
        self._build_boxes()

    def _build_boxes(self) -> None:
        """The packed boxes, built anew (same body ids) when ``rigid_boxes``: a fresh rigid body carries no
        contact history from the episode before, so a seeded episode does not depend on earlier ones."""
        cfg, sim = self.config, self._sim
        for i in reversed(range(len(getattr(self, "_box_ids", [])))):  # freed ids come back last-in first-out
            sim.remove_body(f"box{i}")
        self._box_ids = [
            add_dynamic_box(sim, f"box{i}", self._box_shapes, cfg.box_mass, cfg.rigid_boxes)
            for i in range(cfg.num_objects)
        ]
        self._boxes_built = getattr(self, "_boxes_built", 0) + 1

    # ================================================================== reset
    def option_shapes(self) -> OptionShapes:
        n = self.config.num_objects
        return {
            "held_pose": ((6,), "6 finite numbers [x, y, z, roll, pitch, yaw]"),
            "tray_pose": ((3,), "3 finite numbers [x, y, yaw]"),
            "object_poses": ((n, 3), f"{n} [x, y, yaw] triples of finite numbers (one per packed box)"),
            "object_velocities": ((n, 6), f"{n} rows [vx, vy, vz, wx, wy, wz] of finite numbers (tray frame)"),
        }

    def reset_objects(self, sim: Simulator, held, rng: np.random.Generator, options: Dict[str, Any]) -> Pose:
        cfg, rand = self.config, self.config.randomization
        if cfg.rigid_boxes:
            self._build_boxes()
        friction = rng.uniform(*rand.friction_range) if rand.friction_range[1] > 0 else DEFAULT_FRICTION
        for body, link in [(self._tray_id, -1), *((box, -1) for box in self._box_ids), held]:
            sim.client.changeDynamics(body, link, lateralFriction=friction)

        tray_pose = options.get("tray_pose")
        if tray_pose is None:
            xy = rng.uniform(cfg.tray_xy_low, cfg.tray_xy_high)
            tray_pose = [*xy, rng.uniform(-cfg.tray_yaw_range, cfg.tray_yaw_range)]
        self._place_tray(tray_pose)

        object_poses = options.get("object_poses")
        if object_poses is None:
            object_poses = self._sample(rng, self._occluded_poses, self._objects_problem, "occluder ranges")
        else:
            self._raise_if(self._objects_problem(object_poses))
        self._place_boxes(object_poses, options.get("object_velocities"))

        held_pose = options.get("held_pose")
        if held_pose is None:
            sample = lambda rng: rng.uniform(cfg.start_low, cfg.start_high)  # noqa: E731
            held_pose = self._sample(rng, sample, lambda pose: self._held_problem(pose, object_poses), "start range")
        else:
            self._raise_if(self._held_problem(held_pose, object_poses))
        return self._held_world_pose(held_pose)

    def _occluded_poses(self, rng: np.random.Generator) -> np.ndarray:
        return displaced_occluders(self.config, self._layout, rng)

    @staticmethod
    def _sample(rng: np.random.Generator, draw, problem, ranges: str):
        """Draw until ``problem(draw)`` finds nothing wrong (the draws overlap now and then)."""
        for _ in range(MAX_SAMPLE_TRIES):
            value = draw(rng)
            if problem(value) is None:
                return value
        raise ValueError(f"no valid start in {MAX_SAMPLE_TRIES} draws ({problem(value)}); check the {ranges}")

    @staticmethod
    def _raise_if(problem: Optional[str]) -> None:
        if problem is not None:
            raise ValueError(problem)

    # ------------------------------------------------------------------ start-state geometry
    def _box_obb(self, pose: Sequence[float]) -> tuple:
        """(centre, rotation, half extents) of a packed box resting on the floor at ``[x, y, yaw]``."""
        half = self._half_extents[1]
        return np.array([pose[0], pose[1], half[2]]), euler_to_matrix(0.0, 0.0, pose[2]), half

    def _objects_problem(self, object_poses: np.ndarray) -> Optional[str]:
        """What is wrong with the packed boxes' start (outside the tray, overlaps), or None."""
        obbs = [self._box_obb(pose) for pose in object_poses]
        for i, pose in enumerate(object_poses):
            if np.any(np.abs(pose[:2]) > self._inner_half):
                inner = self._inner_half.round(4).tolist()
                return f"object_poses[{i}] {np.round(pose, 4).tolist()} leaves the tray (inner half size {inner} m)"
            for name, centre, half in self._tray_parts:
                depth = box_penetration(*obbs[i], centre, np.eye(3), half)
                if depth > START_TOLERANCE:
                    return f"object_poses[{i}] interpenetrates the tray's {name} by {depth * 1000:.1f} mm"
            for j in range(i):
                depth = box_penetration(*obbs[i], *obbs[j])
                if depth > START_TOLERANCE:
                    return f"object_poses[{j}] and object_poses[{i}] interpenetrate by {depth * 1000:.1f} mm"
        return None

    def _held_problem(self, held_pose: np.ndarray, object_poses: np.ndarray) -> Optional[str]:
        """What is wrong with the held box's start (into the tray or a packed box), or None."""
        rotation = euler_to_matrix(*held_pose[3:])
        centre = np.array([*self._slot_xy, 0.0]) + held_pose[:3] + rotation[:, 2] * self._heights[0] / 2
        held = (centre, rotation, self._half_extents[0])
        for name, part_centre, half in self._tray_parts:
            depth = box_penetration(*held, part_centre, np.eye(3), half)
            if depth > START_TOLERANCE:
                return f"held_pose interpenetrates the tray's {name} by {depth * 1000:.1f} mm"
        for i, pose in enumerate(object_poses):
            depth = box_penetration(*held, *self._box_obb(pose))
            if depth > START_TOLERANCE:
                return f"held_pose interpenetrates object_poses[{i}] by {depth * 1000:.1f} mm"
        return None

    # ------------------------------------------------------------------ placing bodies
    def _place_tray(self, tray_pose: Sequence[float]) -> None:
        x, y, yaw = (float(v) for v in tray_pose)
        quat = pybullet.getQuaternionFromEuler([0.0, 0.0, yaw])
        self._sim.client.resetBasePositionAndOrientation(self._tray_id, [x, y, FLOOR_THICKNESS], quat)
        self._tray_pose = np.array([x, y, yaw])
        self._tray_pos, self._tray_quat = (x, y, FLOOR_THICKNESS), quat
        self._tray_origin = np.array(self._tray_pos)
        self._tray_rotation = quat_to_matrix(quat)
        self._tray_cos, self._tray_sin = math.cos(yaw), math.sin(yaw)

    def _place_boxes(self, object_poses: np.ndarray, velocities: Optional[np.ndarray] = None) -> None:
        """Boxes at their tray-frame poses, at rest or with tray-frame ``velocities`` (one row of 6 per box)."""
        client, yaw = self._sim.client, self._tray_pose[2]
        world = np.zeros((len(self._box_ids), 2, 3))
        if velocities is not None:  # row vectors: v_world = v_tray @ R^T
            world = velocities.reshape(-1, 2, 3) @ self._tray_rotation.T
        for body, pose, velocity in zip(self._box_ids, object_poses, world.reshape(-1, 6).tolist()):
            centre, _, _ = self._box_obb(pose)
            position = self._tray_origin + self._tray_rotation @ centre
            client.resetBasePositionAndOrientation(
                body, position.tolist(), pybullet.getQuaternionFromEuler([0.0, 0.0, yaw + pose[2]])
            )
            client.resetBaseVelocity(body, velocity[:3], velocity[3:])

    def _held_world_pose(self, held_pose: np.ndarray) -> Pose:
        """World centre and quaternion of the held box from its tray-frame ``held_pose``."""
        quat_rel = pybullet.getQuaternionFromEuler(list(held_pose[3:]))
        axis = quat_to_matrix(quat_rel)[:, 2]
        centre = np.array([*self._slot_xy, 0.0]) + held_pose[:3] + axis * (self._heights[0] / 2)
        return pybullet.multiplyTransforms(self._tray_pos, self._tray_quat, centre.tolist(), quat_rel)

    # ================================================================== every step
    def frame_yaw(self):
        return self._tray_cos, self._tray_sin

    def _object_states(self, held_state: HeldState) -> tuple:
        """Positions, rotations, linear and angular velocities of every object in the tray frame.

        One flat list of floats per object, one array conversion: this runs every step.
        """
        client_id, matrix = self._sim.id, pybullet.getMatrixFromQuaternion
        pos, quat, linvel, angvel = held_state
        values = [*pos, *matrix(quat), *linvel, *angvel]
        for body in self._box_ids:
            pos, quat = pybullet.getBasePositionAndOrientation(body, physicsClientId=client_id)
            linvel, angvel = pybullet.getBaseVelocity(body, physicsClientId=client_id)
            values += [*pos, *matrix(quat), *linvel, *angvel]
        states = np.array(values).reshape(len(self._box_ids) + 1, STATE_WIDTH)
        world_to_tray = self._tray_rotation  # row vectors: v_tray = v_world @ R
        positions = (states[:, 0:3] - self._tray_origin) @ world_to_tray
        rotations = world_to_tray.T @ states[:, 3:12].reshape(-1, 3, 3)
        return positions, rotations, states[:, 12:15] @ world_to_tray, states[:, 15:18] @ world_to_tray

    def observe(self, held_state: HeldState, rng: np.random.Generator):
        """Node rows [held box, packed boxes..., tray] and the measurements of the reward and success test."""
        positions, rotations, linvel, angvel = self._object_states(held_state)
        offsets, distances = keypoints.keypoint_errors(positions, rotations, self._keypoints, self._goals)
        count = len(positions)
        nodes = self._node_template.copy()
        moving = (
            positions,
            rotations[:, :, :2].transpose(0, 2, 1).reshape(count, 6),  # rot6d: the first two columns
            offsets.reshape(count, -1),
            linvel,
            angvel,
        )
        for columns, value in zip(self._moving_features, moving):
            nodes[:count, columns] = value
        noise = self.config.randomization.observation_noise_std
        if noise > 0:
            span = self.layout.pose_span()
            nodes[:count, span] += rng.normal(0.0, noise, (count, span.stop - span.start)).astype(np.float32)
        measurements = self._measure(positions, rotations, distances)
        measurements["alignment_distance"] = keypoints.alignment_distance(offsets[0])  # the held box's
        return nodes, measurements

    def _measure(self, positions: np.ndarray, rotations: np.ndarray, distances: np.ndarray) -> Dict[str, Any]:
        """Seating of the held box and placement of the others. Few numpy calls on small arrays, plain
        floats elsewhere: this runs every step."""
        cfg = self.config
        bx, by, bz = (positions[0] - rotations[0, :, 2] * (self._heights[0] / 2)).tolist()  # held box bottom
        lateral_error = math.hypot(bx - self._slot_xy[0], by - self._slot_xy[1])
        seated = lateral_error <= cfg.success_lateral_tolerance and bz <= cfg.success_depth_tolerance
        errors = positions[1:] - self._goal_positions[1:]
        position_errors = np.sqrt((errors * errors).sum(axis=1)).tolist()
        # trace(S^T R) for every packed box and quarter turn S gives the rotation angle to the nearest goal.
        traces = (rotations[1:].reshape(-1, 9) @ self._symmetry_rows).max(axis=1).tolist()
        orientation_errors = [math.acos(min(1.0, max(-1.0, (trace - 1.0) / 2.0))) for trace in traces]
        position_tolerance, yaw_tolerance = cfg.object_position_tolerance, cfg.object_yaw_tolerance
        in_place = sum(
            p <= position_tolerance and o <= yaw_tolerance for p, o in zip(position_errors, orientation_errors)
        )
        distance_list = distances.tolist()
        return {
            "keypoint_distances": distance_list,
            "keypoint_distance": sum(distance_list) / len(distance_list),
            "lateral_error": lateral_error,
            "depth_remaining": bz,
            "insertion_distance": math.hypot(lateral_error, bz),
            "is_seated": seated,
            "objects_in_place": in_place,
            "fraction_in_place": (int(seated) + in_place) / (cfg.num_objects + 1),
            "is_wedged": seated and in_place < cfg.num_objects,
            "max_position_error": max(position_errors),
            "max_orientation_error": max(orientation_errors),
            "out_of_tray": bool((np.abs(positions[1:, :2]) > self._inner_half).any()),
        }

    def evaluate(self, measurements: Dict[str, Any], action: np.ndarray, contact_force: float):
        cfg = self.config
        success = measurements["is_seated"] and measurements["objects_in_place"] == cfg.num_objects
        terms = self._reward.terms(measurements["keypoint_distances"], self._weights, success, action, contact_force)
        terms["insertion"] = cfg.insertion_weight * self._reward.kernel(measurements["insertion_distance"])
        if cfg.alignment_weight > 0:
            terms["alignment"] = cfg.alignment_weight * self._reward.kernel(measurements["alignment_distance"])
        if cfg.in_place_weight > 0:
            terms["in_place"] = -cfg.in_place_weight * (1.0 - measurements["fraction_in_place"])
        left = measurements["out_of_tray"] or measurements["insertion_distance"] > cfg.workspace_radius
        return success, terms, left

    def dead_end(self, measurements: Dict[str, Any]) -> bool:
        """With ``terminate_when_wedged``: the held box is seated while a packed box is out of place."""
        return self.config.terminate_when_wedged and measurements["is_wedged"]

    # ================================================================== state
    def start_state(self, held_pose: Pose) -> Dict[str, list]:
        inverse_pos, inverse_quat = pybullet.invertTransform(self._tray_pos, self._tray_quat)
        centre, quat_rel = pybullet.multiplyTransforms(inverse_pos, inverse_quat, *held_pose)
        bottom = np.asarray(centre) - quat_to_matrix(quat_rel)[:, 2] * (self._heights[0] / 2)
        bottom[:2] -= self._slot_xy
        rpy = pybullet.getEulerFromQuaternion(quat_rel)
        return {
            "tray_pose": self._tray_pose.tolist(),
            "object_poses": self._object_poses(inverse_pos, inverse_quat),
            "object_velocities": self._object_velocities(),
            "held_pose": [*bottom.tolist(), *rpy],
        }

    def _object_velocities(self) -> List[List[float]]:
        """Each packed box's [vx, vy, vz, wx, wy, wz] in the tray frame."""
        client = self._sim.client
        world = np.array([[*v, *w] for v, w in (client.getBaseVelocity(body) for body in self._box_ids)])
        return (world.reshape(-1, 2, 3) @ self._tray_rotation).reshape(-1, 6).tolist()

    def _object_poses(self, inverse_pos, inverse_quat) -> List[List[float]]:
        poses = []
        for body in self._box_ids:
            world = self._sim.client.getBasePositionAndOrientation(body)
            (x, y, _), quat = pybullet.multiplyTransforms(inverse_pos, inverse_quat, *world)
            rotation = self._most_upright(quat_to_matrix(quat))
            poses.append([x, y, math.atan2(rotation[1, 0], rotation[0, 0])])
        return poses

    def _most_upright(self, rotation: np.ndarray) -> np.ndarray:
        """The symmetric equivalent of a packed box's orientation whose axis points most nearly up, and of
        those the one nearest the tray's axes (yaw within +-45 deg): a cube rolled onto a side is the same
        box standing upright, so its [x, y, yaw] describes it exactly."""
        candidates = rotation @ self._box_symmetries  # (S, 3, 3)
        up = candidates[:, 2, 2]
        upright = candidates[up >= up.max() - 1e-9]
        return upright[int(np.argmax(np.trace(upright, axis1=1, axis2=2)))]

    def goal_poses(self) -> Dict[str, list]:
        """The goal arrangement in the tray frame: the held box's ``slot`` [x, y] on the floor and each
        packed box's ``object_poses`` [x, y, yaw] (the form of ``start_state``; every orientation that maps
        a box onto itself is in place too: any quarter turn, and for a cube any face down)."""
        return {
            "slot": self._slot_xy.tolist(),
            "object_poses": [[x, y, 0.0] for x, y in self._goal_xy[1:].tolist()],
        }

    def perturb_start(self, start: Dict[str, Any], rng: np.random.Generator, scale: float) -> Dict[str, Any]:
        """Each packed box in turn (random order) moved by a normal step with standard deviations ``scale``
        times the largest occluder shift (x, y) and yaw; a step that would leave the tray or overlap a box
        or the held box is not taken, so boxes drift only into free space (the slot, once emptied)."""
        cfg = self.config
        poses = np.array(start["object_poses"], dtype=np.float64)
        held_pose = np.asarray(start["held_pose"], dtype=np.float64)
        shift = cfg.occluder_shift_range[1]
        std = scale * np.array([shift, shift, cfg.occluder_yaw_range])
        for i in rng.permutation(len(poses)):
            proposal = poses.copy()
            proposal[i] += rng.normal(0.0, std)
            if self._objects_problem(proposal) is None and self._held_problem(held_pose, proposal) is None:
                poses = proposal
        return {**start, "object_poses": poses.tolist()}

    def save_state(self) -> Dict[str, Any]:
        return {"tray_pose": self._tray_pose.copy(), "boxes_built": self._boxes_built}

    def restore_problem(self, state: Dict[str, Any]) -> Optional[str]:
        if state["boxes_built"] != self._boxes_built:
            return (
                "the saved state was taken in an earlier episode; with rigid_boxes=True every reset builds "
                "the boxes anew, so a snapshot restores only within its episode (rigid_boxes=False lifts this)"
            )
        return None

    def restore_state(self, state: Dict[str, Any]) -> None:
        self._place_tray(state["tray_pose"])

    def camera(self) -> Camera:
        x, y, z = self._tray_pos
        yaw = math.degrees(self._tray_pose[2]) + 30.0
        return Camera(target=[x, y, z + 0.02], distance=0.5, yaw=yaw, pitch=-40.0)


class PackedObjectsEnv(TaskEnv):
    """Gymnasium environment of the packed-objects task with delta end-effector pose actions.

    Keyword arguments are the fields of :class:`envs.config.PackedObjectsConfig` (nested
    ``reward``, ``randomization`` and ``sim`` accept dicts), or pass a ready ``config``.
    """

    task_class = PackedObjectsTask
    make_config = staticmethod(make_packed_objects_config)
    validate_config = staticmethod(validate_packed_objects)
