"""GraphActorCritic and the padded -> flat graph conversion (agents/gnn.py, agents/graph_batch.py).

Observations are synthetic but follow docs/CONTRACTS.md: fully connected graphs whose
edge features are relative positions (first 3 node features), padded with garbage that
the masks must hide.
"""

import math

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch_geometric.data import Batch, Data
from torch_geometric.nn import TransformerConv

from agents import gnn
from agents.dense_graph import dense_graph
from agents.gnn import NO_EDGE_SCORE, GraphActorCritic, GraphAttention
from agents.graph_batch import flatten_graphs, to_tensors

NODE_DIM, EDGE_DIM, ACTION_DIM = 7, 3, 6
ATOL = 1e-5


def graph_space(max_nodes: int) -> gym.spaces.Dict:
    max_edges = max_nodes * (max_nodes - 1)
    box = lambda shape, dtype=np.float32: gym.spaces.Box(-np.inf, np.inf, shape, dtype)  # noqa: E731
    return gym.spaces.Dict(
        {
            "nodes": box((max_nodes, NODE_DIM)),
            "node_mask": gym.spaces.Box(0, 1, (max_nodes,), np.float32),
            "edge_index": gym.spaces.Box(0, max_nodes - 1, (2, max_edges), np.int64),
            "edge_attr": box((max_edges, EDGE_DIM)),
            "edge_mask": gym.spaces.Box(0, 1, (max_edges,), np.float32),
        }
    )


ACTION_SPACE = gym.spaces.Box(-1, 1, (ACTION_DIM,), np.float32)


pytestmark = pytest.mark.usefixtures("single_thread")


def graph_obs(nodes, slots=None, edge_slots=None, node_slots=None, edge_order=None):
    """Unbatched padded observation of the fully connected graph on ``nodes`` (n, F).

    ``node_slots`` places node i in padded slot node_slots[i] (default: i); ``edge_order``
    permutes the edge columns. Padding is filled with garbage to prove the masks are honoured.
    """
    n = nodes.shape[0]
    slots = n if slots is None else slots
    node_slots = torch.arange(n) if node_slots is None else torch.as_tensor(node_slots)
    src, dst = zip(*[(i, j) for i in range(n) for j in range(n) if i != j]) if n > 1 else ((), ())
    src, dst = torch.tensor(src, dtype=torch.long), torch.tensor(dst, dtype=torch.long)
    if edge_order is not None:
        src, dst = src[edge_order], dst[edge_order]
    e = len(src)
    edge_slots = e if edge_slots is None else edge_slots
    obs = {
        "nodes": torch.full((slots, NODE_DIM), 123.0),
        "node_mask": torch.zeros(slots),
        "edge_index": torch.full((2, edge_slots), slots - 1, dtype=torch.long),
        "edge_attr": torch.full((edge_slots, EDGE_DIM), -77.0),
        "edge_mask": torch.zeros(edge_slots),
    }
    obs["nodes"][node_slots] = nodes
    obs["node_mask"][node_slots] = 1.0
    obs["edge_index"][:, :e] = torch.stack([node_slots[src], node_slots[dst]])
    obs["edge_attr"][:e] = nodes[dst, :3] - nodes[src, :3]
    obs["edge_mask"][:e] = 1.0
    return obs


def stack(observations):
    return {k: torch.stack([o[k] for o in observations]) for k in observations[0]}


def random_nodes(n, seed):
    return torch.randn(n, NODE_DIM, generator=torch.Generator().manual_seed(seed))


def make_model(max_nodes=2, seed=0, **kwargs):
    """A model with non-trivial outputs: fitted normaliser and a full-scale action-mean layer."""
    torch.manual_seed(seed)
    model = GraphActorCritic(graph_space(max_nodes), ACTION_SPACE, hidden_dim=32, num_layers=2, **kwargs)
    model.update_normalizer(stack([graph_obs(random_nodes(max_nodes, s) * 2 + 1) for s in range(20)]))
    torch.nn.init.normal_(model.actor_mean[-1].weight, std=1.0)
    torch.nn.init.normal_(model.action_head.log_std, std=0.3)
    return model


def outputs(model, obs):
    with torch.no_grad():
        dist = model.distribution(obs)
        return dist.mean, dist.stddev, model.value(obs)


def assert_same_outputs(a, b, atol=ATOL):
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y, atol=atol, rtol=0)


# -- conversion --------------------------------------------------------------------------


def test_flatten_matches_batch_from_data_list():
    graphs = [random_nodes(n, n) for n in (1, 2, 4, 3)]
    padded = stack([graph_obs(g, slots=4, edge_slots=12) for g in graphs])
    flat = flatten_graphs(padded)
    ref = Batch.from_data_list(
        [
            Data(x=o["nodes"], edge_index=o["edge_index"], edge_attr=o["edge_attr"])
            for o in (graph_obs(g) for g in graphs)
        ]
    )
    assert torch.equal(flat.x, ref.x)
    assert torch.equal(flat.edge_index, ref.edge_index)
    assert torch.equal(flat.edge_attr, ref.edge_attr)
    assert torch.equal(flat.batch, ref.batch)
    assert torch.equal(flat.root_index, ref.ptr[:-1])
    assert flat.num_graphs == 4


def test_flatten_accepts_unbatched_numpy_with_float_edge_index():
    obs = {k: v.numpy() for k, v in graph_obs(random_nodes(3, 0), slots=5, edge_slots=8).items()}
    obs["edge_index"] = obs["edge_index"].astype(np.float32)
    flat = flatten_graphs(obs)
    assert flat.num_graphs == 1 and flat.x.shape == (3, NODE_DIM) and flat.edge_index.shape == (2, 6)
    assert flat.edge_index.dtype == torch.int64


# -- the dense attention round is TransformerConv ------------------------------------------


def transformer_conv_weights(layer: GraphAttention, conv: TransformerConv) -> None:
    """Load ``layer`` with the weights that make it compute ``conv`` (GraphAttention's docstring):
    S = W_k^T W_q / sqrt(d), c = W_k^T b_q / sqrt(d), T = W_e^T W_q / sqrt(d), d = W_e^T b_q / sqrt(d),
    root = (W_r, b_r + b_v), value = W_v, edge value = W_e."""
    scale = 1.0 / math.sqrt(conv.out_channels)
    w_q, b_q = conv.lin_query.weight, conv.lin_query.bias
    w_k, w_e = conv.lin_key.weight, conv.lin_edge.weight
    with torch.no_grad():
        layer.score.weight.copy_(scale * w_k.T @ w_q)
        layer.score.bias.copy_(scale * w_k.T @ b_q)
        layer.edge_score.weight.copy_(scale * w_e.T @ w_q)
        layer.edge_score.bias.copy_(scale * w_e.T @ b_q)
        layer.root.weight.copy_(conv.lin_skip.weight)
        layer.root.bias.copy_(conv.lin_skip.bias + conv.lin_value.bias)
        layer.value.weight.copy_(conv.lin_value.weight)
        layer.edge_value.weight.copy_(w_e)


def test_dense_attention_equals_torch_geometric_transformer_conv():
    """Mapped weights, same graphs (varied node counts, padding, nodes without in-edges): the dense
    round must give torch-geometric's TransformerConv(heads=1, root_weight=True), whose key bias
    (constant over sources, so cancelled by the softmax) is random too. A node without sources
    receives the value bias in addition (GraphAttention's docstring)."""
    torch.manual_seed(0)
    hidden, edge_dim = 8, EDGE_DIM
    conv = TransformerConv(hidden, hidden, heads=1, edge_dim=edge_dim, root_weight=True)
    with torch.no_grad():
        for parameter in conv.parameters():
            parameter.normal_(0.0, 0.5)
    layer = GraphAttention(hidden, edge_dim)
    transformer_conv_weights(layer, conv)
    graphs = [graph_obs(random_nodes(n, n), slots=5, edge_slots=20) for n in (1, 2, 5, 3)]
    graphs[2]["edge_mask"][[3, 7, 11, 15]] = 0.0  # every edge into one node (target 4) removed
    padded = stack(graphs)
    features = torch.randn(4, 5, hidden)
    padded["nodes"] = torch.cat([features, torch.zeros(4, 5, NODE_DIM - hidden)], -1) if NODE_DIM > hidden else features
    dense = dense_graph(to_tensors(padded))
    adjacency = dense.adjacency.float()
    real = padded["node_mask"] > 0.5
    ours = layer(features, dense.edges, (1 - adjacency) * NO_EDGE_SCORE, adjacency)[real]
    flat = flatten_graphs(padded)
    x = features.reshape(-1, hidden)[real.reshape(-1)]
    theirs = conv(x, flat.edge_index, flat.edge_attr)
    without_sources = (adjacency.sum(-1) == 0)[real]
    assert int(without_sources.sum()) == 2  # the 1-node graph's node and target 4 of graph 2
    theirs = theirs + without_sources[:, None] * conv.lin_value.bias.detach()
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)
    # The comparison can fail: without the edge term the outputs differ.
    with torch.no_grad():
        conv.lin_edge.weight.zero_()
    assert not torch.allclose(ours, conv(x, flat.edge_index, flat.edge_attr), atol=1e-3)


@pytest.mark.parametrize("num_nodes", [2, 3])
def test_broadcast_and_matmul_pair_products_agree(num_nodes, monkeypatch):
    """Small graphs take broadcast pairwise products, larger ones batched matmuls: same values."""
    torch.manual_seed(1)
    s, h, attention = torch.randn(3, num_nodes, 8), torch.randn(3, num_nodes, 8), torch.rand(3, num_nodes, num_nodes)
    by_default = (gnn.pair_scores(s, h), gnn.aggregate(attention, h))
    monkeypatch.setattr(gnn, "BROADCAST_MAX_NODES", 0 if num_nodes <= gnn.BROADCAST_MAX_NODES else 100)
    switched = (gnn.pair_scores(s, h), gnn.aggregate(attention, h))
    for a, b in zip(by_default, switched):
        torch.testing.assert_close(a, b)
    torch.testing.assert_close(switched[0], torch.einsum("bif,bjf->bij", s, h))
    torch.testing.assert_close(switched[1], torch.einsum("bij,bjf->bif", attention, h))


# -- model invariances -------------------------------------------------------------------


def test_permuting_other_nodes_and_edges_leaves_outputs_unchanged():
    model = make_model(max_nodes=5)
    nodes = random_nodes(5, 1)
    perm = torch.cat(
        [torch.zeros(1, dtype=torch.long), 1 + torch.randperm(4, generator=torch.Generator().manual_seed(3))]
    )
    edge_order = torch.randperm(20, generator=torch.Generator().manual_seed(4))
    base = outputs(model, graph_obs(nodes))
    assert_same_outputs(base, outputs(model, graph_obs(nodes[perm], edge_order=edge_order)))
    # Sanity check that the comparison can fail: moving another node into slot 0 changes the action.
    swapped = outputs(model, graph_obs(nodes[torch.tensor([1, 0, 2, 3, 4])]))
    assert not torch.allclose(base[0], swapped[0], atol=1e-3)


def test_runs_on_more_nodes_than_built_for_and_padding_is_ignored():
    model = make_model(max_nodes=2)
    nodes = random_nodes(5, 2)
    unpadded = outputs(model, graph_obs(nodes))
    # 5 real nodes spread over 8 slots (padding interleaved, node 0 in slot 0) and 30 edge slots.
    padded = graph_obs(nodes, slots=8, edge_slots=30, node_slots=[0, 2, 3, 5, 7])
    assert_same_outputs(unpadded, outputs(model, padded))


@pytest.mark.parametrize("options", [{}, {"shared_encoder": True}, {"actor_pooling": False}, {"edge_hidden_dim": 8}])
def test_batched_equals_one_by_one(options):
    model = make_model(max_nodes=3, **options)
    graphs = [random_nodes(n, 10 + n) for n in (1, 2, 6, 3, 5)]
    batched = outputs(model, stack([graph_obs(g, slots=6, edge_slots=30) for g in graphs]))
    for i, g in enumerate(graphs):
        single = outputs(model, graph_obs(g))
        assert_same_outputs([x[i : i + 1] for x in batched], single)


def test_act_shapes_and_deterministic_mean():
    model = make_model(max_nodes=4)
    obs = stack([graph_obs(random_nodes(4, s)) for s in range(3)])
    action, log_prob, value = model.act(obs)
    assert action.shape == (3, ACTION_DIM) and log_prob.shape == (3,) and value.shape == (3,)
    mean, _, v = outputs(model, obs)
    action, log_prob, value = model.act({**obs, "node_mask": obs["node_mask"].bool()}, deterministic=True)
    assert_same_outputs([action, value], [mean, v])
    torch.testing.assert_close(log_prob, model.distribution(obs).log_prob(action).detach())


def test_single_numpy_observation_is_accepted():
    model = make_model(max_nodes=3)
    obs = graph_obs(random_nodes(3, 5))
    action, log_prob, value = model.act({k: v.numpy() for k, v in obs.items()})
    assert action.shape == (1, ACTION_DIM) and value.shape == (1,)


# -- parameters and state ------------------------------------------------------------------


@pytest.mark.parametrize("shared", [False, True])
def test_actor_and_critic_parameters_are_disjoint_and_complete(shared):
    model = make_model(shared_encoder=shared)
    actor, critic = {id(p) for p in model.actor_parameters()}, {id(p) for p in model.critic_parameters()}
    assert actor and critic and not actor & critic
    assert actor | critic == {id(p) for p in model.parameters()}


def test_critic_step_leaves_policy_unchanged():
    model = make_model(max_nodes=4)
    obs = stack([graph_obs(random_nodes(4, s)) for s in range(8)])
    before = outputs(model, obs)
    optimizer = torch.optim.Adam(model.critic_parameters(), lr=1e-2)
    loss = (model.value(obs) - 5.0).square().mean()
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    after = outputs(model, obs)
    assert torch.equal(before[0], after[0]) and torch.equal(before[1], after[1])
    assert not torch.allclose(before[2], after[2])


def test_state_dict_round_trip():
    model = make_model(max_nodes=3, seed=0)
    copy = GraphActorCritic(graph_space(3), ACTION_SPACE, hidden_dim=32, num_layers=2)
    obs = stack([graph_obs(random_nodes(3, s)) for s in range(4)])
    copy.load_state_dict(model.state_dict())
    assert_same_outputs(outputs(model, obs), outputs(copy, obs), atol=0)
    assert "obs_normalizer.nodes.mean" in model.state_dict()


# -- bad input -----------------------------------------------------------------------------


def _bad(obs, **changes):
    return {**obs, **changes}


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda o: {k: v for k, v in o.items() if k != "edge_mask"}, "missing key"),
        (lambda o: _bad(o, nodes=o["nodes"][..., :4]), "feature size"),
        (lambda o: _bad(o, node_mask=o["node_mask"][:, :2]), "'node_mask' must have shape"),
        (lambda o: _bad(o, edge_index=o["edge_index"] + 10), "outside"),
        (lambda o: _bad(o, node_mask=torch.tensor([[1.0, 1.0, 0.0]] * 2)), "padding nodes"),
        (lambda o: _bad(o, node_mask=torch.tensor([[0.0, 1.0, 1.0]] * 2)), "node_mask\\[:, 0\\]"),
        (lambda o: _bad(o, edge_index=o["edge_index"].float() + 0.5), "non-integer"),
        (lambda o: _bad(o, nodes="oops"), "numpy array or torch tensor"),
        (
            lambda o: _bad(o, edge_index=torch.stack([o["edge_index"][:, :, [0, 0, 1, 2, 3, 4]]]).squeeze(0)),
            "same \\(source, target\\) pair twice",
        ),
    ],
)
def test_bad_observations_raise_clear_errors(mutate, message):
    model = make_model(max_nodes=3)
    obs = stack([graph_obs(random_nodes(3, s)) for s in range(2)])
    with pytest.raises(ValueError, match=message):
        model.act(mutate(obs))


def test_bad_construction_raises_clear_errors():
    with pytest.raises(ValueError, match="graph Dict"):
        GraphActorCritic(gym.spaces.Box(-1, 1, (5,)), ACTION_SPACE)
    with pytest.raises(ValueError, match="edge_hidden_dim must be >= 1 or None"):
        GraphActorCritic(graph_space(2), ACTION_SPACE, edge_hidden_dim=0)
    with pytest.raises(ValueError, match="hidden_dim and num_layers must be >= 1"):
        GraphActorCritic(graph_space(2), ACTION_SPACE, num_layers=0)
    with pytest.raises(ValueError, match="1-D Box action space"):
        GraphActorCritic(graph_space(2), gym.spaces.Discrete(3))
