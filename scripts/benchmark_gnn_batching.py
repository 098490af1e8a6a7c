"""Time GraphActorCritic.act with vectorized graph batching vs a per-sample Batch.from_data_list loop.

Both variants run the same model on the same padded observations; only the padded -> flat
conversion differs (``agents.graph_batch.flatten_tensors`` vs one ``Data`` per sample).
CPU, one thread. Prints a table, then a one-line JSON summary as the last line.

    .venv/bin/python scripts/benchmark_gnn_batching.py [--min-time 0.3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import gymnasium as gym
import numpy as np
import torch
from torch_geometric.data import Batch, Data

from agents.gnn import GraphActorCritic
from agents.graph_batch import GraphBatch, flatten_tensors

NODE_DIM, EDGE_DIM, ACTION_DIM = 13, 3, 6
BATCH_SIZES = (1, 8, 64, 512)
NODE_COUNTS = (2, 8)


def graph_space(num_nodes: int) -> gym.spaces.Dict:
    e = num_nodes * (num_nodes - 1)
    return gym.spaces.Dict({
        "nodes": gym.spaces.Box(-np.inf, np.inf, (num_nodes, NODE_DIM), np.float32),
        "node_mask": gym.spaces.Box(0, 1, (num_nodes,), np.float32),
        "edge_index": gym.spaces.Box(0, num_nodes - 1, (2, e), np.int64),
        "edge_attr": gym.spaces.Box(-np.inf, np.inf, (e, EDGE_DIM), np.float32),
        "edge_mask": gym.spaces.Box(0, 1, (e,), np.float32),
    })


def synthetic_obs(batch_size: int, num_nodes: int, seed: int = 0) -> dict:
    """Fully connected graphs; edge features are relative positions (first 3 node features)."""
    rng = np.random.default_rng(seed)
    nodes = rng.standard_normal((batch_size, num_nodes, NODE_DIM)).astype(np.float32)
    src, dst = np.array([(i, j) for i in range(num_nodes) for j in range(num_nodes) if i != j]).reshape(-1, 2).T
    e = len(src)
    return {
        "nodes": torch.from_numpy(nodes),
        "node_mask": torch.ones(batch_size, num_nodes),
        "edge_index": torch.from_numpy(np.broadcast_to(np.stack([src, dst]), (batch_size, 2, e)).copy()).long(),
        "edge_attr": torch.from_numpy(nodes[:, dst, :3] - nodes[:, src, :3]),
        "edge_mask": torch.ones(batch_size, e),
    }


def naive_flatten(t: dict) -> GraphBatch:
    """The baseline: one torch_geometric Data per sample, then Batch.from_data_list."""
    data = []
    for b in range(t["nodes"].shape[0]):
        node_valid, edge_valid = t["node_mask"][b] > 0.5, t["edge_mask"][b] > 0.5
        new_index = torch.cumsum(node_valid.long(), 0) - 1
        data.append(Data(x=t["nodes"][b][node_valid], edge_index=new_index[t["edge_index"][b][:, edge_valid]],
                         edge_attr=t["edge_attr"][b][edge_valid]))
    batch = Batch.from_data_list(data)
    return GraphBatch(batch.x, batch.edge_index, batch.edge_attr, batch.batch, batch.ptr[:-1], batch.num_graphs)


class NaiveBatchingActorCritic(GraphActorCritic):
    """Same model, but graphs are batched by the per-sample loop."""

    def _graph(self, obs):
        return naive_flatten(self.obs_normalizer(self._tensors(obs)))


def median_time(fn, min_time: float, min_reps: int = 5, warmup: int = 3) -> float:
    """Median seconds per call over at least ``min_reps`` calls and ``min_time`` seconds.

    The median (not the mean) because the machine is shared: it ignores preempted calls.
    """
    for _ in range(warmup):  # first calls pay for lazy initialisation in torch / torch_geometric
        fn()
    times, start = [], time.perf_counter()
    while len(times) < min_reps or time.perf_counter() - start < min_time:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def run_case(batch_size: int, num_nodes: int, min_time: float) -> dict:
    space = graph_space(num_nodes)
    action_space = gym.spaces.Box(-1, 1, (ACTION_DIM,), np.float32)
    torch.manual_seed(0)
    fast = GraphActorCritic(space, action_space)
    naive = NaiveBatchingActorCritic(space, action_space)
    naive.load_state_dict(fast.state_dict())
    obs = synthetic_obs(batch_size, num_nodes)
    a_fast, _, v_fast = fast.act(obs, deterministic=True)
    a_naive, _, v_naive = naive.act(obs, deterministic=True)
    if not (torch.allclose(a_fast, a_naive, atol=1e-5) and torch.allclose(v_fast, v_naive, atol=1e-5)):
        raise RuntimeError("vectorized and naive batching disagree")
    normalized = fast.obs_normalizer(fast._tensors(obs))
    return {
        "batch": batch_size, "nodes": num_nodes,
        "act_vectorized_ms": 1e3 * median_time(lambda: fast.act(obs), min_time),
        "act_naive_ms": 1e3 * median_time(lambda: naive.act(obs), min_time),
        "convert_vectorized_ms": 1e3 * median_time(lambda: flatten_tensors(normalized), min_time),
        "convert_naive_ms": 1e3 * median_time(lambda: naive_flatten(normalized), min_time),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--min-time", type=float, default=0.3, help="seconds of timing per measurement")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = [run_case(b, n, args.min_time) for n in NODE_COUNTS for b in BATCH_SIZES]
    print(f"{'B':>5} {'nodes':>5} | {'act vec ms':>10} {'act naive ms':>12} {'speedup':>7} | "
          f"{'conv vec ms':>11} {'conv naive ms':>13} {'speedup':>7}")
    for r in rows:
        print(f"{r['batch']:>5} {r['nodes']:>5} | {r['act_vectorized_ms']:>10.3f} {r['act_naive_ms']:>12.3f} "
              f"{r['act_naive_ms'] / r['act_vectorized_ms']:>6.1f}x | {r['convert_vectorized_ms']:>11.3f} "
              f"{r['convert_naive_ms']:>13.3f} {r['convert_naive_ms'] / r['convert_vectorized_ms']:>6.1f}x")
    summary = {f"B{r['batch']}_n{r['nodes']}": {k: round(v, 3) for k, v in r.items() if k.endswith("_ms")}
               for r in rows}
    print(json.dumps({"benchmark": "gnn_batching", "threads": 1, "results": summary}))


if __name__ == "__main__":
    main()
