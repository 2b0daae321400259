"""hydra.sweeper.prune=median: the median rule of the sequential sweepers (grid, random, tpe),
like Optuna's MedianPruner.

Before it launches a trial (or a batch of n_jobs), the sweep reads the curves.csv of the trials
of the same stage that finished (completed or pruned) and passes the trial, as
`trainer.prune_curve=[...]`, the median of the monitored metric at each epoch over the trials
that trained that epoch (null for the first prune_warmup_epochs epochs and where no trial has a
value). The trial (runner.tracker.Tracker) then ends as pruned after the first epoch whose best
value so far is worse than that epoch's median. No curve is passed before prune_warmup_trials
trials have finished.

Unlike Optuna, which takes the median over completed trials only, pruned trials count with the
epochs they trained: at epoch e the median is over every trial that reached e, so the bar is not
raised by leaving out the trials that were worse early (survivorship); diverged and failed trials
are left out (a blow-up is not a value to compare with). Nothing here imports jax or hydra.
"""

from __future__ import annotations

import math
import statistics

from runner import rundir

PRUNERS = ("median",)
# statuses whose curves feed the medians
FEEDS = ("completed", rundir.PRUNED)


def median_curve(curves: list[list[float]], warmup_epochs: int = 0) -> list[float | None]:
    """The median at each epoch (entry e-1 for epoch e) over the curves that have a finite value
    there; None for the first `warmup_epochs` epochs and for epochs no curve has. Trailing Nones
    are left out, so a curve with nothing to check is []."""
    n = max((len(c) for c in curves), default=0)
    out: list[float | None] = []
    for i in range(n):
        vals = [c[i] for c in curves if i < len(c) and math.isfinite(c[i])]
        out.append(float(statistics.median(vals)) if vals and i >= warmup_epochs else None)
    while out and out[-1] is None:
        out.pop()
    return out


def read_curve(run_dir, monitor: str) -> list[float]:
    """The monitored metric per epoch from the trial's curves.csv ([] when it has none)."""
    got = rundir.read_curves(run_dir)
    if not got.ok or monitor not in got.data.fields:
        return []
    return [r.get(monitor, math.nan) for r in got.data.rows]


def override(curve: list[float | None]) -> str:
    """The trial's override; floats in full (repr) so that the trial compares exactly what the
    sweep computed."""
    return "trainer.prune_curve=[" + ",".join("null" if v is None else repr(v) for v in curve) + "]"
