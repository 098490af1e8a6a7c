"""Rollout workers on Ray (``rollout.backend=ray``, agents/ray_rollout.py) on a local Ray instance.

One Ray instance serves the whole module (starting it takes seconds); each test's workers use
half a CPU so that the workers of the previous test need not be gone first.
"""

from __future__ import annotations

import csv
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import ray
import torch
from train_config import compose_train

from agents import checkpoint as ckpt
from agents.buffer import RolloutBuffer
from agents.collectors import make_collector, make_rollout_envs
from agents.config import validate_train_config
from agents.ray_rollout import RolloutWorkerError, init_local_ray
from agents.registry import build_model
from agents.rollout import env_seeds
from agents.trainer import TrainerPlugin, TrainingAborted, train

pytestmark = pytest.mark.usefixtures("single_thread")

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
TINY = [
    "num_envs=2",
    "rollout_steps=32",
    "total_steps=128",
    "agent.num_epochs=1",
    "agent.minibatch_size=64",
    "progress_bar=false",
    "logger.wandb.mode=disabled",
]
RAY = ["rollout.backend=ray", "rollout.ray.num_workers=2", "rollout.ray.cpus_per_worker=0.5"]
PEG = ["env.kwargs.robot=floating", "env.max_episode_steps=16"]
PACKED = ["env=packed_objects", "env.kwargs.robot=floating", "env.max_episode_steps=16"]


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray instance whose workers can import tests/ (for tests/crashing_env.py)."""
    init_local_ray(2, runtime_env={"env_vars": {"PYTHONPATH": str(TESTS)}})
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


def config(*overrides):
    return compose_train([*TINY, *overrides])


def metric_rows(run_dir: Path) -> list:
    with open(run_dir / "metrics.csv") as f:
        return list(csv.DictReader(f))


class EpisodeRecorder(TrainerPlugin):
    """Keeps every episode record the trainer's plugins are shown."""

    name = "episode_recorder"

    def __init__(self):
        self.episodes = []

    def after_collect(self, trainer, stats):
        self.episodes.extend(stats["episodes"])


# ------------------------------------------------------------------ training


@pytest.mark.parametrize("task", [PEG, PACKED], ids=["peg_insertion", "packed_objects"])
def test_training_on_ray_workers(task, local_ray, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run_dir = tmp_path / "run"
    result = train(config(*task, *RAY), run_dir)
    assert (result.global_step, result.updates) == (128, 2)
    saved = ckpt.load_checkpoint(run_dir / "checkpoints" / ckpt.LATEST)
    assert saved["global_step"] == 128 and len(saved["trainer"]["episode_index"]) == 2
    rows = metric_rows(run_dir)
    assert [int(row["global_step"]) for row in rows] == [64, 128]
    assert float(rows[-1]["rollout/episodes"]) == 4  # 2 envs x two 16-step episodes per 32-step rollout
    assert float(rows[-1]["rollout/worker_restarts"]) == 0


@pytest.mark.parametrize(
    "workers, tolerance",
    [(1, 0.0), (2, 1e-5)],
    ids=["1x2_exactly", "2x1_to_float_rounding"],
)
def test_first_rollout_is_the_local_backends(workers, tolerance, local_ray):
    """Same seeds per global env, same first observations and, with a deterministic policy (the action
    std set to 0: action noise is drawn in other processes), the same rollout. With one env per worker
    the policy acts on batches of 1 instead of 2, which changes float32 rounding (~1e-7) and so the
    physics a little."""
    cfg_local = config(*PEG, "async_envs=false")
    cfg_ray = config(*PEG, *RAY, f"rollout.ray.num_workers={workers}")
    local_envs = make_rollout_envs(cfg_local)
    ray_envs = make_rollout_envs(cfg_ray)
    try:
        torch.manual_seed(0)
        model = build_model(cfg_local.model, local_envs.single_observation_space, local_envs.single_action_space)
        with torch.no_grad():
            model.action_head.log_std.fill_(-math.inf)
        buffers = [RolloutBuffer(32, 2), RolloutBuffer(32, 2)]
        local = make_collector(cfg_local, local_envs, model, buffers[0])
        remote = make_collector(cfg_ray, ray_envs, model, buffers[1])
        assert list(ray_envs.get_attr("episode_seeding_base")) == env_seeds(cfg_ray.seed, 2)
        assert list(local_envs.unwrapped.get_attr("episode_seeding_base")) == env_seeds(cfg_ray.seed, 2)
        for key in local.obs:
            np.testing.assert_array_equal(remote.obs[key], local.obs[key])
        local_stats, ray_stats = local.collect(32), remote.collect(32)
    finally:
        local_envs.close()
        ray_envs.close()
    assert [(e["env"], e["length"]) for e in ray_stats["episodes"]] == [(0, 16), (1, 16), (0, 16), (1, 16)]
    assert ray_stats["returns"] == pytest.approx(local_stats["returns"], rel=tolerance, abs=tolerance)
    for name in ("rewards", "values", "terminated", "truncated", "bootstrap_values", "advantages"):
        torch.testing.assert_close(getattr(buffers[1], name), getattr(buffers[0], name), rtol=0, atol=tolerance)
    for key in buffers[0].obs:
        torch.testing.assert_close(buffers[1].obs[key], buffers[0].obs[key], rtol=0, atol=tolerance)


def test_curriculum_starts_reach_the_workers(local_ray, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    recorder, run_dir = EpisodeRecorder(), tmp_path / "run"
    cfg = config(*PEG, *RAY, "curriculum=adaptive", "curriculum.window=4", "curriculum.full_distribution_fraction=0")
    train(cfg, run_dir, plugins=[recorder])
    saved = ckpt.load_checkpoint(run_dir / "checkpoints" / ckpt.LATEST)["trainer"]["plugins"]["curriculum"]
    start_ids = [episode["start_id"] for episode in recorder.episodes]
    assert len(start_ids) >= 4 and all(0 <= start_id < saved["next_id"] for start_id in start_ids)
    assert sorted({episode["env"] for episode in recorder.episodes}) == [0, 1]
    episodes_per_rollout = [float(row["curriculum/episodes"]) for row in metric_rows(run_dir)]
    assert sum(episodes_per_rollout) == len(start_ids)
    assert all(start is not None for start in saved["starts"]["current"] + saved["starts"]["next"])

    # The run continues on the local backend (workers' envs and starts travel in the checkpoint).
    resumed = config(*PEG, "async_envs=false", "curriculum=adaptive", "curriculum.window=4", "total_steps=192")
    result = train(resumed, run_dir, checkpoint=ckpt.load_checkpoint(run_dir / "checkpoints" / ckpt.LATEST))
    assert (result.global_step, result.updates) == (192, 3)


# ------------------------------------------------------------------ dead workers


def crashing(tmp_path: Path, *overrides):
    """Pendulum runs where the first env to reach its 40th step (in the second rollout) kills its worker."""
    return config(
        "env=gym",
        "env.id=crashing_env:CrashOncePendulum-v0",
        "env.max_episode_steps=64",
        "model=mlp",
        f"+env.kwargs.marker={tmp_path / 'crashed'}",
        "+env.kwargs.crash_at_step=40",
        "total_steps=192",
        *RAY,
        *overrides,
    )


def test_a_worker_dying_mid_segment_is_restarted_and_its_segment_collected_again(local_ray, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run_dir = tmp_path / "run"
    result = train(crashing(tmp_path), run_dir)
    assert (tmp_path / "crashed").exists()
    assert (result.global_step, result.updates) == (192, 3)
    restarts = [float(row["rollout/worker_restarts"]) for row in metric_rows(run_dir)]
    assert restarts == [0, 1, 1]


def test_a_worker_that_dies_more_often_than_it_may_restart_stops_the_run(local_ray, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run_dir = tmp_path / "run"
    message = r"rollout worker \d .* may not be restarted again \(rollout.ray.max_restarts=0\)"
    with pytest.raises(TrainingAborted, match=message):
        train(crashing(tmp_path, "rollout.ray.max_restarts=0"), run_dir)
    assert ckpt.load_checkpoint(run_dir / "checkpoints" / ckpt.LATEST)["updates"] == 1  # the emergency checkpoint


def test_a_worker_that_does_not_answer_in_time_is_a_clear_error(local_ray, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(RolloutWorkerError, match=r"did not answer describe within rollout.ray.timeout_s=0.001 s"):
        make_rollout_envs(config(*PEG, *RAY, "rollout.ray.timeout_s=0.001"))


# ------------------------------------------------------------------ config


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["rollout.backend=spark"], r"rollout.backend='spark' is not one of \['local', 'ray'\]"),
        (["rollout.ray.address=somewhere"], r"rollout.ray.address='somewhere' is not null, 'auto'"),
        (["rollout.ray.num_workers=0"], "rollout.ray.num_workers must be >= 1"),
        (["rollout.ray.max_restarts=-1"], "rollout.ray.max_restarts must be >= 0"),
        (["rollout.ray.cpus_per_worker=0"], "rollout.ray.cpus_per_worker must be > 0"),
        (["rollout.ray.timeout_s=0"], "rollout.ray.timeout_s must be > 0"),
        ([*RAY, "num_envs=3"], "num_envs=3 is not a multiple of rollout.ray.num_workers=2"),
        ([*RAY, "rollout.ray.envs_per_worker=2"], r"num_workers \* rollout.ray.envs_per_worker = 2 \* 2 must equal"),
        ([*RAY, "normalize_rewards=true"], "normalize_rewards=true is not supported with rollout.backend=ray"),
    ],
)
def test_bad_rollout_configs_name_the_key(overrides, message):
    with pytest.raises(ValueError, match=message):
        validate_train_config(config(*PEG, *overrides))


# ------------------------------------------------------------------ scripts/train.py


def run_train(tmp_path: Path, *overrides) -> subprocess.CompletedProcess:
    env = {**os.environ, "WANDB_SILENT": "true"}
    command = [sys.executable, str(ROOT / "scripts" / "train.py"), f"hydra.run.dir={tmp_path / 'run'}", *overrides]
    return subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)


def test_train_script_on_its_own_local_ray_instance(tmp_path):
    done = run_train(tmp_path, *PEG, *TINY, *RAY)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "steps: 128  updates: 2" in done.stdout
    assert (tmp_path / "run" / "checkpoints" / ckpt.LATEST).is_file()


def test_train_script_joins_a_running_ray_cluster_by_address(local_ray, tmp_path):
    done = run_train(tmp_path, *PEG, *TINY, *RAY, f"rollout.ray.address={local_ray}", "total_steps=64")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "steps: 64  updates: 1" in done.stdout


def test_train_script_reports_a_bad_rollout_layout_in_one_line(tmp_path):
    done = run_train(tmp_path, *PEG, *TINY, *RAY, "num_envs=3")
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == (
        "Error: num_envs=3 is not a multiple of rollout.ray.num_workers=2; "
        "set rollout.ray.envs_per_worker so that num_workers * envs_per_worker = num_envs"
    )


# ------------------------------------------------------------------ signals and the local Ray instance


def processes_running(fragment: str) -> list:
    """pids of the live processes whose command line contains ``fragment``."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if fragment in cmdline and state != "Z":
            found.append(int(proc.name))
    return found


def start_ray_training(tmp_path: Path) -> subprocess.Popen:
    """scripts/train.py on its own local Ray instance, in its own process group."""
    command = [sys.executable, str(ROOT / "scripts" / "train.py"), f"hydra.run.dir={tmp_path / 'run'}"]
    command += [*PEG, *TINY, *RAY, "total_steps=1000000", "checkpoint_every=1000"]
    env = {**os.environ, "WANDB_SILENT": "true"}
    return subprocess.Popen(
        command,
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def wait_until(condition, proc: subprocess.Popen, seconds: float = 300) -> None:
    deadline = time.time() + seconds
    while not condition():
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.time() < deadline, "timed out"
        time.sleep(0.1)


def test_sigterm_to_the_process_group_spares_the_local_ray_instance_until_latest_pt_is_written(tmp_path):
    """SLURM, systemd and container stops signal the whole group: the Ray servers and workers, in a session
    of their own (agents/ray_head.py), must outlive the trainer's last update and checkpoint."""
    run_dir = tmp_path / "run"
    raylets_before = len(processes_running("raylet"))
    proc = start_ray_training(tmp_path)
    try:
        wait_until(lambda: (run_dir / "metrics.csv").exists(), proc)  # training, no latest.pt yet
        os.killpg(proc.pid, signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=300)
    finally:
        proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, stderr[-3000:]
    assert "SIGTERM received" in stderr and "Traceback" not in stderr
    saved = torch.load(run_dir / "checkpoints" / ckpt.LATEST, weights_only=False)
    assert f"steps: {saved['global_step']}" in stdout and saved["global_step"] > 0
    assert not processes_running("agents.ray_head")  # the instance was shut down with the run
    assert len(processes_running("raylet")) == raylets_before


def test_a_killed_trainer_takes_its_local_ray_instance_down(tmp_path):
    raylets_before = len(processes_running("raylet"))
    proc = start_ray_training(tmp_path)
    try:
        wait_until(lambda: (tmp_path / "run" / "metrics.csv").exists(), proc)
        assert processes_running("agents.ray_head")
        os.killpg(proc.pid, signal.SIGKILL)  # no handler runs: the head process sees its pipe close
        proc.wait(timeout=60)
        deadline = time.time() + 60
        while (processes_running("agents.ray_head") or len(processes_running("raylet")) > raylets_before) and (
            time.time() < deadline
        ):
            time.sleep(0.2)
    finally:
        proc.kill()
    assert not processes_running("agents.ray_head")
    assert len(processes_running("raylet")) == raylets_before


def test_a_local_ray_instance_that_cannot_start_is_one_clear_error():
    from agents.ray_head import LocalRayHead, RayHeadError

    with pytest.raises(RayHeadError, match=r"did not start \(its process exited\): .*nonnegative"):
        LocalRayHead(-1)
    assert not processes_running("agents.ray_head")
