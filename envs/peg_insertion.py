"""Peg insertion: a peg held by a robot goes into a hole with a small clearance.

The task frame is the hole frame (origin at the centre of the hole's top
opening, +z pointing out of the hole). Observations and actions are both
expressed in it, so the hole's randomized pose in the world changes nothing
for the policy except what the robot must do to follow it.

Start states are written as ``peg_pose = [x, y, z, roll, pitch, yaw]``: the
peg tip's position relative to the centre of the hole opening (z > 0 above
the hole, z < 0 partly inserted) and the peg's orientation relative to the
goal orientation (extrinsic roll/pitch/yaw in the hole frame). The fully
inserted goal is ``[0, 0, -hole_depth, 0, 0, 0]``.

``PegInsertionTask`` is the scene, start states, observation, reward and success;
``envs.base.InsertionEnv`` runs it (robot, action, step, state, rendering).
"""

from __future__ import annotations

import math
from typing import Any, Dict, Optional, Sequence

import numpy as np
import pybullet

from envs import graph_obs, keypoints
from envs.base import TaskEnv
from envs.config import PegInsertionConfig, alignment_weight, make_peg_insertion_config, validate
from envs.geometry import euler_to_matrix, quat_conjugate, quat_multiply, quat_to_matrix, yaw_rotate
from envs.rewards import KeypointReward
from envs.robots import HeldObjectSpec
from envs.scene import FLOOR_THICKNESS, add_hole
from envs.sim import Camera, Simulator
from envs.task import HeldState, OptionShapes, Pose, SceneSpec, Task

PEG_MASS = 0.1
DEFAULT_FRICTION = 0.5
IDENTITY = np.eye(3)[None]  # the goal orientation in the hole frame, for one object
# Metres of slack in the start-state checks: a state the engine settled into (contacts resolve with
# a fraction of a millimetre of penetration, e.g. the inserted peg resting on the floor) must be a
# valid start again, or get_start_state() -> reset() would fail on the env's own states.
START_TOLERANCE = 5e-4


class PegInsertionTask(Task):
    """A peg (node 0, held) and a hole (node 1); the keypoint reward pulls the peg's axis into the hole."""

    max_nodes = 2

    def __init__(self, config: PegInsertionConfig):
        super().__init__(config)
        self.layout = graph_obs.NodeLayout(config.num_keypoints)
        self._reward = KeypointReward(config.reward)
        self._alignment_weight = alignment_weight(config)
        self._geometry: Optional[Dict[str, float]] = None  # peg radius/length and clearance of the built bodies

    # ================================================================== scene
    def sample_scene(self, rng: np.random.Generator) -> SceneSpec:
        cfg, rand = self.config, self.config.randomization
        scale = rng.uniform(*rand.peg_size_scale_range)
        clearance = rng.uniform(*rand.clearance_range) if rand.clearance_range[1] > 0 else cfg.clearance
        radius, length = round(cfg.peg_radius * scale, 9), round(cfg.peg_length * scale, 9)
        geometry = (("radius", radius), ("length", length), ("clearance", round(clearance, 9)))
        return SceneSpec(HeldObjectSpec(cfg.peg_shape, radius, length, PEG_MASS), geometry)

    def build_scene(self, sim: Simulator, scene: SceneSpec) -> None:
        self._sim = sim
        self._geometry = dict(scene.geometry)
        half_width = self._geometry["radius"] + self._geometry["clearance"]
        self._hole_id = add_hole(sim, half_width, self.config.hole_depth, self.config.hole_wall_thickness)
        # Keypoints in the peg frame (the first at the tip) and the poses the peg fits in (symmetry).
        cfg, length = self.config, self._geometry["length"]
        points = keypoints.local_keypoints(
            cfg.peg_shape, self._geometry["radius"], length, cfg.num_keypoints, cfg.keypoint_spacing
        )
        self._keypoints = points[None]  # (1 object, K, 3)
        self._symmetries = keypoints.symmetry_rotations(cfg.peg_shape)
        self._hole_node = self.layout.row(
            graph_obs.TYPE_RECEPTACLE, rot6d=[1, 0, 0, 0, 1, 0], size=[half_width, self.config.hole_depth]
        )

    # ================================================================== reset
    def option_shapes(self) -> OptionShapes:
        return {
            "peg_pose": ((6,), "6 finite numbers [x, y, z, roll, pitch, yaw]"),
            "hole_pose": ((3,), "3 finite numbers [x, y, yaw]"),
        }

    def reset_objects(self, sim: Simulator, held, rng: np.random.Generator, options: Dict[str, Any]) -> Pose:
        cfg, rand = self.config, self.config.randomization
        friction = rng.uniform(*rand.friction_range) if rand.friction_range[1] > 0 else DEFAULT_FRICTION
        sim.client.changeDynamics(self._hole_id, -1, lateralFriction=friction)
        sim.client.changeDynamics(*held, lateralFriction=friction)

        hole_pose = options.get("hole_pose")
        if hole_pose is None:
            xy = rng.uniform(cfg.hole_xy_low, cfg.hole_xy_high)
            hole_pose = [*xy, rng.uniform(-cfg.hole_yaw_range, cfg.hole_yaw_range)]
        self._place_hole(hole_pose)

        peg_pose = options.get("peg_pose")
        if peg_pose is None:
            peg_pose = rng.uniform(cfg.start_low, cfg.start_high)
        self._check_peg_pose(peg_pose)
        return self._peg_world_pose(peg_pose)

    def _check_peg_pose(self, peg_pose: np.ndarray) -> None:
        """A start inside the hole must fit through the opening; none may be below the floor or cut
        into the hole's top face (e.g. a peg lying across the opening)."""
        depth, clearance = self.config.hole_depth, self._geometry["clearance"]
        tip, axis = np.asarray(peg_pose[:3]), euler_to_matrix(*peg_pose[3:])[:, 2]
        if tip[2] < -depth - START_TOLERANCE:
            raise ValueError(f"peg_pose z={tip[2]:.4f} is below the hole floor (-hole_depth={-depth})")
        tolerance = clearance + START_TOLERANCE
        if tip[2] < 0:
            at_opening = tip + axis * (-tip[2] / axis[2]) if axis[2] > 1e-6 else tip + np.inf
            if np.abs(tip[:2]).max() > tolerance or np.abs(at_opening[:2]).max() > tolerance:
                raise ValueError(
                    "peg_pose puts the peg inside the hole but not through the opening: "
                    f"lateral offsets must be within the clearance ({clearance} m)"
                )
        elif self._max_offset_below_top(tip, axis) > tolerance:
            raise ValueError(
                f"peg_pose {np.round(peg_pose, 4).tolist()} puts the peg into the hole's top face: "
                f"a start above the hole may reach below its top (z < 0) only through the opening"
            )

    def _max_offset_below_top(self, tip: np.ndarray, axis: np.ndarray) -> float:
        """Largest lateral offset (max over x, y) of the peg's axis where its body reaches below z = 0.

        Along the axis s in [0, length] the axis point is tip + s * axis and the body reaches
        ``sink`` below it (the tilted cross-section); both are linear in s, so the part below z = 0
        is one interval and the largest offset sits at one of its ends.
        """
        length, radius = self._geometry["length"], self._geometry["radius"]
        half_diagonal = radius * (math.sqrt(2.0) if self.config.peg_shape == "box" else 1.0)
        sink = half_diagonal * math.sqrt(max(0.0, 1.0 - axis[2] ** 2))
        low_start, low_end = tip[2] - sink, tip[2] + length * axis[2] - sink
        if min(low_start, low_end) >= 0:
            return 0.0
        crossing = length * low_start / (low_start - low_end) if low_start != low_end else 0.0
        ends = (0.0, crossing) if low_start < 0 else (crossing, length)
        return max(float(np.abs((tip + s * axis)[:2]).max()) for s in ends)

    def _place_hole(self, hole_pose: Sequence[float]) -> None:
        x, y, yaw = (float(v) for v in hole_pose)
        top = self.config.hole_depth + FLOOR_THICKNESS
        quat = pybullet.getQuaternionFromEuler([0.0, 0.0, yaw])
        self._sim.client.resetBasePositionAndOrientation(self._hole_id, [x, y, top], quat)
        self._hole_pose = np.array([x, y, yaw])
        self._hole_pos, self._hole_quat = (x, y, top), quat
        self._hole_cos, self._hole_sin = math.cos(yaw), math.sin(yaw)
        goal_position = np.array([[0.0, 0.0, -self.config.hole_depth + self._geometry["length"] / 2]])
        self._goals = keypoints.goal_keypoints(goal_position, IDENTITY, self._keypoints, self._symmetries)

    def _peg_world_pose(self, peg_pose: np.ndarray) -> Pose:
        """World position and quaternion of the peg centre, from a hole-frame ``peg_pose``."""
        quat_rel = pybullet.getQuaternionFromEuler(list(peg_pose[3:]))
        axis = quat_to_matrix(quat_rel)[:, 2]
        center_rel = np.asarray(peg_pose[:3]) + axis * (self._geometry["length"] / 2)
        return pybullet.multiplyTransforms(self._hole_pos, self._hole_quat, center_rel.tolist(), quat_rel)

    # ================================================================== every step
    def frame_yaw(self):
        return self._hole_cos, self._hole_sin

    def observe(self, held_state: HeldState, rng: np.random.Generator):
        """Node rows [peg, hole] and the measurements the reward and success test need.

        Plain-float math: this runs every step.
        """
        cfg, length = self.config, self._geometry["length"]
        pos, quat, linvel, angvel = held_state
        c, s = self._hole_cos, -self._hole_sin  # world -> hole frame: rotate by -yaw
        hx, hy, hz = self._hole_pos
        cx, cy = yaw_rotate(c, s, pos[0] - hx, pos[1] - hy)
        cz = pos[2] - hz
        m = pybullet.getMatrixFromQuaternion(quat_multiply(quat_conjugate(self._hole_quat), quat))
        ax, ay, az = m[2], m[5], m[8]  # peg axis in the hole frame
        offsets, distance = keypoints.keypoint_errors(
            np.array([[cx, cy, cz]]),
            np.array(m).reshape(1, 3, 3),
            self._keypoints,
            self._goals,
        )
        peg = self.layout.row(
            graph_obs.TYPE_CONTROLLED,
            pos=(cx, cy, cz),
            rot6d=(m[0], m[3], m[6], m[1], m[4], m[7]),
            keypoints=offsets.reshape(-1),
            linvel=(*yaw_rotate(c, s, linvel[0], linvel[1]), linvel[2]),
            angvel=(*yaw_rotate(c, s, angvel[0], angvel[1]), angvel[2]),
            size=(self._geometry["radius"], length),
        )
        noise = cfg.randomization.observation_noise_std
        if noise > 0:
            span = self.layout.pose_span()
            peg[span] += rng.normal(0.0, noise, span.stop - span.start).astype(np.float32)
        tx, ty, tz = cx - ax * length / 2, cy - ay * length / 2, cz - az * length / 2
        measurements = {
            "keypoint_distance": float(distance[0]),
            "alignment_distance": keypoints.alignment_distance(offsets[0]),
            "lateral_error": math.hypot(tx, ty),
            "depth_remaining": tz + cfg.hole_depth,
            "tip_distance": math.sqrt(tx * tx + ty * ty + tz * tz),
        }
        return np.stack([peg, self._hole_node]), measurements

    def evaluate(self, measurements: Dict[str, float], action: np.ndarray, contact_force: float):
        cfg = self.config
        success = (
            measurements["lateral_error"] <= cfg.success_lateral_tolerance
            and measurements["depth_remaining"] <= cfg.success_depth_tolerance
        )
        terms = self._reward.terms((measurements["keypoint_distance"],), (1.0,), success, action, contact_force)
        if self._alignment_weight > 0:
            terms["alignment"] = self._alignment_weight * self._reward.kernel(measurements["alignment_distance"])
        return success, terms, measurements["tip_distance"] > cfg.workspace_radius

    # ================================================================== state
    def start_state(self, held_pose: Pose) -> Dict[str, list]:
        pos, quat = held_pose
        inverse_pos, inverse_quat = pybullet.invertTransform(self._hole_pos, self._hole_quat)
        center, quat_rel = pybullet.multiplyTransforms(inverse_pos, inverse_quat, pos, quat)
        tip = np.asarray(center) - quat_to_matrix(quat_rel)[:, 2] * self._geometry["length"] / 2
        rpy = pybullet.getEulerFromQuaternion(quat_rel)
        return {"hole_pose": self._hole_pose.tolist(), "peg_pose": [*tip.tolist(), *rpy]}

    def save_state(self) -> Dict[str, Any]:
        return {"hole_pose": self._hole_pose.copy()}

    def restore_state(self, state: Dict[str, Any]) -> None:
        self._place_hole(state["hole_pose"])

    def camera(self) -> Camera:
        x, y, z = self._hole_pos
        yaw = math.degrees(self._hole_pose[2]) + 50.0
        return Camera(target=[x, y, z + 0.02], distance=0.4, yaw=yaw, pitch=-25.0)


class PegInsertionEnv(TaskEnv):
    """Gymnasium environment for peg-in-hole insertion with delta end-effector pose actions.

    Keyword arguments are the fields of :class:`envs.config.PegInsertionConfig`
    (nested ``reward``, ``randomization`` and ``sim`` accept dicts), or pass a
    ready ``config``.
    """

    task_class = PegInsertionTask
    make_config = staticmethod(make_peg_insertion_config)
    validate_config = staticmethod(validate)
    max_nodes = PegInsertionTask.max_nodes


def start_at_difficulty(config: PegInsertionConfig, difficulty: float, rng: np.random.Generator) -> Dict[str, list]:
    """Reset options of a start at ``difficulty`` in [0, 1], for near-goal curricula.

    0 is the goal (fully inserted), 1 the task's own start distribution (``start_low/high``). The
    path first withdraws the peg along the hole axis (straight, centred: every such start fits
    through the opening whatever the clearance), then, above the opening, widens the start ranges
    in proportion, so the hardest starts are exactly the full distribution.
    """
    if not 0.0 <= difficulty <= 1.0:
        raise ValueError(f"difficulty must be in [0, 1], got {difficulty}")
    depth, top = config.hole_depth, config.start_high[2]
    inside = depth / (depth + top)  # the share of the path spent inside the hole
    if difficulty <= inside:
        pose = [0.0, 0.0, -depth + difficulty * (depth + top), 0.0, 0.0, 0.0]
    else:
        scale = (difficulty - inside) / (1.0 - inside)
        pose = rng.uniform(np.asarray(config.start_low) * scale, np.asarray(config.start_high) * scale).tolist()
    return {"peg_pose": pose}
