"""Experiment summaries (agents/experiments.py) and the resumable sweep (scripts/run_experiment.py)."""

import importlib.util
import json
import math
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from train_config import compose_train

from agents.config import validate_train_config
from agents.experiments import condition_band, mean_interval, on_grid, summary_table
from agents.run_lock import RunDirLock

ROOT = Path(__file__).resolve().parent.parent
RUN_EXPERIMENT = str(ROOT / "scripts" / "run_experiment.py")


def load_script():
    spec = importlib.util.spec_from_file_location("run_experiment", RUN_EXPERIMENT)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    return script


def test_bootstrap_interval_of_two_seeds_matches_the_hand_computation():
    # Resampled means of [0, 1] are 0, 0.5, 1 with probabilities 1/4, 1/2, 1/4: the 95% interval is [0, 1].
    mean, low, high = mean_interval([0.0, 1.0])
    assert (mean, low, high) == (0.5, 0.0, 1.0)
    assert mean_interval([0.7, 0.7, 0.7]) == pytest.approx((0.7, 0.7, 0.7))
    mean, low, high = mean_interval([0.4])
    assert mean == 0.4 and math.isnan(low) and math.isnan(high)
    mean, low, high = mean_interval([0.2, 0.4, 0.9, 1.0])
    assert 0.2 <= low < mean < high <= 1.0 and mean == pytest.approx(0.625)


def test_curves_are_interpolated_onto_the_grid_and_nan_past_their_end():
    curves = [{"step": [0, 10], "eval_success": [0.0, 1.0]}, {"step": [0, 5], "eval_success": [0.2, 0.4]}]
    values = on_grid(curves, "eval_success", np.array([0.0, 5.0, 10.0]))
    np.testing.assert_allclose(values[0], [0.0, 0.5, 1.0])
    np.testing.assert_allclose(values[1][:2], [0.2, 0.4])
    assert math.isnan(values[1][2])


def test_curves_on_a_wall_clock_grid_and_runs_without_the_series_left_out():
    curves = [
        {"step": [0, 10], "elapsed_s": [0.0, 100.0], "eval_success": [0.0, 1.0]},
        {"step": [0, 10], "eval_success": [0.0, 1.0]},  # recorded before elapsed_s existed
    ]
    values = on_grid(curves, "eval_success", np.array([50.0, 100.0]), x="elapsed_s")
    np.testing.assert_allclose(values[0], [0.5, 1.0])
    assert np.isnan(values[1]).all()
    assert np.isnan(on_grid(curves, "eval_return", np.array([5.0]))).all()


def test_the_band_is_drawn_only_where_every_seed_has_a_value():
    # On the wall-clock axis the second run starts later and ends sooner: a mean of the first run alone
    # would show 0.0 at t = 0 and 1.0 at t = 100.
    curves = [
        {"elapsed_s": [0.0, 100.0], "eval_success": [0.0, 1.0]},
        {"elapsed_s": [25.0, 75.0], "eval_success": [0.5, 0.5]},
        {"step": [0, 10], "eval_success": [0.0, 1.0]},  # recorded before elapsed_s existed: left out
    ]
    band = condition_band(curves, "eval_success", points=5, x="elapsed_s")
    assert band["x"] == [0.0, 25.0, 50.0, 75.0, 100.0]
    np.testing.assert_allclose(band["mean"], [math.nan, 0.375, 0.5, 0.625, math.nan])
    assert math.isnan(band["low"][0]) and band["low"][2] == band["high"][2] == 0.5


def test_summary_table_lists_each_condition_with_its_seeds():
    def run(condition, seed, success):
        return {
            "condition": condition,
            "seed": seed,
            "steps": 1000,
            "wall_clock_s": 120.0,
            "heldout": {"success_rate": success},
        }

    results = {"runs": {"a/0": run("adaptive", 0, 1.0), "a/1": run("adaptive", 1, 0.9), "n/0": run("none", 0, 0.0)}}
    table = summary_table(results)
    assert "| adaptive | 2 | 0.95 [0.90, 1.00] | 1.00, 0.90 | 1,000 | 2.0 |" in table
    assert "| none | 1 | 0.00 | 0.00 | 1,000 | 2.0 |" in table


def experiment_process(tmp_path, *args, extra_overrides=()):
    tiny = [
        "total_steps=128",
        "num_envs=2",
        "rollout_steps=64",
        "eval.episodes=2",
        "eval.every=1",
        "env.max_episode_steps=8",
        "logger.wandb.mode=disabled",
    ]
    command = [sys.executable, RUN_EXPERIMENT, "sparse_peg", "--seeds", "0", "--eval-episodes", "2"]
    command += ["--sweep-dir", str(tmp_path / "sweep"), "--results", str(tmp_path / "results.json")]
    command += [*args, "--override", *tiny, *extra_overrides]
    return subprocess.run(command, capture_output=True, text=True, timeout=600)


def run_experiment(tmp_path, *args):
    proc = experiment_process(tmp_path, *args)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc.stdout


def test_an_interrupted_sweep_continues_with_the_jobs_it_has_not_finished(tmp_path):
    run_experiment(tmp_path, "--conditions", "adaptive")  # the first half of the sweep
    results = json.loads((tmp_path / "results.json").read_text())
    assert list(results["runs"]) == ["adaptive/seed0"]
    first = results["runs"]["adaptive/seed0"]
    assert first["steps"] == 128 and first["curve"]["step"] == [128.0]
    assert first["heldout"]["episodes"] == 2 and not math.isnan(first["curve"]["difficulty"][0])
    # Return and wall-clock are recorded too, for the plots against env steps and against time.
    assert math.isfinite(first["curve"]["eval_return"][0]) and math.isfinite(first["curve"]["rolling_return"][0])
    assert first["curve"]["elapsed_s"][0] > 0

    # A job trained but not recorded (the session ended during its evaluation) is not trained again.
    del results["runs"]["adaptive/seed0"]
    (tmp_path / "results.json").write_text(json.dumps(results))
    # Both jobs at once (--jobs 2): each job's output goes to a log beside its run directory.
    out = run_experiment(tmp_path, "--conditions", "adaptive", "none", "--jobs", "2")
    log = tmp_path / "sweep" / "adaptive" / "seed0.log"
    assert f"adaptive/seed0 writes its output to {log}" in out
    assert "already trained to 128 steps" in log.read_text()
    results = json.loads((tmp_path / "results.json").read_text())
    assert sorted(results["runs"]) == ["adaptive/seed0", "none/seed0"]
    assert (tmp_path / "results.png").stat().st_size > 0
    assert "| none | 1 |" in (tmp_path / "results.md").read_text()

    out = run_experiment(tmp_path, "--conditions", "adaptive", "none")  # all recorded: nothing runs
    assert "adaptive/seed0: recorded" in out and "none/seed0: recorded" in out and "train " not in out

    # Other settings on the same results file are refused, not answered with the runs recorded there.
    proc = experiment_process(tmp_path, "--conditions", "none", extra_overrides=["env.max_episode_steps=9"])
    assert proc.returncode == 1 and "train " not in proc.stdout
    assert "records none/seed0 trained with other settings (env.max_episode_steps: recorded 8, now 9)" in proc.stderr

    # A record from before a curve column existed gets it from its run directory, without training.
    results = json.loads((tmp_path / "results.json").read_text())
    del results["runs"]["none/seed0"]["curve"]["elapsed_s"]
    (tmp_path / "results.json").write_text(json.dumps(results))
    out = run_experiment(tmp_path, "--refresh-curves")
    assert "none/seed0: curve re-read" in out and "train " not in out
    refreshed = json.loads((tmp_path / "results.json").read_text())["runs"]["none/seed0"]["curve"]
    assert refreshed["elapsed_s"][0] > 0


def test_unknown_experiment_is_a_clear_error():
    proc = subprocess.run([sys.executable, RUN_EXPERIMENT, "nope"], capture_output=True, text=True)
    assert proc.returncode == 2 and "no experiment 'nope'" in proc.stderr


SWEPT_CONDITIONS = {"packed_objects_dapg": ["demo", "none"]}
# The overrides docs/benchmarks/packed_objects_dapg.json's runs were launched with.
DAPG_OVERRIDES = [
    "demo_cloning.weight=0.5",
    "demo_cloning.decay=0.995",
    "model.init_log_std=-2.0",
    "env.kwargs.reward.kernel=sparse",
    "agent.anneal_lr=true",
]


@pytest.mark.parametrize("name", sorted(p.stem for p in (ROOT / "configs" / "experiment").glob("*.yaml")))
def test_every_experiment_config_composes_and_validates(name):
    cfg = compose_train([f"+experiment={name}", "curriculum=adaptive"])
    validate_train_config(cfg)
    args = load_script().parse_args([name])  # the sweep as Hydra composes it, also when inherited
    assert args.conditions == SWEPT_CONDITIONS.get(name, ["adaptive", "none"]) and args.seeds == [0, 1, 2]
    assert args.sweep_dir == ROOT / "multirun" / "experiment" / name
    if name == "packed_objects_dapg":  # the packed_objects experiment plus the overrides README's runs used
        base = compose_train(["+experiment=packed_objects", "curriculum=adaptive", *DAPG_OVERRIDES])
        assert cfg.demo_cloning.weight == 0.5 and cfg.env.kwargs.reward.kernel == "sparse"
        assert cfg == base
    if name == "packed_objects_tight_tray":  # the packed_objects experiment with only the tray changed
        base = compose_train(["+experiment=packed_objects", "curriculum=adaptive"])
        assert cfg.env.kwargs.tray_margin == 0.004 != base.env.kwargs.tray_margin
        cfg.env.kwargs.tray_margin = base.env.kwargs.tray_margin
        assert cfg == base


def parallel_sweep(tmp_path, monkeypatch, jobs: int, train_job):
    """run_experiment's main on a 2-job sweep with ``train_job`` in place of training and a stub record,
    so only the scheduling of the jobs is exercised."""
    script = load_script()
    monkeypatch.setattr(script, "train_job", train_job)
    monkeypatch.setattr(script, "record_run", lambda args, condition, seed, run_dir: {"run_dir": str(run_dir)})
    monkeypatch.setattr(script, "write_summary", lambda results, path: None)
    results = tmp_path / "results.json"
    argv = ["sparse_peg", "--seeds", "0", "--jobs", str(jobs), "--results", str(results)]
    argv += ["--sweep-dir", str(tmp_path / "sweep")]
    return script, argv, results


def test_jobs_run_at_once_with_jobs_above_one(tmp_path, monkeypatch):
    # Both jobs must be inside train_job together to pass the barrier; one after another, the first
    # waits alone, the barrier breaks and the sweep fails.
    barrier = threading.Barrier(2, timeout=20)

    def train_job(args, condition, seed):
        barrier.wait()
        return tmp_path / condition

    script, argv, results = parallel_sweep(tmp_path, monkeypatch, 2, train_job)
    script.main(argv)
    runs = json.loads(results.read_text())["runs"]
    assert runs == {
        "adaptive/seed0": {"run_dir": str(tmp_path / "adaptive")},
        "none/seed0": {"run_dir": str(tmp_path / "none")},
    }


def test_a_failed_job_is_named_and_the_others_are_recorded(tmp_path, monkeypatch, capsys):
    def train_job(args, condition, seed):
        if condition == "adaptive":
            raise subprocess.CalledProcessError(1, [sys.executable, "scripts/train.py"])
        return tmp_path / condition

    script, argv, results = parallel_sweep(tmp_path, monkeypatch, 1, train_job)
    with pytest.raises(SystemExit, match=r"1 job\(s\) failed: adaptive/seed0; the others are recorded"):
        script.main(argv)
    assert list(json.loads(results.read_text())["runs"]) == ["none/seed0"]
    # A training script that exits with an error is one line (its own message is in its output), no traceback.
    stderr = capsys.readouterr().err
    assert "adaptive/seed0 failed: train.py exited with status 1 (its error is above)" in stderr
    assert "Traceback" not in stderr


def test_an_interrupted_sweep_starts_no_further_job(tmp_path, monkeypatch):
    started = []

    def train_job(args, condition, seed):
        started.append(condition)
        raise KeyboardInterrupt  # Ctrl-C during the first job

    script, argv, results = parallel_sweep(tmp_path, monkeypatch, 1, train_job)
    with pytest.raises(KeyboardInterrupt):
        script.main(argv)
    assert started == ["adaptive"] and not results.exists()


def test_jobs_below_one_is_a_clear_error():
    proc = subprocess.run([sys.executable, RUN_EXPERIMENT, "sparse_peg", "--jobs", "0"], capture_output=True, text=True)
    assert proc.returncode == 2 and "--jobs must be at least 1, got 0" in proc.stderr


def merge_record(condition: str, seed: int, success: float) -> dict:
    """A results-file record with a two-point curve, enough for the summary's table and plot."""
    curve = {"step": [1000.0, 2000.0], "eval_success": [0.0, success], "elapsed_s": [10.0, 20.0]}
    heldout = {"success_rate": success}
    return {
        "condition": condition,
        "seed": seed,
        "steps": 2000,
        "wall_clock_s": 20.0,
        "curve": curve,
        "heldout": heldout,
    }


def write_results(path: Path, experiment: str, runs: dict) -> Path:
    path.write_text(json.dumps({"experiment": experiment, "runs": runs}))
    return path


def test_merge_adds_the_other_files_runs_and_redraws(tmp_path):
    target = write_results(tmp_path / "all.json", "sparse_peg", {"adaptive/seed0": merge_record("adaptive", 0, 1.0)})
    other = write_results(tmp_path / "seed1.json", "sparse_peg", {"adaptive/seed1": merge_record("adaptive", 1, 0.5)})
    load_script().main(["sparse_peg", "--results", str(target), "--merge", str(other)])
    runs = json.loads(target.read_text())["runs"]
    assert list(runs) == ["adaptive/seed0", "adaptive/seed1"]
    assert runs["adaptive/seed1"] == {**merge_record("adaptive", 1, 0.5), "experiment": "sparse_peg"}
    assert "| adaptive | 2 | 0.75 [0.50, 1.00] | 1.00, 0.50 |" in target.with_suffix(".md").read_text()
    assert target.with_suffix(".png").is_file()


def test_merge_refuses_a_run_recorded_differently_on_both_sides(tmp_path):
    target = write_results(tmp_path / "all.json", "sparse_peg", {"none/seed0": merge_record("none", 0, 1.0)})
    before = target.read_text()
    other = write_results(tmp_path / "other.json", "sparse_peg", {"none/seed0": merge_record("none", 0, 0.0)})
    with pytest.raises(SystemExit, match="none/seed0 is recorded in both files with different records"):
        load_script().main(["sparse_peg", "--results", str(target), "--merge", str(other)])
    assert target.read_text() == before
    # The same record on both sides (e.g. a file merged twice) is no conflict.
    same = write_results(tmp_path / "same.json", "sparse_peg", {"none/seed0": merge_record("none", 0, 1.0)})
    load_script().main(["sparse_peg", "--results", str(target), "--merge", str(same)])


def test_merge_of_a_missing_or_malformed_file_is_a_clear_error(tmp_path):
    target = str(tmp_path / "all.json")
    with pytest.raises(SystemExit, match="--merge .*nope.json: no such results file"):
        load_script().main(["sparse_peg", "--results", target, "--merge", str(tmp_path / "nope.json")])
    for name, text in [
        ("broken.json", "{not json"),
        ("metrics.json", '{"success_rate": 1.0}'),
        ("no_name.json", '{"runs": {}}'),
    ]:
        (tmp_path / name).write_text(text)
        with pytest.raises(SystemExit, match=f"--merge .*{name}: not a results file"):
            load_script().main(["sparse_peg", "--results", target, "--merge", str(tmp_path / name)])


def test_status_shows_each_job_recorded_running_stopped_or_not_started(tmp_path, capsys):
    sweep = tmp_path / "sweep"
    (sweep / "adaptive" / "seed0").mkdir(parents=True)
    (sweep / "adaptive" / "seed0" / "metrics.csv").write_text(
        "global_step,time/elapsed,rolling/success_rate,curriculum/difficulty,eval/success_rate\n"
        "1024,30,0.25,0.1,0.5\n"
        "2048,90,0.75,0.35,\n"  # the latest row did not evaluate: the last evaluation is the row before
    )
    results = write_results(tmp_path / "r.json", "sparse_peg", {"none/seed1": merge_record("none", 1, 0.8)})
    argv = ["sparse_peg", "--seeds", "0", "1", "--sweep-dir", str(sweep), "--results", str(results), "--status"]
    load_script().main(argv)
    rows = capsys.readouterr().out.splitlines()
    with RunDirLock(sweep / "adaptive" / "seed0"):  # a live training process on the run directory
        load_script().main(argv)
    running = capsys.readouterr().out.splitlines()[2]
    assert running.startswith(f"| adaptive/seed0 | running (pid {os.getpid()} on ") and "| 2,048 | 0.75 |" in running
    load_script().main(argv)  # the process is gone; its lock file stays behind
    assert capsys.readouterr().out.splitlines() == rows
    assert rows[2:] == [
        "| adaptive/seed0 | stopped | 2,048 | 0.75 | 0.35 | 0.50 | 1.5 |",
        "| none/seed0 | not started | | | | | |",
        "| adaptive/seed1 | not started | | | | | |",
        "| none/seed1 | recorded: held-out success 0.80 | | | | | |",
    ]
    assert not (sweep / "none").exists()  # nothing trained


def test_a_failed_evaluation_names_its_error(tmp_path, monkeypatch, capsys):
    def record_run(args, condition, seed, run_dir):
        stderr = "Traceback ...\nValueError: no checkpoint in run_dir\n"
        raise subprocess.CalledProcessError(1, [sys.executable, "scripts/evaluate.py"], stderr=stderr)

    script, argv, results = parallel_sweep(tmp_path, monkeypatch, 1, lambda args, c, s: tmp_path / c)
    monkeypatch.setattr(script, "record_run", record_run)
    with pytest.raises(SystemExit, match=r"2 job\(s\) failed"):
        script.main(argv)
    stderr = capsys.readouterr().err
    assert "none/seed0 failed: evaluate.py exited with status 1: ValueError: no checkpoint in run_dir" in stderr


def test_a_sweep_refuses_to_train_another_checkouts_code(tmp_path):
    # A second checkout run with this checkout's interpreter (its editable install): the jobs would train
    # this checkout's code while the results record the other's commit, so it stops before training.
    other = tmp_path / "other"
    shutil.copytree(ROOT / "configs", other / "configs")
    (other / "scripts").mkdir()
    shutil.copy(RUN_EXPERIMENT, other / "scripts" / "run_experiment.py")
    command = [sys.executable, str(other / "scripts" / "run_experiment.py"), "sparse_peg", "--seeds", "0"]
    command += ["--sweep-dir", str(tmp_path / "sweep"), "--results", str(tmp_path / "results.json")]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    expected = f"error: this Python imports the project from {ROOT}, not from this checkout {other.resolve()}"
    assert proc.stderr.strip().splitlines()[-1].startswith(expected), proc.stderr[-2000:]
    assert not (tmp_path / "sweep").exists()
