"""The one shell every command shares: an error becomes one line on stderr naming the key, the
value and what is allowed (describe), exit code 2, and a traceback only with --debug; the
argparse parser of the subcommands reports a bad option the same way (OneLineParser,
subcommand). Imports nothing heavy: Hydra, OmegaConf and JAX only inside the functions that
need them."""

from __future__ import annotations

import argparse
import re
import sys

from runner.help import GROUP_ORDER, conf_dir

EXIT_ERROR = 2


class JobError(RuntimeError):
    """A detached job's error whose own exception would not survive pickling back to the sweep:
    its message is already the one line that describe() gives."""


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (conf_dir() / group).glob("*.yaml"))


# The groups that are config nodes (their keys are set as group.key); experiment and debug are
# presets of top-level keys, not nodes.
GROUPS = tuple(g for g in GROUP_ORDER if g not in ("experiment", "debug"))


def _typed_option(group: str, argv: list[str]) -> str | None:
    """The option of `group` as the command line types it (the last one), else None."""
    chosen = None
    for arg in argv:
        name, _, value = arg.lstrip("+~").partition("=")
        if name == group and value:
            chosen = value
    return chosen


def _chosen_option(group: str, argv: list[str]) -> str | None:
    """The option of `group` a command line selects (else the default in config.yaml)."""
    chosen = _typed_option(group, argv)
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


def _swept(option) -> list[str]:
    """The options of a group sweep as typed (sgd,momentum or choice(sgd,momentum)), else []."""
    if not isinstance(option, str):
        return []
    m = re.fullmatch(r"choice\((.*)\)", option.strip())
    inner = m.group(1) if m else option
    if not m and ("," not in inner or inner.startswith("[")):
        return []
    return [o.strip() for o in inner.split(",") if o.strip()]


# A value that reads as itself inside choice(...): no sweep (a,b), call, list, quotes, spaces or
# interpolation.
_PLAIN_VALUE = re.compile(r"[\w.+\-:/]+")


def sweep_fixed_keys(argv: list[str]) -> list[str]:
    """argv with each fixed key of a swept group that the group's default option lacks written
    as a one-value sweep: runner -m optimizer=sgd,momentum optimizer.momentum=0.9 runs
    optimizer.momentum=choice(0.9). Hydra sets a multirun's fixed keys on the default option
    (adam, which has no momentum) before any sweeper runs; a sweep of one value is set in the
    trials whose option has the key and left out of the others (runner.sweep.space.Conditions).
    Only in a multirun (-m), and only where a swept option has the key: for a key that none
    has, Hydra's error stays, and describe() names the options."""
    if not any(a in ("-m", "--multirun") for a in argv):
        return argv
    out = []
    for arg in argv:
        key, eq, value = arg.partition("=")
        group, dot, name = key.partition(".")
        if eq and dot and group in GROUPS and "." not in name and _PLAIN_VALUE.fullmatch(value):
            # only a command line sweeps a group: no YAML is read for the others (start-up)
            swept = _swept(_typed_option(group, argv))
            if (
                swept
                and name not in _option_keys(group, _chosen_option(group, []) or "")
                and any(name in _option_keys(group, o) for o in swept)
            ):
                arg = f"{key}=choice({value})"
        out.append(arg)
    return out


def _fixed_key_of_swept_group(key: str, group: str, name: str, swept: list, argv) -> str:
    """A fixed key under a swept group (runner -m optimizer=sgd,momentum optimizer.momentum=0.9):
    Hydra sets fixed keys on the default option before the sweep; a sweep of one value is left
    out of the trials whose option lacks it (runner.sweep.space.Conditions)."""
    value = next(
        (a.partition("=")[2] for a in argv if a.lstrip("+~").partition("=")[0] == key), "?"
    )
    have = [o for o in swept if name in _option_keys(group, o)]
    if not have:
        each = "; ".join(
            f"{group}={o} has {', '.join(sorted(_option_keys(group, o))) or 'none'}" for o in swept
        )
        return (
            f"{key}={value}: not a setting of any option swept ({group}={','.join(swept)}): {each}"
        )
    default = _chosen_option(group, [])
    return (
        f"{key}={value}: not a setting of {group}={default}, the default, on which a multirun sets "
        f"its fixed keys; write {key}='choice({value})' to set it in the trials of "
        f"{', '.join(f'{group}={o}' for o in have)} only"
    )


def _unknown_key(key: str, argv: list[str]) -> str:
    group, _, name = key.partition(".")
    if "." not in key:
        return f"{key}: no such setting; the top level has seed, name and the groups " + ", ".join(
            GROUPS
        )
    if group not in GROUPS or "." in name:
        return f"{key}: no such setting"
    option = _chosen_option(group, argv)
    swept = _swept(option)
    if swept:
        return _fixed_key_of_swept_group(key, group, name, swept, argv)
    if isinstance(option, str) and option.startswith("[") and option.endswith("]"):
        option = [o.strip() for o in option[1:-1].split(",") if o.strip()]
    if isinstance(option, list):  # several options at once (logger=[tensorboard,mlflow])
        chosen = [str(o) for o in option]
        option = ",".join(chosen)
        keys = sorted({k for o in chosen for k in _option_keys(group, o)})
    else:
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
    # "load": an unknown option in a list of several (logger=[tensorboard,wandb])
    m = re.search(r"Could not (?:find|load) '([\w/]+)/([^']+)'", text)
    if m:
        group, value = m.group(1), m.group(2)
        listed = re.search(r"Available options in '[^']+':\n((?:\t.*\n?)+)", text)
        opts = (
            [o.strip() for o in listed.group(1).splitlines() if o.strip()]
            if listed
            else _options(group)
        )
        return f"{group}={value}: unknown option; choose one of {', '.join(opts)}"
    m = re.search(r"Could not override '([\w.]+)'", text)
    if m:
        return _unknown_key(m.group(1), list(argv))
    m = re.match(r"Error parsing override '(.*)'\n", text)
    if m:  # the reason is on Hydra's next lines: "ValueError while evaluating 'f(..)': reason"
        override = m.group(1)
        reason = "; ".join(
            ln.strip()
            for ln in text[m.end() :].splitlines()
            if ln.strip() and not ln.startswith("See https://hydra.cc")
        )
        reason = re.sub(r"^\w+ while evaluating '.*?': ", "", reason)
        call = re.match(r"(\w+)\([^)]*\): ", reason)  # our functions name the call: once is enough
        if call and f"{call.group(1)}(" in override:
            reason = reason[call.end() :]
        return f"{override}: {reason or 'cannot parse this override'}"
    if isinstance(e, OSError) and e.filename:
        return (
            f"cannot write {e.filename!r}: {e.strerror}; set hydra.run.dir (or "
            f"hydra.sweep.dir) to a writable folder"
        )
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
        return f"the job raised {_last_line(trace) or 'an error'}" + (
            f" (log: {log.group(1)})" if log else ""
        )
    m = re.match(
        r"Job (\S+) \(task: \S+\) with path (\S+)\nhas not produced any output "
        r"\(state: ([^)\n]*)\)",
        text,
    )
    if m:  # UncompletedJobError: the job process died (crash, OOM, time limit, scancel)
        job, result, state = m.groups()
        stream = text.split("-" * 40 + "\n", 1)[1] if "-" * 40 + "\n" in text else ""
        last = _last_line(stream)
        log = re.sub(r"_result\.pkl$", "_log.err", result)
        return (
            f"job {job} ended without a result (state {state})"
            + (f": {last}" if last else "")
            + f" (log: {log})"
        )
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
    except Exception as e:  # every error becomes one line
        if debug:
            raise
        print(f"runner: error: {describe(e, argv)}", file=sys.stderr)
        return EXIT_ERROR


class QuietHydraStderr:
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
