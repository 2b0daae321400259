"""One config trained into one run folder, keeping its work: the folder says `running` (with the
process id, host and a heartbeat) while it trains, shows the epochs done so far, holds a
checkpoint every trainer.checkpoint epochs, and ends with a final status, also when Ctrl-C or
SIGTERM stops it (`interrupted`, with a checkpoint that `runner resume RUN` continues from).

Used by the `runner` task (runner.task) and by `runner resume` (runner.resume)."""

from __future__ import annotations

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

        save_checkpoint(self.run_dir / rundir.CHECKPOINT, state, best, meta)


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
