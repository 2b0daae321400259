"""runner's sweepers, registered in Hydra's ConfigStore under hydra/sweeper:

  runner          the default: Hydra's grid (cartesian product), plus logspace()/geomspace()
  random          n_trials random trials (seeded): interval, tag(log, interval), int(interval),
                  choice, range, a,b,c; hydra.sweeper.stages for coarse to fine
  coarse_to_fine  random with two stages: 16 trials of 3 epochs, then 8 of 15 epochs in the
                  ranges of the top 4
  tpe             Optuna's TPE (optional extra: pip install -e '.[optuna]')
  hyperband       Hyperband (Li et al. 2018) over a random-search space: rungs of growing epochs,
                  the best 1/eta of each rung continue from their checkpoints, the rest pruned
  sha             successive halving: Hyperband's most exploratory bracket alone

Every sweeper is the one class below; `kind` and the options go to runner.sweep, which does the
work. Importing this module also adds logspace() and geomspace() to Hydra's override grammar, so
that the multirun's primary config accepts them. It imports neither jax nor runner's training
code: Hydra imports it on every start.
"""

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.plugins.sweeper import Sweeper

from runner.sweep.grammar import install_grammar

install_grammar()

TARGET = "hydra_plugins.runner_sweeper.runner_sweeper.RunnerSweeper"


@dataclass
class GridConf:
    _target_: str = TARGET
    kind: str = "grid"
    params: dict[str, str] | None = None  # sweep overrides set in a config: {key: sweep}
    dry_run: bool = False  # list the trials and their count; train nothing
    fail_fast: bool = False  # stop at the first failed trial (exit code 2)
    resume: str | None = None  # a sweep directory: rerun its trials that did not finish
    top_k: int = 5  # trials in topk.png (and a stage's default top_k)
    progress: bool = True  # the sweep's progress bar (done/total, best so far, ETA)
    plot: bool = True  # topk.png and search.png
    # true: draw them before the sweep returns; false, auto: a detached process draws them
    # just after (runner.plots.wait_for_plots(SWEEP_DIR) waits for it)
    plot_wait: Any = "auto"
    # trials handed to the launcher at once: null = one at a time with hydra/launcher=basic
    # (live per-trial progress), else a whole stage (vmap: the jobs it can group; joblib,
    # submitit: the jobs that run in parallel). TPE asks for this many trials at a time.
    n_jobs: int | None = None
    # median: stop a trial after an epoch whose best monitored value so far is worse than the
    # median of the finished trials at that epoch (Optuna's MedianPruner); grid, random, tpe
    prune: str | None = None
    prune_warmup_trials: int = 5  # finished trials before the rule prunes (n_startup_trials)
    prune_warmup_epochs: int = 1  # epochs of every trial never pruned (n_warmup_steps)


@dataclass
class RandomConf(GridConf):
    kind: str = "random"
    n_trials: int = 20
    seed: int = 0
    # coarse to fine: [{epochs: 3, n_trials: 16}, {epochs: 15, n_trials: 8, top_k: 4}, ...]
    stages: list[Any] | None = None


@dataclass
class CoarseToFineConf(RandomConf):
    stages: list[Any] | None = field(
        default_factory=lambda: [
            {"epochs": 3, "n_trials": 16},
            {"epochs": 15, "n_trials": 8, "top_k": 4},
        ]
    )


@dataclass
class TPEConf(GridConf):
    kind: str = "tpe"
    n_trials: int = 20
    seed: int = 0
    n_startup_trials: int = 10  # random trials before TPE models the results


@dataclass
class HyperbandConf(GridConf):
    """Hyperband (Li et al. 2018) over a random-search space: brackets of rungs of growing
    budgets; at each rung the best 1/eta by objective continue from their checkpoints, the
    others stop as pruned (runner.sweep.hyperband has the arithmetic)."""

    kind: str = "hyperband"
    # configurations of the first bracket (null: eta^s_max, Li et al.'s); the other brackets
    # in the same proportion. sha: the configurations of its one bracket
    n_trials: int | None = None
    seed: int = 0
    max_epochs: int | None = None  # R, the most a trial trains (null: the config's trainer.epochs)
    min_epochs: int = 1  # r, the first rung's budget of the most exploratory bracket
    eta: int = 3  # the reduction factor: 1/eta of a rung's trials go on


@dataclass
class SHAConf(HyperbandConf):
    kind: str = "sha"


cs = ConfigStore.instance()
for _name, _node in (
    ("runner", GridConf),
    ("random", RandomConf),
    ("coarse_to_fine", CoarseToFineConf),
    ("tpe", TPEConf),
    ("hyperband", HyperbandConf),
    ("sha", SHAConf),
):
    cs.store(group="hydra/sweeper", name=_name, node=_node, provider="runner")


class RunnerSweeper(Sweeper):
    def __init__(self, **options: Any) -> None:
        super().__init__()
        from omegaconf import DictConfig, ListConfig, OmegaConf

        self.options = {
            k: (
                OmegaConf.to_container(v, resolve=True)
                if isinstance(v, (DictConfig, ListConfig))
                else v
            )
            for k, v in options.items()
        }
        self.config = None
        self.hydra_context = None
        self.launcher = None

    def setup(self, *, hydra_context, task_function, config) -> None:
        from hydra.core.plugins import Plugins

        self.hydra_context = hydra_context
        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def sweep(self, arguments: list[str]) -> Any:
        from runner.sweep.run import run_sweep

        return run_sweep(
            self.options,
            list(arguments),
            config=self.config,
            hydra_context=self.hydra_context,
            launcher=self.launcher,
        )
