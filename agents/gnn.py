"""Graph actor-critic for graph observations (docs/CONTRACTS.md): attention over the scene graph.

Pipeline, for the actor and (separately, by default) the critic:
node MLP (and optionally an edge MLP) -> K rounds of graph attention with residual + LayerNorm -> head.
The actor reads node 0 (the controlled object), optionally concatenated with a mean+max
pooled graph embedding, and outputs a diagonal Gaussian; the critic reads the pooled embedding.

The attention round computes torch-geometric's ``TransformerConv`` (Shi et al. 2021), with its
projections multiplied out (``GraphAttention``): the encoded edge feature (relative geometry)
enters both the attention score and the message,
so node 0 receives "where is the hole relative to me" and learns which neighbours matter.
Attention is a softmax over whatever neighbours exist, so a model built on 2-node scenes
runs unchanged on 10-node scenes.

Why dense tensors instead of torch-geometric's sparse message passing: the scenes have 2 to
~20 fully connected objects, so the per-layer gather/scatter over an edge list and the
dozens of small ops per layer cost far more than the arithmetic (3.6 ms per ``act`` of one
graph, 210 ms for 512 graphs of 8 nodes). Here the node axis stays padded, ``(B, N, hidden)``,
the edges are an ``(B, N, N, edge_hidden)`` grid (``agents/dense_graph.py``) and a round is
a few batched matmuls. ``tests/test_gnn.py`` checks a round against ``TransformerConv`` with
mapped weights; ``scripts/benchmark_gnn.py`` measures its cost against the MLP.
"""

from __future__ import annotations

import math
from typing import Mapping, Optional, Tuple

import gymnasium as gym
import torch
from torch import nn

from agents.dense_graph import DenseGraph, dense_graph
from agents.distributions import DiagGaussian, DiagGaussianHead
from agents.graph_batch import GRAPH_KEYS, to_tensors
from agents.mlp import ACTIVATIONS, mlp
from agents.normalization import ObservationNormalizer
from agents.rollout_policy import NumpyGraphPolicy, TorchRolloutPolicy

# Added to the attention score of a (target, source) pair without an edge. Finite, unlike -inf,
# so a target without any source gets a finite softmax row (then zeroed) instead of NaN.
NO_EDGE_SCORE = -1e9


def softmax(scores: torch.Tensor) -> torch.Tensor:
    """Softmax over the last axis, written out: ``torch.softmax`` over an axis of ~10 entries runs at
    scalar speed on CPU (2.9 ms vs 0.65 ms for 256 x 4 x 10 x 10 scores, 4.2 vs 1.8 ms with backward)."""
    exp = (scores - scores.detach().amax(dim=-1, keepdim=True)).exp()  # any per-row shift is exact
    return exp / exp.sum(dim=-1, keepdim=True)


# Node counts up to which pairwise products are broadcast instead of batched matmuls: MKL's batched
# matmul of 2 x 2 outputs takes a slow path (forward + backward at 256 graphs of 2 nodes: 0.36 vs
# 0.16 ms for the scores, 0.32 vs 0.16 ms for the aggregation); from 3 nodes on it is the faster.
BROADCAST_MAX_NODES = 2


def pair_scores(s: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """(B, N, N) with entry [b, i, j] = s[b, i] . h[b, j]."""
    if h.shape[1] <= BROADCAST_MAX_NODES:
        return (s.unsqueeze(2) * h.unsqueeze(1)).sum(-1)
    return torch.bmm(s, h.transpose(-1, -2))


def aggregate(attention: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """(B, N, hidden) with row i = sum_j attention[b, i, j] h[b, j]."""
    if h.shape[1] <= BROADCAST_MAX_NODES:
        return (attention.unsqueeze(-1) * h.unsqueeze(1)).sum(2)
    return torch.bmm(attention, h)


class GraphAttention(nn.Module):
    """One single-head attention round on dense graphs: ``TransformerConv`` (Shi et al. 2021,
    ``root_weight=True``) with its projections multiplied out, so it needs fewer matmuls.

    TransformerConv, for target node i, its sources j (edges j -> i) and the edge embedding e_ij:

        q_i = W_q h_i + b_q,   k_ij = W_k h_j + b_k + W_e e_ij,   v_ij = W_v h_j + b_v + W_e e_ij
        a_ij = softmax_j(q_i . k_ij / sqrt(d)),   out_i = sum_j a_ij v_ij + W_r h_i + b_r

    The score is bilinear in h_i and h_j, and the terms that do not depend on j
    (q_i . b_k) cancel in the softmax, so with s_i = S h_i + c (S = W_k^T W_q / sqrt(d)) and
    t_i = T h_i + d (T = W_e^T W_q / sqrt(d)) the score is s_i . h_j + t_i . e_ij: one (hidden, hidden)
    projection instead of two, and the key vectors are never formed. The message sum is linear too:
    sum_j a_ij v_ij = W_v (sum_j a_ij h_j) + W_e' (sum_j a_ij e_ij) + b_v, so the value projection is
    applied once per target to the aggregated neighbour embedding. Together: three (hidden, hidden)
    matmuls per round instead of four, and every edge term costs N^2 * edge_dim, never
    N^2 * edge_dim * hidden. Every TransformerConv is one of these (``tests/test_gnn.py`` maps the
    weights and compares); this form also lets the edge's key and value weights differ. One
    difference: b_v sits in the root bias here, so a node without sources receives W_r h_i + b_r + b_v
    where TransformerConv gives W_r h_i + b_r (it still receives nothing from other nodes).

    One head: on CPU a batched matmul costs a few microseconds per matrix whatever its size,
    and heads multiply the matrices; four heads made a round 1.7-2.5x slower (2026-12-01).
    """

    def __init__(self, hidden_dim: int, edge_dim: int):
        super().__init__()
        self.score = nn.Linear(hidden_dim, hidden_dim)  # s_i = S h_i + c
        self.edge_score = nn.Linear(hidden_dim, edge_dim)  # t_i = T h_i + d
        self.root = nn.Linear(hidden_dim, hidden_dim)  # W_r h_i + b_r + b_v
        self.value = nn.Linear(hidden_dim, hidden_dim, bias=False)  # W_v
        self.edge_value = nn.Linear(edge_dim, hidden_dim, bias=False)  # W_e'
        # Scale of the bilinear score at initialisation: 1/sqrt(d), as q . k / sqrt(d) with q, k of
        # unit-variance entries, so the first softmax is not saturated.
        with torch.no_grad():
            self.score.weight.mul_(1.0 / math.sqrt(hidden_dim))

    def forward(
        self, h: torch.Tensor, edges: torch.Tensor, score_mask: torch.Tensor, adjacency: torch.Tensor
    ) -> torch.Tensor:
        """h (B, N, hidden); edges (B, N, N, E); score_mask (B, N, N) 0 on edges and NO_EDGE_SCORE
        elsewhere; adjacency the same as 1/0 floats."""
        b, n, _ = h.shape
        edge_dim = edges.shape[-1]
        rows = edges.reshape(b * n, n, edge_dim)  # one (sources, E) matrix per target: batched matvecs
        t = self.edge_score(h)
        edge_scores = torch.bmm(rows, t.reshape(b * n, edge_dim, 1)).view(b, n, n)  # t_i . e_ij
        scores = pair_scores(self.score(h), h) + edge_scores + score_mask
        attention = softmax(scores) * adjacency  # a target without sources receives nothing
        edge_sum = torch.bmm(attention.reshape(b * n, 1, n), rows).view(b, n, edge_dim)  # sum_j a_ij e_ij
        return self.root(h) + self.value(aggregate(attention, h)) + self.edge_value(edge_sum)


class GraphEncoder(nn.Module):
    """A node MLP encoder followed by ``num_layers`` residual ``GraphAttention`` rounds.

    ``edge_hidden_dim=None`` feeds the (normalised) edge features straight into each round's
    ``W_e``, exactly as ``TransformerConv(edge_dim=...)`` does; an int puts an edge MLP of that
    width in front. Every op on the edge grid costs N^2 per graph, so the MLP's two layers and the
    wider grid are most of a round's cost at 10 nodes (scripts/benchmark_gnn.py).
    """

    def __init__(
        self,
        node_dim: int,
        edge_dim: int,
        hidden_dim: int,
        edge_hidden_dim: Optional[int],
        num_layers: int,
        activation: str,
    ):
        super().__init__()
        gain = math.sqrt(2.0)
        self.node_encoder = mlp(node_dim, [hidden_dim], hidden_dim, activation, last_gain=gain)
        self.edge_encoder = None
        if edge_hidden_dim is not None:
            self.edge_encoder = mlp(edge_dim, [edge_hidden_dim], edge_hidden_dim, activation, last_gain=gain)
        edge_width = edge_dim if edge_hidden_dim is None else edge_hidden_dim
        self.layers = nn.ModuleList(GraphAttention(hidden_dim, edge_width) for _ in range(num_layers))
        self.norms = nn.ModuleList(nn.LayerNorm(hidden_dim) for _ in range(num_layers))
        self.activation = ACTIVATIONS[activation]()

    def forward(self, graph: DenseGraph, score_mask: torch.Tensor, adjacency: torch.Tensor) -> torch.Tensor:
        """Node embeddings (B, N, hidden_dim); rows of padding nodes are finite and must be ignored."""
        h = self.node_encoder(graph.nodes)
        edges = graph.edges if self.edge_encoder is None else self.edge_encoder(graph.edges)
        for layer, norm in zip(self.layers, self.norms):
            h = norm(h + self.activation(layer(h, edges, score_mask, adjacency)))
        return h


def pool(h: torch.Tensor, node_mask: torch.Tensor) -> torch.Tensor:
    """Per-graph [mean, max] over the real nodes, (B, 2 * hidden_dim)."""
    mask = node_mask.unsqueeze(-1)
    mean = (h * mask).sum(dim=1) / mask.sum(dim=1)
    return torch.cat([mean, h.masked_fill(mask == 0, -math.inf).amax(dim=1)], dim=-1)


def graph_dims(observation_space: gym.Space) -> Tuple[int, int]:
    """(node_dim, edge_dim) of a graph observation space; the node/edge counts are not fixed."""
    if not isinstance(observation_space, gym.spaces.Dict):
        raise ValueError(
            f"GraphActorCritic needs a graph Dict observation space, got {observation_space}; "
            f"use obs_mode='graph' or the MLP actor-critic (agents/mlp.py)"
        )
    missing = [k for k in GRAPH_KEYS if k not in observation_space.spaces]
    if missing:
        raise ValueError(f"graph observation space is missing key(s) {missing}; expected {list(GRAPH_KEYS)}")
    for key in ("nodes", "edge_attr"):
        if len(observation_space[key].shape) != 2:
            raise ValueError(
                f"observation_space['{key}'] must be 2-D (count, dim), got shape {observation_space[key].shape}"
            )
    return observation_space["nodes"].shape[1], observation_space["edge_attr"].shape[1]


class GraphActorCritic(nn.Module):
    """Gaussian policy and value function over graph observations; implements docs/CONTRACTS.md.

    ``shared_encoder=False`` (default) gives actor and critic their own encoders, so a critic
    optimizer step can never move the policy. With ``shared_encoder=True`` the single encoder
    belongs to ``actor_parameters()`` and ``critic_parameters()`` is only the value head: train
    both with one optimizer over ``parameters()`` in that case.
    """

    def __init__(
        self,
        observation_space: gym.Space,
        action_space: gym.Space,
        hidden_dim: int = 64,
        edge_hidden_dim: Optional[int] = None,
        num_layers: int = 2,
        actor_pooling: bool = True,
        shared_encoder: bool = False,
        activation: str = "elu",
        init_log_std: float = 0.0,
        normalize_obs: bool = True,
        obs_clip: Optional[float] = 10.0,
    ):
        super().__init__()
        self.node_dim, self.edge_dim = graph_dims(observation_space)
        if not isinstance(action_space, gym.spaces.Box) or len(action_space.shape) != 1:
            raise ValueError(f"GraphActorCritic needs a 1-D Box action space, got {action_space}")
        _check_sizes(hidden_dim, edge_hidden_dim, num_layers, activation)
        self.actor_pooling = actor_pooling
        action_dim = action_space.shape[0]

        self.obs_normalizer = ObservationNormalizer(observation_space, clip=obs_clip, enabled=normalize_obs)
        encoder_args = (self.node_dim, self.edge_dim, hidden_dim, edge_hidden_dim, num_layers, activation)
        self.actor_encoder = GraphEncoder(*encoder_args)
        self.critic_encoder = None if shared_encoder else GraphEncoder(*encoder_args)
        self.independent_critic = not shared_encoder  # docs/CONTRACTS.md
        actor_in = hidden_dim * (3 if actor_pooling else 1)
        self.actor_mean = mlp(actor_in, [hidden_dim], action_dim, activation, last_gain=0.01)
        self.action_head = DiagGaussianHead(action_dim, init_log_std)
        self.critic = mlp(2 * hidden_dim, [hidden_dim], 1, activation, last_gain=1.0)

    # -- observation handling ------------------------------------------------------------
    def _tensors(self, obs: Mapping) -> dict:
        t = to_tensors(obs, device=self.action_head.log_std.device)
        for key, dim in (("nodes", self.node_dim), ("edge_attr", self.edge_dim)):
            if t[key].shape[-1] != dim:
                raise ValueError(f"'{key}' has feature size {t[key].shape[-1]}, but the model was built for {dim}")
        return t

    def _graph(self, obs: Mapping) -> Tuple[DenseGraph, torch.Tensor, torch.Tensor]:
        """The normalised dense graph, the additive attention mask and the adjacency as floats."""
        graph = dense_graph(self.obs_normalizer(self._tensors(obs)))
        adjacency = graph.adjacency.to(graph.nodes.dtype)
        return graph, (1.0 - adjacency) * NO_EDGE_SCORE, adjacency

    def update_normalizer(self, obs: Mapping) -> None:
        self.obs_normalizer.update(self._tensors(obs))

    # -- heads -----------------------------------------------------------------------------
    def _distribution(self, graph, score_mask, adjacency) -> Tuple[DiagGaussian, torch.Tensor]:
        """Action distribution and the actor's node embeddings (reused by a shared critic)."""
        h = self.actor_encoder(graph, score_mask, adjacency)
        features = h[:, 0]  # node 0 is the controlled object
        if self.actor_pooling:
            features = torch.cat([features, pool(h, graph.node_mask)], dim=-1)
        return self.action_head(self.actor_mean(features)), h

    def _value(self, graph, score_mask, adjacency, actor_h: Optional[torch.Tensor] = None) -> torch.Tensor:
        if self.critic_encoder is not None:
            h = self.critic_encoder(graph, score_mask, adjacency)
        else:
            h = actor_h if actor_h is not None else self.actor_encoder(graph, score_mask, adjacency)
        return self.critic(pool(h, graph.node_mask)).squeeze(-1)

    def distribution(self, obs: Mapping) -> DiagGaussian:
        return self._distribution(*self._graph(obs))[0]

    def value(self, obs: Mapping) -> torch.Tensor:
        return self._value(*self._graph(obs))

    def distribution_and_value(self, obs: Mapping) -> Tuple[DiagGaussian, torch.Tensor]:
        """Both heads from one normalisation and densification of ``obs``."""
        graph = self._graph(obs)
        dist, h = self._distribution(*graph)
        return dist, self._value(*graph, h)

    @torch.no_grad()
    def act(self, obs: Mapping, deterministic: bool = False) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Unclipped action, its log-prob and the state value; no gradients (rollouts only)."""
        dist, value = self.distribution_and_value(obs)
        action = dist.mean if deterministic else dist.sample()
        return action, dist.log_prob(action), value

    def rollout_policy(self):
        """A numpy snapshot for acting during one rollout on the CPU (see agents/rollout_policy.py)."""
        if self.action_head.log_std.device.type != "cpu":
            return TorchRolloutPolicy(self, self.action_head.log_std.device)
        return NumpyGraphPolicy(self)

    # -- parameter groups ------------------------------------------------------------------
    def actor_parameters(self) -> list:
        return [*self.actor_encoder.parameters(), *self.actor_mean.parameters(), *self.action_head.parameters()]

    def critic_parameters(self) -> list:
        encoder = [] if self.critic_encoder is None else list(self.critic_encoder.parameters())
        return [*encoder, *self.critic.parameters()]


def _check_sizes(hidden_dim: int, edge_hidden_dim: Optional[int], num_layers: int, activation: str) -> None:
    if min(hidden_dim, num_layers) < 1:
        raise ValueError(f"hidden_dim and num_layers must be >= 1, got {hidden_dim}, {num_layers}")
    if edge_hidden_dim is not None and edge_hidden_dim < 1:
        raise ValueError(f"edge_hidden_dim must be >= 1 or None (no edge MLP), got {edge_hidden_dim}")
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation={activation!r} is not one of {sorted(ACTIVATIONS)}")
