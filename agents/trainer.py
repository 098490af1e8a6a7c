"""The training loop: collect -> update -> log -> checkpoint, readable in one place (``train``).

Everything else here builds what the loop needs from the typed config
(``agents/config.py``): envs, model, algorithm, and the small pieces of run
state that must survive a restart.

Reproducibility and resuming
----------------------------
Every episode's randomness is a pure function of (seed, env index, episode
index): ``EpisodeSeeding`` reseeds each reset from those three numbers. A
checkpoint stores each env's current episode index next to the model,
optimizer, normaliser, RNG states and counters, and a resumed run restarts
each env's current episode from its beginning. When the checkpoint falls on
an episode boundary for every env (e.g. fixed-length episodes that divide
``rollout_steps``), a resumed run is therefore identical to an uninterrupted
one; otherwise only the partial episodes in flight are replayed with fresh
actions (their statistics are not double counted: episodes are logged when
they end).

Stopping
--------
SIGTERM or Ctrl-C (SIGINT) asks the loop to stop: it finishes the rollout or
update in progress, writes ``latest.pt`` and returns. A second signal stops at
once without a new checkpoint (``latest.pt`` keeps the last one). Env worker
processes ignore SIGINT so that a Ctrl-C in a terminal reaches only the loop.
"""

from __future__ import annotations

import functools
import math
import multiprocessing
import random
import signal
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Deque, Dict, List, Mapping, Optional

import gymnasium as gym
import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

import envs as _registers_env_ids  # noqa: F401  (GraphInsertion/* ids, also in env worker processes)
from agents import checkpoint as ckpt
from agents.buffer import RolloutBuffer
from agents.config import dataclass_from, to_container, validate_train_config
from agents.logger import Logger
from agents.ppo import PPO, PPOConfig
from agents.rollout import RolloutCollector, make_vector_env, stack_obs
from agents.rollout_policy import obs_to_tensor
from agents.trpo import TRPO, TRPOConfig

# ------------------------------------------------------------------ envs


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


def make_env(
    env_id: str, max_episode_steps: Optional[int] = None, render_mode: Optional[str] = None, **kwargs
) -> gym.Env:
    """One env from the config's ``env.id``/``max_episode_steps``/``kwargs``, with ``EpisodeSeeding``."""
    if multiprocessing.parent_process() is not None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # in an env worker: Ctrl-C is for the training loop
    extra = {} if render_mode is None else {"render_mode": render_mode}
    env = gym.make(env_id, max_episode_steps=max_episode_steps, **extra, **kwargs)
    return EpisodeSeeding(env)


def env_kwargs(env_cfg: DictConfig) -> Dict[str, Any]:
    return OmegaConf.to_container(env_cfg.kwargs, resolve=True)


def make_training_envs(cfg: DictConfig) -> gym.vector.VectorEnv:
    """The vector env of ``cfg``, wrapped for reward scaling when ``normalize_rewards``.

    Env attributes are reached through ``envs.unwrapped`` (vector wrappers do not forward ``get_attr``).
    """
    factory = functools.partial(make_env, cfg.env.id, cfg.env.max_episode_steps)
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
        info_keys=cfg.info_keys,
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


# ------------------------------------------------------ model, algorithm


def build_model(model_cfg: DictConfig, observation_space: gym.Space, action_space: gym.Space) -> torch.nn.Module:
    """``model=gnn`` -> GraphActorCritic (graph Dict observations), ``model=mlp`` -> MLPActorCritic (Box)."""
    is_graph = isinstance(observation_space, gym.spaces.Dict)
    kwargs = {k: v for k, v in OmegaConf.to_container(model_cfg, resolve=True).items() if k != "name"}
    if model_cfg.name == "gnn":
        if not is_graph:
            raise ValueError(
                f"model=gnn needs graph (Dict) observations, but the env's observation space is "
                f"{observation_space}; use model=mlp, or env.kwargs.obs_mode=graph for peg insertion"
            )
        from agents.gnn import GraphActorCritic

        return GraphActorCritic(observation_space, action_space, **kwargs)
    if model_cfg.name == "mlp":
        if is_graph:
            raise ValueError(
                "model=mlp needs flat (Box) observations, but the env emits graph (Dict) "
                "observations; use model=gnn, or env.kwargs.obs_mode=flat for peg insertion"
            )
        from agents.mlp import MLPActorCritic

        return MLPActorCritic(observation_space, action_space, **kwargs)
    raise ValueError(f"model.name={model_cfg.name!r} is not one of ['gnn', 'mlp']")


def build_algorithm(agent_cfg: DictConfig, model: torch.nn.Module):
    values = OmegaConf.to_container(agent_cfg, resolve=True)
    if agent_cfg.name == "ppo":
        return PPO(model, dataclass_from(PPOConfig, values))
    if agent_cfg.name == "trpo":
        return TRPO(model, dataclass_from(TRPOConfig, values))
    raise ValueError(f"agent.name={agent_cfg.name!r} is not one of ['ppo', 'trpo']")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


# ------------------------------------------------------------ evaluation


@torch.no_grad()
def policy_action(
    model: torch.nn.Module, obs, action_space: gym.spaces.Box, deterministic: bool, device: str = "cpu"
) -> np.ndarray:
    """Action for one (unbatched) observation, clipped to the action space."""
    batch = obs_to_tensor(stack_obs([obs]), device)
    action, _, _ = model.act(batch, deterministic=deterministic)
    return np.clip(action[0].cpu().numpy(), action_space.low, action_space.high)


def run_episodes(
    env: gym.Env,
    model: torch.nn.Module,
    episodes: int,
    deterministic: bool,
    seed: int,
    device: str = "cpu",
    on_step: Optional[Callable[[int, gym.Env], None]] = None,
) -> List[Dict[str, Any]]:
    """Play ``episodes`` episodes without touching the normaliser; one result dict per episode.

    Episode k starts from the same state for a given ``seed`` (``EpisodeSeeding``).
    ``success`` is whether ``info["is_success"]`` was ever true, ``steps_to_success``
    the first step where it was; ``on_step(episode, env)`` runs after every reset/step
    (e.g. to render a video frame).
    """
    model.eval()
    results = []
    for episode in range(episodes):
        obs, info = env.reset(seed=seed if episode == 0 else None)
        if on_step:
            on_step(episode, env)
        total, steps, steps_to_success, reports_success, done = 0.0, 0, None, False, False
        while not done:
            obs, reward, terminated, truncated, info = env.step(
                policy_action(model, obs, env.action_space, deterministic, device)
            )
            total, steps, done = total + float(reward), steps + 1, terminated or truncated
            reports_success = reports_success or "is_success" in info
            if steps_to_success is None and info.get("is_success", False):
                steps_to_success = steps
            if on_step:
                on_step(episode, env)
        results.append(
            {
                "return": total,
                "length": steps,
                "success": steps_to_success is not None,
                "steps_to_success": steps_to_success,
                "reports_success": reports_success,
            }
        )
    model.train()
    return results


def episode_metric(returns: List[float], successes: List[float]) -> Optional[tuple]:
    """("success_rate", value) when episodes report success, else ("return", mean); None without episodes."""
    if successes:
        return "success_rate", float(np.mean(successes))
    if returns:
        return "return", float(np.mean(returns))
    return None


# ------------------------------------------------------------- run state


@dataclass
class RunState:
    """Counters and statistics that a checkpoint carries besides model/algorithm/RNG."""

    global_step: int = 0
    updates: int = 0
    best_metric: Optional[float] = None
    best_metric_name: Optional[str] = None
    elapsed: float = 0.0  # seconds of training over all (resumed) processes
    recent_returns: Deque[float] = field(default_factory=deque)
    recent_successes: Deque[float] = field(default_factory=deque)

    def improves(self, measured: Optional[tuple]) -> bool:
        """Record ``measured = (name, value)`` as the best if it beats the best so far.

        If the metric's kind changes (an env starts reporting success), the
        old best is on another scale and is dropped.
        """
        if measured is None:
            return False
        name, value = measured
        if self.best_metric is not None and name == self.best_metric_name and value <= self.best_metric:
            return False
        self.best_metric_name, self.best_metric = name, value
        return True

    def extra(self, episode_index: List[int], reward_stats: Optional[Dict[str, float]]) -> Dict[str, Any]:
        return {
            "best_metric_name": self.best_metric_name,
            "elapsed": self.elapsed,
            "recent_returns": list(self.recent_returns),
            "recent_successes": list(self.recent_successes),
            "episode_index": list(episode_index),
            "reward_statistics": reward_stats,
        }

    @classmethod
    def from_checkpoint(cls, checkpoint: Mapping, window: int) -> "RunState":
        extra = checkpoint["trainer"]
        return cls(
            global_step=checkpoint["global_step"],
            updates=checkpoint["updates"],
            best_metric=checkpoint["best_metric"],
            best_metric_name=extra["best_metric_name"],
            elapsed=extra["elapsed"],
            recent_returns=deque(extra["recent_returns"], maxlen=window),
            recent_successes=deque(extra["recent_successes"], maxlen=window),
        )


class StopSignal:
    """Turns the first SIGTERM/SIGINT into a stop request; a second one raises ``KeyboardInterrupt``."""

    def __init__(self):
        self.signum: Optional[int] = None
        self._previous = {}

    def __enter__(self) -> "StopSignal":
        for signum in (signal.SIGTERM, signal.SIGINT):
            self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def _handle(self, signum, frame) -> None:
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum
        tqdm.write(
            f"{signal.Signals(signum).name} received: stopping after the current rollout/update "
            "and writing checkpoints/latest.pt (signal again to stop without it)",
            file=sys.stderr,
        )

    @property
    def requested(self) -> bool:
        return self.signum is not None


@dataclass
class TrainResult:
    global_step: int
    updates: int
    best_metric: Optional[float]
    run_dir: Path
    stopped_by: Optional[int] = None  # signal number when stopped early


# --------------------------------------------------------------- training


def train(cfg: DictConfig, run_dir: Path, checkpoint: Optional[Mapping] = None) -> TrainResult:
    """Train from scratch, or continue ``checkpoint`` (loaded from ``run_dir/checkpoints/latest.pt``)."""
    validate_train_config(cfg)
    run_dir = Path(run_dir)
    checkpoint_dir = run_dir / "checkpoints"
    torch.set_num_threads(cfg.torch_threads)
    seed_everything(cfg.seed)

    envs = make_training_envs(cfg)
    obs_space, action_space = envs.single_observation_space, envs.single_action_space
    try:
        model = build_model(cfg.model, obs_space, action_space).to(cfg.device)
        algorithm = build_algorithm(cfg.agent, model)
        buffer = RolloutBuffer(cfg.rollout_steps, cfg.num_envs, cfg.agent.gamma, cfg.agent.gae_lambda, cfg.device)
        collector = RolloutCollector(envs, model, buffer, seed=cfg.seed)
        state = RunState(recent_returns=deque(maxlen=cfg.eval.window), recent_successes=deque(maxlen=cfg.eval.window))
        if checkpoint is not None:
            state = restore(checkpoint, model, algorithm, envs, collector, cfg, run_dir)
        config = to_container(cfg)
        logger = Logger(
            run_dir,
            cfg.logger.wandb,
            config,
            run_id=checkpoint["run_id"] if checkpoint else None,
            resume_step=state.global_step if checkpoint else None,
        )
        if checkpoint is not None:
            ckpt.restore_rng(checkpoint["rng"])  # last, so nothing above shifts the generators
    except BaseException:
        envs.close()
        raise

    def save(name: str) -> None:
        ckpt.save_checkpoint(
            checkpoint_dir / name,
            model=model,
            algorithm=algorithm,
            global_step=state.global_step,
            updates=state.updates,
            best_metric=state.best_metric,
            run_id=logger.run_id,
            config=config,
            observation_space=obs_space,
            action_space=action_space,
            trainer=state.extra(envs.unwrapped.get_attr("episode_seeding_current"), reward_statistics(envs)),
        )

    eval_env = None
    batch_size = cfg.num_envs * cfg.rollout_steps
    start_step, saved_updates = state.global_step, state.updates
    start_time = last_time = time.time()
    progress = tqdm(
        total=cfg.total_steps, initial=state.global_step, unit="step", dynamic_ncols=True, disable=not cfg.progress_bar
    )
    stop = StopSignal()
    try:
        with stop:
            while state.global_step < cfg.total_steps and not stop.requested:
                # Collect a rollout and update the policy (progress drives lr annealing), then merge the
                # rollout into the observation statistics: acting, the stored log-probs and values, and
                # the update all normalise with the same statistics, so the update's importance ratios
                # are taken against the policy that really collected the data.
                iteration_start = time.perf_counter()
                stats = collector.collect(cfg.rollout_steps)
                update_start = time.perf_counter()
                update_metrics = algorithm.update(buffer, progress=min(1.0, state.global_step / cfg.total_steps))
                model.update_normalizer(buffer.full_batch().obs)
                update_seconds = time.perf_counter() - update_start
                state.global_step += batch_size
                state.updates += 1
                state.recent_returns.extend(stats["returns"])
                state.recent_successes.extend(stats["successes"])

                # Log (and evaluate every eval.every updates).
                now = time.time()
                state.elapsed, last_time = state.elapsed + now - last_time, now
                metrics = {
                    "updates": state.updates,
                    "time/steps_per_second": (state.global_step - start_step) / max(now - start_time, 1e-9),
                    "time/elapsed": state.elapsed,
                    **iteration_timing(collector.timing, update_seconds, time.perf_counter() - iteration_start),
                    **episode_metrics(stats, state),
                    **{f"train/{k}": v for k, v in update_metrics.items()},
                }
                measured = episode_metric(list(state.recent_returns), list(state.recent_successes))
                if cfg.eval.every and state.updates % cfg.eval.every == 0:
                    if eval_env is None:
                        eval_env = make_env(cfg.env.id, cfg.env.max_episode_steps, **env_kwargs(cfg.env))
                    eval_metrics, measured = evaluate_during_training(eval_env, model, cfg)
                    metrics.update(eval_metrics)
                logger.log(metrics, state.global_step)
                progress.update(batch_size)
                progress.set_postfix(_progress_fields(metrics), refresh=False)

                # Checkpoint: best.pt when the (eval or rolling) metric improves, latest.pt periodically.
                if state.improves(measured):
                    save(ckpt.BEST)
                if state.updates % cfg.checkpoint_every == 0:
                    save(ckpt.LATEST)
                    saved_updates = state.updates
            if saved_updates != state.updates:
                save(ckpt.LATEST)  # at the end, or after a stop request
    except KeyboardInterrupt:
        tqdm.write(
            f"stopped without a new checkpoint; {checkpoint_dir / ckpt.LATEST} has the last one", file=sys.stderr
        )
        raise
    finally:
        progress.close()
        logger.close()
        envs.close()
        if eval_env is not None:
            eval_env.close()
    return TrainResult(state.global_step, state.updates, state.best_metric, run_dir, stop.signum)


def iteration_timing(rollout: Mapping[str, float], update: float, total: float) -> Dict[str, float]:
    """Where one collect + update iteration went, in seconds: waiting for the envs, the policy acting
    (and valuing final observations), the update (with the normaliser merge) and everything else
    (buffer writes, episode bookkeeping). Logging and checkpoints come after and are not included."""
    other = total - rollout["env"] - rollout["policy"] - update
    return {
        "time/env_wait_s": rollout["env"],
        "time/policy_act_s": rollout["policy"],
        "time/update_s": update,
        "time/other_s": other,
    }


def episode_metrics(stats: Mapping[str, list], state: RunState) -> Dict[str, float]:
    """This rollout's finished episodes, and the rolling window over the last ``eval.window`` episodes."""
    return {
        "rollout/episodes": len(stats["returns"]),
        "rollout/return_mean": _mean(stats["returns"]),
        "rollout/length_mean": _mean(stats["lengths"]),
        "rollout/success_rate": _mean(stats["successes"]),
        "rolling/return_mean": _mean(state.recent_returns),
        "rolling/success_rate": _mean(state.recent_successes),
    }


def evaluate_during_training(env: gym.Env, model: torch.nn.Module, cfg: DictConfig) -> tuple:
    """(metrics, measured) from ``eval.episodes`` episodes that start from the same states every time."""
    results = run_episodes(env, model, cfg.eval.episodes, cfg.eval.deterministic, cfg.eval.seed, cfg.device)
    returns = [r["return"] for r in results]
    successes = [float(r["success"]) for r in results if r["reports_success"]]
    metrics = {"eval/return_mean": _mean(returns), "eval/success_rate": _mean(successes)}
    return metrics, episode_metric(returns, successes)


def restore(
    checkpoint: Mapping,
    model,
    algorithm,
    envs: gym.vector.VectorEnv,
    collector: RolloutCollector,
    cfg: DictConfig,
    run_dir: Path,
) -> RunState:
    """Load model/algorithm state and restart every env's current episode (see module docstring)."""
    path = run_dir / "checkpoints" / ckpt.LATEST
    ckpt.check_spaces(checkpoint, envs.single_observation_space, envs.single_action_space, path)
    ckpt.load_model_state(model, checkpoint, path)
    algorithm.load_state_dict(checkpoint["algorithm"])
    episode_index = checkpoint["trainer"]["episode_index"]
    if len(episode_index) != envs.num_envs:
        raise ckpt.CheckpointError(
            f"checkpoint {path} was written with {len(episode_index)} envs, this run has num_envs={envs.num_envs}"
        )
    envs.unwrapped.set_attr("episode_seeding_next", list(episode_index))
    collector.obs, _ = envs.reset()
    restore_reward_statistics(envs, checkpoint["trainer"]["reward_statistics"])
    return RunState.from_checkpoint(checkpoint, cfg.eval.window)


def _progress_fields(metrics: Mapping[str, float]) -> Dict[str, str]:
    """steps/s, rolling return and success rate for the tqdm bar (the latter two once known)."""
    fields = {"sps": f"{metrics['time/steps_per_second']:.0f}"}
    for name, key in (("return", "rolling/return_mean"), ("success", "rolling/success_rate")):
        if not math.isnan(metrics[key]):
            fields[name] = f"{metrics[key]:.2f}"
    return fields


def _mean(values) -> float:
    return float(np.mean(values)) if len(values) else math.nan
