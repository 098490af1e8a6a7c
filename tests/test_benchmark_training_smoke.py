"""scripts/benchmark_training.py trains every variant in every round and reports ratios to the first."""

import json
import subprocess
import sys
from pathlib import Path

from train_config import PENDULUM

ROOT = Path(__file__).resolve().parents[1]


def test_benchmark_training_runs_every_variant_and_round(tmp_path):
    out = tmp_path / "training.json"
    base = ",".join(PENDULUM + ["async_envs=false"])
    subprocess.run(
        [
            sys.executable,
            "scripts/benchmark_training.py",
            "--rounds",
            "2",
            "--steps",
            "256",
            "--json",
            str(out),
            f"parallel:{base}",
            f"sequential:{base},agent.parallel_critic=false",
        ],
        cwd=ROOT,
        check=True,
        capture_output=True,
        timeout=300,
    )
    summary = json.loads(out.read_text())
    assert [(r["variant"], r["round"]) for r in summary["runs"]] == [
        ("parallel", 1),
        ("sequential", 1),
        ("parallel", 2),
        ("sequential", 2),
    ]
    for run in summary["runs"]:
        assert run["steps_per_second"] > 0 and run["mean_update_s"] > 0
        assert {"success_95_step", "success_95_s", "final_rolling_success"} <= set(run)
    ratios = summary["steps_per_second_over_reference"]["sequential"]["per_round"]
    runs = {(r["variant"], r["round"]): r["steps_per_second"] for r in summary["runs"]}
    assert ratios == [round(runs[("sequential", k)] / runs[("parallel", k)], 3) for k in (1, 2)]


def test_benchmark_training_rejects_a_variant_without_a_name():
    result = subprocess.run(
        [sys.executable, "scripts/benchmark_training.py", "model=mlp"], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode != 0 and "must be name:override" in result.stderr


def test_envs_only_steps_each_variants_vector_env_without_training(tmp_path):
    out = tmp_path / "envs.json"
    subprocess.run(
        [
            sys.executable,
            "scripts/benchmark_training.py",
            "--envs-only",
            "--rounds",
            "1",
            "--steps",
            "64",
            "--json",
            str(out),
            "graph:env.kwargs.robot=floating,num_envs=2",
            "flat:env.kwargs.robot=floating,num_envs=2,env.kwargs.obs_mode=flat",
        ],
        cwd=ROOT,
        check=True,
        capture_output=True,
        timeout=300,
    )
    summary = json.loads(out.read_text())
    assert summary["measured"] == "vector envs alone, random actions"
    assert [r["variant"] for r in summary["runs"]] == ["graph", "flat"]
    assert all(r["steps_per_second"] > 0 and "mean_update_s" not in r for r in summary["runs"])


def test_first_success_is_the_first_row_at_or_above_95_percent():
    import importlib.util

    spec = importlib.util.spec_from_file_location("benchmark_training", ROOT / "scripts" / "benchmark_training.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    rows = [
        {"global_step": "1024", "time/elapsed": "1.5", "rolling/success_rate": ""},
        {"global_step": "2048", "time/elapsed": "3.0", "rolling/success_rate": "0.94"},
        {"global_step": "3072", "time/elapsed": "4.5", "rolling/success_rate": "0.95"},
        {"global_step": "4096", "time/elapsed": "6.0", "rolling/success_rate": "0.90"},
    ]
    assert bench.first_success(rows) == {"success_95_step": 3072, "success_95_s": 4.5, "final_rolling_success": 0.9}
    assert bench.first_success(rows[:2])["success_95_step"] is None
