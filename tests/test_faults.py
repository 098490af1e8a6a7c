"""Runs that survive faults: stop signals to the process group, dead and hung env workers, two writers
on one run directory, corrupt and unwritable checkpoints, non-finite rewards and updates."""

import errno
import multiprocessing
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
from test_train_pipeline import TRAIN, load, metrics, offline_env, run
from train_config import PENDULUM, compose_train

from agents import checkpoint as ckpt
from agents.rollout import EnvWorkerDied, make_vector_env
from agents.run_lock import RunDirInUse, RunDirLock
from agents.trainer import Trainer, TrainerPlugin, TrainingAborted

pytestmark = pytest.mark.usefixtures("single_thread")

ASYNC_PENDULUM = [*PENDULUM, "async_envs=true", "logger.wandb.mode=disabled"]


def start_training(run_dir: Path, *overrides: str) -> subprocess.Popen:
    """scripts/train.py in its own process group (a stop signal to the group misses pytest)."""
    return subprocess.Popen(
        [sys.executable, TRAIN, *ASYNC_PENDULUM, *overrides, f"hydra.run.dir={run_dir}"],
        cwd=run_dir.parent,
        env=offline_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def wait_for(path: Path, proc: subprocess.Popen, seconds: float = 120) -> None:
    deadline = time.time() + seconds
    while not path.exists():
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.time() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def children(pid: int) -> list:
    """The direct child processes of ``pid`` (its env workers)."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


# ------------------------------------------------------------------ signals


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGUSR1])
def test_a_stop_signal_to_the_process_group_leaves_a_resumable_checkpoint(tmp_path, signum):
    run_dir = tmp_path / "run"
    proc = start_training(run_dir, "total_steps=1000000", "checkpoint_every=1000")
    try:
        wait_for(run_dir / "metrics.csv", proc)  # training, with no checkpoint yet
        os.killpg(proc.pid, signum)  # what SLURM, systemd and container stops do: workers get it too
        _, stderr = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 128 + signum, stderr[-3000:]
    assert f"{signal.Signals(signum).name} received" in stderr and "Traceback" not in stderr
    saved = load(run_dir)
    assert saved["global_step"] == int(metrics(run_dir)[-1]["global_step"]) > 0
    # The resumed run continues the counters.
    run(TRAIN, [f"resume={run_dir}", f"total_steps={saved['global_step'] + 128}"], tmp_path)
    assert load(run_dir)["updates"] == saved["updates"] + 1


# ------------------------------------------------------------------ dead and hung workers


def test_a_killed_env_worker_gives_an_emergency_checkpoint_and_one_line(tmp_path):
    run_dir = tmp_path / "run"
    proc = start_training(run_dir, "total_steps=1000000", "checkpoint_every=1000")
    try:
        wait_for(run_dir / "metrics.csv", proc)
        worker = children(proc.pid)[-1]
        os.kill(worker, signal.SIGKILL)
        _, stderr = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 1
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("Error: env worker ") and f"(pid {worker}) died" in last and "killed by SIGKILL" in last
    assert "Traceback" not in stderr
    saved = load(run_dir)  # the last completed update, resumable
    assert saved["updates"] >= 1 and saved["global_step"] == 128 * saved["updates"]
    assert f"resume={run_dir}" in last


def test_a_hung_worker_is_a_bounded_wait():
    envs = make_vector_env("Pendulum-v1", num_envs=2, asynchronous=True, worker_timeout=1.0, context="fork")
    try:
        envs.reset(seed=0)
        os.kill(envs.processes[0].pid, signal.SIGSTOP)
        start = time.monotonic()
        with pytest.raises(EnvWorkerDied, match="did not answer step within 1 s"):
            envs.step(np.zeros((2, 1), np.float32))
        assert time.monotonic() - start < 30  # a hang guard, not a speed check
    finally:
        os.kill(envs.processes[0].pid, signal.SIGCONT)
        envs.close()


# ------------------------------------------------------------------ one writer per run directory


def _hold_lock(run_dir, ready):
    lock = RunDirLock(run_dir).acquire()  # noqa: F841 (held until this process is killed)
    ready.set()
    time.sleep(600)


def test_run_directory_lock_refuses_a_second_writer_and_takes_over_a_dead_ones(tmp_path):
    ready = multiprocessing.get_context("fork").Event()
    holder = multiprocessing.get_context("fork").Process(target=_hold_lock, args=(tmp_path, ready))
    holder.start()
    try:
        assert ready.wait(30)
        with pytest.raises(RunDirInUse, match=f"is in use by pid {holder.pid}"):
            RunDirLock(tmp_path).acquire()
    finally:
        holder.kill()
        holder.join()
    with RunDirLock(tmp_path) as lock:  # the dead holder's lock is taken over
        assert f"pid {holder.pid}" in lock.previous_holder
    with RunDirLock(tmp_path) as lock:  # after a clean release nobody is reported
        assert lock.previous_holder is None


def test_resuming_a_run_that_is_still_going_refuses_at_once(tmp_path):
    run_dir = tmp_path / "run"
    proc = start_training(run_dir, "total_steps=1000000", "checkpoint_every=1")
    try:
        wait_for(run_dir / "checkpoints" / ckpt.LATEST, proc)
        second = run(TRAIN, [f"resume={run_dir}"], tmp_path, expect_ok=False)
        assert proc.poll() is None  # the first run goes on
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert second.returncode == 1
    assert second.stderr.strip().splitlines()[-1].startswith(f"Error: run directory {run_dir} is in use by pid")


# ------------------------------------------------------------------ checkpoints that survive the disk


def test_resume_falls_back_from_a_truncated_latest_checkpoint(tmp_path):
    run_dir = tmp_path / "run"
    run(TRAIN, [*PENDULUM, "total_steps=384", "checkpoint_every=1", f"hydra.run.dir={run_dir}"], tmp_path)
    kept = ckpt.history(run_dir / "checkpoints")
    assert [p.name for p in kept] == ["step_000000000384.pt", "step_000000000256.pt"]  # keep_checkpoints=2
    with open(run_dir / "checkpoints" / ckpt.LATEST, "r+b") as f:  # a disk error (latest.pt is step 384's file)
        f.truncate(1000)
    proc = run(TRAIN, [f"resume={run_dir}", "total_steps=512"], tmp_path)
    assert "latest.pt is not a torch checkpoint" in proc.stderr and "step_000000000256.pt (step 256)" in proc.stderr
    assert load(run_dir)["global_step"] == 512


def test_a_full_disk_stops_with_one_line_and_the_previous_checkpoint_intact(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    real_save = torch.save

    def save(payload, f):  # the disk fills up after the first update's checkpoints
        if payload["updates"] > 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_save(payload, f)

    monkeypatch.setattr(ckpt.torch, "save", save)
    cfg = compose_train([*PENDULUM, "total_steps=512", "checkpoint_every=1", "logger.wandb.mode=disabled"])
    with pytest.raises(TrainingAborted, match="No space left on device.*latest.pt \\(update 1\\) is intact"):
        Trainer(cfg, tmp_path / "run").run()
    monkeypatch.setattr(ckpt.torch, "save", real_save)
    assert load(tmp_path / "run")["updates"] == 1
    assert not list((tmp_path / "run" / "checkpoints").glob(".*.tmp"))  # no partial file left behind


# ------------------------------------------------------------------ non-finite values


class NaNRewardAt(gym.Wrapper):
    """A test env whose reward is NaN at step ``at`` of every episode (a physics blow-up)."""

    def __init__(self, env, at):
        super().__init__(env)
        self.at, self.t = at, 0

    def reset(self, **kwargs):
        self.t = 0
        return self.env.reset(**kwargs)

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.t += 1
        return obs, (float("nan") if self.t == self.at else reward), terminated, truncated, info


gym.register("Test/NaNRewardPendulum-v0", entry_point=lambda **kw: NaNRewardAt(gym.make("Pendulum-v1"), **kw))


def test_a_non_finite_reward_truncates_the_episode_counts_it_and_training_goes_on(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    overrides = [o for o in PENDULUM if not o.startswith("env.id")]
    cfg = compose_train(
        [
            *overrides,
            "env.id=Test/NaNRewardPendulum-v0",
            "+env.kwargs.at=10",
            "total_steps=256",
            "async_envs=false",
            "logger.wandb.mode=disabled",
        ]
    )
    Trainer(cfg, tmp_path / "run").run()
    rows = metrics(tmp_path / "run")
    assert [int(r["updates"]) for r in rows] == [1, 2]
    assert sum(float(r["rollout/nonfinite_episodes"]) for r in rows) >= 12  # 128 steps per env, cut every 10
    assert all(float(r["rollout/length_mean"]) == 10.0 for r in rows)
    dumps = sorted((tmp_path / "run" / "nonfinite").glob("*.json"))
    assert dumps and '"actions"' in dumps[0].read_text()
    for value in load(tmp_path / "run")["model"].values():
        assert torch.isfinite(value).all()


class NaNUpdates(TrainerPlugin):
    """Makes the algorithm report a NaN loss from update ``first`` on, ``count`` times."""

    name = "nan_updates"

    def __init__(self, first, count):
        self.first, self.count = first, count

    def after_build(self, trainer):
        update, calls = trainer.algorithm.update, []

        def poisoned(*args, **kwargs):
            calls.append(1)
            metrics = update(*args, **kwargs)
            if self.first <= len(calls) < self.first + self.count:
                with torch.no_grad():
                    next(trainer.model.parameters()).fill_(float("nan"))
                metrics = {**metrics, "loss": float("nan")}
            return metrics

        trainer.algorithm.update = poisoned


def test_a_non_finite_update_is_skipped_and_several_in_a_row_stop_the_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = compose_train([*PENDULUM, "total_steps=512", "checkpoint_every=1", "logger.wandb.mode=disabled"])
    Trainer(cfg, tmp_path / "once", plugins=[NaNUpdates(first=2, count=1)]).run()
    rows = metrics(tmp_path / "once")
    assert [float(r["train/skipped_updates"]) for r in rows] == [0, 1, 1, 1]
    for value in load(tmp_path / "once")["model"].values():
        assert torch.isfinite(value).all()

    # Updates 2, 3 and 4 fail: the run stops at the third; latest.pt (update 3) holds update 1's model.
    with pytest.raises(TrainingAborted, match="3 updates in a row had a non-finite loss.*\\(update 3\\)"):
        Trainer(cfg, tmp_path / "always", plugins=[NaNUpdates(first=2, count=99)]).run()
    saved = load(tmp_path / "always")
    assert saved["updates"] == 3
    for value in saved["model"].values():
        assert torch.isfinite(value).all()


def test_the_finiteness_check_sees_every_element_and_ignores_integer_arrays():
    from agents.env_guards import all_finite

    assert all_finite({"nodes": np.ones((3, 4), np.float32), "edge_index": np.zeros((2, 6), np.int64)})
    assert not all_finite({"nodes": np.array([[1.0, np.nan]], np.float32)})
    assert not all_finite(np.array([1.0, -np.inf]))
    assert all_finite(np.array([1e308, 1e308]))  # a sum that overflows is not a non-finite element
