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


@pytest.mark.timeout(60)
def test_benchmark_sb3_smoke(tmp_path: Path):
    out = tmp_path / "benchmark.json"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--tasks", "pendulum", "--seeds", "0", "--steps-pendulum", "2048",
         "--algos", *ALGOS, "--eval-episodes", "2", "--out", str(out), "--run-root", str(tmp_path / "runs")],
        cwd=tmp_path, capture_output=True, text=True, timeout=58)
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
        assert rows[f"ours_{kind}"]["wall_ratio_vs_sb3"] > 0

    details = json.loads(out.read_text())
    assert len(details["runs"]) == len(ALGOS)
    assert "| pendulum | sb3_trpo |" in proc.stdout  # the markdown table
