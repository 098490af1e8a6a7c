"""Running mean/std: numpy agreement, graph masks, state_dict round trip."""

import gymnasium as gym
import numpy as np
import pytest
import torch

from agents.normalization import ObservationNormalizer, RunningMeanStd


def graph_space(max_nodes=4, node_dim=3, max_edges=5, edge_dim=2):
    box = lambda shape: gym.spaces.Box(-np.inf, np.inf, shape, np.float32)  # noqa: E731
    return gym.spaces.Dict(
        {
            "nodes": box((max_nodes, node_dim)),
            "node_mask": gym.spaces.Box(0, 1, (max_nodes,), np.float32),
            "edge_index": gym.spaces.Box(0, max_nodes - 1, (2, max_edges), np.int64),
            "edge_attr": box((max_edges, edge_dim)),
            "edge_mask": gym.spaces.Box(0, 1, (max_edges,), np.float32),
        }
    )


def test_running_stats_match_numpy_over_batches():
    rng = np.random.default_rng(0)
    rms = RunningMeanStd((3,), clip=None)
    batches = [rng.normal(loc=[1.0, -2.0, 5.0], scale=[0.1, 3.0, 10.0], size=(n, 3)) for n in (1, 7, 50, 3)]
    for b in batches:
        rms.update(torch.as_tensor(b, dtype=torch.float32))
    data = np.concatenate(batches).astype(np.float32).astype(np.float64)
    np.testing.assert_allclose(rms.mean.numpy(), data.mean(axis=0), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(rms.var.numpy(), data.var(axis=0), rtol=1e-10)
    assert rms.count.item() == len(data)
    x = torch.as_tensor(data[:4], dtype=torch.float32)
    expected = (data[:4] - data.mean(0)) / np.sqrt(data.var(0) + 1e-8)
    np.testing.assert_allclose(rms(x).numpy(), expected, rtol=1e-5, atol=1e-5)


def test_identity_before_update_and_clipping():
    norm = ObservationNormalizer(gym.spaces.Box(-1, 1, (2,)), clip=5.0)
    x = torch.tensor([[0.3, -0.7]])
    torch.testing.assert_close(norm(x), x)
    norm.update(torch.tensor([[0.0, 0.0], [0.0, 2.0]]))
    assert norm(torch.tensor([[100.0, 1.0]]))[0, 0].item() == 5.0


def test_graph_statistics_use_valid_nodes_and_edges_only():
    norm = ObservationNormalizer(graph_space(), clip=None)
    nodes = torch.full((2, 4, 3), 1e6)  # garbage on padding must not leak into the stats
    nodes[0, :2] = torch.tensor([[1.0, 2.0, 3.0], [3.0, 2.0, 1.0]])
    nodes[1, :3] = torch.tensor([[5.0, 2.0, 0.0], [7.0, 2.0, 0.0], [9.0, 2.0, 0.0]])
    node_mask = torch.tensor([[1.0, 1.0, 0.0, 0.0], [1.0, 1.0, 1.0, 0.0]])
    edge_attr = torch.full((2, 5, 2), -1e6)
    edge_attr[0, 0] = torch.tensor([1.0, 1.0])
    edge_attr[1, :2] = torch.tensor([[3.0, 1.0], [5.0, 1.0]])
    edge_mask = torch.tensor([[1.0, 0, 0, 0, 0], [1.0, 1.0, 0, 0, 0]])
    edge_index = torch.randint(0, 4, (2, 2, 5))
    obs = {
        "nodes": nodes,
        "node_mask": node_mask,
        "edge_index": edge_index,
        "edge_attr": edge_attr,
        "edge_mask": edge_mask,
    }
    norm.update(obs)

    valid_nodes = nodes[node_mask > 0].double()
    torch.testing.assert_close(norm.nodes.mean, valid_nodes.mean(0))
    torch.testing.assert_close(norm.nodes.var, valid_nodes.var(0, unbiased=False))
    torch.testing.assert_close(norm.edges.mean, torch.tensor([3.0, 1.0], dtype=torch.float64))
    assert norm.nodes.count.item() == 5 and norm.edges.count.item() == 3

    out = norm(obs)
    assert torch.equal(out["edge_index"], edge_index) and torch.equal(out["node_mask"], node_mask)
    assert torch.equal(out["edge_mask"], edge_mask)
    assert torch.all(out["nodes"][node_mask == 0] == 0) and torch.all(out["edge_attr"][edge_mask == 0] == 0)
    torch.testing.assert_close(out["nodes"][node_mask > 0].mean(0), torch.zeros(3), atol=1e-5, rtol=0)


def test_state_dict_round_trip():
    space = graph_space()
    norm = ObservationNormalizer(space)
    samples = [space.sample() for _ in range(8)]
    sample = {k: torch.as_tensor(np.stack([s[k] for s in samples])) for k in space.spaces}
    norm.update(sample)
    restored = ObservationNormalizer(space)
    restored.load_state_dict(norm.state_dict())
    for k, v in norm(sample).items():
        assert torch.equal(v, restored(sample)[k])
    assert set(norm.state_dict()) == {f"{m}.{b}" for m in ("nodes", "edges") for b in ("mean", "var", "count")}


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="missing keys"):
        ObservationNormalizer(gym.spaces.Dict({"nodes": gym.spaces.Box(0, 1, (2, 2))}))
    flat = ObservationNormalizer(gym.spaces.Box(-1, 1, (3,)))
    with pytest.raises(ValueError, match="trailing shape"):
        flat(torch.zeros(2, 4))
    with pytest.raises(ValueError, match="Tensor"):
        flat({"nodes": torch.zeros(2, 3)})
    with pytest.raises(ValueError, match="missing keys"):
        ObservationNormalizer(graph_space())({"nodes": torch.zeros(1, 4, 3)})
