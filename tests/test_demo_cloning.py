"""Demonstration cloning (agents/demo_cloning.py): the loss, its weight schedule, PPO with the term, config
errors, and training end to end with a resume."""

import math

import gymnasium as gym
import numpy as np
import pytest
import torch
from test_packed_curriculum import PACKED as PACKED_SMOKE
from train_config import PENDULUM, compose_train

from agents import checkpoint as ckpt
from agents.buffer import RolloutBuffer
from agents.config import validate_train_config
from agents.demo_cloning import DemoCloning, cloning_loss
from agents.mlp import MLPActorCritic
from agents.ppo import PPO, PPOConfig
from agents.trainer import train

pytestmark = pytest.mark.usefixtures("single_thread")

# Full-length packed episodes (the scripted demonstrations need them), two demonstrations.
PACKED = [
    *(o for o in PACKED_SMOKE if not o.startswith(("env.max_episode_steps=", "total_steps="))),
    "demo_cloning.weight=0.5",
    "demo_cloning.demonstrations=2",
    "demo_cloning.batch_size=16",
    "demo_cloning.pretrain_steps=5",
]


def tiny_model(seed=0, log_std=-1.0):
    torch.manual_seed(seed)
    obs_space = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)
    action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    return MLPActorCritic(obs_space, action_space, hidden_sizes=[8], init_log_std=log_std)


def test_cloning_loss_is_the_gaussian_nll_with_the_std_held_fixed():
    model = tiny_model()
    obs = torch.tensor([[0.1, -0.2, 0.3], [0.0, 0.5, -0.5]])
    actions = torch.tensor([[0.4, -0.1], [-0.3, 0.2]])
    loss = cloning_loss(model, obs, actions)
    with torch.no_grad():
        mean, std = model.distribution(obs).mean, math.exp(-1.0)
    by_hand = (0.5 * ((actions - mean) / std) ** 2 + math.log(std) + 0.5 * math.log(2 * math.pi)).sum(-1).mean()
    assert loss.item() == pytest.approx(by_hand.item(), rel=1e-6)
    loss.backward()
    assert model.action_head.log_std.grad is None or torch.all(model.action_head.log_std.grad == 0)
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.actor_parameters())


def fill_buffer(model, steps=16, seed=0):
    """A rollout of random observations and the model's own actions, zero rewards."""
    rng = np.random.default_rng(seed)
    buffer = RolloutBuffer(steps, 1, 0.99, 0.95)
    for _ in range(steps):
        obs = torch.as_tensor(rng.uniform(-1, 1, (1, 3)), dtype=torch.float32)
        action, log_prob, value = model.act(obs)
        buffer.add(obs, action, log_prob, value, np.zeros(1), np.zeros(1, bool), np.zeros(1, bool), np.zeros(1))
    buffer.finish(torch.zeros(1))
    return buffer


def distance_to_demo(model, obs, actions):
    with torch.no_grad():
        return (model.distribution(obs).mean - actions).norm(dim=-1).mean().item()


def test_ppo_with_the_term_moves_the_policy_toward_the_demonstrated_actions():
    demo_obs = torch.tensor([[0.5, 0.5, 0.5], [-0.5, 0.2, 0.1]])
    demo_actions = torch.tensor([[0.9, -0.9], [-0.9, 0.9]])
    config = PPOConfig(minibatch_size=16, num_epochs=5, target_kl=None, learning_rate=1e-2)
    results = {}
    for term in (False, True):
        model = tiny_model()
        ppo = PPO(model, config)
        if term:
            ppo.auxiliary_actor_loss = lambda m: 1.0 * cloning_loss(m, demo_obs, demo_actions)
        before = distance_to_demo(model, demo_obs, demo_actions)
        for update in range(5):
            ppo.update(fill_buffer(model, seed=update))
        results[term] = distance_to_demo(model, demo_obs, demo_actions)
    assert results[True] < 0.5 * before  # cloned ...
    assert results[False] > 0.8 * before  # ... and without the term, zero rewards teach nothing of the kind


@pytest.mark.parametrize(
    "override, message",
    [
        ("demo_cloning.weight=-0.1", "demo_cloning.weight must be a finite number >= 0"),
        ("demo_cloning.weight=nan", "demo_cloning.weight must be a finite number >= 0"),
        ("demo_cloning.decay=0", r"demo_cloning.decay must be in \(0, 1\]"),
        ("demo_cloning.decay=1.5", r"demo_cloning.decay must be in \(0, 1\]"),
        ("demo_cloning.demonstrations=0", "demo_cloning.demonstrations must be >= 1"),
        ("demo_cloning.batch_size=0", "demo_cloning.batch_size must be >= 1"),
        ("demo_cloning.pretrain_steps=-1", "demo_cloning.pretrain_steps must be >= 0"),
        ("demo_cloning.pretrain_learning_rate=0", "demo_cloning.pretrain_learning_rate must be > 0"),
        ("agent=trpo", "demo_cloning.weight > 0 needs agent=ppo"),
    ],
)
def test_bad_demo_cloning_config_names_the_field(override, message):
    base = [o for o in PACKED if not o.startswith("agent.")]  # TRPO has no num_epochs
    with pytest.raises(ValueError, match=message):
        validate_train_config(compose_train([*base, override]))


def test_an_env_without_a_demonstrator_is_refused():
    with pytest.raises(ValueError, match="needs a scripted demonstrator, which env=gym does not define"):
        validate_train_config(compose_train([*PENDULUM, "demo_cloning.weight=0.1"]))


def stub_trainer(updates, model=None):
    """What ``DemoCloning.after_build`` reads of a trainer."""
    model = model or tiny_model()
    return type("Stub", (), {"model": model, "algorithm": PPO(model), "state": type("S", (), {"updates": updates})()})


def graph_model(cfg):
    from agents.registry import build_model
    from agents.training_envs import env_kwargs

    env = gym.make(cfg.env.id, **env_kwargs(cfg.env))

    return build_model(cfg.model, env.observation_space, env.action_space)


def test_a_fresh_run_pretrains_the_actor_on_the_demonstrations_first():
    cfg = compose_train([*PACKED, "demo_cloning.pretrain_steps=200", "demo_cloning.batch_size=64"])
    model = graph_model(cfg)
    critic_before = [p.detach().clone() for p in model.critic_parameters()]
    plugin = DemoCloning(cfg.demo_cloning, cfg)
    plugin.after_build(stub_trainer(updates=0, model=model))
    untrained = graph_model(cfg)
    untrained.update_normalizer(plugin.observations)
    with torch.no_grad():  # squared error of the mean action: the NLL's part that cloning can lower
        fitted, before = (
            (m.distribution(plugin.observations).mean - plugin.actions).square().mean().item()
            for m in (model, untrained)
        )
    assert fitted < 0.2 * before
    assert all(torch.equal(a, b) for a, b in zip(critic_before, model.critic_parameters()))  # the actor alone


def test_weight_decays_per_update_and_the_demonstrations_are_the_scripted_ones():
    cfg = compose_train([*PACKED, "demo_cloning.decay=0.5"])
    plugin = DemoCloning(cfg.demo_cloning, cfg)

    Stub = stub_trainer(updates=3)  # a resumed run: no pretraining
    plugin.after_build(Stub)
    assert plugin.pretrain_loss != plugin.pretrain_loss  # nan
    assert plugin.weight == pytest.approx(0.5 * 0.5**3)
    Stub.state.updates = 4
    plugin.after_collect(Stub, {})
    assert plugin.weight == pytest.approx(0.5 * 0.5**4)
    assert Stub.algorithm.auxiliary_actor_loss == plugin.loss
    assert plugin.episodes == 2 and plugin.failed == 0
    assert len(plugin.actions) == len(plugin.observations["nodes"]) > 10  # one pair per scripted step
    assert torch.all(plugin.actions.abs() <= 1.0)


def test_training_with_demo_cloning_logs_it_and_resumes_its_draws(tmp_path):
    overrides = [*PACKED, "total_steps=128", "checkpoint_every=1"]
    result = train(compose_train(overrides), tmp_path / "run")
    assert result.global_step == 128
    header, *rows = (tmp_path / "run" / "metrics.csv").read_text().splitlines()
    columns = header.split(",")
    for key in ("demo_cloning/weight", "demo_cloning/nll", "demo_cloning/pairs"):
        assert key in columns
    weights = [float(row.split(",")[columns.index("demo_cloning/weight")]) for row in rows]
    assert weights == pytest.approx([0.5 * 0.99**k for k in range(len(rows))])
    saved = ckpt.load_checkpoint(tmp_path / "run" / "checkpoints" / "latest.pt")
    assert "rng" in saved["trainer"]["plugins"]["demo_cloning"]


def test_a_restored_plugin_draws_the_same_next_minibatches():
    cfg = compose_train(PACKED)
    first, second = DemoCloning(cfg.demo_cloning, cfg), DemoCloning(cfg.demo_cloning, cfg)
    first.rng.integers(100, size=50)  # some draws before the checkpoint
    second.load_state_dict(first.state_dict())
    assert np.array_equal(first.rng.integers(1000, size=20), second.rng.integers(1000, size=20))


def test_no_plugin_at_weight_zero():
    from agents.registry import build_plugins

    assert [type(p).__name__ for p in build_plugins(compose_train(PACKED))] == ["DemoCloning"]
    assert build_plugins(compose_train([*PACKED, "demo_cloning.weight=0"])) == []


@pytest.mark.parametrize("keep", [True, False])
def test_keep_demo_statistics_keeps_the_observation_statistics_of_the_demonstrations(tmp_path, keep):
    overrides = [*PACKED, "total_steps=128", f"demo_cloning.keep_demo_statistics={keep}"]
    cfg = compose_train(overrides)
    train(cfg, tmp_path / "run")
    trained = ckpt.load_checkpoint(tmp_path / "run" / "checkpoints" / "latest.pt")["model"]
    plugin = DemoCloning(cfg.demo_cloning, cfg)
    plugin.after_build(stub_trainer(updates=3))  # records the run's demonstrations again
    demos_only = graph_model(cfg)
    demos_only.update_normalizer(plugin.observations)
    statistics = {k: v for k, v in demos_only.state_dict().items() if k.startswith("obs_normalizer.")}
    assert statistics and all(k in trained for k in statistics)
    same = all(torch.equal(trained[k], v) for k, v in statistics.items())
    assert same == keep  # merged with the rollouts, the counts and means move
