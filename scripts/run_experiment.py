"""Run a curriculum experiment to completion, resumably, and summarise it with confidence bands.

Usage::

    python scripts/run_experiment.py sparse_peg                    # configs/experiment/sparse_peg.yaml
    python scripts/run_experiment.py packed_objects --extra-eval n_plus_2:env.kwargs.num_objects=6
    python scripts/run_experiment.py sparse_peg --seeds 0 1 --conditions adaptive
    python scripts/run_experiment.py sparse_peg --jobs 3               # three jobs at once
    python scripts/run_experiment.py sparse_peg --summary-only     # plot and table from the results file
    python scripts/run_experiment.py sparse_peg --refresh-curves   # curves re-read from the run directories
    python scripts/run_experiment.py sparse_peg --merge other.json # another results file's runs added, redrawn
    python scripts/run_experiment.py sparse_peg --status           # where each job of the sweep stands

An experiment config (``configs/experiment/<name>.yaml``) holds the training settings and, in
``hydra.sweeper.params``, its conditions (``curriculum``) and seeds; ``python scripts/train.py -m
+experiment=<name>`` runs the same sweep as one Hydra multirun (e.g. on SLURM with a launcher).
This script runs it job by job, each job a Hydra multirun of ``scripts/train.py`` into its fixed
directory ``<sweep dir>/<condition>/seed<seed>``, and after each job:

1. evaluates the final policy on ``--eval-episodes`` held-out episodes of the task's full start
   distribution (``scripts/evaluate.py``, seeds disjoint from training and from its evaluations),
   plus every ``--extra-eval name:override`` (e.g. zero-shot on more objects);
2. records the run (curve, held-out results, steps, wall-clock) in the results file
   (``docs/benchmarks/<name>.json``), so the results live in the repository, not only in ``multirun/``.

``--jobs K`` runs up to K jobs at once, each in its own processes, its output in
``<sweep dir>/<condition>/seed<seed>.log``; this process alone writes the results file, as each
job finishes. A job that fails does not stop the others: they are recorded, and the script then
exits with an error naming the failed jobs.

Interrupted (a session ends, a machine reboots), the same command continues: jobs recorded in the
results file are skipped (a job recorded with other settings, e.g. another ``--override``, is an error,
not a skip: its composed training config is compared with this invocation's), a job whose run
directory holds a checkpoint continues from it (``scripts/train.py`` continues a run launched again
into its directory), the rest start. The summary
(``<results>.png``: held-out success against env steps, mean over seeds with a 95% bootstrap band;
``<results>.md``: the table) is rewritten after every job.

``--merge FILE...`` adds the runs recorded in other results files (seeds trained on other machines or
from other clones, each with its own ``--results``; a baseline two experiments share) to ``--results``
and redraws; it trains nothing. Every run keeps the experiment and overrides it was trained with. A
run key present on both sides with a different record is an error, not an overwrite.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
import traceback
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Dict, List, Mapping, Optional

from omegaconf import OmegaConf

from agents import checkpoint as ckpt
from agents.config import compose_train_config
from agents.experiments import plot_experiment, read_curve, run_progress, summary_table
from agents.run_lock import lock_holder

ROOT = Path(__file__).resolve().parent.parent
EXPERIMENTS = ROOT / "configs" / "experiment"
TRAIN, EVALUATE = ROOT / "scripts" / "train.py", ROOT / "scripts" / "evaluate.py"
HELDOUT_SEED = 20000  # evaluate.py's episodes: disjoint from training (run seeds) and eval.seed (10000)


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("experiment", help="name of configs/experiment/<name>.yaml")
    parser.add_argument("--conditions", nargs="+", help="curriculum names (default: the config's sweep)")
    parser.add_argument("--seeds", nargs="+", type=int, help="run seeds (default: the config's sweep)")
    parser.add_argument("--override", nargs="*", default=[], help="extra train.py overrides, e.g. total_steps=4096")
    parser.add_argument("--eval-episodes", type=int, default=100)
    parser.add_argument("--jobs", type=int, default=1, help="jobs trained at once (default 1: one after another)")
    parser.add_argument("--extra-eval", nargs="*", default=[], help="name:override[,override...] evaluations")
    parser.add_argument("--sweep-dir", type=Path, help="default: multirun/experiment/<name>")
    parser.add_argument("--results", type=Path, help="default: docs/benchmarks/<name>.json")
    parser.add_argument("--summary-only", action="store_true", help="only redraw the plot and table")
    parser.add_argument(
        "--refresh-curves",
        action="store_true",
        help="re-read the curve of every recorded run whose run directory still exists (e.g. after a new "
        "curve column was added), then redraw; trains nothing",
    )
    parser.add_argument("--merge", nargs="+", type=Path, help="results files whose runs are added; trains nothing")
    parser.add_argument(
        "--status", action="store_true", help="print where each job of the sweep stands; trains nothing"
    )
    args = parser.parse_args(argv)
    path = EXPERIMENTS / f"{args.experiment}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in EXPERIMENTS.glob("*.yaml"))
        parser.error(f"no experiment {args.experiment!r} ({path} does not exist); known: {known}")
    sweep = sweep_params(args.experiment)
    args.conditions = args.conditions or str(sweep.curriculum).split(",")
    args.seeds = args.seeds if args.seeds is not None else [int(s) for s in str(sweep.seed).split(",")]
    args.sweep_dir = (args.sweep_dir or ROOT / "multirun" / "experiment" / args.experiment).resolve()
    args.results = args.results or ROOT / "docs" / "benchmarks" / f"{args.experiment}.json"
    args.extra_eval = [parse_extra_eval(parser, spec) for spec in args.extra_eval]
    if args.eval_episodes < 1:
        parser.error(f"--eval-episodes must be at least 1, got {args.eval_episodes}")
    if args.jobs < 1:
        parser.error(f"--jobs must be at least 1, got {args.jobs}")
    return args


def sweep_params(experiment: str):
    """``hydra.sweeper.params`` of the experiment as Hydra composes it (an experiment may build on another)."""
    return compose_train_config([f"+experiment={experiment}"], return_hydra_config=True).hydra.sweeper.params


def parse_extra_eval(parser: argparse.ArgumentParser, spec: str) -> tuple:
    name, _, overrides = spec.partition(":")
    if not name or not overrides:
        parser.error(f"--extra-eval {spec!r}: expected name:key=value[,key=value...]")
    return name, overrides.split(",")


def load_results(path: Path, experiment: str) -> Dict:
    if path.is_file():
        return json.loads(path.read_text())
    return {"experiment": experiment, "runs": {}}


def merge_results(results: Dict, sources: List[Path]) -> None:
    """Add the runs of every results file in ``sources`` to ``results``; each run keeps the experiment
    it was recorded under. A key recorded on both sides with another record stops the merge (nothing
    is written), so no run is silently replaced."""
    for source in sources:
        if not source.is_file():
            sys.exit(f"error: --merge {source}: no such results file")
        try:
            other = json.loads(source.read_text())
            experiment, runs = other["experiment"], other["runs"].items()
        except (json.JSONDecodeError, KeyError, TypeError, AttributeError):
            sys.exit(f"error: --merge {source}: not a results file (JSON with an experiment and its runs)")
        for key, run in runs:
            run = {**run, "experiment": run.get("experiment", experiment)}
            recorded = results["runs"].get(key)
            if recorded is not None and {"experiment": results["experiment"], **recorded} != run:
                sys.exit(f"error: --merge {source}: {key} is recorded in both files with different records")
            results["runs"][key] = run
            print(f"{key}: merged from {source}", flush=True)
    results["runs"] = dict(sorted(results["runs"].items()))


def job_dir(args: argparse.Namespace, condition: str, seed: int) -> Path:
    """The job's run directory: ``hydra.sweep.dir`` / the experiment configs' ``hydra.sweep.subdir``."""
    return args.sweep_dir / condition / f"seed{seed}"


def train_job(args: argparse.Namespace, condition: str, seed: int) -> Path:
    """One job of the experiment's sweep; returns its run directory. With ``--jobs`` above 1 its
    output goes to a log file beside the run directory instead of this process's."""
    command = [
        sys.executable,
        str(TRAIN),
        "-m",
        f"+experiment={args.experiment}",
        f"curriculum={condition}",
        f"seed={seed}",
        f"hydra.sweep.dir={args.sweep_dir}",
        *args.override,
    ]
    run_dir = job_dir(args, condition, seed)
    print(f"[{time.strftime('%H:%M:%S')}] train {condition} seed {seed}: {' '.join(command[1:])}", flush=True)
    if args.jobs == 1:
        subprocess.run(command, cwd=ROOT, check=True)
        return run_dir
    log = run_dir.with_suffix(".log")
    log.parent.mkdir(parents=True, exist_ok=True)
    print(f"  {condition}/seed{seed} writes its output to {log}", flush=True)
    with log.open("a") as out:
        subprocess.run(command, cwd=ROOT, check=True, stdout=out, stderr=subprocess.STDOUT)
    return run_dir


def evaluate_job(run_dir: Path, episodes: int, overrides: List[str], output: Path) -> Mapping:
    """Held-out evaluation of the run's final policy; the summary JSON of ``scripts/evaluate.py``."""
    command = [
        sys.executable,
        str(EVALUATE),
        f"checkpoint={run_dir}",
        "which=latest",
        f"episodes={episodes}",
        f"seed={HELDOUT_SEED}",
        f"output={output}",
        *overrides,
    ]
    proc = subprocess.run(command, cwd=ROOT, check=True, capture_output=True, text=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_job(args: argparse.Namespace, condition: str, seed: int) -> Dict:
    """Train one job and evaluate it; its record for the results file."""
    return record_run(args, condition, seed, train_job(args, condition, seed))


def record_run(args: argparse.Namespace, condition: str, seed: int, run_dir: Path) -> Dict:
    final = ckpt.load_checkpoint(run_dir / "checkpoints" / ckpt.LATEST)
    heldout = evaluate_job(run_dir, args.eval_episodes, [], run_dir / "heldout.json")
    extra = {
        name: evaluate_job(run_dir, args.eval_episodes, overrides, run_dir / f"heldout_{name}.json")
        for name, overrides in args.extra_eval
    }
    return {
        "condition": condition,
        "seed": seed,
        "steps": final["global_step"],
        "wall_clock_s": final["trainer"]["elapsed"],
        "run_dir": str(run_dir),
        "experiment": args.experiment,
        "overrides": list(args.override),
        "curve": read_curve(run_dir),
        "heldout": heldout,
        "extra_evals": {name: {**result, "overrides": dict(args.extra_eval)[name]} for name, result in extra.items()},
        "commit": git_commit(),
        "recorded": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }


UNSET = "<unset>"  # a key one of two compared configs lacks


def flatten(tree, prefix: str = "") -> Dict:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``, so two configs are compared and reported key by key."""
    if isinstance(tree, dict):
        return {k: v for name, sub in tree.items() for k, v in flatten(sub, f"{prefix}{name}.").items()}
    return {prefix[:-1]: tree}


def training_settings(experiment: str, condition: str, seed: int, overrides: List[str]) -> Dict:
    """The training config a job of the sweep composes (interpolations unresolved), without Hydra's own keys."""
    cfg = compose_train_config([f"+experiment={experiment}", f"curriculum={condition}", f"seed={seed}", *overrides])
    return OmegaConf.to_container(cfg, resolve=False)


def check_same_settings(args: argparse.Namespace, results: Mapping, key: str) -> None:
    """Refuse to count a recorded run as this invocation's when it was trained with other settings.

    Without this, ``--override total_steps=1000000`` on a results file of 450k-step runs would skip
    them all and report them as the new sweep. The comparison is of composed configs, so a run
    recorded with overrides that an experiment config now sets counts as the same.
    """
    run = results["runs"][key]
    recorded_experiment = run.get("experiment", results["experiment"])
    recorded = flatten(training_settings(recorded_experiment, run["condition"], run["seed"], run.get("overrides", [])))
    current = flatten(training_settings(args.experiment, run["condition"], run["seed"], list(args.override)))
    differing = sorted(k for k in recorded.keys() | current.keys() if recorded.get(k, UNSET) != current.get(k, UNSET))
    if differing:
        shown = ", ".join(
            f"{k}: recorded {recorded.get(k, UNSET)!r}, now {current.get(k, UNSET)!r}" for k in differing[:3]
        )
        more = f" (and {len(differing) - 3} more)" if len(differing) > 3 else ""
        sys.exit(
            f"error: {args.results} records {key} trained with other settings ({shown}{more}); "
            "pass the same overrides, or another --results and --sweep-dir"
        )


def git_commit() -> Optional[str]:
    proc = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    return proc.stdout.strip() if proc.returncode == 0 else None


def write_summary(results: Mapping, path: Path) -> None:
    if not results["runs"]:
        return
    plot_experiment(results, path.with_suffix(".png"))
    table = summary_table(results)
    path.with_suffix(".md").write_text(f"# {results['experiment']}\n\n{table}")
    print(table, flush=True)


def refresh_curves(results: Dict) -> None:
    for key, run in results["runs"].items():
        metrics = Path(run["run_dir"]) / "metrics.csv"
        if metrics.is_file():
            run["curve"] = read_curve(metrics.parent)
            print(f"{key}: curve re-read from {metrics}", flush=True)
        else:
            print(f"{key}: {metrics} is gone, curve kept as recorded", flush=True)


def jobs_to_run(args: argparse.Namespace, results: Mapping) -> List[tuple]:
    """(condition, seed, key) of every job of the sweep not yet recorded. A recorded job trained with other
    settings is an error (check_same_settings)."""
    pending = []
    for condition, seed, key in sweep_jobs(args):
        if key in results["runs"]:
            check_same_settings(args, results, key)
            print(f"{key}: recorded in {args.results}, skipped", flush=True)
        else:
            pending.append((condition, seed, key))
    return pending


def sweep_jobs(args: argparse.Namespace) -> List[tuple]:
    """(condition, seed, key) of every job of the sweep, seed-major: an interrupted sweep has compared
    every condition so far."""
    return [(condition, seed, f"{condition}/seed{seed}") for seed in args.seeds for condition in args.conditions]


def job_state(results: Mapping, key: str, run_dir: Path) -> str:
    """recorded (its held-out success), running (a live process holds its run directory), stopped (the
    sweep's command continues it, or records it if fully trained) or not started."""
    if key in results["runs"]:
        return f"recorded: held-out success {results['runs'][key]['heldout']['success_rate']:.2f}"
    holder = lock_holder(run_dir)
    if holder is not None:
        return f"running ({holder})"
    return "stopped" if (run_dir / "metrics.csv").is_file() else "not started"


def status_table(args: argparse.Namespace, results: Mapping) -> str:
    """One row per job of the sweep: its state and its run directory's latest step, rolling success,
    difficulty, last evaluation and training minutes."""

    def shown(value: float, digits: int = 2) -> str:
        return "" if math.isnan(value) else f"{value:,.{digits}f}"

    lines = [
        "| job | state | steps | rolling success | difficulty | last eval success | training minutes |",
        "|---|---|---|---|---|---|---|",
    ]
    for condition, seed, key in sweep_jobs(args):
        run_dir = job_dir(args, condition, seed)
        state = job_state(results, key, run_dir)
        if not (run_dir / "metrics.csv").is_file():
            lines.append(f"| {key} | {state} | | | | | |")
            continue
        p = run_progress(run_dir)
        cells = [shown(p["step"], 0), shown(p["rolling_success"]), shown(p["difficulty"]), shown(p["eval_success"])]
        lines.append(f"| {key} | {state} | {' | '.join(cells)} | {shown(p['elapsed_s'] / 60, 1)} |")
    return "\n".join(lines) + "\n"


def script_failure(error: subprocess.CalledProcessError, args: argparse.Namespace, key: str) -> str:
    """What a failed train.py / evaluate.py said: evaluate's last error line (its output is captured),
    or where train's output went (this terminal, or the job's log with ``--jobs`` above 1)."""
    failure = f"{Path(error.cmd[1]).name} exited with status {error.returncode}"
    lines = [line for line in (error.stderr or "").splitlines() if line.strip()]
    if lines:
        return f"{failure}: {lines[-1]}"
    return f"{failure} (its error is {'above' if args.jobs == 1 else f'in {args.sweep_dir / key}.log'})"


def check_imports_this_checkout() -> None:
    """The jobs run this checkout's scripts with this interpreter and the results record this checkout's
    commit; an interpreter whose project packages come from another checkout (its editable install)
    would train that checkout's code under this one's commit."""
    imported = Path(ckpt.__file__).resolve().parent.parent
    if imported != ROOT:
        sys.exit(
            f"error: this Python imports the project from {imported}, not from this checkout {ROOT}; "
            f"use this checkout's environment, or PYTHONPATH={ROOT}"
        )


def run_sweep(args: argparse.Namespace, results: Dict) -> None:
    """Every job not yet recorded, up to ``args.jobs`` at once; each is saved as soon as it finishes."""
    args.results.parent.mkdir(parents=True, exist_ok=True)
    failed = []
    pool = ThreadPoolExecutor(max_workers=args.jobs)
    try:
        futures = {pool.submit(run_job, args, c, s): key for c, s, key in jobs_to_run(args, results)}
        for future in as_completed(futures):
            key = futures[future]
            try:
                results["runs"][key] = future.result()
            except subprocess.CalledProcessError as error:  # one line: the script's own error says why
                print(f"{key} failed: {script_failure(error, args, key)}", file=sys.stderr, flush=True)
                failed.append(key)
                continue
            except Exception as error:  # reported below, after the other jobs are recorded
                print(f"{key} failed:", file=sys.stderr, flush=True)
                traceback.print_exception(error)
                failed.append(key)
                continue
            args.results.write_text(json.dumps(results, indent=1) + "\n")
            write_summary(results, args.results)
    finally:  # Ctrl-C: the jobs not yet started never start; the running ones get the signal too
        pool.shutdown(wait=True, cancel_futures=True)
    if failed:
        sys.exit(f"error: {len(failed)} job(s) failed: {', '.join(sorted(failed))}; the others are recorded")


def main(argv: Optional[List[str]] = None) -> None:
    args = parse_args(argv)
    results = load_results(args.results, args.experiment)
    if args.status:
        print(status_table(args, results), end="")
        return
    if args.refresh_curves or args.merge:
        if args.refresh_curves:
            refresh_curves(results)
        if args.merge:
            merge_results(results, args.merge)
        args.results.parent.mkdir(parents=True, exist_ok=True)
        args.results.write_text(json.dumps(results, indent=1) + "\n")
    elif not args.summary_only:
        check_imports_this_checkout()
        run_sweep(args, results)
    write_summary(results, args.results)


if __name__ == "__main__":
    main()
