"""Train an agent (Hydra entry point). Configs: ``configs/train.yaml`` and its groups.

Examples::

    python scripts/train.py                                     # peg insertion, PPO, GNN
    python scripts/train.py env=peg_insertion agent=trpo model=gnn env.kwargs.robot=floating
    python scripts/train.py env=gym env.id=Pendulum-v1 model=mlp total_steps=200000
    python scripts/train.py env=peg_insertion model=mlp env.kwargs.obs_mode=flat
    python scripts/train.py logger.wandb.mode=online            # default offline: no account/network
    python scripts/train.py --cfg job                           # print the composed config and exit

Run directory (``outputs/<date>/<time>/``, or ``multirun/<date>/<time>/<job>/``)::

    .hydra/                 composed config, hydra config, command-line overrides
    checkpoints/latest.pt   every ``checkpoint_every`` updates, at the end and on SIGTERM/Ctrl-C
    checkpoints/best.pt     whenever the eval (or rolling training) success rate/return improves
    metrics.csv  tb/  wandb/  train.log

Resume a stopped, killed or finished run in its own directory (same wandb id)::

    python scripts/train.py resume=outputs/2025-01-01/12-00-00
    python scripts/train.py resume=outputs/2025-01-01/12-00-00 total_steps=2000000   # train longer

The saved config is used; only ``agents.config.RESUME_OVERRIDABLE`` keys
(total_steps, checkpoint_every, ...) may be overridden. The invocation is
recorded in ``.hydra/resume-<time>/``.

Several seeds
-------------
``python scripts/train.py -m seed=0,1,2`` runs the jobs one after another
(Hydra's basic launcher; one run directory and one wandb run per job). Hydra's
joblib launcher runs them in parallel processes::

    python scripts/train.py -m seed=0,1,2 hydra/launcher=joblib hydra.launcher.n_jobs=3 progress_bar=false

Each run already uses ``num_envs`` processes for its envs, so keep
(n_jobs x num_envs) near the number of cores.

Exit status: 0 when done, 128 + signal number after a SIGTERM/Ctrl-C stop
(with ``latest.pt`` written), 1 on errors.
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, open_dict

from agents.checkpoint import LATEST, load_checkpoint
from agents.config import apply_resume_overrides, register_configs, register_resolvers, validate_train_config
from agents.trainer import train

register_configs()
register_resolvers()


def check_resume_argument(argv: list) -> None:
    """Fail before Hydra creates anything when ``resume=<dir>`` has no checkpoint to continue from."""
    for arg in argv:
        if arg.startswith("resume=") and arg != "resume=null":
            latest = Path(arg.split("=", 1)[1]) / "checkpoints" / LATEST
            if not latest.is_file():
                sys.exit(
                    f"Error: {arg}: no checkpoint {latest} (not a run directory, or the run stopped "
                    f"before its first checkpoint)"
                )


def command_line_overrides() -> list:
    """(key, value) pairs of this invocation's ``key=value`` overrides."""
    parsed = OverridesParser.create().parse_overrides(list(HydraConfig.get().overrides.task))
    return [(o.key_or_group, o.value()) for o in parsed]


@hydra.main(version_base="1.3", config_path="../configs", config_name="train")
def main(cfg: DictConfig) -> None:
    checkpoint = None
    if cfg.resume:
        run_dir = Path(cfg.resume).resolve()
        checkpoint = load_checkpoint(run_dir / "checkpoints" / LATEST)
        cfg = apply_resume_overrides(checkpoint["config"], command_line_overrides())
        with open_dict(cfg):
            cfg.resume = str(run_dir)
    else:
        run_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        validate_train_config(cfg)  # value checks (ranges, choices) the schema cannot express
    except ValueError as error:
        sys.exit(f"Error: {error}")
    result = train(cfg, run_dir, checkpoint)
    print(f"run dir: {run_dir}  steps: {result.global_step}  updates: {result.updates}  best: {result.best_metric}")
    if result.stopped_by is not None:
        sys.exit(128 + result.stopped_by)


if __name__ == "__main__":
    check_resume_argument(sys.argv[1:])
    main()
