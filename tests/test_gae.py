"""GAE(lambda) with terminations, time-limit truncations and bootstrapping, checked by hand."""

import pytest
import torch

from agents.buffer import RolloutBuffer, compute_gae


def test_gae_matches_hand_computation_with_termination_and_truncation():
    # One env, constant value function V = 0.5; terminated at t=1, truncated at t=3
    # where the true final observation is worth 2.0; gamma = 0.9, lambda = 0.8.
    rewards = torch.tensor([[1.0], [2.0], [3.0], [4.0], [5.0]])
    values = torch.full((5, 1), 0.5)
    terminated = torch.tensor([[0.0], [1.0], [0.0], [0.0], [0.0]])
    truncated = torch.tensor([[0.0], [0.0], [0.0], [1.0], [0.0]])
    bootstrap = torch.tensor([[0.0], [0.0], [0.0], [2.0], [0.0]])
    last_values = torch.tensor([0.5])

    advantages, returns = compute_gae(rewards, values, terminated, truncated, bootstrap, last_values, 0.9, 0.8)

    # deltas: 1 + .9*.5 - .5 = 0.95 | 2 - .5 = 1.5 (terminal) | 3 + .45 - .5 = 2.95
    #         4 + .9*2.0 - .5 = 5.3 (bootstrapped) | 5 + .45 - .5 = 4.95 (last_values)
    # recursion cut after t=1 and t=3; gamma * lambda = 0.72
    expected = torch.tensor([[0.95 + 0.72 * 1.5], [1.5], [2.95 + 0.72 * 5.3], [5.3], [4.95]])
    torch.testing.assert_close(advantages, expected)
    torch.testing.assert_close(returns, expected + 0.5)


def test_gae_without_episode_end_is_discounted_td_sum_and_termination_wins_over_truncation():
    rewards = torch.ones(3, 2)
    values = torch.zeros(3, 2)
    terminated = torch.tensor([[0.0, 0.0], [0.0, 0.0], [0.0, 1.0]])
    truncated = torch.tensor([[0.0, 0.0], [0.0, 0.0], [0.0, 1.0]])  # env 1: both flags at t=2
    bootstrap = torch.tensor([[0.0, 0.0], [0.0, 0.0], [0.0, 7.0]])
    last_values = torch.tensor([10.0, 10.0])
    advantages, _ = compute_gae(rewards, values, terminated, truncated, bootstrap, last_values, 0.5, 1.0)
    # env 0, lambda = 1: discounted return 1 + .5 + .25 + .125 * 10
    assert advantages[0, 0].item() == pytest.approx(1 + 0.5 + 0.25 + 0.125 * 10)
    # env 1: terminated, so neither the bootstrap value nor last_values count
    assert advantages[0, 1].item() == pytest.approx(1 + 0.5 + 0.25)


def test_gae_rejects_mismatched_shapes():
    x = torch.zeros(4, 2)
    with pytest.raises(ValueError, match="values"):
        compute_gae(x, torch.zeros(4, 3), x, x, x, torch.zeros(2), 0.9, 0.9)
    with pytest.raises(ValueError, match="last_values"):
        compute_gae(x, x, x, x, x, torch.zeros(3), 0.9, 0.9)
    with pytest.raises(ValueError, match="gamma"):
        compute_gae(x, x, x, x, x, torch.zeros(2), 1.5, 0.9)


def test_buffer_finish_and_minibatches_cover_dict_obs_once():
    buffer = RolloutBuffer(num_steps=4, num_envs=3, gamma=0.9, gae_lambda=0.8)
    for t in range(4):
        obs = {"nodes": torch.full((3, 2, 5), float(t)), "edge_index": torch.full((3, 2, 4), t, dtype=torch.int64)}
        buffer.add(
            obs,
            torch.randn(3, 6),
            torch.zeros(3),
            torch.full((3,), 0.5),
            torch.ones(3),
            torch.zeros(3),
            torch.tensor([0.0, 0.0, float(t == 2)]),
            torch.zeros(3),
        )
    with pytest.raises(ValueError, match="full"):
        buffer.add(obs, torch.randn(3, 6), *[torch.zeros(3)] * 6)
    buffer.finish(torch.full((3,), 0.5))
    expected, _ = compute_gae(
        buffer.rewards,
        buffer.values,
        buffer.terminated,
        buffer.truncated,
        buffer.bootstrap_values,
        torch.full((3,), 0.5),
        0.9,
        0.8,
    )
    torch.testing.assert_close(buffer.advantages, expected)

    seen = []
    for mb in buffer.minibatches(5):
        assert mb.obs["edge_index"].dtype == torch.int64
        # time index of each sample is recoverable from its flat index (time-major flattening)
        torch.testing.assert_close(mb.obs["nodes"][:, 0, 0], (mb.indices // 3).float())
        torch.testing.assert_close(mb.advantages, buffer.advantages.flatten()[mb.indices])
        seen.append(mb.indices)
    assert sorted(torch.cat(seen).tolist()) == list(range(12))
