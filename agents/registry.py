"""Build what the config's names select (``model=...``, ``agent=...``).

The names live in one table, ``agents.config.GROUP_SCHEMAS`` (group -> option -> schema); a
model or agent schema names the class it builds (``target = "module:Class"``, imported on first
use). Adding a model or an algorithm is its schema in that table plus its yaml in ``configs/``;
nothing dispatches on the names anywhere else.
"""

from __future__ import annotations

import importlib

import gymnasium as gym
import torch
from omegaconf import DictConfig, OmegaConf

from agents.config import GROUP_SCHEMAS, dataclass_from


def _schema(group: str, name: str) -> type:
    options = GROUP_SCHEMAS[group]
    if name not in options:
        raise ValueError(f"{group}.name={name!r} is not one of {sorted(options)}")
    return options[name]


def load_target(target: str) -> type:
    """The object a ``"module:name"`` target names (imported on first use)."""
    module, name = target.split(":")
    return getattr(importlib.import_module(module), name)


def build_model(model_cfg: DictConfig, observation_space: gym.Space, action_space: gym.Space) -> torch.nn.Module:
    """The actor-critic ``model_cfg.name`` names, after checking that it reads this kind of observation."""
    schema = _schema("model", model_cfg.name)
    is_graph = isinstance(observation_space, gym.spaces.Dict)
    if schema.graph_observations and not is_graph:
        raise ValueError(
            f"model={model_cfg.name} needs graph (Dict) observations, but the env's observation space is "
            f"{observation_space}; use a flat-observation model (model=mlp), or env.kwargs.obs_mode=graph"
        )
    if is_graph and not schema.graph_observations:
        raise ValueError(
            f"model={model_cfg.name} needs flat (Box) observations, but the env emits graph (Dict) "
            "observations; use model=gnn, or env.kwargs.obs_mode=flat"
        )
    kwargs = {k: v for k, v in OmegaConf.to_container(model_cfg, resolve=True).items() if k != "name"}
    return load_target(schema.target)(observation_space, action_space, **kwargs)


def build_algorithm(agent_cfg: DictConfig, model: torch.nn.Module):
    """The algorithm ``agent_cfg.name`` names, configured by the agent node's fields."""
    schema = _schema("agent", agent_cfg.name)
    values = OmegaConf.to_container(agent_cfg, resolve=True)
    return load_target(schema.target)(model, dataclass_from(schema.algorithm_config, values))


DEMO_CLONING = "agents.demo_cloning:DemoCloning"


def build_plugins(cfg: DictConfig) -> list:
    """The trainer plugins the config selects: the curriculum (none for ``curriculum=none``) and
    demonstration cloning (when ``demo_cloning.weight > 0``)."""
    schema = _schema("curriculum", cfg.curriculum.name)
    plugins = [] if schema.target is None else [load_target(schema.target)(cfg.curriculum, cfg)]
    if cfg.demo_cloning.weight > 0:
        plugins.append(load_target(DEMO_CLONING)(cfg.demo_cloning, cfg))
    return plugins
