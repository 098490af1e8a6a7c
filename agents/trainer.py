"""The training run: ``Trainer`` builds envs, model and algorithm from the typed config, then
iterates collect -> update -> log -> checkpoint, each an explicit method (``Trainer.run`` is the
whole loop, readable in one place). ``train(cfg, run_dir)`` is the entry point.

Extending a run without editing the loop: a ``TrainerPlugin`` (e.g. a curriculum) is called after
the build, after every rollout, for metrics, and saves its state in the checkpoint; the rollout
backend is ``Trainer.collector`` (anything with ``collect(num_steps) -> episode stats``,
``timing`` and ``obs``, optionally ``metrics()`` for the log row), built with the envs by
``agents/collectors.py``: local vector envs, or Ray workers (``rollout.backend=ray``). Names
(``model=``, ``agent=``) are resolved by ``agents/registry.py``; the envs come from
``agents/training_envs.py``, evaluation from ``agents/evaluation.py``, the run state and stop
signal from ``agents/run_state.py``.

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

Stopping and faults
-------------------
SIGTERM, Ctrl-C (SIGINT), SIGUSR1 or SIGUSR2 (what SLURM sends before a time
limit) asks the loop to stop: it finishes the rollout or update in progress,
writes ``latest.pt`` and returns. A second signal stops at once without a new
checkpoint (``latest.pt`` keeps the last one). Env workers ignore these signals,
so a signal to the whole process group cannot kill them before the checkpoint.

- One process per run directory (``agents/run_lock.py``).
- ``latest.pt`` is the newest of the last ``keep_checkpoints`` kept as
  ``step_<N>.pt``; a resume falls back to them when it is unreadable. A full
  disk stops the run with one line; the previous checkpoint stays intact.
- A dead or hung env worker (every wait is bounded by ``worker_timeout``) stops
  the run with an emergency ``latest.pt`` of the last completed update.
- A non-finite observation or reward truncates that episode (``agents/env_guards.py``,
  ``rollout/nonfinite_episodes``); a non-finite loss or gradient skips the update
  (``train/skipped_updates``), and ``max_skipped_updates`` in a row stop the run.
These stops raise ``TrainingAborted``; ``scripts/train.py`` prints its one line.
"""

from __future__ import annotations

import copy
import math
import sys
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional

import gymnasium as gym
import torch
from omegaconf import DictConfig
from tqdm import tqdm

from agents import checkpoint as ckpt
from agents.buffer import RolloutBuffer
from agents.collectors import make_collector, make_rollout_envs
from agents.config import to_container, validate_train_config
from agents.evaluation import episode_metric, evaluate_during_training, mean_or_nan
from agents.logger import Logger
from agents.plots import plot_learning_curve
from agents.registry import build_algorithm, build_model, build_plugins
from agents.rollout import EnvWorkerDied, RolloutCollector
from agents.run_lock import RunDirLock
from agents.run_state import RunState, StopSignal, seed_everything
from agents.threads import set_cpu_threads
from agents.training_envs import env_kwargs, make_env, restore_reward_statistics, reward_statistics


class TrainerPlugin:
    """Something that rides along a run (a curriculum, a monitor). Every hook is optional."""

    name = "plugin"  # key of its state in checkpoints (unique per run)

    def after_build(self, trainer: "Trainer") -> None:
        """The envs, model and algorithm exist (and were restored on resume)."""

    def after_collect(self, trainer: "Trainer", stats: Dict[str, list]) -> None:
        """A rollout was collected; ``stats`` holds the episodes that ended in it."""

    def metrics(self, trainer: "Trainer") -> Dict[str, float]:
        """Extra metrics for this update's log row."""
        return {}

    def state_dict(self) -> Dict[str, Any]:
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what ``state_dict`` returned (on resume)."""


class TrainingAborted(RuntimeError):
    """The run cannot go on (a dead env worker, a full disk, non-finite updates); the message says why
    and which checkpoint a ``resume=`` continues from."""


@dataclass
class TrainResult:
    global_step: int
    updates: int
    best_metric: Optional[float]
    run_dir: Path
    stopped_by: Optional[int] = None  # signal number when stopped early


class Trainer:
    """One training run from the typed config; ``run()`` trains to ``cfg.total_steps``.

    ``checkpoint``: a loaded ``checkpoints/latest.pt`` of this run to continue from.
    """

    def __init__(
        self,
        cfg: DictConfig,
        run_dir: Path,
        checkpoint: Optional[Mapping] = None,
        plugins: Optional[List[TrainerPlugin]] = None,
    ):
        validate_train_config(cfg)
        self.cfg, self.run_dir, self.resume_from = cfg, Path(run_dir), checkpoint
        self.checkpoint_dir = self.run_dir / "checkpoints"
        self.plugins = [*build_plugins(cfg), *(plugins or [])]
        if len({p.name for p in self.plugins}) != len(self.plugins):
            raise ValueError(f"plugin names must be unique, got {[p.name for p in self.plugins]}")
        self.batch_size = cfg.num_envs * cfg.rollout_steps
        # False keeps the model's observation statistics as they are (demo_cloning.keep_demo_statistics).
        self.update_observation_statistics = True
        self.eval_env: Optional[gym.Env] = None

    # ------------------------------------------------------------------ build
    def build(self) -> None:
        """Envs, model, algorithm, buffer, collector, run state and logger (restored on resume)."""
        cfg, checkpoint = self.cfg, self.resume_from
        set_cpu_threads(cfg.torch_threads)
        seed_everything(cfg.seed)
        # Local vector envs or Ray workers (rollout.backend); blow-ups are dumped into the run directory.
        self.envs = make_rollout_envs(cfg, self.run_dir / "nonfinite")
        self.obs_space, self.action_space = self.envs.single_observation_space, self.envs.single_action_space
        try:
            self.model = build_model(cfg.model, self.obs_space, self.action_space).to(cfg.device)
            self.algorithm = build_algorithm(cfg.agent, self.model)
            self.buffer = RolloutBuffer(
                cfg.rollout_steps, cfg.num_envs, cfg.agent.gamma, cfg.agent.gae_lambda, cfg.device
            )
            self.collector = make_collector(cfg, self.envs, self.model, self.buffer)
            self.state = RunState(
                recent_returns=deque(maxlen=cfg.eval.window), recent_successes=deque(maxlen=cfg.eval.window)
            )
            if checkpoint is not None:
                self.state = restore(
                    checkpoint, self.model, self.algorithm, self.envs, self.collector, cfg, self.run_dir
                )
                self._restore_plugins(checkpoint)
            self.config = to_container(cfg)
            self.logger = Logger(
                self.run_dir,
                cfg.logger.wandb,
                self.config,
                run_id=checkpoint["run_id"] if checkpoint else None,
                resume_step=self.state.global_step if checkpoint else None,
            )
            if checkpoint is not None:
                ckpt.restore_rng(checkpoint["rng"])  # last, so nothing above shifts the generators
            for plugin in self.plugins:
                plugin.after_build(self)
        except BaseException:
            self.envs.close()
            raise

    def _restore_plugins(self, checkpoint: Mapping) -> None:
        saved = checkpoint["trainer"].get("plugins", {})
        for plugin in self.plugins:
            if plugin.name not in saved:
                raise ckpt.CheckpointError(f"the checkpoint has no state for plugin {plugin.name!r}")
            plugin.load_state_dict(saved[plugin.name])

    # ------------------------------------------------------------------ one iteration
    def collect(self) -> Dict[str, list]:
        """A rollout into the buffer; the episodes that ended in it."""
        stats = self.collector.collect(self.cfg.rollout_steps)
        for plugin in self.plugins:
            plugin.after_collect(self, stats)
        return stats

    def update(self) -> Dict[str, float]:
        """Update the policy (progress drives lr annealing), then merge the rollout into the observation
        statistics (unless ``update_observation_statistics`` is False): acting, the stored log-probs and
        values, and the update all normalise with the same statistics, so the update's importance ratios
        are taken against the policy that collected the data."""
        progress = min(1.0, self.state.global_step / self.cfg.total_steps)
        before = copy.deepcopy((self.model.state_dict(), self.algorithm.state_dict()))
        metrics = self.algorithm.update(self.buffer, progress=progress)
        if not (all(math.isfinite(v) for v in metrics.values()) and _parameters_finite(self.model)):
            return self._skip_update(before, metrics)
        self._skipped_in_a_row = 0
        if self.update_observation_statistics:
            self.model.update_normalizer(self.buffer.full_batch().obs)
        return metrics

    def _skip_update(self, before: tuple, metrics: Dict[str, float]) -> Dict[str, float]:
        """A non-finite loss or gradient: put model and optimizer back as they were and count it;
        ``max_skipped_updates`` in a row stop the run (its last checkpoints are from before them)."""
        self.model.load_state_dict(before[0])
        self.algorithm.load_state_dict(before[1])
        self.skipped_updates += 1
        self._skipped_in_a_row += 1
        bad = sorted(k for k, v in metrics.items() if not math.isfinite(v)) or ["parameters"]
        tqdm.write(f"update {self.state.updates + 1} skipped: non-finite {', '.join(bad)}", file=sys.stderr)
        if self._skipped_in_a_row >= self.cfg.max_skipped_updates:
            raise TrainingAborted(
                f"{self._skipped_in_a_row} updates in a row had a non-finite loss or gradient ({', '.join(bad)}); "
                f"stopped with the last good checkpoint {self.checkpoint_dir / ckpt.LATEST} "
                f"(update {self._saved_updates})"
            )
        return {}

    def log(self, stats: Dict[str, list], update_metrics: Dict[str, float], timing: Dict[str, float]) -> tuple:
        """Count the iteration, write its log row (evaluating every ``eval.every`` updates); return the
        metric that decides ``best.pt``."""
        cfg, state = self.cfg, self.state
        state.global_step += self.batch_size
        state.updates += 1
        state.recent_returns.extend(stats["returns"])
        state.recent_successes.extend(stats["successes"])
        now = time.time()
        state.elapsed, self._last_time = state.elapsed + now - self._last_time, now
        metrics = {
            "updates": state.updates,
            "time/steps_per_second": (state.global_step - self._start_step) / max(now - self._start_time, 1e-9),
            "time/elapsed": state.elapsed,
            **timing,
            **episode_metrics(stats, state),
            "train/skipped_updates": self.skipped_updates,
            **{f"train/{k}": v for k, v in update_metrics.items()},
        }
        if hasattr(self.collector, "metrics"):  # a backend's own counters (Ray: rollout/worker_restarts)
            metrics.update(self.collector.metrics())
        for plugin in self.plugins:
            metrics.update(plugin.metrics(self))
        measured = episode_metric(list(state.recent_returns), list(state.recent_successes))
        if cfg.eval.every and state.updates % cfg.eval.every == 0:
            if self.eval_env is None:
                self.eval_env = make_env(cfg.env.id, cfg.env.max_episode_steps, **env_kwargs(cfg.env))
            eval_metrics, measured = evaluate_during_training(self.eval_env, self.model, cfg)
            metrics.update(eval_metrics)
        self.logger.log(metrics, state.global_step)
        self._progress.update(self.batch_size)
        self._progress.set_postfix(_progress_fields(metrics), refresh=False)
        return measured

    def checkpoint(self, measured: Optional[tuple]) -> None:
        """``best.pt`` when the (eval or rolling) metric improves, ``latest.pt`` every ``checkpoint_every``."""
        if self.state.improves(measured):
            self.save(ckpt.BEST)
        if self.state.updates % self.cfg.checkpoint_every == 0:
            self.save(ckpt.LATEST)

    def env_snapshot(self) -> Dict[str, Any]:
        """What a checkpoint needs from the envs and plugins, taken before a rollout: a worker that dies
        during it can no longer be asked, and the emergency checkpoint is that of the last update."""
        return {
            "episode_index": list(self.envs.unwrapped.get_attr("episode_seeding_current")),
            "reward_statistics": reward_statistics(self.envs),
            "plugins": {plugin.name: plugin.state_dict() for plugin in self.plugins},
        }

    def save(self, name: str, snapshot: Optional[Mapping[str, Any]] = None) -> None:
        """Write ``best.pt`` or ``latest.pt`` (kept as ``step_<N>.pt``, the last ``keep_checkpoints``);
        ``snapshot``: ``env_snapshot()`` of an earlier moment instead of asking the envs now."""
        state, snapshot = self.state, snapshot or self.env_snapshot()
        extra = state.extra(snapshot["episode_index"], snapshot["reward_statistics"])
        extra["plugins"] = snapshot["plugins"]
        path = (
            self.checkpoint_dir / name
            if name != ckpt.LATEST
            else ckpt.history_path(self.checkpoint_dir, state.global_step)
        )
        try:
            self._write(path, extra)
        except ckpt.CheckpointWriteError as error:
            previous = self.checkpoint_dir / ckpt.LATEST
            kept = (
                f"{previous} (update {self._saved_updates}) is intact"
                if previous.exists()
                else "no checkpoint exists yet"
            )
            raise TrainingAborted(f"{error}; {kept}") from None
        if name == ckpt.LATEST:
            ckpt.publish_latest(path, self.cfg.keep_checkpoints)
            self._saved_updates = state.updates
            plot_learning_curve(self.run_dir)

    def _write(self, path: Path, extra: Dict[str, Any]) -> None:
        state = self.state
        ckpt.save_checkpoint(
            path,
            model=self.model,
            algorithm=self.algorithm,
            global_step=state.global_step,
            updates=state.updates,
            best_metric=state.best_metric,
            run_id=self.logger.run_id,
            config=self.config,
            observation_space=self.obs_space,
            action_space=self.action_space,
            trainer=extra,
        )

    # ------------------------------------------------------------------ the loop
    def run(self) -> TrainResult:
        """Build, then collect -> update -> log -> checkpoint until ``total_steps`` or a stop signal.

        One process per run directory (``agents/run_lock.py``). A dead or hung env worker stops the run
        with an emergency ``latest.pt`` of the last completed update and a ``TrainingAborted`` naming it.
        """
        with RunDirLock(self.run_dir) as lock:
            if lock.previous_holder:
                tqdm.write(f"took over the run directory lock of a process that died ({lock.previous_holder})")
            return self._run()

    def _run(self) -> TrainResult:
        self.build()
        cfg, state = self.cfg, self.state
        self.skipped_updates, self._skipped_in_a_row = 0, 0
        self._start_step, self._saved_updates = state.global_step, state.updates
        self._start_time = self._last_time = time.time()
        self._progress = tqdm(
            total=cfg.total_steps,
            initial=state.global_step,
            unit="step",
            dynamic_ncols=True,
            disable=not cfg.progress_bar,
        )
        stop, snapshot = StopSignal(), None
        try:
            with stop:
                while state.global_step < cfg.total_steps and not stop.requested:
                    iteration_start = time.perf_counter()
                    snapshot = self.env_snapshot()
                    stats = self.collect()
                    update_start = time.perf_counter()
                    update_metrics = self.update()
                    update_seconds = time.perf_counter() - update_start
                    timing = iteration_timing(
                        self.collector.timing, update_seconds, time.perf_counter() - iteration_start
                    )
                    self.checkpoint(self.log(stats, update_metrics, timing))
                if self._saved_updates != state.updates:
                    self.save(ckpt.LATEST)  # at the end, or after a stop request
        except EnvWorkerDied as error:
            if snapshot is None:  # died before the first rollout: there is nothing to save
                raise TrainingAborted(f"{error}; no checkpoint was written") from None
            self.save(ckpt.LATEST, snapshot)  # what the last completed update left
            raise TrainingAborted(
                f"{error}; wrote {self.checkpoint_dir / ckpt.LATEST} at update {state.updates} "
                f"(step {state.global_step}): continue with resume={self.run_dir}"
            ) from None
        except KeyboardInterrupt:
            tqdm.write(
                f"stopped without a new checkpoint; {self.checkpoint_dir / ckpt.LATEST} has the last one",
                file=sys.stderr,
            )
            raise
        finally:
            self.close()
        return TrainResult(state.global_step, state.updates, state.best_metric, self.run_dir, stop.signum)

    def close(self) -> None:
        self._progress.close()
        self.logger.close()
        self.envs.close()
        if self.eval_env is not None:
            self.eval_env.close()


def train(
    cfg: DictConfig, run_dir: Path, checkpoint: Optional[Mapping] = None, plugins: Optional[List[TrainerPlugin]] = None
) -> TrainResult:
    """Train from scratch, or continue ``checkpoint`` (loaded from ``run_dir/checkpoints/latest.pt``)."""
    return Trainer(cfg, run_dir, checkpoint, plugins).run()


def _parameters_finite(model: torch.nn.Module) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in model.parameters())


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
        "rollout/return_mean": mean_or_nan(stats["returns"]),
        "rollout/length_mean": mean_or_nan(stats["lengths"]),
        "rollout/success_rate": mean_or_nan(stats["successes"]),
        "rollout/nonfinite_episodes": sum(bool(e.get("nonfinite")) for e in stats.get("episodes", [])),
        "rolling/return_mean": mean_or_nan(state.recent_returns),
        "rolling/success_rate": mean_or_nan(state.recent_successes),
    }


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
