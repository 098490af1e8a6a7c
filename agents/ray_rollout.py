"""Rollout workers on Ray (``rollout.backend=ray``): the envs step in Ray actors, possibly on other machines.

Workers
-------
Worker ``w`` is a Ray actor (``RolloutWorker``) owning the global envs ``[w * k, (w + 1) * k)``,
``k = rollout.ray.envs_per_worker``. It builds them itself from the config, with the wrappers of
``make_training_envs`` (``EpisodeSeeding``, ``AssignedStart``, ``KeepInfoKeys``), and seeds them with
exactly the local backend's seeds (``env_seeds(seed, num_envs)[w * k:(w + 1) * k]``), so global env
``i`` runs the same episodes under either backend. It holds a CPU copy of the policy and collects
``rollout_steps`` steps per env with a local ``RolloutCollector`` (the same transitions and
truncation bootstrap as the local backend), returning the segment as numpy arrays. Action noise
comes from the worker's own torch generator (seeded from the run seed and the worker index).

Learner
-------
``RayEnvs`` is the env facade the trainer, checkpoints and curricula talk to: ``set_attr`` and
``get_attr`` are split over / concatenated from the workers in global env order, so
``envs.unwrapped.set_attr("assigned_start", [...])`` reaches each env's ``AssignedStart`` as with
local envs. ``RayRolloutCollector`` puts the model's ``state_dict`` (with the observation
normaliser) in the object store once per update, every worker collects with that one object, and
it writes the segments into the learner's ``RolloutBuffer`` (env axis: the workers' envs in global
order) and computes advantages over the whole batch. Its episode records are ordered as the local
collector orders them (by the step they ended at, then env index).

Dead workers
------------
Workers are created with ``max_restarts``: Ray restarts a dead worker by running its constructor
again (new envs, a new policy copy). Every worker call returns its envs' episode and start state
(``RESTORED_ATTRIBUTES``), which the learner keeps; when a call fails because the worker died, the
learner logs one line naming it, sends it that state (``RolloutWorker.restore``: each env restarts
its current episode from its beginning, with the start it began from, as a resumed run does) and
calls it again; a segment is thus collected again, with the same weights. ``rollout/worker_restarts``
counts the restarts. Every wait is bounded by ``rollout.ray.timeout_s``; a worker that does not
answer in time, or dies more than ``max_restarts`` times, stops the run with a ``RolloutWorkerError``.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import ray
import torch
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from agents.buffer import RolloutBuffer
from agents.config import ray_envs_per_worker, to_container, typed_config
from agents.ray_head import LocalRayHead
from agents.registry import build_model
from agents.rollout import EnvWorkerDied, RolloutCollector, env_seeds
from agents.threads import set_cpu_threads
from agents.training_envs import make_training_envs

WORKER_STREAM = 0xA7  # spawn key of the workers' torch seeds: no stream shared with the envs or the curriculum

# What a worker reports after every call: its envs' episodes and starts, all a restarted worker needs
# to take its envs up where they were (``RolloutWorker.restore``).
RESTORED_ATTRIBUTES = (
    "episode_seeding_current",
    "episode_seeding_next",
    "current_start",
    "assigned_start",
    "rejected_starts",
)

AUTH_MODE_VARIABLE = "RAY_AUTH_MODE"  # Ray's switch for token authentication

RESTART_POLL_S = 0.2  # seconds between calls to a worker that Ray is restarting

SEGMENT_FIELDS = ("actions", "log_probs", "values", "rewards", "terminated", "truncated", "bootstrap_values")


class RolloutWorkerError(EnvWorkerDied):
    """A Ray rollout worker did not answer in time, or died more often than it may be restarted (the
    trainer then writes the emergency checkpoint of the last completed update, as for a local worker)."""


# ------------------------------------------------------------------ worker side


class SegmentBuffer(RolloutBuffer):
    """A worker's buffer: ``finish`` keeps V(s_T) for the learner, which computes the advantages."""

    def finish(self, last_values: torch.Tensor) -> None:
        if not self.full:
            raise ValueError(f"rollout incomplete: {self.step}/{self.num_steps} steps stored")
        self.last_values = last_values


def worker_torch_seed(seed: int, index: int) -> int:
    return int(np.random.SeedSequence(seed, spawn_key=(WORKER_STREAM, index)).generate_state(1)[0])


def _numpy_obs(obs) -> Any:
    return {k: v.numpy() for k, v in obs.items()} if isinstance(obs, dict) else obs.numpy()


class RolloutWorker:
    """One Ray actor: ``envs_per_worker`` envs, a CPU copy of the policy, and a local ``RolloutCollector``."""

    def __init__(self, config: Dict[str, Any], index: int, envs_per_worker: int):
        cfg = typed_config(config)
        total_envs, first = cfg.num_envs, index * envs_per_worker
        OmegaConf.update(cfg, "num_envs", envs_per_worker)
        OmegaConf.update(cfg, "async_envs", False)  # the worker is the process: its envs step in it
        set_cpu_threads(cfg.torch_threads)
        torch.manual_seed(worker_torch_seed(cfg.seed, index))
        self.envs = make_training_envs(cfg)
        self.model = build_model(cfg.model, self.envs.single_observation_space, self.envs.single_action_space)
        self.buffer = SegmentBuffer(cfg.rollout_steps, envs_per_worker)
        self.collector = RolloutCollector(self.envs, self.model, self.buffer)  # its first reset is unseeded
        seeds = env_seeds(cfg.seed, total_envs)[first : first + envs_per_worker]  # the local backend's
        self.collector.obs, _ = self.envs.reset(seed=seeds)

    def describe(self) -> Dict[str, Any]:
        return {
            **self._snapshot(),
            "observation_space": self.envs.single_observation_space,
            "action_space": self.envs.single_action_space,
        }

    def set_attr(self, name: str, values: List[Any]) -> Dict[str, Any]:
        self.envs.unwrapped.set_attr(name, list(values))
        return self._snapshot()

    def get_attr(self, name: str) -> List[Any]:
        return list(self.envs.unwrapped.get_attr(name))

    def reset(self) -> Dict[str, Any]:
        self.collector.obs, _ = self.envs.reset()
        return self._snapshot()

    def restore(self, state: Optional[Dict[str, List[Any]]]) -> Dict[str, Any]:
        """After a restart: restart every env's current episode from its beginning, from the start it
        began from, then put back the next assignments (as a curriculum does on resume). ``None``: the
        worker died before its first answer, its fresh envs are what the learner expects."""
        if state is None:
            return self._snapshot()
        envs = self.envs.unwrapped
        envs.set_attr("assigned_start", list(state["current_start"]))
        envs.set_attr("episode_seeding_next", list(state["episode_seeding_current"]))
        self.collector.obs, _ = self.envs.reset()
        for name in ("assigned_start", "episode_seeding_next", "rejected_starts"):
            envs.set_attr(name, list(state[name]))
        return self._snapshot()

    def collect(self, weights: Dict[str, torch.Tensor], num_steps: int) -> Dict[str, Any]:
        """One segment with the learner's ``weights``: the buffer's fields as (T, k, ...) numpy arrays,
        V of the last observation, the ended episodes (env indices local to this worker), timing."""
        self.model.load_state_dict(weights)
        stats = self.collector.collect(num_steps)
        buffer = self.buffer
        return {
            **self._snapshot(),
            "segment_obs": _numpy_obs(buffer.obs),
            **{name: getattr(buffer, name).numpy() for name in SEGMENT_FIELDS},
            "last_values": buffer.last_values.numpy(),
            "episodes": stats["episodes"],
            "timing": dict(self.collector.timing),
        }

    def _snapshot(self) -> Dict[str, Any]:
        """This worker's pid, its envs' next observations and their ``RESTORED_ATTRIBUTES``."""
        envs = self.envs.unwrapped
        state = {name: list(envs.get_attr(name)) for name in RESTORED_ATTRIBUTES}
        return {"pid": os.getpid(), "obs": self.collector.obs, "env_state": state}


RemoteRolloutWorker = ray.remote(RolloutWorker)


# ------------------------------------------------------------------ learner side


@dataclass
class WorkerSlot:
    """The learner's handle on one worker: its actor, the global indices of its envs, and the state its
    envs were in after its last answer (what a restart restores)."""

    index: int
    actor: Any
    envs: range
    pid: Optional[int] = None
    env_state: Optional[Dict[str, List[Any]]] = None
    deaths: int = 0

    def describe(self) -> str:
        return f"rollout worker {self.index} (envs {self.envs.start}-{self.envs.stop - 1}, pid {self.pid})"


def concat_obs(parts: Sequence[Any], axis: int = 0) -> Any:
    """Batched observations (arrays or dicts of arrays) of several workers joined along ``axis``."""
    if isinstance(parts[0], dict):
        return {k: np.concatenate([p[k] for p in parts], axis=axis) for k in parts[0]}
    return np.concatenate(parts, axis=axis)


QUIET = {"log_to_driver": False, "logging_level": logging.WARNING}  # worker logs: /tmp/ray/session_latest/logs


def init_local_ray(num_cpus: int, **options) -> None:
    """Start a local Ray instance (not joining any running one) with ``num_cpus`` CPUs to reserve.

    Its workers run at the learner's priority: Ray's default renices them to 15, below the learner,
    but here they do the env stepping that the local backend's env processes do at 0, and on a
    machine shared with other jobs nice 15 starves them (0.4x the local backend's steps/s, measured).
    """
    ray.init(
        address="local",
        num_cpus=num_cpus,
        include_dashboard=False,
        _system_config={"worker_niceness": 0},
        **{**QUIET, **options},
    )


class RayConnection:
    """This process's connection to Ray, made by ``connect``; ``close`` ends it (and the local instance)."""

    def __init__(self, head: Optional[LocalRayHead] = None):
        self.head = head

    def close(self) -> None:
        ray.shutdown()
        if self.head is not None:
            self.head.stop()


def use_token_authentication() -> None:
    """Token authentication for the local instance and this process's connection to it, as ``ray.init()``
    sets up for an instance it starts itself (unless ``RAY_AUTH_MODE`` says otherwise): the head process
    writes the token (``~/.ray/auth_token``), but a connection by address only uses it in token mode,
    and Ray reads the mode when it is imported, so its config is read again (``Config.initialize``,
    as Ray's own ``ray.init`` does; tests/test_ray_rollout.py fails if that stops working)."""
    if AUTH_MODE_VARIABLE not in os.environ:
        os.environ[AUTH_MODE_VARIABLE] = "token"
        from ray._raylet import Config

        Config.initialize("")


def connect(ray_cfg: DictConfig, num_workers: int) -> Optional[RayConnection]:
    """Use the Ray instance this process is connected to (None), else join ``address`` or start a local
    instance and connect to it.

    The local instance runs in a session of its own (``agents/ray_head.py``), so a signal to the
    trainer's process group (SLURM, systemd, Ctrl-C) cannot kill it before the trainer has written its
    checkpoint. It gets at least one CPU per worker's reservation, as the local backend runs one
    process per env whatever the cores: workers then share the cores.
    """
    if ray.is_initialized():
        return None
    if ray_cfg.address is not None:
        _init_keeping_sigterm(address=ray_cfg.address, **QUIET)
        return RayConnection()
    use_token_authentication()
    head = LocalRayHead(max(os.cpu_count() or 1, math.ceil(num_workers * ray_cfg.cpus_per_worker)))
    try:
        _init_keeping_sigterm(address=head.address, **QUIET)
    except BaseException:
        head.stop()
        raise
    return RayConnection(head)


def _init_keeping_sigterm(**options) -> None:
    """``ray.init`` without its SIGTERM handler (``sys.exit(15)`` at once): a SIGTERM is the trainer's
    stop request (``agents.run_state.StopSignal``), which finishes the update and writes ``latest.pt``."""
    handler = signal.getsignal(signal.SIGTERM)
    try:
        ray.init(**options)
    finally:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, handler)


class RayEnvs:
    """The vector-env facade over the Ray workers (see the module docstring)."""

    def __init__(self, cfg: DictConfig):
        ray_cfg = cfg.rollout.ray
        self.num_envs = cfg.num_envs
        self.timeout_s, self.max_restarts = float(ray_cfg.timeout_s), int(ray_cfg.max_restarts)
        self.restarts = 0  # worker restarts over the run (``rollout/worker_restarts``)
        self.workers: List[WorkerSlot] = []
        self.connection = connect(ray_cfg, ray_cfg.num_workers)
        try:
            self.workers = self._start_workers(cfg)
            descriptions = self._on_all("describe")
        except BaseException:
            self.close()
            raise
        self.single_observation_space = descriptions[0]["observation_space"]
        self.single_action_space = descriptions[0]["action_space"]
        self.obs = self._remember(descriptions)

    def _start_workers(self, cfg: DictConfig) -> List[WorkerSlot]:
        ray_cfg, per_worker = cfg.rollout.ray, ray_envs_per_worker(cfg)
        options = {"num_cpus": ray_cfg.cpus_per_worker, "max_restarts": ray_cfg.max_restarts, "max_task_retries": 0}
        config = to_container(cfg)
        return [
            WorkerSlot(
                index,
                RemoteRolloutWorker.options(**options).remote(config, index, per_worker),
                range(index * per_worker, (index + 1) * per_worker),
            )
            for index in range(ray_cfg.num_workers)
        ]

    # -------------------------------------------------------------- the vector env interface
    @property
    def unwrapped(self) -> "RayEnvs":
        return self

    def set_attr(self, name: str, values: Any) -> None:
        """Like ``VectorEnv.set_attr``: a list or tuple has one value per env, anything else goes to all."""
        if not isinstance(values, (list, tuple)):
            values = [values] * self.num_envs
        if len(values) != self.num_envs:
            raise ValueError(f"set_attr({name!r}) needs {self.num_envs} values, got {len(values)}")
        self._remember(self._on_all("set_attr", [(name, [values[i] for i in w.envs]) for w in self.workers]))

    def get_attr(self, name: str) -> tuple:
        return tuple(value for part in self._on_all("get_attr", [(name,)] * len(self.workers)) for value in part)

    def reset(self, *, seed: Optional[Any] = None, options: Optional[dict] = None):
        """Reset every env (its next episode, as ``EpisodeSeeding`` and ``AssignedStart`` say); no info."""
        if seed is not None or options is not None:
            raise ValueError(
                "RayEnvs.reset takes no seed or options: workers seed their envs from the run seed when they "
                "start; assign starts with set_attr('assigned_start', ...)"
            )
        self.obs = self._remember(self._on_all("reset"))
        return self.obs, {}

    def close(self) -> None:
        if ray.is_initialized():
            for worker in self.workers:
                ray.kill(worker.actor, no_restart=True)
        self.workers = []
        if self.connection is not None:
            self.connection.close()
            self.connection = None

    # -------------------------------------------------------------- segments
    def collect_segments(self, weights: "ray.ObjectRef", num_steps: int) -> List[Dict[str, Any]]:
        """Every worker's next segment, collected with ``weights``; one per worker, in worker order."""
        segments = self._on_all("collect", [(weights, num_steps)] * len(self.workers))
        self.obs = self._remember(segments)
        return segments

    # -------------------------------------------------------------- calls, bounded and restarted
    def _remember(self, answers: Sequence[Dict[str, Any]]) -> Any:
        """Keep each worker's pid and env state from its answer; return the joined observations."""
        for worker, answer in zip(self.workers, answers):
            worker.pid, worker.env_state = answer["pid"], answer["env_state"]
        return concat_obs([answer["obs"] for answer in answers])

    def _on_all(self, method: str, args: Optional[Sequence[tuple]] = None) -> List[Any]:
        """Call ``method`` on every worker at once; their answers in worker order."""
        args = args if args is not None else [()] * len(self.workers)
        refs = [getattr(w.actor, method).remote(*a) for w, a in zip(self.workers, args)]
        return [self._answer(w, ref, method, a) for w, ref, a in zip(self.workers, refs, args)]

    def _answer(self, worker: WorkerSlot, ref: "ray.ObjectRef", method: str, args: tuple) -> Any:
        """The worker's answer to ``ref``; if it died meanwhile, restore it and call it again."""
        while True:
            try:
                return self._get(worker, ref, method)
            except ray.exceptions.RayActorError as error:
                self._recover(worker, error)
                ref = getattr(worker.actor, method).remote(*args)

    def _get(self, worker: WorkerSlot, ref: "ray.ObjectRef", method: str) -> Any:
        try:
            return ray.get(ref, timeout=self.timeout_s)
        except ray.exceptions.GetTimeoutError:
            raise RolloutWorkerError(
                f"{worker.describe()} did not answer {method} within rollout.ray.timeout_s={self.timeout_s:g} s"
            ) from None

    def _recover(self, worker: WorkerSlot, error: Exception) -> None:
        """Count and log the death, wait for Ray to restart the worker and send it its envs' state
        (``RolloutWorker.restore``); a worker Ray does not bring back stops the run."""
        worker.deaths += 1
        if worker.deaths > self.max_restarts:
            raise RolloutWorkerError(
                f"{worker.describe()} died ({type(error).__name__}) and may not be restarted again "
                f"(rollout.ray.max_restarts={self.max_restarts})"
            ) from None
        self.restarts += 1
        tqdm.write(
            f"{worker.describe()} died ({type(error).__name__}); Ray restarts it "
            f"({worker.deaths}/{self.max_restarts}) and its envs take up their episodes again",
            file=sys.stderr,
        )
        deadline = time.monotonic() + self.timeout_s
        while True:
            try:
                answer = ray.get(worker.actor.restore.remote(worker.env_state), timeout=self.timeout_s)
                worker.pid, worker.env_state = answer["pid"], answer["env_state"]
                return
            except ray.exceptions.ActorUnavailableError:  # still restarting
                if time.monotonic() + RESTART_POLL_S > deadline:
                    break
                time.sleep(RESTART_POLL_S)
            except ray.exceptions.GetTimeoutError:
                break
            except ray.exceptions.RayActorError as dead:
                raise RolloutWorkerError(f"{worker.describe()} died and Ray did not restart it ({dead})") from None
        raise RolloutWorkerError(
            f"{worker.describe()} did not come back within rollout.ray.timeout_s={self.timeout_s:g} s after it died"
        )


class RayRolloutCollector:
    """The learner's collector over ``RayEnvs``, with ``RolloutCollector``'s interface.

    ``timing["env"]`` is the whole wait for the workers' segments (their acting included) and
    ``timing["policy"]`` is 0 (the learner does not act); ``metrics()`` adds the workers' own split
    and the restart count to the log row.
    """

    def __init__(self, envs: RayEnvs, model: torch.nn.Module, buffer: RolloutBuffer):
        if buffer.num_envs != envs.num_envs:
            raise ValueError(f"buffer has {buffer.num_envs} envs but the Ray workers have {envs.num_envs}")
        self.envs, self.model, self.buffer = envs, model, buffer
        self.obs = envs.obs
        self.timing = {"env": 0.0, "policy": 0.0}
        self.worker_timing = {"env": 0.0, "policy": 0.0}

    def collect(self, num_steps: Optional[int] = None) -> Dict[str, list]:
        """Fill the buffer from one segment per worker, compute advantages; the ended episodes' statistics."""
        buffer = self.buffer
        if num_steps is not None and num_steps != buffer.num_steps:
            raise ValueError(f"num_steps={num_steps} differs from the buffer size {buffer.num_steps}")
        start = time.perf_counter()
        weights = ray.put({k: v.detach().cpu() for k, v in self.model.state_dict().items()})
        segments = self.envs.collect_segments(weights, buffer.num_steps)
        self.timing = {"env": time.perf_counter() - start, "policy": 0.0}
        self.worker_timing = {key: float(np.mean([s["timing"][key] for s in segments])) for key in ("env", "policy")}
        write_segments(buffer, segments)
        self.obs = self.envs.obs
        return episode_stats(segments, [worker.envs.start for worker in self.envs.workers])

    def metrics(self) -> Dict[str, float]:
        return {
            "rollout/worker_restarts": float(self.envs.restarts),
            "time/worker_env_s": self.worker_timing["env"],
            "time/worker_policy_s": self.worker_timing["policy"],
        }


def write_segments(buffer: RolloutBuffer, segments: Sequence[Dict[str, Any]]) -> None:
    """The workers' (T, k) segments into the learner's (T, N) buffer, then advantages over the whole batch."""
    obs = concat_obs([s["segment_obs"] for s in segments], axis=1)
    fields = {name: np.concatenate([s[name] for s in segments], axis=1) for name in SEGMENT_FIELDS}
    buffer.reset()
    for t in range(buffer.num_steps):
        step_obs = {k: v[t] for k, v in obs.items()} if isinstance(obs, dict) else obs[t]
        buffer.add(step_obs, *(fields[name][t] for name in SEGMENT_FIELDS))
    buffer.finish(torch.as_tensor(np.concatenate([s["last_values"] for s in segments])))


def episode_stats(segments: Sequence[Dict[str, Any]], first_envs: Sequence[int]) -> Dict[str, list]:
    """The segments' ended episodes as ``RolloutCollector.collect`` reports them: global env indices,
    ordered by the step they ended at, then by env."""
    ended = []
    for segment, first in zip(segments, first_envs):
        done = (segment["terminated"] > 0) | (segment["truncated"] > 0)
        end_steps = {env: iter(np.flatnonzero(done[:, env])) for env in range(done.shape[1])}
        for record in segment["episodes"]:  # in the order they ended, so each env's in time order
            step = int(next(end_steps[record["env"]]))
            ended.append((step, first + record["env"], {**record, "env": first + record["env"]}))
    episodes = [record for _, _, record in sorted(ended, key=lambda item: item[:2])]
    return {
        "returns": [e["return"] for e in episodes],
        "lengths": [e["length"] for e in episodes],
        "successes": [float(e["success"]) for e in episodes if e["success"] is not None],
        "episodes": episodes,
    }
