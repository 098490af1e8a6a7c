"""PPO: hand-checked loss terms, KL early stop, adaptive beta and learning rate."""

import math
import threading

import gymnasium as gym
import numpy as np
import pytest
import torch
from test_trpo_graph import ACTION_SPACE, graph_rollout, graph_space

from agents.buffer import RolloutBuffer
from agents.gnn import GraphActorCritic
from agents.mlp import MLPActorCritic
from agents.ppo import PPO, PPOConfig, adapt_beta, adapt_learning_rate, approx_kl, clipped_surrogate_loss

torch.set_num_threads(1)


def setup(seed=0, T=16, N=4):
    torch.manual_seed(seed)
    box = lambda n: gym.spaces.Box(-1.0, 1.0, (n,), np.float32)  # noqa: E731
    model = MLPActorCritic(box(4), box(2), hidden_sizes=(16, 16))
    g = torch.Generator().manual_seed(seed)
    buffer = RolloutBuffer(T, N)
    for _ in range(T):
        obs = torch.randn(N, 4, generator=g)
        model.update_normalizer(obs)
        action, log_prob, value = model.act(obs)
        buffer.add(
            obs, action, log_prob, value, torch.randn(N, generator=g), torch.zeros(N), torch.zeros(N), torch.zeros(N)
        )
    buffer.finish(torch.zeros(N))
    return model, buffer


def test_clip_fraction_and_approx_kl_on_hand_example():
    ratio = torch.tensor([1.0, 1.5, 0.5, 1.1])
    advantages = torch.tensor([1.0, 1.0, -1.0, -2.0])
    loss, clip_fraction = clipped_surrogate_loss(ratio.log(), advantages, clip_coef=0.2)
    # r A = [1, 1.5, -0.5, -2.2]; clip(r) A = [1, 1.2, -0.8, -2.2]; min = [1, 1.2, -0.8, -2.2]
    assert loss.item() == pytest.approx(-(1 + 1.2 - 0.8 - 2.2) / 4)
    assert clip_fraction.item() == pytest.approx(0.5)  # |r - 1| > 0.2 for 1.5 and 0.5
    expected_kl = sum((r - 1) - math.log(r) for r in (1.0, 1.5, 0.5, 1.1)) / 4
    assert approx_kl(ratio.log()).item() == pytest.approx(expected_kl, rel=1e-5)
    loss, clip_fraction = clipped_surrogate_loss(ratio.log(), advantages, clip_coef=None)
    assert loss.item() == pytest.approx(-(1 + 1.5 - 0.5 - 2.2) / 4) and clip_fraction.item() == 0.0


def test_value_loss_on_hand_example():
    model, _ = setup()
    values, old_values = torch.tensor([2.0, 0.0, -4.0]), torch.zeros(3)
    returns = torch.tensor([3.0, 3.0, -3.0])
    # 0.5 mean((V - R)^2) = 0.5 (1 + 9 + 1) / 3
    ppo = PPO(model, PPOConfig(clip_value_loss=False))
    assert ppo._value_loss(values, old_values, returns).item() == pytest.approx(0.5 * 11 / 3)
    # Value clipping at 1 around V_old = 0: clipped V = [1, 0, -1], errors [4, 9, 4]; max with [1, 9, 1]
    ppo = PPO(model, PPOConfig(clip_value_loss=True, value_clip_coef=1.0))
    assert ppo._value_loss(values, old_values, returns).item() == pytest.approx(0.5 * 17 / 3)


def test_kl_early_stop_triggers_with_tiny_target_and_large_lr():
    model, buffer = setup()
    ppo = PPO(model, PPOConfig(learning_rate=0.1, num_epochs=10, minibatch_size=16, target_kl=1e-6))
    metrics = ppo.update(buffer, progress=0.0)
    # The first minibatch starts at KL = 0 (old log-probs recomputed), so exactly one step is taken.
    assert metrics["early_stopped"] == 1.0 and metrics["num_updates"] == 1
    assert metrics["approx_kl"] > 1.5e-6

    model, buffer = setup()
    metrics = PPO(model, PPOConfig(num_epochs=2, minibatch_size=16)).update(buffer)
    assert metrics["early_stopped"] == 0.0 and metrics["num_updates"] == 2 * 64 // 16


def test_kl_rollback_undoes_the_step_that_crossed_the_limit():
    """One step at a huge lr overshoots the limit: with kl_rollback the actor ends where it started (its
    KL over the rollout 0), the critic keeps its step; without it the actor keeps the overshooting step."""
    config = dict(learning_rate=0.1, num_epochs=10, minibatch_size=16, target_kl=1e-6)
    for rollback in (True, False):
        model, buffer = setup()
        actor_before = [p.detach().clone() for p in model.actor_parameters()]
        critic_before = [p.detach().clone() for p in model.critic_parameters()]
        metrics = PPO(model, PPOConfig(**config, kl_rollback=rollback)).update(buffer)
        actor_unchanged = all(torch.equal(a, b) for a, b in zip(actor_before, model.actor_parameters()))
        assert actor_unchanged == rollback and metrics.get("rolled_back") == (1.0 if rollback else None)
        assert metrics["num_updates"] == (0 if rollback else 1) and metrics["early_stopped"] == 1.0
        assert (metrics["approx_kl"] == 0.0) == rollback
        assert not all(torch.equal(a, b) for a, b in zip(critic_before, model.critic_parameters()))


def test_kl_rollback_needs_the_early_stop():
    with pytest.raises(ValueError, match="kl_rollback needs target_kl and kl_early_stop"):
        PPO(setup()[0], PPOConfig(kl_rollback=True))
    with pytest.raises(ValueError, match="kl_rollback needs target_kl and kl_early_stop"):
        PPO(setup()[0], PPOConfig(kl_rollback=True, target_kl=0.01, kl_early_stop=False))


def test_adaptive_beta_and_learning_rate_rules():
    assert adapt_beta(1.0, kl=0.02, target_kl=0.01) == 2.0
    assert adapt_beta(1.0, kl=0.005, target_kl=0.01) == 0.5
    assert adapt_beta(1.0, kl=0.012, target_kl=0.01) == 1.0
    assert adapt_learning_rate(1e-3, kl=0.03, target_kl=0.01, min_lr=1e-6, max_lr=1e-2) == pytest.approx(1e-3 / 1.5)
    assert adapt_learning_rate(1e-3, kl=0.001, target_kl=0.01, min_lr=1e-6, max_lr=1e-2) == pytest.approx(1.5e-3)
    assert adapt_learning_rate(9e-3, kl=0.001, target_kl=0.01, min_lr=1e-6, max_lr=1e-2) == 1e-2


def test_adaptive_beta_moves_in_the_right_direction_during_updates():
    model, buffer = setup()
    big_steps = PPO(
        model,
        PPOConfig(
            learning_rate=0.05,
            num_epochs=4,
            minibatch_size=16,
            target_kl=1e-5,
            kl_early_stop=False,
            kl_penalty=True,
            init_beta=1.0,
        ),
    )
    metrics = big_steps.update(buffer)
    assert metrics["approx_kl"] > 1.5e-5 and big_steps.beta == 2.0

    model, buffer = setup()
    tiny_steps = PPO(
        model,
        PPOConfig(
            learning_rate=1e-6,
            num_epochs=1,
            minibatch_size=64,
            target_kl=0.01,
            kl_penalty=True,
            kl_adaptive_lr=True,
            init_beta=1.0,
        ),
    )
    metrics = tiny_steps.update(buffer)
    assert metrics["approx_kl"] < 0.01 / 2 and tiny_steps.beta == 0.5
    assert tiny_steps.learning_rate == pytest.approx(1.5e-6) and metrics["learning_rate"] == pytest.approx(1e-6)


def test_lr_annealing_state_dict_and_config_validation():
    model, buffer = setup()
    ppo = PPO(
        model,
        PPOConfig(
            learning_rate=1e-3,
            anneal_lr=True,
            num_epochs=1,
            num_minibatches=4,
            minibatch_size=None,
            kl_penalty=True,
            target_kl=0.01,
        ),
    )
    metrics = ppo.update(buffer, progress=0.75)
    assert metrics["learning_rate"] == pytest.approx(2.5e-4) and metrics["num_updates"] == 4
    other = PPO(model, PPOConfig(learning_rate=1e-3, kl_penalty=True, target_kl=0.01))
    other.load_state_dict(ppo.state_dict())
    assert other.beta == ppo.beta and other.learning_rate == ppo.learning_rate
    assert other.optimizer.state_dict()["state"].keys() == ppo.optimizer.state_dict()["state"].keys()
    with pytest.raises(ValueError, match="exactly one"):
        PPO(model, PPOConfig(minibatch_size=64, num_minibatches=4))
    with pytest.raises(ValueError, match="target_kl"):
        PPO(model, PPOConfig(kl_penalty=True))
    with pytest.raises(ValueError, match="progress"):
        ppo.update(buffer, progress=1.5)


def test_clip_grad_norm_matches_torch():
    from agents.gradients import clip_grad_norm

    torch.manual_seed(0)
    for scale in (0.01, 10.0):  # below and above the limit
        params = [torch.nn.Parameter(torch.randn(5, 3)), torch.nn.Parameter(torch.randn(3))]
        reference = [torch.nn.Parameter(p.detach().clone()) for p in params]
        for p, r in zip(params, reference):
            p.grad = scale * torch.randn_like(p)
            r.grad = p.grad.clone()
        norm = clip_grad_norm(params, 0.5)
        expected = torch.nn.utils.clip_grad_norm_(reference, 0.5)
        torch.testing.assert_close(norm, expected)
        for p, r in zip(params, reference):
            torch.testing.assert_close(p.grad, r.grad)


def graph_setup(shared_encoder=False):
    torch.manual_seed(0)
    model = GraphActorCritic(graph_space(), ACTION_SPACE, hidden_dim=16, num_layers=1, shared_encoder=shared_encoder)
    return model, graph_rollout(model)


@pytest.mark.parametrize("kind", ["mlp", "graph"])
def test_parallel_critic_update_equals_the_sequential_one(kind):
    """The actor and critic steps in two threads give the summed loss's update (same metrics too)."""
    results = []
    for parallel in (True, False):
        model, buffer = setup() if kind == "mlp" else graph_setup()
        ppo = PPO(model, PPOConfig(num_epochs=2, minibatch_size=16, target_kl=0.05, parallel_critic=parallel))
        assert (ppo._critic_thread is not None) == parallel
        metrics = ppo.update(buffer)
        results.append((metrics, [p.detach().clone() for p in model.parameters()]))
    (par_metrics, par_params), (seq_metrics, seq_params) = results
    assert par_metrics == pytest.approx(seq_metrics, rel=1e-6, abs=1e-7)
    for a, b in zip(par_params, seq_params):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("shared_encoder", [False, True])
def test_parallel_critic_runs_the_critic_in_another_thread_unless_the_encoder_is_shared(shared_encoder):
    model, buffer = graph_setup(shared_encoder=shared_encoder)
    threads = set()  # for each value computation: did it run in the main thread?
    for name in ("value", "distribution_and_value"):
        original = getattr(model, name)

        def record(obs, _original=original):
            threads.add(threading.current_thread() is threading.main_thread())
            return _original(obs)

        setattr(model, name, record)
    PPO(model, PPOConfig(num_epochs=1, minibatch_size=32)).update(buffer)
    assert threads == ({True} if shared_encoder else {False})


def test_a_rolled_back_update_lowers_the_kl_adaptive_learning_rate():
    """The undone step's KL, not the KL of 0 left after undoing it, drives the adaptation."""
    model, buffer = setup()
    config = PPOConfig(learning_rate=0.01, minibatch_size=16, target_kl=1e-6, kl_rollback=True, kl_adaptive_lr=True)
    ppo = PPO(model, config)
    metrics = ppo.update(buffer)
    assert metrics["rolled_back"] == 1.0 and metrics["approx_kl"] == 0.0
    assert ppo.learning_rate == pytest.approx(0.01 / 1.5)
