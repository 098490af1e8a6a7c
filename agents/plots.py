"""The learning-curve PNG of a run directory, drawn from its ``metrics.csv``.

Panels, against env steps: success rate (rolling over training episodes, and held-out evaluation
when the run evaluates), return (rolling, and evaluation), and the curriculum's difficulty with the
success on the task's full start distribution when a curriculum runs. The trainer redraws it at
every ``latest.pt`` checkpoint, so a run in progress always has a current plot.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Dict, List, Optional

import matplotlib

matplotlib.use("Agg")  # headless: no display is ever needed
import matplotlib.pyplot as plt  # noqa: E402

LEARNING_CURVE = "learning_curve.png"
PANELS = (
    ("success rate", (("rolling/success_rate", "rolling (training episodes)"), ("eval/success_rate", "evaluation"))),
    ("return", (("rolling/return_mean", "rolling (training episodes)"), ("eval/return_mean", "evaluation"))),
    (
        "curriculum",
        (
            ("curriculum/difficulty", "difficulty"),
            ("curriculum/full_distribution_success", "success, full start distribution"),
        ),
    ),
)


def _columns(metrics_csv: Path) -> Dict[str, List[float]]:
    with open(metrics_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    columns: Dict[str, List[float]] = {}
    for row in rows:
        for key, value in row.items():
            columns.setdefault(key, []).append(float(value) if value not in ("", None) else math.nan)
    return columns


def plot_learning_curve(run_dir: Path) -> Optional[Path]:
    """Write ``run_dir/learning_curve.png`` from ``run_dir/metrics.csv``; return its path (None while
    no metric has a value yet)."""
    run_dir = Path(run_dir)
    columns = _columns(run_dir / "metrics.csv")
    steps = columns.get("global_step", [])
    panels = [
        (title, [(key, label) for key, label in series if _has_values(columns.get(key))]) for title, series in PANELS
    ]
    panels = [(title, series) for title, series in panels if series]
    if not panels:
        return None
    figure, axes = plt.subplots(len(panels), 1, figsize=(7, 2.6 * len(panels)), sharex=True, squeeze=False)
    for axis, (title, series) in zip(axes[:, 0], panels):
        for key, label in series:
            points = [(s, v) for s, v in zip(steps, columns[key]) if not math.isnan(v)]
            axis.plot(*zip(*points), label=label, marker="." if len(points) < 20 else None)
        axis.set_ylabel(title)
        axis.grid(alpha=0.3)
        axis.legend(loc="best", fontsize="small")
    axes[-1, 0].set_xlabel("env steps")
    figure.suptitle(run_dir.name)
    figure.tight_layout()
    path = run_dir / LEARNING_CURVE
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def _has_values(values) -> bool:
    return bool(values) and any(not math.isnan(v) for v in values)
