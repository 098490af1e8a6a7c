"""A non-learned insertion controller: move above the hole, align, descend.

It proves the task is solvable, serves as a smoke test and as a baseline.
It reads the peg pose from the environment (``get_start_state``, the same
hole-frame form reset options use) and returns delta-pose actions, so it
works with either robot.
"""

from __future__ import annotations

import os

import gymnasium as gym
import numpy as np
import pybullet

from envs.geometry import rotation_vector


class ScriptedInsertionPolicy:
    """Proportional controller in the hole frame with a gate: descend only once aligned."""

    def __init__(
        self,
        env,
        hover_height: float = 0.01,
        lateral_gate: float = 0.0005,
        tilt_gate: float = np.radians(0.5),
        gain: float = 0.5,
    ):
        self.env = env.unwrapped
        self.hover_height = hover_height
        self.lateral_gate = lateral_gate
        self.tilt_gate = tilt_gate
        self.gain = gain

    def __call__(self, observation=None) -> np.ndarray:
        cfg = self.env.config
        state = self.env.get_start_state()["peg_pose"]
        tip, rpy = np.asarray(state[:3]), state[3:]
        rotvec = np.array(rotation_vector(pybullet.getQuaternionFromEuler(rpy)))
        if cfg.peg_shape == "box":  # a square peg fits every quarter turn: aim for the nearest one
            rotvec[2] = (rotvec[2] + np.pi / 4) % (np.pi / 2) - np.pi / 4
        lateral = np.hypot(tip[0], tip[1])
        aligned = lateral < self.lateral_gate and np.linalg.norm(rotvec) < self.tilt_gate
        inside = tip[2] < 0.0
        if aligned or inside:
            target = np.array([0.0, 0.0, -cfg.hole_depth - 0.005])  # press slightly past the floor
        else:
            target = np.array([0.0, 0.0, max(self.hover_height, tip[2])])
        translation = self.gain * (target - tip) / cfg.max_translation
        if inside and not aligned:  # inside the hole: centre first, push down gently
            translation[2] = min(translation[2], 0.0) * 0.3
        rotation_action = -self.gain * rotvec / cfg.max_rotation
        action = np.concatenate([translation, rotation_action])
        return np.clip(action, -1.0, 1.0).astype(np.float32)


def run_episode(env, policy, seed=None, options=None, render=False):
    """Roll out one episode; return (success, steps, total reward, frames)."""
    observation, info = env.reset(seed=seed, options=options)
    frames = [env.render()] if render else []
    total, steps = 0.0, 0
    while True:
        observation, reward, terminated, truncated, info = env.step(policy(observation))
        total += reward
        steps += 1
        if render:
            frames.append(env.render())
        if terminated or truncated:
            return bool(info.get("is_success", False)), steps, total, frames


def success_over_seeds(env_id: str, controller, episodes: int, seed: int, **env_kwargs) -> dict:
    """Success rate and mean steps to success of ``controller(env)`` over seeds ``seed .. seed + episodes - 1``."""
    env = gym.make(env_id, **env_kwargs)
    policy = controller(env)
    successes, lengths = [], []
    for episode in range(episodes):
        success, steps, _, _ = run_episode(env, policy, seed=seed + episode)
        successes.append(success)
        if success:
            lengths.append(steps)
    env.close()
    return {
        "success_rate": float(np.mean(successes)) if successes else float("nan"),
        "mean_steps_to_success": float(np.mean(lengths)) if lengths else float("nan"),
    }


def record_episode(env_id: str, controller, path: str, seed: int, **env_kwargs) -> bool:
    """Write a video of one ``controller`` episode to ``path`` (headless rendering); return its success."""
    import imageio.v2 as imageio

    env = gym.make(env_id, render_mode="rgb_array", **env_kwargs)
    success, _, _, frames = run_episode(env, controller(env), seed=seed, render=True)
    env.close()
    frames += [frames[-1]] * 12  # hold the last frame for half a second
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    imageio.mimsave(path, frames, fps=env.metadata["render_fps"])
    return success
