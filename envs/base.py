"""The base insertion environment: simulator, robot, delta-pose action, step, state, rendering.

``InsertionEnv`` runs any ``envs.task.Task``. It owns what every insertion task shares:

- the simulator and the robot holding the object (``envs/robots.py``), rebuilt when the
  task's scene changes (randomized dimensions);
- the action: a delta pose of the held object in [-1, 1]^6, scaled by ``max_translation`` /
  ``max_rotation``, masked per DoF and expressed in the task frame, with the command-lead guard;
- the step skeleton: apply the action, step physics, observe, let the task score the step;
- the start-state reset protocol (``reset(options=...)`` takes what ``get_start_state`` returns,
  the held object's velocity included: a state taken mid-motion is observed as it was),
  save/restore of the whole episode, and rendering through the task's camera, also between actions
  at a given frame rate for real-time videos (``set_frame_callback``).
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Callable, Dict, Optional

import gymnasium as gym
import numpy as np
import pybullet
from gymnasium import spaces

from envs import graph_obs
from envs.geometry import quat_angle, quat_from_rotvec, quat_multiply, quat_slerp, yaw_rotate, yaw_rotate_twist
from envs.robots import ROBOT_CLASSES, make_robot
from envs.scene import add_ground
from envs.sim import Simulator
from envs.task import HELD_VELOCITY, SceneSpec, Task

ACTION_DIM = 6  # x y z roll pitch yaw
COMMAND_LEAD_STEPS = 2.0  # the commanded pose may lead the measured one by at most this many max-size actions


class InsertionEnv(gym.Env):
    """Gymnasium environment for one insertion ``Task`` with delta end-effector pose actions."""

    metadata = {"render_modes": ["human", "rgb_array"], "render_fps": 25}

    def __init__(self, task: Task, render_mode: Optional[str] = None):
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode={render_mode!r} is not one of {self.metadata['render_modes']}")
        self.task, self.config, self.render_mode = task, task.config, render_mode
        cfg = self.config
        robot_cls = ROBOT_CLASSES[cfg.robot]
        time_step = cfg.sim.time_step or robot_cls.default_time_step
        substeps = cfg.sim.substeps or robot_cls.default_substeps
        self.sim = Simulator(cfg.sim, time_step, substeps, gui=render_mode == "human")
        self.robot = make_robot(cfg.robot, self.sim)

        self.action_space = spaces.Box(-1.0, 1.0, (ACTION_DIM,), np.float32)
        self._action_mask = np.asarray(cfg.action_mask, dtype=np.float64)
        self._action_scale = self._action_mask * ([cfg.max_translation] * 3 + [cfg.max_rotation] * 3)
        self._graph = graph_obs.GraphBuilder(task.max_nodes, cfg.num_keypoints)
        if cfg.obs_mode == "graph":
            self.observation_space = graph_obs.graph_space(task.max_nodes, cfg.num_keypoints)
        else:
            self.observation_space = graph_obs.flat_space(task.max_nodes, cfg.num_keypoints)

        self._scene: Optional[SceneSpec] = None  # what the current bodies were built from
        add_ground(self.sim, self.task.ground_collides)
        self._needs_reset = True

    # ================================================================== reset
    def reset(self, *, seed: Optional[int] = None, options: Optional[Dict[str, Any]] = None):
        super().reset(seed=seed)
        options = self.task.check_options(options)
        self._build(self.task.sample_scene(self.np_random))
        held = (self.robot.held_body, self.robot.held_link)
        pos, quat = self.task.reset_objects(self.sim, held, self.np_random, options)
        self.robot.reset(pos, quat)
        if HELD_VELOCITY in options:
            c, s = self.task.frame_yaw()  # task frame -> world
            twist = yaw_rotate_twist(c, s, options[HELD_VELOCITY].tolist())
            self.robot.set_held_velocity(twist[:3], twist[3:])
        self._command_pos, self._command_quat = pos, quat
        self._needs_reset = False
        self._elapsed_steps = 0
        self.sim.restart_hook_count()  # video frames between actions are timed from the episode's start
        observation, measurements = self._observe()
        return observation, self._info(measurements, None)

    def _build(self, scene: SceneSpec) -> None:
        """(Re)create the task's bodies and the robot when the scene changed, else keep them."""
        if scene == self._scene:
            return
        if self._scene is not None:  # rebuild from scratch: bodies and robot
            self.sim.clear()
            add_ground(self.sim, self.task.ground_collides)
            self.robot = make_robot(self.config.robot, self.sim)
        self._scene = scene
        self.task.build_scene(self.sim, scene)
        self.robot.build(scene.held_object)
        self.sim.set_contact_properties(self.robot.held_body, self.robot.held_link)

    # ================================================================== step
    def step(self, action):
        if self._needs_reset:
            raise RuntimeError("call reset() before step() (the episode ended or never started)")
        action = self._check_action(action)
        self._apply_action(action)
        self.sim.step()
        self._elapsed_steps += 1
        observation, m = self._observe()
        contact_force = self._contact_force()
        success, terms, left = self.task.evaluate(m, action * self._action_mask, contact_force)
        m["is_success"] = success
        m["contact_force"] = contact_force
        left = self.config.terminate_out_of_workspace and left
        terminated = bool((success and self.config.terminate_on_success) or left or self.task.dead_end(m))
        self._needs_reset = terminated
        info = self._info(m, terms)
        info["out_of_workspace"] = bool(left)
        # Panda: the position error the IK step started from.
        info["ik_residual"] = getattr(self.robot, "last_residual", 0.0)
        return observation, float(sum(terms.values())), terminated, False, info

    def _check_action(self, action) -> np.ndarray:
        try:
            action = np.asarray(action, dtype=np.float64)
        except (TypeError, ValueError):
            raise ValueError(f"action must be {ACTION_DIM} numbers, got {action!r}") from None
        if action.shape != (ACTION_DIM,):
            raise ValueError(f"action must have shape ({ACTION_DIM},), got shape {action.shape}")
        if not np.isfinite(action).all():
            raise ValueError(f"action contains NaN or Inf: {action.tolist()}")
        return action.clip(-1.0, 1.0)

    def _apply_action(self, action: np.ndarray) -> None:
        """Move the commanded pose by the (masked, scaled) delta, expressed in the task frame.

        The command integrates deltas so masked DoFs hold their value, but it
        may lead the measured pose by at most ``COMMAND_LEAD_STEPS`` actions:
        pushing against a wall builds a bounded force instead of winding up.
        Plain-float math: this runs every step.
        """
        dx, dy, dz, rx, ry, rz = (action * self._action_scale).tolist()
        c, s = self.task.frame_yaw()
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
        """Total normal force on the held object, in N."""
        contacts = pybullet.getContactPoints(
            bodyA=self.robot.held_body, linkIndexA=self.robot.held_link, physicsClientId=self.sim.id
        )
        return float(sum(contact[9] for contact in contacts))

    # ================================================================== observation
    def _observe(self):
        """Observation and the task's measurements; the node rows are clipped into the space's bounds."""
        held_state = self.robot.held_state()
        self._measured_pose = held_state[:2]
        nodes, measurements = self.task.observe(held_state, self.np_random)
        np.clip(nodes, -graph_obs.FEATURE_BOUND, graph_obs.FEATURE_BOUND, out=nodes)
        if self.config.obs_mode == "graph":
            return self._graph.build(nodes), measurements
        return nodes.reshape(-1), measurements

    @staticmethod
    def _info(measurements: Dict[str, float], terms: Optional[Dict[str, float]]) -> Dict[str, Any]:
        info = dict(measurements)
        info.setdefault("is_success", False)
        info["reward_terms"] = terms if terms is not None else {}
        return info

    # ================================================================== state
    def get_start_state(self) -> Dict[str, list]:
        """The current state in the form ``reset(options=...)`` accepts: the task's poses and the held
        object's velocity (task frame). Without the velocity a state taken mid-motion would restart at
        rest, and a policy that reads velocities would see a different state than the one recorded."""
        pos, quat, linear, angular = self.robot.held_state()
        c, s = self.task.frame_yaw()  # world -> task frame: rotate by -yaw
        return {**self.task.start_state((pos, quat)), HELD_VELOCITY: yaw_rotate_twist(c, -s, [*linear, *angular])}

    def perturb_start_state(self, start: Dict[str, Any], rng: np.random.Generator, scale: float) -> Dict[str, Any]:
        """``start`` with the objects the robot does not move displaced at random (``Task.perturb_start``),
        checked against the current scene (reset the env to ``start`` first)."""
        if not (math.isfinite(scale) and scale >= 0.0):
            raise ValueError(f"perturbation scale must be a finite number >= 0, got {scale}")
        return self.task.perturb_start(start, rng, scale)

    def save_state(self) -> Dict[str, Any]:
        """Snapshot of the simulator and the episode (commands, step count, RNG, the task's own state).

        Restore it with ``restore_state`` (as often as needed); the engine keeps the
        snapshot in memory until ``discard_state`` releases it.
        """
        return {
            "bullet_state": self.sim.save_state(),
            "scene": self._scene,
            "task": self.task.save_state(),
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
        if state["scene"] != self._scene:
            raise ValueError("the saved state was taken with another scene geometry; it cannot be restored")
        problem = self.task.restore_problem(state["task"])
        if problem is not None:
            raise ValueError(problem)
        self.sim.restore_state(state["bullet_state"])
        self._measured_pose = self.robot.held_pose()
        self.task.restore_state(state["task"])
        self._command_pos, self._command_quat = state["command"]
        self.robot.set_command_state(state["robot_command"])
        self._elapsed_steps = state["elapsed_steps"]
        self._needs_reset = state["needs_reset"]
        self.np_random.bit_generator.state = state["rng_state"]

    # ================================================================== rendering
    def render(self):
        if self.render_mode != "rgb_array":
            return None
        return self.sim.render(self.task.camera())

    def set_frame_callback(self, callback: Callable[[np.ndarray], None], fps: float) -> float:
        """Call ``callback(frame)`` with a rendered frame every ``1 / fps`` s of simulated time, also within steps.

        One env step is ``substeps`` physics steps, so one frame per step would play a video too fast
        or too slow. A frame is rendered every k = round(1 / (fps * time_step)) physics steps, counted
        from each reset; played at the returned rate, 1 / (k * time_step) (``fps`` itself when the
        physics rate is a multiple of it, as for 25 and both robots' defaults), they run in real time.
        Rendering only reads the world: the trajectory is the same as without a callback.
        """
        if self.render_mode != "rgb_array":
            raise ValueError(f"frame callbacks need render_mode='rgb_array', got {self.render_mode!r}")
        physics_rate = 1.0 / self.sim.time_step
        if isinstance(fps, bool) or not isinstance(fps, numbers.Real) or not 0 < fps <= physics_rate:
            raise ValueError(f"fps must be in (0, {physics_rate:g}] (the physics rate 1 / time_step), got {fps!r}")
        every = round(physics_rate / fps)
        self.sim.set_substep_hook(lambda: callback(self.render()), every)
        return physics_rate / every

    def clear_frame_callback(self) -> None:
        """Stop rendering frames within steps (``set_frame_callback``)."""
        self.sim.set_substep_hook(None)

    def close(self):
        if getattr(self, "sim", None) is not None:
            self.sim.close()
            self.sim = None


class TaskEnv(InsertionEnv):
    """The registered env of one task: built from keyword overrides or a ready config.

    A subclass names its ``task_class`` and its config functions; ``gymnasium.make`` passes the
    keyword arguments, each a field of the task's config (nested sections accept dicts).
    """

    task_class: type
    make_config: Callable[..., Any]  # keyword overrides -> validated config
    validate_config: Callable[[Any], Any]  # a ready config -> the same config, validated

    def __init__(self, render_mode: Optional[str] = None, config: Optional[Any] = None, **overrides):
        if config is not None and overrides:
            raise ValueError("pass either config=... or keyword overrides, not both")
        cls = type(self)
        config = cls.validate_config(config) if config is not None else cls.make_config(**overrides)
        super().__init__(cls.task_class(config), render_mode=render_mode)
