"""TRPO with the graph actor-critic: Fisher-vector products and one trust-region update.

tests/test_trpo.py checks the FVP on a linear policy, where the Fisher has a closed form.
Here the policy is a (tiny) GraphActorCritic, so the Fisher is built explicitly from the
Jacobian of the distribution parameters instead. Only the public model API of
docs/CONTRACTS.md is used, so the tests hold for any implementation of GraphActorCritic.

The model casts observations to float32 (``model.double()`` fails with a dtype mismatch),
so the FVP runs in float32; the explicit Fisher is assembled in float64 from the float32
Jacobian, and the tolerances are relative: the FVP matches to ~4e-7, the deliberately wrong
Fishers below are off by 5e-2 or more; the test asserts < 1e-4 and > 1e-2.
"""

import copy

import gymnasium as gym
import numpy as np
import pytest
import torch

from agents.buffer import RolloutBuffer
from agents.distributions import mean_gaussian_kl
from agents.gnn import GraphActorCritic
from agents.trpo import (
    TRPO,
    TRPOConfig,
    flat_grad,
    get_flat_params,
    make_fisher_vector_product,
    set_flat_params,
)

NODE_DIM, EDGE_DIM, ACTION_DIM, MAX_NODES = 4, 3, 3, 4


pytestmark = pytest.mark.usefixtures("single_thread")


def graph_space(max_nodes=MAX_NODES):
    max_edges = max_nodes * (max_nodes - 1)
    shapes = {
        "nodes": (max_nodes, NODE_DIM),
        "node_mask": (max_nodes,),
        "edge_attr": (max_edges, EDGE_DIM),
        "edge_mask": (max_edges,),
    }
    spaces = {k: gym.spaces.Box(-np.inf, np.inf, shape, np.float32) for k, shape in shapes.items()}
    return gym.spaces.Dict({**spaces, "edge_index": gym.spaces.Box(0, max_nodes - 1, (2, max_edges), np.int64)})


ACTION_SPACE = gym.spaces.Box(-1, 1, (ACTION_DIM,), np.float32)


def graph_obs(num_nodes, generator, max_nodes=MAX_NODES):
    """One padded fully connected graph as in docs/CONTRACTS.md; edge features = relative positions.

    Padding holds garbage, so a model that ignored the masks would give different Fishers.
    """
    nodes = torch.randn(num_nodes, NODE_DIM, generator=generator)
    pairs = [(i, j) for i in range(num_nodes) for j in range(num_nodes) if i != j]
    max_edges = max_nodes * (max_nodes - 1)
    obs = {
        "nodes": torch.full((max_nodes, NODE_DIM), 55.0),
        "node_mask": torch.zeros(max_nodes),
        "edge_index": torch.zeros(2, max_edges, dtype=torch.long),
        "edge_attr": torch.full((max_edges, EDGE_DIM), -33.0),
        "edge_mask": torch.zeros(max_edges),
    }
    obs["nodes"][:num_nodes], obs["node_mask"][:num_nodes] = nodes, 1.0
    if pairs:
        src, dst = torch.tensor(pairs).T
        obs["edge_index"][:, : len(pairs)] = torch.stack([src, dst])
        obs["edge_attr"][: len(pairs)] = nodes[dst, :3] - nodes[src, :3]
        obs["edge_mask"][: len(pairs)] = 1.0
    return obs


def graph_batch(sizes, seed):
    g = torch.Generator().manual_seed(seed)
    observations = [graph_obs(n, g) for n in sizes]
    return {k: torch.stack([o[k] for o in observations]) for k in observations[0]}


def tiny_model(seed=0):
    """hidden_dim=4, one attention round, with a fitted normaliser.

    Every actor parameter is redrawn from N(0, 0.5^2): at the default initialisation the action-mean
    layer is scaled by 0.01, so the encoder's share of the Fisher would be ~1e-4 of the rest and an
    FVP error there would hide under the tolerance. The random log-stds make 1/sigma^2 != 1.
    """
    torch.manual_seed(seed)
    model = GraphActorCritic(graph_space(), ACTION_SPACE, hidden_dim=4, num_layers=1, edge_hidden_dim=4)
    model.update_normalizer(graph_batch([4, 3, 2, 4, 3] * 4, seed=100))
    with torch.no_grad():
        for p in model.actor_parameters():
            p.normal_(0.0, 0.5)
    return model


def jacobian(outputs, params):
    """(outputs.numel(), P) Jacobian of ``outputs`` w.r.t. the flat ``params``, row by row."""
    return torch.stack([flat_grad(o, params, retain_graph=True) for o in outputs.reshape(-1)])


def explicit_fisher(model, obs, log_std_factor=2.0, use_variance=True):
    """F = 1/B sum_b J_mu_b^T diag(1/sigma_b^2) J_mu_b + 2 J_logstd_b^T J_logstd_b, in float64.

    Why: per action dimension the KL(p || q) of two Gaussians is
    log(s_q/s_p) + (s_p^2 + (m_p - m_q)^2) / (2 s_q^2) - 1/2. At q = p its Hessian w.r.t.
    (m_q, log s_q) is diag(1/s^2, 2) (the cross term carries (m_p - m_q) and vanishes), and its
    gradient is zero, so the Hessian w.r.t. theta is J^T diag(1/s^2, 2) J: the Fisher, which
    TRPO's FVP (Hessian of the mean KL by double backprop) must reproduce.
    ``log_std_factor`` and ``use_variance`` give deliberately wrong Fishers for the negative checks.
    """
    params = model.actor_parameters()
    dist = model.distribution(obs)
    b, a = dist.loc.shape
    log_std = dist.log_std.expand_as(dist.loc)  # state-independent (A,) or per sample (B, A)
    j_mu = jacobian(dist.loc, params).double().view(b, a, -1)
    j_ls = jacobian(log_std, params).double().view(b, a, -1)
    inv_var = torch.exp(-2.0 * log_std.detach().double()) if use_variance else torch.ones(b, a, dtype=torch.float64)
    return (
        torch.einsum("bap,ba,baq->pq", j_mu, inv_var, j_mu) + log_std_factor * torch.einsum("bap,baq->pq", j_ls, j_ls)
    ) / b


def relative_error(x, y):
    return float((x.double() - y.double()).norm() / y.double().norm())


def test_fisher_vector_product_matches_explicit_fisher_of_graph_model():
    model = tiny_model()
    obs = graph_batch([2, 3, 4, 4, 3, 2], seed=1)
    params = model.actor_parameters()
    num_params = sum(p.numel() for p in params)
    damping = 0.1
    old = model.distribution(obs).detach()
    fvp = make_fisher_vector_product(mean_gaussian_kl(old, model.distribution(obs)), params, damping)

    F = explicit_fisher(model, obs)
    assert F.shape == (num_params, num_params)
    # F is symmetric PSD and far from trivial: much larger than the damping, with cross terms
    # between parameters, and of higher rank than the log-std block alone could give.
    torch.testing.assert_close(F, F.T)
    eigenvalues = torch.linalg.eigvalsh(F)
    assert eigenvalues.min() > -1e-6 * eigenvalues.max()
    assert eigenvalues.max() > 10 * damping
    assert (F - torch.diag(torch.diag(F))).norm() > 0.5 * F.norm()
    assert int((eigenvalues > 1e-6 * eigenvalues.max()).sum()) > 3 * ACTION_DIM

    identity = torch.eye(num_params, dtype=torch.float64)
    wrong = {
        "log-std factor 1": explicit_fisher(model, obs, log_std_factor=1.0),
        "no 1/sigma^2": explicit_fisher(model, obs, use_variance=False),
        "no damping": F - damping * identity,
    }
    g = torch.Generator().manual_seed(2)
    products = []
    for _ in range(4):
        v = torch.randn(num_params, generator=g)
        fv = fvp(v)
        products.append((v, fv))
        assert relative_error(fv, (F + damping * identity) @ v.double()) < 1e-4
        # The comparison can fail: the same check against slightly wrong Fishers does.
        for name, F_wrong in wrong.items():
            assert relative_error(fv, (F_wrong + damping * identity) @ v.double()) > 1e-2, name
    # The FVP operator itself is symmetric and positive: u.Fv = v.Fu, v.Fv > damping |v|^2.
    (u, fu), (v, fv) = products[:2]
    assert float(u.dot(fv)) == pytest.approx(float(v.dot(fu)), rel=1e-4)
    assert float(v.dot(fv)) > damping * float(v.dot(v))


def graph_rollout(model, T=16, N=4, seed=0):
    """A RolloutBuffer filled with graph observations (2-4 real nodes of 4 slots) and random rewards."""
    g = torch.Generator().manual_seed(seed)
    buffer = RolloutBuffer(T, N, gamma=0.99, gae_lambda=0.95)
    for t in range(T):
        obs = graph_batch([2 + (t + i) % 3 for i in range(N)], seed=seed * 1000 + t)
        action, log_prob, value = model.act(obs)
        buffer.add(
            obs, action, log_prob, value, torch.randn(N, generator=g), torch.zeros(N), torch.zeros(N), torch.zeros(N)
        )
    buffer.finish(torch.zeros(N))
    return buffer


def test_trpo_update_on_graph_rollout_respects_trust_region_and_moves_actor_only_by_policy_step():
    torch.manual_seed(0)
    model = GraphActorCritic(graph_space(), ACTION_SPACE, hidden_dim=16, num_layers=1, edge_hidden_dim=4)
    buffer = graph_rollout(model)
    batch = buffer.full_batch()
    assert batch.obs["edge_index"].dtype == torch.int64 and batch.obs["nodes"].shape == (64, MAX_NODES, NODE_DIM)
    with torch.no_grad():
        old = model.distribution(batch.obs).detach()
    actor_before = get_flat_params(model.actor_parameters()).clone()
    critic_before = get_flat_params(model.critic_parameters()).clone()
    other = copy.deepcopy(model)  # same update, very different critic fitting

    max_kl = 0.01
    metrics = TRPO(model, TRPOConfig(max_kl=max_kl, critic_epochs=2)).update(buffer)
    TRPO(other, TRPOConfig(max_kl=max_kl, critic_epochs=1, critic_learning_rate=0.1)).update(buffer)

    with torch.no_grad():
        kl = mean_gaussian_kl(old, model.distribution(batch.obs)).item()
    assert metrics["line_search_success"] == 1.0 and metrics["surrogate_improvement"] > 0
    assert 0 < kl <= max_kl and kl == pytest.approx(metrics["final_kl"], rel=1e-4)
    actor_after = get_flat_params(model.actor_parameters())
    assert not torch.equal(actor_before, actor_after)
    assert not torch.equal(critic_before, get_flat_params(model.critic_parameters()))  # critic fitted
    for key in ("policy_loss", "value_loss", "entropy", "explained_variance", "step_fraction"):
        assert np.isfinite(metrics[key])

    # The policy moved only through the actor step: the critic fit does not change the actor
    # parameters (the other run fitted its critic differently and has the same actor) ...
    assert torch.equal(actor_after, get_flat_params(other.actor_parameters()))
    assert not torch.equal(get_flat_params(other.critic_parameters()), get_flat_params(model.critic_parameters()))
    # ... and the distribution does not depend on the (changed) critic parameters: putting the old
    # actor parameters back restores the old policy exactly.
    set_flat_params(model.actor_parameters(), actor_before)
    with torch.no_grad():
        restored = model.distribution(batch.obs)
    assert torch.equal(restored.loc, old.loc) and torch.equal(restored.stddev, old.stddev)
