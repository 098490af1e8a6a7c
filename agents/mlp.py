"""MLP actor-critic for Box observations and Box actions (any Gymnasium env).

Actor and critic are separate networks (no shared trunk), so TRPO can treat
``actor_parameters()`` on their own and the critic never moves the policy.
"""

from __future__ import annotations

import math
from typing import Sequence, Tuple

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from agents.distributions import DiagGaussian, DiagGaussianHead
from agents.normalization import ObservationNormalizer
from agents.rollout_policy import NumpyMLPPolicy, TorchRolloutPolicy

ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU, "elu": nn.ELU}


def mlp(in_dim: int, hidden_sizes: Sequence[int], out_dim: int, activation: str, last_gain: float) -> nn.Sequential:
    """Orthogonal init (gain sqrt(2) for hidden layers, ``last_gain`` for the output), zero biases.

    A small actor output gain (0.01) starts the policy with means near zero,
    so early behaviour is set by the log-std alone (Andrychowicz et al. 2021).
    """
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation={activation!r} is not one of {sorted(ACTIVATIONS)}")
    sizes = [in_dim, *hidden_sizes, out_dim]
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        linear = nn.Linear(a, b)
        is_last = i == len(sizes) - 2
        nn.init.orthogonal_(linear.weight, gain=last_gain if is_last else math.sqrt(2.0))
        nn.init.zeros_(linear.bias)
        layers.append(linear)
        if not is_last:
            layers.append(ACTIVATIONS[activation]())
    return nn.Sequential(*layers)


class MLPActorCritic(nn.Module):
    """Gaussian MLP policy and MLP value function; implements the contract in docs/CONTRACTS.md."""

    def __init__(
        self,
        observation_space: gym.Space,
        action_space: gym.Space,
        hidden_sizes: Sequence[int] = (64, 64),
        critic_hidden_sizes: Sequence[int] | None = None,
        activation: str = "tanh",
        init_log_std: float = 0.0,
        normalize_obs: bool = True,
        obs_clip: float | None = 10.0,
    ):
        super().__init__()
        if isinstance(observation_space, gym.spaces.Dict):
            raise ValueError(
                "MLPActorCritic needs a Box observation space but got a graph Dict; "
                "use obs_mode='flat' or the GNN actor-critic (agents/gnn.py)"
            )
        if not isinstance(observation_space, gym.spaces.Box):
            raise ValueError(f"MLPActorCritic needs a Box observation space, got {observation_space}")
        if not isinstance(action_space, gym.spaces.Box) or len(action_space.shape) != 1:
            raise ValueError(f"MLPActorCritic needs a 1-D Box action space, got {action_space}")
        obs_dim = int(np.prod(observation_space.shape))
        action_dim = action_space.shape[0]
        critic_hidden_sizes = hidden_sizes if critic_hidden_sizes is None else critic_hidden_sizes

        self.obs_normalizer = ObservationNormalizer(observation_space, clip=obs_clip, enabled=normalize_obs)
        self.actor_mean = mlp(obs_dim, hidden_sizes, action_dim, activation, last_gain=0.01)
        self.action_head = DiagGaussianHead(action_dim, init_log_std)
        self.critic = mlp(obs_dim, critic_hidden_sizes, 1, activation, last_gain=1.0)
        self.independent_critic = True  # separate networks (docs/CONTRACTS.md)

    def _features(self, obs: torch.Tensor) -> torch.Tensor:
        return self.obs_normalizer(obs).flatten(start_dim=1)

    def update_normalizer(self, obs: torch.Tensor) -> None:
        self.obs_normalizer.update(obs)

    def distribution(self, obs: torch.Tensor) -> DiagGaussian:
        return self.action_head(self.actor_mean(self._features(obs)))

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        return self.critic(self._features(obs)).squeeze(-1)

    def distribution_and_value(self, obs: torch.Tensor) -> Tuple[DiagGaussian, torch.Tensor]:
        """Both heads from one normalisation of ``obs``."""
        features = self._features(obs)
        return self.action_head(self.actor_mean(features)), self.critic(features).squeeze(-1)

    @torch.no_grad()
    def act(self, obs: torch.Tensor, deterministic: bool = False) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Unclipped action, its log-prob and the state value; no gradients (rollouts only)."""
        dist, value = self.distribution_and_value(obs)
        action = dist.mean if deterministic else dist.sample()
        return action, dist.log_prob(action), value

    def actor_parameters(self) -> list:
        return [*self.actor_mean.parameters(), *self.action_head.parameters()]

    def critic_parameters(self) -> list:
        return list(self.critic.parameters())

    def rollout_policy(self):
        """A numpy snapshot for acting during one rollout on the CPU (see agents/rollout_policy.py)."""
        if self.action_head.log_std.device.type != "cpu":
            return TorchRolloutPolicy(self, self.action_head.log_std.device)
        return NumpyMLPPolicy(self)
