"""Requeue-safe sweeps: Hydra's submitit launcher (``submitit_local``, as ``hydra/launcher=slurm`` on a
cluster), one job interrupted by SIGUSR2 as SLURM does before a time limit, requeued, and finished."""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from test_train_pipeline import TRAIN, load, metrics, offline_env
from train_config import PENDULUM

TOTAL_STEPS = 12800  # 100 updates of 128 steps: long enough to be interrupted midway


def holder_of(lock: Path) -> int:
    """The pid of the process that has ``lock`` open (the trainer holds its run.lock for the whole run)."""
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if any(os.readlink(fd) == str(lock) for fd in (proc / "fd").iterdir()):
                    return int(proc.name)
            except OSError:  # a process that ended, or one we may not inspect
                continue
    raise AssertionError(f"nobody holds {lock}")


def test_an_interrupted_job_of_a_submitit_sweep_is_requeued_and_continues_its_run(tmp_path):
    sweep = tmp_path / "sweep"
    command = [sys.executable, TRAIN, "-m", "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=10"]
    command += [f"hydra.sweep.dir={sweep}", "seed=0,1", *PENDULUM, "async_envs=false", "checkpoint_every=1"]
    command += [f"total_steps={TOTAL_STEPS}", "logger.wandb.mode=offline"]
    proc = subprocess.Popen(
        command,
        cwd=tmp_path,
        env=offline_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.time() + 240
        while not (sweep / "0" / "checkpoints" / "latest.pt").exists():
            assert proc.poll() is None and time.time() < deadline, proc.communicate()[0][-3000:]
            time.sleep(0.05)
        interrupted = holder_of(sweep / "0" / "run.lock")
        os.kill(interrupted, signal.SIGUSR2)  # what SLURM sends submitit jobs before the time limit
        output, _ = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, output[-3000:]

    logs = "".join(p.read_text() for p in (sweep / ".submitit").glob("*/*_log.*"))
    assert len(set(re.findall(r"Requeued job (\d+)", logs))) == 1  # the interrupted job, and only it
    assert logs.count(f"continuing the run in {sweep / '0'} ") == 1
    for job in ("0", "1"):
        run_dir = sweep / job
        final = load(run_dir)
        assert final["global_step"] == TOTAL_STEPS
        steps = [int(row["global_step"]) for row in metrics(run_dir)]
        assert steps == list(range(128, TOTAL_STEPS + 1, 128))  # no update lost, none logged twice
    interrupted_run = sweep / "0"
    wandb_runs = list((interrupted_run / "wandb").glob("offline-run-*"))
    assert len(wandb_runs) == 2 and {p.name.rsplit("-", 1)[1] for p in wandb_runs} == {load(interrupted_run)["run_id"]}
    assert len(list((sweep / "1" / "wandb").glob("offline-run-*"))) == 1  # the other job ran once
