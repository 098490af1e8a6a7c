"""Diagonal Gaussian policies with a state-independent log standard deviation.

Agents sample the unbounded Gaussian, store the raw sample's log-prob and clip
only the copy sent to the env (docs/CONTRACTS.md), so no tanh squashing here.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.distributions import Independent, Normal


def diag_gaussian(mean: torch.Tensor, log_std: torch.Tensor) -> Independent:
    """Gaussian with batch shape (B,) and event shape (A,): ``log_prob`` and ``entropy`` return (B,)."""
    # validate_args=False: the checks cost ~30% of building the distribution, every step and minibatch.
    return Independent(Normal(mean, log_std.exp().expand_as(mean), validate_args=False), 1, validate_args=False)


class DiagGaussianHead(nn.Module):
    """Turns action means into a distribution; owns the log-std parameter (part of the actor).

    The log-std does not depend on the state, a common choice for PPO/TRPO on
    continuous control (Schulman et al. 2015, 2017).
    """

    def __init__(self, action_dim: int, init_log_std: float = 0.0):
        super().__init__()
        if action_dim < 1:
            raise ValueError(f"action_dim must be >= 1, got {action_dim}")
        self.log_std = nn.Parameter(torch.full((action_dim,), float(init_log_std)))

    def forward(self, mean: torch.Tensor) -> Independent:
        return diag_gaussian(mean, self.log_std)


def gaussian_kl(p: Independent, q: Independent) -> torch.Tensor:
    """KL(p || q) per sample (B,) for two diagonal Gaussians, in closed form:

    sum_i [ log(s_q/s_p) + (s_p^2 + (m_p - m_q)^2) / (2 s_q^2) - 1/2 ].
    """
    mp, sp = p.base_dist.loc, p.base_dist.scale
    mq, sq = q.base_dist.loc, q.base_dist.scale
    kl = torch.log(sq / sp) + (sp.square() + (mp - mq).square()) / (2.0 * sq.square()) - 0.5
    return kl.sum(dim=-1)


def mean_gaussian_kl(p: Independent, q: Independent) -> torch.Tensor:
    """Batch mean of KL(p || q), a scalar (TRPO's constraint, PPO's logging)."""
    return gaussian_kl(p, q).mean()


def detach_distribution(dist: Independent) -> Independent:
    """Same Gaussian with gradients cut, e.g. the "old" policy of a trust region."""
    return Independent(Normal(dist.base_dist.loc.detach(), dist.base_dist.scale.detach(), validate_args=False), 1,
                       validate_args=False)
