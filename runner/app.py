"""One experiment from a validated Config: load data, train epoch by epoch (one compiled call and
one host sync per epoch), watch for divergence and early stopping (runner.tracker), and leave the
run's files. The jitted core (runner.core.train) stays pure; all I/O and printing happen here and
in the callers."""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path

import jax
import numpy as np

from runner import rundir, stop
from runner.config import Config, ConfigError, record
from runner.core import layerstats as diag
from runner.core import train
from runner.core.spec import Spec, make_hparams, make_spec
from runner.core.state import Data, HParams, TrainState
from runner.data import Dataset, overfit_subset, stratified_order
from runner.tracker import (
    STOP_AT,
    Result,
    Tracker,
    Warnings,
    check_initial_loss,
    resolve_monitor,
)


def _host(tree) -> dict:
    # Host sync point: the only device->host transfer of an epoch.
    tree = jax.device_get(tree)
    return {k: (v if isinstance(v, dict) else float(v)) for k, v in tree.items()}


def prepare(cfg: Config, ds: Dataset) -> tuple[Spec, HParams, Data]:
    """Spec, traced hyperparameters and device-resident data for a config and dataset.

    jax.device_put, not jnp.asarray: the same arrays (dtypes canonicalised, the same weak
    types), but jnp.asarray traces, lowers and looks up a small program for each new shape
    ("jit(stage)"), 8 of them here: 0.1-0.2 s of a warm run's start."""
    spec = make_spec(cfg, ds)
    hp = jax.device_put(make_hparams(cfg, spec))
    data = jax.device_put(ds.arrays())
    return spec, hp, data


def prng_key(seed: int) -> jax.Array:
    """jax.random.PRNGKey(seed), made on the host where that is certain to be the same key
    (the default threefry implementation, a seed that fits in int32: [0, seed]); the eager
    call would trace and look up a small program on every run's start."""
    if jax.config.jax_default_prng_impl == "threefry2x32" and 0 <= seed < 2**31:  # type: ignore[attr-defined]
        return jax.device_put(np.array([0, seed], np.uint32))
    return jax.random.PRNGKey(seed)


@dataclass
class Resume:
    """Where a checkpointed run left off: the arrays and bookkeeping runner.checkpoint read."""

    arrays: dict
    meta: dict
    path: Path


def fit(
    cfg: Config,
    ds: Dataset,
    *,
    on_epoch=None,
    on_start=None,
    on_warn=None,
    on_checkpoint=None,
    resume: Resume | None = None,
) -> Result:
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

    key = prng_key(cfg.seed)
    programs = train.PROGRAMS
    # A new structure's programs compile in background threads (docs/performance.md): the
    # initial weights' while the epoch program is traced from its result's shapes, the epoch
    # program, the longest, while the evaluation is traced, compiled and run.
    c_start = programs.start(train.init_state, spec, hp, key, data)
    shapes = programs.result_shapes(train.init_state, spec, hp, key, data)
    if shapes is not None:
        t = time.perf_counter()
        # a head start only: the real arguments below begin it, or report what fails
        with contextlib.suppress(Exception):
            programs.start(train.epoch, spec, shapes, data, hp)
        c_start += time.perf_counter() - t
    init_exe, c_init = programs.get(train.init_state, spec, hp, key, data)
    state: TrainState = init_exe(hp, key, data)
    c_start += programs.start(train.epoch, spec, state, data, hp)  # begun already, mostly
    eval_exe, c_eval = programs.get(train.evaluate_splits, spec, state, data, hp)
    diag0 = None
    if resume is None:
        initial = _host(eval_exe(state, data, hp))  # the untrained model: the 3x-abort reference
        diag0 = initial.pop("diag", None)  # with diagnostics on: its activation pass (epoch 0)
        check_initial_loss(spec, initial, warn)
    else:
        initial = resume.meta["tracker"]["initial"]
    epoch_exe, c_epoch = programs.get(train.epoch, spec, state, data, hp)
    compile_time = c_init + c_start + c_epoch + c_eval
    tracker = Tracker(cfg, spec, ds, initial, diag.layer_names(state.params), warn)
    if diag0 is not None:
        tracker.initial_diagnostics(diag0)
    n_params = int(sum(np.size(p) for p in jax.tree_util.tree_leaves(state.params)))
    # Time spent before a resume (wall, training, compiling) counts towards the run's totals.
    best_state, first, trained, walled, compiled = state, 1, 0.0, 0.0, 0.0
    if resume is not None:
        from runner.checkpoint import restore_state

        state, best_state = restore_state(resume.arrays, resume.path, state)
        tracker.load(resume.meta["tracker"])
        first = resume.meta["epoch"] + 1
        trained = resume.meta["train_time"]
        walled, compiled = resume.meta["wall_time"], resume.meta["compile_time"]
    if on_start:
        on_start(spec, n_params, compile_time)

    saved = first - 1  # the epoch the newest checkpoint holds

    def checkpoint(ep: int) -> None:
        nonlocal saved
        best = best_state.weights() if tracker.best_epoch else None
        now = time.perf_counter()
        on_checkpoint(
            state,
            best,
            {
                "epoch": ep,
                "train_time": trained + now - t_train,
                "wall_time": walled + now - t_start,
                "compile_time": compiled + compile_time,
                "tracker": tracker.bookkeeping(),
                "config": record(cfg),  # what trainer.resume checks a new config against
            },
        )
        saved = ep

    every = cfg.trainer.checkpoint
    finished = False
    t_train = time.perf_counter()
    try:
        for ep in range(first, (cfg.trainer.stop_at or cfg.trainer.epochs) + 1):
            if stop.requested():
                break
            new_state, m = epoch_exe(state, data, hp)
            m = _host(m)  # a second Ctrl-C lands here at the latest: this epoch is dropped
            with stop.shielded():  # the state and its bookkeeping move on together
                state = new_state
                row, improved, done = tracker.update(ep, m, trained + time.perf_counter() - t_train)
                if improved:
                    best_state = state
                finished = done
            if on_epoch:
                on_epoch(row)
            # trainer.stop_at's stop always leaves the checkpoint that trainer.resume continues
            if on_checkpoint and (
                (every and (done or ep % every == 0)) or tracker.reason == STOP_AT
            ):
                with stop.shielded():
                    checkpoint(ep)
            if done:
                break
        else:
            finished = True  # resumed at its last epoch: nothing left to train
            if first - 1 < cfg.trainer.epochs:  # continued to the stop_at it had reached
                tracker.prune(STOP_AT)
    except KeyboardInterrupt:
        stop.note_interrupt()
    if not finished:
        tracker.interrupt(stop.signal_name())
        if on_checkpoint and len(tracker.history) > saved:
            with stop.shielded():
                checkpoint(len(tracker.history))
    train_time = trained + time.perf_counter() - t_train

    # The test numbers of the best epoch's weights and of the final ones (one program, two
    # calls; nothing to evaluate when the first epoch already diverged, or none ran).
    ev = _host(eval_exe(best_state, data, hp)) if tracker.best_epoch else {}
    ev_final = {}
    if tracker.history:
        ev_final = ev if state is best_state else _host(eval_exe(state, data, hp))
    times = {
        "wall_time": walled + time.perf_counter() - t_start,
        "train_time": train_time,
        "compile_time": compiled + compile_time,
    }
    return tracker.result(ds, ev, best_state, n_params=n_params, times=times, ev_final=ev_final)


def folds(ds: Dataset, k: int, seed: int) -> list[Dataset]:
    """k datasets whose validation splits are rotating, stratified folds of train+val (the test
    split stays out). Preprocessing statistics are those of the original training split."""
    x = np.concatenate([ds.x_train, ds.x_val])
    y = np.concatenate([ds.y_train, ds.y_val])
    if len(x) < 2 * k:
        raise ConfigError(
            f"trainer.cv_folds={k}: only {len(x)} train+val examples of data={ds.name}"
        )
    order = stratified_order(y, ds.n_classes > 0, np.random.default_rng(seed))
    parts = np.array_split(order, k)  # contiguous chunks of an interleaved order: stratified
    out = []
    for i in range(k):
        tr = np.sort(np.concatenate([p for j, p in enumerate(parts) if j != i]))
        va = np.sort(parts[i])
        out.append(dataclasses.replace(ds, x_train=x[tr], y_train=y[tr], x_val=x[va], y_val=y[va]))
    return out


def fit_cv(cfg: Config, ds: Dataset, *, on_epoch=None, on_start=None, on_warn=None) -> Result:
    """k-fold cross-validation: one model per fold; the objective is the mean over folds of
    the best monitored validation metric. Summary metrics are fold means; curves are the
    per-epoch means over the folds that reached that epoch."""
    k = cfg.trainer.cv_folds
    results = []
    for i, f in enumerate(folds(ds, k, cfg.data.split_seed)):
        results.append(
            fit(cfg, f, on_epoch=on_epoch, on_start=on_start if i == 0 else None, on_warn=on_warn)
        )
        if stop.requested():  # the folds not trained yet are left out
            break
    first = results[0].metrics
    monitor = "best_" + first["monitor"]
    scores = [r.metrics.get(monitor) for r in results]
    finite = [v for v in scores if v is not None and math.isfinite(v)]
    status = (
        "interrupted"
        if stop.requested()
        and (len(results) < k or any(r.status == "interrupted" for r in results))
        else "completed"
        if all(r.status == "completed" for r in results)
        else "diverged"
        if all(r.status in ("completed", "diverged") for r in results)
        else "failed"
    )
    metrics = dict(first)
    for key, value in first.items():
        values = [r.metrics.get(key) for r in results]
        if (
            isinstance(value, (int, float))
            and not isinstance(value, bool)
            and all(isinstance(v, (int, float)) and v is not None for v in values)
        ):
            metrics[key] = float(np.mean(values)) if isinstance(value, float) else value
    for key in ("wall_time", "train_time", "compile_time", "epochs", "epochs_run", "iterations"):
        metrics[key] = sum(r.metrics[key] for r in results)  # over all folds
    metrics["warnings"] = sorted({w for r in results for w in r.metrics["warnings"]})
    metrics.update(
        status=status,
        cv_folds=k,
        cv_scores=scores,
        cv_mean=float(np.mean(finite)) if len(finite) == k else None,
        cv_std=float(np.std(finite)) if len(finite) == k else None,
    )
    metrics[monitor] = metrics["cv_mean"]
    history = []
    for ep in range(1, max(len(r.history) for r in results) + 1):
        rows = [r.history[ep - 1] for r in results if len(r.history) >= ep]
        history.append(
            {
                key: (ep if key == "epoch" else float(np.mean([row[key] for row in rows])))
                for key in rows[0]
            }
        )
    return Result(status=status, metrics=metrics, history=history)


def run(cfg: Config, ds: Dataset, **callbacks) -> Result:
    """A single fit, or k-fold cross-validation when trainer.cv_folds >= 2."""
    if cfg.trainer.cv_folds >= 2:  # folds are not checkpointed: an interrupted k-fold run reruns
        callbacks.pop("on_checkpoint", None)
        callbacks.pop("resume", None)
        return fit_cv(cfg, ds, **callbacks)
    return fit(cfg, ds, **callbacks)


def write_run(
    run_dir: Path, result: Result, title: str = "", plot: bool = True, background: bool = False
) -> None:
    """curves.csv, the weights, curves.png and diagnostics.png, then metrics.json last: its
    presence with a final status means the run's files are all there. `background`: the PNGs
    are drawn after metrics.json by a detached process (runner.plots.draw_in_background), which
    runner.plots.PENDING, written before metrics.json, announces; runner.plots.wait_for_plots
    waits for it."""
    metric = result.metrics["metric"]
    rundir.write_curves(run_dir / rundir.CURVES, result.history, metric)
    if result.diagnostics:
        rundir.write_rows(run_dir / rundir.DIAGNOSTICS, result.diagnostics, diag.FIELDS)
    if result.best_state is not None:
        from runner.checkpoint import save_params

        save_params(
            run_dir / rundir.BEST_PARAMS,
            jax.device_get(result.best_state.params),
            jax.device_get(result.best_state.batch_stats),
        )
    draw = plot and bool(result.history)
    if draw and background:
        from runner import plots

        plots.mark_pending(run_dir)
        try:
            rundir.write_json(run_dir / rundir.METRICS, result.metrics)
        except BaseException:
            (run_dir / plots.PENDING).unlink(missing_ok=True)  # no draw will follow
            raise
        try:
            plots.draw_in_background(run_dir, title)
            return
        except OSError:  # no process to spare (EAGAIN, ENOMEM): drawn here after all
            pass
    if draw:
        from runner.plots import plot_curves, plot_diagnostics

        plot_curves(
            result.history, metric, run_dir / "curves.png", title=title, metrics=result.metrics
        )
        if result.diagnostics:
            plot_diagnostics(result.diagnostics, run_dir / "diagnostics.png", title=title)
    rundir.write_json(run_dir / rundir.METRICS, result.metrics)
