"""Trainer plugins: called at every step of the loop, logged, saved in checkpoints, restored on resume."""

import csv

import pytest
from train_config import PENDULUM, compose_train

from agents import checkpoint as ckpt
from agents.trainer import TrainerPlugin, train

pytestmark = pytest.mark.usefixtures("single_thread")

RUN = [*PENDULUM, "agent.num_epochs=1", "async_envs=false", "logger.wandb.mode=disabled", "checkpoint_every=1"]


class EpisodeCounter(TrainerPlugin):
    """Counts the episodes it is shown; its count must survive a restart."""

    name = "episode_counter"

    def __init__(self):
        self.built, self.episodes = False, 0

    def after_build(self, trainer):
        self.built = trainer.model is not None

    def after_collect(self, trainer, stats):
        self.episodes += len(stats["returns"])

    def metrics(self, trainer):
        return {"plugin/episodes": self.episodes}

    def state_dict(self):
        return {"episodes": self.episodes}

    def load_state_dict(self, state):
        self.episodes = state["episodes"]


def config(total_steps):
    return compose_train([*RUN, f"total_steps={total_steps}"])


def test_plugin_sees_every_rollout_logs_and_resumes(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run_dir, plugin = tmp_path / "run", EpisodeCounter()
    train(config(256), run_dir, plugins=[plugin])
    assert plugin.built and plugin.episodes == 4  # 2 updates x 2 envs x one 64-step episode each
    saved = ckpt.load_checkpoint(run_dir / "checkpoints" / ckpt.LATEST)
    assert saved["trainer"]["plugins"] == {"episode_counter": {"episodes": 4}}

    resumed = EpisodeCounter()
    train(config(512), run_dir, checkpoint=saved, plugins=[resumed])
    assert resumed.episodes == 8  # continued from the checkpoint's 4
    with open(run_dir / "metrics.csv") as f:
        assert [float(row["plugin/episodes"]) for row in csv.DictReader(f)] == [2, 4, 6, 8]


def test_resuming_with_a_plugin_the_checkpoint_lacks_fails_clearly(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run_dir = tmp_path / "run"
    train(config(128), run_dir)
    saved = ckpt.load_checkpoint(run_dir / "checkpoints" / ckpt.LATEST)
    with pytest.raises(ckpt.CheckpointError, match="no state for plugin 'episode_counter'"):
        train(config(256), run_dir, checkpoint=saved, plugins=[EpisodeCounter()])


def test_plugin_names_must_be_unique(tmp_path):
    with pytest.raises(ValueError, match="plugin names must be unique"):
        train(config(128), tmp_path / "run", plugins=[EpisodeCounter(), EpisodeCounter()])
