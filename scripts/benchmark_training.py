"""Training throughput of several configurations, measured interleaved so machine drift hits all alike.

Each variant is a name and ``scripts/train.py`` overrides; every round trains each variant once
(same seed, ``--steps`` env steps, wandb disabled) and reads its ``metrics.csv``: env steps per
second over the run and the seconds per update spent waiting for the envs, acting, updating and
elsewhere (the ``time/*`` columns). Ratios are taken within a round against the first variant, so
they compare runs made minutes apart. Prints one line per run and writes everything to ``--json``.

``--envs-only`` measures the variants' vector envs alone instead: the run's envs as the trainer
builds them (``agents.training_envs.make_training_envs``: workers, wrappers, observation transfer)
stepped with uniform random actions, no policy and no update. Against a training run it shows
which share of a slowdown is the environment side (e.g. graph against flat observations).

    python scripts/benchmark_training.py --rounds 3 --json docs/benchmarks/train_parallel_critic.json \\
        graph: graph_sequential:agent.parallel_critic=false mlp:model=mlp,env.kwargs.obs_mode=flat
    python scripts/benchmark_training.py --envs-only --steps 6000 graph: flat:env.kwargs.obs_mode=flat
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

ROOT = Path(__file__).resolve().parent.parent
TIME_COLUMNS = ("env_wait_s", "policy_act_s", "update_s", "other_s")
WARMUP_STEPS = 50  # vector steps before timing with --envs-only (workers started, first resets done)


def parse_variant(text: str) -> tuple:
    """``name:override,override`` (``name:`` for the defaults) -> (name, [overrides])."""
    name, sep, overrides = text.partition(":")
    if not sep or not name.isidentifier():
        raise SystemExit(
            f"Error: variant {text!r} must be name:override[,override...] with a plain name (name: for the defaults)"
        )
    return name, [o for o in overrides.split(",") if o]


def train_once(overrides: List[str], steps: int, seed: int) -> Dict[str, float]:
    """Train one run in a temporary directory; its steps/s and mean seconds per update by phase."""
    with tempfile.TemporaryDirectory() as run_dir:
        command = [
            sys.executable,
            str(ROOT / "scripts" / "train.py"),
            f"hydra.run.dir={run_dir}",
            f"total_steps={steps}",
            f"seed={seed}",
            "progress_bar=false",
            "logger.wandb.mode=disabled",
            *overrides,
        ]
        start = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, cwd=ROOT)
        wall = time.perf_counter() - start
        with open(Path(run_dir) / "metrics.csv") as f:
            rows = list(csv.DictReader(f))
    result = {"wall_s": round(wall, 1), "steps_per_second": round(float(rows[-1]["time/steps_per_second"]), 1)}
    for column in TIME_COLUMNS:
        result[f"mean_{column}"] = round(statistics.mean(float(r[f"time/{column}"]) for r in rows), 4)
    result.update(first_success(rows))
    result["load_after"] = round(os.getloadavg()[0], 2)
    return result


def first_success(rows: List[Dict[str, str]]) -> Dict[str, object]:
    """Env step and training seconds at which the rolling success rate first reaches 0.95
    (None if never), and the final rolling success rate."""
    success = [(r, float(r["rolling/success_rate"])) for r in rows if r.get("rolling/success_rate", "") != ""]
    reached = next((r for r, rate in success if rate >= 0.95), None)
    return {
        "success_95_step": None if reached is None else int(reached["global_step"]),
        "success_95_s": None if reached is None else round(float(reached["time/elapsed"]), 1),
        "final_rolling_success": success[-1][1] if success else None,
    }


def step_envs_once(overrides: List[str], steps: int, seed: int) -> Dict[str, float]:
    """The training vector env of ``overrides`` stepped ``steps`` env steps (after a warm-up) with
    seeded uniform random actions; its steps/s."""
    import numpy as np

    from agents.config import compose_train_config
    from agents.training_envs import make_training_envs

    cfg = compose_train_config([f"seed={seed}", *overrides])
    envs = make_training_envs(cfg)
    try:
        envs.reset(seed=seed)
        rng = np.random.default_rng(seed)
        low, high = envs.action_space.low, envs.action_space.high
        vector_steps = max(1, steps // cfg.num_envs)
        actions = rng.uniform(low, high, size=(WARMUP_STEPS + vector_steps, *low.shape)).astype(np.float32)
        for action in actions[:WARMUP_STEPS]:
            envs.step(action)
        start = time.perf_counter()
        for action in actions[WARMUP_STEPS:]:
            envs.step(action)
        wall = time.perf_counter() - start
    finally:
        envs.close()
    return {
        "wall_s": round(wall, 2),
        "steps_per_second": round(vector_steps * cfg.num_envs / wall, 1),
        "load_after": round(os.getloadavg()[0], 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("variants", nargs="+", help="name:override[,override...]; the first is the reference")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=40960, help="env steps per run")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="write the runs and ratios here")
    parser.add_argument("--envs-only", action="store_true", help="step the variants' vector envs, no training")
    args = parser.parse_args()
    measure = step_envs_once if args.envs_only else train_once
    variants = [parse_variant(v) for v in args.variants]
    reference = variants[0][0]
    runs, ratios = [], {name: [] for name, _ in variants[1:]}
    for round_index in range(1, args.rounds + 1):
        in_round = {}
        for name, overrides in variants:
            result = {"variant": name, "round": round_index, **measure(overrides, args.steps, args.seed)}
            runs.append(result)
            in_round[name] = result["steps_per_second"]
            print(json.dumps(result), flush=True)
        for name in ratios:
            ratios[name].append(round(in_round[name] / in_round[reference], 3))
    summary = {
        "command": "python scripts/benchmark_training.py " + " ".join(sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "variants": {name: overrides for name, overrides in variants},
        "steps_per_run": args.steps,
        "measured": "vector envs alone, random actions" if args.envs_only else "training runs",
        "runs": runs,
        "steps_per_second_over_reference": {
            name: {"per_round": r, "min": min(r), "max": max(r)} for name, r in ratios.items()
        },
        "reference": reference,
    }
    print(json.dumps(summary["steps_per_second_over_reference"]))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=1) + "\n")


if __name__ == "__main__":
    main()
