"""One run's epoch-by-epoch bookkeeping on the host: its curve rows, divergence, the best epoch
and early stopping (Tracker), the warnings it raises (Warnings) and what it ends with (Result).

runner.app.fit keeps one Tracker; a vectorised group (runner.vectorized) keeps one per member,
so every member decides exactly as it would alone. Nothing here compiles or touches a device
array: the callers hand in host numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from runner import diagnostics, rundir
from runner.config import Config, ConfigError
from runner.core import losses
from runner.core.spec import Spec

if TYPE_CHECKING:
    from runner.core.state import TrainState
    from runner.data import Dataset


@dataclass
class Result:
    status: str  # completed | diverged | failed | interrupted | pruned
    metrics: dict
    history: list = field(default_factory=list)
    best_state: TrainState | None = None  # the state at the best epoch (None: none was finite)
    diagnostics: list = field(default_factory=list)  # rows of diagnostics.csv

    @property
    def objective(self) -> float:
        """The monitored validation metric at the best epoch (what sweepers optimise)."""
        v = self.metrics.get("best_" + self.metrics["monitor"])
        return float("nan") if v is None else float(v)


def metric_name(spec: Spec) -> str:
    """The run's metric: "acc" for classification heads, "rmse" for regression heads."""
    return losses.metric_name(spec.model.head)


def resolve_monitor(cfg: Config, spec: Spec, ds: Dataset) -> tuple[str, str]:
    metric = metric_name(spec)
    monitor = cfg.trainer.monitor
    if monitor == "auto":
        monitor = "val_acc" if metric == "acc" else "val_loss"
    elif monitor not in ("val_loss", f"val_{metric}"):
        raise ConfigError(
            f"trainer.monitor={monitor}: data={ds.name} with head "
            f"{spec.model.head} reports val_loss and val_{metric}"
        )
    mode = cfg.trainer.mode
    if mode == "auto":
        mode = rundir.better(monitor)  # val_acc: max; val_loss, val_rmse: min
    if len(ds.x_val) == 0 and (cfg.regularization.early_stopping or cfg.trainer.monitor != "auto"):
        raise ConfigError(
            "data.val_fraction=0: early stopping and trainer.monitor need a "
            "validation split; set data.val_fraction > 0"
        )
    return monitor, mode


def _improved(value, best, mode, min_delta, loss=None, best_loss=None) -> bool:
    """Whether `value` of the monitored metric beats `best` by more than min_delta. With
    min_delta 0, a tie (equal value, e.g. the same val_acc) is broken by the validation loss:
    a strictly lower `loss` than the best epoch's `best_loss` counts as an improvement."""
    if not math.isfinite(value):
        return False
    if best is None:
        return True
    if value < best - min_delta if mode == "min" else value > best + min_delta:
        return True
    return (
        min_delta == 0
        and value == best
        and loss is not None
        and best_loss is not None
        and math.isfinite(loss)
        and loss < best_loss
    )


# check_initial_loss's band: an untrained classifier within +-20 % of ln C (init=auto's small
# head starts within ~2 %, a head at full variance-preserving scale 1.2x-2.3x ln C).
INITIAL_LOSS_TOLERANCE = 0.2


def expected_initial_loss(spec: Spec) -> float | None:
    """What an untrained classifier should score: ln C for softmax over C classes (uniform
    predictions), ln 2 for a sigmoid; None for regression."""
    if spec.model.head == "softmax":
        return math.log(spec.model.n_out)
    if spec.model.head == "sigmoid":
        return math.log(2)
    return None


# pruned_by of a run that trainer.stop_at ended: it always leaves checkpoint.npz, which
# trainer.resume continues from.
STOP_AT = "trainer.stop_at"


class Tracker:
    """One run's epoch-by-epoch bookkeeping: its curve rows, divergence, the best epoch and
    early stopping (see the module docstring)."""

    def __init__(self, cfg: Config, spec: Spec, ds: Dataset, initial: dict, names, warn):
        self.cfg, self.spec = cfg, spec
        self.monitor, self.mode = resolve_monitor(cfg, spec, ds)
        self.metric = metric_name(spec)
        self.has_val = len(ds.x_val) > 0
        self.initial = initial
        self.names = names
        self.warn = warn
        self.watcher = diagnostics.Watcher(warn)
        self.diag_rows: list[dict] = []
        self.history: list[dict] = []
        self.status, self.reason = "completed", None
        self.best, self.best_epoch, self.since_best = None, 0, 0
        self.stopped_early = False
        self.abort_at = cfg.trainer.abort_factor * initial["train_loss"]
        self.abort_val_at = cfg.trainer.abort_factor * initial["val_loss"]

    def update(self, ep: int, m: dict, elapsed: float) -> tuple[dict, bool, bool]:
        """Take epoch `ep`'s host metrics; return (curve row, improved, done)."""
        cfg, metric = self.cfg, self.metric
        if "diag" in m:
            new_rows = diagnostics.rows(ep, self.names, m.pop("diag"))
            self.diag_rows.extend(new_rows)
            self.watcher.epoch(ep, new_rows)
        row = {
            "epoch": ep,
            "step": ep * self.spec.steps_per_epoch,
            "lr": m["lr"],
            "lr_next": m["lr_next"],
            "train_loss": m["train_loss"],
            f"train_{metric}": m["train_metric"],
            "val_loss": m["val_loss"],
            f"val_{metric}": m["val_metric"],
            "max_step_loss": m["max_step_loss"],
            "grad_norm": m["grad_norm"],
            "time": elapsed,
        }
        self.history.append(row)
        reason = self._diverged(m)
        if reason:
            self.status, self.reason = "diverged", reason
            return row, False, True
        reg = cfg.regularization
        # Without a validation split the best epoch is the one with the lowest training loss.
        if self.has_val:
            value, vmode, loss = row[self.monitor], self.mode, row["val_loss"]
        else:
            value, vmode, loss = row["train_loss"], "min", None
        best_loss = self.history[self.best_epoch - 1]["val_loss"] if self.best_epoch else None
        improved = _improved(value, self.best, vmode, reg.min_delta, loss, best_loss)
        if improved:
            self.best, self.best_epoch, self.since_best = value, ep, 0
        else:
            self.since_best += 1
        if self._under_curve(ep):
            self.prune("median")
            return row, improved, True
        # patience = the number of epochs in a row without improvement that stops the run (0
        # stops at the first one, as 1 does)
        if reg.early_stopping and self.since_best >= max(reg.patience, 1):
            self.stopped_early = True
            return row, improved, True
        stop = cfg.trainer.stop_at or cfg.trainer.epochs
        if ep >= stop and stop < cfg.trainer.epochs:
            self.prune(STOP_AT)
        return row, improved, ep >= stop

    def _under_curve(self, ep: int) -> bool:
        """trainer.prune_curve's verdict after epoch `ep`: the best monitored value so far (what
        Optuna's MedianPruner compares, not this epoch's alone) is strictly worse than the
        entry. Never at the last epoch (stopping there saves nothing) nor without a validation
        split."""
        curve = self.cfg.trainer.prune_curve
        if ep > len(curve) or curve[ep - 1] is None or ep >= self.cfg.trainer.epochs:
            return False
        if not self.has_val:
            return False
        values = [v for r in self.history if math.isfinite(v := r[self.monitor])]
        if not values:
            return False
        best = max(values) if self.mode == "max" else min(values)
        # as curves.csv holds it (6 significant digits), which the sweep's medians come from: a
        # value equal to the median there is a tie, and a tie goes on
        best = float(f"{best:.6g}")
        return best < curve[ep - 1] if self.mode == "max" else best > curve[ep - 1]

    def _diverged(self, m: dict) -> str | None:
        """Why epoch metrics `m` end the run as diverged, or None. Checked: NaN/inf in the
        training loss or gradient norm; then, with trainer.abort_factor > 0, the epoch's mean
        training loss and its largest step loss (max_step_loss) against abort_factor x the
        initial training loss, and the validation loss against abort_factor x the initial
        validation loss. The reason names every check that fired."""
        if not (math.isfinite(m["train_loss"]) and math.isfinite(m["grad_norm"])):
            return "non-finite loss"
        if self.has_val and not math.isfinite(m["val_loss"]):
            return "non-finite validation loss"
        factor = self.cfg.trainer.abort_factor
        if factor <= 0:
            return None
        init_train, init_val = self.initial["train_loss"], self.initial["val_loss"]
        checks = [
            ("training loss", m["train_loss"], self.abort_at, init_train),
            ("step training loss", m["max_step_loss"], self.abort_at, init_train),
        ]
        if self.has_val and math.isfinite(init_val):
            checks.append(("validation loss", m["val_loss"], self.abort_val_at, init_val))
        fired = [
            f"{what} {value:.4g} > {factor:g} x initial {initial:.4g}"
            for what, value, limit, initial in checks
            if not value <= limit  # a NaN step loss fires too
        ]
        return "; ".join(fired) or None

    def interrupt(self, signal_name: str | None) -> None:
        """The run was stopped by a signal (Ctrl-C, SIGTERM) before it was done."""
        self.status, self.reason = "interrupted", signal_name or "SIGINT"

    def prune(self, by: str) -> None:
        """A sweeper's rule stopped the run after its last epoch (rundir.PRUNED): `by` names
        the rule (hyperband, sha, median, or trainer.stop_at)."""
        self.status, self.reason = "pruned", by

    def initial_diagnostics(self, diag: dict) -> None:
        """diagnostics.csv's epoch 0 (the untrained network: the initial evaluation's
        activation pass; no gradient yet) and the warnings it already shows."""
        new_rows = diagnostics.rows(0, self.names, diag)
        self.diag_rows.extend(new_rows)
        self.watcher.epoch(0, new_rows)

    def bookkeeping(self) -> dict:
        """Everything the tracker decides from, as JSON: a checkpoint stores it and `restore`
        takes it back, so a resumed run decides exactly as the uninterrupted one."""
        return {
            "history": self.history,
            "diag_rows": self.diag_rows,
            "best": self.best,
            "best_epoch": self.best_epoch,
            "since_best": self.since_best,
            "initial": self.initial,
            "warnings": list(self.warn),
            "watcher": self.watcher.state(),
        }

    def load(self, b: dict) -> None:
        self.history, self.diag_rows = list(b["history"]), list(b["diag_rows"])
        self.best, self.best_epoch, self.since_best = b["best"], b["best_epoch"], b["since_best"]
        self.warn[:] = b["warnings"]  # already shown when they were raised
        self.watcher.load(b["watcher"])

    def result(
        self,
        ds: Dataset,
        ev: dict,
        best_state: TrainState | None,
        *,
        n_params: int,
        times: dict,
        extra: dict | None = None,
        ev_final: dict | None = None,
    ) -> Result:
        """The run's Result once training is over. `ev` evaluates the best epoch's weights
        (empty when no epoch was finite): test_loss/test_<metric>, what a user reports;
        `ev_final` the weights after the last epoch run (empty when none ran):
        final_test_loss/final_test_<metric>, the overfit check and the train/validation gap."""
        ev_final = ev_final or {}
        cfg, spec, metric = self.cfg, self.spec, self.metric
        history = self.history
        last = history[-1] if history else {}  # empty: interrupted before its first epoch
        best_epoch = self.best_epoch
        best_row = history[best_epoch - 1] if best_epoch else {}
        metrics = {
            "status": self.status,
            "task": ds.task,
            "metric": metric,
            "monitor": self.monitor,
            "mode": self.mode,
            "epochs": cfg.trainer.epochs,
            "epochs_run": len(history),
            "iterations": len(history) * spec.steps_per_epoch,
            "steps_per_epoch": spec.steps_per_epoch,
            "batch_size": spec.batch_size,
            "n_train": len(ds.x_train),
            "n_val": len(ds.x_val),
            "n_test": len(ds.x_test),
            "best_epoch": best_epoch or None,
            "stopped_early": self.stopped_early,
            "diverged_epoch": len(history) if self.status == "diverged" else None,
            "diverged_reason": self.reason if self.status == "diverged" else None,
            "initial_train_loss": self.initial["train_loss"],
            "initial_val_loss": self.initial["val_loss"],
            f"best_val_{metric}": best_row.get(f"val_{metric}"),
            "best_val_loss": best_row.get("val_loss"),
            "best_train_loss": best_row.get("train_loss"),
            f"best_train_{metric}": best_row.get(f"train_{metric}"),
            "final_train_loss": last.get("train_loss"),
            f"final_train_{metric}": last.get(f"train_{metric}"),
            "final_val_loss": last.get("val_loss"),
            f"final_val_{metric}": last.get(f"val_{metric}"),
            # test numbers of the best epoch's weights (best_params.npz) and of the final ones
            "test_loss": ev.get("test_loss"),
            f"test_{metric}": ev.get("test_metric"),
            "test_epoch": best_epoch or None,
            "final_test_loss": ev_final.get("test_loss"),
            f"final_test_{metric}": ev_final.get("test_metric"),
            "final_test_epoch": len(history) if ev_final else None,
            "eval_weights": "best" if best_epoch else None,  # which weights test_* are
            "initial_loss_expected": expected_initial_loss(spec),
            "params": n_params,
            **times,
            **(extra or {}),
        }
        if self.status == "interrupted":
            metrics["interrupted_by"] = self.reason
        if self.status == "pruned":
            metrics["pruned_at"] = len(history)
            metrics["pruned_by"] = self.reason
        if cfg.trainer.overfit_batches and metric == "acc" and self.status != "interrupted":
            reached = ev_final.get("train_metric", 0.0) >= 0.999
            metrics["overfit_train_acc"] = ev_final.get("train_metric")
            metrics["overfit_reached"] = reached
            if not reached:
                self.warn(
                    f"overfit check failed: {cfg.trainer.overfit_batches} batches "
                    f"({len(ds.x_train)} examples) reached "
                    f"{ev_final.get('train_metric', 0):.3f} training accuracy, not 100%: the "
                    f"model or the learning rate cannot fit even a tiny set"
                )
        metrics["train_metric_eval"] = ev.get("train_metric")
        if self.status == "completed" and self.has_val and not cfg.trainer.overfit_batches:
            gap = diagnostics.gap_advice(metric, ev_final, self.initial, self.watcher.seen)
            if gap:
                self.warn(gap)
        metrics["warnings"] = list(self.warn)
        return Result(
            status=self.status,
            metrics=metrics,
            history=history,
            best_state=best_state if best_epoch else None,
            diagnostics=self.diag_rows,
        )


def check_initial_loss(spec: Spec, initial: dict, warn) -> None:
    """Warn when the untrained model's loss is far from expected_initial_loss."""
    expected = expected_initial_loss(spec)
    if expected is None:
        return
    loss = initial["train_loss"]
    if not abs(loss - expected) <= INITIAL_LOSS_TOLERANCE * expected:
        classes = spec.model.n_out if spec.model.head == "softmax" else 2
        warn(
            f"initial loss {loss:.3g} is {loss / expected:.2f}x the expected {expected:.3g} "
            f"(ln {classes}, uniform predictions over {classes} classes; allowed "
            f"+-{INITIAL_LOSS_TOLERANCE:.0%}): check the initialization scale (init.head_scale "
            f"0.1 starts the last layer small)"
        )


class Warnings(list):
    """The run's warnings, kept for metrics.json and passed on to a display as they come."""

    def __init__(self, on_warn=None):
        super().__init__()
        self.on_warn = on_warn

    def __call__(self, msg: str) -> None:
        self.append(msg)
        if self.on_warn:
            self.on_warn(msg)
