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

Videos (``video=true``: the first ``video_episodes`` episodes) play in real time: the
GraphInsertion envs render a frame every ``1 / video_fps`` s of simulated time, between
actions too (one action lasts ``sim.substeps * sim.time_step``: 0.04 s for the Panda,
0.025 s for the floating robot), at ``video_width`` x ``video_height`` (640x480; they
set ``env.kwargs.sim.image_width/height``). The last frame is held ``video_hold_seconds``
(1 s) and ``video_overlay=true`` writes step, reward and success on the frames.
``env=gym`` runs get one frame per step at the env's own render size.
"""

from __future__ import annotations

import ctypes
import functools
import json
import math
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import gymnasium as gym
import numpy as np
from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException
from PIL import Image, ImageDraw, ImageFont

from agents import checkpoint as ckpt
from agents.config import register_configs, typed_config, validate_device, validate_env_config, validate_seed
from agents.evaluation import run_episodes
from agents.registry import build_model
from agents.run_state import seed_everything
from agents.threads import set_cpu_threads
from agents.training_envs import env_kwargs, make_env
from envs.config import MAX_IMAGE_SIZE

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
VIDEO_FORMATS = ("mp4", "gif")
MS_PER_SECOND = 1000.0
OVERLAY_FONT_FRACTION = 1 / 24  # text height as a fraction of the frame height (20 px at 480)
OVERLAY_MIN_FONT = 10  # pixels
OVERLAY_MARGIN_FRACTION = 1 / 60  # gap between the text and the frame's edges, of the frame height
OVERLAY_OUTLINE_FRACTION = 1 / 10  # width of the text's dark outline, of the font size
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
    if cfg.torch_threads < 1:
        raise ValueError(f"torch_threads must be >= 1, got {cfg.torch_threads}")
    validate_seed("seed", cfg.seed)
    validate_device(cfg.device)
    if cfg.which not in (ckpt.LATEST[:-3], ckpt.BEST[:-3]):
        raise ValueError(f"which={cfg.which!r} is not one of ['latest', 'best']")
    if cfg.video_format not in VIDEO_FORMATS:
        raise ValueError(f"video_format={cfg.video_format!r} is not one of {list(VIDEO_FORMATS)}")
    check_video_options(cfg)
    return cfg, env_overrides


def check_video_options(cfg: DictConfig) -> None:
    """Raise a ``ValueError`` naming the first bad ``video_*`` value."""
    if cfg.video_episodes < 0:
        raise ValueError(f"video_episodes must be >= 0, got {cfg.video_episodes}")
    if cfg.video_fps < 1:
        raise ValueError(f"video_fps must be >= 1, got {cfg.video_fps}")
    if not (math.isfinite(cfg.video_hold_seconds) and cfg.video_hold_seconds >= 0):
        raise ValueError(f"video_hold_seconds must be a finite number >= 0, got {cfg.video_hold_seconds}")
    even = cfg.video_format == "mp4"  # the H.264 encoder's yuv420p needs even sides
    for key in ("video_width", "video_height"):
        value = cfg[key]
        if not 1 <= value <= MAX_IMAGE_SIZE or (even and value % 2):
            kind = "an even integer" if even else "an integer"
            where = " for mp4" if even else ""
            raise ValueError(f"{key} must be {kind} in [1, {MAX_IMAGE_SIZE}]{where}, got {value}")


def env_config(checkpoint: Dict[str, Any], overrides: List[Tuple[str, Any]]) -> DictConfig:
    """The checkpoint's typed train config with the ``env.*`` overrides applied and validated.

    Only its env and model are checked: the training-only keys (its device, batch, ...) do not apply here.
    """
    cfg = typed_config(checkpoint["config"])
    for key, value in overrides:
        free_form = cfg.env.name == "gym" and key.startswith("env.kwargs.")
        OmegaConf.update(cfg, key, value, merge=True, force_add=free_form)
    validate_env_config(cfg)
    return cfg


def set_video_size(train_cfg: DictConfig, cfg: DictConfig) -> None:
    """Render the GraphInsertion envs at the video size (the env's default, 320x240, is for quick looks)."""
    if cfg.video and train_cfg.env.name != "gym":
        train_cfg.env.kwargs.sim.image_width = cfg.video_width
        train_cfg.env.kwargs.sim.image_height = cfg.video_height


def output_paths(cfg: DictConfig, checkpoint_path: Path) -> Tuple[Path, Path]:
    """(results JSON, videos dir)."""
    if cfg.output:
        output = Path(cfg.output)
        return output, output.parent / f"{output.stem}_videos"
    run_dir = checkpoint_path.parent.parent if checkpoint_path.parent.name == "checkpoints" else checkpoint_path.parent
    directory = run_dir / "eval" / time.strftime("%Y-%m-%d_%H-%M-%S")
    return directory / "results.json", directory / "videos"


class VideoRecorder(gym.Wrapper):
    """Records the first ``episodes`` episodes as videos that play in real time; one file per episode.

    Envs with ``set_frame_callback`` (``envs.base.InsertionEnv``) hand over a frame every
    ``1 / fps`` s of simulated time, between actions too; other envs are rendered once per
    step. The final frame is held ``hold_seconds``; ``overlay`` writes step, reward and
    success on every frame. Episodes past ``episodes`` cost nothing.
    """

    def __init__(
        self,
        env: gym.Env,
        directory: Path,
        episodes: int,
        video_format: str,
        fps: int,
        hold_seconds: float = 1.0,
        overlay: bool = True,
    ):
        super().__init__(env)
        self.directory, self.episodes, self.format = directory, episodes, video_format
        self.hold_seconds, self.overlay = hold_seconds, overlay
        self.within_steps = hasattr(env.unwrapped, "set_frame_callback")
        self.fps = fps  # playback rate: the real-time rate of the frames
        if self.within_steps:
            try:
                self.fps = env.unwrapped.set_frame_callback(self._add, fps)
            except ValueError as e:
                raise ValueError(f"video_fps={fps}: {e}") from None
        self.frames: List[np.ndarray] = []
        self.files: List[str] = []
        self.episode = -1
        self._steps, self._reward, self._success = 0, 0.0, False

    @property
    def recording(self) -> bool:
        return 0 <= self.episode < self.episodes

    def reset(self, *, seed: Optional[int] = None, options: Optional[dict] = None):
        observation, info = self.env.reset(seed=seed, options=options)
        self.episode += 1
        self.frames, self._steps, self._reward, self._success = [], 0, 0.0, False
        if self.recording:
            self._add(self.env.render())
        elif self.within_steps:
            self.env.unwrapped.clear_frame_callback()
        return observation, info

    def step(self, action):
        observation, reward, terminated, truncated, info = self.env.step(action)
        if self.recording:
            self._steps, self._reward = self._steps + 1, float(reward)
            self._success = self._success or bool(info.get("is_success", False))
            if not self.within_steps:
                self._add(self.env.render())
            if terminated or truncated:
                self._finish_episode()
        return observation, reward, terminated, truncated, info

    def hold_frames(self) -> int:
        return round(self.hold_seconds * self.fps)

    def _add(self, frame: Optional[np.ndarray]) -> None:
        if frame is None:
            raise RuntimeError("env.render() returned None: the env does not support render_mode='rgb_array'")
        frame = np.asarray(frame)
        if self.overlay:
            success = "yes" if self._success else "no"
            frame = draw_text(frame, f"step {self._steps}   reward {self._reward:+.3f}   success {success}")
        self.frames.append(frame)

    def _finish_episode(self) -> None:
        """Hold the final state (freshly rendered: the last frame within the step may be earlier) and write."""
        hold = self.hold_frames()
        if hold:
            self._add(self.env.render())
            self.frames.extend([self.frames[-1]] * (hold - 1))
        self._write()

    def _write(self) -> None:
        import imageio.v2 as imageio

        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"episode_{self.episode:03d}.{self.format}"
        if self.format == "mp4":
            imageio.mimwrite(path, self.frames, fps=self.fps, macro_block_size=1)
        else:
            imageio.mimwrite(path, self.frames, duration=MS_PER_SECOND / self.fps, loop=0)
        self.files.append(str(path))


@functools.lru_cache(maxsize=None)
def overlay_font(size: int) -> ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def draw_text(frame: np.ndarray, text: str) -> np.ndarray:
    """A copy of ``frame`` with ``text`` in its top-left corner, white outlined in black (legible on any scene)."""
    height = frame.shape[0]
    size = max(OVERLAY_MIN_FONT, round(height * OVERLAY_FONT_FRACTION))
    margin = round(height * OVERLAY_MARGIN_FRACTION)
    image = Image.fromarray(frame)
    outline = max(1, round(size * OVERLAY_OUTLINE_FRACTION))
    ImageDraw.Draw(image).text(
        (margin, margin), text, fill="white", font=overlay_font(size), stroke_width=outline, stroke_fill="black"
    )
    return np.asarray(image)


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
    set_video_size(train_cfg, cfg)
    set_cpu_threads(cfg.torch_threads)
    seed_everything(cfg.seed)  # stochastic policies (deterministic=false) sample from torch's RNG

    results_path, video_dir = output_paths(cfg, path)
    env = make_env(
        train_cfg.env.id,
        train_cfg.env.max_episode_steps,
        render_mode="rgb_array" if cfg.video else None,
        **env_kwargs(train_cfg.env),
    )
    recorder = None
    try:
        if cfg.video:
            env = recorder = VideoRecorder(
                env,
                video_dir,
                cfg.video_episodes,
                cfg.video_format,
                cfg.video_fps,
                cfg.video_hold_seconds,
                cfg.video_overlay,
            )
        ckpt.check_spaces(checkpoint, env.observation_space, env.action_space, path)
        model = build_model(train_cfg.model, env.observation_space, env.action_space).to(cfg.device)
        ckpt.load_model_state(model, checkpoint, path)
        results = run_episodes(env, model, cfg.episodes, cfg.deterministic, cfg.seed, cfg.device)
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
        "videos": recorder.files if recorder is not None else [],
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
