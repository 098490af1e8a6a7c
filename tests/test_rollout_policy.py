"""The numpy rollout snapshot of the MLP actor-critic acts exactly like the torch model."""

import gymnasium as gym
import numpy as np
import pytest
import torch

from agents.mlp import MLPActorCritic
from agents.rollout_policy import NumpyMLPPolicy, TorchRolloutPolicy

OBS_SPACE = gym.spaces.Box(-np.inf, np.inf, (2, 5), np.float32)
ACTION_SPACE = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)


def trained_looking_model(activation: str, normalize_obs: bool = True) -> MLPActorCritic:
    """A model with non-trivial weights, log-std and normaliser statistics."""
    torch.manual_seed(0)
    model = MLPActorCritic(
        OBS_SPACE,
        ACTION_SPACE,
        hidden_sizes=(16, 8),
        activation=activation,
        init_log_std=-0.3,
        normalize_obs=normalize_obs,
    )
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    model.update_normalizer(3.0 + 2.0 * torch.randn(64, 2, 5))
    return model


@pytest.mark.parametrize("activation", ["tanh", "relu", "elu"])
@pytest.mark.parametrize("normalize_obs", [True, False])
def test_numpy_snapshot_matches_model(activation, normalize_obs):
    model = trained_looking_model(activation, normalize_obs)
    policy = model.rollout_policy()
    assert isinstance(policy, NumpyMLPPolicy)
    obs = (3.0 + 4.0 * np.random.default_rng(1).standard_normal((7, 2, 5))).astype(np.float32)
    obs[0, 0, 0] = 1e4  # beyond the normaliser's clip
    action, log_prob, value = policy.act(obs)
    ref_value = model.value(torch.as_tensor(obs)).detach()
    np.testing.assert_allclose(value, ref_value.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(policy.value(obs), ref_value.numpy(), rtol=1e-5, atol=1e-5)
    # log-prob of the sampled action under the model's distribution
    np.testing.assert_allclose(
        log_prob,
        model.distribution(torch.as_tensor(obs)).log_prob(torch.as_tensor(action)).detach().numpy(),
        rtol=1e-4,  # float32 rounding of the raw 1e4 input (normalize_obs=False) differs across CPUs
        atol=1e-4,
    )
    assert action.dtype == log_prob.dtype == value.dtype == np.float32
    mean, _, _ = policy.act(obs, deterministic=True)
    np.testing.assert_allclose(
        mean, model.act(torch.as_tensor(obs), deterministic=True)[0].numpy(), rtol=1e-5, atol=1e-5
    )


def test_sampling_is_seeded_by_torch_and_has_the_policy_moments():
    model = trained_looking_model("tanh")
    obs = np.zeros((20_000, 2, 5), np.float32)
    draws = []
    for _ in range(2):
        torch.manual_seed(3)
        draws.append(model.rollout_policy().act(obs)[0])
    np.testing.assert_array_equal(draws[0], draws[1])
    mean = model.act(torch.as_tensor(obs[:1]), deterministic=True)[0].numpy()[0]
    std = np.exp(model.action_head.log_std.detach().numpy())
    np.testing.assert_allclose(draws[0].mean(0), mean, atol=0.03)
    np.testing.assert_allclose(draws[0].std(0), std, rtol=0.03)


def test_snapshot_is_frozen():
    """Later training steps do not leak into a snapshot taken before them."""
    model = trained_looking_model("tanh")
    obs = np.ones((2, 2, 5), np.float32)
    policy = model.rollout_policy()
    before = policy.value(obs).copy()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    model.update_normalizer(torch.randn(10, 2, 5))
    np.testing.assert_array_equal(policy.value(obs), before)
    assert not np.allclose(model.rollout_policy().value(obs), before)


def test_torch_wrapper_takes_numpy():
    model = trained_looking_model("tanh")
    obs = np.ones((3, 2, 5), np.float64)  # float64 in: converted to float32
    action, log_prob, value = TorchRolloutPolicy(model).act(obs, deterministic=True)
    assert action.shape == (3, 3) and log_prob.shape == (3,) and value.shape == (3,)
    np.testing.assert_allclose(value, model.rollout_policy().value(obs), atol=1e-5)


def test_unknown_layer_is_refused():
    model = trained_looking_model("tanh")
    model.critic.append(torch.nn.Dropout())
    with pytest.raises(ValueError, match="Dropout"):
        model.rollout_policy()
