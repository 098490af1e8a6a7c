"""Playing whole episodes with a policy: evaluation during training and by ``scripts/evaluate.py``."""

from __future__ import annotations

import math
from typing import Any, Callable, Dict, List, Optional

import gymnasium as gym
import numpy as np
import torch
from omegaconf import DictConfig

from agents.rollout import stack_obs
from agents.rollout_policy import obs_to_tensor


@torch.no_grad()
def policy_action(
    model: torch.nn.Module, obs, action_space: gym.spaces.Box, deterministic: bool, device: str = "cpu"
) -> np.ndarray:
    """Action for one (unbatched) observation, clipped to the action space."""
    batch = obs_to_tensor(stack_obs([obs]), device)
    action, _, _ = model.act(batch, deterministic=deterministic)
    return np.clip(action[0].cpu().numpy(), action_space.low, action_space.high)


def run_episodes(
    env: gym.Env,
    model: torch.nn.Module,
    episodes: int,
    deterministic: bool,
    seed: int,
    device: str = "cpu",
    on_step: Optional[Callable[[int, gym.Env], None]] = None,
) -> List[Dict[str, Any]]:
    """Play ``episodes`` episodes without touching the normaliser; one result dict per episode.

    Episode k starts from the same state for a given ``seed`` (``EpisodeSeeding``).
    ``success`` is whether ``info["is_success"]`` was ever true, ``steps_to_success``
    the first step where it was; ``on_step(episode, env)`` runs after every reset/step
    (e.g. to render a video frame).
    """
    model.eval()
    results = []
    for episode in range(episodes):
        obs, info = env.reset(seed=seed if episode == 0 else None)
        if on_step:
            on_step(episode, env)
        total, steps, steps_to_success, reports_success, done = 0.0, 0, None, False, False
        while not done:
            obs, reward, terminated, truncated, info = env.step(
                policy_action(model, obs, env.action_space, deterministic, device)
            )
            total, steps, done = total + float(reward), steps + 1, terminated or truncated
            reports_success = reports_success or "is_success" in info
            if steps_to_success is None and info.get("is_success", False):
                steps_to_success = steps
            if on_step:
                on_step(episode, env)
        results.append(
            {
                "return": total,
                "length": steps,
                "success": steps_to_success is not None,
                "steps_to_success": steps_to_success,
                "reports_success": reports_success,
            }
        )
    model.train()
    return results


def episode_metric(returns: List[float], successes: List[float]) -> Optional[tuple]:
    """What decides ``best.pt``: ``(name, value, tie_breaker)``; None without episodes.

    ("success_rate", rate, mean return) when episodes report success, else ("return", mean, None).
    The return breaks ties of the success rate: once every episode succeeds (rate 1.0), a policy
    that succeeds sooner (a higher return) still replaces the best one.
    """
    if successes:
        return "success_rate", float(np.mean(successes)), float(np.mean(returns)) if returns else None
    if returns:
        return "return", float(np.mean(returns)), None
    return None


def evaluate_during_training(env: gym.Env, model: torch.nn.Module, cfg: DictConfig) -> tuple:
    """(metrics, measured) from ``eval.episodes`` episodes that start from the same states every time."""
    results = run_episodes(env, model, cfg.eval.episodes, cfg.eval.deterministic, cfg.eval.seed, cfg.device)
    returns = [r["return"] for r in results]
    successes = [float(r["success"]) for r in results if r["reports_success"]]
    metrics = {"eval/return_mean": mean_or_nan(returns), "eval/success_rate": mean_or_nan(successes)}
    return metrics, episode_metric(returns, successes)


def mean_or_nan(values) -> float:
    return float(np.mean(values)) if len(values) else math.nan
