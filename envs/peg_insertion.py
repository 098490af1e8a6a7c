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
"""

from __future__ import annotations

import math
from typing import Any, Dict, Optional

import gymnasium as gym
import numpy as np
import pybullet
from gymnasium import spaces

from envs import graph_obs
from envs.config import PegInsertionConfig, make_peg_insertion_config, validate
from envs.geometry import (
    euler_to_matrix,
    quat_angle,
    quat_conjugate,
    quat_from_rotvec,
    quat_multiply,
    quat_slerp,
    quat_to_matrix,
    yaw_rotate,
)
from envs.rewards import KeypointReward
from envs.robots import ROBOT_CLASSES, PegSpec, make_robot
from envs.sim import Camera, Simulator

RESET_OPTION_KEYS = ("peg_pose", "hole_pose")
FLOOR_THICKNESS = 0.01
PEG_MASS = 0.1
DEFAULT_FRICTION = 0.5
COMMAND_LEAD_STEPS = 2.0  # the commanded pose may lead the measured one by at most this many max-size actions


class PegInsertionEnv(gym.Env):
    """Gymnasium environment for peg-in-hole insertion with delta end-effector pose actions.

    Keyword arguments are the fields of :class:`envs.config.PegInsertionConfig`
    (nested ``reward``, ``randomization`` and ``sim`` accept dicts), or pass a
    ready ``config``.
    """

    metadata = {"render_modes": ["human", "rgb_array"], "render_fps": 25}
    max_nodes = 2

    def __init__(self, render_mode: Optional[str] = None, config: Optional[PegInsertionConfig] = None, **overrides):
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode={render_mode!r} is not one of {self.metadata['render_modes']}")
        if config is not None and overrides:
            raise ValueError("pass either config=... or keyword overrides, not both")
        self.config = validate(config) if config is not None else make_peg_insertion_config(**overrides)
        self.render_mode = render_mode
        cfg = self.config

        self._robot_cls_defaults(cfg.robot)
        self.sim = Simulator(cfg.sim, self._time_step, self._substeps, gui=render_mode == "human")
        self.robot = make_robot(cfg.robot, self.sim)

        self.action_space = spaces.Box(-1.0, 1.0, (6,), np.float32)
        self._action_mask = np.asarray(cfg.action_mask, dtype=np.float64)
        self._action_scale = self._action_mask * ([cfg.max_translation] * 3 + [cfg.max_rotation] * 3)
        self._graph = graph_obs.GraphBuilder(self.max_nodes, cfg.num_keypoints)
        self._reward = KeypointReward(cfg.reward)
        if cfg.obs_mode == "graph":
            self.observation_space = graph_obs.graph_space(self.max_nodes, cfg.num_keypoints)
        else:
            self.observation_space = graph_obs.flat_space(self.max_nodes, cfg.num_keypoints)

        self._geometry: Optional[Dict[str, float]] = None  # peg radius/length and clearance of the built bodies
        self._add_ground()
        self._needs_reset = True

    def _robot_cls_defaults(self, robot: str) -> None:
        robot_cls = ROBOT_CLASSES[robot]
        self._time_step = self.config.sim.time_step or robot_cls.default_time_step
        self._substeps = self.config.sim.substeps or robot_cls.default_substeps

    # ================================================================== scene
    def _add_ground(self) -> None:
        plane = self.sim.add_body("plane", self.sim.client.loadURDF("plane.urdf"))
        self.sim.client.setCollisionFilterGroupMask(plane, -1, 0, 0)  # visual only: nothing rests on it

    def _build_bodies(self, radius: float, length: float, clearance: float) -> None:
        """(Re)create peg, hole and robot when the geometry changed (randomization), else keep them."""
        geometry = {"radius": radius, "length": length, "clearance": clearance}
        if geometry == self._geometry:
            return
        if self._geometry is not None:  # rebuild from scratch: bodies and robot
            self.sim.clear()
            self._add_ground()
            self.robot = make_robot(self.config.robot, self.sim)
        self._geometry = geometry
        self._hole_id = self.sim.add_body("hole", self._create_hole(radius + clearance))
        self.robot.build(PegSpec(self.config.peg_shape, radius, length, PEG_MASS))
        self._peg_body, self._peg_link = self.robot.peg_body, self.robot.peg_link
        self.sim.set_contact_properties(self._peg_body, self._peg_link)
        # Keypoints along the peg axis, measured from the peg centre: the first one is the tip.
        self._keypoint_offsets = [
            -length / 2.0 + self.config.keypoint_spacing * k for k in range(self.config.num_keypoints)
        ]

    def _create_hole(self, half_width: float) -> int:
        """Four walls and a floor of boxes around a square opening of half-width ``half_width``."""
        depth, wall = self.config.hole_depth, self.config.hole_wall_thickness
        outer = half_width + wall
        half_extents = [[wall / 2, outer, depth / 2]] * 2 + [[half_width, wall / 2, depth / 2]] * 2
        half_extents += [[outer, outer, FLOOR_THICKNESS / 2]]
        offset = half_width + wall / 2
        positions = [
            [offset, 0, -depth / 2],
            [-offset, 0, -depth / 2],
            [0, offset, -depth / 2],
            [0, -offset, -depth / 2],
            [0, 0, -depth - FLOOR_THICKNESS / 2],
        ]
        client = self.sim.client
        collision = client.createCollisionShapeArray(
            shapeTypes=[pybullet.GEOM_BOX] * 5, halfExtents=half_extents, collisionFramePositions=positions
        )
        visual = client.createVisualShapeArray(
            shapeTypes=[pybullet.GEOM_BOX] * 5,
            halfExtents=half_extents,
            visualFramePositions=positions,
            rgbaColors=[[0.55, 0.6, 0.65, 1.0]] * 4 + [[0.35, 0.38, 0.42, 1.0]],
        )
        body = client.createMultiBody(
            baseMass=0.0,
            baseCollisionShapeIndex=collision,
            baseVisualShapeIndex=visual,
            basePosition=[0.5, 0.0, depth + FLOOR_THICKNESS],
        )
        self.sim.set_contact_properties(body)
        return body

    # ================================================================== reset
    def reset(self, *, seed: Optional[int] = None, options: Optional[Dict[str, Any]] = None):
        super().reset(seed=seed)
        options = self._check_options(options)
        cfg, rand, rng = self.config, self.config.randomization, self.np_random

        scale = rng.uniform(*rand.peg_size_scale_range)
        clearance = rng.uniform(*rand.clearance_range) if rand.clearance_range[1] > 0 else cfg.clearance
        self._build_bodies(round(cfg.peg_radius * scale, 9), round(cfg.peg_length * scale, 9), round(clearance, 9))
        friction = rng.uniform(*rand.friction_range) if rand.friction_range[1] > 0 else DEFAULT_FRICTION
        self.sim.client.changeDynamics(self._hole_id, -1, lateralFriction=friction)
        self.sim.client.changeDynamics(self._peg_body, self._peg_link, lateralFriction=friction)

        hole_pose = options.get("hole_pose")
        if hole_pose is None:
            hole_pose = [
                *rng.uniform(cfg.hole_xy_low, cfg.hole_xy_high),
                rng.uniform(-cfg.hole_yaw_range, cfg.hole_yaw_range),
            ]
        self._place_hole(hole_pose)

        peg_pose = options.get("peg_pose")
        if peg_pose is None:
            peg_pose = rng.uniform(cfg.start_low, cfg.start_high)
        self._check_peg_pose(peg_pose)
        pos, quat = self._peg_world_pose(peg_pose)
        self.robot.reset(pos, quat)
        self._command_pos, self._command_quat = pos, quat
        self._needs_reset = False
        self._elapsed_steps = 0
        observation, measurements = self._observe()
        return observation, self._info(measurements, None)

    def _check_options(self, options: Optional[Dict[str, Any]]) -> Dict[str, Any]:
        if options is None:
            return {}
        if not isinstance(options, dict):
            raise ValueError(f"reset options must be a dict, got {type(options).__name__}")
        unknown = sorted(set(options) - set(RESET_OPTION_KEYS))
        if unknown:
            raise ValueError(f"unknown reset option(s) {unknown}; valid options are {list(RESET_OPTION_KEYS)}")
        checked = {}
        for key, size in (("peg_pose", 6), ("hole_pose", 3)):
            if options.get(key) is None:
                continue
            try:
                value = np.asarray(options[key], dtype=np.float64)
            except (TypeError, ValueError):
                raise ValueError(f"reset option {key!r} must be {size} numbers, got {options[key]!r}") from None
            if value.shape != (size,) or not np.all(np.isfinite(value)):
                raise ValueError(f"reset option {key!r} must be {size} finite numbers, got {options[key]!r}")
            checked[key] = value
        return checked

    def _check_peg_pose(self, peg_pose: np.ndarray) -> None:
        """A start inside the hole must fit through the opening; none may be below the floor."""
        depth, clearance = self.config.hole_depth, self._geometry["clearance"]
        tip, axis = np.asarray(peg_pose[:3]), euler_to_matrix(*peg_pose[3:])[:, 2]
        if tip[2] < -depth - 1e-9:
            raise ValueError(f"peg_pose z={tip[2]:.4f} is below the hole floor (-hole_depth={-depth})")
        if tip[2] < 0:
            at_opening = tip + axis * (-tip[2] / axis[2]) if axis[2] > 1e-6 else tip + np.inf
            tolerance = clearance + 1e-6
            if np.abs(tip[:2]).max() > tolerance or np.abs(at_opening[:2]).max() > tolerance:
                raise ValueError(
                    "peg_pose puts the peg inside the hole but not through the opening: "
                    f"lateral offsets must be within the clearance ({clearance} m)"
                )

    def _place_hole(self, hole_pose) -> None:
        x, y, yaw = (float(v) for v in hole_pose)
        top = self.config.hole_depth + FLOOR_THICKNESS
        quat = pybullet.getQuaternionFromEuler([0.0, 0.0, yaw])
        self.sim.client.resetBasePositionAndOrientation(self._hole_id, [x, y, top], quat)
        self._hole_pose = np.array([x, y, yaw])
        self._hole_pos, self._hole_quat = (x, y, top), quat
        self._hole_cos, self._hole_sin = math.cos(yaw), math.sin(yaw)
        self._goal_center_z = -self.config.hole_depth + self._geometry["length"] / 2
        half_width = self._geometry["radius"] + self._geometry["clearance"]
        self._hole_node = np.zeros(self._graph.node_dim, np.float32)
        self._hole_node[graph_obs.TYPE_RECEPTACLE] = 1.0
        self._hole_node[6:12] = [1, 0, 0, 0, 1, 0]
        self._hole_node[-2:] = [half_width, self.config.hole_depth]

    def _peg_world_pose(self, peg_pose: np.ndarray):
        """World position and quaternion of the peg centre, from a hole-frame ``peg_pose``."""
        quat_rel = pybullet.getQuaternionFromEuler(list(peg_pose[3:]))
        axis = quat_to_matrix(quat_rel)[:, 2]
        center_rel = np.asarray(peg_pose[:3]) + axis * (self._geometry["length"] / 2)
        return pybullet.multiplyTransforms(self._hole_pos, self._hole_quat, center_rel.tolist(), quat_rel)

    # ================================================================== step
    def step(self, action):
        if self._needs_reset:
            raise RuntimeError("call reset() before step() (the episode ended or never started)")
        action = self._check_action(action)
        self._apply_action(action)
        self.sim.step()
        self._elapsed_steps += 1
        observation, m = self._observe()
        success = (
            m["lateral_error"] <= self.config.success_lateral_tolerance
            and m["depth_remaining"] <= self.config.success_depth_tolerance
        )
        m["is_success"] = success
        contact_force = self._contact_force()
        terms = self._reward.terms(m["keypoint_distance"], success, action * self._action_mask, contact_force)
        m["contact_force"] = contact_force
        left = self.config.terminate_out_of_workspace and m["tip_distance"] > self.config.workspace_radius
        terminated = bool((success and self.config.terminate_on_success) or left)
        self._needs_reset = terminated
        info = self._info(m, terms)
        info["out_of_workspace"] = bool(left)
        info["ik_residual"] = getattr(
            self.robot, "last_residual", 0.0
        )  # Panda: position error the IK step started from
        return observation, float(sum(terms.values())), terminated, False, info

    def _check_action(self, action) -> np.ndarray:
        try:
            action = np.asarray(action, dtype=np.float64)
        except (TypeError, ValueError):
            raise ValueError(f"action must be 6 numbers, got {action!r}") from None
        if action.shape != (6,):
            raise ValueError(f"action must have shape (6,), got shape {action.shape}")
        if not np.isfinite(action).all():
            raise ValueError(f"action contains NaN or Inf: {action.tolist()}")
        return action.clip(-1.0, 1.0)

    def _apply_action(self, action: np.ndarray) -> None:
        """Move the commanded pose by the (masked, scaled) delta, expressed in the hole frame.

        The command integrates deltas so masked DoFs hold their value, but it
        may lead the measured pose by at most ``COMMAND_LEAD_STEPS`` actions:
        pushing against a wall builds a bounded force instead of winding up.
        Plain-float math: this runs every step.
        """
        dx, dy, dz, rx, ry, rz = (action * self._action_scale).tolist()
        c, s = self._hole_cos, self._hole_sin
        dx, dy = yaw_rotate(c, s, dx, dy)
        rx, ry = yaw_rotate(c, s, rx, ry)
        px, py, pz = self._command_pos
        target_pos = (px + dx, py + dy, pz + dz)
        target_quat = quat_multiply(quat_from_rotvec(rx, ry, rz), self._command_quat)

        pos, quat = self._measured_pose  # no physics step since _observe measured it
        lead = math.dist(target_pos, pos)
        max_lead = COMMAND_LEAD_STEPS * self.config.max_translation
        if lead > max_lead:
            f = max_lead / lead
            target_pos = tuple(p + f * (t - p) for p, t in zip(pos, target_pos))
        angle = quat_angle(target_quat, quat)
        max_angle = COMMAND_LEAD_STEPS * self.config.max_rotation
        if angle > max_angle:
            target_quat = quat_slerp(quat, target_quat, max_angle / angle)
        self._command_pos, self._command_quat = target_pos, target_quat
        self.robot.command(target_pos, target_quat, current=self._measured_pose)

    def _contact_force(self) -> float:
        contacts = pybullet.getContactPoints(
            bodyA=self._peg_body, linkIndexA=self._peg_link, physicsClientId=self.sim.id
        )
        return float(sum(contact[9] for contact in contacts))

    # ================================================================== observation
    def _observe(self):
        """Observation and the measurements the reward and success test need (see ``envs/graph_obs.py``)."""
        cfg, length = self.config, self._geometry["length"]
        pos, quat, linvel, angvel = self.robot.peg_state()
        self._measured_pose = (pos, quat)
        c, s = self._hole_cos, -self._hole_sin  # world -> hole frame: rotate by -yaw
        hx, hy, hz = self._hole_pos
        cx, cy = yaw_rotate(c, s, pos[0] - hx, pos[1] - hy)
        cz = pos[2] - hz
        m = pybullet.getMatrixFromQuaternion(quat_multiply(quat_conjugate(self._hole_quat), quat))
        ax, ay, az = m[2], m[5], m[8]  # peg axis in the hole frame
        row = [1.0, 0.0, 0.0, cx, cy, cz, m[0], m[3], m[6], m[1], m[4], m[7]]
        distance = 0.0
        goal_z = self._goal_center_z
        for o in self._keypoint_offsets:
            ox, oy, oz = cx + o * ax, cy + o * ay, cz + o * az - goal_z - o
            row += (ox, oy, oz)
            distance += math.sqrt(ox * ox + oy * oy + oz * oz)
        row += (
            *yaw_rotate(c, s, linvel[0], linvel[1]),
            linvel[2],
            *yaw_rotate(c, s, angvel[0], angvel[1]),
            angvel[2],
            self._geometry["radius"],
            length,
        )
        peg = np.array(row, dtype=np.float32)
        noise = cfg.randomization.observation_noise_std
        if noise > 0:
            peg[3:-8] += self.np_random.normal(0.0, noise, peg.size - 11).astype(np.float32)
        np.clip(peg, -graph_obs.FEATURE_BOUND, graph_obs.FEATURE_BOUND, out=peg)
        if cfg.obs_mode == "graph":
            observation = self._graph.build(np.stack([peg, self._hole_node]))
        else:
            observation = np.concatenate([peg, self._hole_node])
        tx, ty, tz = cx - ax * length / 2, cy - ay * length / 2, cz - az * length / 2
        measurements = {
            "keypoint_distance": distance / len(self._keypoint_offsets),
            "lateral_error": math.hypot(tx, ty),
            "depth_remaining": tz + cfg.hole_depth,
            "tip_distance": math.sqrt(tx * tx + ty * ty + tz * tz),
        }
        return observation, measurements

    def _info(self, measurements: Dict[str, float], terms: Optional[Dict[str, float]]) -> Dict[str, Any]:
        info = dict(measurements)
        info.setdefault("is_success", False)
        info["reward_terms"] = terms if terms is not None else {}
        return info

    # ================================================================== state
    def get_start_state(self) -> Dict[str, list]:
        """The current state in the form ``reset(options=...)`` accepts."""
        pos, quat = self.robot.peg_pose()
        inverse_pos, inverse_quat = pybullet.invertTransform(self._hole_pos, self._hole_quat)
        center, quat_rel = pybullet.multiplyTransforms(inverse_pos, inverse_quat, pos, quat)
        tip = np.asarray(center) - quat_to_matrix(quat_rel)[:, 2] * self._geometry["length"] / 2
        rpy = pybullet.getEulerFromQuaternion(quat_rel)
        return {"hole_pose": self._hole_pose.tolist(), "peg_pose": [*tip.tolist(), *rpy]}

    def save_state(self) -> Dict[str, Any]:
        """Snapshot of the simulator and the episode (commands, step count, RNG).

        Restore it with ``restore_state`` (as often as needed); the engine keeps the
        snapshot in memory until ``discard_state`` releases it.
        """
        return {
            "bullet_state": self.sim.save_state(),
            "geometry": dict(self._geometry),
            "hole_pose": self._hole_pose.copy(),
            "command": (self._command_pos, self._command_quat),
            "robot_command": self.robot.get_command_state(),
            "elapsed_steps": self._elapsed_steps,
            "needs_reset": self._needs_reset,
            "rng_state": self.np_random.bit_generator.state,
        }

    def discard_state(self, state: Dict[str, Any]) -> None:
        """Free a snapshot's engine memory; it cannot be restored afterwards."""
        self.sim.remove_state(state["bullet_state"])

    def restore_state(self, state: Dict[str, Any]) -> None:
        if state["geometry"] != self._geometry:
            raise ValueError("the saved state was taken with another peg/hole geometry; it cannot be restored")
        self.sim.restore_state(state["bullet_state"])
        self._measured_pose = self.robot.peg_pose()
        self._place_hole(state["hole_pose"])
        self._command_pos, self._command_quat = state["command"]
        self.robot.set_command_state(state["robot_command"])
        self._elapsed_steps = state["elapsed_steps"]
        self._needs_reset = state["needs_reset"]
        self.np_random.bit_generator.state = state["rng_state"]

    # ================================================================== rendering
    def render(self):
        if self.render_mode != "rgb_array":
            return None
        x, y, z = self._hole_pos
        yaw = math.degrees(self._hole_pose[2]) + 50.0
        return self.sim.render(Camera(target=[x, y, z + 0.02], distance=0.4, yaw=yaw, pitch=-25.0))

    def close(self):
        if getattr(self, "sim", None) is not None:
            self.sim.close()
            self.sim = None
