"""Metrics logging to ``metrics.csv``, TensorBoard (``tb/``) and Weights & Biases (``wandb/``).

All three receive the same flat ``{name: number}`` rows, keyed by the global
env step. CSV and TensorBoard are always written; wandb defaults to
``mode="offline"`` so training never needs an account or the network
(``wandb sync <run dir>/wandb/offline-run-*`` uploads later).

Resuming: ``resume_step`` is the step of the checkpoint the run restarts from.
Anything logged after it (by the crashed process, past its last checkpoint) is
dropped from the CSV and purged from TensorBoard, so the continued run does
not duplicate steps. wandb reuses the stored run id (``resume="allow"``) and
uses ``global_step`` as its x-axis, since wandb's own step cannot go backwards.
"""

from __future__ import annotations

import csv
import math
import os
import secrets
from pathlib import Path
from typing import Dict, List, Mapping, Optional

import numpy as np
from torch.utils.tensorboard import SummaryWriter

WANDB_MODES = ("online", "offline", "disabled")
STEP_KEY = "global_step"


class CSVWriter:
    """Appends rows to a CSV file; the header comes from the first row.

    A row with new columns rewrites the file once with the widened header
    (earlier rows get empty cells), so columns that appear late (e.g. the first
    evaluation) are never lost or misaligned.
    """

    def __init__(self, path: Path, resume_step: Optional[int] = None):
        self.path = Path(path)
        self.columns: List[str] = []
        if self.path.exists():
            rows = self._read()
            if resume_step is not None:
                rows = [r for r in rows if r.get(STEP_KEY, "") == "" or float(r[STEP_KEY]) <= resume_step]
            self._rewrite(self.columns, rows)

    def _read(self) -> List[Dict[str, str]]:
        with open(self.path, newline="") as f:
            reader = csv.DictReader(f)
            self.columns = list(reader.fieldnames or [])
            return list(reader)

    def _rewrite(self, columns: List[str], rows: List[Mapping]) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=columns)
            writer.writeheader()
            writer.writerows(rows)
        os.replace(tmp, self.path)
        self.columns = list(columns)

    def write(self, row: Mapping[str, float]) -> None:
        new = [k for k in row if k not in self.columns]
        if new or not self.path.exists():
            rows = self._read() if self.path.exists() else []
            self._rewrite(self.columns + new, rows)
        with open(self.path, "a", newline="") as f:
            csv.DictWriter(f, fieldnames=self.columns).writerow(row)


class Logger:
    """Writes metric rows to CSV, TensorBoard and (optionally) wandb.

    ``run_id`` is the wandb run id: pass the stored one when resuming so the
    same wandb run continues; a new one is generated otherwise. Keep it in the
    checkpoint (``Logger.run_id``).
    """

    def __init__(
        self,
        run_dir: Path,
        wandb_cfg: Mapping,
        run_config: Mapping,
        run_id: Optional[str] = None,
        resume_step: Optional[int] = None,
    ):
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.csv = CSVWriter(self.run_dir / "metrics.csv", resume_step)
        purge = None if resume_step is None else resume_step + 1
        self.tb = SummaryWriter(log_dir=str(self.run_dir / "tb"), purge_step=purge)
        self.wandb_run = None
        self.run_id = run_id or _new_run_id()
        mode = wandb_cfg["mode"]
        if mode not in WANDB_MODES:
            raise ValueError(f"logger.wandb.mode={mode!r} is not one of {list(WANDB_MODES)}")
        if mode != "disabled":
            self.wandb_run = _init_wandb(self.run_dir, wandb_cfg, run_config, self.run_id)

    def log(self, metrics: Mapping[str, float], step: int) -> None:
        """Log one row of scalars at env step ``step``; NaN/None values are skipped in TB and wandb."""
        row = {STEP_KEY: int(step), **{k: _scalar(k, v) for k, v in metrics.items() if k != STEP_KEY}}
        self.csv.write({k: ("" if v is None else v) for k, v in row.items()})
        finite = {k: v for k, v in row.items() if v is not None and not math.isnan(v)}
        for key, value in finite.items():
            if key != STEP_KEY:
                self.tb.add_scalar(key, value, global_step=step)
        if self.wandb_run is not None:
            self.wandb_run.log(finite)

    def close(self) -> None:
        self.tb.close()
        if self.wandb_run is not None:
            self.wandb_run.finish()
            self.wandb_run = None


def _scalar(name: str, value) -> Optional[float]:
    """A number for the CSV/TB/wandb row (ints stay ints in the CSV)."""
    if value is None:
        return None
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return int(value)
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"metric {name!r} must be a number, got {type(value).__name__}: {value!r}") from None


def _new_run_id() -> str:
    """8 random [a-z0-9] characters, like wandb's ids; ``secrets`` leaves the seeded RNGs untouched."""
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    return "".join(secrets.choice(alphabet) for _ in range(8))


def _init_wandb(run_dir: Path, cfg: Mapping, run_config: Mapping, run_id: str):
    """One wandb run per training run (and so per multirun job), stored under ``run_dir/wandb``.

    ``mode`` is passed explicitly (and WANDB_MODE set to match) so an offline
    run never tries the network, whatever the user's environment says.
    """
    import wandb

    os.environ.setdefault("WANDB_SILENT", "true")
    os.environ["WANDB_MODE"] = cfg["mode"]
    run = wandb.init(
        mode=cfg["mode"],
        project=cfg["project"],
        entity=cfg.get("entity"),
        group=cfg.get("group"),
        tags=list(cfg.get("tags") or []),
        name=cfg.get("name") or f"{run_dir.parent.name}/{run_dir.name}",
        id=run_id,
        resume="allow",
        dir=str(run_dir),
        config=dict(run_config),
        reinit="finish_previous",
        settings=wandb.Settings(silent=True, console="off", x_disable_stats=True, init_timeout=60),
    )
    run.define_metric(STEP_KEY)
    run.define_metric("*", step_metric=STEP_KEY)
    return run
