"""The environments a run trains and evaluates on, built from the config's ``env`` node.

``EpisodeSeeding`` makes every episode a pure function of (seed, env index, episode index), so
episodes can be replayed (resume, evaluation); ``make_training_envs`` builds the vector env and
its optional reward scaling, whose statistics travel with checkpoints.
"""

from __future__ import annotations

import functools
import multiprocessing
import signal
from pathlib import Path
from typing import Any, Dict, Mapping, Optional

import gymnasium as gym
import numpy as np
from omegaconf import DictConfig, OmegaConf

import envs as _registers_env_ids  # noqa: F401  (GraphInsertion/* ids, also in env worker processes)
from agents.env_guards import NONFINITE_KEY, NonFiniteGuard
from agents.rollout import make_vector_env
from agents.run_state import STOP_SIGNALS
from agents.start_states import AssignedStart


class EpisodeSeeding(gym.Wrapper):
    """Seeds every reset from (base seed, episode index) so each episode can be replayed exactly.

    ``reset(seed=s)`` sets the base seed and restarts the count at episode 0;
    ``reset()`` (e.g. the vector env's autoreset) starts the next episode.
    ``episode_seeding_next`` may be set from outside (``VectorEnv.set_attr``)
    to restart a given episode. Before the first seeded reset it is a no-op.
    """

    def __init__(self, env: gym.Env):
        super().__init__(env)
        self.episode_seeding_base: Optional[int] = None
        self.episode_seeding_next = 0
        self.episode_seeding_current = -1

    def reset(self, *, seed: Optional[int] = None, options: Optional[dict] = None):
        if seed is not None:
            self.episode_seeding_base, self.episode_seeding_next = int(seed), 0
        if self.episode_seeding_base is None:
            return self.env.reset(options=options)
        self.episode_seeding_current = self.episode_seeding_next
        self.episode_seeding_next += 1
        sequence = np.random.SeedSequence([self.episode_seeding_base, self.episode_seeding_current])
        return self.env.reset(seed=int(sequence.generate_state(1)[0]), options=options)


def ignore_stop_signals() -> None:
    """In an env worker: stop signals are for the training loop (``agents.run_state.STOP_SIGNALS``).

    A Ctrl-C in a terminal, or SLURM/systemd/a container runtime signalling the whole process
    group, reaches the workers too; if they died at once the trainer could not finish the rollout
    and write ``latest.pt``. The trainer closes them when it is done.
    """
    for signum in STOP_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)


def make_env(
    env_id: str,
    max_episode_steps: Optional[int] = None,
    render_mode: Optional[str] = None,
    nonfinite_dir: Optional[str] = None,
    **kwargs,
) -> gym.Env:
    """One env from the config's ``env.id``/``max_episode_steps``/``kwargs``, with ``EpisodeSeeding``,
    ``AssignedStart`` (agents/start_states.py: the start a curriculum assigns to this worker) and
    ``NonFiniteGuard`` (agents/env_guards.py: a blow-up ends the episode; dumps go to ``nonfinite_dir``)."""
    if multiprocessing.parent_process() is not None:
        ignore_stop_signals()
    extra = {} if render_mode is None else {"render_mode": render_mode}
    env = gym.make(env_id, max_episode_steps=max_episode_steps, **extra, **kwargs)
    return EpisodeSeeding(AssignedStart(NonFiniteGuard(env, nonfinite_dir)))


def env_kwargs(env_cfg: DictConfig) -> Dict[str, Any]:
    return OmegaConf.to_container(env_cfg.kwargs, resolve=True)


def make_training_envs(cfg: DictConfig, nonfinite_dir: Optional[Path] = None) -> gym.vector.VectorEnv:
    """The vector env of ``cfg``, wrapped for reward scaling when ``normalize_rewards``; envs whose
    observation or reward blows up write what is needed to replay it to ``nonfinite_dir``.

    Env attributes are reached through ``envs.unwrapped`` (vector wrappers do not forward ``get_attr``).
    """
    dump_dir = None if nonfinite_dir is None else str(nonfinite_dir)
    factory = functools.partial(make_env, cfg.env.id, cfg.env.max_episode_steps, nonfinite_dir=dump_dir)
    # "fork" explicitly: inside Hydra's joblib (loky) workers the default start method pickles the
    # workers' arguments, and gymnasium's shared-memory observation buffers cannot be pickled.
    context = "fork" if "fork" in multiprocessing.get_all_start_methods() else None
    envs = make_vector_env(
        factory,
        env_kwargs(cfg.env),
        num_envs=cfg.num_envs,
        seed=cfg.seed,
        asynchronous=cfg.async_envs,
        context=context,
        info_keys=None if cfg.info_keys is None else [*cfg.info_keys, *curriculum_info_keys(cfg), NONFINITE_KEY],
        worker_timeout=cfg.worker_timeout,
    )
    if cfg.normalize_rewards:
        # Rewards divided by the running std of their discounted sum (as SB3's VecNormalize and
        # CleanRL do). RecordEpisodeStatistics sits inside each env, so logged returns stay raw.
        envs = gym.wrappers.vector.NormalizeReward(envs, gamma=cfg.agent.gamma)
    return envs


def reward_statistics(envs: gym.vector.VectorEnv) -> Optional[Dict[str, float]]:
    """Reward scaling's running statistics (None without it), as a checkpoint stores them."""
    if not isinstance(envs, gym.wrappers.vector.NormalizeReward):
        return None
    stats = envs.return_rms
    return {"mean": float(stats.mean), "var": float(stats.var), "count": float(stats.count)}


def restore_reward_statistics(envs: gym.vector.VectorEnv, saved: Optional[Mapping[str, float]]) -> None:
    """Put back what ``reward_statistics`` saved (the config, and so the wrapper, cannot change on resume)."""
    if isinstance(envs, gym.wrappers.vector.NormalizeReward):
        stats = envs.return_rms
        stats.mean, stats.var, stats.count = np.float64(saved["mean"]), np.float64(saved["var"]), saved["count"]


def curriculum_info_keys(cfg: DictConfig) -> list:
    """Info entries a curriculum reads (the start each episode began from), besides ``info_keys``."""
    return [] if cfg.curriculum.name == "none" else ["start_id", "start_rejected"]
