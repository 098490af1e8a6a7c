"""Ray rollout workers (``rollout.backend=ray``) against the local vector envs. A benchmark, not a test.

1. ``default_task``: env steps/s of one rollout collection on the default task (Panda peg insertion,
   GNN policy), Ray with W workers x 1 env against the local vector env with W worker processes,
   in interleaved rounds (local, ray, local, ray, ...) so machine drift hits both alike.
2. ``latency_scaling``: scaling without a cluster. ``SleepEnv`` waits a fixed latency in every step
   (I/O-like: it needs no core), so steps/s against 1, 2, 4, 8, 16 Ray workers (one env each) shows
   how far the learner side (weights broadcast, segment transfer, buffer writes) lets it scale.
3. ``learner``: seconds per PPO update on the packed-objects task's default batch, the steps/s one
   worker process collects on it, and so how many such workers one learner could keep busy.

Every figure is min / median / max over the rounds. Collection only: no update runs between
collections (the policy stays at its initialisation), except in (3).

    .venv/bin/python scripts/benchmark_ray.py --json docs/benchmarks/ray.json
    .venv/bin/python scripts/benchmark_ray.py --rounds 2 --rollout-steps 64 --scaling-workers 1 2 4
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Dict, List, Sequence

import gymnasium as gym
import numpy as np
import ray
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # train_config: the config as scripts/train.py composes it

from train_config import compose_train  # noqa: E402

from agents.buffer import RolloutBuffer  # noqa: E402
from agents.collectors import make_collector, make_rollout_envs  # noqa: E402
from agents.ray_rollout import init_local_ray  # noqa: E402
from agents.registry import build_algorithm, build_model  # noqa: E402
from agents.threads import set_cpu_threads  # noqa: E402

SLEEP_ENV_ID = "SleepEnv-v0"
SLEEP_OBS_DIM, SLEEP_ACTION_DIM = 8, 2


class SleepEnv(gym.Env):
    """An env whose step costs ``latency_s`` of waiting and next to no compute (Ray workers import
    this module by the ``benchmark_ray:SleepEnv-v0`` id: the driver's script directory is on their path)."""

    observation_space = gym.spaces.Box(-1.0, 1.0, (SLEEP_OBS_DIM,), np.float32)
    action_space = gym.spaces.Box(-1.0, 1.0, (SLEEP_ACTION_DIM,), np.float32)

    def __init__(self, latency_s: float = 0.005):
        self.latency_s = latency_s

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return self.np_random.uniform(-1, 1, SLEEP_OBS_DIM).astype(np.float32), {}

    def step(self, action):
        time.sleep(self.latency_s)
        obs = self.np_random.uniform(-1, 1, SLEEP_OBS_DIM).astype(np.float32)
        return obs, -float(np.square(action).sum()), False, False, {}


if SLEEP_ENV_ID not in gym.registry:
    gym.register(SLEEP_ENV_ID, entry_point=SleepEnv)


def summary(values: Sequence[float]) -> Dict[str, float]:
    return {"min": min(values), "median": statistics.median(values), "max": max(values)}


class Rollouts:
    """The envs, a fresh policy and the collector of one config, timed per ``collect``."""

    def __init__(self, overrides: List[str]):
        self.cfg = compose_train(["progress_bar=false", "logger.wandb.mode=disabled", *overrides])
        self.envs = make_rollout_envs(self.cfg)
        torch.manual_seed(self.cfg.seed)
        self.model = build_model(self.cfg.model, self.envs.single_observation_space, self.envs.single_action_space)
        self.buffer = RolloutBuffer(self.cfg.rollout_steps, self.cfg.num_envs)
        self.collector = make_collector(self.cfg, self.envs, self.model, self.buffer)
        self.collector.collect(self.cfg.rollout_steps)  # warm-up: first resets, imports, caches

    def steps_per_second(self) -> float:
        start = time.perf_counter()
        self.collector.collect(self.cfg.rollout_steps)
        return self.cfg.num_envs * self.cfg.rollout_steps / (time.perf_counter() - start)

    def close(self) -> None:
        self.envs.close()


def default_task(workers: int, rollout_steps: int, rounds: int) -> dict:
    """The local async vector env (``workers`` env processes, the learner acting for all) against Ray
    with ``workers`` x 1 env (equal worker count) and, for comparison, half the workers x 2 envs (each
    worker acts on batches of 2), interleaved."""
    common = [f"num_envs={workers}", f"rollout_steps={rollout_steps}"]
    layouts = {f"ray_{workers}x1": workers}
    if workers % 2 == 0:
        layouts[f"ray_{workers // 2}x2"] = workers // 2
    backends = {"local": Rollouts([*common, "async_envs=true"])}
    for name, count in layouts.items():
        backends[name] = Rollouts([*common, "rollout.backend=ray", f"rollout.ray.num_workers={count}"])
    measured = {name: [] for name in backends}
    try:
        for _ in range(rounds):
            for name, rollouts in backends.items():
                measured[name].append(rollouts.steps_per_second())
    finally:
        for rollouts in backends.values():
            rollouts.close()
    return {
        "task": "peg_insertion (panda), model=gnn",
        "workers": workers,
        "rollout_steps": rollout_steps,
        "steps_per_second": {name: summary(values) for name, values in measured.items()},
        "over_local_per_round": {
            name: summary([r / loc for r, loc in zip(measured[name], measured["local"])]) for name in layouts
        },
    }


def latency_scaling(worker_counts: Sequence[int], latency_s: float, rollout_steps: int, rounds: int) -> dict:
    """Steps/s of ``SleepEnv`` against the number of Ray workers (one env each)."""
    results = []
    for workers in worker_counts:
        rollouts = Rollouts(
            [
                "env=gym",
                f"env.id=benchmark_ray:{SLEEP_ENV_ID}",
                f"+env.kwargs.latency_s={latency_s}",
                "model=mlp",
                f"num_envs={workers}",
                f"rollout_steps={rollout_steps}",
                "rollout.backend=ray",
                f"rollout.ray.num_workers={workers}",
                "rollout.ray.cpus_per_worker=0.1",  # they wait, not compute
            ]
        )
        try:
            values = [rollouts.steps_per_second() for _ in range(rounds)]
        finally:
            rollouts.close()
        ideal = workers / latency_s
        results.append({"workers": workers, "steps_per_second": summary(values), "ideal": ideal})
        print(f"  {workers:2d} workers: {statistics.median(values):7.0f} steps/s (latency bound {ideal:.0f})")
    return {"latency_s": latency_s, "rollout_steps": rollout_steps, "results": results}


def learner(rounds: int) -> dict:
    """The learner's time per PPO update on packed objects' default batch, and one worker's collection rate."""
    rollouts = Rollouts(["env=packed_objects", "async_envs=false"])
    cfg = rollouts.cfg
    try:
        algorithm = build_algorithm(cfg.agent, rollouts.model)
        update_s = []
        for _ in range(rounds):
            rollouts.collector.collect(cfg.rollout_steps)
            start = time.perf_counter()
            algorithm.update(rollouts.buffer, progress=0.0)
            rollouts.model.update_normalizer(rollouts.buffer.full_batch().obs)
            update_s.append(time.perf_counter() - start)
    finally:
        rollouts.close()
    single = Rollouts(["env=packed_objects", "num_envs=1", "async_envs=false"])
    try:
        worker_rate = [single.steps_per_second() for _ in range(rounds)]
    finally:
        single.close()
    batch, update, per_worker = (
        cfg.num_envs * cfg.rollout_steps,
        statistics.median(update_s),
        statistics.median(worker_rate),
    )
    return {
        "task": "packed_objects (panda), model=gnn, agent=ppo defaults",
        "batch": batch,
        "update_s": summary(update_s),
        "one_worker_steps_per_second": summary(worker_rate),
        "learner_bound_steps_per_second": batch / update,
        "workers_whose_collection_takes_as_long_as_the_update": batch / update / per_worker,
        "steps_per_second_by_workers": fed_steps_per_second(batch, update, per_worker, FED_WORKERS),
    }


FED_WORKERS = (1, 2, 4, 8, 16, 32, 64)


def fed_steps_per_second(batch: int, update_s: float, per_worker: float, workers: Sequence[int]) -> Dict[str, float]:
    """On paper: collection (``batch / (n * per_worker)`` s with n workers) and the update alternate."""
    return {str(n): batch / (batch / (n * per_worker) + update_s) for n in workers}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=4, help="workers of the default-task comparison")
    parser.add_argument("--rollout-steps", type=int, default=256, help="steps per env per collection")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--latency-ms", type=float, default=5.0)
    parser.add_argument("--scaling-workers", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    parser.add_argument("--skip", nargs="*", default=[], choices=["default_task", "latency_scaling", "learner"])
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()
    set_cpu_threads(1)  # torch and numpy's BLAS
    cpus = max(os.cpu_count() or 1, args.workers, *args.scaling_workers)
    init_local_ray(cpus)
    results = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, shared with other jobs",
        "load_average_at_start": os.getloadavg()[0],
        "ray": ray.__version__,
    }
    try:
        if "default_task" not in args.skip:
            results["default_task"] = default_task(args.workers, args.rollout_steps, args.rounds)
            print(json.dumps(results["default_task"], indent=2))
        if "latency_scaling" not in args.skip:
            print(f"latency scaling ({args.latency_ms:g} ms per step):")
            results["latency_scaling"] = latency_scaling(
                args.scaling_workers, args.latency_ms / 1000.0, args.rollout_steps, args.rounds
            )
        if "learner" not in args.skip:
            results["learner"] = learner(args.rounds)
            print(json.dumps(results["learner"], indent=2))
    finally:
        ray.shutdown()
    results["load_average_at_end"] = os.getloadavg()[0]
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
