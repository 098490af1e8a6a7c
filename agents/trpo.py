"""Trust Region Policy Optimization (Schulman et al. 2015).

The actor takes one natural-gradient step per rollout: solve F s = g with
conjugate gradient, using Fisher-vector products from double backprop of the
mean KL (Pearlmutter 1994; TRPO appendix C), scale s to the trust region
boundary sqrt(2 delta / s^T F s), then backtrack until the mean KL is within
delta and the surrogate improves. The critic is fitted separately with Adam.
Only ``model.actor_parameters()`` take part in the natural-gradient step.

As in PPO, the old policy is recomputed at the start of the update, with the
observation statistics that acted (see agents/ppo.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, List, Optional

import torch
from torch import nn

from agents.buffer import RolloutBatch, RolloutBuffer, explained_variance
from agents.distributions import mean_gaussian_kl
from agents.gradients import clip_grad_norm


@dataclass
class TRPOConfig:
    max_kl: float = 0.01  # trust region size delta on the mean KL(old || new)
    cg_iters: int = 10
    cg_damping: float = 0.1  # F + damping * I keeps CG well posed
    cg_tol: float = 1e-10  # stop CG when the squared residual is below this
    backtrack_coef: float = 0.8  # step fraction shrinks by this factor per backtrack
    backtrack_iters: int = 10
    critic_learning_rate: float = 1e-3
    critic_epochs: int = 10
    critic_minibatch_size: int = 64
    critic_max_grad_norm: Optional[float] = None
    ent_coef: float = 0.0  # entropy bonus added to the surrogate
    normalize_advantages: bool = True  # over the whole batch
    anneal_lr: bool = False  # linear decay of the critic learning rate


def validate_trpo_config(config: TRPOConfig) -> TRPOConfig:
    """Raise ``ValueError`` naming the first bad field."""
    for name in ("max_kl", "cg_iters", "cg_tol", "critic_learning_rate", "critic_epochs", "critic_minibatch_size"):
        if not getattr(config, name) > 0:
            raise ValueError(f"{name} must be positive, got {getattr(config, name)!r}")
    if config.cg_damping < 0:
        raise ValueError(f"cg_damping must be >= 0, got {config.cg_damping}")
    if not 0.0 < config.backtrack_coef < 1.0:
        raise ValueError(f"backtrack_coef must be in (0, 1), got {config.backtrack_coef}")
    if config.backtrack_iters < 1:
        raise ValueError(f"backtrack_iters must be >= 1, got {config.backtrack_iters}")
    if config.critic_max_grad_norm is not None and not config.critic_max_grad_norm > 0:
        raise ValueError(f"critic_max_grad_norm must be positive or None, got {config.critic_max_grad_norm}")
    return config


def conjugate_gradient(
    Avp: Callable[[torch.Tensor], torch.Tensor], b: torch.Tensor, iters: int = 10, tol: float = 1e-10
) -> torch.Tensor:
    """Approximately solve A x = b for symmetric positive-definite A given only x -> A x (starts at x = 0)."""
    x = torch.zeros_like(b)
    r = b.clone()  # residual b - A x
    p = b.clone()  # search direction
    r_dot = r.dot(r)
    for _ in range(iters):
        if r_dot <= tol:
            break
        Ap = Avp(p)
        alpha = r_dot / p.dot(Ap)
        x += alpha * p
        r -= alpha * Ap
        new_r_dot = r.dot(r)
        p = r + (new_r_dot / r_dot) * p
        r_dot = new_r_dot
    return x


def flat_grad(output: torch.Tensor, params: List[nn.Parameter], **kwargs) -> torch.Tensor:
    """d output / d params as one flat vector (zeros for parameters output does not depend on)."""
    grads = torch.autograd.grad(output, params, allow_unused=True, **kwargs)
    return torch.cat([(torch.zeros_like(p) if g is None else g).reshape(-1) for g, p in zip(grads, params)])


def get_flat_params(params: List[nn.Parameter]) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in params])


@torch.no_grad()
def set_flat_params(params: List[nn.Parameter], flat: torch.Tensor) -> None:
    """Copy ``flat`` into the parameters in place (same storage, so saving/restoring is bit-exact)."""
    offset = 0
    for p in params:
        p.copy_(flat[offset : offset + p.numel()].view_as(p))
        offset += p.numel()


def make_fisher_vector_product(
    mean_kl: torch.Tensor, params: List[nn.Parameter], damping: float
) -> Callable[[torch.Tensor], torch.Tensor]:
    """v -> (F + damping I) v, with F the Hessian of the mean KL(old || new) at new = old.

    At new = old the KL Hessian equals the Fisher information matrix (TRPO
    appendix C). Pearlmutter's trick: F v = d/dtheta [ (d KL / d theta) . v ],
    i.e. double backprop, without ever forming F. ``mean_kl`` must be computed
    against a detached old distribution; its first-order graph is built once here.
    """
    kl_grad = flat_grad(mean_kl, params, create_graph=True)

    def fvp(v: torch.Tensor) -> torch.Tensor:
        return flat_grad(kl_grad.dot(v), params, retain_graph=True) + damping * v

    return fvp


class TRPO:
    """TRPO update for any actor-critic following docs/CONTRACTS.md (Gaussian policies)."""

    def __init__(self, model: nn.Module, config: Optional[TRPOConfig] = None):
        self.model, self.config = model, validate_trpo_config(config or TRPOConfig())
        self.critic_optimizer = torch.optim.Adam(
            model.critic_parameters(), lr=self.config.critic_learning_rate, fused=True
        )  # one kernel for all parameters: faster on CPU

    def _surrogate(self, batch: RolloutBatch, old_log_probs: torch.Tensor, advantages: torch.Tensor) -> torch.Tensor:
        """Importance-sampled surrogate mean(pi / pi_old * A) + entropy bonus (to be maximised)."""
        dist = self.model.distribution(batch.obs)
        ratio = torch.exp(dist.log_prob(batch.actions) - old_log_probs)
        return (ratio * advantages).mean() + self.config.ent_coef * dist.entropy().mean()

    def _policy_step(self, batch: RolloutBatch) -> Dict[str, float]:
        cfg = self.config
        params = self.model.actor_parameters()
        with torch.no_grad():
            old_dist = self.model.distribution(batch.obs).detach()
            old_log_probs = old_dist.log_prob(batch.actions)
        advantages = batch.advantages
        if cfg.normalize_advantages and advantages.numel() > 1:
            advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)

        surrogate = self._surrogate(batch, old_log_probs, advantages)
        g = flat_grad(surrogate, params)
        fvp = make_fisher_vector_product(
            mean_gaussian_kl(old_dist, self.model.distribution(batch.obs)), params, cfg.cg_damping
        )
        step_dir = conjugate_gradient(fvp, g, cfg.cg_iters, cfg.cg_tol)
        shs = step_dir.dot(fvp(step_dir))
        old_surrogate = float(surrogate.detach())
        metrics = {
            "policy_loss": -old_surrogate,
            "surrogate_improvement": 0.0,
            "expected_improvement": 0.0,
            "final_kl": 0.0,
            "line_search_success": 0.0,
            "step_fraction": 0.0,
        }
        if not torch.isfinite(shs) or shs <= 0:
            return metrics
        # Largest step along s with the quadratic KL model 1/2 s^T F s equal to delta.
        full_step = torch.sqrt(2.0 * cfg.max_kl / shs) * step_dir
        metrics["expected_improvement"] = float(g.dot(full_step))
        metrics.update(self._line_search(batch, params, full_step, old_surrogate, old_dist, old_log_probs, advantages))
        return metrics

    @torch.no_grad()
    def _line_search(
        self,
        batch: RolloutBatch,
        params: List[nn.Parameter],
        full_step: torch.Tensor,
        old_surrogate: float,
        old_dist,
        old_log_probs: torch.Tensor,
        advantages: torch.Tensor,
    ) -> Dict[str, float]:
        """Backtrack from the full step; accept the first one with KL <= delta and a better surrogate."""
        cfg = self.config
        old_params = get_flat_params(params).clone()
        for i in range(cfg.backtrack_iters):
            fraction = cfg.backtrack_coef**i
            set_flat_params(params, old_params + fraction * full_step)
            kl = float(mean_gaussian_kl(old_dist, self.model.distribution(batch.obs)))
            improvement = float(self._surrogate(batch, old_log_probs, advantages)) - old_surrogate
            if kl <= cfg.max_kl and improvement > 0:
                return {
                    "surrogate_improvement": improvement,
                    "final_kl": kl,
                    "line_search_success": 1.0,
                    "step_fraction": fraction,
                }
        set_flat_params(params, old_params)
        return {"line_search_success": 0.0}

    def _fit_critic(self, buffer: RolloutBuffer) -> float:
        """Minibatch regression of V(s) on the GAE returns; mean squared error over all minibatches."""
        cfg = self.config
        params = self.model.critic_parameters()
        losses = []
        for _ in range(cfg.critic_epochs):
            for mb in buffer.minibatches(cfg.critic_minibatch_size):
                loss = (self.model.value(mb.obs) - mb.returns).square().mean()
                self.critic_optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.critic_max_grad_norm is not None:
                    clip_grad_norm(params, cfg.critic_max_grad_norm)
                self.critic_optimizer.step()
                losses.append(float(loss.detach()))
        return sum(losses) / len(losses)

    def update(self, buffer: RolloutBuffer, progress: float = 0.0) -> Dict[str, float]:
        """One natural-gradient policy step and ``critic_epochs`` of value regression."""
        if not 0.0 <= progress <= 1.0:
            raise ValueError(f"progress must be in [0, 1], got {progress}")
        lr = self.config.critic_learning_rate * ((1.0 - progress) if self.config.anneal_lr else 1.0)
        for group in self.critic_optimizer.param_groups:
            group["lr"] = lr
        batch = buffer.full_batch()
        metrics = self._policy_step(batch)
        with torch.no_grad():
            metrics["entropy"] = float(self.model.distribution(batch.obs).entropy().mean())
        metrics["value_loss"] = self._fit_critic(buffer)
        metrics["explained_variance"] = explained_variance(buffer.values.flatten(), buffer.returns.flatten())
        metrics["learning_rate"] = lr
        return metrics

    def state_dict(self) -> dict:
        return {"critic_optimizer": self.critic_optimizer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.critic_optimizer.load_state_dict(state["critic_optimizer"])
