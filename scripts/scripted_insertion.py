"""Scripted peg insertion: success rate over many seeds, and a video of one episode.

    python scripts/scripted_insertion.py                          # Panda, defaults, 100 seeds + video
    python scripts/scripted_insertion.py --robot floating --clearance 0.001 --episodes 100
    python scripts/scripted_insertion.py --episodes 0 --video outputs/demo.mp4

The video is written headlessly (PyBullet TinyRenderer). The last stdout line
is a JSON summary.
"""

from __future__ import annotations

import argparse
import json
import time

import envs
from envs.scripted import ScriptedInsertionPolicy, record_episode, success_over_seeds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--robot", default="panda", choices=["panda", "floating"])
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--clearance", type=float, default=None, help="metres per side (default: env default)")
    parser.add_argument("--peg-shape", default=None, choices=["cylinder", "box"])
    parser.add_argument("--video", default="outputs/scripted_insertion.mp4", help="'' to skip")
    args = parser.parse_args()

    env_kwargs = {k: v for k, v in (("clearance", args.clearance), ("peg_shape", args.peg_shape)) if v is not None}
    summary = {"robot": args.robot, **env_kwargs, "episodes": args.episodes}
    if args.episodes > 0:
        start = time.perf_counter()
        summary.update(
            success_over_seeds(
                envs.PEG_INSERTION_ID, ScriptedInsertionPolicy, args.episodes, args.seed, robot=args.robot, **env_kwargs
            )
        )
        summary["seconds"] = round(time.perf_counter() - start, 1)
        print(
            f"{args.robot}: success {summary['success_rate']:.1%} over {args.episodes} seeds "
            f"(mean steps to success {summary['mean_steps_to_success']:.1f})"
        )
    if args.video:
        summary["video"] = args.video
        summary["video_episode_success"] = record_episode(
            envs.PEG_INSERTION_ID, ScriptedInsertionPolicy, args.video, args.seed, robot=args.robot, **env_kwargs
        )
        print(f"video of one episode written to {args.video}")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
