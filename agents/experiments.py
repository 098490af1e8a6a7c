"""Summaries of multi-seed experiments: learning curves from run directories, bootstrap confidence
intervals across seeds, the comparison plot and table (``scripts/run_experiment.py``).

A run's curve is its ``metrics.csv`` at the updates that evaluated (every ``eval.every``): the
held-out evaluation's success and return (the task's full start distribution), the rolling training
success and return, the curriculum's difficulty when one runs, against env steps and against the
run's training wall-clock. Seeds are combined on a common grid of either axis; the band is a 95%
percentile bootstrap interval of the mean over seeds (``scipy.stats.bootstrap``). Runs recorded
before a column was added lack it; they are left out of that panel.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Dict, List, Mapping, Sequence, Tuple

import numpy as np
from scipy import stats

CURVE_COLUMNS = {  # curve name -> metrics.csv column
    "step": "global_step",
    "eval_success": "eval/success_rate",
    "rolling_success": "rolling/success_rate",
    "difficulty": "curriculum/difficulty",
    "eval_return": "eval/return_mean",
    "rolling_return": "rolling/return_mean",
    "elapsed_s": "time/elapsed",  # seconds of training, summed over resumed processes
}
AXES = {"step": "env steps", "elapsed_s": "training wall-clock (s)"}
BOOTSTRAP_RESAMPLES = 2000
CONFIDENCE = 0.95


def read_curve(run_dir: Path) -> Dict[str, List[float]]:
    """Every ``CURVE_COLUMNS`` series of a run, at the updates that evaluated (NaN where a column is absent)."""
    with open(Path(run_dir) / "metrics.csv", newline="") as f:
        rows = [row for row in csv.DictReader(f) if row.get("eval/success_rate")]
    return {name: [_number(row.get(column)) for row in rows] for name, column in CURVE_COLUMNS.items()}


def run_progress(run_dir: Path) -> Dict[str, float]:
    """Where a run stands (``run_experiment.py --status``): its latest logged step, rolling success,
    curriculum difficulty and training seconds, and its last evaluation's success; NaN where absent."""
    with open(Path(run_dir) / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    last = rows[-1] if rows else {}
    evaluated = [row for row in rows if row.get("eval/success_rate")]
    latest = ("step", "rolling_success", "difficulty", "elapsed_s")
    progress = {name: _number(last.get(CURVE_COLUMNS[name])) for name in latest}
    progress["eval_success"] = _number(evaluated[-1]["eval/success_rate"]) if evaluated else math.nan
    return progress


def _number(text) -> float:
    return float(text) if text not in (None, "") else math.nan


def mean_interval(samples: Sequence[float], seed: int = 0) -> Tuple[float, float, float]:
    """(mean, low, high): the mean over seeds and its 95% percentile bootstrap interval.

    One sample has no interval (NaN bounds); identical samples have a zero-width one.
    """
    values = np.asarray([v for v in samples if not math.isnan(v)], dtype=float)
    if len(values) == 0:
        return math.nan, math.nan, math.nan
    mean = float(values.mean())
    if len(values) == 1:
        return mean, math.nan, math.nan
    if np.all(values == values[0]):
        return mean, mean, mean
    result = stats.bootstrap(
        (values,),
        np.mean,
        confidence_level=CONFIDENCE,
        n_resamples=BOOTSTRAP_RESAMPLES,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    return mean, float(result.confidence_interval.low), float(result.confidence_interval.high)


def on_grid(curves: Sequence[Mapping[str, List[float]]], key: str, grid: np.ndarray, x: str = "step") -> np.ndarray:
    """[seeds, len(grid)]: each run's ``key`` series against its ``x`` series interpolated onto ``grid``
    (NaN past its last point, and for a run that lacks either series)."""
    out = np.full((len(curves), len(grid)), math.nan)
    for i, curve in enumerate(curves):
        if key not in curve or x not in curve:
            continue
        steps, values = np.asarray(curve[x], dtype=float), np.asarray(curve[key], dtype=float)
        keep = ~(np.isnan(values) | np.isnan(steps))
        if keep.sum() == 0:
            continue
        steps, values = steps[keep], values[keep]
        inside = (grid >= steps[0]) & (grid <= steps[-1])
        out[i, inside] = np.interp(grid[inside], steps, values)
    return out


def condition_band(
    curves: Sequence[Mapping[str, List[float]]], key: str, points: int = 50, x: str = "step"
) -> Dict[str, list]:
    """Mean and bootstrap band over seeds of ``key`` on a common grid of ``points`` values of ``x``.

    NaN wherever a run that has the series lacks a value: runs reach their first evaluation and their
    end at different wall-clock times, and a mean over the seeds still running there would jump (to
    one seed's value) instead of showing the condition.
    """
    last = max((curve[x][-1] for curve in curves if curve.get(x)), default=0.0)
    grid = np.linspace(0.0, last, points)
    values = on_grid(curves, key, grid, x)
    values = values[~np.isnan(values).all(axis=1)]  # runs recorded without the series are left out
    nan = (math.nan, math.nan, math.nan)
    bands = [nan if np.isnan(column).any() else mean_interval(column) for column in values.T]
    return {
        "x": grid.tolist(),
        "mean": [b[0] for b in bands],
        "low": [b[1] for b in bands],
        "high": [b[2] for b in bands],
    }


def runs_by_condition(results: Mapping) -> Dict[str, List[Mapping]]:
    grouped: Dict[str, List[Mapping]] = {}
    for run in results["runs"].values():
        grouped.setdefault(run["condition"], []).append(run)
    return {condition: sorted(runs, key=lambda r: r["seed"]) for condition, runs in sorted(grouped.items())}


PANELS = (  # (curve key, y label, y limits): the plot's rows
    ("eval_success", "success, full start distribution", (-0.02, 1.02)),
    ("eval_return", "return, full start distribution", None),
    ("difficulty", "curriculum difficulty", (-0.02, 1.02)),
)


def _has_data(runs: Sequence[Mapping], key: str, x: str) -> bool:
    return any(key in r["curve"] and x in r["curve"] and not all(math.isnan(v) for v in r["curve"][key]) for r in runs)


def plot_experiment(results: Mapping, path: Path) -> None:
    """Held-out success and return per condition (mean over seeds, 95% bootstrap band), and the
    curriculum difficulty when any condition has one, against env steps (left) and training
    wall-clock (right). A row or column no recorded run has data for is left out."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grouped = runs_by_condition(results)
    every_run = [r for runs in grouped.values() for r in runs]
    xs = [x for x in AXES if _has_data(every_run, "eval_success", x)]
    panels = [panel for panel in PANELS if any(_has_data(every_run, panel[0], x) for x in xs)]
    figure, axes = plt.subplots(
        len(panels), len(xs), figsize=(6 * len(xs), 3.2 * len(panels)), sharex="col", squeeze=False
    )
    for column, x in enumerate(xs):
        for row, (key, label, limits) in enumerate(panels):
            axis = axes[row, column]
            for index, (condition, runs) in enumerate(grouped.items()):
                if not _has_data(runs, key, x):
                    continue
                band = condition_band([r["curve"] for r in runs], key, x=x)
                color = f"C{index}"
                axis.plot(band["x"], band["mean"], color=color, label=f"{condition} ({len(runs)} seeds)")
                axis.fill_between(band["x"], band["low"], band["high"], color=color, alpha=0.2)
            axis.set_ylabel(label)
            if limits:
                axis.set_ylim(*limits)
        axes[0, column].legend(loc="upper left")
        axes[-1, column].set_xlabel(AXES[x])
    figure.suptitle(results["experiment"])
    figure.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def summary_table(results: Mapping) -> str:
    """Markdown: per condition, held-out success (mean over seeds, 95% bootstrap interval, per seed),
    steps and wall-clock per run, and every extra evaluation."""
    grouped = runs_by_condition(results)
    extra_names = sorted({name for runs in grouped.values() for r in runs for name in r.get("extra_evals", {})})
    header = ["condition", "seeds", "held-out success (95% CI)", "per seed", "steps", "minutes per run"]
    header += [f"{name} success" for name in extra_names]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for condition, runs in grouped.items():
        success = [r["heldout"]["success_rate"] for r in runs]
        row = [
            condition,
            str(len(runs)),
            _mean_and_interval(success),
            ", ".join(f"{s:.2f}" for s in success),
            f"{int(np.mean([r['steps'] for r in runs])):,}",
            f"{np.mean([r['wall_clock_s'] for r in runs]) / 60:.1f}",
        ]
        for name in extra_names:
            row.append(
                _mean_and_interval(
                    [r["extra_evals"][name]["success_rate"] for r in runs if name in r.get("extra_evals", {})]
                )
            )
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def _mean_and_interval(values: Sequence[float]) -> str:
    mean, low, high = mean_interval(values)
    if math.isnan(low):
        return f"{mean:.2f}"
    return f"{mean:.2f} [{low:.2f}, {high:.2f}]"
