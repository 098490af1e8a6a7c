"""Time-limit truncation must be bootstrapped, not treated as termination.

Infinite-horizon toy task: reward 1 forever, never terminates, cut by a
20-step TimeLimit. The true value is 1 / (1 - gamma) = 10 for gamma = 0.9.
Observations are noise (no time information), so a critic trained on
non-bootstrapped returns can only learn their average, about 6.
"""

import gymnasium as gym
import numpy as np
import pytest
import torch

from agents.buffer import RolloutBuffer
from agents.mlp import MLPActorCritic
from agents.rollout import RolloutCollector, make_vector_env

GAMMA = 0.9


class ForeverEnv(gym.Env):
    observation_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        return self.observation_space.sample(), {}

    def _obs(self):
        return self.np_random.uniform(-1.0, 1.0, 2).astype(np.float32)

    def step(self, action):
        return self._obs(), 1.0, False, False, {}


def train_critic(bootstrap_truncated: bool, iterations: int = 40) -> float:
    torch.manual_seed(0)
    envs = make_vector_env(ForeverEnv, num_envs=4, seed=0, asynchronous=False, max_episode_steps=20)
    model = MLPActorCritic(envs.single_observation_space, envs.single_action_space, hidden_sizes=(32, 32))
    buffer = RolloutBuffer(num_steps=50, num_envs=4, gamma=GAMMA, gae_lambda=0.9)
    collector = RolloutCollector(envs, model, buffer, seed=0, bootstrap_truncated=bootstrap_truncated)
    optimizer = torch.optim.Adam(model.critic_parameters(), lr=3e-3)
    for _ in range(iterations):
        collector.collect()
        for _ in range(5):
            for mb in buffer.minibatches(50):
                loss = (model.value(mb.obs) - mb.returns).square().mean()
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
    collector.collect()
    envs.close()
    return buffer.values.mean().item()


def test_bootstrapped_truncation_learns_infinite_horizon_value():
    torch.set_num_threads(1)
    value = train_critic(bootstrap_truncated=True)
    assert value == pytest.approx(1.0 / (1.0 - GAMMA), abs=0.5)


def test_truncation_as_termination_underestimates_value():
    torch.set_num_threads(1)
    assert train_critic(bootstrap_truncated=False) < 7.0
