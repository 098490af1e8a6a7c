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
            "--gnn",
            "num_layers=1",
        ],
        cwd=ROOT,
        check=True,
        capture_output=True,
        timeout=300,
    )
    summary = json.loads(out.read_text())
    cases = {(r["nodes"], r["batch"]) for r in summary["results"]}
    assert cases == {(2, 1), (2, 3), (4, 1), (4, 3)}
    keys = (
        "gnn_act_ms",
        "mlp_act_ms",
        "gnn_rollout_act_ms",
        "mlp_rollout_act_ms",
        "gnn_fwd_bwd_ms",
        "mlp_fwd_bwd_ms",
        "gnn_dense_floor_ms",
        "gnn_ppo_step_ms",
        "mlp_ppo_step_ms",
    )
    assert all(r[k] > 0 for r in summary["results"] for k in keys)
    assert summary["gnn"]["num_layers"] == 1 and summary["mlp"]["hidden_sizes"] == [64, 64]


def test_dense_floor_counts_every_linear_layer_at_its_row_count():
    """The floor's flops against a hand count of the default graph model (2 rounds)."""
    import importlib.util

    import torch

    spec = importlib.util.spec_from_file_location("benchmark_gnn", ROOT / "scripts" / "benchmark_gnn.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    graph_space, _, action_space = bench.spaces(4)
    model = bench.GraphActorCritic(graph_space, action_space, **bench.model_kwargs("gnn"))
    step, gflop = bench.dense_floor_step(model, batch_size=3, num_nodes=4)
    f, e, h, a = model.node_dim, model.edge_dim, bench.model_kwargs("gnn")["hidden_dim"], action_space.shape[0]
    assert bench.model_kwargs("gnn")["num_layers"] == 2
    # per encoder: node MLP (f->h, h->h), then per round score, root, value (h->h), edge score (h->e), edge value (e->h)
    encoder_macs = 3 * 4 * (f * h + h * h + 2 * (3 * h * h + 2 * e * h))
    heads_macs = 3 * (3 * h * h + h * a + 2 * h * h + h * 1)  # actor on [node 0, mean, max]; critic on [mean, max]
    assert gflop == 3 * 2 * (2 * encoder_macs + heads_macs) / 1e9
    step()
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert all(m.weight.grad is not None and torch.isfinite(m.weight.grad).all() for m in linears)
