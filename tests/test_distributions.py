"""The written-out diagonal Gaussian against torch.distributions."""

import torch
from torch.distributions import Independent, Normal, kl_divergence

from agents.distributions import DiagGaussian, gaussian_kl


def reference(loc, log_std):
    return Independent(Normal(loc, log_std.exp().expand_as(loc)), 1)


def test_log_prob_entropy_and_kl_match_torch_distributions():
    torch.manual_seed(0)
    loc, log_std = torch.randn(5, 3, dtype=torch.float64), 0.5 * torch.randn(3, dtype=torch.float64)
    loc2, log_std2 = torch.randn(5, 3, dtype=torch.float64), 0.5 * torch.randn(3, dtype=torch.float64)
    p, q = DiagGaussian(loc, log_std), DiagGaussian(loc2, log_std2)
    action = torch.randn(5, 3, dtype=torch.float64)
    torch.testing.assert_close(p.log_prob(action), reference(loc, log_std).log_prob(action))
    torch.testing.assert_close(p.entropy(), reference(loc, log_std).entropy())
    torch.testing.assert_close(gaussian_kl(p, q), kl_divergence(reference(loc, log_std), reference(loc2, log_std2)))
    assert p.entropy().shape == (5,) and p.log_prob(action).shape == (5,)
    torch.testing.assert_close(p.stddev, log_std.exp().expand(5, 3))


def test_gradients_match_and_sampling_has_the_right_moments():
    torch.manual_seed(1)
    loc = torch.randn(4, 2, requires_grad=True)
    log_std = torch.tensor([-0.5, 0.3], requires_grad=True)
    action = torch.randn(4, 2)
    mine = torch.autograd.grad(DiagGaussian(loc, log_std).log_prob(action).sum(), [loc, log_std])
    ref = torch.autograd.grad(reference(loc, log_std).log_prob(action).sum(), [loc, log_std])
    for a, b in zip(mine, ref):
        torch.testing.assert_close(a, b)
    samples = DiagGaussian(torch.zeros(200_000, 2), log_std.detach()).sample()
    assert not samples.requires_grad
    torch.testing.assert_close(samples.std(0), log_std.detach().exp(), atol=0.01, rtol=0.01)
    torch.testing.assert_close(samples.mean(0), torch.zeros(2), atol=0.01, rtol=0)
    detached = DiagGaussian(loc, log_std).detach()
    assert not detached.loc.requires_grad and not detached.log_std.requires_grad
    with torch.no_grad():
        log_std.add_(1.0)  # an optimizer or line search moving the parameter in place
    torch.testing.assert_close(detached.log_std, torch.tensor([-0.5, 0.3]))
