"""Hydra's task function behind `runner`: validate, load, train, write the run directory, print.
A launcher's job in a process of its own (joblib, submitit) logs plain lines instead of a live
display, and sends its error back in a form that survives pickling."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from runner.runtime import detached as _is_detached
from runner.runtime import enable_compilation_cache, resume_gc
from runner.shell import JobError, describe


class _JobLog:
    """What a detached job prints, instead of a live display of its own. joblib's workers share
    the terminal that the sweep's progress bar is drawn on: each line first clears the bar's line
    (the bar redraws itself below it). Into a log file (submitit's local and SLURM jobs): also one
    plain line per epoch, so that `tail -f` shows the job's progress."""

    def __init__(self, job, total_epochs: int, progress: bool):
        from rich.console import Console

        self.out, self.err = Console(), Console(stderr=True)
        self.job, self.total = job, total_epochs
        self.every_epoch = progress and not self.err.is_terminal
        self.n = 0

    @staticmethod
    def _print(console, text: str) -> None:
        # soft_wrap: one line per message however narrow the terminal or log, so that every line
        # of a job starts with its job number
        if not console.is_terminal:
            console.print(text, highlight=False, soft_wrap=True)
            return
        with console.capture() as captured:
            console.print(text, highlight=False, soft_wrap=True)
        # One write, so that the sweep's redraws cannot come between clearing and printing.
        console.file.write("\r\x1b[2K" + captured.get())
        console.file.flush()

    def epoch(self, row: dict) -> None:
        from runner.progress import epoch_stats

        self.n += 1
        if self.every_epoch:
            self._print(self.err, f"job {self.job} epoch {self.n}/{self.total}: {epoch_stats(row)}")

    def warn(self, msg: str) -> None:
        self._print(self.err, f"[yellow]warning:[/] job {self.job}: {msg}")

    def line(self, text: str) -> None:
        self._print(self.out, text)


class _JobDisplay:
    """A multirun job's live display (hydra/launcher=basic: the jobs take turns in this
    process) whose warnings name the job, as a vmapped group's and a detached job's do."""

    def __init__(self, display, job):
        self._display, self._job = display, job

    def warn(self, msg: str) -> None:
        self._display.warn(f"job {self._job}: {msg}")

    def __getattr__(self, name):
        return getattr(self._display, name)


def _job_failed(job, e: BaseException, *, trace: bool = False) -> None:
    """A detached job's failure, in its log file (submitit, SLURM): the error's line, after the
    traceback of an unexpected one. On a terminal (joblib) the sweep reports it."""
    if sys.stderr.isatty():
        return
    if trace:
        import traceback

        traceback.print_exc()
    print(f"job {job} failed: {describe(e)}", file=sys.stderr, flush=True)


def _portable(e: BaseException) -> BaseException:
    """`e` if it survives the trip back to the sweep through pickle, else a JobError with its
    one-line description."""
    import pickle

    try:
        pickle.loads(pickle.dumps(e))
        return e
    except Exception:  # noqa: BLE001 - any failure to round-trip
        return JobError(describe(e))


def _warn(msg: str) -> None:
    from rich.console import Console

    Console(stderr=True).print(f"[yellow]warning:[/] {msg}", highlight=False, soft_wrap=True)


def _cleanup(run_dir: Path) -> None:
    """A run refused before training leaves nothing behind that could look like a result."""
    try:
        if run_dir.is_dir() and set(os.listdir(run_dir)) <= {".hydra"}:
            shutil.rmtree(run_dir)
            os.rmdir(run_dir.parent)  # the date folder, only if now empty
    except OSError:
        pass


def task(dcfg, result=None, cfg=None) -> float:
    """Hydra's task function: validate, load, train, write the run directory, print. With
    `result` (a vectorised launcher already trained this job with others) only the writing and
    printing are left; `cfg`: dcfg validated already (by that launcher)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from rich.console import Console

    from runner import rundir
    from runner.config import ConfigError, validate
    from runner.data import load_dataset
    from runner.datasets import cache_in

    hc = HydraConfig.get()
    run_dir = Path(hc.runtime.output_dir)
    multirun = hc.mode == RunMode.MULTIRUN
    # A job in a process of its own (joblib, submitit): no live display of its own, which would
    # fight the sweep's bar for the terminal or fill a log file with redraws.
    detached = multirun and _is_detached()
    job_log = None
    started = False
    try:
        cfg = validate(dcfg) if cfg is None else cfg
        total = (cfg.trainer.stop_at or cfg.trainer.epochs) * max(cfg.trainer.cv_folds, 1)
        if detached:
            job_log = _JobLog(hc.job.num, total, cfg.trainer.progress)
        if result is None:
            with cache_in(cfg.paths):  # paths.cache: generated datasets
                ds = load_dataset(cfg.data)
            from runner.memory import check_memory

            check_memory(cfg, ds)  # a model too large for this machine, before JAX starts
            # JAX (slow to import: docs/performance.md) only once the config and data are known
            # to be good: bad input is reported without it.
            from runner import runjob
            from runner.progress import Display

            enable_compilation_cache(cfg.paths)  # paths.jax_cache
            check_memory(cfg, ds)  # with JAX started: an accelerator's own memory
            resume_gc()  # start-up is over (runner.runtime.pause_gc)
            resume = None
            if cfg.trainer.resume:  # the folder's checkpoint.npz, if any: its files stay
                from runner.runjob import continuation

                resume = continuation(run_dir, cfg)
            with Display(
                total,
                enabled=cfg.trainer.progress and not detached,
                title=f"job {hc.job.num}" if multirun else "train",
            ) as display:

                def on_started():
                    nonlocal started
                    started = True  # from here on, an error leaves a failed run, not nothing

                result = runjob.train_into(
                    run_dir,
                    cfg,
                    ds,
                    display=_JobDisplay(display, hc.job.num) if multirun else display,
                    job_log=job_log,
                    on_started=on_started,
                    resume=resume,
                )
            if resume is not None:
                result.metrics["resumed_from_epoch"] = resume.meta["epoch"]
        from runner import app, provenance, stop

        plot = cfg.trainer.plot if isinstance(cfg.trainer.plot, bool) else not multirun
        from runner.plots import in_background

        # A single run's PNGs are drawn by a detached process once its results are safe: the
        # prompt comes back ~1 s sooner (runner.plots.in_background says when not).
        later = in_background(cfg.trainer.plot_wait, multirun, cfg.logger.backends)
        with stop.shielded():  # a second Ctrl-C does not cut the run's files in half
            provenance.write(  # before the final metrics.json
                run_dir,
                cwd=hc.runtime.cwd,
                resumed=result.metrics.get("resumed_from_epoch") is not None,
            )
            app.write_run(
                run_dir,
                result,
                title=" ".join(hc.overrides.task) or "defaults",
                plot=plot and result.status != "interrupted",
                background=later,
            )
        if cfg.logger.backends:  # logger=tensorboard|mlflow: from the files just written
            from rich.markup import escape  # a logger's error may hold [brackets]

            from runner.export import after_run

            after_run(
                run_dir, cfg.logger, lambda m: (job_log.warn if job_log else _warn)(escape(m))
            )
    except ConfigError as e:
        if started or multirun:
            rundir.write_json(run_dir / rundir.METRICS, {"status": "failed", "error": str(e)})
        else:
            _cleanup(run_dir)
        if detached:
            _job_failed(hc.job.num, e)
            raise _portable(e) from None
        raise
    except Exception as e:
        if run_dir.is_dir():
            rundir.write_json(
                run_dir / rundir.METRICS, {"status": "failed", "error": f"{type(e).__name__}: {e}"}
            )
        if detached:
            _job_failed(hc.job.num, e, trace=True)
            raise _portable(e) from None
        raise
    console = Console()
    if result.status == "interrupted" and not multirun:
        from runner.rundir import CHECKPOINT
        from runner.runjob import stop_line

        resumable = (run_dir / CHECKPOINT).exists()
        print(f"runner: {stop_line(result.metrics, run_dir, resumable)}", file=sys.stderr)
        return result.objective
    if multirun:  # the sweep prints the table of all trials at the end
        m = result.metrics
        line = (
            f"job {hc.job.num}: {m['status']}, best {m['monitor']} "
            f"{m.get('best_' + m['monitor'])}, {run_dir}"
        )
        job_log.line(line) if job_log else console.print(line, highlight=False, soft_wrap=True)
    else:
        from runner.progress import summary_line, summary_table

        console.print(summary_table(result.metrics))
        console.print(summary_line(result.metrics), highlight=False)
        console.print(f"run directory: [bold]{run_dir}[/]")
    return result.objective
