"""A single run's PNGs drawn by a detached process after the run returned (trainer.plot_wait):
the same pictures as drawn in the foreground, announced by runner.plots.PENDING while they are
drawn, a failed draw recorded in PLOT_ERROR with no PNG, and wait_for_plots, which scripts and
tests wait with, never stuck on a marker whose process is gone."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import TINY, compose, run_inprocess, task_config

from runner import app, plots, rundir
from runner.compare import plotjob
from runner.config import ConfigError, validate

PNGS = (rundir.CURVES_PNG, rundir.DIAGNOSTICS_PNG)


@pytest.fixture(scope="module")
def result():
    _, r = run_inprocess()  # debug=tiny, as most tests: its programs are compiled already
    assert r.history and r.diagnostics
    return r


def _same(a, b, where):
    """Equal descriptions, numbers to 1e-5: curves.csv keeps 6 significant digits, so an axis
    limit computed from them may differ in the 6th (the data themselves are described to 6)."""
    if isinstance(a, dict) and isinstance(b, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            _same(a[k], b[k], f"{where}/{k}")
    elif isinstance(a, list) and isinstance(b, list):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _same(x, y, f"{where}/{i}")
    elif isinstance(a, float) or isinstance(b, float):
        assert a == pytest.approx(b, rel=1e-5, abs=1e-7), where
    else:
        assert a == b, where


def _leftovers(d):
    return sorted(f for f in os.listdir(d) if f.endswith(".tmp"))


def test_background_draw_matches_the_foreground_and_removes_its_marker(tmp_path, result):
    bg, fg = tmp_path / "bg", tmp_path / "fg"
    bg.mkdir()
    fg.mkdir()
    app.write_run(bg, result, title="lr=0.1", plot=True, background=True)
    # returned with the results safe and the PNGs announced, drawn by a process of its own
    assert rundir.read_metrics(bg).data["status"] == result.metrics["status"]
    pid, host = (bg / plots.PENDING).read_text().split()
    assert int(pid) != os.getpid() and os.getsid(int(pid)) == int(pid)  # a session of its own
    app.write_run(fg, result, title="lr=0.1", plot=True)  # meanwhile: drawn here, as before
    assert plots.wait_for_plots(bg, timeout=60) is None
    assert not (bg / plots.PENDING).exists() and not (bg / plots.PLOT_ERROR).exists()
    for name in PNGS:  # from the CSVs on disk, the picture drawn from memory
        _same(plots.read_description(bg / name), plots.read_description(fg / name), name)
    assert plots.read_description(bg / rundir.CURVES_PNG)["title"] == "lr=0.1"
    assert _leftovers(bg) == []


def test_plot_wait_true_draws_before_the_run_returns(tmp_path, result):
    from runner.task import task

    run_dir = tmp_path / "run"
    cfg = task_config([*TINY, "trainer.plot=true", "trainer.plot_wait=true"], run_dir, tmp_path)
    task(cfg, result=result)  # trained already: the writing and printing are left
    assert not (run_dir / plots.PENDING).exists()
    for name in PNGS:
        assert plots.read_description(run_dir / name)["panels"], name


@pytest.mark.parametrize(
    "plot_wait, in_sweep, loggers, later",
    [
        ("auto", False, (), True),  # a single run: after the prompt
        ("auto", True, (), False),  # a sweep's trial: before (one process per trial otherwise)
        ("auto", False, ("tensorboard",), True),
        ("auto", False, ("tensorboard", "mlflow"), False),  # MLflow uploads the PNGs
        (True, False, (), False),
        (False, True, ("mlflow",), True),  # an explicit choice wins
    ],
)
def test_when_runner_and_resume_draw_in_the_background(plot_wait, in_sweep, loggers, later):
    assert plots.in_background(plot_wait, in_sweep, loggers) is later


def test_bad_plot_wait_is_one_line_naming_the_allowed_values():
    with pytest.raises(ConfigError) as e:
        validate(compose(["trainer.plot_wait=later"]))
    assert str(e.value) == "trainer.plot_wait='later': expected true, false or auto"


def test_a_failed_background_draw_leaves_its_reason_and_no_png(tmp_path):
    (tmp_path / rundir.CURVES).write_text("epoch,foo\n1,2\n")  # nothing to plot
    rundir.write_json(tmp_path / rundir.METRICS, {"status": "completed", "metric": "acc"})
    plots.mark_pending(tmp_path)
    plots.draw_in_background(tmp_path, "t")
    error = plots.wait_for_plots(tmp_path, timeout=60)
    assert error.startswith("PNGs not drawn: ResultsError: ") and "nothing to plot" in error
    assert (tmp_path / plots.PLOT_ERROR).read_text() == error + "\n"  # one line
    assert not (tmp_path / plots.PENDING).exists()
    assert not any((tmp_path / name).exists() for name in PNGS)


def test_a_draw_failing_midway_leaves_no_half_png(tmp_path, result, monkeypatch):
    app.write_run(tmp_path, result, plot=False)
    plots.mark_pending(tmp_path)
    (tmp_path / plots.PLOT_ERROR).write_text("from an earlier draw\n")
    write = os.write

    def disk_full_in_diagnostics_png(fd, data):  # half of diagnostics.png, then no room
        if ".diagnostics.png." in os.readlink(f"/proc/self/fd/{fd}"):
            write(fd, bytes(data[: len(data) // 2]))
            raise OSError(28, "No space left on device")
        return write(fd, data)

    monkeypatch.setattr(os, "write", disk_full_in_diagnostics_png)
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    handlers = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGALRM)
    try:
        assert plotjob.main([str(tmp_path), "t"]) == 1
    finally:
        signal.signal(signal.SIGTERM, handlers[0])
        signal.signal(signal.SIGALRM, handlers[1])
        monkeypatch.undo()
    target = tmp_path / rundir.DIAGNOSTICS_PNG
    assert plots.wait_for_plots(tmp_path, timeout=1) == (
        f"PNGs not drawn: OSError: [Errno 28] No space left on device: '{target}'"
    )
    assert plots.read_description(tmp_path / rundir.CURVES_PNG)["title"] == "t"  # whole
    assert not target.exists() and _leftovers(tmp_path) == []  # no half file, no temp file
    assert not (tmp_path / plots.PENDING).exists()


def test_wait_for_plots_returns_on_a_stale_marker_and_times_out_on_a_live_one(tmp_path):
    assert plots.wait_for_plots(tmp_path, timeout=0) is None  # nothing pending, nothing failed
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    (tmp_path / plots.PENDING).write_text(f"{gone.pid} {rundir.hostname()}\n")
    t = time.monotonic()
    assert "ended without finishing" in plots.wait_for_plots(tmp_path, timeout=30)
    assert time.monotonic() - t < 5
    # a process on another host, or a pid reused: stale once older than the child may live
    (tmp_path / plots.PENDING).write_text("1 elsewhere\n")
    old = time.time() - plots.DRAW_TIMEOUT - 61
    os.utime(tmp_path / plots.PENDING, (old, old))
    assert "ended without finishing" in plots.wait_for_plots(tmp_path, timeout=30)
    plots.mark_pending(tmp_path)  # this test's own process: alive
    with pytest.raises(TimeoutError, match=f"still being drawn after 0.2 s \\(pid {os.getpid()}"):
        plots.wait_for_plots(tmp_path, timeout=0.2)


def test_the_drawing_process_imports_no_jax():
    code = "import runner.compare.plotjob, sys; print(json.dumps(sorted(sys.modules)))"
    p = subprocess.run(
        [sys.executable, "-c", "import json; " + code], capture_output=True, text=True, timeout=60
    )
    assert p.returncode == 0, p.stderr
    loaded = json.loads(p.stdout)
    assert "runner.compare.main" in loaded and not any(m.split(".")[0] == "jax" for m in loaded)
