"""The policy as the rollout collector calls it: numpy observations in, numpy actions out.

A rollout acts on a handful of observations at a time (one per env). At that
size the arithmetic of a small network takes a few microseconds, and the
cost is per-call overhead: torch dispatches each op in ~5 us and an MLP
actor-critic's ``act`` is ~40 ops (normalise, two MLPs, build the Gaussian,
sample, log-prob), about 230 us per call. That was a third of a training
step on fast environments. The policy does not change during a rollout
(the trainer merges each rollout into the observation normaliser only
after its update, see agents/trainer.py), so
``NumpyMLPPolicy`` takes a float32 numpy snapshot of an ``MLPActorCritic``
at the start of each rollout and acts with it in ~30 us. It returns the
same actions, log-probs and values as ``MLPActorCritic.act`` up to float32
rounding (tests/test_rollout_policy.py).

``TorchRolloutPolicy`` wraps any actor-critic that follows docs/CONTRACTS.md
(the GNN, test stubs) behind the same two methods.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Tuple, Union

import numpy as np
import torch
from torch import nn

from agents.distributions import LOG_SQRT_2PI

NumpyObs = Union[np.ndarray, Dict[str, np.ndarray]]


def obs_to_tensor(obs: NumpyObs, device: Union[str, torch.device]) -> Any:
    """Batched numpy observation (array or dict of arrays) to tensors; floats become float32."""

    def convert(x):
        t = torch.as_tensor(np.asarray(x), device=device)
        return t.float() if t.is_floating_point() else t

    if isinstance(obs, dict):
        return {k: convert(v) for k, v in obs.items()}
    return convert(obs)


class TorchRolloutPolicy:
    """Any contract actor-critic behind ``act``/``value`` on numpy batches (no gradients)."""

    def __init__(self, model: nn.Module, device: Union[str, torch.device] = "cpu"):
        self.model, self.device = model, device

    @torch.no_grad()
    def act(self, obs: NumpyObs, deterministic: bool = False) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        action, log_prob, value = self.model.act(obs_to_tensor(obs, self.device), deterministic=deterministic)
        return action.cpu().numpy(), log_prob.float().cpu().numpy(), value.float().cpu().numpy()

    @torch.no_grad()
    def value(self, obs: NumpyObs) -> np.ndarray:
        return self.model.value(obs_to_tensor(obs, self.device)).float().cpu().numpy()


NUMPY_ACTIVATIONS: Dict[type, Callable[[np.ndarray], np.ndarray]] = {
    nn.Tanh: np.tanh,
    nn.ReLU: lambda x: np.maximum(x, 0.0),
    nn.ELU: lambda x: np.maximum(x, 0.0) + np.expm1(np.minimum(x, 0.0)),
}


def _numpy_linear(linear: nn.Linear) -> Tuple[np.ndarray, Any]:
    """(W^T, b) of an ``nn.Linear`` as float32 arrays (b is None without a bias)."""
    weight = linear.weight.detach().cpu().numpy().astype(np.float32).T.copy()
    bias = None if linear.bias is None else linear.bias.detach().cpu().numpy().astype(np.float32).copy()
    return weight, bias


def _affine(x: np.ndarray, layer: Tuple[np.ndarray, Any]) -> np.ndarray:
    weight, bias = layer
    return x @ weight if bias is None else x @ weight + bias


def _numpy_layers(sequential: nn.Sequential) -> List[Tuple[str, Any]]:
    """[("linear", (W^T, b)) | ("act", fn)] for an nn.Sequential of Linear layers and activations."""
    layers = []
    for module in sequential:
        if isinstance(module, nn.Linear):
            layers.append(("linear", _numpy_linear(module)))
        elif type(module) in NUMPY_ACTIVATIONS:
            layers.append(("act", NUMPY_ACTIVATIONS[type(module)]))
        else:
            raise ValueError(f"no numpy version of {type(module).__name__}; use TorchRolloutPolicy")
    return layers


def _run(layers: List[Tuple[str, Any]], x: np.ndarray) -> np.ndarray:
    for kind, layer in layers:
        x = _affine(x, layer) if kind == "linear" else layer(x)
    return x


def _numpy_statistics(stats: nn.Module) -> Tuple[np.ndarray, np.ndarray, Any]:
    """(mean, std, clip) of an ``agents.normalization.RunningMeanStd`` in float32."""
    std = np.sqrt(stats.var.cpu().numpy() + stats.epsilon).astype(np.float32)
    return stats.mean.cpu().numpy().astype(np.float32), std, stats.clip


def _normalize(x: np.ndarray, statistics: Tuple[np.ndarray, np.ndarray, Any]) -> np.ndarray:
    """(x - mean) / std, clipped, as ``RunningMeanStd.forward``."""
    mean, std, clip = statistics
    x = (x - mean) / std
    if clip is not None:
        np.clip(x, -clip, clip, out=x)
    return x


class _NumpyGaussianPolicy:
    """The diagonal Gaussian action head of a numpy snapshot.

    Sampling noise comes from a numpy generator seeded from torch's global
    generator when the snapshot is taken (``torch.randn`` alone costs ~20 us per
    call), so ``torch.manual_seed`` still makes rollouts reproducible.
    """

    def __init__(self, model: nn.Module):
        self.log_std = model.action_head.log_std.detach().cpu().numpy().astype(np.float32)
        self.action_std = np.exp(self.log_std)
        self.rng = np.random.default_rng(int(torch.randint(0, 2**62, ()).item()))

    def _sample(self, mean: np.ndarray, deterministic: bool) -> Tuple[np.ndarray, np.ndarray]:
        """(action, log-prob) around the action means; the mean itself when ``deterministic``."""
        noise = np.zeros_like(mean) if deterministic else self.rng.standard_normal(mean.shape, dtype=np.float32)
        action = mean + noise * self.action_std
        # Diagonal Gaussian log-density: sum_i -z_i^2 / 2 - log s_i - log sqrt(2 pi), z = (a - m) / s = noise
        log_prob = (-0.5 * noise * noise - self.log_std - LOG_SQRT_2PI).sum(axis=-1)
        return action.astype(np.float32), log_prob.astype(np.float32)


class NumpyMLPPolicy(_NumpyGaussianPolicy):
    """A frozen float32 numpy snapshot of an ``MLPActorCritic`` (take a new one after every update)."""

    def __init__(self, model: nn.Module):
        super().__init__(model)
        normalizer = model.obs_normalizer
        self.statistics = None
        if normalizer.enabled:
            mean, std, clip = _numpy_statistics(normalizer.obs)
            self.statistics = (mean.reshape(-1), std.reshape(-1), clip)
        self.actor = _numpy_layers(model.actor_mean)
        self.critic = _numpy_layers(model.critic)

    def _features(self, obs: np.ndarray) -> np.ndarray:
        x = np.asarray(obs, dtype=np.float32)
        x = x.reshape(x.shape[0], -1)
        return x if self.statistics is None else _normalize(x, self.statistics)

    def act(self, obs: np.ndarray, deterministic: bool = False) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        features = self._features(obs)
        action, log_prob = self._sample(_run(self.actor, features), deterministic)
        return action, log_prob, _run(self.critic, features)[:, 0].astype(np.float32)

    def value(self, obs: np.ndarray) -> np.ndarray:
        return _run(self.critic, self._features(obs))[:, 0].astype(np.float32)


def _numpy_softmax(scores: np.ndarray) -> np.ndarray:
    exp = np.exp(scores - scores.max(axis=-1, keepdims=True))
    return exp / exp.sum(axis=-1, keepdims=True)


def _stacked(arrays: List[np.ndarray], batch_dims: int) -> np.ndarray:
    """Arrays of the same shape stacked on a new leading (encoder) axis, with ``batch_dims``
    broadcast axes after it: each encoder's weights meet the same (batch, ...) inputs."""
    stack = np.stack(arrays)
    return stack.reshape(stack.shape[:1] + (1,) * batch_dims + stack.shape[1:])


def _stacked_layers(sequentials: List[nn.Sequential], batch_dims: int) -> List[Tuple[str, Any]]:
    """``_numpy_layers`` of several identically shaped MLPs, weights stacked (see ``_stacked``)."""
    per_mlp = [_numpy_layers(s) for s in sequentials]
    layers = []
    for parts in zip(*per_mlp):
        kind, layer = parts[0]
        if kind == "linear":
            weight = _stacked([w for _, (w, _) in parts], batch_dims)
            bias = None if layer[1] is None else _stacked([b[None] for _, (_, b) in parts], batch_dims)
            layer = (weight, bias)
        layers.append((kind, layer))
    return layers


def _tensor(parameter: torch.Tensor) -> np.ndarray:
    return parameter.detach().cpu().numpy().astype(np.float32)


class _NumpyGraphEncoders:
    """Several ``agents.gnn.GraphEncoder`` (the actor's and the critic's) in float32 numpy, run as one.

    Same equations as ``GraphAttention``. The encoders' weights are stacked on a leading axis, so
    both encoders cost one set of numpy calls on the same inputs: at rollout batch sizes each
    call's overhead, not its arithmetic, is the cost. Returns embeddings (E, B, N, hidden).
    """

    def __init__(self, encoders: List[nn.Module]):
        first = encoders[0]
        self.node_encoder = _stacked_layers([e.node_encoder for e in encoders], 1)  # inputs (B, N, F)
        self.edge_encoder = None
        if first.edge_encoder is not None:
            self.edge_encoder = _stacked_layers([e.edge_encoder for e in encoders], 2)  # inputs (B, N, N, D)
        self.activation = NUMPY_ACTIVATIONS[type(first.activation)]
        self.layers = [
            self._layer([e.layers[i] for e in encoders], [e.norms[i] for e in encoders])
            for i in range(len(first.layers))
        ]

    @staticmethod
    def _layer(layers: List[nn.Module], norms: List[nn.Module]) -> Dict[str, Any]:
        """One attention round: the per-target projections (score, edge score, root) as one
        (hidden, 2 hidden + edge_dim) matmul, the value and edge-value weights, the LayerNorm."""

        def project(layer):
            parts = [_numpy_linear(p) for p in (layer.score, layer.edge_score, layer.root)]
            return np.concatenate([w for w, _ in parts], axis=1), np.concatenate([b for _, b in parts])

        projections = [project(layer) for layer in layers]
        return {
            "project": (_stacked([w for w, _ in projections], 1), _stacked([b[None] for _, b in projections], 1)),
            "widths": (layers[0].score.out_features, layers[0].edge_score.out_features),
            "value": _stacked([_numpy_linear(layer.value)[0] for layer in layers], 1),
            "edge_value": _stacked([_numpy_linear(layer.edge_value)[0] for layer in layers], 1),
            "norm": (
                _stacked([_tensor(n.weight)[None] for n in norms], 1),
                _stacked([_tensor(n.bias)[None] for n in norms], 1),
                np.float32(1.0 / norms[0].normalized_shape[0]),
                np.float32(norms[0].eps),
            ),
        }

    def __call__(
        self, nodes: np.ndarray, edges: np.ndarray, score_mask: np.ndarray, adjacency: np.ndarray
    ) -> np.ndarray:
        h = _run(self.node_encoder, nodes)  # (E, B, N, hidden)
        if self.edge_encoder is not None:
            edges = _run(self.edge_encoder, edges)  # (E, B, N, N, edge_hidden)
        for p in self.layers:
            hidden, edge_dim = p["widths"]
            projected = _affine(h, p["project"])
            s, t, root = np.split(projected, [hidden, hidden + edge_dim], axis=-1)
            scores = (t[..., None, :] * edges).sum(-1) + score_mask  # t_i . e_ij
            scores += s @ np.swapaxes(h, -1, -2)  # s_i . h_j
            attention = _numpy_softmax(scores) * adjacency
            edge_sum = (attention[..., None] * edges).sum(-2)  # sum over sources j
            out = root + (attention @ h) @ p["value"] + edge_sum @ p["edge_value"]
            h = h + self.activation(out)
            weight, bias, inverse_width, eps = p["norm"]  # LayerNorm; sum * (1/width): ndarray.mean is slower
            centred = h - h.sum(-1, keepdims=True) * inverse_width
            variance = (centred * centred).sum(-1, keepdims=True) * inverse_width
            h = centred / np.sqrt(variance + eps) * weight + bias
        return h


class NumpyGraphPolicy(_NumpyGaussianPolicy):
    """A frozen float32 numpy snapshot of a ``GraphActorCritic`` (take a new one after every update).

    A rollout calls the graph network with a handful of small graphs per step, where torch's
    per-op dispatch (~150 ops per call) costs ~2.5 ms and the arithmetic microseconds; numpy runs
    the same equations in a fraction of that (scripts/benchmark_gnn.py). The graph structure
    (edge list and masks) is checked with the model's own validation whenever it changes,
    and its dense form reused while it does not: environments send the same structure every step.
    """

    def __init__(self, model: nn.Module):
        from agents.gnn import NO_EDGE_SCORE  # here: agents.gnn imports this module

        super().__init__(model)
        self.no_edge_score = np.float32(NO_EDGE_SCORE)
        normalizer = model.obs_normalizer
        self.statistics = None
        if normalizer.enabled:
            self.statistics = {
                "nodes": _numpy_statistics(normalizer.nodes),
                "edge_attr": _numpy_statistics(normalizer.edges),
            }
        self.model = model
        encoders = [model.actor_encoder] + ([] if model.critic_encoder is None else [model.critic_encoder])
        self.encoders = _NumpyGraphEncoders(encoders)  # embeddings [actor, critic] (or [shared])
        self.actor_pooling = model.actor_pooling
        self.actor = _numpy_layers(model.actor_mean)
        self.critic = _numpy_layers(model.critic)
        self._structures = {}  # batch shape -> (edge_index, edge_mask, node_mask, *_dense_structure's result)

    def _normalized(self, obs: Dict[str, np.ndarray], key: str, mask: np.ndarray) -> np.ndarray:
        x = np.asarray(obs[key], dtype=np.float32)
        if self.statistics is not None:
            x = _normalize(x, self.statistics[key])
        return x * mask[..., None]

    def _dense_structure(self, obs: Dict[str, np.ndarray]) -> tuple:
        """(graph of each valid edge, its grid cell, valid edges, adjacency, score mask), validated when new."""
        edge_index, edge_mask, node_mask = (np.asarray(obs[k]) for k in ("edge_index", "edge_mask", "node_mask"))
        # One entry per batch shape: a rollout alternates between all envs and the few truncated ones.
        cached = self._structures.get(edge_index.shape)
        if (
            cached is not None
            and np.array_equal(cached[0], edge_index)
            and np.array_equal(cached[1], edge_mask)
            and np.array_equal(cached[2], node_mask)
        ):
            return cached[3:]
        from agents.dense_graph import dense_graph

        dense = dense_graph(self.model._tensors(obs))  # the model's checks: clear errors for bad structure
        n = node_mask.shape[-1]
        valid = edge_mask > 0.5
        cells = edge_index[:, 1] * n + edge_index[:, 0]  # edge j -> i sits in cell i * N + j
        graphs = np.broadcast_to(np.arange(len(cells))[:, None], cells.shape)
        adjacency = dense.adjacency.numpy().astype(np.float32)
        structure = (graphs[valid], cells[valid], valid, adjacency, (1.0 - adjacency) * self.no_edge_score)
        self._structures[edge_index.shape] = (edge_index.copy(), edge_mask.copy(), node_mask.copy(), *structure)
        return structure

    def _embeddings(self, obs: Dict[str, np.ndarray]) -> tuple:
        graphs, cells, valid, adjacency, score_mask = self._dense_structure(obs)
        node_mask = np.asarray(obs["node_mask"], dtype=np.float32)
        nodes = self._normalized(obs, "nodes", node_mask)
        edge_attr = self._normalized(obs, "edge_attr", np.asarray(obs["edge_mask"], dtype=np.float32))
        b, n = node_mask.shape
        edges = np.zeros((b, n * n, edge_attr.shape[-1]), np.float32)
        edges[graphs, cells] = edge_attr[valid]
        edges = edges.reshape(b, n, n, -1)
        h = self.encoders(nodes, edges, score_mask, adjacency)
        return h[0], h[-1], node_mask[..., None]

    @staticmethod
    def _pool(h: np.ndarray, mask: np.ndarray) -> np.ndarray:
        mean = (h * mask).sum(1) / mask.sum(1)
        return np.concatenate([mean, np.where(mask > 0, h, -np.inf).max(1)], axis=-1)

    def act(self, obs: Dict[str, np.ndarray], deterministic: bool = False) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        actor_h, critic_h, mask = self._embeddings(obs)
        features = actor_h[:, 0]
        if self.actor_pooling:
            features = np.concatenate([features, self._pool(actor_h, mask)], axis=-1)
        action, log_prob = self._sample(_run(self.actor, features), deterministic)
        return action, log_prob, _run(self.critic, self._pool(critic_h, mask))[:, 0].astype(np.float32)

    def value(self, obs: Dict[str, np.ndarray]) -> np.ndarray:
        _, critic_h, mask = self._embeddings(obs)
        return _run(self.critic, self._pool(critic_h, mask))[:, 0].astype(np.float32)
