"""The `runner` command: dispatches subcommands (before Hydra and JAX are imported), else lets
Hydra parse the command line and compose conf/ and runs runner.task.task. Errors become one line
on stderr and exit code 2 (a traceback only with --debug or HYDRA_FULL_ERROR=1). Nothing imports
this module: the shared pieces live in runner.shell (errors, argparse) and runner.runtime."""

from __future__ import annotations

import os
import sys

from runner.help import conf_dir
from runner.runtime import MAIN_PROCESS_ENV, host_devices, process_tag, register_unique_dir
from runner.shell import EXIT_ERROR, QuietHydraStderr, describe

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
    "plot": "draw a run's curves.png and diagnostics.png again (a sweep's trials too)",
    "resume": "continue a stopped run from its checkpoint, in its own folder",
    "gradcheck": "the notes' gradient check: analytic gradient against finite differences",
    "ensemble": "average the predictions of a sweep's top k trials and score the ensemble",
}


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in SUBCOMMANDS:
        import importlib

        sys.exit(importlib.import_module(SUBCOMMANDS[argv[0]]).main(argv))
    if argv and argv[0] == "--completion":  # a shell completion script (runner.completion)
        from runner import completion

        sys.exit(completion.main(argv[1:]))
    import hydra

    from runner.help import register_resolver
    from runner.task import task

    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    report = not debug and not os.environ.get("HYDRA_FULL_ERROR")
    os.environ[MAIN_PROCESS_ENV] = process_tag()
    host_devices()
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
        sys.stderr = QuietHydraStderr(sys.stderr)
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
    except BaseException as e:  # every error becomes one line
        if not report:
            raise
        print(f"runner: error: {describe(e, argv)}", file=sys.stderr)
        sys.exit(EXIT_ERROR)
    if stop.requested():  # the run or sweep kept its work and said so: exit 130 / 143
        sys.exit(stop.exit_code())
