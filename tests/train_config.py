"""The training config as ``scripts/train.py`` composes it, for in-process tests."""

from agents.config import compose_train_config as compose_train  # noqa: F401  (re-exported for the tests)

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
