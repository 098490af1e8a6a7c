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
import time

import envs
from envs.scripted import record_episode, success_over_seeds
from envs.scripted_packing import ScriptedPackingPolicy, StraightDescentPolicy

CONTROLLERS = {"push_then_insert": ScriptedPackingPolicy, "straight_descent": StraightDescentPolicy}


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
        result = success_over_seeds(
            envs.PACKED_OBJECTS_ID, CONTROLLERS[controller], args.episodes, args.seed, robot=args.robot, **env_kwargs
        )
        result["seconds"] = round(time.perf_counter() - start, 1)
        summary[controller] = result
        print(
            f"{args.robot} {controller}: success {result['success_rate']:.1%} over {args.episodes} seeds "
            f"(mean steps to success {result['mean_steps_to_success']:.1f})"
        )
    if args.video:
        summary["video"] = args.video
        summary["video_episode_success"] = record_episode(
            envs.PACKED_OBJECTS_ID, ScriptedPackingPolicy, args.video, args.seed, robot=args.robot, **env_kwargs
        )
        print(f"video of one push-then-insert episode written to {args.video}")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
