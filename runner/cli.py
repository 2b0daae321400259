"""The `runner` command: dispatches subcommands (before Hydra and JAX are imported), else lets
Hydra parse the command line and compose conf/ and runs runner.task.task. Errors become one line
on stderr and exit code 2 (a traceback only with --debug or HYDRA_FULL_ERROR=1). Nothing imports
this module: the shared pieces live in runner.shell (errors, argparse) and runner.runtime."""

from __future__ import annotations

import contextlib
import os
import sys

from runner.help import conf_dir
from runner.runtime import (
    MAIN_PROCESS_ENV,
    host_devices,
    pause_gc,
    process_tag,
    register_unique_dir,
    resume_gc,
)
from runner.shell import EXIT_ERROR, QuietHydraStderr, describe, sweep_fixed_keys

# Commands with their own argument parsing, dispatched before Hydra (and JAX) are imported.
SUBCOMMANDS = {
    "compare": "runner.compare.main",
    "best": "runner.compare.main",
    "plot": "runner.compare.main",
    "gradcheck": "runner.tools.gradcheck",
    "ensemble": "runner.tools.ensemble",
    "resume": "runner.resume",
    "export": "runner.export.main",
}

# What each command does, one line for `runner --help` (runner.help.commands_help); a command
# left out here is described by the first line of its module's docstring, read without
# importing the module.
SUBCOMMAND_HELP = {
    "compare": "tabulate runs: the settings that differ, the metrics, a sparkline of each curve",
    "best": "the best run's folder and overrides, for scripts",
    "plot": "draw a run's curves.png and diagnostics.png again; a sweep folder's search.png",
    "resume": "continue a stopped run from its checkpoint, in its own folder",
    "gradcheck": "the notes' gradient check: analytic gradient against finite differences",
    "ensemble": "average the predictions of a sweep's top k trials and score the ensemble",
}


# Overrides of hydra.* keys that cannot set hydra.mode (a hydra/GROUP=OPTION selection puts its
# option under hydra.GROUP); any other hydra key, a package (key@pkg) or a config name, folder
# or search path of the user's may set it.
_MODE_FREE_HYDRA = (
    "hydra.run.",
    "hydra.sweep.",
    "hydra.job.",
    "hydra.launcher.",
    "hydra.sweeper.",
    "hydra/",
)


def _mode_free(override: str) -> bool:
    key = override.strip().split("=", 1)[0].lstrip("+~")
    return "@" not in key and (not key.startswith("hydra") or key.startswith(_MODE_FREE_HYDRA))


def single_run(argv: list[str]) -> bool:
    """A plain `runner OVERRIDES`, certain to run one job in this process: no flag (-m, --cfg,
    --config-dir, ...) and no override that could set hydra.mode (see mode_is_unset)."""
    return all(not a.startswith("-") and _mode_free(a) for a in argv)


def mode_is_unset(hydra_app, config_name: str | None, overrides: list[str]) -> bool:
    """True when `runner OVERRIDES` composes a config whose hydra.mode is unset (None) for
    certain, without composing it: nothing in conf/ sets hydra.mode (tests/test_cli.py checks),
    so only the command line could. False when it might: Hydra's get_mode then composes."""
    if config_name != "config":
        return False
    search = hydra_app.config_loader.get_search_path().get_path()
    if {e.provider for e in search} != {"hydra", "main", "schema"} or any(
        e.provider == "main" and e.path != str(conf_dir()) for e in search
    ):
        return False  # --config-dir, --config-path, a SearchPathPlugin: configs not ours
    return all(_mode_free(o) for o in overrides)


@contextlib.contextmanager
def _mode_from_command_line():
    """Hydra 1.3 composes the whole config twice per command: Hydra.get_mode composes it only
    to read hydra.mode (None: -m decides), then run or multirun composes it for real (~0.3 s
    each, docs/performance.md). Where the command line settles hydra.mode (mode_is_unset),
    get_mode answers None without composing, which is what its composition would return.
    Another Hydra version, or anything unexpected here, keeps Hydra's own get_mode."""
    try:
        import hydra
        from hydra._internal.hydra import Hydra

        original = Hydra.__dict__["get_mode"]
        known = hydra.__version__.startswith("1.3.")
    except (ImportError, KeyError, AttributeError):
        known = False
    if not known:
        yield
        return

    def get_mode(self, config_name, overrides):
        try:
            unset = mode_is_unset(self, config_name, list(overrides))
        except Exception:  # noqa: BLE001 - never worse than Hydra's own answer
            unset = False
        return None if unset else original(self, config_name, overrides)

    Hydra.get_mode = get_mode
    try:
        yield
    finally:
        Hydra.get_mode = original


_FROZEN_AT_EXIT: list[bool] = []

# Hydra's flags that show something instead of running a job: no provenance to collect.
_SHOW_FLAGS = {"-h", "--help", "--hydra-help", "--version", "-c", "--cfg", "-i", "--info"}
_SHOW_FLAGS |= {"-sc", "--shell-completion"}


def _freeze_at_exit() -> None:
    """At exit, move every object the process holds to the garbage collector's permanent
    generation: the interpreter's final collections then skip them, which takes a default
    run's teardown from ~0.5 s to ~0.1 s (2-core machine, docs/performance.md).
    Registered before JAX is imported, it runs after JAX's own atexit handlers (they shut its
    backends down), when every file of the run is written and closed (atomic writes) and
    every thread has been joined. Everything else of the teardown still happens: the other
    atexit handlers, flushing stdout and stderr, freeing what reference counting frees. Left
    undone: collecting reference cycles still alive at exit, i.e. finalizers of objects in
    such cycles, which Python does not promise to run at exit anyway."""
    if _FROZEN_AT_EXIT:
        return
    import atexit
    import gc

    def freeze():
        gc.disable()
        gc.freeze()

    atexit.register(freeze)
    _FROZEN_AT_EXIT.append(True)


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    _freeze_at_exit()  # before JAX registers its own atexit handlers (runner resume, plot too)
    if argv and argv[0] in SUBCOMMANDS:
        import importlib

        sys.exit(importlib.import_module(SUBCOMMANDS[argv[0]]).main(argv))
    if argv and argv[0] == "--completion":  # a shell completion script (runner.completion)
        from runner import completion

        sys.exit(completion.main(argv[1:]))
    debug = "--debug" in argv
    argv = sweep_fixed_keys([a for a in argv if a != "--debug"])
    report = not debug and not os.environ.get("HYDRA_FULL_ERROR")
    os.environ[MAIN_PROCESS_ENV] = process_tag()
    host_devices()
    # Make Hydra raise instead of printing its own multi-line report: we print one line, or
    # (--debug) let the traceback through.
    os.environ["HYDRA_FULL_ERROR"] = "1"
    sys.argv = [sys.argv[0] if sys.argv else "runner"] + argv
    if single_run(argv):
        pause_gc()  # until runner.task starts training (runner.runtime: 0.2-0.3 s saved)
    if not any(a.split("=", 1)[0] in _SHOW_FLAGS for a in argv):
        from runner import provenance

        provenance.prefetch()  # git runs while Hydra and JAX are imported (runner.task writes it)
    import hydra

    from runner.help import register_resolver
    from runner.task import task

    register_resolver(conf_dir())
    register_unique_dir()
    from runner import stop

    stop.install()
    entry = hydra.main(version_base="1.3", config_path=str(conf_dir()), config_name="config")(task)
    if report:
        sys.stderr = QuietHydraStderr(sys.stderr)
    try:
        with _mode_from_command_line():
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
    except BaseException as e:  # every error becomes one line
        if not report:
            raise
        print(f"runner: error: {describe(e, argv)}", file=sys.stderr)
        sys.exit(EXIT_ERROR)
    finally:
        resume_gc()  # where the run stopped before training (an error), or main was called
    if stop.requested():  # the run or sweep kept its work and said so: exit 130 / 143
        sys.exit(stop.exit_code())
