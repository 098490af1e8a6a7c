"""Train an agent (Hydra entry point). Configs: ``configs/train.yaml`` and its groups.

Examples::

    python scripts/train.py                                     # peg insertion, PPO, GNN
    python scripts/train.py env=peg_insertion agent=trpo model=gnn env.kwargs.robot=floating
    python scripts/train.py env=gym env.id=Pendulum-v1 model=mlp total_steps=200000
    python scripts/train.py env=peg_insertion model=mlp env.kwargs.obs_mode=flat
    python scripts/train.py logger.wandb.mode=online            # default offline: no account/network
    python scripts/train.py --cfg job                           # print the composed config and exit

Rollout workers on Ray (``rollout.backend=ray``, agents/ray_rollout.py; README "Rollout workers on Ray")::

    python scripts/train.py rollout.backend=ray                 # a local Ray instance, 2 workers x 2 envs
    python scripts/train.py rollout.backend=ray num_envs=8 rollout.ray.num_workers=8    # 1 env each
    python scripts/train.py rollout.backend=ray rollout.ray.address=auto num_envs=64 rollout.ray.num_workers=32
    python scripts/train.py rollout.backend=ray rollout.ray.address=ray://head-node:10001 ...   # Ray Client

A dead worker is restarted by Ray and its rollout segment collected again (one line on stderr,
``rollout/worker_restarts`` in metrics.csv); past ``rollout.ray.max_restarts`` the run stops.

Run directory (``outputs/<date>/<time>/``, or ``multirun/<date>/<time>/<job>/``)::

    .hydra/                 composed config, hydra config, command-line overrides
    checkpoints/latest.pt   every ``checkpoint_every`` updates, at the end and on a stop signal
    checkpoints/step_*.pt   the last ``keep_checkpoints`` of them (latest.pt is the newest)
    checkpoints/best.pt     whenever the eval (or, with eval.every=0, rolling training) success rate
                            improves, or ties with a higher mean return (see configs/train.yaml)
    metrics.csv  tb/  wandb/  train.log

Resume a stopped, killed or finished run in its own directory (same wandb id)::

    python scripts/train.py resume=outputs/2025-01-01/12-00-00
    python scripts/train.py resume=outputs/2025-01-01/12-00-00 total_steps=2000000   # train longer

The saved config is used; only ``agents.config.RESUME_OVERRIDABLE`` keys
(total_steps, checkpoint_every, ...) may be overridden. The invocation is
recorded in ``.hydra/resume-<time>/``.

A run launched into a directory that already holds a run's ``checkpoints/latest.pt``
(``hydra.run.dir=<dir>``, or a multirun with fixed ``hydra.sweep`` dirs) continues it
when its config is the same apart from those keys, and stops at once when that run
is finished; a different config there is an error. So an interrupted sweep
(``configs/experiment/``, ``scripts/run_experiment.py``) is finished by running the
same command again.

Several seeds
-------------
``python scripts/train.py -m seed=0,1,2`` runs the jobs one after another
(Hydra's basic launcher; one run directory and one wandb run per job). Hydra's
joblib launcher runs them in parallel processes::

    python scripts/train.py -m seed=0,1,2 hydra/launcher=joblib hydra.launcher.n_jobs=3 progress_bar=false

Each run already uses ``num_envs`` processes for its envs, so keep
(n_jobs x num_envs) near the number of cores.

Exit status: 0 when done, 128 + signal number after a stop by SIGTERM, SIGINT
(Ctrl-C), SIGUSR1 or SIGUSR2, also sent to the whole process group (with
``latest.pt`` written), 1 with one ``Error:`` line on errors: a config mistake, a
run directory in use by another process, a dead env worker (after an emergency
``latest.pt``), a full disk (the previous checkpoint intact), repeated
non-finite updates. A corrupt ``latest.pt`` is replaced on resume by the newest
readable ``checkpoints/step_*.pt`` (``keep_checkpoints``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, open_dict

from agents.checkpoint import LATEST, CheckpointError, history, load_latest
from agents.config import (
    apply_resume_overrides,
    config_changes,
    register_configs,
    register_resolvers,
    to_container,
    validate_train_config,
)
from agents.rollout import EnvWorkerDied
from agents.run_lock import RunDirInUse
from agents.trainer import TrainingAborted, train

register_configs()
register_resolvers()


def check_resume_argument(argv: list) -> None:
    """Fail before Hydra creates anything when ``resume=<dir>`` has no checkpoint to continue from."""
    for arg in argv:
        if arg.startswith("resume=") and arg != "resume=null":
            latest = Path(arg.split("=", 1)[1]) / "checkpoints" / LATEST
            if not latest.is_file() and not history(latest.parent):
                sys.exit(
                    f"Error: {arg}: no checkpoint {latest} (not a run directory, or the run stopped "
                    f"before its first checkpoint)"
                )


def command_line_overrides() -> list:
    """(key, value) pairs of this invocation's ``key=value`` overrides."""
    parsed = OverridesParser.create().parse_overrides(list(HydraConfig.get().overrides.task))
    return [(o.key_or_group, o.value()) for o in parsed]


def load_run_checkpoint(run_dir: Path) -> dict:
    """The run's ``latest.pt``, or the newest readable kept checkpoint when it is corrupt or missing
    (saying so); exits with one ``Error:`` line when none can be read."""
    try:
        checkpoint, path, problem = load_latest(run_dir)
    except CheckpointError as error:
        sys.exit(f"Error: {error}")
    if problem:
        print(f"{problem}; resuming from {path} (step {checkpoint['global_step']}) instead", file=sys.stderr)
    return checkpoint


def continue_in_place(cfg: DictConfig, run_dir: Path):
    """The checkpoint of the run already in ``run_dir`` (a rerun sweep, a requeued job), or None.

    A run directory holds one run: launched again with the same config it continues (or, if done,
    stops at once), so rerunning an interrupted multirun finishes only what is missing. A different
    config there is an error, not a second run mixed into the first one's files.
    """
    latest = run_dir / "checkpoints" / LATEST
    if not latest.is_file() and not history(latest.parent):
        return None
    checkpoint = load_run_checkpoint(run_dir)
    changed = config_changes(checkpoint["config"], to_container(cfg))
    if changed:
        sys.exit(
            f"Error: {run_dir} already holds a run with another config (differs in {', '.join(changed[:5])}); "
            "choose another hydra.run.dir, or continue it with resume=<that dir>"
        )
    print(f"continuing the run in {run_dir} from its checkpoint at step {checkpoint['global_step']}", flush=True)
    with open_dict(cfg):
        cfg.resume = str(run_dir)
    return checkpoint


@hydra.main(version_base="1.3", config_path="../configs", config_name="train")
def main(cfg: DictConfig) -> None:
    checkpoint = None
    if cfg.resume:
        run_dir = Path(cfg.resume).resolve()
        checkpoint = load_run_checkpoint(run_dir)
        try:
            cfg = apply_resume_overrides(checkpoint["config"], command_line_overrides())
        except ValueError as error:  # a key a resume may not change
            sys.exit(f"Error: {error}")
        with open_dict(cfg):
            cfg.resume = str(run_dir)
    else:
        run_dir = Path(HydraConfig.get().runtime.output_dir)
        checkpoint = continue_in_place(cfg, run_dir)
    try:
        validate_train_config(cfg)  # value checks (ranges, choices) the schema cannot express
    except ValueError as error:
        sys.exit(f"Error: {error}")
    if checkpoint is not None and checkpoint["global_step"] >= cfg.total_steps:
        print(
            f"run dir: {run_dir}  already trained to {checkpoint['global_step']} steps (total_steps={cfg.total_steps})"
        )
        return
    try:
        result = train(cfg, run_dir, checkpoint)
    except (TrainingAborted, EnvWorkerDied, RunDirInUse, CheckpointError) as error:
        sys.exit(f"Error: {error}")
    print(f"run dir: {run_dir}  steps: {result.global_step}  updates: {result.updates}  best: {result.best_metric}")
    if result.stopped_by is not None:
        sys.exit(128 + result.stopped_by)


if __name__ == "__main__":
    check_resume_argument(sys.argv[1:])
    main()
