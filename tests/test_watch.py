"""`runner compare --watch` (runner.compare.watch) on run folders written by hand the way a sweep
leaves them (test_compare's helpers): the loop with an injected sleep and clock, what it re-reads
and redraws, when it ends, piped output, Ctrl-C (in-process and a real SIGINT) and bad input."""

from __future__ import annotations

import io
import os
import re
import selectors
import signal
import subprocess
import sys
import time

import pytest
from conftest import run_main
from test_compare import config, curve_rows, make_run, metrics_for

from runner import rundir
from runner.compare import watch
from runner.compare.main import _parsers, compare_table

ESC = "\x1b"
T0 = 1_800_000_000.0  # the injected clock's start (heartbeats are near it)


def running(epochs_run: int, beat: float, pid: bool = True) -> dict:
    """metrics.json of a run in progress, as runner.runjob.running_metrics writes it."""
    live = {"pid": os.getpid(), "host": rundir.hostname()} if pid else {}
    return {"status": "running", **live, "started": T0 - 60, "heartbeat": beat,
            "epochs": 5, "epochs_run": epochs_run}  # fmt: skip


@pytest.fixture
def sweep(tmp_path):
    """A sweep folder (trials.json) in flight: 0 completed, 1 running (2 of 5 epochs), 2 with a
    damaged metrics.json."""
    root = tmp_path / "multirun" / "2026-01-01" / "10-00-00"
    make_run(root / "0", config("adam", 0.01), ["optimizer.lr=0.01"], metrics_for(0.9, 5, 1.0),
             curve_rows(0.9, 5))  # fmt: skip
    make_run(root / "1", config("adam", 0.1), ["optimizer.lr=0.1"], running(2, T0),
             curve_rows(0.8, 2))  # fmt: skip
    bad = make_run(root / "2", config("sgd", 0.1), ["optimizer=sgd"], metrics_for(0.5, 5, 1.0))
    (bad / "metrics.json").write_text('{"status": "completed", "best_val')
    rundir.write_json(root / "trials.json", {"trials": []})
    rundir.write_json(root / "summary.json", {"state": "running", "trials": []})
    return root


def args_for(*argv):
    return _parsers()["compare"].parse_intermixed_args(["--watch", *argv])


class Script:
    """An injected sleep that makes the next change on disk at each call (and moves the
    clock on); running out of steps fails the test instead of watching forever."""

    def __init__(self, *steps, clock_step=1.0):
        self.steps, self.calls, self.now, self.clock_step = list(steps), [], T0, clock_step
        self.view = None

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.calls.append((seconds, self.view.shown if self.view else None))
        if not self.steps:
            raise AssertionError("the watch went on after its last step")
        self.now += self.clock_step
        self.steps.pop(0)()


def test_redraws_only_what_changed_and_ends_with_the_sweep(sweep, monkeypatch):
    """In a terminal (rich Live): a redraw when a run's files change, none when nothing did,
    no re-read of unchanged folders; summary.json's state ends it (exit 0) with the final
    table; a damaged run folder is shown unreadable and does not stop it."""
    run1 = sweep / "1"

    def epoch():
        rundir.write_curves(run1 / "curves.csv", curve_rows(0.8, 3), "acc")
        rundir.write_json(run1 / "metrics.json", running(3, T0 + 2))

    def finish():
        rundir.write_curves(run1 / "curves.csv", curve_rows(0.95, 5), "acc")
        rundir.write_json(run1 / "metrics.json", metrics_for(0.95, 5, 2.0))
        rundir.write_json(sweep / "summary.json", {"state": "finished", "trials": []})

    from rich.console import Console

    out = io.StringIO()
    view = watch.LiveView(Console(file=out, force_terminal=True, width=160))
    script = Script(lambda: None, epoch, lambda: None, finish)
    script.view = view
    folders = []

    class Spy(watch.Folders):
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            folders.append(self)

    monkeypatch.setattr(watch, "Folders", Spy)
    code = watch.watch(
        args_for(str(sweep), "--interval", "0.5", "--drop", "wall"),
        compare_table,
        view=view,
        sleep=script.sleep,
        clock=script.clock,
    )
    assert code == 0
    # (interval, frames drawn before each sleep): 1 at the start, none for the idle poll, one
    # more after the epoch, none for the second idle poll; the end draws once more
    assert script.calls == [(0.5, 1), (0.5, 1), (0.5, 2), (0.5, 2)]
    assert view.shown == 3
    # 3 folders read at the start, then only run 1: after its epoch and when it finished
    assert folders[0].reads == 3 + 1 + 1
    text = out.getvalue()
    assert ESC in text
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)
    final = plain[plain.rindex("sweep finished") :]
    assert final.startswith("sweep finished: 3 runs (2 completed, 1 unreadable)")
    rows = {m[1]: m[0] for m in re.finditer(r"^(\d+)  .*$", final, re.M)}
    assert set(rows) == {"0", "1", "2"}
    assert "completed" in rows["1"] and "0.9500" in rows["1"]
    assert "unreadable" in rows["2"] and "metrics.json: not valid JSON" in final
    assert "wall" not in final.splitlines()[1]  # --drop still applies


def test_piped_plain_lines_per_finished_run_and_final_table(sweep):
    """Piped: no control codes; the table, one stamped line per run that ends (not for an
    epoch), the final table and a closing line; --where and --sort keep working."""
    run1 = sweep / "1"
    run3 = sweep / "3"

    def epoch():
        rundir.write_curves(run1 / "curves.csv", curve_rows(0.8, 3), "acc")
        rundir.write_json(run1 / "metrics.json", running(3, T0 + 2))

    def new_trials():  # a vmapped group writes its trials when it has trained: already done
        make_run(run3, config("adam", 0.03), ["optimizer.lr=0.03"], metrics_for(0.7, 5, 1.0),
                 curve_rows(0.7, 5))  # fmt: skip
        rundir.write_json(run1 / "metrics.json", metrics_for(0.95, 5, 2.0))

    def finish():  # a run that ends with the sweep still gets its line
        diverged = {"status": "diverged", "metric": "acc", "epochs_run": 1, "best_val_loss": None,
                    "diverged_reason": "non-finite loss (nan)\nmore"}  # fmt: skip
        make_run(sweep / "4", config("sgd", 1.0), ["optimizer.lr=1.0"], diverged)
        pruned = {
            **metrics_for(0.6, 2, 1.0),
            "status": "pruned",
            "pruned_at": 2,
            "pruned_by": "sha",
        }
        make_run(sweep / "5", config("sgd", 0.5), ["optimizer.lr=0.5"], pruned, curve_rows(0.6, 2))
        rundir.write_json(sweep / "summary.json", {"state": "interrupted", "trials": []})

    out = io.StringIO()
    script = Script(epoch, new_trials, finish)
    view = watch.PipeView(out, script.clock)
    code = watch.watch(
        args_for(str(sweep), "--where", "status!=unreadable", "--sort", "best_val_loss"),
        compare_table,
        view=view,
        sleep=script.sleep,
        clock=script.clock,
    )
    assert code == 0
    text = out.getvalue()
    assert ESC not in text and "\r" not in text
    lines = text.splitlines()
    header = [i for i, line in enumerate(lines) if line.startswith("id")]
    assert len(header) == 2  # the table at the start and at the end, nothing per epoch
    first, news = lines[header[0] : header[1] - 4], lines[header[1] - 4 : header[1]]
    assert first[-1].startswith("2 of 3 runs (1 completed, 1 running)")  # the table at the start
    stamp, end = (time.strftime("%H:%M:%S", time.localtime(T0 + s)) for s in (2, 3))
    assert news == [
        f"{stamp}  1  completed  best_val_loss 0.0500, 5 epochs",
        f"{stamp}  3  completed  best_val_loss 0.3000, 5 epochs",
        f"{end}  4  diverged  1 epoch, non-finite loss (nan)",
        f"{end}  5  pruned  best_val_loss 0.4000, 2 epochs, by sha",
    ]
    final = lines[header[1] :]
    ids = [m[1] for m in re.finditer(r"^(\d+)  ", "\n".join(final), re.M)]
    assert ids == ["1", "0", "3", "5", "4"]  # --sort best_val_loss (ascending); --where drops 2
    assert final[-2].startswith("5 of 6 runs (3 completed, 1 pruned, 1 diverged); sorted by")
    assert (
        lines[-1] == "sweep interrupted: 6 runs (3 completed, 1 unreadable, 1 diverged, 1 pruned)"
    )


def test_a_sweep_without_trials_yet_is_waited_for(tmp_path):
    """A sweep folder with only its plan: a line saying so (not exit 1), then the table."""
    root = tmp_path / "sweep"
    root.mkdir()
    rundir.write_json(root / "trials.json", {"trials": []})

    def trial():
        make_run(root / "0", config(), [], running(1, T0), curve_rows(0.5, 1))

    def finish():
        rundir.write_json(root / "0" / "metrics.json", metrics_for(0.9, 5, 1.0))
        rundir.write_json(root / "summary.json", {"state": "finished", "trials": []})

    out = io.StringIO()
    script = Script(lambda: None, trial, finish)
    code = watch.watch(args_for(str(root)), compare_table, view=watch.PipeView(out, script.clock),
                       sleep=script.sleep, clock=script.clock)  # fmt: skip
    lines = out.getvalue().splitlines()
    assert code == 0 and lines[0] == f"no runs under {root} yet"
    assert lines[1].startswith("id  status") and lines[3].startswith("0   running")
    assert re.fullmatch(r"\d\d:\d\d:\d\d  0  completed  best_val_acc 0\.9000, 5 epochs", lines[5])
    assert lines[-1] == "sweep finished: 1 run (1 completed)"


def test_ctrl_c_in_process_and_stale_runs(sweep, capsys):
    """A folder of single runs has no end: it goes on until Ctrl-C (KeyboardInterrupt, here
    from the sleep), exit 130 without a traceback. A running run whose files stop changing is
    re-read after RECHECK_S and turns stale (no heartbeat for 30 min)."""
    single = sweep.parent / "single"
    make_run(single / "a", config(), [], running(1, T0, pid=False), curve_rows(0.5, 1))
    make_run(single / "b", config(lr=0.1), ["optimizer.lr=0.1"], metrics_for(0.9, 5, 1.0),
             curve_rows(0.9, 5))  # fmt: skip
    out = io.StringIO()

    def interrupt():
        raise KeyboardInterrupt

    steps = [lambda: None] * 3 + [interrupt]
    script = Script(*steps, clock_step=watch.RECHECK_S / 2 + rundir.STALE_AFTER_S / 2)
    view = watch.PipeView(out, script.clock)
    code = watch.watch(
        args_for(str(single)), compare_table, view=view, sleep=script.sleep, clock=script.clock
    )
    assert code == watch.INTERRUPTED == 130
    assert len(script.calls) == 4 and not script.steps
    text = out.getvalue()
    assert re.search(r"^\d\d:\d\d:\d\d  a  stale  best_val_acc 0\.5000, 1 epoch, no heartbeat "
                     r"for 0\.\d h$", text, re.M)  # fmt: skip
    assert "Traceback" not in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["--format", "csv"], "--watch: --format csv is not a table to keep up to date"),
        (["--format", "json"], "--watch: --format json is not a table"),
        (["--interval", "0"], "--interval: SECONDS must be more than 0 and at most 3600 (got 0)"),
        (["--diff"], "--watch: not with --diff"),
        (["--plot", "x.png"], "--watch: not with --plot"),
        (["--sort", "nokey"], "--sort: unknown key 'nokey'"),
    ],
)
def test_bad_input_one_line_exit_2(sweep, argv, needle):
    done = sweep.parent / "done"
    make_run(done / "a", config(), [], metrics_for(0.9, 5, 1.0), curve_rows(0.9, 5))
    code, out, err = run_main(["compare", str(done), "--watch", *argv])
    assert (code, out) == (2, "")
    assert err.startswith(f"runner: error: {needle}") and err.count("\n") == 1
    code, _, err = run_main(["compare", str(done), "--interval", "2"])
    assert code == 2 and err == "runner: error: --interval: only with --watch\n"


def test_real_ctrl_c_from_the_shell(sweep):
    """`runner compare --watch` in its own process group, piped: the table, then SIGINT to
    the group as a terminal's Ctrl-C sends it: exit 130, nothing on stderr, no escapes."""
    rundir.write_json(sweep / "summary.json", {"state": "running", "trials": []})
    p = subprocess.Popen(
        [sys.executable, "-m", "runner", "compare", str(sweep), "--watch", "--interval", "0.1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        sel = selectors.DefaultSelector()
        sel.register(p.stdout, selectors.EVENT_READ)
        assert sel.select(timeout=30), "no table within 30 s"
        first = os.read(p.stdout.fileno(), 65536).decode()
        os.killpg(p.pid, signal.SIGINT)
        rest, err = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 130, err
    assert first.startswith("id") and ESC not in first + rest.decode()
    assert err.decode() == ""
