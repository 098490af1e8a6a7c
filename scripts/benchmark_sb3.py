"""Our PPO/TRPO against stable-baselines3's PPO and sb3-contrib's TRPO, on equal terms.

Full benchmark (run it when the machine is otherwise idle: timing is part of the
result). README's table came from these runs (about 60 minutes on 2 cores)::

    python scripts/benchmark_sb3.py --tasks peg --seeds 0 1 2 3 4 5 6 7 8 9 \
        --algos ours_ppo ours_trpo sb3_ppo sb3_trpo --out docs/benchmarks/benchmark_sb3_peg.json
    python scripts/benchmark_sb3.py --tasks pendulum --seeds 0 1 2 3 4 5 6 7 8 9 \
        --algos ours_ppo ours_trpo sb3_ppo sb3_trpo --out docs/benchmarks/benchmark_sb3_pendulum.json
    python scripts/benchmark_sb3.py --tasks pendulum_norm --seeds 0 1 2 3 4 5 6 7 8 9 \
        --algos ours_ppo ours_trpo sb3_ppo sb3_trpo --out docs/benchmarks/benchmark_sb3_pendulum_norm.json

What is held equal (``TASKS`` below holds the shared hyperparameters of each task):

- environment (same id, kwargs and time limit; both pass on only the info entries
  our training envs keep, ``KeepInfoKeys``), total env steps, number of envs
  and their vectorization (peg: one worker process each, our ``AsyncVectorEnv``
  and SB3's ``SubprocVecEnv``, both started with ``fork``; Pendulum: in-process,
  ``SyncVectorEnv`` and ``DummyVecEnv``), steps per env per rollout;
- networks: separate actor and critic MLPs [64, 64], tanh, orthogonal init
  (gain sqrt 2, 0.01 for the action mean, 1 for the value), state-independent
  log-std starting at 0; observation normalisation (running mean/var, clip 10,
  eps 1e-8): ours inside the model, SB3 ``VecNormalize(norm_obs=True)``; reward scaling
  off on both sides, except in ``pendulum_norm``: ours ``normalize_rewards=true``
  (gymnasium's vector ``NormalizeReward``), SB3 ``VecNormalize(norm_reward=True)``;
- PPO: lr, epochs, minibatch size, clip range, target KL (early stop of the
  whole update at 1.5 x target_kl, both with the k3 estimator), advantage
  normalisation per minibatch, grad-norm clip 0.5, entropy 0, Adam eps 1e-5, and
  the same value-loss term ``0.5 * mean((V - R)^2)`` (SB3 writes
  ``vf_coef * mse``, ours ``vf_coef * 0.5 * mse``, so ours gets twice SB3's vf_coef);
- TRPO: max KL (sb3-contrib ``target_kl``), CG iterations and damping, line-search
  shrink factor and iterations, critic Adam (lr, eps 1e-8), critic epochs and minibatch;
- one torch thread on both sides; runs are strictly sequential, interleaved
  (for each task and seed: every algorithm) so load drift hits all of them alike.

Ours is trained exactly as users run it: ``scripts/train.py`` as a subprocess
with Hydra overrides, then ``scripts/evaluate.py``. SB3 runs in a child process
of this script (``--sb3-child``), which also evaluates it.
Each final policy is evaluated the same way: ``--eval-episodes`` deterministic
episodes from held-out seed ``--eval-seed`` with frozen normalisation statistics;
both sides use ``agents.training_envs.make_env`` for evaluation, so episode k starts
from the same state for every run. Peg insertion also reports the success rate.

Timing (training only, evaluation excluded):

- ``wall``: from launching a fresh Python process until the trained policy is on
  disk. Ours = ``train.py`` until its final ``checkpoints/latest.pt`` is written
  (the file's mtime: Python start, imports, Hydra, env/model creation, logging
  and checkpoints); SB3 = a child process of this script until ``model.zip`` and
  the VecNormalize statistics are saved (Python start, imports, env creation,
  model construction, ``model.learn``, saving). The processes' shutdown after
  that (closing env workers, interpreter teardown: ~0.7 s once torch is
  imported) is left out on both sides;
- ``loop``: ours = the trainer's own ``time/elapsed`` (last row of
  ``metrics.csv``: the collect/update loop, env creation excluded); SB3 = ``model.learn``.

The last stdout line is a one-line JSON summary; ``--out`` receives the same
plus every run's details (rewritten after each run, so a stopped benchmark keeps
what it finished). Run directories go under ``--run-root``.
"""

from __future__ import annotations

import argparse
import csv
import ctypes
import dataclasses
import functools
import json
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402
from torch import nn  # noqa: E402

import envs  # noqa: E402,F401  (registers GraphInsertion/PegInsertion-v0)
from agents.config import TrainConfig  # noqa: E402
from agents.rollout import KeepInfoKeys  # noqa: E402
from agents.threads import set_cpu_threads  # noqa: E402
from agents.training_envs import make_env  # noqa: E402

TRAIN = ROOT / "scripts" / "train.py"
EVALUATE = ROOT / "scripts" / "evaluate.py"
TRAIN_INFO_KEYS = TrainConfig().info_keys  # what our training envs pass on (configs/train.yaml: info_keys)
# sb3_* use our update schedule (minibatch, epochs, target KL, CG iterations: a like-for-like
# comparison); sb3_*_default keep SB3's own schedule defaults, as a user who only sets the
# shared settings would run it. Both share everything else.
ALGOS = ("ours_ppo", "ours_trpo", "sb3_ppo", "sb3_trpo", "sb3_ppo_default", "sb3_trpo_default")


# ------------------------------------------------------------------ tasks


@dataclass(frozen=True)
class Shared:
    """Hyperparameters given identically to both implementations; defaults = the project's configs."""

    num_envs: int = 4
    n_steps: int = 256  # per env per rollout
    gamma: float = 0.99
    gae_lambda: float = 0.95
    hidden: tuple = (64, 64)
    # PPO
    learning_rate: float = 3e-4
    epochs: int = 10
    minibatch: int = 256
    clip: float = 0.2
    target_kl: Optional[float] = 0.02  # None: no KL early stop
    max_grad_norm: float = 0.5
    vf_coef: float = 0.5  # SB3 convention (vf_coef * mse); ours gets 2x (it writes vf_coef * 0.5 * mse)
    # TRPO
    max_kl: float = 0.01
    cg_iters: int = 10
    cg_damping: float = 0.1
    backtrack_coef: float = 0.8
    backtrack_iters: int = 10
    critic_lr: float = 1e-3
    critic_epochs: int = 10
    critic_minibatch: int = 256
    # Reward scaling by the running std of the discounted return: ours normalize_rewards
    # (gymnasium's NormalizeReward), SB3 VecNormalize(norm_reward=True).
    normalize_rewards: bool = False


@dataclass(frozen=True)
class Task:
    name: str
    env_id: str
    max_episode_steps: Optional[int]  # None: the id's registered limit
    env_kwargs: Dict[str, Any]
    hydra_env: List[str]  # the same env for scripts/train.py
    shared: Shared
    default_steps: int
    # One worker process per env (ours AsyncVectorEnv, SB3 SubprocVecEnv) or all envs in the
    # main process (SyncVectorEnv / DummyVecEnv): the same on both sides, and what a user would
    # pick: processes pay off for the physics env, not for Pendulum's microsecond steps.
    async_envs: bool = True


# Tuned so that both sides learn within ~100k steps. TRPO: sb3-contrib's defaults for the critic
# minibatch (128) and CG iterations (15), which fit Pendulum's critic better than the project's 256 / 10.
PENDULUM = Shared(
    num_envs=8, gamma=0.95, learning_rate=1e-3, target_kl=None, max_kl=0.02, cg_iters=15, critic_minibatch=128
)
TASKS = {
    "pendulum": Task(
        "pendulum", "Pendulum-v1", None, {}, ["env=gym", "env.id=Pendulum-v1"], PENDULUM, 100_000, async_envs=False
    ),
    # The same with reward scaling on both sides (Pendulum's discounted returns are ~-300 at gamma 0.95).
    "pendulum_norm": Task(
        "pendulum_norm",
        "Pendulum-v1",
        None,
        {},
        ["env=gym", "env.id=Pendulum-v1"],
        dataclasses.replace(PENDULUM, normalize_rewards=True),
        100_000,
        async_envs=False,
    ),
    # The project's defaults (configs/train.yaml, configs/agent/*.yaml, configs/model/mlp.yaml)
    # on flat-observation peg insertion with the floating gripper.
    "peg": Task(
        "peg",
        "GraphInsertion/PegInsertion-v0",
        100,
        {"robot": "floating", "obs_mode": "flat"},
        ["env=peg_insertion", "env.max_episode_steps=100", "env.kwargs.robot=floating", "env.kwargs.obs_mode=flat"],
        Shared(),
        100_000,
    ),
}


@dataclass
class RunResult:
    task: str
    algo: str
    seed: int
    env_steps: int
    mean_return: float
    success_rate: Optional[float]  # None when the env does not report is_success
    wall_s: float
    loop_s: float
    run_dir: str
    extra: Dict[str, Any] = field(default_factory=dict)


# ------------------------------------------------------------------- ours


def ours_overrides(algo: str, task: Task, seed: int, steps: int, run_dir: Path) -> List[str]:
    """Hydra overrides for scripts/train.py that spell out every shared setting."""
    s = task.shared
    hidden = "[" + ",".join(str(h) for h in s.hidden) + "]"
    common = [
        *task.hydra_env,
        "model=mlp",
        f"model.hidden_sizes={hidden}",
        f"model.critic_hidden_sizes={hidden}",
        "model.activation=tanh",
        "model.init_log_std=0.0",
        "model.normalize_obs=true",
        "model.obs_clip=10.0",
        f"normalize_rewards={str(s.normalize_rewards).lower()}",
        f"seed={seed}",
        f"total_steps={steps}",
        f"num_envs={s.num_envs}",
        f"rollout_steps={s.n_steps}",
        f"async_envs={str(task.async_envs).lower()}",
        "device=cpu",
        "torch_threads=1",
        "eval.every=0",
        "progress_bar=false",
        "logger.wandb.mode=disabled",
        f"hydra.run.dir={run_dir}",
    ]
    rollout = [
        f"agent.gamma={s.gamma}",
        f"agent.gae_lambda={s.gae_lambda}",
        "agent.ent_coef=0.0",
        "agent.normalize_advantages=true",
        "agent.anneal_lr=false",
    ]
    if algo == "ours_ppo":
        target_kl = "null" if s.target_kl is None else s.target_kl
        return [
            *common,
            "agent=ppo",
            *rollout,
            f"agent.learning_rate={s.learning_rate}",
            "agent.critic_learning_rate=null",
            f"agent.num_epochs={s.epochs}",
            f"agent.minibatch_size={s.minibatch}",
            f"agent.clip_coef={s.clip}",
            "agent.clip_value_loss=false",
            f"agent.vf_coef={2 * s.vf_coef}",
            f"agent.max_grad_norm={s.max_grad_norm}",
            f"agent.target_kl={target_kl}",
            "agent.kl_stop_factor=1.5",
            "agent.kl_penalty=false",
            "agent.kl_adaptive_lr=false",
        ]
    return [
        *common,
        "agent=trpo",
        *rollout,
        f"agent.max_kl={s.max_kl}",
        f"agent.cg_iters={s.cg_iters}",
        f"agent.cg_damping={s.cg_damping}",
        f"agent.backtrack_coef={s.backtrack_coef}",
        f"agent.backtrack_iters={s.backtrack_iters}",
        f"agent.critic_learning_rate={s.critic_lr}",
        f"agent.critic_epochs={s.critic_epochs}",
        f"agent.critic_minibatch_size={s.critic_minibatch}",
        "agent.critic_max_grad_norm=null",
    ]


def run_script(script: Path, args: List[str]) -> str:
    """Run a project script with this interpreter; its stdout, or an error with the output's tail."""
    proc = subprocess.run([sys.executable, str(script), *args], cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(
            f"{script.name} {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
        )
    return proc.stdout


def run_ours(algo: str, task: Task, seed: int, steps: int, run_dir: Path, episodes: int, eval_seed: int) -> RunResult:
    """scripts/train.py (timed), then scripts/evaluate.py on the final checkpoint (latest.pt)."""
    launched = time.time()
    run_script(TRAIN, ours_overrides(algo, task, seed, steps, run_dir))
    wall = (run_dir / "checkpoints" / "latest.pt").stat().st_mtime - launched  # written last (atomic rename)
    with open(run_dir / "metrics.csv", newline="") as f:
        loop = float(list(csv.DictReader(f))[-1]["time/elapsed"])
    stdout = run_script(
        EVALUATE,
        [
            f"checkpoint={run_dir}",
            "which=latest",
            f"episodes={episodes}",
            "deterministic=true",
            f"seed={eval_seed}",
            f"output={run_dir / 'eval.json'}",
        ],
    )
    summary = json.loads(stdout.strip().splitlines()[-1])
    return RunResult(
        task.name,
        algo,
        seed,
        summary["global_step"],
        summary["mean_return"],
        summary["success_rate"],
        wall,
        loop,
        str(run_dir),
        {"std_return": summary["std_return"]},
    )


# ------------------------------------------------------------------- SB3


def _sb3_training_env(task: Task) -> gym.Env:
    """The env SB3 trains on: as ours, passing on only the info entries our training envs keep."""
    env = gym.make(task.env_id, max_episode_steps=task.max_episode_steps, **task.env_kwargs)
    return KeepInfoKeys(env, TRAIN_INFO_KEYS)


def run_sb3(algo: str, task: Task, seed: int, steps: int, run_dir: Path, episodes: int, eval_seed: int) -> RunResult:
    """SB3 PPO / sb3-contrib TRPO on VecNormalize(SubprocVecEnv or DummyVecEnv), then its evaluation.

    ``extra["saved_epoch"]`` is when the model and its normalisation statistics were on disk
    (``run_sb3_process`` measures the wall-clock to it from the process launch)."""
    from sb3_contrib import TRPO
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecNormalize

    s = task.shared
    set_cpu_threads(1)  # torch and numpy's BLAS
    policy_kwargs = dict(
        net_arch=dict(pi=list(s.hidden), vf=list(s.hidden)), activation_fn=nn.Tanh, ortho_init=True, log_std_init=0.0
    )
    start = time.perf_counter()
    env_fn = functools.partial(_sb3_training_env, task)
    if task.async_envs:  # fork: as gymnasium's AsyncVectorEnv here
        vectorization = dict(vec_env_cls=SubprocVecEnv, vec_env_kwargs=dict(start_method="fork"))
    else:
        vectorization = dict(vec_env_cls=DummyVecEnv)
    venv = make_vec_env(env_fn, n_envs=s.num_envs, seed=seed, **vectorization)
    venv = VecNormalize(
        venv, norm_obs=True, norm_reward=s.normalize_rewards, clip_obs=10.0, epsilon=1e-8, gamma=s.gamma
    )
    common = dict(
        n_steps=s.n_steps,
        gamma=s.gamma,
        gae_lambda=s.gae_lambda,
        normalize_advantage=True,
        seed=seed,
        device="cpu",
        verbose=0,
    )
    matched = not algo.endswith("_default")
    if algo.startswith("sb3_ppo"):
        schedule = dict(batch_size=s.minibatch, n_epochs=s.epochs, target_kl=s.target_kl) if matched else {}
        model = PPO(
            "MlpPolicy",
            venv,
            learning_rate=s.learning_rate,
            clip_range=s.clip,
            clip_range_vf=None,
            ent_coef=0.0,
            vf_coef=s.vf_coef,
            max_grad_norm=s.max_grad_norm,
            policy_kwargs=policy_kwargs,
            **schedule,
            **common,
        )  # Adam eps 1e-5 as ours
    else:
        schedule = (
            dict(
                batch_size=s.critic_minibatch,
                cg_max_steps=s.cg_iters,
                line_search_shrinking_factor=s.backtrack_coef,
                line_search_max_iter=s.backtrack_iters,
                n_critic_updates=s.critic_epochs,
            )
            if matched
            else {}
        )
        model = TRPO(
            "MlpPolicy",
            venv,
            learning_rate=s.critic_lr,
            target_kl=s.max_kl,
            cg_damping=s.cg_damping,
            sub_sampling_factor=1,
            policy_kwargs=dict(policy_kwargs, optimizer_kwargs=dict(eps=1e-8)),
            **schedule,
            **common,
        )  # ours: Adam eps 1e-8
    learn_start = time.perf_counter()
    model.learn(total_timesteps=steps)
    end = time.perf_counter()

    run_dir.mkdir(parents=True, exist_ok=True)
    model.save(run_dir / "model.zip")
    venv.save(str(run_dir / "vecnormalize.pkl"))
    saved_epoch = time.time()
    venv.close()
    evaluation = evaluate_sb3(model, run_dir / "vecnormalize.pkl", task, episodes, eval_seed)
    return RunResult(
        task.name,
        algo,
        seed,
        int(model.num_timesteps),
        evaluation["mean_return"],
        evaluation["success_rate"],
        end - start,
        end - learn_start,
        str(run_dir),
        {"std_return": evaluation["std_return"], "saved_epoch": saved_epoch},
    )


def run_sb3_process(
    algo: str, task: Task, seed: int, steps: int, run_dir: Path, episodes: int, eval_seed: int
) -> RunResult:
    """``run_sb3`` in a fresh Python process, so that its wall-clock counts interpreter start-up and
    imports (torch, SB3) exactly as ours counts ``train.py``'s; the loop time is unchanged."""
    request = {
        "algo": algo,
        "task": asdict(task),
        "seed": seed,
        "steps": steps,
        "run_dir": str(run_dir),
        "episodes": episodes,
        "eval_seed": eval_seed,
    }
    launched = time.time()
    stdout = run_script(Path(__file__).resolve(), ["--sb3-child", json.dumps(request)])
    result = RunResult(**json.loads(stdout.strip().splitlines()[-1]))
    result.wall_s = result.extra["saved_epoch"] - launched
    return result


def sb3_child(request_json: str) -> None:
    """Entry point of ``run_sb3_process``'s child: one SB3 run, its RunResult as the last stdout line."""
    request = json.loads(request_json)
    task_fields = request["task"]
    task = Task(
        **{
            **task_fields,
            "shared": Shared(**{k: tuple(v) if k == "hidden" else v for k, v in task_fields["shared"].items()}),
        }
    )
    result = run_sb3(
        request["algo"],
        task,
        request["seed"],
        request["steps"],
        Path(request["run_dir"]),
        request["episodes"],
        request["eval_seed"],
    )
    sys.stdout.flush()
    ctypes.CDLL(None).fflush(None)
    print(json.dumps(asdict(result)), flush=True)


def evaluate_sb3(model, stats_path: Path, task: Task, episodes: int, seed: int) -> Dict[str, Any]:
    """``episodes`` deterministic episodes with the saved, frozen VecNormalize statistics.

    The env is ``agents.training_envs.make_env`` (EpisodeSeeding) in a DummyVecEnv seeded
    once with ``seed``: the same start states as ``scripts/evaluate.py seed=<seed>``.
    Rewards are raw (``norm_reward=False``); success = ``is_success`` was ever true.
    """
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    venv = DummyVecEnv([functools.partial(make_env, task.env_id, task.max_episode_steps, **task.env_kwargs)])
    venv = VecNormalize.load(str(stats_path), venv)
    venv.training, venv.norm_reward = False, False
    venv.seed(seed)
    obs = venv.reset()
    returns, successes = [], []
    total, success, reports_success = 0.0, False, False
    while len(returns) < episodes:
        action, _ = model.predict(obs, deterministic=True)  # clipped to the action space
        obs, reward, done, info = venv.step(action)
        total += float(reward[0])
        reports_success = reports_success or "is_success" in info[0]
        success = success or bool(info[0].get("is_success", False))
        if done[0]:
            returns.append(total)
            successes.append(success)
            total, success = 0.0, False
    venv.close()
    return {
        "mean_return": float(np.mean(returns)),
        "std_return": float(np.std(returns)),
        "success_rate": float(np.mean(successes)) if reports_success else None,
    }


# ---------------------------------------------------------------- report


def mean_std(values: List[Optional[float]]) -> Optional[tuple]:
    """(mean, std over seeds; sample std, 0 for one seed), or None when there are no values."""
    values = [v for v in values if v is not None]
    if not values:
        return None
    return float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def mean_difference_ci(
    ours: List[Optional[float]], theirs: List[Optional[float]], resamples: int = 10_000, seed: int = 0
) -> Optional[tuple]:
    """(mean(ours) - mean(theirs), 2.5th and 97.5th percentile of its bootstrap distribution).

    Seeds are not paired across libraries (seed k draws different random
    streams in each), so each side's seeds are resampled independently
    (percentile bootstrap, Efron & Tibshirani 1993, ch. 13). An interval that
    contains 0 means the seeds cannot tell the two apart.
    """
    ours_arr, theirs_arr = (
        np.asarray([v for v in ours if v is not None], float),
        np.asarray([v for v in theirs if v is not None], float),
    )
    if ours_arr.size == 0 or theirs_arr.size == 0:
        return None
    rng = np.random.default_rng(seed)
    boot = rng.choice(ours_arr, (resamples, ours_arr.size)).mean(1) - rng.choice(
        theirs_arr, (resamples, theirs_arr.size)
    ).mean(1)
    low, high = np.percentile(boot, [2.5, 97.5])
    return float(ours_arr.mean() - theirs_arr.mean()), float(low), float(high)


def aggregate(results: List[RunResult]) -> Dict[str, Dict[str, Dict[str, Any]]]:
    """{task: {algo: means over seeds}}, with wall-clock ratios ours/SB3 on the 'ours_*' rows."""
    table: Dict[str, Dict[str, Dict[str, Any]]] = {}
    for r in results:
        table.setdefault(r.task, {}).setdefault(r.algo, {"runs": []})["runs"].append(r)
    for rows in table.values():
        runs_of = {algo: row["runs"] for algo, row in rows.items()}
        for row in rows.values():
            runs = row.pop("runs")
            row.update(
                seeds=[r.seed for r in runs],
                env_steps=int(np.mean([r.env_steps for r in runs])),
                **{
                    "return": mean_std([r.mean_return for r in runs]),
                    "success_rate": mean_std([r.success_rate for r in runs]),
                },
                wall_s=float(np.mean([r.wall_s for r in runs])),
                loop_s=float(np.mean([r.loop_s for r in runs])),
            )
        for kind in ("ppo", "trpo"):
            ours, theirs, default = rows.get(f"ours_{kind}"), rows.get(f"sb3_{kind}"), rows.get(f"sb3_{kind}_default")
            if ours and theirs:
                ours["wall_ratio_vs_sb3"] = ours["wall_s"] / theirs["wall_s"]
                ours["loop_ratio_vs_sb3"] = ours["loop_s"] / theirs["loop_s"]
                mine, sb3 = runs_of[f"ours_{kind}"], runs_of[f"sb3_{kind}"]
                ours["return_diff_vs_sb3"] = mean_difference_ci(
                    [r.mean_return for r in mine], [r.mean_return for r in sb3]
                )
                ours["success_diff_vs_sb3"] = mean_difference_ci(
                    [r.success_rate for r in mine], [r.success_rate for r in sb3]
                )
            if ours and default:
                ours["loop_ratio_vs_sb3_default"] = ours["loop_s"] / default["loop_s"]
    return table


def markdown_table(table: Dict[str, Dict[str, Dict[str, Any]]], episodes: int) -> str:
    def pm(value: Optional[tuple], digits: int) -> str:
        return "-" if value is None else f"{value[0]:.{digits}f} ± {value[1]:.{digits}f}"

    def ratio(value: Optional[float]) -> str:
        return "-" if value is None else f"{value:.2f}"

    def diff(value: Optional[tuple], digits: int) -> str:
        return "-" if value is None else f"{value[0]:+.{digits}f} [{value[1]:+.{digits}f}, {value[2]:+.{digits}f}]"

    lines = [
        f"final policy: {episodes} deterministic episodes; ± = std over seeds; "
        "ratios = ours / SB3 with our schedule, and loop time ours / SB3 with its default schedule; "
        "vs SB3 = difference of means ours - SB3 (our schedule) [95% bootstrap interval over seeds]",
        "",
        "| task | algorithm | seeds | env steps | return | success | wall s | loop s | wall ratio | loop ratio "
        "| loop ratio vs SB3 defaults | return vs SB3 | success vs SB3 |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for task, rows in table.items():
        for algo in sorted(rows, key=ALGOS.index):
            row = rows[algo]
            lines.append(
                f"| {task} | {algo} | {len(row['seeds'])} | {row['env_steps']} | {pm(row['return'], 1)} | "
                f"{pm(row['success_rate'], 2)} | {row['wall_s']:.1f} | {row['loop_s']:.1f} | "
                f"{ratio(row.get('wall_ratio_vs_sb3'))} | {ratio(row.get('loop_ratio_vs_sb3'))} | "
                f"{ratio(row.get('loop_ratio_vs_sb3_default'))} | {diff(row.get('return_diff_vs_sb3'), 1)} | "
                f"{diff(row.get('success_diff_vs_sb3'), 2)} |"
            )
    return "\n".join(lines)


# ------------------------------------------------------------------ main


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", nargs="+", choices=list(TASKS), default=list(TASKS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument(
        "--steps-pendulum",
        type=int,
        default=TASKS["pendulum"].default_steps,
        help="env steps of pendulum and pendulum_norm",
    )
    parser.add_argument("--steps-peg", type=int, default=TASKS["peg"].default_steps)
    parser.add_argument("--algos", nargs="+", choices=ALGOS, default=list(ALGOS))
    parser.add_argument(
        "--vectorization",
        choices=["task", "sync", "async"],
        default="task",
        help="sync: all envs in the training process (SyncVectorEnv / DummyVecEnv); async: one "
        "worker process per env (AsyncVectorEnv / SubprocVecEnv); task: each task's default",
    )
    parser.add_argument("--eval-episodes", type=int, default=20)
    parser.add_argument("--eval-seed", type=int, default=10_000, help="held out: training seeds are small")
    parser.add_argument("--out", type=Path, default=Path("outputs/benchmark_sb3.json"))
    parser.add_argument(
        "--run-root", type=Path, default=None, help="run directories (default: outputs/benchmark_sb3/<date_time>)"
    )
    args = parser.parse_args(argv)
    for name in ("steps_pendulum", "steps_peg", "eval_episodes"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    return args


def main(argv: Optional[List[str]] = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--sb3-child"]:
        sb3_child(argv[1])
        return
    args = parse_args(argv)
    run_root = (args.run_root or ROOT / "outputs" / "benchmark_sb3" / time.strftime("%Y-%m-%d_%H-%M-%S")).resolve()
    out = args.out if args.out.is_absolute() else Path.cwd() / args.out
    steps = {name: args.steps_peg if name == "peg" else args.steps_pendulum for name in TASKS}
    results: List[RunResult] = []

    def write(final: bool) -> Dict[str, Any]:
        summary = {
            "tasks": args.tasks,
            "seeds": args.seeds,
            "vectorization": args.vectorization,
            "algos": args.algos,
            "steps": {t: steps[t] for t in args.tasks},
            "eval_episodes": args.eval_episodes,
            "eval_seed": args.eval_seed,
            "complete": final,
            "results": aggregate(results),
            "out": str(out),
        }
        out.parent.mkdir(parents=True, exist_ok=True)
        with open(out, "w") as f:
            json.dump(
                {
                    **summary,
                    "shared_hyperparameters": {t: asdict(TASKS[t].shared) for t in args.tasks},
                    "runs": [asdict(r) for r in results],
                },
                f,
                indent=2,
            )
        return summary

    for task_name in args.tasks:
        task = TASKS[task_name]
        if args.vectorization != "task":
            task = dataclasses.replace(task, async_envs=args.vectorization == "async")
        for seed in args.seeds:  # interleaved: every algorithm per seed, so load drift affects all alike
            for algo in args.algos:
                run_dir = run_root / task_name / algo / f"seed{seed}"
                run = run_ours if algo.startswith("ours_") else run_sb3_process
                result = run(algo, task, seed, steps[task_name], run_dir, args.eval_episodes, args.eval_seed)
                results.append(result)
                success = "" if result.success_rate is None else f"  success {result.success_rate:.2f}"
                print(
                    f"{task_name} {algo} seed {seed}: return {result.mean_return:.1f}{success}  "
                    f"wall {result.wall_s:.1f}s  loop {result.loop_s:.1f}s  ({result.env_steps} steps)",
                    flush=True,
                )
                write(final=False)

    summary = write(final=True)
    print()
    print(markdown_table(summary["results"], args.eval_episodes))
    print(f"\ndetails: {out}  runs: {run_root}")
    # PyBullet prints through C stdio: flush it first so the JSON stays the last line.
    sys.stdout.flush()
    ctypes.CDLL(None).fflush(None)
    print(json.dumps(summary, allow_nan=False), flush=True)


if __name__ == "__main__":
    main()
