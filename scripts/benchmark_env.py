"""Environment throughput benchmark (single process, one environment).

For each task, robot and observation mode it prints environment steps per second
(through ``gymnasium.make``, wrappers included, random actions, resets
included), the share of a step spent outside ``stepSimulation``, and the raw
physics rate of the same scene (``stepSimulation`` alone, expressed both per
physics step and per action-equivalent). The tasks are measured interleaved
(peg, packed, peg, packed, ...) so machine drift hits both alike, and each
packed-objects step is compared with the peg step of the same robot and mode.
If panda-gym is installed it also measures ``PandaPush-v3`` as the reference.
The last line is a JSON summary.

    python scripts/benchmark_env.py [--steps 5000] [--no-panda-gym] [--robots floating] [--tasks peg packed]

``packed_multibody`` is the packed task with ``rigid_boxes=False`` (the boxes as one-link multibodies,
the physics before 2026-12-03 and the one the packed-objects experiments pin); ``packed_residual``
is the default packed task with ``sim.solver_residual_threshold=1e-5`` (the solver stops once converged).
"""

from __future__ import annotations

import argparse
import json
import time

import gymnasium as gym

import envs

TASKS = {  # name -> (env id, kwargs); packed: the default num_objects=4
    "peg": (envs.PEG_INSERTION_ID, {}),
    "packed": (envs.PACKED_OBJECTS_ID, {}),
    "packed_multibody": (envs.PACKED_OBJECTS_ID, {"rigid_boxes": False}),
    "packed_residual": (envs.PACKED_OBJECTS_ID, {"sim": {"solver_residual_threshold": 1e-5}}),
}


def make_task_env(task: str, **kwargs):
    env_id, task_kwargs = TASKS[task]
    return gym.make(env_id, **task_kwargs, **kwargs)


def timed_physics(env) -> list:
    """Wrap the simulator's per-action step so the time spent in physics is accumulated."""
    sim = env.unwrapped.sim
    spent = [0.0]
    step = sim.step

    def timed_step():
        start = time.perf_counter()
        step()
        spent[0] += time.perf_counter() - start

    sim.step = timed_step
    return spent


def measure_env(task: str, robot: str, obs_mode: str, steps: int, seed: int = 0) -> dict:
    env = make_task_env(task, robot=robot, obs_mode=obs_mode)
    env.reset(seed=seed)
    env.action_space.seed(seed)
    actions = [env.action_space.sample() for _ in range(steps)]
    physics = timed_physics(env)
    start = time.perf_counter()
    for action in actions:
        _, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            env.reset()
    elapsed = time.perf_counter() - start
    sim = env.unwrapped.sim
    env.close()
    return {
        "task": task,
        "robot": robot,
        "obs_mode": obs_mode,
        "env_steps_per_s": steps / elapsed,
        "outside_physics_fraction": 1.0 - physics[0] / elapsed,
        "substeps": sim.substeps,
        "time_step": sim.time_step,
    }


def measure_raw_physics(task: str, robot: str, steps: int) -> dict:
    """stepSimulation alone on the same scene (object held at its start pose, arm still)."""
    env = make_task_env(task, robot=robot, obs_mode="flat")
    env.reset(seed=0)
    sim = env.unwrapped.sim
    count = steps * sim.substeps
    start = time.perf_counter()
    for _ in range(count):
        sim.client.stepSimulation()
    elapsed = time.perf_counter() - start
    env.close()
    return {
        "robot": robot,
        "physics_steps_per_s": count / elapsed,
        "action_equivalent_per_s": count / elapsed / sim.substeps,
    }


def measure_panda_gym(steps: int):
    try:
        import panda_gym  # noqa: F401
    except ImportError:
        return None
    env = gym.make("PandaPush-v3")
    env.reset(seed=0)
    env.action_space.seed(0)
    start = time.perf_counter()
    for _ in range(steps):
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        if terminated or truncated:
            env.reset()
    elapsed = time.perf_counter() - start
    env.close()
    return steps / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=5000, help="environment steps per measurement")
    parser.add_argument("--no-panda-gym", action="store_true", help="skip the panda-gym reference")
    parser.add_argument("--robots", nargs="+", default=["panda", "floating"], choices=["panda", "floating"])
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    args = parser.parse_args()

    combos = [(robot, mode) for robot in args.robots for mode in ("graph", "flat")]
    results = [measure_env(task, robot, mode, args.steps) for robot, mode in combos for task in args.tasks]
    raw = {(task, robot): measure_raw_physics(task, robot, args.steps) for robot in args.robots for task in args.tasks}
    reference = None if args.no_panda_gym else measure_panda_gym(args.steps)

    print(
        f"{'task':7s} {'robot':9s} {'obs':6s} {'substeps':>8s} {'env steps/s':>12s} {'outside physics':>16s} "
        f"{'raw physics steps/s':>20s} {'raw / substeps':>15s}"
    )
    for r in results:
        p = raw[r["task"], r["robot"]]
        print(
            f"{r['task']:7s} {r['robot']:9s} {r['obs_mode']:6s} {r['substeps']:8d} {r['env_steps_per_s']:12.0f} "
            f"{r['outside_physics_fraction']:15.1%} {p['physics_steps_per_s']:20.0f} "
            f"{p['action_equivalent_per_s']:15.0f}"
        )
    # Peg keys keep their names (robot_mode_...); other tasks are prefixed.
    prefix = {task: "" if task == "peg" else f"{task}_" for task in TASKS}
    summary = {
        f"{prefix[r['task']]}{r['robot']}_{r['obs_mode']}_steps_per_s": round(r["env_steps_per_s"], 1) for r in results
    }
    summary.update(
        {
            f"{prefix[r['task']]}{r['robot']}_{r['obs_mode']}_outside_physics": round(r["outside_physics_fraction"], 3)
            for r in results
        }
    )
    summary.update(
        {
            f"{prefix[task]}{robot}_raw_physics_steps_per_s": round(p["physics_steps_per_s"], 1)
            for (task, robot), p in raw.items()
        }
    )
    for packed in (task for task in TASKS if task != "peg"):
        if {"peg", packed} <= set(args.tasks):
            for robot, mode in combos:
                peg_key, packed_key = (f"{prefix[task]}{robot}_{mode}_steps_per_s" for task in ("peg", packed))
                ratio = summary[peg_key] / summary[packed_key]  # step cost of packed / step cost of peg
                print(f"{packed} step cost / peg step cost ({robot}, {mode}): {ratio:.2f}x")
                summary[f"{packed}_vs_peg_step_cost_{robot}_{mode}"] = round(ratio, 2)
    if reference is not None:
        print(f"panda-gym PandaPush-v3 (20 substeps): {reference:.0f} steps/s")
        summary["panda_gym_push_steps_per_s"] = round(reference, 1)
        if "panda" in args.robots and "peg" in args.tasks:
            panda_best = min(summary["panda_graph_steps_per_s"], summary["panda_flat_steps_per_s"])
            summary["panda_vs_panda_gym"] = round(panda_best / reference, 2)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
