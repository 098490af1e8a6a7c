"""Training checkpoints: everything needed to continue a run exactly or to evaluate it.

A checkpoint is one ``torch.save`` file holding plain data only (tensors,
numbers, strings, lists, dicts), so it loads with ``weights_only=True`` and
never executes pickled code:

- ``model``: the actor-critic ``state_dict`` (includes the observation normaliser buffers)
- ``algorithm``: the PPO/TRPO ``state_dict`` (optimizers, lr schedule, KL penalty ...)
- ``rng``: python, numpy and torch generator states
- ``global_step``, ``updates``, ``best_metric``, ``run_id`` (the logger's wandb id)
- ``config``: the resolved run config (a plain dict) and ``spaces``: structural
  signatures of the observation/action spaces, checked on load
- ``trainer``: small extra trainer state (e.g. recent episode statistics)
- ``format_version``

Writes are atomic: a temporary file in the same directory is fsynced and then
``os.replace``d over the target, so a crash mid-write leaves the previous
checkpoint intact.
"""

from __future__ import annotations

import os
import pickle
import random
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Dict, Mapping, Optional

import gymnasium as gym
import numpy as np
import torch

from agents.graph_batch import GRAPH_KEYS

# 2: PPO's single Adam, reward-scaling statistics; 3: the dense graph network; 4: its multiplied-out attention
FORMAT_VERSION = 4
LATEST = "latest.pt"
BEST = "best.pt"
REQUIRED_KEYS = (
    "format_version",
    "model",
    "algorithm",
    "rng",
    "global_step",
    "updates",
    "best_metric",
    "run_id",
    "config",
    "spaces",
    "trainer",
)


class CheckpointError(RuntimeError):
    """A checkpoint is missing, unreadable or does not fit the model/env it is loaded into."""


class CheckpointWriteError(CheckpointError):
    """A checkpoint could not be written (disk full, permissions); the previous one is intact."""


# ---------------------------------------------------------------- RNG state


def capture_rng() -> Dict[str, Any]:
    """Python, numpy (legacy global) and torch CPU generator states as plain data."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": {
            "name": name,
            "keys": keys.tolist(),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "torch": torch.get_rng_state(),
    }


def restore_rng(state: Mapping[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state(
        (n["name"], np.asarray(n["keys"], dtype=np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"])
    )
    torch.set_rng_state(state["torch"])


# ------------------------------------------------------- space signatures


def space_signature(space: gym.Space) -> Dict[str, Any]:
    """Type, shape and dtype of a space (recursively for Dict), ignoring bounds.

    Bounds may legitimately change between training and evaluation (e.g. a
    different clearance); shapes and dtypes may not, the model depends on them.
    """
    if isinstance(space, gym.spaces.Dict):
        return {"type": "Dict", "spaces": {k: space_signature(s) for k, s in space.spaces.items()}}
    return {"type": type(space).__name__, "shape": list(space.shape or ()), "dtype": str(space.dtype)}


def _graph_signature(signature: Mapping[str, Any]) -> Optional[Dict[str, Any]]:
    """For a graph observation (a Dict with the graph keys): what a graph model depends on, i.e. the
    keys, dtypes and feature sizes, without the padded node and edge counts. None for other spaces."""
    spaces = signature.get("spaces", {})
    if signature.get("type") != "Dict" or set(spaces) != set(GRAPH_KEYS):
        return None
    return {
        key: {
            "dtype": s["dtype"],
            "rank": len(s["shape"]),
            "features": s["shape"][-1] if key in ("nodes", "edge_attr") else None,
        }
        for key, s in spaces.items()
    }


def check_spaces(
    checkpoint: Mapping, observation_space: gym.Space, action_space: gym.Space, path: Path | str = "<checkpoint>"
) -> None:
    """Raise ``CheckpointError`` if the env's spaces differ from the ones the checkpoint was trained on.

    Graph observations may have more or fewer (padded) nodes and edges than in training: a graph
    model runs on any node count (docs/CONTRACTS.md), so only their keys, dtypes and feature sizes
    must match. Every other space must match exactly in type, shape and dtype.
    """
    for name, space in (("observation", observation_space), ("action", action_space)):
        saved, current = checkpoint["spaces"][name], space_signature(space)
        saved_graph, current_graph = _graph_signature(saved), _graph_signature(current)
        compatible = saved_graph == current_graph if saved_graph is not None else saved == current
        if not compatible:
            raise CheckpointError(
                f"checkpoint {path} is incompatible with this env: its {name} space was "
                f"{saved} but the env now has {current}"
            )


# ------------------------------------------------------------- save/load


def save_checkpoint(
    path: Path | str,
    *,
    model: torch.nn.Module,
    algorithm,
    global_step: int,
    updates: int,
    best_metric: Optional[float],
    run_id: Optional[str],
    config: Mapping,
    observation_space: gym.Space,
    action_space: gym.Space,
    trainer: Optional[Mapping] = None,
) -> Path:
    """Atomically write a checkpoint to ``path`` (parent directories are created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format_version": FORMAT_VERSION,
        "model": model.state_dict(),
        "algorithm": algorithm.state_dict(),
        "rng": capture_rng(),
        "global_step": int(global_step),
        "updates": int(updates),
        "best_metric": None if best_metric is None else float(best_metric),
        "run_id": run_id,
        "config": dict(config),
        "spaces": {"observation": space_signature(observation_space), "action": space_signature(action_space)},
        "trainer": dict(trainer or {}),
    }
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except (OSError, RuntimeError) as error:  # torch's zip writer reports a full disk as a RuntimeError
        _remove(tmp)
        reason = str(error).strip().splitlines()[-1] if str(error).strip() else type(error).__name__
        raise CheckpointWriteError(f"could not write {path}: {reason}") from error
    except BaseException:
        _remove(tmp)
        raise
    return path


def _remove(path: str) -> None:
    if os.path.exists(path):
        os.unlink(path)


# ------------------------------------------------------------- history of latest checkpoints
#
# ``latest.pt`` is the newest of the last ``keep`` checkpoints, which are kept as
# ``step_<global step>.pt`` (``latest.pt`` is a hard link to the newest, so it costs no space):
# when ``latest.pt`` is corrupt or missing, a resume falls back to the newest readable one.

HISTORY_PREFIX = "step_"


def history_path(directory: Path, global_step: int) -> Path:
    return Path(directory) / f"{HISTORY_PREFIX}{int(global_step):012d}.pt"


def history(directory: Path) -> list:
    """The kept ``step_*.pt`` checkpoints of a checkpoints directory, newest first."""
    return sorted(Path(directory).glob(f"{HISTORY_PREFIX}*.pt"), reverse=True)


def publish_latest(step_file: Path, keep: int) -> Path:
    """Make ``step_file`` the directory's ``latest.pt`` (atomically) and drop all but the newest ``keep``."""
    directory = step_file.parent
    latest = directory / LATEST
    tmp = directory / f".{LATEST}.link.tmp"
    _remove(str(tmp))
    try:
        os.link(step_file, tmp)
    except OSError:  # a file system without hard links: a copy instead
        shutil.copyfile(step_file, tmp)
    os.replace(tmp, latest)
    for old in history(directory)[keep:]:
        old.unlink()
    return latest


def load_latest(run_dir: Path | str) -> tuple:
    """``(checkpoint, path, problem)``: ``latest.pt`` of a run, or, when it is missing or unreadable, the
    newest readable kept checkpoint (``problem`` then says what was wrong with ``latest.pt``).
    Raises ``CheckpointError`` naming every file tried when none can be read."""
    directory = Path(run_dir) / "checkpoints"
    candidates = [directory / LATEST, *history(directory)]
    problems = []
    for path in candidates:
        try:
            return load_checkpoint(path), path, (problems[0] if problems else None)
        except CheckpointError as error:
            problems.append(str(error))
    raise CheckpointError(
        f"no readable checkpoint in {directory} (tried {', '.join(p.name for p in candidates)}): {problems[0]}"
    )


def load_checkpoint(path: Path | str) -> Dict[str, Any]:
    """Read and sanity-check a checkpoint file; errors name the path and the problem."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path}")
    if not path.is_file():
        raise CheckpointError(f"checkpoint path is not a file: {path}")
    if not zipfile.is_zipfile(path):
        raise CheckpointError(
            f"checkpoint {path} is not a torch checkpoint file (corrupt, truncated, or another kind of file)"
        )
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, zipfile.BadZipFile, RuntimeError, EOFError, ValueError) as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(
            f"checkpoint {path} could not be read (corrupt, or not a checkpoint of this project): {reason}"
        ) from e
    if not isinstance(checkpoint, dict) or "format_version" not in checkpoint:
        raise CheckpointError(f"checkpoint {path} has no format_version: not a checkpoint of this project")
    if checkpoint["format_version"] != FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {path} has format version {checkpoint['format_version']}, "
            f"this code reads version {FORMAT_VERSION}"
        )
    missing = [k for k in REQUIRED_KEYS if k not in checkpoint]
    if missing:
        raise CheckpointError(f"checkpoint {path} is missing entries {missing}")
    return checkpoint


def load_model_state(model: torch.nn.Module, checkpoint: Mapping, path: Path | str = "<checkpoint>") -> None:
    """``model.load_state_dict`` with an error that names the checkpoint and the mismatching tensors."""
    current = model.state_dict()
    saved = checkpoint["model"]
    missing = sorted(set(current) - set(saved))
    unexpected = sorted(set(saved) - set(current))
    shapes = sorted(
        f"{k}: checkpoint {tuple(saved[k].shape)} vs model {tuple(current[k].shape)}"
        for k in set(saved) & set(current)
        if saved[k].shape != current[k].shape
    )
    if missing or unexpected or shapes:
        raise CheckpointError(
            f"checkpoint {path} does not match the model (was it trained with another "
            f"model config or env?): missing {missing}, unexpected {unexpected}, "
            f"shape mismatches {shapes}"
        )
    model.load_state_dict(saved)


def resolve_checkpoint_path(path: Path | str, name: str = LATEST) -> Path:
    """A checkpoint file, or ``<run dir>/checkpoints/<name>`` when given a run directory."""
    path = Path(path)
    if path.is_dir():
        candidate = path / "checkpoints" / name
        if not candidate.exists():
            raise CheckpointError(f"no checkpoint {candidate} in run directory {path}")
        return candidate
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path}")
    return path
