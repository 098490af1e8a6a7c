"""Proximal Policy Optimization (Schulman et al. 2017), clipped and/or KL-penalty variants.

Old log-probs are recomputed at the start of each update with the parameters
and observation statistics that acted (the trainer merges a rollout into the
normaliser only after its update). They equal the stored ones up to float
rounding (rollouts may act through a numpy copy of the policy); recomputing
makes the first ratio exactly 1, so the clip range, the KL early stop and the
KL penalty all measure the change made by *this* update.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Callable, Dict, Optional, Tuple

import torch
from torch import nn

from agents.buffer import RolloutBatch, RolloutBuffer, explained_variance
from agents.gradients import clip_grad_norm

# Per-minibatch scalars, averaged over the update's minibatches in its metrics.
MINIBATCH_LOGS = ("policy_loss", "value_loss", "entropy", "clip_fraction", "kl_penalty")


@dataclass
class PPOConfig:
    learning_rate: float = 3e-4  # actor learning rate (Adam)
    critic_learning_rate: Optional[float] = None  # None: same as learning_rate
    num_epochs: int = 10
    minibatch_size: Optional[int] = 64  # set exactly one of minibatch_size / num_minibatches
    num_minibatches: Optional[int] = None
    clip_coef: Optional[float] = 0.2  # eq. (7) clip range epsilon; None: no clipping (pure PPO-penalty)
    clip_value_loss: bool = False
    value_clip_coef: Optional[float] = None  # None: same as clip_coef
    ent_coef: float = 0.0
    vf_coef: float = 0.5
    max_grad_norm: Optional[float] = 0.5  # applied to actor and critic gradients separately
    # KL control. target_kl is the desired KL(old || new) per update; None disables
    # the early stop, the adaptive penalty and the adaptive learning rate.
    target_kl: Optional[float] = None
    kl_early_stop: bool = True  # stop the whole update when a minibatch KL exceeds kl_stop_factor * target_kl
    kl_stop_factor: float = 1.5  # 1.5 as SB3; 1.0 makes target_kl a hard limit
    # With the early stop: also undo the actor's last optimizer step, the one that crossed the limit, so an
    # update never ends beyond it (one Adam step can: its first steps move every weight by the full lr).
    kl_rollback: bool = False
    kl_penalty: bool = False  # PPO-penalty, eq. (8): adds beta * KL to the loss, beta adapted per update
    init_beta: float = 1.0
    kl_adaptive_lr: bool = False  # actor lr /1.5 if KL > 2 target, *1.5 if KL < target / 2
    min_lr: float = 1e-6
    max_lr: float = 1e-2
    normalize_advantages: bool = True  # per minibatch
    anneal_lr: bool = False  # linear decay to 0 with training progress
    # Actor and critic forward + backward in two threads when the model's critic is independent of the
    # actor (same gradients, see PPO._minibatch_step); false: one backward of the summed loss.
    parallel_critic: bool = True


def validate_ppo_config(config: PPOConfig) -> PPOConfig:
    """Raise ``ValueError`` naming the first bad field."""
    if (config.minibatch_size is None) == (config.num_minibatches is None):
        raise ValueError("set exactly one of minibatch_size and num_minibatches")
    for name in ("learning_rate", "num_epochs", "min_lr", "max_lr", "init_beta"):
        if not getattr(config, name) > 0:
            raise ValueError(f"{name} must be positive, got {getattr(config, name)!r}")
    for name in (
        "minibatch_size",
        "num_minibatches",
        "clip_coef",
        "value_clip_coef",
        "critic_learning_rate",
        "max_grad_norm",
        "target_kl",
    ):
        value = getattr(config, name)
        if value is not None and not value > 0:
            raise ValueError(f"{name} must be positive or None, got {value!r}")
    if config.min_lr > config.max_lr:
        raise ValueError(f"min_lr ({config.min_lr}) must be <= max_lr ({config.max_lr})")
    if (config.kl_penalty or config.kl_adaptive_lr) and config.target_kl is None:
        raise ValueError("kl_penalty and kl_adaptive_lr need target_kl")
    if config.kl_rollback and (config.target_kl is None or not config.kl_early_stop):
        raise ValueError("kl_rollback needs target_kl and kl_early_stop")
    if config.clip_value_loss and config.clip_coef is None and config.value_clip_coef is None:
        raise ValueError("clip_value_loss needs value_clip_coef (or clip_coef)")
    return config


def approx_kl(log_ratio: torch.Tensor) -> torch.Tensor:
    """KL(old || new) from samples of the old policy: mean((r - 1) - log r), r = pi_new / pi_old.

    Schulman's "k3" estimator (http://joschu.net/blog/kl-approx.html): unbiased and always >= 0.
    """
    return (torch.expm1(log_ratio) - log_ratio).mean()


def clipped_surrogate_loss(
    log_ratio: torch.Tensor, advantages: torch.Tensor, clip_coef: Optional[float]
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Negated clipped surrogate, Schulman 2017 eq. (7): -mean(min(r A, clip(r, 1-e, 1+e) A)).

    Returns (loss, clip_fraction = share of samples with |r - 1| > e).
    ``clip_coef=None`` gives the plain importance-sampled surrogate -mean(r A).
    """
    ratio = log_ratio.exp()
    if clip_coef is None:
        return -(ratio * advantages).mean(), torch.zeros(())
    clipped = ratio.clamp(1.0 - clip_coef, 1.0 + clip_coef)
    loss = -torch.min(ratio * advantages, clipped * advantages).mean()
    clip_fraction = ((ratio - 1.0).abs() > clip_coef).float().mean()
    return loss, clip_fraction


def adapt_beta(beta: float, kl: float, target_kl: float) -> float:
    """PPO-penalty rule (Schulman 2017, sec. 4): double beta if KL > 1.5 target, halve if KL < target / 1.5."""
    if kl > 1.5 * target_kl:
        return beta * 2.0
    if kl < target_kl / 1.5:
        return beta / 2.0
    return beta


def adapt_learning_rate(lr: float, kl: float, target_kl: float, min_lr: float, max_lr: float) -> float:
    """KL-adaptive step size: lr / 1.5 if KL > 2 target, lr * 1.5 if KL < target / 2, kept in [min_lr, max_lr]."""
    if kl > 2.0 * target_kl:
        lr = lr / 1.5
    elif kl < target_kl / 2.0:
        lr = lr * 1.5
    return min(max(lr, min_lr), max_lr)


class PPO:
    """PPO update for any actor-critic following docs/CONTRACTS.md (one Adam, actor and critic groups)."""

    def __init__(self, model: nn.Module, config: Optional[PPOConfig] = None):
        config = validate_ppo_config(config or PPOConfig())
        self.model, self.config = model, config
        self.critic_base_lr = config.critic_learning_rate or config.learning_rate
        self.actor_parameters, self.critic_parameters = model.actor_parameters(), model.critic_parameters()
        # One Adam, two parameter groups (actor, critic: their own learning rates). Adam is per-parameter, so
        # this is the same as two optimizers in one call; fused: one kernel for all parameters, ~3x faster
        # than the per-tensor loop for small networks on CPU.
        self.optimizer = torch.optim.Adam(
            [
                {"params": self.actor_parameters, "lr": config.learning_rate},
                {"params": self.critic_parameters, "lr": self.critic_base_lr},
            ],
            eps=1e-5,
            fused=True,
        )
        self.beta = config.init_beta
        self.learning_rate = config.learning_rate  # actor lr before annealing; moved by kl_adaptive_lr
        # Only when the value depends on the critic's parameters alone (docs/CONTRACTS.md): a shared
        # encoder would receive gradients from both threads.
        independent = getattr(model, "independent_critic", False)
        self._critic_thread = ThreadPoolExecutor(1) if config.parallel_critic and independent else None
        # An extra actor loss term, model -> scalar tensor, added at every minibatch step (a trainer plugin
        # sets it: agents/demo_cloning.py); None: plain PPO.
        self.auxiliary_actor_loss: Optional[Callable[[nn.Module], torch.Tensor]] = None

    def _minibatch_size(self, batch_size: int) -> int:
        """Samples per minibatch; asking for more than the batch holds is an error, never clamped."""
        cfg = self.config
        if cfg.minibatch_size is not None:
            name, value = "minibatch_size", cfg.minibatch_size
        else:
            name, value = "num_minibatches", cfg.num_minibatches
        if value > batch_size:
            raise ValueError(f"{name}={value} is larger than the batch ({batch_size} samples)")
        return cfg.minibatch_size or batch_size // cfg.num_minibatches

    def _set_learning_rates(self, progress: float) -> float:
        scale = 1.0 - progress if self.config.anneal_lr else 1.0
        actor_lr = self.learning_rate * scale
        actor_group, critic_group = self.optimizer.param_groups
        actor_group["lr"], critic_group["lr"] = actor_lr, self.critic_base_lr * scale
        return actor_lr

    @torch.no_grad()
    def _log_probs(self, buffer: RolloutBuffer, minibatch_size: int) -> torch.Tensor:
        """log pi(a|s) of the flat batch under the current parameters, in chunks (no gradients)."""
        batch = buffer.full_batch()
        out = torch.empty_like(batch.log_probs)
        for start in range(0, out.shape[0], minibatch_size):
            part = slice(start, start + minibatch_size)
            obs = {k: v[part] for k, v in batch.obs.items()} if isinstance(batch.obs, dict) else batch.obs[part]
            out[part] = self.model.distribution(obs).log_prob(batch.actions[part])
        return out

    def _value_loss(self, values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor) -> torch.Tensor:
        """0.5 mean (V - R)^2, or with value clipping the larger of it and the error of V_old + clip(V - V_old)."""
        loss = (values - returns).square()
        if self.config.clip_value_loss:
            eps = self.config.value_clip_coef or self.config.clip_coef
            clipped = old_values + (values - old_values).clamp(-eps, eps)
            loss = torch.max(loss, (clipped - returns).square())
        return 0.5 * loss.mean()

    def _clip_and_step(self) -> None:
        if self.config.max_grad_norm is not None:  # actor and critic clipped apart: neither shrinks the other
            clip_grad_norm(self.actor_parameters, self.config.max_grad_norm)
            clip_grad_norm(self.critic_parameters, self.config.max_grad_norm)
        self.optimizer.step()

    def _actor_loss(
        self, dist, mb: RolloutBatch, old_log_probs: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor, dict]:
        """Clipped surrogate (+ entropy bonus, + KL penalty) of one minibatch, its approx KL (k3), logs."""
        cfg = self.config
        log_ratio = dist.log_prob(mb.actions) - old_log_probs[mb.indices]
        kl = approx_kl(log_ratio)
        advantages = mb.advantages
        if cfg.normalize_advantages and advantages.numel() > 1:
            advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
        policy_loss, clip_fraction = clipped_surrogate_loss(log_ratio, advantages, cfg.clip_coef)
        entropy = dist.entropy().mean()
        loss = policy_loss - cfg.ent_coef * entropy
        if cfg.kl_penalty:
            loss = loss + self.beta * kl  # PPO-penalty, Schulman 2017 eq. (8)
        if self.auxiliary_actor_loss is not None:  # e.g. demonstration cloning (agents/demo_cloning.py)
            loss = loss + self.auxiliary_actor_loss(self.model)
        logs = {
            "policy_loss": policy_loss,
            "entropy": entropy,
            "clip_fraction": clip_fraction,
            "kl_penalty": self.beta * kl,
        }
        return loss, kl.detach(), {k: v.item() for k, v in logs.items()}

    def _critic_loss(self, values: torch.Tensor, mb: RolloutBatch) -> Tuple[torch.Tensor, dict]:
        value_loss = self._value_loss(values, mb.values, mb.returns)
        return self.config.vf_coef * value_loss, {"value_loss": value_loss.item()}

    def _critic_backward(self, mb: RolloutBatch) -> dict:
        """The critic's forward and backward (run in the critic thread)."""
        loss, logs = self._critic_loss(self.model.value(mb.obs), mb)
        loss.backward()
        return logs

    def _minibatch_step(
        self, mb: RolloutBatch, old_log_probs: torch.Tensor, stop_kl: Optional[float]
    ) -> Tuple[bool, dict]:
        """One optimizer step on ``mb``, unless its KL (current parameters) exceeds ``stop_kl``: then no step
        and True (early stop). Returns (early stopped, logs)."""
        self.optimizer.zero_grad(set_to_none=True)
        if self._critic_thread is None:  # one forward of both heads, one backward of the summed loss
            dist, values = self.model.distribution_and_value(mb.obs)
            actor_loss, kl, logs = self._actor_loss(dist, mb, old_log_probs)
            critic_loss, critic_logs = self._critic_loss(values, mb)
            logs.update(critic_logs)
            kl_value = kl.item()
            stop = stop_kl is not None and kl_value > stop_kl
            if not stop:
                (actor_loss + critic_loss).backward()
        else:
            # Actor and critic share no parameters, so the gradient of the summed loss is the actor's
            # gradient of its terms and the critic's of its own: computed in two threads, which run
            # on two cores (torch releases the GIL inside ops and backward); the env workers are idle
            # while the learner updates. With the KL early stop the critic's last backward is wasted.
            critic = self._critic_thread.submit(self._critic_backward, mb)
            try:
                actor_loss, kl, logs = self._actor_loss(self.model.distribution(mb.obs), mb, old_log_probs)
                kl_value = kl.item()
                stop = stop_kl is not None and kl_value > stop_kl
                if not stop:
                    actor_loss.backward()
            finally:
                wait([critic])  # never leave the critic thread writing gradients behind an error
            logs.update(critic.result())
        logs = {**{k: logs[k] for k in MINIBATCH_LOGS}, "kl": kl_value}
        if stop:
            self.optimizer.zero_grad(set_to_none=True)
            return True, logs
        self._clip_and_step()
        return False, logs

    @torch.no_grad()
    def _roll_back(self, saved: Optional[list]) -> bool:
        """Put the actor's parameters back to ``saved`` (kl_rollback; None: nothing to undo)."""
        if saved is None:
            return False
        for parameter, value in zip(self.actor_parameters, saved):
            parameter.copy_(value)
        return True

    def _adapt(self, kl: float) -> None:
        """Per-update adaptation of beta and the actor learning rate from the final KL."""
        cfg = self.config
        if cfg.kl_penalty:
            self.beta = adapt_beta(self.beta, kl, cfg.target_kl)
        if cfg.kl_adaptive_lr:
            self.learning_rate = adapt_learning_rate(self.learning_rate, kl, cfg.target_kl, cfg.min_lr, cfg.max_lr)

    def update(self, buffer: RolloutBuffer, progress: float = 0.0) -> Dict[str, float]:
        """Run the PPO epochs on a finished rollout; ``progress`` in [0, 1] drives lr annealing.

        The KL early stop is checked before every optimizer step, on the minibatch
        about to be used, with the current parameters; it ends the whole update.
        """
        if not 0.0 <= progress <= 1.0:
            raise ValueError(f"progress must be in [0, 1], got {progress}")
        cfg = self.config
        minibatch_size = self._minibatch_size(buffer.num_steps * buffer.num_envs)
        actor_lr = self._set_learning_rates(progress)
        stop_kl = cfg.kl_stop_factor * cfg.target_kl if cfg.target_kl is not None and cfg.kl_early_stop else None
        old_log_probs = self._log_probs(buffer, minibatch_size)

        history, num_updates, early_stopped = [], 0, False
        overshoot_kl = None  # the KL the undone step reached (kl_rollback): the KL adaptation sees it
        before_last_step = None  # the actor's parameters before the last step taken (with kl_rollback)
        for _ in range(cfg.num_epochs):
            for mb in buffer.minibatches(minibatch_size):
                before = [p.detach().clone() for p in self.actor_parameters] if cfg.kl_rollback else None
                early_stopped, logs = self._minibatch_step(mb, old_log_probs, stop_kl)
                history.append(logs)
                if early_stopped:
                    if self._roll_back(before_last_step):
                        num_updates, overshoot_kl = num_updates - 1, logs["kl"]
                    break
                num_updates += 1
                before_last_step = before
            if early_stopped:
                break

        # KL(old || new) over the whole rollout after the update.
        final_kl = approx_kl(self._log_probs(buffer, minibatch_size) - old_log_probs).item()
        self._adapt(final_kl if overshoot_kl is None else max(final_kl, overshoot_kl))
        metrics = {k: sum(h[k] for h in history) / len(history) for k in MINIBATCH_LOGS}
        metrics.update(
            approx_kl=final_kl,
            beta=self.beta,
            learning_rate=actor_lr,
            num_updates=num_updates,
            early_stopped=float(early_stopped),
            explained_variance=explained_variance(buffer.values.flatten(), buffer.returns.flatten()),
        )
        if cfg.kl_rollback:
            metrics["rolled_back"] = float(overshoot_kl is not None)
        return metrics

    def state_dict(self) -> dict:
        return {"optimizer": self.optimizer.state_dict(), "beta": self.beta, "learning_rate": self.learning_rate}

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.beta = float(state["beta"])
        self.learning_rate = float(state["learning_rate"])
