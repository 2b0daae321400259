"""One experiment from a validated Config: load data, train epoch by epoch (one compiled call and
one host sync per epoch), watch for divergence and early stopping, and leave the run's files.
The jitted core (runner.train) stays pure; all I/O and printing happen here and in the callers."""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from runner import outputs, train
from runner.config import Config, ConfigError
from runner.spec import Dataset, Spec, make_hparams, make_spec


@dataclass
class Result:
    status: str                      # completed | diverged | failed
    metrics: dict
    history: list = field(default_factory=list)

    @property
    def objective(self) -> float:
        """The monitored validation metric at the best epoch (what sweepers optimise)."""
        v = self.metrics.get("best_" + self.metrics["monitor"])
        return float("nan") if v is None else float(v)


def metric_name(spec: Spec) -> str:
    return "acc" if spec.model.head in ("softmax", "sigmoid") else "rmse"


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
        mode = "max" if monitor == "val_acc" else "min"
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
    return {k: float(v) for k, v in jax.device_get(tree).items()}


def prepare(cfg: Config, ds: Dataset):
    """Spec, traced hyperparameters and device-resident data for a config and dataset."""
    spec = make_spec(cfg, ds)
    hp = {k: jnp.asarray(v) for k, v in make_hparams(cfg, spec).items()}
    data = {f"{a}_{s}": jnp.asarray(getattr(ds, f"{a}_{s}"))
            for a in ("x", "y") for s in ("train", "val", "test")}
    return spec, hp, data


def fit(cfg: Config, ds: Dataset, *, on_epoch=None, on_start=None) -> Result:
    """Train; return the status, summary metrics and per-epoch history (no files written)."""
    spec, hp, data = prepare(cfg, ds)
    monitor, mode = resolve_monitor(cfg, spec, ds)
    metric = metric_name(spec)
    reg = cfg.regularization
    t_start = time.perf_counter()

    key = jax.random.PRNGKey(cfg.seed)
    init_exe, c_init = train.compiled(train.init_state, spec, hp, key, data)
    state = init_exe(hp, key, data)
    epoch_exe, c_epoch = train.compiled(train.epoch, spec, state, data, hp)
    compile_time = c_init + c_epoch
    n_params = int(sum(np.size(p) for p in jax.tree_util.tree_leaves(state["params"])))
    if on_start:
        on_start(spec, n_params, compile_time)

    history, status = [], "completed"
    best, best_epoch, best_state, since_best, stopped_early = None, 0, state, 0, False
    t_train = time.perf_counter()
    for ep in range(1, cfg.trainer.epochs + 1):
        state, m = epoch_exe(state, data, hp)
        m = _host(m)
        row = {"epoch": ep, "step": ep * spec.steps_per_epoch, "lr": m["lr"],
               "train_loss": m["train_loss"], f"train_{metric}": m["train_metric"],
               "val_loss": m["val_loss"], f"val_{metric}": m["val_metric"],
               "grad_norm": m["grad_norm"], "time": time.perf_counter() - t_train}
        history.append(row)
        if not (math.isfinite(m["train_loss"]) and math.isfinite(m["grad_norm"])):
            status = "diverged"
            if on_epoch:
                on_epoch(row)
            break
        # Without a validation split the best epoch is the one with the lowest training loss.
        value, vmode = (row[monitor], mode) if len(ds.x_val) else (row["train_loss"], "min")
        if _improved(value, best, vmode, reg.min_delta):
            best, best_epoch, best_state, since_best = value, ep, state, 0
        else:
            since_best += 1
        if on_epoch:
            on_epoch(row)
        if reg.early_stopping and since_best > reg.patience:
            stopped_early = True
            break
    train_time = time.perf_counter() - t_train

    restore = reg.early_stopping and reg.restore_best or status == "diverged"
    final_state = best_state if restore else state
    ev = {}
    if best_epoch:  # else nothing finite to evaluate (diverged in the first epoch)
        eval_exe, c_eval = train.compiled(train.evaluate_splits, spec, final_state, data, hp)
        compile_time += c_eval
        ev = _host(eval_exe(final_state, data, hp))
    last = history[-1]
    best_row = history[best_epoch - 1] if best_epoch else {}
    metrics = {
        "status": status, "task": ds.task, "metric": metric, "monitor": monitor, "mode": mode,
        "epochs": cfg.trainer.epochs, "epochs_run": len(history),
        "iterations": len(history) * spec.steps_per_epoch,
        "steps_per_epoch": spec.steps_per_epoch, "batch_size": spec.batch_size,
        "n_train": len(ds.x_train), "n_val": len(ds.x_val), "n_test": len(ds.x_test),
        "best_epoch": best_epoch or None, "stopped_early": stopped_early,
        "diverged_epoch": len(history) if status == "diverged" else None,
        f"best_val_{metric}": best_row.get(f"val_{metric}"),
        "best_val_loss": best_row.get("val_loss"),
        "best_train_loss": best_row.get("train_loss"),
        f"best_train_{metric}": best_row.get(f"train_{metric}"),
        "final_train_loss": last["train_loss"], f"final_train_{metric}": last[f"train_{metric}"],
        "final_val_loss": last["val_loss"], f"final_val_{metric}": last[f"val_{metric}"],
        "test_loss": ev.get("test_loss"), f"test_{metric}": ev.get("test_metric"),
        "eval_weights": ("best" if restore else "final") if best_epoch else None,
        "params": n_params,
        "wall_time": time.perf_counter() - t_start, "train_time": train_time,
        "compile_time": compile_time,
    }
    return Result(status=status, metrics=metrics, history=history)


def write_run(run_dir: Path, result: Result, title: str = "", plot: bool = True) -> None:
    """curves.csv, curves.png, then metrics.json last: its presence with a final status means
    the run's files are all there."""
    metric = result.metrics["metric"]
    outputs.write_curves(run_dir / "curves.csv", result.history, metric)
    if plot and result.history:
        from runner.plots import plot_curves
        plot_curves(result.history, metric, run_dir / "curves.png", title=title)
    outputs.write_json(run_dir / "metrics.json", result.metrics)
