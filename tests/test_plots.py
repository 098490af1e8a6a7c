"""The learning-curve PNG (agents/plots.py) of a run directory."""

import csv

from agents.plots import LEARNING_CURVE, plot_learning_curve

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def write_metrics(path, rows):
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=sorted({k for row in rows for k in row}))
        writer.writeheader()
        writer.writerows(rows)


def test_curve_with_success_evaluation_and_curriculum(tmp_path):
    rows = [
        {
            "global_step": 1024 * i,
            "rolling/success_rate": i / 10,
            "rolling/return_mean": -50 + i,
            "eval/success_rate": "" if i % 2 else i / 10,
            "curriculum/difficulty": i / 20,
            "curriculum/full_distribution_success": "",
        }
        for i in range(1, 8)
    ]
    write_metrics(tmp_path / "metrics.csv", rows)
    path = plot_learning_curve(tmp_path)
    assert path == tmp_path / LEARNING_CURVE and path.read_bytes()[:8] == PNG_MAGIC


def test_no_values_yet_means_no_plot(tmp_path):
    write_metrics(tmp_path / "metrics.csv", [{"global_step": 512, "rolling/success_rate": ""}])
    assert plot_learning_curve(tmp_path) is None and not (tmp_path / LEARNING_CURVE).exists()
