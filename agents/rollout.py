"""Vector envs and on-policy rollout collection.

Envs use gymnasium's SAME_STEP autoreset (pinned in tests/test_rollout.py):
on the step where env i terminates or truncates, ``step`` already returns the
*reset* observation for env i, and the true final observation is in
``info["final_obs"][i]`` (an object array, valid where ``info["_final_obs"]``),
with that step's own info in ``info["final_info"]`` (masked the same way).
So every stored transition belongs to one episode, and truncated steps can be
bootstrapped from the true final observation.
"""

from __future__ import annotations

import functools
import multiprocessing
import signal
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector.async_vector_env import AsyncState

from agents.buffer import RolloutBuffer
from agents.env_guards import NONFINITE_KEY
from agents.rollout_policy import TorchRolloutPolicy

EXIT_REPORT_WAIT = 2.0  # seconds to wait for a worker whose pipe broke to report its exit code


class EnvWorkerDied(RuntimeError):
    """An env worker process died or stopped answering; the message names it and how it ended."""


class BoundedAsyncVectorEnv(gym.vector.AsyncVectorEnv):
    """``AsyncVectorEnv`` whose every wait is bounded by ``timeout`` seconds and whose dead workers are
    named: a worker killed mid-run (or hung) raises ``EnvWorkerDied`` with its index, pid and exit
    signal instead of a raw ``EOFError``/``ConnectionResetError`` from a pipe, or a hang."""

    def __init__(self, env_fns, timeout: float, **kwargs):
        if not timeout > 0:
            raise ValueError(f"env worker timeout must be positive, got {timeout}")
        self.timeout = float(timeout)
        self._failed = False
        super().__init__(env_fns, **kwargs)

    def reset_async(self, *args, **kwargs):
        return self._guarded("reset", lambda: super(BoundedAsyncVectorEnv, self).reset_async(*args, **kwargs))

    def step_async(self, actions):
        return self._guarded("step", lambda: super(BoundedAsyncVectorEnv, self).step_async(actions))

    def call_async(self, name, *args, **kwargs):
        return self._guarded("call", lambda: super(BoundedAsyncVectorEnv, self).call_async(name, *args, **kwargs))

    def reset_wait(self, timeout=None, **kwargs):
        return self._guarded(
            "reset", lambda: super(BoundedAsyncVectorEnv, self).reset_wait(self._bound(timeout), **kwargs)
        )

    def step_wait(self, timeout=None):
        return self._guarded("step", lambda: super(BoundedAsyncVectorEnv, self).step_wait(self._bound(timeout)))

    def call_wait(self, timeout=None):
        return self._guarded("call", lambda: super(BoundedAsyncVectorEnv, self).call_wait(self._bound(timeout)))

    def set_attr(self, name, values):
        """gymnasium's ``set_attr`` (same worker protocol), with its wait for the answers bounded."""
        if not isinstance(values, (list, tuple)):
            values = [values] * self.num_envs
        if len(values) != self.num_envs:
            raise ValueError(f"set_attr({name!r}) needs {self.num_envs} values, got {len(values)}")
        self._assert_is_running()
        if self._state != AsyncState.DEFAULT:
            raise RuntimeError(f"set_attr({name!r}) while waiting for a pending {self._state.value}")

        def wait():
            for pipe, value in zip(self.parent_pipes, values):
                pipe.send(("_setattr", (name, value)))
            if not self._poll_pipe_envs(self.timeout):
                raise multiprocessing.TimeoutError(f"no answer within {self.timeout:g} s")
            _, successes = zip(*[pipe.recv() for pipe in self.parent_pipes])
            self._raise_if_errors(successes)

        self._guarded("set_attr", wait)

    def _bound(self, timeout):
        return self.timeout if timeout is None else timeout

    def _guarded(self, what: str, wait):
        try:
            return wait()
        except (EOFError, ConnectionError, multiprocessing.TimeoutError) as error:
            self._failed = True  # the pending call will never complete: close must not wait for it
            raise EnvWorkerDied(self.describe_failure(what, error)) from None

    def _dead_workers(self, wait: float) -> list:
        """(index, process) of the workers that exited, waiting up to ``wait`` s for the one whose pipe broke
        (its end of the pipe closes a moment before the kernel reports its exit)."""
        deadline = time.monotonic() + wait
        while True:
            dead = [(i, p) for i, p in enumerate(self.processes) if p.exitcode is not None]
            if dead or time.monotonic() >= deadline:
                return dead
            time.sleep(0.02)

    def describe_failure(self, what: str, error: BaseException) -> str:
        broken_pipe = not isinstance(error, multiprocessing.TimeoutError)
        dead = self._dead_workers(EXIT_REPORT_WAIT if broken_pipe else 0.0)
        if not dead:
            return f"env workers did not answer {what} within {self.timeout:g} s ({type(error).__name__}: {error})"
        return "; ".join(
            f"env worker {i} (pid {p.pid}) died during {what}: {exit_description(p.exitcode)}" for i, p in dead
        )

    def close_extras(self, timeout=None, terminate=False):
        """A dead or hung worker cannot answer ``close``: then every worker is killed instead. (Killed,
        not terminated: the workers ignore SIGTERM, ``agents.training_envs.ignore_stop_signals``.)"""
        if self._failed:
            terminate = True
        if not terminate and self._state != AsyncState.DEFAULT:
            try:
                getattr(self, f"{self._state.value}_wait")(self._bound(timeout))
            except EnvWorkerDied:
                terminate = True
        if terminate or any(p.exitcode is not None for p in self.processes):
            terminate = True
            for process in self.processes:
                if process.is_alive():
                    process.kill()
            self._state = AsyncState.DEFAULT  # nothing is pending any more: the workers are gone
        super().close_extras(timeout=0 if terminate else timeout, terminate=terminate)


def exit_description(exitcode: int) -> str:
    """'killed by SIGKILL' for a negative exit code (the signal), else 'exited with status N'."""
    if exitcode < 0:
        try:
            return f"killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"killed by signal {-exitcode}"
    return f"exited with status {exitcode}"


class KeepInfoKeys(gym.Wrapper):
    """Passes on only the listed entries of the env's ``reset``/``step`` info.

    A vector env merges every env's info into batched arrays on every step
    (gymnasium's ``VectorEnv._add_info``), and with worker processes pickles it
    first. For the peg env's dozen measurements and nested reward terms that is
    ~40 us per step of 4 in-process envs (~10% of the step; measured with
    random actions), spent on keys the training loop never reads. Dropping them
    inside the env (the worker) saves both.
    """

    def __init__(self, env: gym.Env, keys: Sequence[str]):
        super().__init__(env)
        self.keys = tuple(keys)

    def _keep(self, info: Dict[str, Any]) -> Dict[str, Any]:
        return {k: info[k] for k in self.keys if k in info}

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        return obs, self._keep(info)

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        return obs, reward, terminated, truncated, self._keep(info)


def _make_env(
    env_id: Union[str, Callable[..., gym.Env]],
    env_kwargs: Dict[str, Any],
    max_episode_steps: Optional[int],
    info_keys: Optional[Sequence[str]] = None,
) -> gym.Env:
    """Build one env (runs inside the worker process for AsyncVectorEnv)."""
    if callable(env_id):
        env = env_id(**env_kwargs)
        if max_episode_steps is not None:
            env = gym.wrappers.TimeLimit(env, max_episode_steps)
    else:
        env = gym.make(env_id, max_episode_steps=max_episode_steps, **env_kwargs)
    if info_keys is not None:
        env = KeepInfoKeys(env, info_keys)
    return gym.wrappers.RecordEpisodeStatistics(env)  # outside the filter: its "episode" entry always passes


def make_vector_env(
    env_id: Union[str, Callable[..., gym.Env]],
    env_kwargs: Optional[Dict[str, Any]] = None,
    num_envs: int = 1,
    seed: Optional[int] = None,
    asynchronous: bool = True,
    max_episode_steps: Optional[int] = None,
    context: Optional[str] = None,
    info_keys: Optional[Sequence[str]] = None,
    worker_timeout: float = 300.0,
) -> gym.vector.VectorEnv:
    """``num_envs`` copies of ``env_id`` (a registered id or an env constructor) with SAME_STEP autoreset.

    Each env is wrapped in ``RecordEpisodeStatistics``. ``info_keys`` (None:
    all) lists the info entries each env passes on (``KeepInfoKeys``); the
    ``episode`` statistics always pass. ``seed`` seeds the
    action spaces here; the env RNGs are seeded by the first
    ``reset(seed=env_seeds(seed, num_envs))`` (``RolloutCollector`` does it).
    ``context`` is the multiprocessing start method
    for AsyncVectorEnv (None = platform default); ``worker_timeout`` bounds every
    wait for its workers (``BoundedAsyncVectorEnv``).
    """
    if num_envs < 1:
        raise ValueError(f"num_envs must be >= 1, got {num_envs}")
    if isinstance(info_keys, str):
        raise ValueError(f"info_keys must be a list of info keys, got the string {info_keys!r}")
    keys = None if info_keys is None else tuple(info_keys)
    env_fns = [
        functools.partial(_make_env, env_id, dict(env_kwargs or {}), max_episode_steps, keys) for _ in range(num_envs)
    ]
    mode = gym.vector.AutoresetMode.SAME_STEP
    if asynchronous and num_envs > 1:
        envs = BoundedAsyncVectorEnv(env_fns, worker_timeout, context=context, autoreset_mode=mode)
    else:
        envs = gym.vector.SyncVectorEnv(env_fns, autoreset_mode=mode)
    if seed is not None:
        envs.action_space.seed(seed)
    return envs


def env_seeds(seed: int, num_envs: int) -> List[int]:
    """One seed per env, derived from the run seed by ``numpy.random.SeedSequence``.

    Gymnasium's ``reset(seed=s)`` gives env i the seed s + i, so env i of run s would replay env
    i - 1 of run s + 1; spawned sequences make runs with different seeds share no stream.
    """
    return [int(child.generate_state(1)[0]) for child in np.random.SeedSequence(seed).spawn(num_envs)]


def stack_obs(observations: List[Any]) -> Union[np.ndarray, Dict[str, np.ndarray]]:
    """Stack single-env observations (arrays or dicts of arrays) into a batch."""
    if isinstance(observations[0], dict):
        return {k: np.stack([o[k] for o in observations]) for k in observations[0]}
    return np.stack(observations)


def episode_stats_from_info(info: Dict[str, Any]) -> Dict[str, list]:
    """Returns, lengths and success flags of the episodes that ended at this vector step.

    Under SAME_STEP autoreset the ending step's info sits in ``info["final_info"]``;
    ``RecordEpisodeStatistics`` put ``episode = {"r", "l", "t"}`` there.
    ``successes`` only lists episodes whose env reported ``is_success``. ``episodes`` has one
    record per ended episode: env index, return, length, success (None if not reported) and the
    ``start_id`` it began from (None unless the env passes ``start_id`` on, agents/start_states.py),
    and whether it was cut at a non-finite observation or reward (``nonfinite``, agents/env_guards.py).
    """
    stats = {"returns": [], "lengths": [], "successes": [], "episodes": []}
    final = info.get("final_info")
    if not final or "episode" not in final:
        return stats
    ended = np.flatnonzero(final["_episode"])
    stats["returns"] = [float(final["episode"]["r"][i]) for i in ended]
    stats["lengths"] = [int(final["episode"]["l"][i]) for i in ended]
    reported = final["_is_success"] if "is_success" in final else np.zeros(len(final["_episode"]), bool)
    if "is_success" in final:
        stats["successes"] = [float(final["is_success"][i]) for i in ended if reported[i]]
    has_start = "start_id" in final
    has_nonfinite = NONFINITE_KEY in final  # agents/env_guards.py cut the episode at a blow-up
    for i, ret, length in zip(ended, stats["returns"], stats["lengths"]):
        stats["episodes"].append(
            {
                "env": int(i),
                "return": ret,
                "length": length,
                "success": bool(final["is_success"][i]) if reported[i] else None,
                "start_id": int(final["start_id"][i]) if has_start and final["_start_id"][i] else None,
                "nonfinite": bool(has_nonfinite and final["_nonfinite"][i]),
            }
        )
    return stats


class RolloutCollector:
    """Steps the vector env with the model and fills a ``RolloutBuffer``.

    The policy and the value function stay fixed for the whole rollout: stored
    log-probs, values and bootstrap values all come from one function. The
    collector never moves the observation normaliser; the trainer merges the
    rollout into it after the update (``agents/trainer.py``), so the update
    sees the observations exactly as the acting policy did.
    ``bootstrap_truncated=False`` treats time-limit truncation as termination
    (only for ablations/tests).
    """

    def __init__(
        self,
        envs: gym.vector.VectorEnv,
        model: torch.nn.Module,
        buffer: RolloutBuffer,
        seed: Optional[int] = None,
        bootstrap_truncated: bool = True,
    ):
        if buffer.num_envs != envs.num_envs:
            raise ValueError(f"buffer has {buffer.num_envs} envs but the vector env has {envs.num_envs}")
        space = envs.single_action_space
        if not isinstance(space, gym.spaces.Box):
            raise ValueError(f"RolloutCollector supports Box action spaces, got {space}")
        self.envs, self.model, self.buffer = envs, model, buffer
        self.bootstrap_truncated = bootstrap_truncated
        self.action_low, self.action_high = space.low, space.high
        self.obs, _ = envs.reset(seed=None if seed is None else env_seeds(seed, envs.num_envs))
        # Seconds of the last ``collect`` spent waiting for ``envs.step`` and in the policy (act and value).
        self.timing = {"env": 0.0, "policy": 0.0}

    def _rollout_policy(self):
        """The model's own numpy-in/numpy-out policy when it has one (``rollout_policy()``), else a wrapper."""
        if hasattr(self.model, "rollout_policy"):
            return self.model.rollout_policy()
        return TorchRolloutPolicy(self.model, self.buffer.device)

    def _final_values(self, policy, info: Dict[str, Any], truncated: np.ndarray, terminated: np.ndarray) -> np.ndarray:
        """V(true final obs) for envs truncated (and not terminated) at this step, 0 elsewhere."""
        values = np.zeros(self.envs.num_envs, dtype=np.float32)
        envs = np.flatnonzero(truncated & ~terminated)
        if not self.bootstrap_truncated or len(envs) == 0:
            return values
        values[envs] = policy.value(stack_obs([info["final_obs"][i] for i in envs]))
        return values

    def collect(self, num_steps: Optional[int] = None) -> Dict[str, list]:
        """Fill the buffer (``num_steps`` must be the buffer's size) and compute advantages.

        Returns the statistics of the episodes that ended during the rollout:
        ``{"returns": [...], "lengths": [...], "successes": [...]}``.
        """
        buffer = self.buffer
        if num_steps is not None and num_steps != buffer.num_steps:
            raise ValueError(f"num_steps={num_steps} differs from the buffer size {buffer.num_steps}")
        buffer.reset()
        policy = self._rollout_policy()  # fixed for the whole rollout
        stats = {"returns": [], "lengths": [], "successes": [], "episodes": []}
        env_time = policy_time = 0.0
        for _ in range(buffer.num_steps):
            obs = self.obs
            t0 = time.perf_counter()
            action, log_prob, value = policy.act(obs)
            env_action = np.clip(action, self.action_low, self.action_high)
            t1 = time.perf_counter()
            self.obs, reward, terminated, truncated, info = self.envs.step(env_action)
            t2 = time.perf_counter()
            bootstrap = self._final_values(policy, info, truncated, terminated)
            env_time, policy_time = env_time + t2 - t1, policy_time + t1 - t0 + time.perf_counter() - t2
            buffer.add(obs, action, log_prob, value, reward, terminated, truncated, bootstrap)
            for key, values in episode_stats_from_info(info).items():
                stats[key].extend(values)
        buffer.finish(torch.as_tensor(policy.value(self.obs)))
        self.timing = {"env": env_time, "policy": policy_time}
        return stats
