"""Scripted demonstrations of a task, recorded from the task's own starts, seeded from the run seed.

Two users: the demonstration curriculum (``curriculum/demo.py``) starts episodes from the recorded
states, and demonstration cloning (``agents/demo_cloning.py``) adds a behaviour-cloning term on the
recorded (observation, action) pairs to the policy update. Both call ``record_demonstrations`` with
the run's config, so with the same seed and count they see the same demonstrations.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List

import numpy as np
from omegaconf import DictConfig

from agents.config import GROUP_SCHEMAS
from agents.registry import load_target
from agents.training_envs import env_kwargs, make_env

DEMO_STREAM = 0xDE  # spawn key of the demonstrations' seeds: no stream shared with the envs or the schedule


@dataclass
class Demonstration:
    """One scripted episode: ``states`` s_0 .. s_T (``get_start_state()`` before each action and after the
    last), the observations o_0 .. o_{T-1} the controller acted on and its actions a_0 .. a_{T-1}."""

    states: List[Dict[str, Any]]
    observations: List[Any]
    actions: List[np.ndarray]
    success: bool


def record_demonstrations(train_cfg: DictConfig, count: int) -> tuple:
    """(the successful demonstrations, the number that failed) of ``count`` scripted episodes from the
    task's own starts; a clear error when the env has no demonstrator or none succeeds."""
    env_cfg = train_cfg.env
    target = GROUP_SCHEMAS["env"][env_cfg.name].demonstrator
    if target is None:
        raise ValueError(f"env={env_cfg.name} has no scripted demonstrator to record demonstrations with")
    demonstrator = load_target(target)
    seeds = np.random.SeedSequence(train_cfg.seed, spawn_key=(DEMO_STREAM,)).generate_state(count)
    env = make_env(env_cfg.id, env_cfg.max_episode_steps, **env_kwargs(env_cfg))
    try:
        played = [play_demonstration(env, demonstrator(env), int(seed)) for seed in seeds]
    finally:
        env.close()
    demonstrations = [demonstration for demonstration in played if demonstration.success]
    if not demonstrations:
        raise ValueError(
            f"none of the {count} scripted demonstrations ({target}) succeeded on env={env_cfg.name} with "
            "this config; at least one is needed"
        )
    return demonstrations, count - len(demonstrations)


def play_demonstration(env, policy, seed: int) -> Demonstration:
    """One episode of ``policy`` from ``env.reset(seed=seed)``, recorded."""
    observation, _ = env.reset(seed=seed)
    states, observations, actions = [env.unwrapped.get_start_state()], [], []
    terminated = truncated = False
    info: Dict[str, Any] = {}
    while not (terminated or truncated):
        action = np.asarray(policy(observation), dtype=np.float32)
        observations.append(observation)
        actions.append(action)
        observation, _, terminated, truncated, info = env.step(action)
        states.append(env.unwrapped.get_start_state())
    return Demonstration(states, observations, actions, bool(info["is_success"]))
