"""scripts/benchmark_env.py runs end to end and reports every packed-objects physics variant against the peg."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_benchmark_env_compares_rigid_and_multibody_packed_boxes_with_the_peg():
    command = [sys.executable, "scripts/benchmark_env.py", "--steps", "30", "--no-panda-gym", "--robots", "floating"]
    done = subprocess.run(command, cwd=ROOT, check=True, capture_output=True, text=True)
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    for task in ("", "packed_", "packed_multibody_", "packed_residual_"):
        for mode in ("graph", "flat"):
            assert summary[f"{task}floating_{mode}_steps_per_s"] > 0
    for packed in ("packed", "packed_multibody", "packed_residual"):
        for mode in ("graph", "flat"):
            ratio = summary[f"{packed}_vs_peg_step_cost_floating_{mode}"]
            expected = summary[f"floating_{mode}_steps_per_s"] / summary[f"{packed}_floating_{mode}_steps_per_s"]
            assert abs(ratio - expected) < 0.01
