"""Conjugate gradient, Fisher-vector products and the TRPO trust-region step."""

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch import nn

from agents.buffer import RolloutBuffer
from agents.distributions import DiagGaussian, DiagGaussianHead, mean_gaussian_kl
from agents.mlp import MLPActorCritic
from agents.trpo import TRPO, TRPOConfig, conjugate_gradient, get_flat_params, make_fisher_vector_product

torch.set_num_threads(1)


class LinearGaussianPolicy(nn.Module):
    """mean = W s (2 x 3), state-independent log-std; actor params are [W, log_std]."""

    def __init__(self):
        super().__init__()
        self.W = nn.Parameter(torch.randn(2, 3, dtype=torch.float64))
        self.head = DiagGaussianHead(2, init_log_std=-0.3).double()
        self.v = nn.Linear(3, 1).double()

    def update_normalizer(self, obs):
        pass

    def distribution(self, obs):
        return self.head(obs @ self.W.T)

    def value(self, obs):
        return self.v(obs).squeeze(-1)

    def actor_parameters(self):
        return [self.W, self.head.log_std]

    def critic_parameters(self):
        return list(self.v.parameters())


def test_conjugate_gradient_solves_spd_system():
    torch.manual_seed(0)
    m = torch.randn(8, 8, dtype=torch.float64)
    A = m @ m.T + 8 * torch.eye(8, dtype=torch.float64)
    b = torch.randn(8, dtype=torch.float64)
    x = conjugate_gradient(lambda v: A @ v, b, iters=20, tol=1e-20)
    torch.testing.assert_close(x, torch.linalg.solve(A, b))


def test_fisher_vector_product_matches_explicit_fisher():
    torch.manual_seed(0)
    policy = LinearGaussianPolicy()
    obs = torch.randn(16, 3, dtype=torch.float64)
    params = policy.actor_parameters()
    old = policy.distribution(obs).detach()
    damping = 0.1
    fvp = make_fisher_vector_product(mean_gaussian_kl(old, policy.distribution(obs)), params, damping)

    # Analytic Fisher of a Gaussian with linear mean: mean block diag_i(E[s s^T] / sigma_i^2)
    # (W flattened row-major), log-std block 2 I, no cross terms.
    sigma2 = policy.head.log_std.detach().exp().square()
    S = obs.T @ obs / obs.shape[0]
    F = torch.block_diag(S / sigma2[0], S / sigma2[1], 2.0 * torch.eye(2, dtype=torch.float64))

    # Same matrix as the Hessian of the mean KL at theta = theta_old.
    def kl_of(flat):
        W, log_std = flat[:6].view(2, 3), flat[6:]
        new = DiagGaussian(obs @ W.T, log_std)
        return mean_gaussian_kl(old, new)

    H = torch.autograd.functional.hessian(kl_of, get_flat_params(params))
    torch.testing.assert_close(H, F)
    for _ in range(3):
        v = torch.randn(8, dtype=torch.float64)
        torch.testing.assert_close(fvp(v), F @ v + damping * v)


def random_rollout(model, obs_dim=4, action_dim=2, T=32, N=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    buffer = RolloutBuffer(T, N, gamma=0.99, gae_lambda=0.95)
    for _ in range(T):
        obs = torch.randn(N, obs_dim, generator=g)
        action, log_prob, value = model.act(obs)
        buffer.add(
            obs, action, log_prob, value, torch.randn(N, generator=g), torch.zeros(N), torch.zeros(N), torch.zeros(N)
        )
    buffer.finish(torch.zeros(N))
    return buffer


def mlp_model(seed=0):
    torch.manual_seed(seed)
    box = lambda n: gym.spaces.Box(-1.0, 1.0, (n,), np.float32)  # noqa: E731
    return MLPActorCritic(box(4), box(2), hidden_sizes=(16, 16))


def test_trpo_update_respects_trust_region_and_only_moves_actor_by_natural_step():
    model = mlp_model()
    buffer = random_rollout(model)
    batch = buffer.full_batch()
    with torch.no_grad():
        old = model.distribution(batch.obs).detach()
    critic_before = get_flat_params(model.critic_parameters()).clone()
    trpo = TRPO(model, TRPOConfig(max_kl=0.01, critic_epochs=1))
    metrics = trpo.update(buffer, progress=0.0)
    with torch.no_grad():
        kl = mean_gaussian_kl(old, model.distribution(batch.obs)).item()
    assert metrics["line_search_success"] == 1.0 and metrics["surrogate_improvement"] > 0
    assert kl <= 0.01 and kl == pytest.approx(metrics["final_kl"], rel=1e-4)
    assert not torch.equal(critic_before, get_flat_params(model.critic_parameters()))  # critic fitted separately
    for key in ("policy_loss", "value_loss", "entropy", "explained_variance", "step_fraction"):
        assert np.isfinite(metrics[key])


def test_rejected_line_search_restores_parameters_bit_identically():
    # Actions at the mean with positive advantages: the only improving direction shrinks the
    # std, where the true KL grows much faster than its quadratic model. A single full step
    # to the quadratic trust-region boundary then violates the KL bound and is rejected.
    torch.manual_seed(0)
    policy = LinearGaussianPolicy()
    T, N = 8, 2
    buffer = RolloutBuffer(T, N)
    for _ in range(T):
        obs = torch.randn(N, 3, dtype=torch.float64)
        with torch.no_grad():
            mean = policy.distribution(obs).mean
        buffer.add(
            obs, mean, torch.zeros(N), torch.zeros(N), torch.ones(N), torch.zeros(N), torch.zeros(N), torch.zeros(N)
        )
    buffer.finish(torch.zeros(N))
    buffer.advantages.fill_(1.0)
    before = [p.detach().clone() for p in policy.actor_parameters()]
    trpo = TRPO(policy, TRPOConfig(max_kl=2.0, backtrack_iters=1, normalize_advantages=False, critic_epochs=1))
    metrics = trpo.update(buffer)
    assert metrics["line_search_success"] == 0.0 and metrics["step_fraction"] == 0.0
    assert metrics["expected_improvement"] > 0
    for b, p in zip(before, policy.actor_parameters()):
        assert torch.equal(b, p)


def test_config_validation_and_state_dict_round_trip():
    with pytest.raises(ValueError, match="backtrack_coef"):
        TRPO(mlp_model(), TRPOConfig(backtrack_coef=1.5))
    with pytest.raises(ValueError, match="max_kl"):
        TRPO(mlp_model(), TRPOConfig(max_kl=0.0))
    model = mlp_model()
    trpo = TRPO(model, TRPOConfig(critic_epochs=1))
    trpo.update(random_rollout(model))
    other = TRPO(model, TRPOConfig(critic_epochs=1))
    other.load_state_dict(trpo.state_dict())
    assert other.critic_optimizer.state_dict()["state"].keys() == trpo.critic_optimizer.state_dict()["state"].keys()
