"""Config mistakes end in one ``Error:`` line naming the key and the allowed values, before any env starts.

Each mistake runs through the real ``scripts/train.py`` (or ``scripts/evaluate.py``) as a new user
would: exit status 1, no traceback, and no ``checkpoints/`` or ``metrics.csv`` in the run directory
(the trainer writes them once the envs run). The same checks raise ``ValueError`` in process, from
``Trainer(cfg, ...)``, since they live in ``agents.config.validate_train_config``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from test_ppo import setup as ppo_setup
from test_train_pipeline import EVALUATE, TRAIN, run
from train_config import PENDULUM, compose_train

from agents.ppo import PPO, PPOConfig
from agents.trainer import Trainer

QUIET = ["logger.wandb.mode=disabled"]
PEG = ["env=peg_insertion", "env.kwargs.robot=floating", "num_envs=2", "rollout_steps=32", "progress_bar=false"]

# (base config, mistake, the key the message names, the allowed values it names)
MISTAKES = [
    pytest.param(PENDULUM, ["agent.minibatch_size=512"], "agent.minibatch_size=512", "allowed: 1..128", id="minibatch"),
    pytest.param(
        PENDULUM,
        ["agent.minibatch_size=null", "agent.num_minibatches=1000"],
        "agent.num_minibatches=1000",
        "allowed: 1..128",
        id="num_minibatches",
    ),
    pytest.param(
        PENDULUM,
        ["agent=trpo", "agent.critic_minibatch_size=1000"],
        "agent.critic_minibatch_size=1000",
        "allowed: 1..128",
        id="critic_minibatch",
    ),
    pytest.param(PEG, ["info_keys=[]"], "info_keys=[]", "info_keys=null", id="info_keys-empty"),
    pytest.param(PEG, ["info_keys=[start_id]"], "info_keys=[start_id]", "is_success", id="info_keys-no-success"),
    pytest.param(PENDULUM, ["device=cuda:7"], "device=cuda:7", "available: cpu", id="device"),
    pytest.param(PENDULUM, ["seed=-1"], "seed=-1", "allowed: 0..4294967295", id="seed"),
    pytest.param(PENDULUM, ["eval.seed=-1"], "eval.seed=-1", "allowed: 0..4294967295", id="eval-seed"),
    pytest.param(PEG, ["model=mlp"], "env.kwargs.obs_mode=graph", "model=gnn, or env.kwargs.obs_mode=flat", id="mlp"),
    pytest.param(
        PEG,
        ["env.kwargs.obs_mode=flat"],  # the default model is the gnn
        "env.kwargs.obs_mode=flat",
        "model=mlp, or env.kwargs.obs_mode=graph",
        id="gnn-on-flat",
    ),
    pytest.param(
        PENDULUM, ["env.max_episode_steps=0"], "env.max_episode_steps=0", "allowed: an integer >= 1", id="episode_steps"
    ),
]


def assert_one_error_line(proc, key: str, allowed: str) -> str:
    """The process failed with a last stderr line ``Error: ...`` naming ``key`` and ``allowed``, no traceback."""
    last = proc.stderr.strip().splitlines()[-1]
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert last.startswith("Error:") and key in last and allowed in last, last
    return last


def assert_nothing_trained(run_dir: Path) -> None:
    assert not (run_dir / "checkpoints").exists() and not (run_dir / "metrics.csv").exists()


@pytest.mark.parametrize("base, mistake, key, allowed", MISTAKES)
def test_a_config_mistake_is_one_error_line_before_any_env_starts(tmp_path, base, mistake, key, allowed):
    run_dir = tmp_path / "run"
    # The timeout only guards against a hang: that no env started is what assert_nothing_trained checks.
    proc = run(TRAIN, [*base, *QUIET, *mistake, f"hydra.run.dir={run_dir}"], tmp_path, expect_ok=False)
    assert_one_error_line(proc, key, allowed)
    assert_nothing_trained(run_dir)


@pytest.mark.parametrize("base, mistake, key, allowed", MISTAKES)
def test_the_trainer_raises_the_same_error_in_process(tmp_path, base, mistake, key, allowed):
    with pytest.raises(ValueError) as error:
        Trainer(compose_train([*base, *QUIET, *mistake]), tmp_path / "run")
    assert key in str(error.value) and allowed in str(error.value)
    assert_nothing_trained(tmp_path / "run")


def test_the_default_minibatch_is_256_or_the_whole_batch_when_smaller():
    assert compose_train([]).agent.minibatch_size == 256  # batch 4 * 256
    assert compose_train(PENDULUM).agent.minibatch_size == 128  # batch 2 * 64
    assert compose_train([*PENDULUM, "agent=trpo"]).agent.critic_minibatch_size == 128
    assert compose_train([*PENDULUM, "agent.minibatch_size=100"]).agent.minibatch_size == 100


def test_ppo_refuses_minibatches_the_batch_cannot_fill():
    for config, message in (
        (PPOConfig(minibatch_size=65), "minibatch_size=65 is larger than the batch"),
        (PPOConfig(minibatch_size=None, num_minibatches=65), "num_minibatches=65 is larger than the batch"),
    ):
        model, buffer = ppo_setup()  # a batch of 16 * 4 = 64 samples
        with pytest.raises(ValueError, match=message):
            PPO(model, config).update(buffer)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    """A tiny finished Pendulum run (one update, checkpoints written)."""
    run_dir = tmp_path_factory.mktemp("finished") / "run"
    run(TRAIN, [*PENDULUM, *QUIET, "total_steps=128", f"hydra.run.dir={run_dir}"], run_dir.parent)
    return run_dir


def test_a_forbidden_change_on_resume_is_one_error_line_and_leaves_the_run_alone(finished_run):
    latest, metrics = finished_run / "checkpoints" / "latest.pt", finished_run / "metrics.csv"
    before = latest.read_bytes(), metrics.read_text()
    proc = run(TRAIN, [f"resume={finished_run}", "agent.learning_rate=1.0"], finished_run.parent, expect_ok=False)
    last = assert_one_error_line(proc, "'agent.learning_rate'", "allowed overrides: ['total_steps'")
    assert "'agent.learning_rate' cannot be changed when resuming" in last
    assert (latest.read_bytes(), metrics.read_text()) == before


@pytest.mark.parametrize(
    "mistake, key, allowed",
    [
        (["device=cuda:7"], "device=cuda:7", "available: cpu"),
        (["seed=-1"], "seed=-1", "allowed: 0..4294967295"),
        (["env.max_episode_steps=0"], "env.max_episode_steps=0", "allowed: an integer >= 1"),
        (["torch_threads=0"], "torch_threads", "must be >= 1"),
    ],
)
def test_evaluate_reports_a_config_mistake_in_one_line(finished_run, mistake, key, allowed):
    proc = run(EVALUATE, [f"checkpoint={finished_run}", "episodes=1", *mistake], finished_run.parent, expect_ok=False)
    assert_one_error_line(proc, key, allowed)
    assert not (finished_run / "eval").exists()


def test_evaluate_acts_with_the_configured_number_of_threads(finished_run, tmp_path):
    import importlib.util

    import torch

    spec = importlib.util.spec_from_file_location("evaluate_script", Path(EVALUATE))
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    before = torch.get_num_threads()
    try:
        for threads in (1, 2):
            torch.set_num_threads(3)
            script.evaluate(
                [f"checkpoint={finished_run}", "episodes=1", f"torch_threads={threads}", f"output={tmp_path}/r.json"]
            )
            assert torch.get_num_threads() == threads
    finally:
        torch.set_num_threads(before)


def test_evaluate_reports_a_truncated_checkpoint_in_one_line(finished_run, tmp_path):
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes((finished_run / "checkpoints" / "latest.pt").read_bytes()[:1000])
    proc = run(EVALUATE, [f"checkpoint={truncated}"], tmp_path, expect_ok=False)
    assert_one_error_line(proc, "truncated.pt", "corrupt, truncated")
