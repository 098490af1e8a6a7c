"""Graph actor-critic for graph observations (docs/CONTRACTS.md): message passing over the scene graph.

Pipeline, for the actor and (separately, by default) the critic:
node MLP and edge MLP -> K rounds of ``TransformerConv`` with residual + LayerNorm -> head.
The actor reads node 0 (the controlled peg), optionally concatenated with a mean+max
pooled graph embedding, and outputs a diagonal Gaussian; the critic reads the pooled embedding.

Why ``TransformerConv`` (attention with edge features) rather than ``GATv2Conv`` or ``NNConv``:
the decisive information for insertion is *relative geometry*, which lives on the edges
(relative positions). ``TransformerConv`` adds the encoded edge feature to both the attention
key and the message value, so node 0 receives "where is the hole relative to me" and can learn
which neighbours matter. ``GATv2Conv`` uses edge features only to score attention; its message
is the neighbour's own features, so the relative geometry would reach node 0 only indirectly.
``NNConv`` generates a hidden x hidden weight matrix per edge: O(E * hidden^2) memory and
time, the most expensive option on CPU for little expected benefit on graphs of a few nodes.
Attention also handles any node count (softmax over whatever neighbours exist), so a model
built for 2-node graphs runs unchanged on 8-node graphs.
"""

from __future__ import annotations

import math
from typing import Mapping, Optional, Tuple

import gymnasium as gym
import torch
from torch import nn
from torch_geometric.nn import TransformerConv, global_max_pool, global_mean_pool

from agents.distributions import DiagGaussian, DiagGaussianHead
from agents.graph_batch import GRAPH_KEYS, GraphBatch, flatten_tensors, to_tensors
from agents.mlp import ACTIVATIONS, mlp
from agents.normalization import ObservationNormalizer


class GraphEncoder(nn.Module):
    """Node/edge MLP encoders followed by ``num_layers`` residual TransformerConv rounds."""

    def __init__(self, node_dim: int, edge_dim: int, hidden_dim: int, num_layers: int, heads: int,
                 activation: str):
        super().__init__()
        gain = math.sqrt(2.0)
        self.node_encoder = mlp(node_dim, [hidden_dim], hidden_dim, activation, last_gain=gain)
        self.edge_encoder = mlp(edge_dim, [hidden_dim], hidden_dim, activation, last_gain=gain)
        # concat=True with hidden_dim // heads per head keeps the width at hidden_dim;
        # root_weight adds a learned self term, so nodes without in-edges keep their state.
        self.convs = nn.ModuleList(
            TransformerConv(hidden_dim, hidden_dim // heads, heads=heads, concat=True,
                            edge_dim=hidden_dim, root_weight=True)
            for _ in range(num_layers))
        self.norms = nn.ModuleList(nn.LayerNorm(hidden_dim) for _ in range(num_layers))
        self.activation = ACTIVATIONS[activation]()

    def forward(self, graph: GraphBatch) -> torch.Tensor:
        """Node embeddings (V, hidden_dim)."""
        h = self.node_encoder(graph.x)
        e = self.edge_encoder(graph.edge_attr)
        for conv, norm in zip(self.convs, self.norms):
            h = norm(h + self.activation(conv(h, graph.edge_index, e)))
        return h


def pool(h: torch.Tensor, graph: GraphBatch) -> torch.Tensor:
    """Per-graph [mean, max] of the node embeddings, (B, 2 * hidden_dim)."""
    size = graph.num_graphs
    return torch.cat([global_mean_pool(h, graph.batch, size), global_max_pool(h, graph.batch, size)], dim=-1)


def graph_dims(observation_space: gym.Space) -> Tuple[int, int]:
    """(node_dim, edge_dim) of a graph observation space; the node/edge counts are not fixed."""
    if not isinstance(observation_space, gym.spaces.Dict):
        raise ValueError(f"GraphActorCritic needs a graph Dict observation space, got {observation_space}; "
                         f"use obs_mode='graph' or the MLP actor-critic (agents/mlp.py)")
    missing = [k for k in GRAPH_KEYS if k not in observation_space.spaces]
    if missing:
        raise ValueError(f"graph observation space is missing key(s) {missing}; expected {list(GRAPH_KEYS)}")
    for key in ("nodes", "edge_attr"):
        if len(observation_space[key].shape) != 2:
            raise ValueError(f"observation_space['{key}'] must be 2-D (count, dim), "
                             f"got shape {observation_space[key].shape}")
    return observation_space["nodes"].shape[1], observation_space["edge_attr"].shape[1]


class GraphActorCritic(nn.Module):
    """Gaussian policy and value function over graph observations; implements docs/CONTRACTS.md.

    ``shared_encoder=False`` (default) gives actor and critic their own encoders, so a critic
    optimizer step can never move the policy. With ``shared_encoder=True`` the single encoder
    belongs to ``actor_parameters()`` and ``critic_parameters()`` is only the value head: train
    both with one optimizer over ``parameters()`` in that case.
    """

    def __init__(self, observation_space: gym.Space, action_space: gym.Space, hidden_dim: int = 64,
                 num_layers: int = 2, heads: int = 4, actor_pooling: bool = True,
                 shared_encoder: bool = False, activation: str = "elu", init_log_std: float = 0.0,
                 normalize_obs: bool = True, obs_clip: Optional[float] = 10.0):
        super().__init__()
        self.node_dim, self.edge_dim = graph_dims(observation_space)
        if not isinstance(action_space, gym.spaces.Box) or len(action_space.shape) != 1:
            raise ValueError(f"GraphActorCritic needs a 1-D Box action space, got {action_space}")
        _check_sizes(hidden_dim, num_layers, heads, activation)
        self.actor_pooling = actor_pooling
        action_dim = action_space.shape[0]

        self.obs_normalizer = ObservationNormalizer(observation_space, clip=obs_clip, enabled=normalize_obs)
        encoder_args = (self.node_dim, self.edge_dim, hidden_dim, num_layers, heads, activation)
        self.actor_encoder = GraphEncoder(*encoder_args)
        self.critic_encoder = None if shared_encoder else GraphEncoder(*encoder_args)
        actor_in = hidden_dim * (3 if actor_pooling else 1)
        self.actor_mean = mlp(actor_in, [hidden_dim], action_dim, activation, last_gain=0.01)
        self.action_head = DiagGaussianHead(action_dim, init_log_std)
        self.critic = mlp(2 * hidden_dim, [hidden_dim], 1, activation, last_gain=1.0)

    # -- observation handling ------------------------------------------------------------
    def _tensors(self, obs: Mapping) -> dict:
        t = to_tensors(obs, device=self.action_head.log_std.device)
        for key, dim in (("nodes", self.node_dim), ("edge_attr", self.edge_dim)):
            if t[key].shape[-1] != dim:
                raise ValueError(f"'{key}' has feature size {t[key].shape[-1]}, "
                                 f"but the model was built for {dim}")
        return t

    def _graph(self, obs: Mapping) -> GraphBatch:
        return flatten_tensors(self.obs_normalizer(self._tensors(obs)))

    def update_normalizer(self, obs: Mapping) -> None:
        self.obs_normalizer.update(self._tensors(obs))

    # -- heads -----------------------------------------------------------------------------
    def _distribution(self, graph: GraphBatch) -> Tuple[DiagGaussian, torch.Tensor]:
        """Action distribution and the actor's node embeddings (reused by a shared critic)."""
        h = self.actor_encoder(graph)
        features = h[graph.root_index]
        if self.actor_pooling:
            features = torch.cat([features, pool(h, graph)], dim=-1)
        return self.action_head(self.actor_mean(features)), h

    def _value(self, graph: GraphBatch, actor_h: Optional[torch.Tensor] = None) -> torch.Tensor:
        if self.critic_encoder is not None:
            h = self.critic_encoder(graph)
        else:
            h = actor_h if actor_h is not None else self.actor_encoder(graph)
        return self.critic(pool(h, graph)).squeeze(-1)

    def distribution(self, obs: Mapping) -> DiagGaussian:
        return self._distribution(self._graph(obs))[0]

    def value(self, obs: Mapping) -> torch.Tensor:
        return self._value(self._graph(obs))

    def distribution_and_value(self, obs: Mapping) -> Tuple[DiagGaussian, torch.Tensor]:
        """Both heads from one normalisation and batching of ``obs``."""
        graph = self._graph(obs)
        dist, h = self._distribution(graph)
        return dist, self._value(graph, h)

    @torch.no_grad()
    def act(self, obs: Mapping, deterministic: bool = False) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Unclipped action, its log-prob and the state value; no gradients (rollouts only)."""
        dist, value = self.distribution_and_value(obs)
        action = dist.mean if deterministic else dist.sample()
        return action, dist.log_prob(action), value

    # -- parameter groups ------------------------------------------------------------------
    def actor_parameters(self) -> list:
        return [*self.actor_encoder.parameters(), *self.actor_mean.parameters(),
                *self.action_head.parameters()]

    def critic_parameters(self) -> list:
        encoder = [] if self.critic_encoder is None else list(self.critic_encoder.parameters())
        return [*encoder, *self.critic.parameters()]


def _check_sizes(hidden_dim: int, num_layers: int, heads: int, activation: str) -> None:
    if hidden_dim < 1 or num_layers < 1 or heads < 1:
        raise ValueError(f"hidden_dim, num_layers and heads must be >= 1, "
                         f"got {hidden_dim}, {num_layers}, {heads}")
    if hidden_dim % heads:
        raise ValueError(f"hidden_dim ({hidden_dim}) must be divisible by heads ({heads})")
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation={activation!r} is not one of {sorted(ACTIVATIONS)}")
