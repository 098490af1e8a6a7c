"""The policy as the rollout collector calls it: numpy observations in, numpy actions out.

A rollout acts on a handful of observations at a time (one per env). At that
size the arithmetic of a small network takes a few microseconds, and the
cost is per-call overhead: torch dispatches each op in ~5 us and an MLP
actor-critic's ``act`` is ~40 ops (normalise, two MLPs, build the Gaussian,
sample, log-prob), about 230 us per call. That was a third of a training
step on fast environments. The policy does not change during a rollout
(the trainer merges each rollout into the observation normaliser only
after its update, see agents/trainer.py), so
``NumpyMLPPolicy`` takes a float32 numpy snapshot of an ``MLPActorCritic``
at the start of each rollout and acts with it in ~30 us. It returns the
same actions, log-probs and values as ``MLPActorCritic.act`` up to float32
rounding (tests/test_rollout_policy.py).

``TorchRolloutPolicy`` wraps any actor-critic that follows docs/CONTRACTS.md
(the GNN, test stubs) behind the same two methods.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Tuple, Union

import numpy as np
import torch
from torch import nn

from agents.distributions import LOG_SQRT_2PI

NumpyObs = Union[np.ndarray, Dict[str, np.ndarray]]


def obs_to_tensor(obs: NumpyObs, device: Union[str, torch.device]) -> Any:
    """Batched numpy observation (array or dict of arrays) to tensors; floats become float32."""
    def convert(x):
        t = torch.as_tensor(np.asarray(x), device=device)
        return t.float() if t.is_floating_point() else t

    if isinstance(obs, dict):
        return {k: convert(v) for k, v in obs.items()}
    return convert(obs)


class TorchRolloutPolicy:
    """Any contract actor-critic behind ``act``/``value`` on numpy batches (no gradients)."""

    def __init__(self, model: nn.Module, device: Union[str, torch.device] = "cpu"):
        self.model, self.device = model, device

    @torch.no_grad()
    def act(self, obs: NumpyObs, deterministic: bool = False) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        action, log_prob, value = self.model.act(obs_to_tensor(obs, self.device), deterministic=deterministic)
        return action.cpu().numpy(), log_prob.float().cpu().numpy(), value.float().cpu().numpy()

    @torch.no_grad()
    def value(self, obs: NumpyObs) -> np.ndarray:
        return self.model.value(obs_to_tensor(obs, self.device)).float().cpu().numpy()


NUMPY_ACTIVATIONS: Dict[type, Callable[[np.ndarray], np.ndarray]] = {
    nn.Tanh: np.tanh,
    nn.ReLU: lambda x: np.maximum(x, 0.0),
    nn.ELU: lambda x: np.where(x > 0.0, x, np.expm1(np.minimum(x, 0.0))),
}


def _numpy_layers(sequential: nn.Sequential) -> List[Tuple[str, Any]]:
    """[("linear", (W^T, b)) | ("act", fn)] for an nn.Sequential of Linear layers and activations."""
    layers = []
    for module in sequential:
        if isinstance(module, nn.Linear):
            weight = module.weight.detach().cpu().numpy().astype(np.float32).T.copy()
            bias = module.bias.detach().cpu().numpy().astype(np.float32).copy()
            layers.append(("linear", (weight, bias)))
        elif type(module) in NUMPY_ACTIVATIONS:
            layers.append(("act", NUMPY_ACTIVATIONS[type(module)]))
        else:
            raise ValueError(f"no numpy version of {type(module).__name__}; use TorchRolloutPolicy")
    return layers


def _run(layers: List[Tuple[str, Any]], x: np.ndarray) -> np.ndarray:
    for kind, layer in layers:
        if kind == "linear":
            x = x @ layer[0] + layer[1]
        else:
            x = layer(x)
    return x


class NumpyMLPPolicy:
    """A frozen float32 numpy snapshot of an ``MLPActorCritic`` (take a new one after every update).

    Sampling noise comes from a numpy generator seeded from torch's global
    generator when the snapshot is taken (``torch.randn`` alone costs ~20 us per
    call), so ``torch.manual_seed`` still makes rollouts reproducible.
    """

    def __init__(self, model: nn.Module):
        normalizer = model.obs_normalizer
        self.normalize = normalizer.enabled
        if self.normalize:
            stats = normalizer.obs
            self.mean = stats.mean.cpu().numpy().astype(np.float32).reshape(-1)
            self.std = np.sqrt(stats.var.cpu().numpy() + stats.epsilon).astype(np.float32).reshape(-1)
            self.clip = stats.clip
        self.actor = _numpy_layers(model.actor_mean)
        self.critic = _numpy_layers(model.critic)
        self.log_std = model.action_head.log_std.detach().cpu().numpy().astype(np.float32)
        self.action_std = np.exp(self.log_std)
        self.rng = np.random.default_rng(int(torch.randint(0, 2**62, ()).item()))

    def _features(self, obs: np.ndarray) -> np.ndarray:
        x = np.asarray(obs, dtype=np.float32)
        x = x.reshape(x.shape[0], -1)
        if self.normalize:
            x = (x - self.mean) / self.std
            if self.clip is not None:
                np.clip(x, -self.clip, self.clip, out=x)
        return x

    def act(self, obs: np.ndarray, deterministic: bool = False) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        features = self._features(obs)
        mean = _run(self.actor, features)
        if deterministic:
            noise = np.zeros_like(mean)
        else:
            noise = self.rng.standard_normal(mean.shape, dtype=np.float32)
        action = mean + noise * self.action_std
        # Diagonal Gaussian log-density: sum_i -z_i^2 / 2 - log s_i - log sqrt(2 pi), z = (a - m) / s = noise
        log_prob = (-0.5 * noise * noise - self.log_std - LOG_SQRT_2PI).sum(axis=-1)
        value = _run(self.critic, features)[:, 0]
        return action.astype(np.float32), log_prob.astype(np.float32), value.astype(np.float32)

    def value(self, obs: np.ndarray) -> np.ndarray:
        return _run(self.critic, self._features(obs))[:, 0].astype(np.float32)
