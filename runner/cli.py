"""The `runner` command: Hydra parses the command line and composes conf/; the task function
validates, trains and writes the run directory. Errors become one line on stderr and exit code 2
(a traceback only with --debug or HYDRA_FULL_ERROR=1)."""
from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
from pathlib import Path

from runner.help import conf_dir

# Commands with their own argument parsing, dispatched before Hydra (and JAX) are imported.
SUBCOMMANDS = {"compare": "runner.compare", "best": "runner.compare", "plot": "runner.compare",
               "gradcheck": "runner.gradcheck", "ensemble": "runner.ensemble",
               "resume": "runner.resume"}

EXIT_ERROR = 2

# Set by main() to the `runner` process that starts Hydra (host:pid) and inherited by the job
# processes of Hydra's launchers (submitit's local and SLURM jobs, joblib's workers): a task that
# finds another value runs detached from the sweep that shows the progress.
MAIN_PROCESS_ENV = "RUNNER_MAIN_PROCESS"


def _process_tag() -> str:
    import socket
    return f"{socket.gethostname()}:{os.getpid()}"


def _detached() -> bool:
    """True in a job that a launcher runs in another process than the `runner` command."""
    main_process = os.environ.get(MAIN_PROCESS_ENV)
    return bool(main_process) and main_process != _process_tag()


class JobError(RuntimeError):
    """A detached job's error whose own exception would not survive pickling back to the sweep:
    its message is already the one line that describe() gives."""


def _cleanup(run_dir: Path) -> None:
    """A run refused before training leaves nothing behind that could look like a result."""
    try:
        if run_dir.is_dir() and set(os.listdir(run_dir)) <= {".hydra"}:
            shutil.rmtree(run_dir)
            os.rmdir(run_dir.parent)  # the date folder, only if now empty
    except OSError:
        pass


def _host_devices() -> None:
    """One XLA CPU device per core (before JAX starts; XLA_FLAGS that set a count win). A vmapped
    group shards its members over them (runner.vectorized); measured on 2 cores, even a single
    run trains ~1.8x faster this way (docs/performance.md). GPUs are unaffected."""
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_force_host_platform_device_count" not in flags:
        count = f"--xla_force_host_platform_device_count={os.cpu_count() or 1}"
        os.environ["XLA_FLAGS"] = f"{flags} {count}".strip()


_CLAIMED: dict[str, str] = {}


def unique_dir(base: str) -> str:
    """hydra.run.dir's resolver (conf/config.yaml): a folder of this run's own, `base` or the
    first free base-1, base-2, ... (runner.rundir.claim). Remembered per process: Hydra resolves
    hydra.run.dir more than once."""
    if base not in _CLAIMED:
        from runner.rundir import claim
        _CLAIMED[base] = str(claim(base))
    return _CLAIMED[base]


def register_unique_dir() -> None:
    from omegaconf import OmegaConf
    _CLAIMED.clear()  # a new command in this process claims a new folder
    OmegaConf.register_new_resolver("unique_dir", unique_dir, replace=True)


def _enable_compilation_cache() -> None:
    """Reuse compiled programs across processes: a repeated `runner` command skips most of its
    compile time. JAX skips programs that compile in under 1 s unless the threshold is lowered,
    and most of ours are that small."""
    import jax
    path = os.environ.get("RUNNER_JAX_CACHE",
                          os.path.join(os.path.expanduser("~"), ".cache", "runner", "jax"))
    if path.lower() in ("", "0", "off", "none"):
        return
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


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
        if not console.is_terminal:
            console.print(text, highlight=False)
            return
        with console.capture() as captured:
            console.print(text, highlight=False)
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


def task(dcfg, result=None) -> float:
    """Hydra's task function: validate, load, train, write the run directory, print. With
    `result` (a vectorised launcher already trained this job with others) only the writing and
    printing are left."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from rich.console import Console

    from runner import rundir
    from runner.config import ConfigError, validate
    from runner.data import load_dataset

    hc = HydraConfig.get()
    run_dir = Path(hc.runtime.output_dir)
    multirun = hc.mode == RunMode.MULTIRUN
    # A job in a process of its own (joblib, submitit): no live display of its own, which would
    # fight the sweep's bar for the terminal or fill a log file with redraws.
    detached = multirun and _detached()
    job_log = None
    started = False
    try:
        cfg = validate(dcfg)
        total = cfg.trainer.epochs * max(cfg.trainer.cv_folds, 1)
        if detached:
            job_log = _JobLog(hc.job.num, total, cfg.trainer.progress)
        if result is None:
            ds = load_dataset(cfg.data)
            from runner.memory import check_memory
            check_memory(cfg, ds)  # a model too large for this machine, before JAX starts
            # JAX (~1 s to import) only once the config and data are known to be good: bad
            # input is reported without it.
            from runner import runjob
            from runner.progress import Display
            _enable_compilation_cache()
            check_memory(cfg, ds)  # with JAX started: an accelerator's own memory
            with Display(total, enabled=cfg.trainer.progress and not detached,
                         title=f"job {hc.job.num}" if multirun else "train") as display:
                def on_started():
                    nonlocal started
                    started = True  # from here on, an error leaves a failed run, not nothing
                result = runjob.train_into(run_dir, cfg, ds, display=display, job_log=job_log,
                                           on_started=on_started)
        from runner import app, stop
        plot = cfg.trainer.plot if isinstance(cfg.trainer.plot, bool) else not multirun
        with stop.shielded():  # a second Ctrl-C does not cut the run's files in half
            app.write_run(run_dir, result, title=" ".join(hc.overrides.task) or "defaults",
                          plot=plot and result.status != "interrupted")
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
            rundir.write_json(run_dir / rundir.METRICS,
                               {"status": "failed", "error": f"{type(e).__name__}: {e}"})
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
        line = (f"job {hc.job.num}: {m['status']}, best {m['monitor']} "
                f"{m.get('best_' + m['monitor'])}, {run_dir}")
        job_log.line(line) if job_log else console.print(line, highlight=False)
    else:
        from runner.progress import summary_line, summary_table
        console.print(summary_table(result.metrics))
        console.print(summary_line(result.metrics), highlight=False)
        console.print(f"run directory: [bold]{run_dir}[/]")
    return result.objective


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (conf_dir() / group).glob("*.yaml"))


GROUPS = ("data", "model", "activation", "init", "optimizer", "schedule", "regularization",
          "trainer")


def _chosen_option(group: str, argv: list[str]) -> str | None:
    """The option of `group` a command line selects (else the default in config.yaml)."""
    chosen = None
    for arg in argv:
        name, _, value = arg.lstrip("+~").partition("=")
        if name == group and value:
            chosen = value
    if chosen is None:
        import yaml
        defaults = yaml.safe_load((conf_dir() / "config.yaml").read_text()).get("defaults", [])
        for entry in defaults:
            if isinstance(entry, dict) and group in entry:
                chosen = entry[group]
    return chosen


def _option_keys(group: str, option: str) -> set[str]:
    """Keys an option's YAML sets, including those it inherits from its group's presets."""
    import yaml
    path = conf_dir() / group / f"{option}.yaml"
    if not path.exists():
        return set()
    node = yaml.safe_load(path.read_text()) or {}
    keys = set(node) - {"defaults"}
    for parent in node.get("defaults", []):
        if isinstance(parent, str) and parent != "_self_":
            keys |= _option_keys(group, parent)
    return keys


def _unknown_key(key: str, argv: list[str]) -> str:
    group, _, name = key.partition(".")
    if "." not in key:
        return (f"{key}: no such setting; the top level has seed, name and the groups "
                + ", ".join(GROUPS))
    if group not in GROUPS or "." in name:
        return f"{key}: no such setting"
    option = _chosen_option(group, argv)
    keys = sorted(_option_keys(group, option)) if option else []
    msg = f"{key}: not a setting of {group}={option}; it has {', '.join(keys) or 'none'}"
    owners = [o for o in _options(group) if name in _option_keys(group, o)]
    if owners:
        msg += f" ({name} belongs to {', '.join(f'{group}={o}' for o in owners[:6])})"
    return msg


def describe(e: BaseException, argv: list[str] = ()) -> str:
    """One line for any error: the key, the value and what is allowed where we can tell."""
    from runner.config import ConfigError
    if isinstance(e, (ConfigError, JobError)):
        return str(e)
    if type(e).__module__.startswith("submitit"):
        return _submitit_error(e)
    text = str(e)
    m = re.search(r"Could not find '([\w/]+)/([^']+)'", text)
    if m:
        group, value = m.group(1), m.group(2)
        listed = re.search(r"Available options in '[^']+':\n((?:\t.*\n?)+)", text)
        opts = ([o.strip() for o in listed.group(1).splitlines() if o.strip()] if listed
                else _options(group))
        return f"{group}={value}: unknown option; choose one of {', '.join(opts)}"
    m = re.search(r"Could not override '([\w.]+)'", text)
    if m:
        return _unknown_key(m.group(1), list(argv))
    m = re.match(r"Error parsing override '(.*)'\n", text)
    if m:  # the reason is on Hydra's next lines: "ValueError while evaluating 'f(..)': reason"
        override = m.group(1)
        reason = "; ".join(ln.strip() for ln in text[m.end():].splitlines()
                           if ln.strip() and not ln.startswith("See https://hydra.cc"))
        reason = re.sub(r"^\w+ while evaluating '.*?': ", "", reason)
        call = re.match(r"(\w+)\([^)]*\): ", reason)  # our functions name the call: once is enough
        if call and f"{call.group(1)}(" in override:
            reason = reason[call.end():]
        return f"{override}: {reason or 'cannot parse this override'}"
    if isinstance(e, OSError) and e.filename:
        return (f"cannot write {e.filename!r}: {e.strerror}; set hydra.run.dir (or "
                f"hydra.sweep.dir) to a writable folder")
    first = text.strip().splitlines()[0] if text.strip() else type(e).__name__
    if type(e).__module__.startswith(("hydra", "omegaconf")):
        return first
    return f"{type(e).__name__}: {first} (rerun with --debug for the traceback)"


def _last_line(text: str) -> str:
    """The last non-blank line of a log or traceback, without glog's "F1122 07:40:11.648 123
    file.cc:234] " prefix (XLA's fatal errors)."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and set(ln.strip()) != {"-"}]
    return re.sub(r"^[FEWI]\d{4} [\d:.]+\s+\d+ \S+\] ", "", lines[-1]) if lines else ""


def _submitit_error(e: BaseException) -> str:
    """One line for a submitit job that failed outside the task (the task's own errors come back
    as failed JobReturns): the job's last error line and its log file."""
    text = str(e)
    sep = "-" * 22 + "\n"
    m = re.match(r"Job \S+ failed during processing with trace:\n", text)
    if m and text.count(sep) >= 2:  # FailedJobError: the job raised; its traceback
        trace = text.split(sep)[1]
        log = re.search(r"at paths:\n\s*- (\S+)", text)
        return (f"the job raised {_last_line(trace) or 'an error'}"
                + (f" (log: {log.group(1)})" if log else ""))
    m = re.match(r"Job (\S+) \(task: \S+\) with path (\S+)\nhas not produced any output "
                 r"\(state: ([^)\n]*)\)", text)
    if m:  # UncompletedJobError: the job process died (crash, OOM, time limit, scancel)
        job, result, state = m.groups()
        stream = text.split("-" * 40 + "\n", 1)[1] if "-" * 40 + "\n" in text else ""
        last = _last_line(stream)
        log = re.sub(r"_result\.pkl$", "_log.err", result)
        return (f"job {job} ended without a result (state {state})"
                + (f": {last}" if last else "") + f" (log: {log})")
    first = text.strip().splitlines()[0] if text.strip() else ""
    return f"{type(e).__name__}: {first}" if first else type(e).__name__


class UsageError(Exception):
    """A bad option of a subcommand, worded for the user."""


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports a bad option as one line (UsageError) instead of usage + exit 2."""

    def error(self, message):
        raise UsageError(f"{self.prog}: {message} (see {self.prog} --help)")

    def exit(self, status=0, message=None):
        if message:
            sys.stderr.write(message)
        raise SystemExit(status)


def subcommand(name: str, argv: list[str] | None, run, expected=()) -> int:
    """The common shell of `runner NAME ...` commands: drops NAME and --debug from argv, calls
    run(argv) -> exit code, and turns any error into one line (exit 2; --debug re-raises
    unexpected ones). `expected` errors carry a message meant for the user as it is."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == name:
        argv = argv[1:]
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    try:
        return run(argv)
    except SystemExit as e:  # argparse: --help, or a usage error it already printed
        return int(e.code or 0)
    except (UsageError, *expected) as e:
        print(f"runner: error: {e}", file=sys.stderr)
        return EXIT_ERROR
    except Exception as e:  # noqa: BLE001 - every error becomes one line
        if debug:
            raise
        print(f"runner: error: {describe(e, argv)}", file=sys.stderr)
        return EXIT_ERROR


class _QuietHydraStderr:
    """stderr without the line Hydra writes before re-raising a failed job's exception
    ("Error executing job with overrides: ..."): we report the error itself in one line."""

    def __init__(self, stream):
        self._stream = stream

    def write(self, text):
        if text.startswith("Error executing job with overrides:"):
            return len(text)
        return self._stream.write(text)

    def __getattr__(self, name):
        return getattr(self._stream, name)


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in SUBCOMMANDS:
        import importlib
        sys.exit(importlib.import_module(SUBCOMMANDS[argv[0]]).main(argv))
    import hydra

    from runner.help import register_resolver
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    report = not debug and not os.environ.get("HYDRA_FULL_ERROR")
    os.environ[MAIN_PROCESS_ENV] = _process_tag()
    _host_devices()
    # Make Hydra raise instead of printing its own multi-line report: we print one line, or
    # (--debug) let the traceback through.
    os.environ["HYDRA_FULL_ERROR"] = "1"
    sys.argv = [sys.argv[0] if sys.argv else "runner"] + argv
    register_resolver(conf_dir())
    register_unique_dir()
    from runner import stop
    stop.install()
    entry = hydra.main(version_base="1.3", config_path=str(conf_dir()), config_name="config")(task)
    if report:
        sys.stderr = _QuietHydraStderr(sys.stderr)
    try:
        entry()
    except SystemExit:
        raise
    except KeyboardInterrupt:
        # A second Ctrl-C before any run folder could be finished (composing, loading data):
        # nothing was trained, nothing to keep.
        if not report:
            raise
        print("runner: interrupted", file=sys.stderr)
        sys.exit(stop.exit_code())
    except BaseException as e:  # noqa: BLE001 - every error becomes one line
        if not report:
            raise
        print(f"runner: error: {describe(e, argv)}", file=sys.stderr)
        sys.exit(EXIT_ERROR)
    if stop.requested():  # the run or sweep kept its work and said so: exit 130 / 143
        sys.exit(stop.exit_code())
