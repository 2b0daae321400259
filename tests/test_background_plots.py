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
    code = "import runner.compare.plotjob, runner.sweep.plotjob, sys; "
    code += "print(json.dumps(sorted(sys.modules)))"
    p = subprocess.run(
        [sys.executable, "-c", "import json; " + code], capture_output=True, text=True, timeout=60
    )
    assert p.returncode == 0, p.stderr
    loaded = json.loads(p.stdout)
    assert "runner.compare.main" in loaded and "runner.sweep.report" in loaded
    assert not any(m.split(".")[0] == "jax" for m in loaded)  # the sweep's child neither


# ---------------------------------------------------------------------------------------------
# a sweep's topk.png and search.png (hydra.sweeper.plot_wait), on sweep folders written by hand
# as tests/test_search_views.py writes them, with curves: nothing trains

SWEEP_PNGS = ("topk.png", "search.png")


def _sweep_folder(d):
    from test_search_views import LR, WD, lr_driven, make_sweep

    summ = make_sweep(d, [LR, WD], lr_driven(8))
    for r in summ["trials"]:  # curves for topk.png: falling towards the trial's objective
        obj = r["objective"]
        rows = [
            {
                "epoch": e,
                "train_loss": 1.5 / e,
                "val_loss": 1.6 / e,
                "train_acc": obj - 0.02 * (4 - e),
                "val_acc": obj - 0.03 * (4 - e),
                "lr": 0.01,
            }
            for e in (1, 2, 3)
        ]
        rundir.write_curves(d / str(r["job"]) / rundir.CURVES, rows, "acc")
    return summ


def _finish(d, summ, capsys, **opts):
    """The end of a sweep (Sweep._finish) on the folder `d`: the closing report's files line."""
    from runner.sweep.run import Sweep

    s = Sweep({"kind": "random", **opts}, [], config=None, hydra_context=None, launcher=None)
    s.sweep_dir = d
    s._finish(summ, None)
    line = [ln for ln in capsys.readouterr().out.splitlines() if "sweep directory:" in ln]
    assert len(line) == 1
    return line[0]


def test_a_sweeps_pngs_drawn_in_the_background_match_plot_wait_true(tmp_path, capsys):
    bg, fg = tmp_path / "bg", tmp_path / "fg"
    summ_bg, summ_fg = _sweep_folder(bg), _sweep_folder(fg)
    plots.mark_pending(bg)  # as Sweep._execute does before summary.json's final write
    line = _finish(bg, summ_bg, capsys)  # plot_wait=auto: after the prompt
    assert line.endswith("best.yaml; topk.png, search.png: drawing in the background)")
    pid, _ = (bg / plots.PENDING).read_text().split()
    assert int(pid) != os.getpid() and os.getsid(int(pid)) == int(pid)  # a session of its own
    # meanwhile, plot_wait=true: both drawn before _finish returns, no marker, listed as files
    line = _finish(fg, summ_fg, capsys, plot_wait=True)
    assert line.endswith("best.yaml, topk.png, search.png)")
    assert not (fg / plots.PENDING).exists()
    fg_desc = {name: plots.read_description(fg / name) for name in SWEEP_PNGS}
    assert all(d["panels"] for d in fg_desc.values())
    fg_desc["search.png"]["title"] = fg_desc["search.png"]["title"].replace(str(fg), str(bg))
    assert plots.wait_for_plots(bg, timeout=60) is None
    assert not (bg / plots.PENDING).exists() and not (bg / plots.PLOT_ERROR).exists()
    for name in SWEEP_PNGS:  # from the folder's files, the pictures the foreground draws
        _same(plots.read_description(bg / name), fg_desc[name], name)
    assert _leftovers(bg) == []


def test_a_failed_sweep_draw_leaves_its_reason_and_no_png(tmp_path, monkeypatch):
    from runner.sweep import plotjob as sweepjob

    def run_child(d, *names):
        plots.mark_pending(d)
        monkeypatch.setattr(sys, "stdin", io.StringIO(""))
        handlers = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGALRM)
        try:
            return sweepjob.main([str(d), "5", *names])
        finally:
            signal.signal(signal.SIGTERM, handlers[0])
            signal.signal(signal.SIGALRM, handlers[1])

    # summary.json damaged: nothing drawn, the reason in PLOT_ERROR (one line), marker gone
    d = tmp_path / "damaged"
    _sweep_folder(d)
    (d / "summary.json").write_text('{"trials": [')
    assert run_child(d, *SWEEP_PNGS) == 1
    error = plots.wait_for_plots(d, timeout=1)
    assert error.startswith("PNGs not drawn: JSONDecodeError: ")
    assert (d / plots.PLOT_ERROR).read_text() == error + "\n"
    assert not (d / plots.PENDING).exists()
    assert not any((d / name).exists() for name in SWEEP_PNGS) and _leftovers(d) == []
    # one PNG with nothing to draw (no trial has curves): said so; the other drawn all the same
    d = tmp_path / "no-curves"
    summ = _sweep_folder(d)
    for r in summ["trials"]:
        (d / str(r["job"]) / rundir.CURVES).unlink()
    assert run_child(d, *SWEEP_PNGS) == 1
    assert plots.wait_for_plots(d, timeout=1) == "topk.png not drawn: no completed trial has curves"
    assert not (d / "topk.png").exists() and plots.read_description(d / "search.png")["panels"]
    assert not (d / plots.PENDING).exists()
    # stopped (DRAW_TIMEOUT's alarm, SIGTERM) while drawing topk.png: nothing more is drawn
    d = tmp_path / "stopped"
    _sweep_folder(d)

    def timed_out(*args):
        raise plots.Stopped(f"timed out after {plots.DRAW_TIMEOUT} s")

    monkeypatch.setattr(sweepjob, "plot_topk", timed_out)
    assert run_child(d, *SWEEP_PNGS) == 1
    assert plots.wait_for_plots(d, timeout=1) == (
        f"topk.png and search.png not drawn: Stopped: timed out after {plots.DRAW_TIMEOUT} s"
    )
    assert not any((d / name).exists() for name in SWEEP_PNGS)


def test_bad_sweeper_plot_wait_is_one_line_naming_the_allowed_values(tmp_path):
    from runner.sweep.run import Sweep, SweepError

    with pytest.raises(SweepError) as e:  # refused first thing: no sweep folder, no trial
        Sweep({"plot_wait": "later"}, [], config=None, hydra_context=None, launcher=None).run()
    assert str(e.value) == "hydra.sweeper.plot_wait=later: expected true, false or auto"
    # the option composes (the plugin's GridConf has it), a boolean as a boolean
    cfg = compose(["hydra.sweeper.plot_wait=true"], return_hydra_config=True)
    assert cfg.hydra.sweeper.plot_wait is True
