"""One config trained into one run folder, keeping its work: the folder says `running` (with the
process id, host and a heartbeat) while it trains, shows the epochs done so far, holds a
checkpoint every trainer.checkpoint epochs, and ends with a final status, also when Ctrl-C or
SIGTERM stops it (`interrupted`, with a checkpoint that `runner resume RUN` continues from).

Used by the `runner` task (runner.task) and by `runner resume` (runner.resume); `continuation`
is trainer.resume's check of a folder's checkpoint (runner.task, the vmap launcher)."""

from __future__ import annotations

import contextlib
import os
import socket
import time
from pathlib import Path

from runner import rundir

# The running folder's metrics.json and curves.csv are rewritten at most this often: a reader
# sees the epochs so far and a heartbeat, and a fast run does not spend its time on files.
PROGRESS_EVERY_S = 1.0


class Keeper:
    """What a run leaves in its folder while it trains."""

    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)
        self.metric = None
        self.rows: list[dict] = []
        self.started = time.time()
        self.last_write = 0.0
        self.epochs = 0

    def running(self) -> None:
        rundir.write_json(  # progress: rewritten until the final one (rundir.atomic_write)
            self.run_dir / rundir.METRICS,
            running_metrics(self.started, epochs_run=len(self.rows), epochs=self.epochs),
            durable=False,
        )

    def start(self, metric: str, epochs: int, done_rows: list | None = None) -> None:
        self.metric, self.epochs = metric, epochs
        self.rows = list(done_rows or [])
        self.running()

    def epoch(self, row: dict) -> None:
        self.rows.append(row)
        now = time.monotonic()
        if len(self.rows) == 1 or now - self.last_write >= PROGRESS_EVERY_S:
            self.last_write = now
            if self.metric:
                path = self.run_dir / rundir.CURVES
                rundir.write_curves(path, self.rows, self.metric, durable=False)
            self.running()

    def checkpoint(self, state, best, meta: dict) -> None:
        from runner.checkpoint import save_checkpoint

        # The config files of the run it belongs to: Hydra rewrites them before a continuation
        # is checked, and a refused one puts them back (continuation).
        files = {}
        for name in (rundir.CONFIG, rundir.OVERRIDES):
            with contextlib.suppress(OSError, UnicodeError):
                files[name] = (self.run_dir / name).read_text(encoding="utf-8")
        save_checkpoint(
            self.run_dir / rundir.CHECKPOINT, state, best, {**meta, "hydra_files": files}
        )


def running_metrics(started: float, **fields) -> dict:
    """metrics.json of a run in progress: who runs it (a reader tells a live run from one whose
    process died: runner.compare.results) and how far it is."""
    return {
        "status": "running",
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": started,
        "heartbeat": time.time(),
        **{k: v for k, v in fields.items() if v is not None},
    }


def train_into(run_dir: Path, cfg, ds, *, display, job_log=None, resume=None, on_started=None):
    """Train cfg on ds (continuing `resume`, an app.Resume) while keeping run_dir current;
    returns the run's runner.tracker.Result (the caller writes the final files with
    app.write_run)."""
    from runner import app, tracker

    keeper = Keeper(run_dir)
    metric = None

    def on_start(spec, n_params, compile_time):
        nonlocal metric
        metric = tracker.metric_name(spec)
        done = resume.meta["tracker"]["history"] if resume else []
        keeper.start(metric, cfg.trainer.epochs, done)
        if on_started:
            on_started()
        display.start(spec, n_params, compile_time)
        if done:
            display.advance(len(done), f"resumed after epoch {len(done)}")

    def on_epoch(row):
        keeper.epoch(row)
        (job_log.epoch if job_log else display.epoch)(row)

    return app.run(
        cfg,
        ds,
        on_start=on_start,
        on_epoch=on_epoch,
        on_warn=job_log.warn if job_log else display.warn,
        on_checkpoint=keeper.checkpoint,
        resume=resume,
    )


# What trainer.resume lets differ between a checkpoint's run and the run that continues it: the
# budget, and settings that change neither the numbers nor the files' meaning (display, folders,
# loggers, the label).
CONTINUE_MAY_DIFFER = (
    "trainer.stop_at",
    "trainer.resume",
    "trainer.progress",
    "trainer.plot",
    "trainer.plot_wait",
    "trainer.checkpoint",
    "paths.",
    "logger.",
    "name",
)


def continuation(run_dir: Path, cfg):
    """trainer.resume=true: the app.Resume that continues run_dir's checkpoint.npz with cfg, or
    None when the folder holds none (the run trains from its first epoch). ConfigError, one
    line naming the folder, when the checkpoint cannot be continued: its run finished
    (completed, diverged, failed), is still running, was saved with a config that differs in
    more than CONTINUE_MAY_DIFFER, or is already past cfg's stop_at/epochs."""
    from runner.checkpoint import CheckpointError, read_checkpoint
    from runner.config import ConfigError

    path = Path(run_dir) / rundir.CHECKPOINT
    if not path.is_file():
        return None
    try:
        arrays, meta = read_checkpoint(path)
    except CheckpointError as e:
        raise ConfigError(f"trainer.resume=true: {e}") from None
    try:
        _check_continuation(Path(run_dir), path, meta, cfg)
    except ConfigError:
        # Hydra has already written this config's .hydra files: the folder's run gets its own
        # back, where the checkpoint holds its newest epoch (and so its config)
        read = rundir.read_metrics(run_dir)
        if read.ok and read.data.get("epochs_run") == meta["epoch"]:
            for name, text in meta.get("hydra_files", {}).items():
                rundir.atomic_write(Path(run_dir) / name, text)
        raise
    from runner import app

    return app.Resume(arrays=arrays, meta=meta, path=path)


def _check_continuation(run_dir: Path, path: Path, meta: dict, cfg) -> None:
    from runner.config import ConfigError, record

    read = rundir.read_metrics(run_dir)
    status = rundir.status_of(read.data) if read.ok else None
    if status in rundir.FINAL and status not in (rundir.INTERRUPTED, rundir.PRUNED):
        raise ConfigError(
            f"trainer.resume=true: {run_dir} holds a finished run (status {status}): nothing to "
            f"continue; use another folder or trainer.resume=false"
        )
    # a live process of its own: this one, whose vmapped group fell back to one by one
    if status == rundir.RUNNING and read.data.get("pid") != os.getpid():
        raise ConfigError(
            f"trainer.resume=true: {run_dir} is still running (process {read.data.get('pid')} "
            f"on {read.data.get('host')}); stop it first"
        )
    saved = meta.get("config")
    if saved is None:
        raise ConfigError(
            f"trainer.resume=true: {path} keeps no config (saved by an older runner); "
            f"continue it with: runner resume {run_dir}"
        )
    new = record(cfg)
    differ = sorted(
        k
        for k in set(saved) | set(new)
        if not k.startswith(CONTINUE_MAY_DIFFER) and saved.get(k, ...) != new.get(k, ...)
    )
    if differ:
        k = differ[0]
        more = f" (and {len(differ) - 1} more settings)" if len(differ) > 1 else ""
        raise ConfigError(
            f"trainer.resume=true: {path} was saved by a run with {k}={saved.get(k)}, not "
            f"{new.get(k)}{more}; use another folder or trainer.resume=false"
        )
    last = cfg.trainer.stop_at or cfg.trainer.epochs
    if meta["epoch"] > last:
        raise ConfigError(
            f"trainer.stop_at={cfg.trainer.stop_at}: {path} is already at epoch "
            f"{meta['epoch']}; expected a stop_at from {meta['epoch']} to "
            f"trainer.epochs={cfg.trainer.epochs}, or 0"
        )


def stop_line(metrics: dict, run_dir: Path, resumable: bool) -> str:
    """The one line a stopped run prints: where it stopped and how to go on."""
    how = (
        f"resume with: runner resume {run_dir}"
        if resumable
        else "no checkpoint (stopped before its first epoch): run it again"
    )
    return (
        f"interrupted ({metrics.get('interrupted_by') or 'SIGINT'}) after epoch "
        f"{metrics.get('epochs_run', 0)}/{metrics.get('epochs')}; kept in {run_dir}; {how}"
    )
