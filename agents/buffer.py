"""On-policy rollout storage of shape (T, N) and GAE(lambda).

Time-limit truncation is not termination: the episode was cut, the state
still has a future. The collector stores the value of the true final
observation of truncated steps in ``bootstrap_values`` and ``compute_gae``
bootstraps from it (Pardo et al. 2018, "Time Limits in Reinforcement Learning").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Iterator, Optional, Tuple, Union

import torch

Obs = Union[torch.Tensor, Dict[str, torch.Tensor]]


def compute_gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    terminated: torch.Tensor,
    truncated: torch.Tensor,
    bootstrap_values: torch.Tensor,
    last_values: torch.Tensor,
    gamma: float,
    lam: float,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """GAE(lambda), Schulman et al. 2016 eq. (16), with time-limit bootstrapping.

    All inputs are (T, N) except ``last_values`` (N,), the value of the
    observation after the last stored step. With V_next = bootstrap_values[t]
    if truncated at t, else values[t+1] (last_values at t = T-1):

        delta_t = r_t + gamma * V_next * (1 - terminated_t) - V_t
        A_t     = delta_t + gamma * lam * (1 - done_t) * A_{t+1},  done = terminated or truncated

    Returns (advantages, returns = advantages + values), both (T, N).
    """
    if not (0.0 <= gamma <= 1.0 and 0.0 <= lam <= 1.0):
        raise ValueError(f"gamma and lam must be in [0, 1], got gamma={gamma}, lam={lam}")
    shape = rewards.shape
    if rewards.dim() != 2:
        raise ValueError(f"rewards must be (T, N), got shape {tuple(shape)}")
    for name, x in (
        ("values", values),
        ("terminated", terminated),
        ("truncated", truncated),
        ("bootstrap_values", bootstrap_values),
    ):
        if x.shape != shape:
            raise ValueError(f"{name} has shape {tuple(x.shape)}, expected {tuple(shape)} like rewards")
    if last_values.shape != shape[1:]:
        raise ValueError(f"last_values has shape {tuple(last_values.shape)}, expected ({shape[1]},)")

    terminated, truncated = terminated.float(), truncated.float()
    next_values = torch.cat([values[1:], last_values.unsqueeze(0)], dim=0)
    next_values = torch.where(truncated > 0, bootstrap_values, next_values)
    deltas = rewards + gamma * next_values * (1.0 - terminated) - values
    not_done = 1.0 - torch.maximum(terminated, truncated)

    advantages = torch.zeros_like(rewards)
    running = torch.zeros_like(last_values)
    for t in reversed(range(shape[0])):
        running = deltas[t] + gamma * lam * not_done[t] * running
        advantages[t] = running
    return advantages, advantages + values


def _numpy(x):
    """A CPU tensor's numpy view, or the array itself."""
    return x.numpy() if isinstance(x, torch.Tensor) else x


def explained_variance(predicted: torch.Tensor, target: torch.Tensor) -> float:
    """1 - Var[target - predicted] / Var[target]: 1 is perfect, 0 is no better than a constant."""
    var = target.var(unbiased=False)
    if var == 0:
        return float("nan")
    return float(1.0 - (target - predicted).var(unbiased=False) / var)


@dataclass
class RolloutBatch:
    """A flat (B,) slice of the rollout; ``indices`` locate it in the flat T*N batch."""

    indices: torch.Tensor
    obs: Obs
    actions: torch.Tensor
    log_probs: torch.Tensor
    values: torch.Tensor
    advantages: torch.Tensor
    returns: torch.Tensor


class RolloutBuffer:
    """Fixed-size (num_steps, num_envs) storage, filled step by step with ``add``.

    Storage is allocated on the first ``add`` from the shapes/dtypes it sees, so
    the same buffer serves flat and graph (dict) observations.
    """

    def __init__(
        self,
        num_steps: int,
        num_envs: int,
        gamma: float = 0.99,
        gae_lambda: float = 0.95,
        device: Union[str, torch.device] = "cpu",
    ):
        if num_steps < 1 or num_envs < 1:
            raise ValueError(f"num_steps and num_envs must be >= 1, got {num_steps}, {num_envs}")
        self.num_steps, self.num_envs = num_steps, num_envs
        self.gamma, self.gae_lambda = gamma, gae_lambda
        self.device = torch.device(device)
        self.obs: Optional[Obs] = None
        self.step = 0
        self.advantages: Optional[torch.Tensor] = None
        self.returns: Optional[torch.Tensor] = None

    def _zeros(self, like, dtype=None) -> torch.Tensor:
        """Storage for (num_steps, *like.shape): tensors keep their dtype, numpy floats become float32."""
        if dtype is None:
            dtype = torch.as_tensor(like[:0]).dtype
            if not isinstance(like, torch.Tensor) and dtype.is_floating_point:
                dtype = torch.float32
        return torch.zeros((self.num_steps, *like.shape), dtype=dtype, device=self.device)

    def _allocate(self, obs, action) -> None:
        if isinstance(obs, dict):
            self.obs = {k: self._zeros(v) for k, v in obs.items()}
        else:
            self.obs = self._zeros(obs)
        self.actions = self._zeros(action, torch.float32)
        scalar = torch.zeros(self.num_envs)
        for name in ("log_probs", "values", "rewards", "terminated", "truncated", "bootstrap_values"):
            setattr(self, name, self._zeros(scalar, torch.float32))
        # On the CPU, numpy views of the storage take each step's numpy arrays with one
        # cheap copy each (a torch index-assignment costs ~5 us of dispatch per field).
        self._views = None
        if self.device.type == "cpu":
            names = ("actions", "log_probs", "values", "rewards", "terminated", "truncated", "bootstrap_values")
            self._views = {name: getattr(self, name).numpy() for name in names}
            self._views["obs"] = (
                {k: v.numpy() for k, v in self.obs.items()} if isinstance(self.obs, dict) else self.obs.numpy()
            )

    def reset(self) -> None:
        """Start a new rollout (storage is reused)."""
        self.step = 0
        self.advantages = self.returns = None

    @property
    def full(self) -> bool:
        return self.step == self.num_steps

    def add(self, obs, action, log_prob, value, reward, terminated, truncated, bootstrap_value) -> None:
        """Store one vector-env step. Every argument is a numpy array or tensor with leading dim num_envs
        (``obs`` may be a dict of them)."""
        if self.full:
            raise ValueError(f"buffer is full ({self.num_steps} steps); call reset() first")
        if action.shape[0] != self.num_envs:
            raise ValueError(f"expected {self.num_envs} envs, got action of shape {tuple(action.shape)}")
        if self.obs is None:
            self._allocate(obs, action)
        t = self.step
        fields = (
            ("actions", action),
            ("log_probs", log_prob),
            ("values", value),
            ("rewards", reward),
            ("terminated", terminated),
            ("truncated", truncated),
            ("bootstrap_values", bootstrap_value),
        )
        if self._views is not None:
            if isinstance(obs, dict):
                for k, v in obs.items():
                    self._views["obs"][k][t] = _numpy(v)
            else:
                self._views["obs"][t] = _numpy(obs)
            for name, x in fields:
                self._views[name][t] = _numpy(x)
        else:
            if isinstance(obs, dict):
                for k, v in obs.items():
                    self.obs[k][t] = torch.as_tensor(v, device=self.device)
            else:
                self.obs[t] = torch.as_tensor(obs, device=self.device)
            for name, x in fields:
                getattr(self, name)[t] = torch.as_tensor(x, dtype=torch.float32, device=self.device)
        self.step += 1

    def finish(self, last_values: torch.Tensor) -> None:
        """Compute advantages and returns once the rollout is full; ``last_values`` (N,) are V(s_T)."""
        if not self.full:
            raise ValueError(f"rollout incomplete: {self.step}/{self.num_steps} steps stored")
        self.advantages, self.returns = compute_gae(
            self.rewards,
            self.values,
            self.terminated,
            self.truncated,
            self.bootstrap_values,
            last_values.to(self.device, torch.float32),
            self.gamma,
            self.gae_lambda,
        )

    def _flat(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(self.num_steps * self.num_envs, *x.shape[2:])

    def _select(self, idx: Optional[torch.Tensor]) -> RolloutBatch:
        def take(x):
            flat = self._flat(x)
            return flat if idx is None else flat[idx]

        if self.advantages is None:
            raise ValueError("advantages not computed; call finish(last_values) first")
        indices = torch.arange(self.num_steps * self.num_envs, device=self.device) if idx is None else idx
        obs = {k: take(v) for k, v in self.obs.items()} if isinstance(self.obs, dict) else take(self.obs)
        return RolloutBatch(
            indices,
            obs,
            take(self.actions),
            take(self.log_probs),
            take(self.values),
            take(self.advantages),
            take(self.returns),
        )

    def full_batch(self) -> RolloutBatch:
        """The whole rollout flattened to T*N samples (time-major)."""
        return self._select(None)

    def minibatches(self, minibatch_size: int, generator: Optional[torch.Generator] = None) -> Iterator[RolloutBatch]:
        """One shuffled pass over the T*N samples; the last minibatch may be smaller.

        The whole rollout is gathered into the shuffled order once, and minibatches
        are contiguous slices (views) of it: one gather per field per epoch instead
        of one per field per minibatch.
        """
        total = self.num_steps * self.num_envs
        if minibatch_size < 1:
            raise ValueError(f"minibatch_size must be >= 1, got {minibatch_size}")
        shuffled = self._select(torch.randperm(total, generator=generator).to(self.device))
        for start in range(0, total, minibatch_size):
            yield _slice(shuffled, slice(start, start + minibatch_size))


def _slice(batch: RolloutBatch, part: slice) -> RolloutBatch:
    obs = {k: v[part] for k, v in batch.obs.items()} if isinstance(batch.obs, dict) else batch.obs[part]
    return RolloutBatch(
        batch.indices[part],
        obs,
        batch.actions[part],
        batch.log_probs[part],
        batch.values[part],
        batch.advantages[part],
        batch.returns[part],
    )
