"""Smoke run of scripts/benchmark_sb3.py: one tiny Pendulum update per algorithm, both implementations."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "benchmark_sb3.py"
ALGOS = ["ours_ppo", "ours_trpo", "sb3_ppo", "sb3_trpo", "sb3_ppo_default", "sb3_trpo_default"]


@pytest.mark.timeout(300)  # a hang guard, not a speed check: six short trainings take ~60 s on a free machine
def test_benchmark_sb3_smoke(tmp_path: Path):
    out = tmp_path / "benchmark.json"
    proc = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--tasks",
            "pendulum",
            "--seeds",
            "0",
            "--steps-pendulum",
            "2048",
            "--algos",
            *ALGOS,
            "--eval-episodes",
            "2",
            "--out",
            str(out),
            "--run-root",
            str(tmp_path / "runs"),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=290,
    )
    assert proc.returncode == 0, f"{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"

    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["complete"] is True
    rows = summary["results"]["pendulum"]
    assert sorted(rows) == sorted(ALGOS)
    for algo, row in rows.items():
        assert row["env_steps"] == 2048, algo  # one rollout of 8 envs x 256 steps on both sides
        mean, std = row["return"]
        assert math.isfinite(mean) and -2000 < mean <= 0, algo  # Pendulum returns over 200 steps
        assert row["success_rate"] is None, algo  # Pendulum reports no success
        assert row["wall_s"] > 0 and row["loop_s"] > 0, algo
    for kind in ("ppo", "trpo"):
        ours = rows[f"ours_{kind}"]
        assert ours["wall_ratio_vs_sb3"] > 0
        # one seed per side: the bootstrap interval collapses onto the difference of the two returns
        difference = ours["return"][0] - rows[f"sb3_{kind}"]["return"][0]
        assert ours["return_diff_vs_sb3"] == pytest.approx([difference] * 3)
        assert ours["success_diff_vs_sb3"] is None

    details = json.loads(out.read_text())
    assert len(details["runs"]) == len(ALGOS)
    assert "| pendulum | sb3_trpo |" in proc.stdout  # the markdown table


def test_mean_difference_ci_against_hand_computed_cases():
    sys.path.insert(0, str(SCRIPT.parent))
    from benchmark_sb3 import mean_difference_ci

    assert mean_difference_ci([5.0], [2.0]) == (3.0, 3.0, 3.0)
    # clearly separated seeds: the interval lies between the extreme resamples and excludes 0
    diff, low, high = mean_difference_ci([1.0, 2.0, 3.0], [0.0, 0.0, 0.0])
    assert diff == pytest.approx(2.0) and 1.0 <= low < 2.0 < high <= 3.0
    # the same spread on both sides: centred on 0, which the interval contains
    diff, low, high = mean_difference_ci([0.0, 1.0, 0.0, 1.0], [1.0, 0.0, 1.0, 0.0])
    assert diff == 0.0 and low < 0.0 < high
    assert mean_difference_ci([None, 1.0], [0.5]) == (0.5, 0.5, 0.5)  # runs without a value are left out
    assert mean_difference_ci([None], [1.0]) is None


@pytest.mark.timeout(300)  # a hang guard, not a speed check
def test_pendulum_norm_turns_on_reward_scaling_on_both_sides(tmp_path: Path):
    import pickle

    import yaml

    runs = tmp_path / "runs"
    proc = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--tasks",
            "pendulum_norm",
            "--seeds",
            "0",
            "--steps-pendulum",
            "2048",
            "--algos",
            "ours_ppo",
            "sb3_ppo",
            "--eval-episodes",
            "1",
            "--out",
            str(tmp_path / "b.json"),
            "--run-root",
            str(runs),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=290,
    )
    assert proc.returncode == 0, f"{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    ours = yaml.safe_load((runs / "pendulum_norm/ours_ppo/seed0/.hydra/config.yaml").read_text())
    assert ours["normalize_rewards"] is True  # our reward scaling
    with open(runs / "pendulum_norm/sb3_ppo/seed0/vecnormalize.pkl", "rb") as f:
        assert pickle.load(f).norm_reward is True  # SB3's reward scaling
