"""Golden first updates of training: the safety net for restructuring the trainer.

Each case composes the Hydra config as ``scripts/train.py`` would, trains a few seeded updates in
process (synchronous envs) and records every logged metric except wall-clock timings, plus a
checksum of the final parameters. ``tests/test_golden_training.py`` replays and compares them.

Record (only when a behaviour change is intended, and say so in the commit)::

    .venv/bin/python tests/golden_training.py --record [--case NAME ...]

History: recorded before the trainer restructuring (30de28b) and reproduced after it (9129183);
re-recorded when per-env seeds came to be derived by ``numpy.random.SeedSequence``
(``agents.rollout.env_seeds``) instead of gymnasium's seed + i; ``peg_floating_gnn_ppo`` re-recorded
when the graph attention's projections were multiplied out (new parameters, new initialisation).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import tempfile
from pathlib import Path
from typing import Dict, List

import torch
from train_config import compose_train

from agents.checkpoint import LATEST, load_checkpoint
from agents.trainer import train

GOLDEN_FILE = Path(__file__).parent / "data" / "golden_training.json"
COMMON = ["async_envs=false", "progress_bar=false", "logger.wandb.mode=disabled", "checkpoint_every=2"]
CASES: Dict[str, List[str]] = {
    "pendulum_mlp_ppo": [
        "env=gym",
        "env.id=Pendulum-v1",
        "env.max_episode_steps=64",
        "model=mlp",
        "num_envs=2",
        "rollout_steps=64",
        "total_steps=384",
        "agent.num_epochs=2",
    ],
    "pendulum_mlp_trpo_reward_scaling": [
        "env=gym",
        "env.id=Pendulum-v1",
        "env.max_episode_steps=50",
        "model=mlp",
        "agent=trpo",
        "num_envs=2",
        "rollout_steps=64",
        "total_steps=384",
        "agent.critic_epochs=2",
        "normalize_rewards=true",
    ],
    "peg_floating_gnn_ppo": [
        "env=peg_insertion",
        "env.kwargs.robot=floating",
        "env.max_episode_steps=20",
        "num_envs=2",
        "rollout_steps=32",
        "total_steps=192",
        "agent.num_epochs=2",
        "eval.every=2",
        "eval.episodes=2",
    ],
}


def _finite_or_none(value: str):
    number = float(value) if value != "" else math.nan
    return None if math.isnan(number) else number


def run_case(overrides: List[str]) -> Dict[str, object]:
    """Train one case in a temporary run directory; return its metrics (no timings) and checksums."""
    with tempfile.TemporaryDirectory() as run_dir:
        result = train(compose_train([*COMMON, *overrides]), Path(run_dir))
        with open(Path(run_dir) / "metrics.csv") as f:
            rows = [
                {k: _finite_or_none(v) for k, v in row.items() if not k.startswith("time/")}
                for row in csv.DictReader(f)
            ]
        checkpoint = load_checkpoint(Path(run_dir) / "checkpoints" / LATEST)
    parameters = {k: float(v.double().sum()) for k, v in checkpoint["model"].items() if torch.is_tensor(v)}
    return {"global_step": result.global_step, "updates": result.updates, "metrics": rows, "parameter_sums": parameters}


def record(cases=tuple(CASES), path: Path = GOLDEN_FILE) -> None:
    """Record ``cases`` into ``path``, keeping the recordings of the other cases."""
    unknown = sorted(set(cases) - set(CASES))
    if unknown:
        raise ValueError(f"unknown case(s) {unknown}; cases are {sorted(CASES)}")
    golden = json.loads(path.read_text()) if path.exists() else {}
    golden.update({name: run_case(CASES[name]) for name in cases})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(golden, indent=1, sort_keys=True) + "\n")
    print(f"wrote {', '.join(cases)} to {path}")


def load(case: str, path: Path = GOLDEN_FILE) -> Dict[str, object]:
    return json.loads(path.read_text())[case]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--record", action="store_true", help="overwrite the golden file")
    parser.add_argument("--case", nargs="+", default=list(CASES), help="cases to record (default: all)")
    args = parser.parse_args()
    if args.record:
        record(args.case)
    else:
        parser.print_help()
