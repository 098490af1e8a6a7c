"""scripts/benchmark_gnn.py runs end to end on a tiny grid and writes every measurement."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_benchmark_gnn_reports_every_case(tmp_path):
    out = tmp_path / "gnn.json"
    subprocess.run(
        [
            sys.executable,
            "scripts/benchmark_gnn.py",
            "--min-time",
            "0",
            "--batch-sizes",
            "1",
            "3",
            "--nodes",
            "2",
            "4",
            "--json",
            str(out),
        ],
        cwd=ROOT,
        check=True,
        capture_output=True,
        timeout=300,
    )
    summary = json.loads(out.read_text())
    cases = {(r["nodes"], r["batch"]) for r in summary["results"]}
    assert cases == {(2, 1), (2, 3), (4, 1), (4, 3)}
    keys = ("gnn_act_ms", "mlp_act_ms", "gnn_rollout_act_ms", "mlp_rollout_act_ms", "gnn_fwd_bwd_ms", "mlp_fwd_bwd_ms")
    assert all(r[k] > 0 for r in summary["results"] for k in keys)
    assert summary["gnn"]["hidden_dim"] == 64 and summary["mlp"]["hidden_sizes"] == [64, 64]
