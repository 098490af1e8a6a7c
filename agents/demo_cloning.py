"""Demonstration cloning: a behaviour-cloning term on scripted demonstrations in the PPO actor loss.

DAPG (Rajeswaran et al. 2018, "Learning Complex Dexterous Manipulation with Deep RL and
Demonstrations", eq. 6) augments the policy gradient with the gradient of the demonstrations'
log-likelihood, weighted by ``lambda_0 * lambda_1 ** k`` at iteration k, so the demonstrations steer
exploration early and fade out. Here that is an extra term of PPO's actor loss at every minibatch step
of update k::

    L = L_PPO + lambda_0 lambda_1^k * mean_{(o, a) in demo batch} -log N(a; mu(o), sigma.detach())

Why: on packed objects the arrangement reward gives nothing for the first part of a solution (lowering
the tilted held box behind an occluder until the occluder moves), and no start-state curriculum taught
it (docs/experiments/packed_objects.md); the scripted push-then-insert controller does it every time.
The standard deviation is held fixed in the term (only the mean is cloned): the scripted controller is
deterministic, and its likelihood would otherwise shrink the policy's exploration noise toward zero.

The demonstrations are recorded when training starts (``agents/demonstrations.py``: seeded from the run
seed, the same ones ``curriculum=demo`` starts from); they pass through the model's observation
normaliser like any observation. The minibatches are drawn from their own random stream, which
checkpoints keep, so a resumed run continues with the same draws.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, Mapping

import numpy as np
import torch
from omegaconf import DictConfig

from agents.demonstrations import record_demonstrations
from agents.distributions import DiagGaussian
from agents.rollout import stack_obs

if TYPE_CHECKING:  # pragma: no cover
    from agents.trainer import Trainer

CLONING_STREAM = 0xBC  # spawn key of the minibatch draws: no stream shared with the envs or the demonstrations


def cloning_loss(model: torch.nn.Module, observations, actions: torch.Tensor) -> torch.Tensor:
    """Mean negative log-likelihood of ``actions`` under the policy's Gaussian, its std held fixed."""
    dist = model.distribution(observations)
    return -DiagGaussian(dist.mean, dist.log_std.detach()).log_prob(actions).mean()


class DemoCloning:
    """Trainer plugin (``agents.trainer.TrainerPlugin``): records the demonstrations after the build and
    hands PPO the cloning term (``PPO.auxiliary_actor_loss``), its weight set before every update."""

    name = "demo_cloning"

    def __init__(self, cfg: DictConfig, train_cfg: DictConfig):
        self.cfg, self.train_cfg = cfg, train_cfg
        self.rng = np.random.default_rng(np.random.SeedSequence(train_cfg.seed, spawn_key=(CLONING_STREAM,)))
        self.weight, self.losses, self.pretrain_loss = float(cfg.weight), [], float("nan")

    def after_build(self, trainer: "Trainer") -> None:
        if not hasattr(trainer.algorithm, "auxiliary_actor_loss"):
            raise ValueError(
                f"demo_cloning needs an algorithm with an actor loss term (PPO), got {type(trainer.algorithm).__name__}"
            )
        demonstrations, self.failed = record_demonstrations(self.train_cfg, self.cfg.demonstrations)
        self.episodes = len(demonstrations)
        self.observations = stack_obs([o for d in demonstrations for o in d.observations])
        self.actions = torch.as_tensor(np.stack([a for d in demonstrations for a in d.actions]), dtype=torch.float32)
        if trainer.state.updates == 0:  # a resumed run has its trained model and statistics
            if self.cfg.pretrain_steps > 0 or self.cfg.keep_demo_statistics:
                trainer.model.update_normalizer(self.observations)
            if self.cfg.pretrain_steps > 0:
                self.pretrain(trainer.model)
        trainer.update_observation_statistics = not self.cfg.keep_demo_statistics
        self._set_weight(trainer.state.updates)
        trainer.algorithm.auxiliary_actor_loss = self.loss

    def pretrain(self, model: torch.nn.Module) -> None:
        """DAPG's first phase: clone the demonstrations into the actor alone before the first rollout. The
        observation statistics have taken in the demonstrations' observations first (``after_build``), so
        the cloned actor is fitted on inputs normalised by informative statistics, not the initial ones."""
        optimizer = torch.optim.Adam(model.actor_parameters(), lr=self.cfg.pretrain_learning_rate)
        for _ in range(self.cfg.pretrain_steps):
            loss = self._batch_loss(model)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        self.pretrain_loss = loss.item()

    def _set_weight(self, updates: int) -> None:
        self.weight = float(self.cfg.weight) * float(self.cfg.decay) ** updates

    def after_collect(self, trainer: "Trainer", stats: Dict[str, list]) -> None:
        """Before update k (k updates done): weight = lambda_0 * lambda_1 ** k."""
        self._set_weight(trainer.state.updates)
        self.losses = []

    def loss(self, model: torch.nn.Module) -> torch.Tensor:
        """The weighted cloning term of one minibatch step (called by PPO inside the actor loss)."""
        loss = self._batch_loss(model)
        self.losses.append(loss.item())
        return self.weight * loss

    def _batch_loss(self, model: torch.nn.Module) -> torch.Tensor:
        """``cloning_loss`` of a random minibatch of demonstration pairs."""
        index = self.rng.integers(len(self.actions), size=min(self.cfg.batch_size, len(self.actions)))
        return cloning_loss(model, _take(self.observations, index), self.actions[index])

    def metrics(self, trainer: "Trainer") -> Dict[str, float]:
        return {
            "demo_cloning/weight": self.weight,
            "demo_cloning/nll": float(np.mean(self.losses)) if self.losses else float("nan"),
            "demo_cloning/pairs": float(len(self.actions)),
            "demo_cloning/failed_demonstrations": float(self.failed),
            "demo_cloning/pretrain_nll": self.pretrain_loss,  # nan when resumed or without pretraining
        }

    def state_dict(self) -> Dict[str, Any]:
        return {"rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.rng.bit_generator.state = state["rng"]


def _take(observations, index: np.ndarray):
    """Rows ``index`` of a stacked observation (an array, or a dict of arrays for graphs)."""
    if isinstance(observations, dict):
        return {key: value[index] for key, value in observations.items()}
    return observations[index]
