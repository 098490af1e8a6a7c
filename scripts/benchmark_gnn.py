"""Where a training iteration's model time goes: the graph network against the MLP, by scene size.

For every batch size B and node count N: ``act`` of the torch model (no gradients), ``act`` of
its numpy rollout snapshot (what the rollout collector calls, ``rollout_policy()``) and
forward + backward of one PPO-style minibatch (log-prob and value losses), for the graph
actor-critic on fully connected N-node graphs and for the MLP actor-critic on the flat
observation of the same scene (the N node feature rows concatenated, as ``obs_mode=flat``).
"ppo" is one whole PPO minibatch step as the trainer runs it (agents/ppo.py's defaults: actor and
critic forward + backward in two threads, so on two cores; gradient clipping and the Adam step).
"dense floor" is forward + backward of the graph model's ``nn.Linear`` layers alone, each once on
as many rows as it sees in the real forward (B * N node rows in the encoders, B * N * N edge rows in
an edge MLP, B rows in the heads): the arithmetic no formulation of this network avoids, so
f+b minus the floor is what attention, normalisation and per-op overhead cost.
Both use the default model configs (configs/model/gnn.yaml, mlp.yaml). CPU, one torch thread;
each figure is the median over repeated calls. Prints a table, then one JSON line.

    .venv/bin/python scripts/benchmark_gnn.py [--min-time 0.2] [--json docs/benchmarks/gnn.json]
        [--gnn hidden_dim=32 num_layers=1]   # graph model fields other than configs/model/gnn.yaml's
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
import yaml
from omegaconf import OmegaConf

from agents.buffer import RolloutBatch
from agents.gnn import GraphActorCritic
from agents.mlp import MLPActorCritic
from agents.ppo import PPO, PPOConfig
from agents.threads import set_cpu_threads
from envs.graph_obs import EDGE_DIM, fully_connected_edges, node_dim

NUM_KEYPOINTS, ACTION_DIM = 4, 6  # the peg task's defaults
BATCH_SIZES = (1, 4, 64, 256, 1024)
NODE_COUNTS = (2, 6, 10, 20)
CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "model"


def model_kwargs(name: str, overrides: tuple = ()) -> dict:
    """The model group's defaults as scripts/train.py would pass them, with ``key=value`` overrides."""
    cfg = OmegaConf.to_container(OmegaConf.load(CONFIGS / f"{name}.yaml"))
    kwargs = {k: v for k, v in cfg.items() if k != "defaults"}
    for override in overrides:
        key, sep, value = override.partition("=")
        if not sep or key not in kwargs:
            raise ValueError(f"--{name} {override!r}: expected key=value with key one of {sorted(kwargs)}")
        kwargs[key] = yaml.safe_load(value)
    return kwargs


def scene(batch_size: int, num_nodes: int, seed: int = 0) -> tuple:
    """(graph observation, flat observation) of B random scenes; edges carry relative positions."""
    rng = np.random.default_rng(seed)
    nodes = rng.standard_normal((batch_size, num_nodes, node_dim(NUM_KEYPOINTS))).astype(np.float32)
    source, target = fully_connected_edges(num_nodes)
    relative = nodes[:, target, 3:6] - nodes[:, source, 3:6]
    edge_attr = np.concatenate([relative, np.linalg.norm(relative, axis=-1, keepdims=True)], -1)
    graph = {
        "nodes": nodes,
        "node_mask": np.ones((batch_size, num_nodes), np.float32),
        "edge_index": np.broadcast_to(np.stack([source, target]), (batch_size, 2, len(source))).copy(),
        "edge_attr": edge_attr.astype(np.float32),
        "edge_mask": np.ones((batch_size, len(source)), np.float32),
    }
    return {k: torch.as_tensor(v) for k, v in graph.items()}, torch.as_tensor(nodes.reshape(batch_size, -1))


def spaces(num_nodes: int) -> tuple:
    e, f = num_nodes * (num_nodes - 1), node_dim(NUM_KEYPOINTS)
    box = lambda *shape: gym.spaces.Box(-100.0, 100.0, shape, np.float32)  # noqa: E731
    graph = gym.spaces.Dict(
        {
            "nodes": box(num_nodes, f),
            "node_mask": gym.spaces.Box(0, 1, (num_nodes,)),
            "edge_index": gym.spaces.Box(0, num_nodes - 1, (2, e), np.int64),
            "edge_attr": box(e, EDGE_DIM),
            "edge_mask": gym.spaces.Box(0, 1, (e,)),
        }
    )
    return graph, box(num_nodes * f), gym.spaces.Box(-1, 1, (ACTION_DIM,), np.float32)


def median_ms(fn, min_time: float, min_reps: int = 5, warmup: int = 2) -> float:
    """Median milliseconds per call over at least ``min_reps`` calls and ``min_time`` seconds
    (the median ignores calls preempted by the shared machine)."""
    for _ in range(warmup):
        fn()
    times, start = [], time.perf_counter()
    while len(times) < min_reps or time.perf_counter() - start < min_time:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


def minibatch_step(model: torch.nn.Module, obs) -> callable:
    """Forward + backward of PPO's two losses on one minibatch (no optimizer step)."""
    actions = torch.randn(obs["nodes"].shape[0] if isinstance(obs, dict) else obs.shape[0], ACTION_DIM)

    def step():
        model.zero_grad(set_to_none=True)
        dist, values = model.distribution_and_value(obs)
        (-dist.log_prob(actions).mean() + values.square().mean()).backward()

    return step


def ppo_step(model: torch.nn.Module, obs) -> callable:
    """One PPO minibatch step as the trainer runs it (agents/ppo.py, default config): the actor's and
    the critic's forward + backward in two threads (``parallel_critic``), gradient clipping, Adam."""
    batch_size = obs["nodes"].shape[0] if isinstance(obs, dict) else obs.shape[0]
    ppo = PPO(model, PPOConfig(minibatch_size=batch_size))
    with torch.no_grad():
        dist, values = model.distribution_and_value(obs)
        actions = dist.sample()
        log_probs = dist.log_prob(actions)
    advantages, returns = torch.randn(batch_size), values + torch.randn(batch_size)
    mb = RolloutBatch(torch.arange(batch_size), obs, actions, log_probs, values, advantages, returns)
    return lambda: ppo._minibatch_step(mb, log_probs, stop_kl=None)


def dense_floor_step(model: GraphActorCritic, batch_size: int, num_nodes: int) -> tuple:
    """(forward + backward of every ``nn.Linear`` of ``model`` once at its row count, its GFLOP)."""
    layers = []
    for encoder in (model.actor_encoder, model.critic_encoder):
        if encoder is None:
            continue
        edge_layers = set() if encoder.edge_encoder is None else set(encoder.edge_encoder.modules())
        for module in encoder.modules():
            if isinstance(module, torch.nn.Linear):
                rows = batch_size * num_nodes * (num_nodes if module in edge_layers else 1)
                layers.append((module, rows))
    for head in (model.actor_mean, model.critic):
        layers += [(m, batch_size) for m in head.modules() if isinstance(m, torch.nn.Linear)]
    inputs = [torch.randn(rows, layer.in_features, requires_grad=True) for layer, rows in layers]

    def step():
        model.zero_grad(set_to_none=True)
        sum(layer(x).sum() for (layer, _), x in zip(layers, inputs)).backward()

    # forward, gradient w.r.t. input and w.r.t. weight: three matmuls of 2 * rows * in * out flops each
    gflop = sum(3 * 2 * rows * layer.in_features * layer.out_features for layer, rows in layers) / 1e9
    return step, gflop


def run_case(batch_size: int, num_nodes: int, min_time: float, gnn_kwargs: dict) -> dict:
    graph_space, flat_space, action_space = spaces(num_nodes)
    torch.manual_seed(0)
    gnn = GraphActorCritic(graph_space, action_space, **gnn_kwargs)
    mlp = MLPActorCritic(flat_space, action_space, **model_kwargs("mlp"))
    graph, flat = scene(batch_size, num_nodes)
    for model, obs in ((gnn, graph), (mlp, flat)):
        model.update_normalizer(obs)
    graph_np, flat_np = {k: v.numpy() for k, v in graph.items()}, flat.numpy()
    gnn_rollout, mlp_rollout = gnn.rollout_policy(), mlp.rollout_policy()
    floor_step, floor_gflop = dense_floor_step(gnn, batch_size, num_nodes)
    return {
        "batch": batch_size,
        "nodes": num_nodes,
        "gnn_act_ms": median_ms(lambda: gnn.act(graph), min_time),
        "mlp_act_ms": median_ms(lambda: mlp.act(flat), min_time),
        "gnn_rollout_act_ms": median_ms(lambda: gnn_rollout.act(graph_np), min_time),
        "mlp_rollout_act_ms": median_ms(lambda: mlp_rollout.act(flat_np), min_time),
        "gnn_fwd_bwd_ms": median_ms(minibatch_step(gnn, graph), min_time),
        "mlp_fwd_bwd_ms": median_ms(minibatch_step(mlp, flat), min_time),
        "gnn_ppo_step_ms": median_ms(ppo_step(gnn, graph), min_time),
        "mlp_ppo_step_ms": median_ms(ppo_step(mlp, flat), min_time),
        "gnn_dense_floor_ms": median_ms(floor_step, min_time),
        "gnn_dense_floor_gflop": floor_gflop,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--min-time", type=float, default=0.2, help="seconds of timing per measurement")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=list(BATCH_SIZES))
    parser.add_argument("--nodes", type=int, nargs="+", default=list(NODE_COUNTS))
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    parser.add_argument("--gnn", nargs="+", default=[], metavar="KEY=VALUE", help="graph model overrides")
    args = parser.parse_args()
    gnn_kwargs = model_kwargs("gnn", args.gnn)
    set_cpu_threads(1)  # torch and numpy's BLAS
    print(
        f"{'N':>3} {'B':>5} | {'gnn act':>8} {'mlp act':>8} | {'gnn roll':>8} {'mlp roll':>8} | "
        f"{'gnn f+b':>8} {'mlp f+b':>8} {'ratio':>6} | {'gnn ppo':>8} {'mlp ppo':>8} | {'floor':>7} {'GFLOP':>6}  (ms)"
    )
    rows = []
    for n in args.nodes:
        for b in args.batch_sizes:
            r = run_case(b, n, args.min_time, gnn_kwargs)
            rows.append(r)
            print(
                f"{n:>3} {b:>5} | {r['gnn_act_ms']:>8.3f} {r['mlp_act_ms']:>8.3f} | "
                f"{r['gnn_rollout_act_ms']:>8.3f} {r['mlp_rollout_act_ms']:>8.3f} | {r['gnn_fwd_bwd_ms']:>8.2f} "
                f"{r['mlp_fwd_bwd_ms']:>8.2f} {r['gnn_fwd_bwd_ms'] / r['mlp_fwd_bwd_ms']:>5.1f}x | "
                f"{r['gnn_ppo_step_ms']:>8.2f} {r['mlp_ppo_step_ms']:>8.2f} | "
                f"{r['gnn_dense_floor_ms']:>7.2f} {r['gnn_dense_floor_gflop']:>6.3f}",
                flush=True,
            )
    summary = {
        "benchmark": "gnn",
        "threads": 1,
        "gnn": gnn_kwargs,
        "mlp": model_kwargs("mlp"),
        "results": [{k: round(v, 4) if isinstance(v, float) else v for k, v in r.items()} for r in rows],
    }
    if args.json:
        args.json.write_text(json.dumps(summary, indent=1) + "\n")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
