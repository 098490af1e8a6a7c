"""The numpy rollout snapshot of the graph actor-critic acts exactly like the torch model."""

import numpy as np
import pytest
import torch
from test_gnn import graph_obs, make_model, random_nodes, stack

from agents.rollout_policy import NumpyGraphPolicy


def numpy_obs(node_counts, slots=5, edge_slots=20, seed=0):
    graphs = [graph_obs(random_nodes(n, seed + n) * 3, slots=slots, edge_slots=edge_slots) for n in node_counts]
    return {k: v.numpy() for k, v in stack(graphs).items()}


def reference(model, obs):
    with torch.no_grad():
        t = {k: torch.as_tensor(v) for k, v in obs.items()}
        dist, value = model.distribution_and_value(t)
    return dist, value


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"shared_encoder": True},
        {"actor_pooling": False},
        {"activation": "tanh"},
        {"normalize_obs": False},
        {"edge_hidden_dim": 8},
    ],
)
def test_numpy_snapshot_matches_model(options):
    model = make_model(max_nodes=5, **options)
    policy = model.rollout_policy()
    assert isinstance(policy, NumpyGraphPolicy)
    obs = numpy_obs([1, 2, 5, 3])
    obs["nodes"][2, 1, 0] = 1e4  # beyond the normaliser's clip
    action, log_prob, value = policy.act(obs)
    dist, ref_value = reference(model, obs)
    np.testing.assert_allclose(value, ref_value.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(policy.value(obs), ref_value.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(log_prob, dist.log_prob(torch.as_tensor(action)).detach().numpy(), rtol=1e-5, atol=1e-5)
    mean, _, _ = policy.act(obs, deterministic=True)
    np.testing.assert_allclose(mean, dist.mean.numpy(), rtol=1e-5, atol=1e-5)


def test_changed_structure_is_used_and_validated():
    """The dense structure is cached between calls: a new edge list must replace it, a bad one must fail."""
    model = make_model(max_nodes=5)
    policy = model.rollout_policy()
    first, second = numpy_obs([5, 5]), numpy_obs([2, 4])
    policy.act(first)
    value = policy.value(second)
    np.testing.assert_allclose(value, reference(model, second)[1].numpy(), rtol=1e-5, atol=1e-5)
    bad = {**second, "node_mask": second["node_mask"].copy()}
    bad["node_mask"][1, 3] = 0.0  # an edge now points at padding
    with pytest.raises(ValueError, match="padding nodes"):
        policy.act(bad)


def test_snapshot_is_frozen_and_sampling_follows_torch_seed():
    model = make_model(max_nodes=3)
    obs = numpy_obs([3, 3], slots=3, edge_slots=6)
    torch.manual_seed(5)
    a1 = model.rollout_policy().act(obs)[0]
    torch.manual_seed(5)
    policy = model.rollout_policy()
    a2 = policy.act(obs)[0]
    np.testing.assert_array_equal(a1, a2)
    before = policy.value(obs)
    with torch.no_grad():
        model.critic[-1].bias.add_(1.0)
    np.testing.assert_array_equal(policy.value(obs), before)


def test_structure_is_validated_once_per_batch_shape(monkeypatch):
    """A rollout alternates act(all envs) and value(truncated envs): neither may redo the other's checks."""
    import agents.dense_graph

    calls = []
    original = agents.dense_graph.dense_graph
    monkeypatch.setattr(agents.dense_graph, "dense_graph", lambda t: calls.append(1) or original(t))
    policy = make_model(max_nodes=5).rollout_policy()
    all_envs, truncated = numpy_obs([5, 5, 5, 5]), numpy_obs([5])
    for _ in range(3):
        policy.act(all_envs)
        policy.value(truncated)
    assert len(calls) == 2
