"""The names a config selects (``model=...``, ``agent=...``) and what each one builds.

Adding a model or an algorithm is one entry here (plus its schema in ``agents/config.py`` and
its yaml in ``configs/``); nothing else dispatches on these names.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Dict

import gymnasium as gym
import torch
from omegaconf import DictConfig, OmegaConf

from agents.config import dataclass_from


@dataclass(frozen=True)
class ModelEntry:
    """An actor-critic class (``module:Class``, imported on first use) and the observations it reads."""

    target: str
    graph_observations: bool  # True: graph Dict observations; False: flat Box observations

    def cls(self) -> type:
        module, name = self.target.split(":")
        return getattr(importlib.import_module(module), name)


@dataclass(frozen=True)
class AlgorithmEntry:
    """An algorithm class and its config dataclass (``module:Class`` each)."""

    target: str
    config: str

    def build(self, model: torch.nn.Module, values: dict):
        module, name = self.target.split(":")
        config_module, config_name = self.config.split(":")
        config_cls = getattr(importlib.import_module(config_module), config_name)
        return getattr(importlib.import_module(module), name)(model, dataclass_from(config_cls, values))


MODELS: Dict[str, ModelEntry] = {
    "gnn": ModelEntry("agents.gnn:GraphActorCritic", graph_observations=True),
    "mlp": ModelEntry("agents.mlp:MLPActorCritic", graph_observations=False),
}
ALGORITHMS: Dict[str, AlgorithmEntry] = {
    "ppo": AlgorithmEntry("agents.ppo:PPO", "agents.ppo:PPOConfig"),
    "trpo": AlgorithmEntry("agents.trpo:TRPO", "agents.trpo:TRPOConfig"),
}


def _entry(registry: Dict[str, object], key: str, name: str):
    try:
        return registry[name]
    except KeyError:
        raise ValueError(f"{key}={name!r} is not one of {sorted(registry)}") from None


def build_model(model_cfg: DictConfig, observation_space: gym.Space, action_space: gym.Space) -> torch.nn.Module:
    """The actor-critic ``model_cfg.name`` names, after checking that it reads this kind of observation."""
    entry = _entry(MODELS, "model.name", model_cfg.name)
    is_graph = isinstance(observation_space, gym.spaces.Dict)
    if entry.graph_observations and not is_graph:
        raise ValueError(
            f"model={model_cfg.name} needs graph (Dict) observations, but the env's observation space is "
            f"{observation_space}; use a flat-observation model (model=mlp), or env.kwargs.obs_mode=graph"
        )
    if is_graph and not entry.graph_observations:
        raise ValueError(
            f"model={model_cfg.name} needs flat (Box) observations, but the env emits graph (Dict) "
            "observations; use model=gnn, or env.kwargs.obs_mode=flat"
        )
    kwargs = {k: v for k, v in OmegaConf.to_container(model_cfg, resolve=True).items() if k != "name"}
    return entry.cls()(observation_space, action_space, **kwargs)


def build_algorithm(agent_cfg: DictConfig, model: torch.nn.Module):
    """The algorithm ``agent_cfg.name`` names, configured by the agent node's fields."""
    entry = _entry(ALGORITHMS, "agent.name", agent_cfg.name)
    return entry.build(model, OmegaConf.to_container(agent_cfg, resolve=True))
