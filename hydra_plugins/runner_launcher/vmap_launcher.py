"""hydra/launcher=vmap: each batch of jobs a sweeper launches is grouped by structure and every
group trains as one jax.vmap-ed program (runner.sweep.launcher does the work; runner.vectorized the
training). Jobs that share no structure with another run one by one, as with the basic
launcher. Every job still gets its own run directory, files and JobReturn.

  runner -m hydra/launcher=vmap optimizer.lr=logspace(-4,-1,8) seed=0,1,2,3

Options (hydra.launcher.*): max_members (the most jobs in one vmapped program; bounds memory;
on a CPU groups are smaller still, see runner.vectorized.group_size).
Importing this module must stay cheap (no JAX): Hydra imports every plugin on every start.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.plugins.launcher import Launcher


@dataclass
class VmapLauncherConf:
    _target_: str = "hydra_plugins.runner_launcher.vmap_launcher.VmapLauncher"
    max_members: int = 64


ConfigStore.instance().store(
    group="hydra/launcher", name="vmap", node=VmapLauncherConf, provider="runner"
)


class VmapLauncher(Launcher):
    def __init__(self, max_members: int = 64) -> None:
        super().__init__()
        self.max_members = max_members
        self.config = None
        self.task_function = None
        self.hydra_context = None

    def setup(self, *, hydra_context, task_function, config) -> None:
        self.config = config
        self.hydra_context = hydra_context
        self.task_function = task_function

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Any:
        from runner.sweep.launcher import launch

        return launch(self, job_overrides, initial_job_idx)
