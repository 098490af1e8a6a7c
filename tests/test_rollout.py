"""Pins gymnasium's SAME_STEP autoreset semantics and the collector's use of them."""

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch import nn

from agents.buffer import RolloutBuffer
from agents.rollout import RolloutCollector, make_vector_env


class CounterEnv(gym.Env):
    """obs = [steps in episode, last action received, reset seed or -1].

    Odd episodes terminate after 3 steps; even ones run into the TimeLimit.
    """

    observation_space = gym.spaces.Box(-np.inf, np.inf, (3,), np.float32)
    action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)

    def __init__(self):
        self.episode = 0

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        self.episode += 1
        self.t, self.seed_used = 0, -1.0 if seed is None else float(seed)
        return self._obs(0.0), {}

    def _obs(self, action):
        return np.array([self.t, action, self.seed_used], np.float32)

    def step(self, action):
        self.t += 1
        terminated = self.episode % 2 == 1 and self.t == 3
        return (
            self._obs(float(action[0])),
            1.0,
            terminated,
            False,
            {"is_success": terminated, "t": self.t, "terms": {"a": 1.0}},
        )


class EchoModel(nn.Module):
    """Contract stub: action 5.0 (outside the Box), value = step counter of the observation."""

    def __init__(self):
        super().__init__()
        self.normalizer_calls = 0

    def update_normalizer(self, obs):
        self.normalizer_calls += 1
        self.normalizer_batch = obs.shape[0]

    def value(self, obs):
        return obs[:, 0]

    def act(self, obs, deterministic=False):
        n = obs.shape[0]
        return torch.full((n, 1), 5.0), torch.zeros(n), self.value(obs)


@pytest.mark.parametrize("asynchronous", [False, True])
def test_same_step_autoreset_semantics(asynchronous):
    envs = make_vector_env(CounterEnv, num_envs=2, seed=7, asynchronous=asynchronous, max_episode_steps=5)
    try:
        assert isinstance(envs, gym.vector.AsyncVectorEnv if asynchronous else gym.vector.SyncVectorEnv)
        obs, _ = envs.reset(seed=7)
        assert obs[:, 2].tolist() == [7.0, 8.0]  # env i is seeded with seed + i
        for _ in range(2):
            obs, *_, info = envs.step(np.zeros((2, 1), np.float32))
            assert "final_obs" not in info
        obs, reward, terminated, truncated, info = envs.step(np.zeros((2, 1), np.float32))
        assert terminated.tolist() == [True, True] and truncated.tolist() == [False, False]
        # the returned observation is already the reset one (t = 0, unseeded reset) ...
        assert obs[:, 0].tolist() == [0.0, 0.0] and obs[:, 2].tolist() == [-1.0, -1.0]
        # ... the true final one is in info["final_obs"], the ending step's info in info["final_info"]
        assert info["_final_obs"].tolist() == [True, True]
        assert [o[0] for o in info["final_obs"]] == [3.0, 3.0]
        assert info["final_info"]["is_success"].tolist() == [True, True]
        assert info["final_info"]["episode"]["r"].tolist() == [3.0, 3.0]
        assert info["final_info"]["episode"]["l"].tolist() == [3, 3]
        assert info["final_info"]["_episode"].tolist() == [True, True]
        for _ in range(5):  # second episode hits the TimeLimit
            obs, reward, terminated, truncated, info = envs.step(np.zeros((2, 1), np.float32))
        assert truncated.tolist() == [True, True] and terminated.tolist() == [False, False]
        assert [o[0] for o in info["final_obs"]] == [5.0, 5.0] and obs[:, 0].tolist() == [0.0, 0.0]
    finally:
        envs.close()


def test_collector_keeps_terminated_and_truncated_apart_and_bootstraps_final_obs():
    envs = make_vector_env(CounterEnv, num_envs=2, seed=0, asynchronous=False, max_episode_steps=5)
    model = EchoModel()
    buffer = RolloutBuffer(num_steps=10, num_envs=2, gamma=0.9, gae_lambda=1.0)
    stats = RolloutCollector(envs, model, buffer, seed=0).collect(10)
    envs.close()

    # episode 1: steps 0-2, terminated at index 2; episode 2: steps 3-7, truncated at index 7
    assert buffer.terminated[:, 0].tolist() == [0, 0, 1, 0, 0, 0, 0, 0, 0, 0]
    assert buffer.truncated[:, 0].tolist() == [0, 0, 0, 0, 0, 0, 0, 1, 0, 0]
    # the bootstrap value is V(true final obs) = its step counter 5, not V(reset obs) = 0
    assert buffer.bootstrap_values[:, 0].tolist() == [0, 0, 0, 0, 0, 0, 0, 5.0, 0, 0]
    # stored obs are the ones acted on: the counter restarts after each episode end
    assert buffer.obs[:, 0, 0].tolist() == [0, 1, 2, 0, 1, 2, 3, 4, 0, 1]
    # raw (unclipped) actions are stored; the env received the clipped action
    assert torch.all(buffer.actions == 5.0)
    assert torch.all(buffer.obs[1:, :, 1][buffer.obs[1:, :, 0] > 0] == 1.0)
    assert model.normalizer_calls == 0  # the trainer merges the rollout after its update
    episodes = stats.pop("episodes")
    assert stats == {"returns": [3.0, 3.0, 5.0, 5.0], "lengths": [3, 3, 5, 5], "successes": [1.0, 1.0, 0.0, 0.0]}
    # One record per ended episode, env index first; no start ids without AssignedStart.
    assert [(e["env"], e["return"], e["length"], e["success"], e["start_id"]) for e in episodes] == [
        (0, 3.0, 3, True, None),
        (1, 3.0, 3, True, None),
        (0, 5.0, 5, False, None),
        (1, 5.0, 5, False, None),
    ]
    # GAE at the truncation step bootstraps from 5: delta = 1 + 0.9 * 5 - 4
    assert buffer.advantages[7, 0].item() == pytest.approx(1 + 0.9 * 5 - 4)


def test_collector_checks_sizes():
    envs = make_vector_env(CounterEnv, num_envs=2, asynchronous=False, max_episode_steps=5)
    model = EchoModel()
    collector = RolloutCollector(envs, model, RolloutBuffer(4, 2))
    collector.collect()
    with pytest.raises(ValueError, match="num_steps"):
        collector.collect(8)
    with pytest.raises(ValueError, match="envs"):
        RolloutCollector(envs, model, RolloutBuffer(4, 3))
    envs.close()


@pytest.mark.parametrize("asynchronous", [False, True])
def test_info_keys_keep_only_the_listed_entries_and_the_episode_statistics(asynchronous):
    envs = make_vector_env(
        CounterEnv, num_envs=2, seed=0, asynchronous=asynchronous, max_episode_steps=5, info_keys=["is_success"]
    )
    try:
        envs.reset(seed=0)
        _, *_, info = envs.step(np.zeros((2, 1), np.float32))
        assert set(info) == {"is_success", "_is_success"}
        for _ in range(2):
            _, *_, info = envs.step(np.zeros((2, 1), np.float32))
        final = info["final_info"]
        assert set(final) == {"is_success", "_is_success", "episode", "_episode"}
        assert final["is_success"].tolist() == [True, True] and final["episode"]["l"].tolist() == [3, 3]
    finally:
        envs.close()


def test_info_keys_none_keeps_every_entry_and_a_bare_string_is_refused():
    envs = make_vector_env(CounterEnv, num_envs=2, seed=0, asynchronous=False, max_episode_steps=5)
    envs.reset(seed=0)
    _, *_, info = envs.step(np.zeros((2, 1), np.float32))
    assert {"is_success", "t", "terms"} <= set(info) and info["terms"]["a"].tolist() == [1.0, 1.0]
    envs.close()
    with pytest.raises(ValueError, match="info_keys must be a list"):
        make_vector_env(CounterEnv, num_envs=2, asynchronous=False, info_keys="is_success")
