"""Evaluate a trained checkpoint: success rate (95% Wilson interval), return, steps to success, videos.

Usage (Hydra override syntax; defaults in ``configs/evaluate.yaml``)::

    python scripts/evaluate.py checkpoint=outputs/2025-01-01/12-00-00            # run dir: checkpoints/latest.pt
    python scripts/evaluate.py checkpoint=outputs/.../checkpoints/best.pt episodes=100 deterministic=true seed=1000
    python scripts/evaluate.py checkpoint=<run dir> which=best env.kwargs.clearance=0.001 video=true
    python scripts/evaluate.py checkpoint=<run dir> output=results/eval.json video=true video_format=gif

The env is rebuilt from the config stored in the checkpoint; ``env.*`` overrides
change it (checked against the env's schema, e.g. ``PegInsertionConfig``; for
``env=gym`` runs new kwargs may be added). The observation normaliser is
frozen (evaluation never updates it). Episode k starts from the same state for
a given ``seed`` whatever the checkpoint, so checkpoints compare on equal terms.

Outputs go to ``<run dir>/eval/<time>/`` (``results.json``, ``videos/``), or to
``output=<file.json>`` (videos beside it). The last stdout line is the summary
as one JSON object.
"""

from __future__ import annotations

import ctypes
import json
import math
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from agents import checkpoint as ckpt
from agents.config import register_configs, typed_config, validate_train_config
from agents.evaluation import run_episodes
from agents.registry import build_model
from agents.run_state import seed_everything
from agents.training_envs import env_kwargs, make_env

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
VIDEO_FORMATS = ("mp4", "gif")
Z_95 = 1.959963984540054


def wilson_interval(successes: int, n: int, z: float = Z_95) -> Tuple[float, float]:
    """Wilson score interval for a binomial proportion (well behaved near 0 and 1, unlike the normal one)."""
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    denominator = 1.0 + z * z / n
    center = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    low = 0.0 if successes == 0 else max(0.0, center - half)  # exact ends, no rounding residue
    high = 1.0 if successes == n else min(1.0, center + half)
    return (low, high)


def parse_arguments(argv: Sequence[str]) -> Tuple[DictConfig, List[Tuple[str, Any]]]:
    """Compose ``configs/evaluate.yaml`` with the overrides; ``env.*`` ones are returned apart."""
    overrides = OverridesParser.create().parse_overrides(list(argv))
    env_overrides = [(o.key_or_group, o.value()) for o in overrides if o.key_or_group.startswith("env.")]
    others = [o.input_line for o in overrides if not o.key_or_group.startswith("env.")]
    register_configs()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3", job_name="evaluate"):
        cfg = compose(config_name="evaluate", overrides=others)
    if cfg.episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {cfg.episodes}")
    if cfg.which not in (ckpt.LATEST[:-3], ckpt.BEST[:-3]):
        raise ValueError(f"which={cfg.which!r} is not one of ['latest', 'best']")
    if cfg.video_format not in VIDEO_FORMATS:
        raise ValueError(f"video_format={cfg.video_format!r} is not one of {list(VIDEO_FORMATS)}")
    return cfg, env_overrides


def env_config(checkpoint: Dict[str, Any], overrides: List[Tuple[str, Any]]) -> DictConfig:
    """The checkpoint's typed train config with the ``env.*`` overrides applied and validated."""
    cfg = typed_config(checkpoint["config"])
    for key, value in overrides:
        free_form = cfg.env.name == "gym" and key.startswith("env.kwargs.")
        OmegaConf.update(cfg, key, value, merge=True, force_add=free_form)
    validate_train_config(cfg)
    return cfg


def output_paths(cfg: DictConfig, checkpoint_path: Path) -> Tuple[Path, Path]:
    """(results JSON, videos dir)."""
    if cfg.output:
        output = Path(cfg.output)
        return output, output.parent / f"{output.stem}_videos"
    run_dir = checkpoint_path.parent.parent if checkpoint_path.parent.name == "checkpoints" else checkpoint_path.parent
    directory = run_dir / "eval" / time.strftime("%Y-%m-%d_%H-%M-%S")
    return directory / "results.json", directory / "videos"


class VideoRecorder:
    """Collects ``env.render()`` frames of the first ``episodes`` episodes; one file per episode."""

    def __init__(self, directory: Path, episodes: int, video_format: str, fps: int):
        self.directory, self.episodes, self.format, self.fps = directory, episodes, video_format, fps
        self.frames: List[np.ndarray] = []
        self.current = 0
        self.files: List[str] = []

    def __call__(self, episode: int, env) -> None:
        if episode != self.current:
            self.flush()
            self.current = episode
        if episode < self.episodes:
            frame = env.render()
            if frame is None:
                raise RuntimeError("env.render() returned None: the env does not support render_mode='rgb_array'")
            self.frames.append(np.asarray(frame))

    def flush(self) -> None:
        if not self.frames:
            return
        import imageio.v2 as imageio

        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"episode_{self.current:03d}.{self.format}"
        if self.format == "mp4":
            imageio.mimwrite(path, self.frames, fps=self.fps, macro_block_size=1)
        else:
            imageio.mimwrite(path, self.frames, duration=1000.0 / self.fps, loop=0)
        self.files.append(str(path))
        self.frames = []


def summarize(results: List[Dict[str, Any]]) -> Dict[str, Any]:
    returns = [r["return"] for r in results]
    reports_success = any(r["reports_success"] for r in results)
    successes = sum(r["success"] for r in results)
    to_success = [r["steps_to_success"] for r in results if r["success"]]
    summary = {
        "episodes": len(results),
        "success_rate": successes / len(results) if reports_success else None,
        "success_ci95": list(wilson_interval(successes, len(results))) if reports_success else None,
        "successes": successes if reports_success else None,
        "mean_return": float(np.mean(returns)),
        "std_return": float(np.std(returns)),
        "mean_length": float(np.mean([r["length"] for r in results])),
        "mean_steps_to_success": float(np.mean(to_success)) if to_success else None,
    }
    return summary


def evaluate(argv: Sequence[str]) -> Dict[str, Any]:
    cfg, env_overrides = parse_arguments(argv)
    path = ckpt.resolve_checkpoint_path(cfg.checkpoint, f"{cfg.which}.pt")
    checkpoint = ckpt.load_checkpoint(path)
    train_cfg = env_config(checkpoint, env_overrides)
    seed_everything(cfg.seed)  # stochastic policies (deterministic=false) sample from torch's RNG

    env = make_env(
        train_cfg.env.id,
        train_cfg.env.max_episode_steps,
        render_mode="rgb_array" if cfg.video else None,
        **env_kwargs(train_cfg.env),
    )
    results_path, video_dir = output_paths(cfg, path)
    recorder = VideoRecorder(video_dir, cfg.video_episodes, cfg.video_format, cfg.video_fps) if cfg.video else None
    try:
        ckpt.check_spaces(checkpoint, env.observation_space, env.action_space, path)
        model = build_model(train_cfg.model, env.observation_space, env.action_space).to(cfg.device)
        ckpt.load_model_state(model, checkpoint, path)
        results = run_episodes(env, model, cfg.episodes, cfg.deterministic, cfg.seed, cfg.device, on_step=recorder)
        if recorder:
            recorder.flush()
    finally:
        env.close()

    summary = {
        "checkpoint": str(path),
        "global_step": checkpoint["global_step"],
        "env_id": train_cfg.env.id,
        "env_overrides": {k: v for k, v in env_overrides},
        "deterministic": cfg.deterministic,
        "seed": cfg.seed,
        **summarize(results),
        "videos": recorder.files if recorder else [],
        "results": str(results_path),
    }
    results_path.parent.mkdir(parents=True, exist_ok=True)
    with open(results_path, "w") as f:
        json.dump(
            {**summary, "config": OmegaConf.to_container(train_cfg, resolve=True), "per_episode": results}, f, indent=2
        )
    return summary


def main(argv: Optional[Sequence[str]] = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if any(a in ("-h", "--help") for a in argv):
        print(__doc__)
        return
    try:
        summary = evaluate(argv)
    except (ckpt.CheckpointError, ValueError, FileNotFoundError, HydraException, OmegaConfBaseException) as e:
        sys.exit(f"Error: {type(e).__name__}: {e}")
    rate = summary["success_rate"]
    if rate is not None:
        lo, hi = summary["success_ci95"]
        print(f"success rate {rate:.3f} (95% CI {lo:.3f}-{hi:.3f}) over {summary['episodes']} episodes")
    print(
        f"mean return {summary['mean_return']:.3f} +- {summary['std_return']:.3f}, "
        f"mean steps to success {summary['mean_steps_to_success']}"
    )
    print(f"results: {summary['results']}")
    # C libraries (PyBullet) print through their own stdio buffer: flush it first so the JSON stays last.
    sys.stdout.flush()
    ctypes.CDLL(None).fflush(None)
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
