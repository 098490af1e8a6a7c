"""Keypoint rewards.

The distance between an object's keypoints and the same keypoints at its goal
pose (``envs/keypoints.py``) measures position *and* orientation with one number
in metres, so it needs no weighting between translation and rotation errors.
A task passes one distance per object and a weight per object (e.g. the held
object against the others in an arrangement); the keypoint term is the
weighted mean of the kernel over the objects.
"""

from __future__ import annotations

import math
from typing import Dict, Sequence

import numpy as np

from envs.config import RewardConfig


def multiscale_kernel(x: float, params: Sequence[Sequence[float]]) -> float:
    """sum_i 1 / (exp(a_i x) + b_i + exp(-a_i x)).

    Each term is a bell curve of width ~1/a_i peaking at 1/(2 + b_i) when x = 0:
    a small ``a`` pulls from far away, a large ``a`` rewards the last millimetres.
    """
    total = 0.0
    for a, b in params:
        ax = min(a * x, 700.0)  # exp overflows past ~709; the term is ~0 there anyway
        total += 1.0 / (math.exp(ax) + b + math.exp(-ax))
    return float(total)


def linear_kernel(x: float, scale: float) -> float:
    return -scale * x


class KeypointReward:
    """The reward terms of one configuration; the kernel's value at the goal is computed once."""

    def __init__(self, config: RewardConfig):
        self.config = config
        relative = config.kernel == "multiscale" and config.relative_to_goal
        self._goal_value = multiscale_kernel(0.0, config.kernel_params) if relative else 0.0

    def kernel(self, distance: float) -> float:
        if self.config.kernel == "multiscale":
            return multiscale_kernel(distance, self.config.kernel_params) - self._goal_value
        if self.config.kernel == "sparse":
            return 0.0  # the keypoint distance gives no signal; only success is rewarded
        return linear_kernel(distance, self.config.linear_scale)  # already zero at the goal

    def keypoint_term(self, distances: Sequence[float], weights: Sequence[float]) -> float:
        """Weighted mean of the kernel over objects: sum_i w_i kernel(d_i) / sum_i w_i."""
        if len(distances) != len(weights):
            raise ValueError(f"{len(distances)} keypoint distances but {len(weights)} weights")
        total = sum(weights)
        if not total > 0:
            raise ValueError(f"keypoint weights must sum to a positive number, got {list(weights)}")
        return sum(w * self.kernel(d) for d, w in zip(distances, weights)) / total

    def terms(
        self,
        distances: Sequence[float],
        weights: Sequence[float],
        success: bool,
        action: np.ndarray,
        contact_force: float,
    ) -> Dict[str, float]:
        """Every reward term separately; the reward is their sum. ``distances``/``weights``: one per object."""
        config = self.config
        return {
            "keypoint": self.keypoint_term(distances, weights),
            "success_bonus": config.success_bonus if success else 0.0,
            "action_penalty": -config.action_penalty * float(np.dot(action, action)),
            "contact_penalty": -config.contact_force_penalty * contact_force,
        }
