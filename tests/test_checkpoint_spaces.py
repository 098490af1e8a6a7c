"""Checkpoint space checks: graph checkpoints run on other node counts, everything else must match."""

import gymnasium as gym
import numpy as np
import pytest
import torch

from agents import checkpoint as ckpt
from agents.gnn import GraphActorCritic
from agents.ppo import PPO, PPOConfig
from envs.graph_obs import fully_connected_edges, graph_space

ACTION_SPACE = gym.spaces.Box(-1, 1, (6,), np.float32)
NUM_KEYPOINTS = 3


def saved_graph_checkpoint(tmp_path, num_nodes=2):
    space = graph_space(num_nodes, NUM_KEYPOINTS)
    model = GraphActorCritic(space, ACTION_SPACE, hidden_dim=16, num_layers=1)
    path = ckpt.save_checkpoint(
        tmp_path / "graph.pt",
        model=model,
        algorithm=PPO(model, PPOConfig()),
        global_step=0,
        updates=0,
        best_metric=None,
        run_id=None,
        config={},
        observation_space=space,
        action_space=ACTION_SPACE,
    )
    return model, ckpt.load_checkpoint(path), path


def test_graph_checkpoint_evaluates_on_more_nodes(tmp_path):
    model, loaded, path = saved_graph_checkpoint(tmp_path, num_nodes=2)
    bigger = graph_space(6, NUM_KEYPOINTS)
    ckpt.check_spaces(loaded, bigger, ACTION_SPACE, path)  # padded sizes differ: accepted
    fresh = GraphActorCritic(bigger, ACTION_SPACE, hidden_dim=16, num_layers=1)
    ckpt.load_model_state(fresh, loaded, path)
    obs = bigger.sample()
    obs["node_mask"][:] = 1.0
    obs["edge_mask"][:] = 1.0
    obs["edge_index"] = fully_connected_edges(6)
    for a, b in zip(model.act(obs, deterministic=True), fresh.act(obs, deterministic=True)):
        assert torch.equal(a, b)


def test_graph_checkpoint_rejects_other_feature_sizes(tmp_path):
    _, loaded, path = saved_graph_checkpoint(tmp_path)
    with pytest.raises(ckpt.CheckpointError, match="incompatible with this env: its observation space"):
        ckpt.check_spaces(loaded, graph_space(2, NUM_KEYPOINTS + 1), ACTION_SPACE, path)
    with pytest.raises(ckpt.CheckpointError, match="incompatible with this env: its action space"):
        ckpt.check_spaces(loaded, graph_space(4, NUM_KEYPOINTS), gym.spaces.Box(-1, 1, (3,), np.float32), path)


def test_flat_observations_keep_the_strict_check(tmp_path):
    _, loaded, path = saved_graph_checkpoint(tmp_path)
    flat = {"type": "Box", "shape": [10], "dtype": "float32"}
    loaded = {**loaded, "spaces": {**loaded["spaces"], "observation": flat}}
    ckpt.check_spaces(loaded, gym.spaces.Box(-1, 1, (10,), np.float32), ACTION_SPACE, path)
    with pytest.raises(ckpt.CheckpointError, match="incompatible with this env: its observation space"):
        ckpt.check_spaces(loaded, gym.spaces.Box(-1, 1, (12,), np.float32), ACTION_SPACE, path)
