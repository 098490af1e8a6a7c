"""End-to-end training pipeline: Hydra configs, scripts/train.py, checkpoints, resume, scripts/evaluate.py.

The scripts run as subprocesses with tiny budgets, in a temporary directory,
with wandb in its default offline mode and every proxy pointed at a closed
local port, so nothing can reach the network.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from train_config import PENDULUM, compose_train

from agents import checkpoint as ckpt
from agents.config import register_configs, validate_train_config
from agents.logger import Logger
from agents.mlp import MLPActorCritic
from agents.ppo import PPO, PPOConfig
from agents.registry import build_model

ROOT = Path(__file__).resolve().parents[1]
TRAIN = str(ROOT / "scripts" / "train.py")
EVALUATE = str(ROOT / "scripts" / "evaluate.py")
CONFIGS = str(ROOT / "configs")
HAS_PEG_ENV = (ROOT / "envs" / "peg_insertion.py").exists()
needs_peg_env = pytest.mark.skipif(not HAS_PEG_ENV, reason="envs/peg_insertion.py not written yet")

FEW_EPOCHS = {"ppo": "agent.num_epochs=2", "trpo": "agent.critic_epochs=2"}
PEG = [
    "env=peg_insertion",
    "env.kwargs.robot=floating",
    "env.max_episode_steps=16",
    "num_envs=2",
    "rollout_steps=32",
    "total_steps=128",
    "agent.num_epochs=1",
    "progress_bar=false",
]


def offline_env() -> dict:
    env = dict(
        os.environ,
        WANDB_SILENT="true",
        HTTP_PROXY="http://127.0.0.1:9",
        HTTPS_PROXY="http://127.0.0.1:9",
        http_proxy="http://127.0.0.1:9",
        https_proxy="http://127.0.0.1:9",
        WANDB_BASE_URL="http://127.0.0.1:9",
    )
    for key in ("WANDB_MODE", "NO_PROXY", "no_proxy", "WANDB_API_KEY"):
        env.pop(key, None)
    return env


def run(script: str, args: list, cwd: Path, expect_ok: bool = True, timeout: float = 180):
    proc = subprocess.run(
        [sys.executable, script, *args], cwd=cwd, env=offline_env(), capture_output=True, text=True, timeout=timeout
    )
    if expect_ok and proc.returncode != 0:
        raise AssertionError(
            f"{script} {args} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        )
    return proc


def train(run_dir: Path, *args: str) -> subprocess.CompletedProcess:
    return run(TRAIN, [*args, f"hydra.run.dir={run_dir}"], run_dir.parent)


def evaluate(cwd: Path, *args: str) -> dict:
    proc = run(EVALUATE, list(args), cwd)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def metrics(run_dir: Path) -> list:
    """metrics.csv rows without the wall-clock columns."""
    with open(run_dir / "metrics.csv", newline="") as f:
        return [{k: v for k, v in row.items() if not k.startswith("time/")} for row in csv.DictReader(f)]


def load(run_dir: Path, name: str = ckpt.LATEST) -> dict:
    return ckpt.load_checkpoint(run_dir / "checkpoints" / name)


# ------------------------------------------------------------------ configs


def error_text(error: BaseException) -> str:
    """The message of an exception and of its causes (Hydra puts the details in the cause, as its CLI shows)."""
    parts = []
    while error is not None:
        parts.append(str(error))
        error = error.__cause__ or error.__context__
    return "\n".join(parts)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["agent.lerning_rate=0.1"], "Key 'lerning_rate' not in 'PPOAgentConfig'"),
        (["env.kwargs.clearence=0.001"], "Key 'clearence' not in 'PegInsertionConfig'"),
        (["sed=1"], "Key 'sed' not in 'TrainConfig'"),
        (["agent.learning_rate=fast"], "Value 'fast' of type 'str' could not be converted to Float"),
        (["num_envs=two"], "Value 'two' of type 'str' could not be converted to Integer"),
        (["agent=sac"], "Could not find 'agent/sac'"),
        (["model=transformer"], "Could not find 'model/transformer'"),
    ],
)
def test_config_errors_name_the_problem(overrides, message):
    with pytest.raises(Exception) as error:
        compose_train(overrides)
    assert message in error_text(error.value)


def test_unknown_group_option_lists_only_real_options():
    with pytest.raises(Exception) as error:
        compose_train(["agent=sac"])
    options = error_text(error.value).split("Available options in 'agent':")[1].split("Config search path")[0]
    assert options.split() == ["ppo", "trpo"]


def test_misspelled_key_in_a_yaml_file_fails(tmp_path):
    (tmp_path / "agent").mkdir()
    (tmp_path / "agent" / "typo.yaml").write_text(
        "defaults:\n  - /schema/agent/ppo@_here_\n  - _self_\nlerning_rate: 0.001\n"
    )
    register_configs()
    with initialize_config_dir(config_dir=CONFIGS, version_base="1.3"):
        with pytest.raises(Exception) as error:
            compose(config_name="train", overrides=["agent=typo", f"hydra.searchpath=[file://{tmp_path}]"])
    assert "Key 'lerning_rate' not in 'PPOAgentConfig'" in error_text(error.value)


def test_semantic_validation_names_the_key():
    cfg = compose_train(["env.kwargs.robot=ur5"])
    with pytest.raises(ValueError, match=r"env.kwargs: robot='ur5' is not one of"):
        validate_train_config(cfg)
    cfg = compose_train(["logger.wandb.mode=sometimes"])
    with pytest.raises(ValueError, match=r"logger.wandb.mode='sometimes'"):
        validate_train_config(cfg)
    cfg = compose_train(["agent.minibatch_size=null"])
    with pytest.raises(ValueError, match=r"agent: set exactly one of minibatch_size and num_minibatches"):
        validate_train_config(cfg)


def test_default_config_composes_and_validates():
    for overrides in ([], ["agent=trpo"], ["env=gym", "env.id=Pendulum-v1", "model=mlp"]):
        cfg = compose_train(overrides)
        validate_train_config(cfg)
    assert cfg.logger.wandb.mode == "offline"


def test_cli_bad_key_fails_before_creating_a_run_dir(tmp_path):
    proc = run(TRAIN, ["agent.lerning_rate=0.1"], tmp_path, expect_ok=False)
    assert proc.returncode != 0
    assert "Key 'lerning_rate' not in 'PPOAgentConfig'" in proc.stderr
    assert not (tmp_path / "outputs").exists()


def test_model_must_match_the_observation_space():
    box = gym.spaces.Box(-1, 1, (3,), np.float32)
    actions = gym.spaces.Box(-1, 1, (2,), np.float32)
    graph = gym.spaces.Dict(
        {
            "nodes": gym.spaces.Box(-np.inf, np.inf, (2, 4), np.float32),
            "node_mask": gym.spaces.Box(0, 1, (2,), np.float32),
            "edge_index": gym.spaces.Box(0, 1, (2, 2), np.int64),
            "edge_attr": gym.spaces.Box(-np.inf, np.inf, (2, 3), np.float32),
            "edge_mask": gym.spaces.Box(0, 1, (2,), np.float32),
        }
    )
    with pytest.raises(ValueError, match="model=gnn needs graph"):
        build_model(compose_train(["model=gnn"]).model, box, actions)
    with pytest.raises(ValueError, match="model=mlp needs flat"):
        build_model(compose_train(["model=mlp"]).model, graph, actions)


# -------------------------------------------------------- checkpoint, logger


def _pendulum_model(hidden=(16, 16)):
    env = gym.make("Pendulum-v1")
    model = MLPActorCritic(env.observation_space, env.action_space, hidden_sizes=list(hidden))
    return model, env.observation_space, env.action_space


@pytest.mark.parametrize("agent", ["ppo", "trpo"])
def test_each_update_sees_the_observation_statistics_that_acted(tmp_path, monkeypatch, agent):
    """The trainer merges a rollout into the normaliser after its update, never before.

    Merging first would make the update's "old" policy a different function
    from the one that collected the data: its log-probs would no longer match
    the stored ones once the statistics moved.
    """
    import agents.trainer as trainer
    from agents.ppo import PPO
    from agents.trpo import TRPO

    seen = []
    algorithm_class = PPO if agent == "ppo" else TRPO
    original_update = algorithm_class.update

    def spying_update(self, buffer, progress=0.0):
        batch = buffer.full_batch()
        with torch.no_grad():
            log_probs = self.model.distribution(batch.obs).log_prob(batch.actions)
        seen.append((float(self.model.obs_normalizer.obs.count), float((log_probs - batch.log_probs).abs().max())))
        return original_update(self, buffer, progress)

    monkeypatch.setattr(algorithm_class, "update", spying_update)
    cfg = compose_train(
        [*PENDULUM, f"agent={agent}", "total_steps=512", "async_envs=false", "logger.wandb.mode=disabled"]
    )
    trainer.train(cfg, tmp_path / "run")
    assert [count for count, _ in seen] == [0.0, 128.0, 256.0, 384.0]  # rollouts merged before update k: k - 1
    assert max(gap for _, gap in seen) < 1e-4  # the stored log-probs are the acting policy's, under these stats


def test_reward_scaling_changes_what_the_update_sees_but_not_the_logged_returns(tmp_path, monkeypatch):
    import agents.trainer as trainer
    from agents.ppo import PPO

    rewards = []
    original_update = PPO.update

    def spying_update(self, buffer, progress=0.0):
        rewards.append(buffer.rewards.clone())
        return original_update(self, buffer, progress)

    monkeypatch.setattr(PPO, "update", spying_update)
    common = [*PENDULUM, "total_steps=128", "async_envs=false", "logger.wandb.mode=disabled"]
    trainer.train(compose_train(common), tmp_path / "raw")
    trainer.train(compose_train([*common, "normalize_rewards=true"]), tmp_path / "scaled")
    raw, scaled = rewards
    # Same seed, same first policy: the same transitions, with each reward divided by the running std
    # of the discounted return at its step (gymnasium's NormalizeReward; its statistics saved with the run).
    assert torch.all(scaled / raw > 0)
    assert metrics(tmp_path / "scaled")[0]["rollout/return_mean"] == metrics(tmp_path / "raw")[0]["rollout/return_mean"]
    saved = load(tmp_path / "scaled")["trainer"]["reward_statistics"]
    assert saved["count"] == pytest.approx(128, abs=0.01)  # 64 steps x 2 envs
    # The last step was scaled by the statistics as they were saved.
    torch.testing.assert_close(scaled[-1], raw[-1] / float(np.sqrt(saved["var"] + 1e-8)))
    assert saved["var"] > 100.0  # Pendulum's discounted returns spread over hundreds: the rewards shrink
    assert load(tmp_path / "raw")["trainer"]["reward_statistics"] is None


def test_checkpoint_round_trip_gives_identical_actions(tmp_path):
    torch.manual_seed(0)
    model, obs_space, action_space = _pendulum_model()
    model.update_normalizer(torch.randn(256, 3) * 3 + 1)  # non-trivial normaliser buffers
    algorithm = PPO(model, PPOConfig())
    path = ckpt.save_checkpoint(
        tmp_path / "checkpoints" / "latest.pt",
        model=model,
        algorithm=algorithm,
        global_step=1234,
        updates=7,
        best_metric=0.5,
        run_id="abc",
        config={"seed": 0},
        observation_space=obs_space,
        action_space=action_space,
        trainer={"x": [1, 2]},
    )
    assert [p.name for p in path.parent.iterdir()] == ["latest.pt"]  # no temporary file left behind

    loaded = ckpt.load_checkpoint(path)
    assert (loaded["global_step"], loaded["updates"], loaded["run_id"]) == (1234, 7, "abc")
    fresh, _, _ = _pendulum_model()
    ckpt.check_spaces(loaded, obs_space, action_space, path)
    ckpt.load_model_state(fresh, loaded, path)
    PPO(fresh, PPOConfig()).load_state_dict(loaded["algorithm"])
    obs = torch.randn(32, 3) * 4
    for deterministic in (True, False):
        torch.manual_seed(1)
        a, logp, v = model.act(obs, deterministic=deterministic)
        torch.manual_seed(1)
        b, logq, w = fresh.act(obs, deterministic=deterministic)
        assert torch.equal(a, b) and torch.equal(logp, logq) and torch.equal(v, w)


def test_incompatible_checkpoints_fail_clearly(tmp_path):
    model, obs_space, action_space = _pendulum_model()
    path = ckpt.save_checkpoint(
        tmp_path / "c.pt",
        model=model,
        algorithm=PPO(model, PPOConfig()),
        global_step=0,
        updates=0,
        best_metric=None,
        run_id=None,
        config={},
        observation_space=obs_space,
        action_space=action_space,
    )
    loaded = ckpt.load_checkpoint(path)
    bigger, _, _ = _pendulum_model(hidden=(32, 32))
    with pytest.raises(ckpt.CheckpointError, match=rf"{path}.*does not match the model.*shape mismatches"):
        ckpt.load_model_state(bigger, loaded, path)
    with pytest.raises(ckpt.CheckpointError, match=r"incompatible with this env: its observation space"):
        ckpt.check_spaces(loaded, gym.spaces.Box(-1, 1, (5,), np.float32), action_space, path)
    with pytest.raises(ckpt.CheckpointError, match="checkpoint not found"):
        ckpt.load_checkpoint(tmp_path / "missing.pt")
    torch.save({**loaded, "format_version": 999}, tmp_path / "future.pt")
    with pytest.raises(ckpt.CheckpointError, match="format version 999"):
        ckpt.load_checkpoint(tmp_path / "future.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ckpt.CheckpointError, match="not a torch checkpoint file"):
        ckpt.load_checkpoint(tmp_path / "junk.pt")


def test_csv_logger_adds_columns_and_drops_rows_after_resume_step(tmp_path):
    wandb_off = {"mode": "disabled"}
    logger = Logger(tmp_path, wandb_off, {}, run_id="r")
    logger.log({"a": 1.0}, step=10)
    logger.log({"a": 2.0, "b": 3.0}, step=20)
    logger.log({"a": 4.0, "b": float("nan")}, step=30)
    logger.close()
    rows = list(csv.DictReader(open(tmp_path / "metrics.csv")))
    assert [r["global_step"] for r in rows] == ["10", "20", "30"]
    assert rows[0]["b"] == "" and rows[1]["b"] == "3.0"
    Logger(tmp_path, wandb_off, {}, run_id="r", resume_step=20).close()
    assert [r["global_step"] for r in csv.DictReader(open(tmp_path / "metrics.csv"))] == ["10", "20"]


# ------------------------------------------------------ end to end: Pendulum


@pytest.mark.parametrize("agent", ["ppo", "trpo"])
def test_train_and_evaluate_pendulum(tmp_path, agent):
    run_dir = tmp_path / "run"
    train(
        run_dir,
        *PENDULUM,
        f"agent={agent}",
        FEW_EPOCHS[agent],
        "total_steps=256",
        "checkpoint_every=1",
        "eval.every=1",
        "eval.episodes=1",
    )

    for path in (
        ".hydra/config.yaml",
        ".hydra/overrides.yaml",
        "checkpoints/latest.pt",
        "checkpoints/best.pt",
        "metrics.csv",
    ):
        assert (run_dir / path).is_file(), path
    assert list((run_dir / "tb").glob("events.out.tfevents.*"))
    latest = load(run_dir)
    assert (latest["global_step"], latest["updates"]) == (256, 2)
    assert latest["config"]["agent"]["name"] == agent
    rows = metrics(run_dir)
    assert [r["global_step"] for r in rows] == ["128", "256"]
    assert all(float(r["eval/return_mean"]) < 0 for r in rows) and rows[-1]["eval/success_rate"] == "nan"
    assert load(run_dir, ckpt.BEST)["trainer"]["best_metric_name"] == "return"  # Pendulum: no success info
    # wandb: offline by default, run files under <run dir>/wandb, named by the id stored in the checkpoint.
    assert list((run_dir / "wandb").glob(f"offline-run-*-{latest['run_id']}/run-{latest['run_id']}.wandb"))

    summary = evaluate(tmp_path, f"checkpoint={run_dir}", "episodes=3", "seed=5")
    assert summary["episodes"] == 3 and summary["success_rate"] is None  # Pendulum reports no success
    assert summary["checkpoint"].endswith("checkpoints/latest.pt")
    assert Path(summary["results"]).is_file() and Path(summary["results"]).is_relative_to(run_dir / "eval")
    again = evaluate(
        tmp_path,
        f"checkpoint={run_dir}/checkpoints/latest.pt",
        "episodes=3",
        "seed=5",
        f"output={tmp_path / 'eval.json'}",
    )
    assert again["mean_return"] == summary["mean_return"]  # same seed, frozen normaliser: same episodes
    assert json.loads((tmp_path / "eval.json").read_text())["episodes"] == 3


def test_killed_run_resumes_exactly_like_an_uninterrupted_one(tmp_path):
    common = [*PENDULUM, "total_steps=2048", "checkpoint_every=2", "normalize_rewards=true"]
    reference = tmp_path / "reference"
    train(reference, *common)

    killed = tmp_path / "killed"
    proc = subprocess.Popen(
        [sys.executable, TRAIN, *common, f"hydra.run.dir={killed}"],
        cwd=tmp_path,
        env=offline_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.time() + 120
        while not (killed / "checkpoints" / "latest.pt").exists() and time.time() < deadline:
            time.sleep(0.02)
    finally:
        proc.kill()  # SIGKILL: no handler runs
        proc.wait()
    saved = load(killed)
    assert 0 < saved["global_step"] < 2048, "the run finished before it could be killed"
    assert saved["global_step"] == 128 * saved["updates"]

    # The killed run cannot be resumed with another config ...
    proc = run(TRAIN, [f"resume={killed}", "agent.learning_rate=1.0"], tmp_path, expect_ok=False)
    assert proc.returncode != 0 and "'agent.learning_rate' cannot be changed when resuming" in proc.stderr
    # ... but continues from its checkpoint with the counters, RNG, normaliser and wandb id intact.
    run(TRAIN, [f"resume={killed}"], tmp_path)
    final = load(killed)
    assert (final["global_step"], final["updates"]) == (2048, 16)
    assert final["run_id"] == saved["run_id"]
    assert len(list((killed / "wandb").glob(f"offline-run-*-{saved['run_id']}"))) == 2
    assert list((killed / ".hydra").glob("resume-*/overrides.yaml"))
    assert metrics(killed) == metrics(reference)
    assert final["trainer"]["reward_statistics"]["count"] == pytest.approx(2048, abs=0.01)  # resumed too
    for key, value in load(reference)["model"].items():
        assert torch.allclose(value, final["model"][key], atol=1e-6), key


def test_a_run_launched_again_into_its_directory_continues_it(tmp_path):
    """What a rerun sweep or a requeued job does: no resume= needed, no second run mixed in."""
    run_dir = tmp_path / "run"
    common = [*PENDULUM, "checkpoint_every=1"]
    train(run_dir, *common, "total_steps=256")
    first = load(run_dir)
    proc = train(run_dir, *common, "total_steps=512")  # total_steps may grow, as with resume=
    assert "continuing the run" in proc.stdout
    again = load(run_dir)
    assert (again["global_step"], again["updates"], again["run_id"]) == (512, 4, first["run_id"])
    assert [int(row["global_step"]) for row in metrics(run_dir)] == [128, 256, 384, 512]

    proc = train(run_dir, *common, "total_steps=512")  # finished: stops at once, nothing rewritten
    assert "already trained to 512 steps" in proc.stdout
    assert load(run_dir)["updates"] == 4 and len(metrics(run_dir)) == 4

    proc = run(
        TRAIN,
        [*common, "total_steps=512", "agent.learning_rate=0.5", f"hydra.run.dir={run_dir}"],
        tmp_path,
        expect_ok=False,
    )
    assert proc.returncode == 1 and "already holds a run with another config" in proc.stderr
    assert "agent.learning_rate" in proc.stderr.strip().splitlines()[-1]


def test_sigterm_writes_a_checkpoint_and_exits(tmp_path):
    run_dir = tmp_path / "run"
    proc = subprocess.Popen(
        [
            sys.executable,
            TRAIN,
            *PENDULUM,
            "total_steps=1000000",
            "checkpoint_every=1",
            "logger.wandb.mode=disabled",
            f"hydra.run.dir={run_dir}",
        ],
        cwd=tmp_path,
        env=offline_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.time() + 120
        while not (run_dir / "checkpoints" / "latest.pt").exists() and time.time() < deadline:
            time.sleep(0.02)
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, stderr[-2000:]
    assert "SIGTERM received" in stderr
    saved = load(run_dir)
    assert saved["global_step"] == int(metrics(run_dir)[-1]["global_step"]) > 0


def test_resume_and_evaluate_fail_clearly_without_a_checkpoint(tmp_path):
    proc = run(TRAIN, [f"resume={tmp_path / 'nothing'}"], tmp_path, expect_ok=False)
    assert proc.returncode == 1 and "no checkpoint" in proc.stderr and str(tmp_path / "nothing") in proc.stderr
    assert not (tmp_path / "nothing").exists()
    proc = run(EVALUATE, [f"checkpoint={tmp_path / 'missing.pt'}"], tmp_path, expect_ok=False)
    assert proc.returncode == 1
    assert f"checkpoint not found: {tmp_path / 'missing.pt'}" in proc.stderr


def test_multirun_gives_each_seed_its_own_run_and_wandb_run(tmp_path):
    run(TRAIN, ["-m", "seed=0,1", *PENDULUM, "total_steps=128", f"hydra.sweep.dir={tmp_path / 'sweep'}"], tmp_path)
    ids = set()
    for job, seed in (("0", 0), ("1", 1)):
        saved = load(tmp_path / "sweep" / job)
        assert saved["config"]["seed"] == seed and saved["global_step"] == 128
        assert list((tmp_path / "sweep" / job / "wandb").glob(f"offline-run-*-{saved['run_id']}"))
        ids.add(saved["run_id"])
    assert len(ids) == 2


def test_parallel_multirun_with_joblib_launcher(tmp_path):
    run(
        TRAIN,
        [
            "-m",
            "seed=3,4",
            "hydra/launcher=joblib",
            "hydra.launcher.n_jobs=2",
            *PENDULUM,
            "total_steps=128",
            "progress_bar=false",
            f"hydra.sweep.dir={tmp_path / 'sweep'}",
        ],
        tmp_path,
    )
    for job, seed in (("0", 3), ("1", 4)):
        saved = load(tmp_path / "sweep" / job)
        assert saved["config"]["seed"] == seed and saved["global_step"] == 128


# ------------------------------------------------------ end to end: peg insertion


@needs_peg_env
@pytest.mark.parametrize("model", ["gnn", "mlp"])
def test_train_and_evaluate_peg_insertion(tmp_path, model):
    run_dir = tmp_path / "run"
    obs_mode = "graph" if model == "gnn" else "flat"
    train(run_dir, *PEG, f"model={model}", f"env.kwargs.obs_mode={obs_mode}", "logger.wandb.mode=disabled")
    assert load(run_dir)["global_step"] == 128
    # Every update logs where its time went; env wait, acting and the update are each real work.
    with open(run_dir / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        parts = [float(row[f"time/{k}_s"]) for k in ("env_wait", "policy_act", "update")]
        assert all(p > 0 for p in parts) and float(row["time/other_s"]) >= 0

    video_format = "mp4" if model == "gnn" else "gif"
    summary = evaluate(
        tmp_path,
        f"checkpoint={run_dir}",
        "episodes=2",
        "deterministic=true",
        "seed=3",
        "env.kwargs.clearance=0.001",
        "video=true",
        "video_episodes=1",
        f"video_format={video_format}",
    )
    assert 0.0 <= summary["success_rate"] <= 1.0
    low, high = summary["success_ci95"]
    assert 0.0 <= low <= summary["success_rate"] <= high <= 1.0
    assert summary["env_overrides"] == {"env.kwargs.clearance": 0.001}
    assert len(summary["videos"]) == 1 and summary["videos"][0].endswith(f".{video_format}")
    assert Path(summary["videos"][0]).stat().st_size > 1000
    results = json.loads(Path(summary["results"]).read_text())
    assert results["config"]["env"]["kwargs"]["clearance"] == 0.001 and len(results["per_episode"]) == 2


PACKED = [
    "env=packed_objects",
    "env.kwargs.robot=floating",
    "env.kwargs.num_objects=2",
    "env.max_episode_steps=32",
    "num_envs=2",
    "rollout_steps=32",
    "total_steps=64",
    "agent.num_epochs=1",
    "progress_bar=false",
    "logger.wandb.mode=disabled",
]


def test_packed_objects_graph_checkpoint_evaluates_on_more_objects_flat_does_not(tmp_path):
    graph_run, flat_run = tmp_path / "graph", tmp_path / "flat"
    train(graph_run, *PACKED)
    summary = evaluate(tmp_path, f"checkpoint={graph_run}", "episodes=1", "env.kwargs.num_objects=4")
    assert summary["env_id"] == "GraphInsertion/PackedObjects-v0" and summary["episodes"] == 1
    assert summary["env_overrides"] == {"env.kwargs.num_objects": 4}

    train(flat_run, *PACKED, "model=mlp", "env.kwargs.obs_mode=flat")
    proc = run(
        EVALUATE, [f"checkpoint={flat_run}", "episodes=1", "env.kwargs.num_objects=4"], tmp_path, expect_ok=False
    )
    assert proc.returncode != 0 and "incompatible with this env: its observation space" in proc.stderr
