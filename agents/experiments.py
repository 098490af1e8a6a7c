"""Summaries of multi-seed experiments: learning curves from run directories, bootstrap confidence
intervals across seeds, the comparison plot and table (``scripts/run_experiment.py``).

A run's curve is its ``metrics.csv``: the held-out evaluation success (``eval/success_rate``, the
task's full start distribution, every ``eval.every`` updates) against env steps, and the curriculum's
difficulty when one runs. Seeds are combined on a common step grid; the band is a 95% percentile
bootstrap interval of the mean over seeds (``scipy.stats.bootstrap``).
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
}
BOOTSTRAP_RESAMPLES = 2000
CONFIDENCE = 0.95


def read_curve(run_dir: Path) -> Dict[str, List[float]]:
    """Every ``CURVE_COLUMNS`` series of a run, at the updates that evaluated (NaN where a column is absent)."""
    with open(Path(run_dir) / "metrics.csv", newline="") as f:
        rows = [row for row in csv.DictReader(f) if row.get("eval/success_rate")]
    return {name: [_number(row.get(column)) for row in rows] for name, column in CURVE_COLUMNS.items()}


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


def on_grid(curves: Sequence[Mapping[str, List[float]]], key: str, grid: np.ndarray) -> np.ndarray:
    """[seeds, len(grid)]: each run's ``key`` series interpolated onto ``grid`` (NaN past its last step)."""
    out = np.full((len(curves), len(grid)), math.nan)
    for i, curve in enumerate(curves):
        steps, values = np.asarray(curve["step"]), np.asarray(curve[key])
        keep = ~np.isnan(values)
        if keep.sum() == 0:
            continue
        steps, values = steps[keep], values[keep]
        inside = (grid >= steps[0]) & (grid <= steps[-1])
        out[i, inside] = np.interp(grid[inside], steps, values)
    return out


def condition_band(curves: Sequence[Mapping[str, List[float]]], key: str, points: int = 50) -> Dict[str, list]:
    """Mean and bootstrap band over seeds of ``key`` on a common grid of ``points`` steps."""
    last = max(curve["step"][-1] for curve in curves if curve["step"])
    grid = np.linspace(0.0, last, points)
    values = on_grid(curves, key, grid)
    bands = [mean_interval(column) for column in values.T]
    return {
        "step": grid.tolist(),
        "mean": [b[0] for b in bands],
        "low": [b[1] for b in bands],
        "high": [b[2] for b in bands],
    }


def runs_by_condition(results: Mapping) -> Dict[str, List[Mapping]]:
    grouped: Dict[str, List[Mapping]] = {}
    for run in results["runs"].values():
        grouped.setdefault(run["condition"], []).append(run)
    return {condition: sorted(runs, key=lambda r: r["seed"]) for condition, runs in sorted(grouped.items())}


def plot_experiment(results: Mapping, path: Path) -> None:
    """Held-out success against env steps per condition (mean over seeds, 95% bootstrap band), and the
    curriculum difficulty below it when any condition has one."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grouped = runs_by_condition(results)
    has_difficulty = any(not all(math.isnan(d) for d in r["curve"]["difficulty"]) for v in grouped.values() for r in v)
    rows = 2 if has_difficulty else 1
    figure, axes = plt.subplots(rows, 1, figsize=(7, 3.2 * rows), sharex=True, squeeze=False)
    for condition, runs in grouped.items():
        curves = [r["curve"] for r in runs]
        band = condition_band(curves, "eval_success")
        line = axes[0, 0].plot(band["step"], band["mean"], label=f"{condition} ({len(runs)} seeds)")[0]
        axes[0, 0].fill_between(band["step"], band["low"], band["high"], color=line.get_color(), alpha=0.2)
        if has_difficulty:
            difficulty = condition_band(curves, "difficulty")
            axes[1, 0].plot(difficulty["step"], difficulty["mean"], color=line.get_color(), label=condition)
    axes[0, 0].set_ylabel("success, full start distribution")
    axes[0, 0].set_ylim(-0.02, 1.02)
    axes[0, 0].set_title(results["experiment"])
    axes[0, 0].legend(loc="upper left")
    if has_difficulty:
        axes[1, 0].set_ylabel("curriculum difficulty")
        axes[1, 0].set_ylim(-0.02, 1.02)
    axes[-1, 0].set_xlabel("env steps")
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
