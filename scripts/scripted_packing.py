"""Scripted packed objects: push-then-insert against straight descent over many seeds, and a video.

    python scripts/scripted_packing.py                          # Panda, defaults, 100 seeds + video
    python scripts/scripted_packing.py --robot floating --num-displaced 2 --episodes 100
    python scripts/scripted_packing.py --episodes 0 --video outputs/packing.mp4

Both controllers are in ``envs/scripted_packing.py``: push-then-insert pushes the occluders back
with the tilted held box before inserting it; straight descent goes above the slot, aligns yaw
and descends (the occluders block it). The video shows push-then-insert, written headlessly
(PyBullet TinyRenderer). The last stdout line is a JSON summary.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import gymnasium as gym
import imageio.v2 as imageio
import numpy as np

import envs
from envs.scripted import run_episode
from envs.scripted_packing import ScriptedPackingPolicy, StraightDescentPolicy

CONTROLLERS = {"push_then_insert": ScriptedPackingPolicy, "straight_descent": StraightDescentPolicy}


def evaluate(controller: str, robot: str, episodes: int, seed: int, **env_kwargs) -> dict:
    env = gym.make(envs.PACKED_OBJECTS_ID, robot=robot, **env_kwargs)
    policy = CONTROLLERS[controller](env)
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


def record(robot: str, path: str, seed: int, **env_kwargs) -> bool:
    env = gym.make(envs.PACKED_OBJECTS_ID, robot=robot, render_mode="rgb_array", **env_kwargs)
    success, _, _, frames = run_episode(env, ScriptedPackingPolicy(env), seed=seed, render=True)
    env.close()
    frames += [frames[-1]] * 12  # hold the last frame for half a second
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    imageio.mimsave(path, frames, fps=env.metadata["render_fps"])
    return success


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--robot", default="panda", choices=["panda", "floating"])
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num-displaced", type=int, default=None, help="occluders (default: env default)")
    parser.add_argument("--video", default="outputs/scripted_packing.mp4", help="'' to skip")
    args = parser.parse_args()

    env_kwargs = {"num_displaced": args.num_displaced} if args.num_displaced is not None else {}
    summary = {"robot": args.robot, **env_kwargs, "episodes": args.episodes}
    for controller in CONTROLLERS:
        if args.episodes <= 0:
            break
        start = time.perf_counter()
        result = evaluate(controller, args.robot, args.episodes, args.seed, **env_kwargs)
        result["seconds"] = round(time.perf_counter() - start, 1)
        summary[controller] = result
        print(
            f"{args.robot} {controller}: success {result['success_rate']:.1%} over {args.episodes} seeds "
            f"(mean steps to success {result['mean_steps_to_success']:.1f})"
        )
    if args.video:
        summary["video"] = args.video
        summary["video_episode_success"] = record(args.robot, args.video, args.seed, **env_kwargs)
        print(f"video of one push-then-insert episode written to {args.video}")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
