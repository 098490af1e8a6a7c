"""The training config as ``scripts/train.py`` composes it, for in-process tests."""

from pathlib import Path

from agents.config import compose_train_config

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = str(ROOT / "configs")

# Fixed-length Pendulum episodes that fill exactly one rollout: every update ends on an episode
# boundary, so a resumed run must reproduce the uninterrupted one exactly.
PENDULUM = [
    "env=gym",
    "env.id=Pendulum-v1",
    "env.max_episode_steps=64",
    "model=mlp",
    "num_envs=2",
    "rollout_steps=64",
    "progress_bar=false",
]


def compose_train(overrides, config_dir: str = CONFIGS):
    """``configs/train.yaml`` with ``overrides`` (``key=value`` strings), typed by the schemas."""
    return compose_train_config(overrides, Path(config_dir))
