"""Structured (typed) configs: the schemas of the Hydra config tree in ``configs/``.

Every yaml file under ``configs/`` starts with
``defaults: [/schema/<group>/<option>@_here_, _self_]``, naming a dataclass registered here, so
Hydra checks the file and every command-line override against it while composing:

- a misspelled key fails: ``Key 'lerning_rate' not in 'PPOAgentConfig'``
- a wrong type fails: ``Value 'abc' of type 'str' could not be converted to Float``
- an unknown group option fails: ``Could not find 'agent/sac'`` (with the valid options listed)

The schemas reuse the dataclasses that their code consumes (``PPOConfig``,
``TRPOConfig``, ``PegInsertionConfig``, ``PackedObjectsConfig``), so a new option is declared once, next
to the code that reads it. ``validate_train_config`` then runs the semantic
checks of those modules (value ranges, choices) before anything is built.

Each group node records its option in ``name`` (``agent.name=ppo``), so a saved
plain-dict config (from a checkpoint) can be re-typed with ``typed_config``.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Dict, List, Mapping, Optional, Sequence

import torch
from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from agents.ppo import PPOConfig, validate_ppo_config
from agents.trpo import TRPOConfig, validate_trpo_config
from envs.config import PackedObjectsConfig, PegInsertionConfig, validate_packed_objects
from envs.config import validate as validate_peg_insertion_config

WANDB_MODES = ("online", "offline", "disabled")

# ------------------------------------------------------------------ env


@dataclass
class GymEnvConfig:
    """Any registered Gymnasium id; ``kwargs`` go to ``gymnasium.make`` unchecked (add keys: ``+env.kwargs.k=v``)."""

    validate_kwargs: ClassVar[Optional[Callable]] = None  # free-form kwargs: gymnasium checks them
    curriculum_starts: ClassVar[Optional[str]] = None  # "module:function" (config, difficulty, rng) -> options
    demonstrator: ClassVar[Optional[str]] = None  # "module:Class", Class(env)(obs) -> action: a scripted controller
    name: str = "gym"
    id: str = MISSING
    max_episode_steps: Optional[int] = None  # None: the id's registered limit
    kwargs: Dict[str, Any] = field(default_factory=dict)


@dataclass
class PegInsertionEnvConfig:
    """The peg-in-hole env; ``kwargs`` are checked field by field against ``PegInsertionConfig``."""

    validate_kwargs: ClassVar[Optional[Callable]] = staticmethod(validate_peg_insertion_config)
    curriculum_starts: ClassVar[Optional[str]] = "envs.peg_insertion:start_at_difficulty"  # near-goal starts
    demonstrator: ClassVar[Optional[str]] = "envs.scripted:ScriptedInsertionPolicy"  # curriculum=demo's demos
    name: str = "peg_insertion"
    id: str = "GraphInsertion/PegInsertion-v0"
    max_episode_steps: Optional[int] = 100
    kwargs: PegInsertionConfig = field(default_factory=PegInsertionConfig)


@dataclass
class PackedObjectsEnvConfig:
    """The packed-objects env; ``kwargs`` are checked field by field against ``PackedObjectsConfig``."""

    validate_kwargs: ClassVar[Optional[Callable]] = staticmethod(validate_packed_objects)
    curriculum_starts: ClassVar[Optional[str]] = "envs.packed_objects:start_at_difficulty"
    demonstrator: ClassVar[Optional[str]] = "envs.scripted_packing:ScriptedPackingPolicy"  # push-then-insert
    name: str = "packed_objects"
    id: str = "GraphInsertion/PackedObjects-v0"
    max_episode_steps: Optional[int] = 200
    kwargs: PackedObjectsConfig = field(default_factory=PackedObjectsConfig)


# ---------------------------------------------------------------- agent


@dataclass
class RolloutConfig:
    """Advantage estimation, shared by both algorithms (the rollout buffer's parameters)."""

    gamma: float = 0.99
    gae_lambda: float = 0.95


@dataclass
class PPOAgentConfig(RolloutConfig, PPOConfig):
    """``agents.ppo.PPOConfig`` plus the rollout's gamma / gae_lambda."""

    target: ClassVar[str] = "agents.ppo:PPO"  # what agents/registry.py builds (not a config field)
    algorithm_config: ClassVar[type] = PPOConfig
    validate: ClassVar[Callable] = staticmethod(validate_ppo_config)
    name: str = "ppo"


@dataclass
class TRPOAgentConfig(RolloutConfig, TRPOConfig):
    """``agents.trpo.TRPOConfig`` plus the rollout's gamma / gae_lambda."""

    target: ClassVar[str] = "agents.trpo:TRPO"
    algorithm_config: ClassVar[type] = TRPOConfig
    validate: ClassVar[Callable] = staticmethod(validate_trpo_config)
    name: str = "trpo"


# ---------------------------------------------------------------- model


@dataclass
class MLPModelConfig:
    """Keyword arguments of ``agents.mlp.MLPActorCritic`` (Box observations)."""

    target: ClassVar[str] = "agents.mlp:MLPActorCritic"  # what agents/registry.py builds (not a config field)
    graph_observations: ClassVar[bool] = False
    name: str = "mlp"
    hidden_sizes: List[int] = field(default_factory=lambda: [64, 64])
    critic_hidden_sizes: Optional[List[int]] = None  # None: same as hidden_sizes
    activation: str = "elu"  # tanh | relu | elu
    init_log_std: float = 0.0
    normalize_obs: bool = True
    obs_clip: Optional[float] = 10.0


@dataclass
class GNNModelConfig:
    """Keyword arguments of ``agents.gnn.GraphActorCritic`` (graph Dict observations)."""

    target: ClassVar[str] = "agents.gnn:GraphActorCritic"
    graph_observations: ClassVar[bool] = True
    name: str = "gnn"
    hidden_dim: int = 64
    num_layers: int = 2  # message-passing rounds
    edge_hidden_dim: Optional[int] = None  # None: raw edge features into attention; int: an edge MLP
    actor_pooling: bool = True  # actor reads node 0 plus the pooled graph embedding
    shared_encoder: bool = False
    activation: str = "elu"  # tanh | relu | elu
    init_log_std: float = 0.0
    normalize_obs: bool = True
    obs_clip: Optional[float] = 10.0


# ----------------------------------------------------------- curriculum


@dataclass
class NoCurriculumConfig:
    """No curriculum: every episode starts from the task's own start distribution."""

    target: ClassVar[Optional[str]] = None
    name: str = "none"


@dataclass
class AdaptiveCurriculumConfig:
    """``curriculum.adaptive.AdaptiveCurriculum``: near-goal starts moved outward while the policy succeeds."""

    target: ClassVar[Optional[str]] = "curriculum.adaptive:AdaptiveCurriculum"
    name: str = "adaptive"
    initial_difficulty: float = 0.0  # 0: the goal; 1: the task's own start distribution
    min_difficulty: float = 0.0
    max_difficulty: float = 1.0
    step: float = 0.05  # difficulty change per move
    upper: float = 0.75  # success over the window above this: harder
    lower: float = 0.5  # below this: easier
    window: int = 20  # curriculum episodes per decision
    full_distribution_fraction: float = 0.1  # starts drawn from the task's own distribution throughout
    starts_per_rollout: int = 8  # fresh starts queued per env and rollout, one per episode (cycled)


@dataclass
class DemoCurriculumConfig(AdaptiveCurriculumConfig):
    """``curriculum.demo.DemoCurriculum``: starts taken from scripted demonstrations, from their end backward.

    The difficulty schedule is the adaptive one (same fields); the difficulty picks how far back along a
    demonstration the start lies (0: its final, solved state; 1: its first state, a start of the task's
    own distribution)."""

    target: ClassVar[Optional[str]] = "curriculum.demo:DemoCurriculum"
    name: str = "demo"
    demonstrations: int = 64  # scripted episodes recorded when training starts; the failed ones are dropped
    # At difficulty 1, starts drawn from the task's own distribution instead of the demonstrations'
    # first states: the curriculum's last level is the task itself, not a few dozen fixed starts.
    task_starts_at_full_difficulty: bool = False


@dataclass
class ReverseCurriculumConfig:
    """``curriculum.reverse.ReverseCurriculum``: starts grown backward from the goal by random walks."""

    target: ClassVar[Optional[str]] = "curriculum.reverse:ReverseCurriculum"
    name: str = "reverse"
    brownian_steps: int = 10  # random actions per walk from a parent start
    walk_action_scale: float = 0.2  # the walks' actions are uniform in [-scale, scale]^6
    # then each object the robot does not move takes a normal step of this times the task's own
    # displacement ranges (Task.perturb_start; 0: only the robot moves; the peg task has none)
    object_walk_scale: float = 0.1
    r_min: float = 0.1  # a start is good when its success rate lies in [r_min, r_max] ...
    r_max: float = 0.9
    min_visits: int = 2  # ... after this many episodes from it
    replay_fraction: float = 0.2  # starts drawn again from the buffer of old ones
    full_distribution_fraction: float = 0.1  # starts drawn from the task's own distribution throughout
    max_starts: int = 2000  # buffer size; the oldest starts that are not good are dropped first
    starts_per_rollout: int = 8  # starts queued per env and rollout, one per episode (cycled)


def validate_curriculum_config(cfg) -> None:
    """Ranges of an ``AdaptiveCurriculumConfig``, ``DemoCurriculumConfig`` or ``ReverseCurriculumConfig`` node."""
    if cfg.name == "reverse":
        return _validate_reverse_config(cfg)
    if not 0.0 <= cfg.min_difficulty <= cfg.initial_difficulty <= cfg.max_difficulty <= 1.0:
        raise ValueError(
            "need 0 <= min_difficulty <= initial_difficulty <= max_difficulty <= 1, got "
            f"{cfg.min_difficulty}, {cfg.initial_difficulty}, {cfg.max_difficulty}"
        )
    if not 0.0 < cfg.step <= 1.0:
        raise ValueError(f"step must be in (0, 1], got {cfg.step}")
    if not 0.0 <= cfg.lower <= cfg.upper <= 1.0:
        raise ValueError(f"need 0 <= lower <= upper <= 1, got lower={cfg.lower}, upper={cfg.upper}")
    for name in ("window", "starts_per_rollout"):
        if cfg[name] < 1:
            raise ValueError(f"{name} must be >= 1, got {cfg[name]}")
    if not 0.0 <= cfg.full_distribution_fraction <= 1.0:
        raise ValueError(f"full_distribution_fraction must be in [0, 1], got {cfg.full_distribution_fraction}")
    if cfg.name == "demo" and cfg.demonstrations < 1:
        raise ValueError(f"demonstrations must be >= 1, got {cfg.demonstrations}")
    if cfg.name == "demo" and cfg.task_starts_at_full_difficulty and cfg.max_difficulty < 1.0:
        raise ValueError(
            f"task_starts_at_full_difficulty needs max_difficulty=1.0, got {cfg.max_difficulty}: "
            "the curriculum would never reach the task's starts"
        )


def _validate_reverse_config(cfg) -> None:
    for name in ("brownian_steps", "min_visits", "max_starts", "starts_per_rollout"):
        if cfg[name] < 1:
            raise ValueError(f"{name} must be >= 1, got {cfg[name]}")
    if not 0.0 < cfg.walk_action_scale <= 1.0:
        raise ValueError(f"walk_action_scale must be in (0, 1], got {cfg.walk_action_scale}")
    if not (math.isfinite(cfg.object_walk_scale) and cfg.object_walk_scale >= 0.0):
        raise ValueError(f"object_walk_scale must be a finite number >= 0, got {cfg.object_walk_scale}")
    if not 0.0 <= cfg.r_min <= cfg.r_max <= 1.0:
        raise ValueError(f"need 0 <= r_min <= r_max <= 1, got r_min={cfg.r_min}, r_max={cfg.r_max}")
    for name in ("replay_fraction", "full_distribution_fraction"):
        if not 0.0 <= cfg[name] <= 1.0:
            raise ValueError(f"{name} must be in [0, 1], got {cfg[name]}")


# --------------------------------------------------------------- demonstration cloning


@dataclass
class DemoCloningConfig:
    """``agents.demo_cloning.DemoCloning``: a behaviour-cloning term on scripted demonstrations, added to the
    actor's loss with a weight that decays every update (DAPG, Rajeswaran et al. 2018). Off at weight 0."""

    weight: float = 0.0  # lambda_0: weight of the cloning loss at the first update; 0 turns the term off
    decay: float = 0.99  # lambda_1: the weight at update k is weight * decay ** k
    demonstrations: int = 64  # scripted episodes recorded when training starts; the failed ones are dropped
    batch_size: int = 256  # demonstration pairs per minibatch step
    pretrain_steps: int = 2000  # Adam steps of cloning alone, actor only, before the first rollout (0: none)
    pretrain_learning_rate: float = 1e-3
    # True: the observation statistics are fitted on the demonstrations' observations and then kept, never
    # merged with rollouts. A curriculum's first rollouts come from a few near-goal states, and merging them
    # moved the inputs the cloned actor was fitted on so far that it lost every start it had solved.
    keep_demo_statistics: bool = False


def validate_demo_cloning_config(cfg) -> None:
    if not (math.isfinite(cfg.weight) and cfg.weight >= 0.0):
        raise ValueError(f"demo_cloning.weight must be a finite number >= 0, got {cfg.weight}")
    if not 0.0 < cfg.decay <= 1.0:
        raise ValueError(f"demo_cloning.decay must be in (0, 1], got {cfg.decay}")
    for name in ("demonstrations", "batch_size"):
        if cfg[name] < 1:
            raise ValueError(f"demo_cloning.{name} must be >= 1, got {cfg[name]}")
    if cfg.pretrain_steps < 0:
        raise ValueError(f"demo_cloning.pretrain_steps must be >= 0, got {cfg.pretrain_steps}")
    if not (math.isfinite(cfg.pretrain_learning_rate) and cfg.pretrain_learning_rate > 0.0):
        raise ValueError(f"demo_cloning.pretrain_learning_rate must be > 0, got {cfg.pretrain_learning_rate}")


# --------------------------------------------------------------- logger


@dataclass
class WandbConfig:
    mode: str = "offline"  # online | offline (default: no account, no network) | disabled
    project: str = "graph-insertion"
    entity: Optional[str] = None
    group: Optional[str] = None
    name: Optional[str] = None  # None: the run directory's name
    tags: List[str] = field(default_factory=list)


@dataclass
class LoggerConfig:
    """CSV (``metrics.csv``) and TensorBoard (``tb/``) are always written; wandb is configurable."""

    name: str = "default"
    wandb: WandbConfig = field(default_factory=WandbConfig)


# ------------------------------------------------------------------ run


@dataclass
class EvalConfig:
    """Periodic evaluation during training, which picks ``best.pt``.

    With ``every=0`` (off), ``best.pt`` follows the rolling mean over the last
    ``window`` training episodes instead. Either way the metric is the success
    rate when the env reports ``info["is_success"]``, else the mean return.
    """

    every: int = 0  # updates between evaluations; 0 disables
    episodes: int = 10
    deterministic: bool = True
    seed: int = 10_000  # separate from training seeds
    window: int = 100  # training episodes in the rolling metric


# ------------------------------------------------------ rollout backend

ROLLOUT_BACKENDS = ("local", "ray")


@dataclass
class RayRolloutConfig:
    """Rollout workers on Ray (``rollout.backend=ray``, agents/ray_rollout.py): each worker is a Ray actor
    that builds ``envs_per_worker`` envs and a CPU copy of the policy, and returns rollout segments."""

    address: Optional[str] = None  # null: start a local Ray instance; "auto" / "ray://host:port": join a cluster
    num_workers: int = 2
    envs_per_worker: Optional[int] = None  # null: num_envs / num_workers; num_workers * envs_per_worker = num_envs
    cpus_per_worker: float = 1.0  # Ray CPUs reserved per worker (fractions share cores)
    max_restarts: int = 3  # times Ray restarts each dead worker before the run stops
    timeout_s: float = 600.0  # bound on every wait for a worker (a segment, a restart)


@dataclass
class RolloutBackendConfig:
    """Where the envs run: ``local`` (vector envs in this machine's processes) or ``ray`` (Ray actors)."""

    backend: str = "local"
    ray: RayRolloutConfig = field(default_factory=RayRolloutConfig)


def ray_envs_per_worker(cfg: DictConfig) -> int:
    """``rollout.ray.envs_per_worker``, or ``num_envs / num_workers`` when it is null."""
    ray_cfg = cfg.rollout.ray
    return ray_cfg.envs_per_worker if ray_cfg.envs_per_worker is not None else cfg.num_envs // ray_cfg.num_workers


def validate_rollout_config(cfg: DictConfig) -> None:
    """``rollout.*``: the backend, and for Ray the worker layout, which must give exactly ``num_envs`` envs."""
    rollout = cfg.rollout
    if rollout.backend not in ROLLOUT_BACKENDS:
        raise ValueError(f"rollout.backend={rollout.backend!r} is not one of {list(ROLLOUT_BACKENDS)}")
    ray_cfg = rollout.ray
    address = ray_cfg.address
    if address is not None and address != "auto" and not re.fullmatch(r"(ray://)?[\w.-]+:\d+", address):
        raise ValueError(f"rollout.ray.address={address!r} is not null, 'auto', 'ray://host:port' or 'host:port'")
    for name, minimum in (("num_workers", 1), ("max_restarts", 0)):
        if ray_cfg[name] < minimum:
            raise ValueError(f"rollout.ray.{name} must be >= {minimum}, got {ray_cfg[name]}")
    for name in ("cpus_per_worker", "timeout_s"):
        if not ray_cfg[name] > 0:
            raise ValueError(f"rollout.ray.{name} must be > 0, got {ray_cfg[name]}")
    if rollout.backend != "ray":
        return
    workers, per_worker = ray_cfg.num_workers, ray_cfg.envs_per_worker
    if per_worker is None and cfg.num_envs % workers:
        raise ValueError(
            f"num_envs={cfg.num_envs} is not a multiple of rollout.ray.num_workers={workers}; "
            "set rollout.ray.envs_per_worker so that num_workers * envs_per_worker = num_envs"
        )
    if per_worker is not None and (per_worker < 1 or workers * per_worker != cfg.num_envs):
        raise ValueError(
            f"rollout.ray.num_workers * rollout.ray.envs_per_worker = {workers} * {per_worker} must equal "
            f"num_envs={cfg.num_envs}"
        )
    if cfg.normalize_rewards:
        raise ValueError("normalize_rewards=true is not supported with rollout.backend=ray; use rollout.backend=local")


@dataclass
class TrainConfig:
    env: Any = MISSING
    agent: Any = MISSING
    model: Any = MISSING
    curriculum: Any = MISSING
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    seed: int = 0
    total_steps: int = 1_000_000  # env steps summed over all envs
    num_envs: int = 8
    rollout_steps: int = 256  # steps per env per update (batch = num_envs * rollout_steps)
    async_envs: bool = True  # one process per env (AsyncVectorEnv); false: all in this process
    rollout: RolloutBackendConfig = field(default_factory=RolloutBackendConfig)  # local envs or Ray workers
    # Info entries the training envs pass to the loop (the loop reads only is_success); null: all.
    # Dropping the rest in the env saves the vector env's per-step merging (agents/rollout.py).
    info_keys: Optional[List[str]] = field(default_factory=lambda: ["is_success"])
    # Divide rewards by the running std of their discounted sum (gymnasium's vector NormalizeReward,
    # with agent.gamma). Logged and evaluated returns stay raw.
    normalize_rewards: bool = False
    device: str = "cpu"
    # torch intra-op and BLAS threads (agents/threads.py); small nets are fastest with 1, and cores are shared
    torch_threads: int = 1
    checkpoint_every: int = 10  # updates between checkpoints/latest.pt (also written at the end)
    keep_checkpoints: int = 2  # the last K latest.pt checkpoints kept (as step_*.pt) for a fallback on resume
    worker_timeout: float = 300.0  # seconds an env worker may take to answer before the run stops
    max_skipped_updates: int = 3  # updates in a row with a non-finite loss/gradient before the run stops
    progress_bar: bool = True
    eval: EvalConfig = field(default_factory=EvalConfig)
    demo_cloning: DemoCloningConfig = field(default_factory=DemoCloningConfig)
    resume: Optional[str] = None  # a run directory: continue it from checkpoints/latest.pt


@dataclass
class EvaluateConfig:
    """``scripts/evaluate.py``: env overrides (``env.kwargs.clearance=...``) apply to the checkpoint's env."""

    checkpoint: str = MISSING  # a .pt file, or a run directory (uses checkpoints/<which>)
    which: str = "latest"  # latest | best: the file used when ``checkpoint`` is a run directory
    episodes: int = 100
    deterministic: bool = True
    seed: int = 1000
    device: str = "cpu"
    # One thread, as in training: with torch's default (one per core) each small op of a graph
    # policy waited on a descheduled partner thread while other jobs ran (176 ms per act, not ~3).
    torch_threads: int = 1
    output: Optional[str] = None  # JSON path; None: <run dir>/eval/<timestamp>/results.json
    video: bool = False
    video_episodes: int = 3  # the first N episodes are recorded
    video_format: str = "mp4"  # mp4 | gif
    video_fps: int = 25  # frames per second of simulated time: videos play in real time
    video_width: int = 640  # render size of the frames (sets env.kwargs.sim.image_width/height)
    video_height: int = 480
    video_hold_seconds: float = 1.0  # the last frame stays this long
    video_overlay: bool = True  # step, reward and success written on the frames


# The one table of names a config selects: group -> option name -> schema. Model and agent schemas
# also say what they build (``target``), which agents/registry.py reads.
GROUP_SCHEMAS: Dict[str, Dict[str, type]] = {
    "env": {"gym": GymEnvConfig, "peg_insertion": PegInsertionEnvConfig, "packed_objects": PackedObjectsEnvConfig},
    "agent": {"ppo": PPOAgentConfig, "trpo": TRPOAgentConfig},
    "model": {"mlp": MLPModelConfig, "gnn": GNNModelConfig},
    "curriculum": {
        "none": NoCurriculumConfig,
        "adaptive": AdaptiveCurriculumConfig,
        "reverse": ReverseCurriculumConfig,
        "demo": DemoCurriculumConfig,
    },
    "logger": {"default": LoggerConfig},
}


def register_configs() -> None:
    """Store the schemas in Hydra's ConfigStore as ``schema/<group>/<option>``; idempotent.

    They live outside the real groups so that ``agent=sac`` lists only the real options.
    """
    cs = ConfigStore.instance()
    cs.store(group="schema", name="train", node=TrainConfig)
    cs.store(group="schema", name="evaluate", node=EvaluateConfig)
    for group, schemas in GROUP_SCHEMAS.items():
        for name, schema in schemas.items():
            cs.store(group=f"schema/{group}", name=name, node=schema)
    if not OmegaConf.has_resolver("at_most_batch"):
        OmegaConf.register_new_resolver("at_most_batch", at_most_batch)


CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"


def compose_train_config(
    overrides: Sequence[str] = (), config_dir: Path = CONFIG_DIR, return_hydra_config: bool = False
) -> DictConfig:
    """``configs/train.yaml`` with ``overrides``, typed by the schemas, as ``scripts/train.py`` composes it,
    for code outside a Hydra app (benchmarks, the experiment runner, tests)."""
    from hydra import compose, initialize_config_dir

    register_configs()
    with initialize_config_dir(config_dir=str(config_dir), version_base="1.3"):
        return compose(config_name="train", overrides=list(overrides), return_hydra_config=return_hydra_config)


def at_most_batch(size: int, *, _root_: DictConfig) -> int:
    """``${at_most_batch:256}`` (the agents' default minibatch): 256 samples, or the whole batch
    (num_envs * rollout_steps) when it is smaller. A minibatch size that is set is never reduced."""
    return min(int(size), _root_.num_envs * _root_.rollout_steps)


def _run_dir(resume: Optional[str], default: str) -> str:
    """``hydra.run.dir``: a resumed run writes into its own directory again (checked before Hydra creates it)."""
    if not resume:
        return default
    latest = Path(resume) / "checkpoints" / "latest.pt"
    if not latest.is_file():
        raise FileNotFoundError(
            f"resume={resume}: no checkpoint {latest} (not a run directory, or the run "
            f"stopped before its first checkpoint)"
        )
    return str(Path(resume).resolve())


def register_resolvers() -> None:
    """Resolvers used by ``configs/train.yaml``'s hydra section."""
    if not OmegaConf.has_resolver("run_dir"):
        OmegaConf.register_new_resolver("run_dir", _run_dir)
    if not OmegaConf.has_resolver("hydra_subdir"):
        # A resumed run keeps the original .hydra/ and records its own invocation next to it.
        OmegaConf.register_new_resolver(
            "hydra_subdir", lambda resume, stamp: f".hydra/resume-{stamp}" if resume else ".hydra"
        )


def typed_config(plain: Mapping) -> DictConfig:
    """Re-type a plain-dict train config (as saved in checkpoints) against the schemas; struct mode on.

    Raises ``ValueError`` naming an unknown group option.
    """
    cfg = OmegaConf.merge(OmegaConf.structured(TrainConfig), {k: v for k, v in plain.items() if k not in GROUP_SCHEMAS})
    for group, schemas in GROUP_SCHEMAS.items():
        node = plain.get(group)
        if node is None:
            raise ValueError(f"config has no '{group}' section")
        name = node.get("name")
        if name not in schemas:
            raise ValueError(f"{group}.name={name!r} is not one of {sorted(schemas)}")
        typed = OmegaConf.merge(OmegaConf.structured(schemas[name]), node)
        OmegaConf.update(cfg, group, typed, merge=False, force_add=True)
    OmegaConf.set_struct(cfg, True)
    return cfg


def to_container(cfg: DictConfig) -> Dict[str, Any]:
    """Plain resolved dict (checkpoints, wandb)."""
    return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)


def dataclass_from(cls, node: Mapping):
    """Instance of dataclass ``cls`` from the matching keys of ``node`` (e.g. PPOConfig from agent)."""
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in dict(node).items() if k in names})


def _check_demo_cloning(cfg: DictConfig) -> None:
    validate_demo_cloning_config(cfg.demo_cloning)
    if cfg.demo_cloning.weight == 0.0:
        return
    if GROUP_SCHEMAS["env"][cfg.env.name].demonstrator is None:
        raise ValueError(
            f"demo_cloning.weight > 0 needs a scripted demonstrator, which env={cfg.env.name} does not define"
        )
    if cfg.agent.name != "ppo":
        raise ValueError(
            f"demo_cloning.weight > 0 needs agent=ppo (its actor loss takes the term), got agent={cfg.agent.name}"
        )


def validate_train_config(cfg: DictConfig) -> None:
    """Semantic checks beyond types, run before anything is built; raises ``ValueError`` naming the key."""
    for name in ("total_steps", "num_envs", "rollout_steps", "checkpoint_every", "torch_threads"):
        if cfg[name] < 1:
            raise ValueError(f"{name} must be >= 1, got {cfg[name]}")
    _check_fault_settings(cfg)
    validate_seed("seed", cfg.seed)
    validate_seed("eval.seed", cfg.eval.seed)
    validate_device(cfg.device)
    if cfg.eval.every < 0 or cfg.eval.episodes < 1 or cfg.eval.window < 1:
        raise ValueError("eval.every must be >= 0, eval.episodes and eval.window >= 1")
    if cfg.logger.wandb.mode not in WANDB_MODES:
        raise ValueError(f"logger.wandb.mode={cfg.logger.wandb.mode!r} is not one of {list(WANDB_MODES)}")
    if not 0.0 <= cfg.agent.gamma <= 1.0 or not 0.0 <= cfg.agent.gae_lambda <= 1.0:
        raise ValueError("agent.gamma and agent.gae_lambda must be in [0, 1]")
    agent = GROUP_SCHEMAS["agent"][cfg.agent.name]
    _reraise("agent", lambda: agent.validate(dataclass_from(agent.algorithm_config, cfg.agent)))
    _check_minibatches_fit_the_batch(cfg)
    validate_env_config(cfg)
    _check_info_keys_keep_success(cfg)
    env = GROUP_SCHEMAS["env"][cfg.env.name]
    if GROUP_SCHEMAS["curriculum"][cfg.curriculum.name].target is not None:
        _reraise("curriculum", lambda: validate_curriculum_config(cfg.curriculum))
        if cfg.curriculum.name != "demo" and env.curriculum_starts is None:
            raise ValueError(
                f"curriculum={cfg.curriculum.name} needs near-goal starts, which env={cfg.env.name} "
                "does not define (start_at_difficulty); use curriculum=none"
            )
        if cfg.curriculum.name == "demo" and env.demonstrator is None:
            raise ValueError(
                f"curriculum=demo needs a scripted demonstrator, which env={cfg.env.name} does not define; "
                "use curriculum=adaptive or reverse"
            )
    _check_demo_cloning(cfg)
    validate_rollout_config(cfg)


def _check_fault_settings(cfg: DictConfig) -> None:
    """The keys that decide how a run survives faults (agents/trainer.py, agents/rollout.py)."""
    if cfg.keep_checkpoints < 1:
        raise ValueError(f"keep_checkpoints must be >= 1 (the last K latest.pt kept), got {cfg.keep_checkpoints}")
    if not cfg.worker_timeout > 0:
        raise ValueError(f"worker_timeout must be a positive number of seconds, got {cfg.worker_timeout}")
    if cfg.max_skipped_updates < 1:
        raise ValueError(f"max_skipped_updates must be >= 1, got {cfg.max_skipped_updates}")


def validate_env_config(cfg: DictConfig) -> None:
    """The checks of the ``env`` and ``model`` nodes alone: all that evaluating a checkpoint needs."""
    steps = cfg.env.max_episode_steps
    if steps is not None and steps < 1:
        raise ValueError(
            f"env.max_episode_steps={steps} is not allowed; allowed: an integer >= 1, "
            "or null (the id's registered limit)"
        )
    env = GROUP_SCHEMAS["env"][cfg.env.name]
    if env.validate_kwargs is not None:
        kwargs = OmegaConf.to_object(cfg.env.kwargs)
        _reraise("env.kwargs", lambda: env.validate_kwargs(kwargs))
        _check_model_reads_the_observations(cfg.model.name, cfg.env.kwargs.obs_mode)


# numpy's legacy seeding (np.random.seed, which seed_everything calls) takes 32-bit unsigned seeds.
MAX_SEED = 2**32 - 1


def validate_seed(key: str, seed: int) -> None:
    if not 0 <= seed <= MAX_SEED:
        raise ValueError(f"{key}={seed} is out of range; allowed: 0..{MAX_SEED}")


def available_devices() -> List[str]:
    """The torch devices this machine has: ``cpu``, then ``cuda:0..N-1`` and ``mps`` when present."""
    devices = ["cpu"]
    gpus = torch.cuda.device_count()
    if gpus:
        devices.append("cuda:0" if gpus == 1 else f"cuda:0..{gpus - 1}")
    if torch.backends.mps.is_available():
        devices.append("mps")
    return devices


def _device_exists(device: torch.device) -> bool:
    index = device.index or 0
    if device.type == "cpu":
        return True
    if device.type == "cuda":
        return index < torch.cuda.device_count()
    return device.type == "mps" and index == 0 and torch.backends.mps.is_available()


def validate_device(name: str) -> None:
    """``device`` must be one this machine has: ``torch.device`` accepts ``cuda:7`` anywhere, and the
    failure would otherwise come only when the model moves there, after the envs started."""
    try:
        device = torch.device(name)
    except RuntimeError:
        device = None
    if device is None or not _device_exists(device):
        raise ValueError(f"device={name} is not available on this machine; available: {', '.join(available_devices())}")


def _check_minibatches_fit_the_batch(cfg: DictConfig) -> None:
    """A minibatch larger than the batch, or more minibatches than samples, is an error (the update
    would otherwise silently use the whole batch, or minibatches of one sample)."""
    batch = cfg.num_envs * cfg.rollout_steps
    for name in ("minibatch_size", "num_minibatches", "critic_minibatch_size"):
        value = cfg.agent.get(name)
        if value is not None and value > batch:
            raise ValueError(
                f"agent.{name}={value} is larger than the batch (num_envs * rollout_steps = "
                f"{cfg.num_envs} * {cfg.rollout_steps} = {batch}); allowed: 1..{batch}"
            )


def _check_model_reads_the_observations(model: str, obs_mode: str) -> None:
    """What ``agents.registry.build_model`` checks on the built env, known here from ``env.kwargs.obs_mode``."""
    reads = "graph" if GROUP_SCHEMAS["model"][model].graph_observations else "flat"
    if reads != obs_mode:
        fits = [
            name
            for name, schema in GROUP_SCHEMAS["model"].items()
            if schema.graph_observations == (obs_mode == "graph")
        ]
        raise ValueError(
            f"model={model} reads {reads} observations, but env.kwargs.obs_mode={obs_mode}; "
            f"allowed: model={'|'.join(fits)}, or env.kwargs.obs_mode={reads}"
        )


# The envs whose info reports ``is_success`` (envs.base.InsertionEnv): best.pt follows it when present.
SUCCESS_REPORTING_IDS = "GraphInsertion/"


def _check_info_keys_keep_success(cfg: DictConfig) -> None:
    """Dropping ``is_success`` from ``info_keys`` would quietly make best.pt follow the return instead."""
    keys = cfg.info_keys
    if keys is None or "is_success" in keys or not cfg.env.id.startswith(SUCCESS_REPORTING_IDS):
        return
    raise ValueError(
        f"info_keys=[{','.join(keys)}] leaves out is_success, which {cfg.env.id} reports and best.pt follows; "
        "allowed: a list with is_success (e.g. info_keys=[is_success]), or info_keys=null (all keys)"
    )


def _reraise(prefix: str, check) -> None:
    try:
        check()
    except ValueError as e:
        raise ValueError(f"{prefix}: {e}") from None


RESUME_OVERRIDABLE = (
    "total_steps",
    "checkpoint_every",
    "progress_bar",
    "torch_threads",
    "device",
    "async_envs",
    "logger.wandb.mode",
    "keep_checkpoints",
    "worker_timeout",
    "max_skipped_updates",
    # Where the envs run: the same envs and seeds either way (num_envs itself cannot change).
    "rollout.backend",
    "rollout.ray.address",
    "rollout.ray.num_workers",
    "rollout.ray.envs_per_worker",
    "rollout.ray.cpus_per_worker",
    "rollout.ray.max_restarts",
    "rollout.ray.timeout_s",
)


def _flatten(node: Any, prefix: str = "") -> Dict[str, Any]:
    if not isinstance(node, Mapping):
        return {prefix: node}
    flat: Dict[str, Any] = {}
    for key, value in node.items():
        flat.update(_flatten(value, f"{prefix}{key}" if not prefix else f"{prefix}.{key}"))
    return flat


def config_changes(saved: Mapping, composed: Mapping) -> List[str]:
    """Dotted keys whose values differ between a run's saved config and a newly composed one, other
    than ``resume`` and the ``RESUME_OVERRIDABLE`` keys: what would make continuing the run in place
    a different experiment."""
    old, new = _flatten(saved), _flatten(composed)
    allowed = {"resume", *RESUME_OVERRIDABLE}
    return sorted(
        k for k in old.keys() | new.keys() if k not in allowed and old.get(k, "<unset>") != new.get(k, "<unset>")
    )


def apply_resume_overrides(saved: Mapping, overrides: Sequence[tuple]) -> DictConfig:
    """The saved config of a run, with the few ``(key, value)`` overrides a resume may change.

    Anything else would silently make the continued run a different experiment,
    so it is rejected with the list of keys that are allowed.
    """
    cfg = typed_config(saved)
    for key, value in overrides:
        if key == "resume":
            continue
        if key not in RESUME_OVERRIDABLE:
            raise ValueError(
                f"'{key}' cannot be changed when resuming (the run continues with its saved "
                f"config); allowed overrides: {list(RESUME_OVERRIDABLE)}"
            )
        OmegaConf.update(cfg, key, value)
    return cfg
