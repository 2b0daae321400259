"""What the terminal shows: `runner --help` (subcommands, sweepers, launchers), the shell
completion script, tables that stay whole in narrow terminals and pipes, and sweep warnings that
name their job."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import TINY

RUNNER = Path(sys.executable).parent / "runner"


def test_help_lists_every_subcommand_sweeper_and_launcher():
    p = subprocess.run(
        [sys.executable, "-m", "runner", "--help"], capture_output=True, text=True, timeout=60
    )
    assert p.returncode == 0, p.stderr
    out = p.stdout
    from runner.cli import SUBCOMMANDS
    from runner.help import LAUNCHERS, SWEEPERS

    commands = out[out.index("== Commands ==") : out.index("== Config groups ==")]
    listed = re.findall(r"^  (\w+)  +\S", commands, re.M)
    assert listed == list(SUBCOMMANDS)
    plugins = out[out.index("== Sweepers and launchers") : out.index("== Examples ==")]
    sweepers, launchers = plugins.split("hydra/launcher (default: vmap)")
    assert "hydra/sweeper (default: runner)" in sweepers
    assert re.findall(r"^  (\w+)  +\S", sweepers, re.M) == list(SWEEPERS)
    assert re.findall(r"^  (\w+)  +\S", launchers, re.M) == list(LAUNCHERS)
    # optuna is an optional extra: its sweeper says how to get it exactly when it is missing
    import importlib.util

    tpe = next(ln for ln in sweepers.splitlines() if ln.startswith("  tpe "))
    assert ("not installed: pip install -e '.[optuna]'" in tpe) == (
        importlib.util.find_spec("optuna") is None
    )


def test_a_new_subcommand_is_listed_from_its_docstring():
    """A command added to SUBCOMMANDS without a line in SUBCOMMAND_HELP is described by its
    module's docstring, read without importing the module."""
    from runner import help

    commands, described = help.subcommands()
    assert "compare" in commands and set(described) <= set(commands)
    sys.modules.pop("runner.completion", None)
    text = help.commands_help(dict(commands, newcmd="runner.completion"), described)
    assert "runner.completion" not in sys.modules  # the docstring came without an import
    line = next(ln for ln in text.splitlines() if ln.startswith("  newcmd "))
    assert line.split(None, 1)[1] == "a shell completion script for the whole command."


def test_the_listed_plugins_are_the_ones_hydra_discovers():
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from runner.help import LAUNCHERS, SWEEPERS, conf_dir

    outer = GlobalHydra.instance().hydra
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
            loader = GlobalHydra.instance().config_loader()
            sweepers = set(loader.get_group_options("hydra/sweeper"))
            launchers = set(loader.get_group_options("hydra/launcher"))
    finally:
        GlobalHydra.instance().hydra = outer
    assert sweepers == set(SWEEPERS)
    assert launchers == set(LAUNCHERS)


def _complete(script: Path, line: str) -> list[str]:
    """COMPREPLY of the completion function for the command line `line` (cursor at its end)."""
    words = line.split(" ")
    words[0] = str(RUNNER)
    p = subprocess.run(
        [
            "bash",
            "-c",
            'source "$0"; COMP_WORDS=("$@"); COMP_CWORD=$((${#COMP_WORDS[@]} - 1)); '
            'COMP_LINE="${COMP_WORDS[*]}"; COMP_POINT=${#COMP_LINE}; _runner_completion; '
            'printf "%s\\n" "${COMPREPLY[@]}"',
            str(script),
            *words,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert p.returncode == 0, p.stderr
    return p.stdout.split()


def test_bash_completion_completes_subcommands_their_options_and_overrides(tmp_path):
    from runner import completion
    from runner.compare.main import _parsers

    script = tmp_path / "runner.bash"
    script.write_text(completion.script("bash"))
    assert _complete(script, "runner comp") == ["compare"]
    opts = _complete(script, "runner compare --")
    assert {"--where", "--sort"} <= set(opts)
    assert set(opts) == {o for o in _parsers()["compare"]._option_string_actions if "--" in o}
    assert _complete(script, "runner ensemble --to") == ["--top"]
    # anything else is Hydra's: groups, then the options of a group
    assert "optimizer=" in _complete(script, "runner optim")
    assert "optimizer=adam" in _complete(script, "runner optimizer=")


def test_every_subcommand_has_its_options_in_the_scripts():
    from runner import completion
    from runner.cli import SUBCOMMANDS

    options = completion.command_options()
    assert list(options) == list(SUBCOMMANDS)
    assert all("--help" in opts for opts in options.values())
    assert {"--top", "--metric", "--split"} <= set(options["ensemble"])
    zsh = completion.script("zsh")
    assert zsh.startswith("autoload -U +X bashcompinit && bashcompinit\n")
    fish = completion.script("fish")
    assert "complete -c runner -n '__fish_seen_subcommand_from compare' -l where" in fish


def test_completion_of_an_unknown_shell_is_one_line(capsys):
    from runner import completion

    assert completion.main(["tcsh"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "got tcsh; choose one of bash, zsh, fish" in err


LONG = (
    "train loss 7.3e+04 > 3 x initial loss 2.31 at epoch 3 (trainer.abort_factor=3): the "
    "learning rate is too high for this initialization"
)


def _summary():
    from runner.sweep import report

    rows = []
    for job in range(4):
        lr = 10.0 ** -(job // 2)
        trial = {
            "job": job,
            "overrides": [
                f"optimizer.lr={lr}",
                "regularization.weight_decay=1e-4",
                f"seed={job % 2}",
            ],
            "params": {"optimizer.lr": lr, "regularization.weight_decay": 1e-4, "seed": job % 2},
        }
        metrics = {
            "status": "diverged" if job == 0 else "completed",
            "monitor": "val_acc",
            "mode": "max",
            "best_val_acc": 0.5 + job / 10,
            "epochs_run": 3 if job == 0 else 20,
            "epochs": 20,
            "wall_time": 1.5,
            "diverged_reason": LONG if job == 0 else None,
        }
        rows.append(report.make_row(trial, None, metrics, status="completed", wall_time=1.5))
    rows.append(
        report.make_row(
            {"job": 4, "overrides": ["optimizer.lr=7"], "params": {"optimizer.lr": 7.0}},
            status="failed",
            error="optimizer.lr=7: " + "a long error message that says what went wrong " * 3,
        )
    )
    return report.summary(rows, sweep_dir="/tmp/sweep", kind="grid", state="finished")


@pytest.mark.parametrize("width", [60, 80])
def test_sweep_table_keeps_each_reason_whole_at_any_width(width):
    from rich.console import Console

    from runner.sweep import report

    summ = _summary()
    out = io.StringIO()
    console = Console(file=out, width=width, force_terminal=False)
    report.print_report(console, summ, "/tmp/sweep", None, False)
    lines = out.getvalue().splitlines()
    # the tables: a row per trial (and per seed group), each on one line that fits
    prose = ("job ", "5 trials:", "over seeds:", "not shown", "sweep directory:")
    table = [ln for ln in lines if ln.strip() and not ln.startswith(prose)]
    assert len(table) == 2 + 5 + 2 + 3  # header and rule, 5 trials; 3 seed groups
    assert all(len(ln) <= width for ln in table), table
    assert [ln.split()[1] for ln in table[2:7]] == ["3", "2", "1", "0", "4"]  # whole rows
    for reason in (LONG, summ["trials"][4]["error"].strip()):
        assert sum(reason in ln for ln in lines) == 1  # whole, on one line of its own
    assert "job 0 diverged: " + LONG in lines
    left_out = [ln for ln in lines if ln.startswith("not shown at this width: ")]
    assert bool(left_out) == (width == 60)


def _compare_table(file, monkeypatch, width):
    from runner.compare.render import Cell, Column, render_table

    monkeypatch.setenv("COLUMNS", str(width))
    columns = [
        Column("id", "id"),
        Column("status", "status"),
        Column("optimizer.lr", "param"),
        *[Column(m, "metric", better="max") for m in ("best_val_acc", "final_val_acc", "test_acc")],
        Column("wall_time", "metric", better="min"),
        Column("reason", "text", ("s", "reason")),
    ]
    rows = [
        [f"multirun/2026-12-02/16-27-12/{i}", "stale" if i == 1 else "completed", 10.0**-i]
        + [Cell(0.9 + i / 100)] * 3
        + [Cell(1.5)]
        + [LONG if i == 1 else None]
        for i in range(3)
    ]
    render_table(columns, rows, 4, caption="3 runs (2 completed, 1 stale)", file=file)
    return file.getvalue().splitlines()


@pytest.mark.parametrize("width", [60, 80])
def test_compare_table_in_a_narrow_terminal_fits_and_keeps_the_reason_whole(width, monkeypatch):
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    lines = [
        re.sub(r"\x1b\[[\d;]*m", "", ln) for ln in _compare_table(Terminal(), monkeypatch, width)
    ]
    body = lines[: 2 + 3]  # header, rule, three rows
    assert all(len(ln) <= width for ln in body), body
    assert [ln.split()[1] for ln in body[2:]] == ["completed", "stale", "completed"]
    assert sum(LONG in ln for ln in lines) == 1
    assert any(ln.endswith(": " + LONG) and "16-27-12/1" in ln for ln in lines)
    assert "not shown at this width" in lines[-1]


def test_compare_table_piped_keeps_one_line_per_row(monkeypatch):
    lines = _compare_table(io.StringIO(), monkeypatch, 60)
    assert len(lines) == 1 + 1 + 3 + 1  # header, rule, rows, caption
    assert lines[3].endswith(LONG) and lines[3].startswith("multirun/2026-12-02/16-27-12/1")


def test_warnings_of_a_basic_launcher_sweep_name_their_job(tmp_path):
    """hydra/launcher=basic trains the trials one by one in this process, each with its own
    display: every warning line starts with its job, whole at 60 columns."""
    p = subprocess.run(
        [sys.executable, "-m", "runner", "-m", "hydra/launcher=basic", *TINY]
        + ["data=iris", "trainer.diagnostics=false", "init=normal", "init.std=10", "seed=0,1"]
        + ["hydra.sweeper.plot=false", f"hydra.sweep.dir={tmp_path / 's'}"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env=dict(os.environ, COLUMNS="60"),
    )
    assert p.returncode == 0, p.stderr
    lines = (p.stdout + p.stderr).splitlines()
    # init.std=10 gives an initial loss far from ln 3: one warning per job, on one line each
    initial = [ln for ln in lines if "initial loss" in ln]
    assert len(initial) == 2 and all("check the initialization scale" in ln for ln in initial)
    warned = [ln for ln in lines if ln.startswith("warning:")]
    assert warned and all(re.match(r"warning: job [01]: \S", ln) for ln in warned)
    assert {ln.split(":")[1] for ln in warned} == {" job 0", " job 1"}
    assert {ln for ln in lines if "check the" in ln or "too low?" in ln} <= set(warned)
