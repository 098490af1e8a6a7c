"""Running observation normalisation that lives inside the model.

The statistics are ``nn.Module`` buffers, so they travel with ``state_dict``
(checkpoints) and ``.to(device)``. They are kept in float64: float32 counts stop
growing correctly after ~16M samples.

Graph observations are normalised per node feature and per edge feature, using
only real nodes/edges (the masks), so the amount of padding never biases the
statistics. Padding rows stay exactly zero after normalisation.
"""

from __future__ import annotations

from typing import Dict, Optional, Sequence, Union

import gymnasium as gym
import torch
from torch import nn

from agents.graph_batch import GRAPH_KEYS

Obs = Union[torch.Tensor, Dict[str, torch.Tensor]]


class RunningMeanStd(nn.Module):
    """Per-feature running mean and (population) variance over the last ``len(shape)`` dims."""

    def __init__(self, shape: Sequence[int], epsilon: float = 1e-8, clip: Optional[float] = 10.0):
        super().__init__()
        if clip is not None and clip <= 0:
            raise ValueError(f"clip must be positive or None, got {clip!r}")
        self.shape = tuple(int(s) for s in shape)
        self.epsilon = epsilon
        self.clip = clip
        self.register_buffer("mean", torch.zeros(self.shape, dtype=torch.float64))
        self.register_buffer("var", torch.ones(self.shape, dtype=torch.float64))
        self.register_buffer("count", torch.zeros((), dtype=torch.float64))

    def _rows(self, x: torch.Tensor) -> torch.Tensor:
        """View ``x`` (..., *shape) as (M, *shape) samples."""
        if tuple(x.shape[x.dim() - len(self.shape) :]) != self.shape:
            raise ValueError(f"expected trailing shape {self.shape}, got tensor of shape {tuple(x.shape)}")
        return x.reshape(-1, *self.shape)

    @torch.no_grad()
    def update(self, x: torch.Tensor, mask: Optional[torch.Tensor] = None) -> None:
        """Merge the statistics of a batch; ``mask`` (x's leading dims) selects the valid samples."""
        rows = self._rows(x).to(torch.float64)
        if mask is not None:
            rows = rows[mask.reshape(-1) > 0.5]
        n = rows.shape[0]
        if n == 0:
            return
        batch_mean = rows.mean(dim=0)
        batch_var = rows.var(dim=0, unbiased=False)
        # Parallel variance merge, Chan, Golub & LeVeque (1979): combine the two
        # sums of squared deviations M2 = var * count, corrected by the mean shift.
        delta = batch_mean - self.mean
        total = self.count + n
        new_mean = self.mean + delta * (n / total)
        m2 = self.var * self.count + batch_var * n + delta.square() * (self.count * n / total)
        self.mean.copy_(new_mean)
        self.var.copy_(m2 / total)
        self.count.fill_(total)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(x - mean) / sqrt(var + eps), clipped to [-clip, clip]; identity before the first update."""
        self._rows(x)  # shape check
        std = torch.sqrt(self.var + self.epsilon)
        out = (x - self.mean.to(x.dtype)) / std.to(x.dtype)
        if self.clip is not None:
            out = out.clamp(-self.clip, self.clip)
        return out


class ObservationNormalizer(nn.Module):
    """Normalises a flat Box observation (B, *shape) or a graph Dict observation.

    Build it from the (single-env) observation space. ``update(obs)`` merges a
    batch of raw observations into the running statistics; ``forward(obs)``
    returns normalised observations of the same structure (for graphs,
    ``edge_index`` and the masks are passed through unchanged).
    ``enabled=False`` makes both no-ops, for ablations.
    """

    def __init__(
        self, observation_space: gym.Space, clip: Optional[float] = 10.0, epsilon: float = 1e-8, enabled: bool = True
    ):
        super().__init__()
        self.enabled = enabled
        if isinstance(observation_space, gym.spaces.Box):
            self.is_graph = False
            self.obs = RunningMeanStd(observation_space.shape, epsilon, clip)
        elif isinstance(observation_space, gym.spaces.Dict):
            missing = [k for k in GRAPH_KEYS if k not in observation_space.spaces]
            if missing:
                raise ValueError(
                    f"Dict observation space is not a graph: missing keys {missing} "
                    f"(expected {list(GRAPH_KEYS)}, see docs/CONTRACTS.md)"
                )
            self.is_graph = True
            self.nodes = RunningMeanStd(observation_space["nodes"].shape[-1:], epsilon, clip)
            self.edges = RunningMeanStd(observation_space["edge_attr"].shape[-1:], epsilon, clip)
        else:
            raise ValueError(f"unsupported observation space {observation_space}; expected Box or graph Dict")

    def _check(self, obs: Obs) -> None:
        if self.is_graph:
            if not isinstance(obs, dict):
                raise ValueError(f"graph normalizer expects a dict observation, got {type(obs).__name__}")
            missing = [k for k in GRAPH_KEYS if k not in obs]
            if missing:
                raise ValueError(f"graph observation is missing keys {missing}")
        elif not isinstance(obs, torch.Tensor):
            raise ValueError(f"flat normalizer expects a Tensor observation, got {type(obs).__name__}")

    @torch.no_grad()
    def update(self, obs: Obs) -> None:
        if not self.enabled:
            return
        self._check(obs)
        if self.is_graph:
            self.nodes.update(obs["nodes"], obs["node_mask"])
            self.edges.update(obs["edge_attr"], obs["edge_mask"])
        else:
            self.obs.update(obs)

    def forward(self, obs: Obs) -> Obs:
        if not self.enabled:
            return obs
        self._check(obs)
        if not self.is_graph:
            return self.obs(obs)
        out = dict(obs)
        # Multiplying by the mask keeps padding rows at zero, as in the raw observation.
        out["nodes"] = self.nodes(obs["nodes"]) * obs["node_mask"].unsqueeze(-1).to(obs["nodes"].dtype)
        out["edge_attr"] = self.edges(obs["edge_attr"]) * obs["edge_mask"].unsqueeze(-1).to(obs["edge_attr"].dtype)
        return out
