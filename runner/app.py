"""One experiment from a validated Config: load data, train epoch by epoch (one compiled call and
one host sync per epoch), watch for divergence and early stopping, and leave the run's files.
The jitted core (runner.core.train) stays pure; all I/O and printing happen here and in the callers."""
from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from runner.core import layerstats as diag
from runner.core import losses, train
from runner import diagnostics, rundir, stop
from runner.config import Config, ConfigError
from runner.core.spec import Dataset, Spec, make_hparams, make_spec


@dataclass
class Result:
    status: str                      # completed | diverged | failed | interrupted
    metrics: dict
    history: list = field(default_factory=list)
    best_state: dict | None = None   # the state at the best epoch (None: none was finite)
    diagnostics: list = field(default_factory=list)  # rows of diagnostics.csv

    @property
    def objective(self) -> float:
        """The monitored validation metric at the best epoch (what sweepers optimise)."""
        v = self.metrics.get("best_" + self.metrics["monitor"])
        return float("nan") if v is None else float(v)


def metric_name(spec: Spec) -> str:
    return losses.metric_name(spec.model.head)


def resolve_monitor(cfg: Config, spec: Spec, ds: Dataset) -> tuple[str, str]:
    metric = metric_name(spec)
    monitor = cfg.trainer.monitor
    if monitor == "auto":
        monitor = "val_acc" if metric == "acc" else "val_loss"
    elif monitor not in ("val_loss", f"val_{metric}"):
        raise ConfigError(f"trainer.monitor={monitor}: data={ds.name} with head "
                          f"{spec.model.head} reports val_loss and val_{metric}")
    mode = cfg.trainer.mode
    if mode == "auto":
        mode = rundir.better(monitor)  # val_acc: max; val_loss, val_rmse: min
    if len(ds.x_val) == 0 and (cfg.regularization.early_stopping or cfg.trainer.monitor != "auto"):
        raise ConfigError("data.val_fraction=0: early stopping and trainer.monitor need a "
                          "validation split; set data.val_fraction > 0")
    return monitor, mode


def _improved(value, best, mode, min_delta) -> bool:
    if not math.isfinite(value):
        return False
    if best is None:
        return True
    return value < best - min_delta if mode == "min" else value > best + min_delta


def _host(tree) -> dict:
    # Host sync point: the only device->host transfer of an epoch.
    tree = jax.device_get(tree)
    return {k: (v if isinstance(v, dict) else float(v)) for k, v in tree.items()}


def expected_initial_loss(spec: Spec) -> float | None:
    """What an untrained classifier should score: ln C for softmax over C classes (uniform
    predictions), ln 2 for a sigmoid; None for regression."""
    if spec.model.head == "softmax":
        return math.log(spec.model.n_out)
    if spec.model.head == "sigmoid":
        return math.log(2)
    return None


def prepare(cfg: Config, ds: Dataset):
    """Spec, traced hyperparameters and device-resident data for a config and dataset."""
    spec = make_spec(cfg, ds)
    hp = {k: jnp.asarray(v) for k, v in make_hparams(cfg, spec).items()}
    data = {f"{a}_{s}": jnp.asarray(getattr(ds, f"{a}_{s}"))
            for a in ("x", "y") for s in ("train", "val", "test")}
    return spec, hp, data


class Tracker:
    """One run's epoch-by-epoch bookkeeping: its curve rows, divergence, the best epoch and
    early stopping. `fit` keeps one; a vectorised group (runner.vectorized) keeps one per member,
    so every member decides exactly as it would alone."""

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

    def update(self, ep: int, m: dict, elapsed: float) -> tuple[dict, bool, bool]:
        """Take epoch `ep`'s host metrics; return (curve row, improved, done)."""
        cfg, metric = self.cfg, self.metric
        if "diag" in m:
            new_rows = diagnostics.rows(ep, self.names, m.pop("diag"))
            self.diag_rows.extend(new_rows)
            self.watcher.epoch(ep, new_rows)
        row = {"epoch": ep, "step": ep * self.spec.steps_per_epoch, "lr": m["lr"],
               "train_loss": m["train_loss"], f"train_{metric}": m["train_metric"],
               "val_loss": m["val_loss"], f"val_{metric}": m["val_metric"],
               "grad_norm": m["grad_norm"], "time": elapsed}
        self.history.append(row)
        if not (math.isfinite(m["train_loss"]) and math.isfinite(m["grad_norm"])):
            self.status, self.reason = "diverged", "non-finite loss"
        elif cfg.trainer.abort_factor > 0 and m["train_loss"] > self.abort_at:
            self.status = "diverged"
            self.reason = (f"training loss {m['train_loss']:.4g} > {cfg.trainer.abort_factor:g} x "
                           f"initial {self.initial['train_loss']:.4g}")
        if self.status == "diverged":
            return row, False, True
        reg = cfg.regularization
        # Without a validation split the best epoch is the one with the lowest training loss.
        value, vmode = ((row[self.monitor], self.mode) if self.has_val
                        else (row["train_loss"], "min"))
        improved = _improved(value, self.best, vmode, reg.min_delta)
        if improved:
            self.best, self.best_epoch, self.since_best = value, ep, 0
        else:
            self.since_best += 1
        if reg.early_stopping and self.since_best > reg.patience:
            self.stopped_early = True
            return row, improved, True
        return row, improved, ep >= cfg.trainer.epochs

    def interrupt(self, signal_name: str | None) -> None:
        """The run was stopped by a signal (Ctrl-C, SIGTERM) before it was done."""
        self.status, self.reason = "interrupted", signal_name or "SIGINT"

    def bookkeeping(self) -> dict:
        """Everything the tracker decides from, as JSON: a checkpoint stores it and `restore`
        takes it back, so a resumed run decides exactly as the uninterrupted one."""
        return {"history": self.history, "diag_rows": self.diag_rows, "best": self.best,
                "best_epoch": self.best_epoch, "since_best": self.since_best,
                "initial": self.initial, "warnings": list(self.warn),
                "watcher": {"seen": sorted(self.watcher.seen),
                            "previous": self.watcher.previous}}

    def load(self, b: dict) -> None:
        self.history, self.diag_rows = list(b["history"]), list(b["diag_rows"])
        self.best, self.best_epoch, self.since_best = b["best"], b["best_epoch"], b["since_best"]
        self.warn[:] = b["warnings"]  # already shown when they were raised
        self.watcher.seen = set(b["watcher"]["seen"])
        self.watcher.previous = dict(b["watcher"]["previous"])

    @property
    def restore(self) -> bool:
        """Evaluate the best epoch's weights (early stopping's restore_best, or divergence)."""
        reg = self.cfg.regularization
        return reg.early_stopping and reg.restore_best or self.status == "diverged"

    def result(self, ds: Dataset, ev: dict, best_state, *, n_params: int, times: dict,
               extra: dict | None = None) -> Result:
        """The run's Result once training is over; `ev` evaluates the final weights (empty when
        no epoch was finite)."""
        cfg, spec, metric = self.cfg, self.spec, self.metric
        history = self.history
        last = history[-1] if history else {}  # empty: interrupted before its first epoch
        best_epoch = self.best_epoch
        best_row = history[best_epoch - 1] if best_epoch else {}
        metrics = {
            "status": self.status, "task": ds.task, "metric": metric, "monitor": self.monitor,
            "mode": self.mode, "epochs": cfg.trainer.epochs, "epochs_run": len(history),
            "iterations": len(history) * spec.steps_per_epoch,
            "steps_per_epoch": spec.steps_per_epoch, "batch_size": spec.batch_size,
            "n_train": len(ds.x_train), "n_val": len(ds.x_val), "n_test": len(ds.x_test),
            "best_epoch": best_epoch or None, "stopped_early": self.stopped_early,
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
            "test_loss": ev.get("test_loss"), f"test_{metric}": ev.get("test_metric"),
            "eval_weights": ("best" if self.restore else "final") if best_epoch else None,
            "initial_loss_expected": expected_initial_loss(spec),
            "params": n_params, **times, **(extra or {}),
        }
        if self.status == "interrupted":
            metrics["interrupted_by"] = self.reason
        if cfg.trainer.overfit_batches and metric == "acc" and self.status != "interrupted":
            reached = ev.get("train_metric", 0.0) >= 0.999
            metrics["overfit_train_acc"] = ev.get("train_metric")
            metrics["overfit_reached"] = reached
            if not reached:
                self.warn(f"overfit check failed: {cfg.trainer.overfit_batches} batches "
                     f"({len(ds.x_train)} examples) reached {ev.get('train_metric', 0):.3f} "
                     f"training accuracy, not 100%: the model or the learning rate cannot fit "
                     f"even a tiny set")
        metrics["train_metric_eval"] = ev.get("train_metric")
        metrics["warnings"] = list(self.warn)
        return Result(status=self.status, metrics=metrics, history=history,
                      best_state=best_state if best_epoch else None,
                      diagnostics=self.diag_rows)


def check_initial_loss(spec: Spec, initial: dict, warn) -> None:
    expected = expected_initial_loss(spec)
    if expected is not None and not 0.5 * expected <= initial["train_loss"] <= 2 * expected:
        warn(f"initial loss {initial['train_loss']:.3g} is far from the expected "
             f"{expected:.3g} (ln of the number of classes): check the initialization scale")


class Warnings(list):
    """The run's warnings, kept for metrics.json and passed on to a display as they come."""

    def __init__(self, on_warn=None):
        super().__init__()
        self.on_warn = on_warn

    def __call__(self, msg: str) -> None:
        self.append(msg)
        if self.on_warn:
            self.on_warn(msg)


def _restore(resume, template: dict) -> tuple[dict, dict]:
    """(state, best state) from a checkpoint, on the structure and devices of `template` (a
    freshly initialised state). The best state's other entries are the restored state's: only
    its params and batch_stats are ever evaluated."""
    from runner.checkpoint import restore_tree
    state = jax.device_put(restore_tree(resume.arrays, "state", template, resume.path))
    if not any(k.startswith("best[") for k in resume.arrays):
        return state, state  # no epoch had finite numbers yet
    best = restore_tree(resume.arrays, "best", {"params": state["params"],
                        "batch_stats": state["batch_stats"]}, resume.path)
    return state, {**state, **jax.device_put(best)}


@dataclass
class Resume:
    """Where a checkpointed run left off: the arrays and bookkeeping runner.checkpoint read."""
    arrays: dict
    meta: dict
    path: Path


def fit(cfg: Config, ds: Dataset, *, on_epoch=None, on_start=None, on_warn=None,
        on_checkpoint=None, resume: Resume | None = None) -> Result:
    """Train; return the status, summary metrics and per-epoch history (no files written).

    on_checkpoint(state, best, meta) receives what a checkpoint holds every trainer.checkpoint
    epochs (and after the last one), and when a stop (runner.stop) ends the run early; resume
    continues from such a checkpoint and gives the numbers the uninterrupted run gives."""
    warn = Warnings(on_warn)
    if cfg.trainer.overfit_batches:
        ds = overfit_subset(cfg, ds)
    spec, hp, data = prepare(cfg, ds)
    resolve_monitor(cfg, spec, ds)  # a bad monitor fails before compiling
    t_start = time.perf_counter()

    key = jax.random.PRNGKey(cfg.seed)
    init_exe, c_init = train.compiled(train.init_state, spec, hp, key, data)
    state = init_exe(hp, key, data)
    epoch_exe, c_epoch = train.compiled(train.epoch, spec, state, data, hp)
    eval_exe, c_eval = train.compiled(train.evaluate_splits, spec, state, data, hp)
    compile_time = c_init + c_epoch + c_eval
    if resume is None:
        initial = _host(eval_exe(state, data, hp))  # the untrained model: the 3x-abort reference
        check_initial_loss(spec, initial, warn)
    else:
        initial = resume.meta["tracker"]["initial"]
    tracker = Tracker(cfg, spec, ds, initial, diag.layer_names(state["params"]), warn)
    n_params = int(sum(np.size(p) for p in jax.tree_util.tree_leaves(state["params"])))
    # Time spent before a resume (wall, training, compiling) counts towards the run's totals.
    best_state, first, trained, walled, compiled = state, 1, 0.0, 0.0, 0.0
    if resume is not None:
        state, best_state = _restore(resume, state)
        tracker.load(resume.meta["tracker"])
        first = resume.meta["epoch"] + 1
        trained = resume.meta["train_time"]
        walled, compiled = resume.meta["wall_time"], resume.meta["compile_time"]
    if on_start:
        on_start(spec, n_params, compile_time)

    saved = first - 1  # the epoch the newest checkpoint holds

    def checkpoint(ep: int) -> None:
        nonlocal saved
        best = ({"params": best_state["params"], "batch_stats": best_state["batch_stats"]}
                if tracker.best_epoch else None)
        now = time.perf_counter()
        on_checkpoint(state, best, {"epoch": ep, "train_time": trained + now - t_train,
                                    "wall_time": walled + now - t_start,
                                    "compile_time": compiled + compile_time,
                                    "tracker": tracker.bookkeeping()})
        saved = ep

    every = cfg.trainer.checkpoint
    finished = False
    t_train = time.perf_counter()
    try:
        for ep in range(first, cfg.trainer.epochs + 1):
            if stop.requested():
                break
            new_state, m = epoch_exe(state, data, hp)
            m = _host(m)  # a second Ctrl-C lands here at the latest: this epoch is dropped
            with stop.shielded():  # the state and its bookkeeping move on together
                state = new_state
                row, improved, done = tracker.update(
                    ep, m, trained + time.perf_counter() - t_train)
                if improved:
                    best_state = state
                finished = done
            if on_epoch:
                on_epoch(row)
            if on_checkpoint and every and (done or ep % every == 0):
                with stop.shielded():
                    checkpoint(ep)
            if done:
                break
        else:
            finished = True  # resumed at its last epoch: nothing left to train
    except KeyboardInterrupt:
        stop.note_interrupt()
    if not finished:
        tracker.interrupt(stop.signal_name())
        if on_checkpoint and len(tracker.history) > saved:
            with stop.shielded():
                checkpoint(len(tracker.history))
    train_time = trained + time.perf_counter() - t_train

    final_state = best_state if tracker.restore else state
    # Nothing to evaluate when the first epoch already diverged (or none ran).
    ev = _host(eval_exe(final_state, data, hp)) if tracker.best_epoch else {}
    times = {"wall_time": walled + time.perf_counter() - t_start, "train_time": train_time,
             "compile_time": compiled + compile_time}
    return tracker.result(ds, ev, best_state, n_params=n_params, times=times)


def overfit_subset(cfg: Config, ds: Dataset) -> Dataset:
    """The first overfit_batches * batch_size training examples (the notes: make sure you can
    overfit a very small portion of the training data before training on all of it)."""
    bs = cfg.trainer.batch_size
    n = len(ds.x_train) if bs == "full" else min(len(ds.x_train), cfg.trainer.overfit_batches * bs)
    return dataclasses.replace(ds, x_train=ds.x_train[:n], y_train=ds.y_train[:n])


def folds(ds: Dataset, k: int, seed: int) -> list[Dataset]:
    """k datasets whose validation splits are rotating, stratified folds of train+val (the test
    split stays out). Preprocessing statistics are those of the original training split."""
    from runner.data import _order
    x = np.concatenate([ds.x_train, ds.x_val])
    y = np.concatenate([ds.y_train, ds.y_val])
    if len(x) < 2 * k:
        raise ConfigError(f"trainer.cv_folds={k}: only {len(x)} train+val examples of "
                          f"data={ds.name}")
    order = _order(y, ds.n_classes > 0, np.random.default_rng(seed))
    parts = np.array_split(order, k)  # contiguous chunks of an interleaved order: stratified
    out = []
    for i in range(k):
        tr = np.sort(np.concatenate([p for j, p in enumerate(parts) if j != i]))
        va = np.sort(parts[i])
        out.append(dataclasses.replace(ds, x_train=x[tr], y_train=y[tr], x_val=x[va],
                                       y_val=y[va]))
    return out


def fit_cv(cfg: Config, ds: Dataset, *, on_epoch=None, on_start=None, on_warn=None) -> Result:
    """k-fold cross-validation: one model per fold; the objective is the mean over folds of
    the best monitored validation metric. Summary metrics are fold means; curves are the
    per-epoch means over the folds that reached that epoch."""
    k = cfg.trainer.cv_folds
    results = []
    for i, f in enumerate(folds(ds, k, cfg.data.split_seed)):
        results.append(fit(cfg, f, on_epoch=on_epoch, on_start=on_start if i == 0 else None,
                           on_warn=on_warn))
        if stop.requested():  # the folds not trained yet are left out
            break
    first = results[0].metrics
    monitor = "best_" + first["monitor"]
    scores = [r.metrics.get(monitor) for r in results]
    finite = [v for v in scores if v is not None and math.isfinite(v)]
    status = ("interrupted" if stop.requested() and (len(results) < k or any(
                  r.status == "interrupted" for r in results)) else
              "completed" if all(r.status == "completed" for r in results) else
              "diverged" if all(r.status in ("completed", "diverged") for r in results) else
              "failed")
    metrics = dict(first)
    for key, value in first.items():
        values = [r.metrics.get(key) for r in results]
        if isinstance(value, (int, float)) and not isinstance(value, bool) and all(
                isinstance(v, (int, float)) and v is not None for v in values):
            metrics[key] = float(np.mean(values)) if isinstance(value, float) else value
    for key in ("wall_time", "train_time", "compile_time", "epochs", "epochs_run", "iterations"):
        metrics[key] = sum(r.metrics[key] for r in results)  # over all folds
    metrics["warnings"] = sorted({w for r in results for w in r.metrics["warnings"]})
    metrics.update(status=status, cv_folds=k, cv_scores=scores,
                   cv_mean=float(np.mean(finite)) if len(finite) == k else None,
                   cv_std=float(np.std(finite)) if len(finite) == k else None)
    metrics[monitor] = metrics["cv_mean"]
    history = []
    for ep in range(1, max(len(r.history) for r in results) + 1):
        rows = [r.history[ep - 1] for r in results if len(r.history) >= ep]
        history.append({key: (ep if key == "epoch" else float(np.mean([row[key] for row in rows])))
                        for key in rows[0]})
    return Result(status=status, metrics=metrics, history=history)


def run(cfg: Config, ds: Dataset, **callbacks) -> Result:
    """A single fit, or k-fold cross-validation when trainer.cv_folds >= 2."""
    if cfg.trainer.cv_folds >= 2:  # folds are not checkpointed: an interrupted k-fold run reruns
        callbacks.pop("on_checkpoint", None)
        callbacks.pop("resume", None)
        return fit_cv(cfg, ds, **callbacks)
    return fit(cfg, ds, **callbacks)


def write_run(run_dir: Path, result: Result, title: str = "", plot: bool = True) -> None:
    """curves.csv, curves.png, then metrics.json last: its presence with a final status means
    the run's files are all there."""
    metric = result.metrics["metric"]
    rundir.write_curves(run_dir / rundir.CURVES, result.history, metric)
    if result.diagnostics:
        rundir.write_rows(run_dir / rundir.DIAGNOSTICS, result.diagnostics, diag.FIELDS)
    if result.best_state is not None:
        from runner.checkpoint import save_params
        save_params(run_dir / rundir.BEST_PARAMS, jax.device_get(result.best_state["params"]),
                    jax.device_get(result.best_state["batch_stats"]))
    if plot and result.history:
        from runner.plots import plot_curves, plot_diagnostics
        plot_curves(result.history, metric, run_dir / "curves.png", title=title)
        if result.diagnostics:
            plot_diagnostics(result.diagnostics, run_dir / "diagnostics.png", title=title)
    rundir.write_json(run_dir / rundir.METRICS, result.metrics)
