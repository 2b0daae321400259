"""runner.rundir, the one owner of the run folder's format, and its readers: damaged files (a
non-UTF-8 byte, truncated JSON, bad YAML, a corrupt npz) give a status `unreadable` or one line
naming the file, never a traceback; stale detection from pid, host and heartbeat; the one alias
table and direction rule; atomic writes that name the target file when they fail. Run folders are
written by hand (tests/test_compare.py's helpers), nothing is trained."""

from __future__ import annotations

import errno
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_compare import config, curve_rows, make_run, metrics_for, run_main

from runner import rundir

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def three(tmp_path):
    """Three completed runs 0, 1, 2 (best_val_acc 0.8, 0.9, 0.7): run 1 is the best."""
    root = tmp_path / "sweep"
    for i, acc in enumerate((0.8, 0.9, 0.7)):
        make_run(
            root / str(i),
            config("adam", 0.01, i),
            [f"seed={i}"],
            metrics_for(acc, 5, 1.0),
            curve_rows(acc, 5),
        )
    return root


def poke(path: Path, at: int, byte: bytes = b"\xff") -> None:
    data = path.read_bytes()
    path.write_bytes(data[:at] + byte + data[at + 1 :])


def compare_json(root):
    code, out, err = run_main(["compare", str(root), "--format", "json"])
    return code, {r["id"]: r for r in json.loads(out or "[]")}, err


# ---------------------------------------------------------------------------------------------
# a damaged file in one run of a sweep


def damage(root: Path, how: str) -> str:
    """Damage run 1 (the best one); the reason its row must give."""
    run = root / "1"
    if how == "metrics-utf8":
        poke(run / "metrics.json", 17)
        return "metrics.json: not UTF-8 (byte 0xff at 17)"
    if how == "curves-utf8":
        poke(run / "curves.csv", 30)
        return "curves.csv: not UTF-8 (byte 0xff at 30)"
    text = (run / "metrics.json").read_text()
    (run / "metrics.json").write_text(text[: len(text) // 2])
    return "metrics.json: not valid JSON ("


@pytest.mark.parametrize("how", ["metrics-utf8", "curves-utf8", "metrics-truncated"])
def test_compare_and_best_list_a_damaged_run_as_unreadable(three, how):
    reason = damage(three, how)
    code, rows, err = compare_json(three)
    assert code == 0, err
    assert set(rows) == {"0", "1", "2"}
    assert rows["1"]["status"] == "unreadable" and reason in rows["1"]["reason"]
    for good, acc in (("0", 0.8), ("2", 0.7)):
        assert rows[good]["status"] == "completed" and rows[good]["reason"] is None
        assert rows[good]["best_val_acc"] == pytest.approx(acc)
        assert rows[good]["test_acc"] == pytest.approx(acc - 0.02)
    assert f"runner: warning: 1: unreadable: {reason}" in err and "Traceback" not in err
    # the terminal table too: the good rows as usual, the bad one with its reason
    code, out, err = run_main(["compare", str(three)])
    assert code == 0, err
    line = next(x for x in out.splitlines() if x.startswith("1 "))
    assert "unreadable" in line and reason in line
    assert "0.7800" in next(x for x in out.splitlines() if x.startswith("0 "))
    assert "3 runs (2 completed, 1 unreadable)" in out
    # runner best picks among the readable completed runs (run 1 would have been the best)
    code, out, err = run_main(["best", str(three)])
    assert code == 0, err
    assert out.splitlines() == [str(three / "0"), "seed=0"]
    assert "over 2 completed runs" in err


def test_the_command_itself_exits_zero_with_a_damaged_run(three):
    damage(three, "metrics-utf8")
    for cmd in (["compare"], ["best"]):
        p = subprocess.run(
            [sys.executable, "-m", "runner", *cmd, str(three)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert p.returncode == 0, p.stderr
        assert "Traceback" not in p.stderr and "not UTF-8 (byte 0xff at 17)" in p.stderr


def test_damaged_config_and_interrupted_runs(three):
    (three / "2" / ".hydra" / "config.yaml").write_bytes(b"data: {name: \xffiris}\n")
    interrupted = dict(
        metrics_for(0.6, 5, 1.0),
        status="interrupted",
        interrupted_by="SIGTERM",
        checkpoint="checkpoint.npz",
        epochs_run=3,
    )
    make_run(three / "3", config("adam", 0.01, 3), ["seed=3"], interrupted, curve_rows(0.6, 3))
    code, rows, err = compare_json(three)
    assert code == 0, err
    assert rows["2"]["status"] == "unreadable"
    assert rows["2"]["reason"].startswith(".hydra/config.yaml: not UTF-8 (byte 0xff at")
    assert rows["3"]["status"] == "interrupted" and rows["3"]["epochs_run"] == 3
    assert rows["3"]["reason"] is None and "3:" not in err
    code, out, err = run_main(
        ["compare", str(three), "--where", "status=interrupted", "--format", "csv"]
    )
    assert code == 0 and out.splitlines()[1].startswith("3,interrupted")


# ---------------------------------------------------------------------------------------------
# runner plot


def test_plot_a_run_whose_curves_lack_a_column(three, tmp_path):
    run = three / "0"
    rows = [{k: v for k, v in r.items() if k != "train_loss"} for r in curve_rows(0.8, 5)]
    rundir.write_rows(run / "curves.csv", rows, list(rows[0]))
    code, out, err = run_main(["plot", str(run), "--out", str(tmp_path / "c.png")])
    assert code == 0, err
    assert (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"
    assert "curves.csv has no train_loss column" in err and "Traceback" not in err
    # nothing that can be plotted: one line naming the file
    rundir.write_rows(run / "curves.csv", [{"epoch": 1, "lr": 0.1}], ["epoch", "lr"])
    code, out, err = run_main(["plot", str(run)])
    assert code == 2 and err.count("\n") == 1
    assert err.startswith(f"runner: error: {run / 'curves.csv'}: nothing to plot")


def test_plot_a_run_whose_curves_are_not_utf8(three):
    poke(three / "0" / "curves.csv", 30)
    code, out, err = run_main(["plot", str(three / "0")])
    assert code == 2 and out == ""
    assert err == f"runner: error: {three / '0' / 'curves.csv'}: not UTF-8 (byte 0xff at 30)\n"


def test_missing_paths_are_named_as_given(three, tmp_path):
    """No outputs/ here: the message names the path given, not outputs."""
    for args in (
        ["plot", "/abs/nope"],
        ["compare", "--diff", str(three / "0"), "/abs/nope"],
        ["plot", "rel/nope"],
    ):
        code, out, err = run_main(args, cwd=tmp_path)
        assert code == 2 and err.count("\n") == 1, err
        name = args[-1]
        assert err.startswith(f"runner: error: {name}: no such file or directory"), err
        assert "outputs:" not in err


def test_plot_into_a_missing_folder_names_the_file(three):
    code, out, err = run_main(
        ["compare", str(three), "--plot", "/nonexistent/dir/x.png", "--format", "csv"]
    )
    assert code == 2 and err.count("\n") == 1
    assert err == (
        "runner: error: cannot write /nonexistent/dir/x.png: the folder "
        "/nonexistent/dir does not exist\n"
    )


# ---------------------------------------------------------------------------------------------
# status: running, stale


def dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def live(**fields) -> dict:
    """metrics.json of a run this process started a moment after it began."""
    now = time.time()
    born = rundir.process_started(os.getpid())
    return {
        "status": "running",
        "pid": os.getpid(),
        "host": rundir.hostname(),
        "heartbeat": now,
        "started": born + 1,
        "epochs_run": 2,
        **fields,
    }


def test_stale_detection():
    now = time.time()
    assert rundir.status_of(live(), now) == "running"
    dead = live(pid=dead_pid())
    assert rundir.status_of(dead, now) == "stale"
    assert (
        rundir.stale_reason(dead, now) == f"its process {dead['pid']} on "
        f"{rundir.hostname()} is gone"
    )
    # a pid that a newer process reuses: that process started after the run did
    reused = live(started=rundir.process_started(os.getpid()) - 3600)
    assert (
        rundir.stale_reason(reused, now) == f"its process {os.getpid()} on "
        f"{rundir.hostname()} is gone (the pid now belongs to another)"
    )
    old = live(heartbeat=now - 2 * 3600)
    assert rundir.status_of(old, now) == "stale"
    assert rundir.stale_reason(old, now) == "no heartbeat for 2.0 h"
    # another machine's run: its pid means nothing here; the heartbeat decides
    assert rundir.status_of(live(host="elsewhere", pid=dead_pid()), now) == "running"
    assert rundir.status_of(live(host="elsewhere", heartbeat=now - 3600), now) == "stale"
    # older runs (no pid/host/heartbeat): the files' modification time
    assert rundir.status_of({"status": "running"}, now, mtime=now - 60) == "running"
    assert rundir.status_of({"status": "running"}, now, mtime=now - 3 * 3600) == "stale"
    # nonsense fields do not raise
    assert rundir.status_of(live(pid="x", heartbeat="y", host=3), now) == "running"
    assert rundir.status_of(live(pid=-1), now) == "running"
    for status in rundir.FINAL:
        assert rundir.status_of(live(status=status, pid=dead_pid()), now) == status
    assert rundir.status_of(None) == rundir.status_of({"status": "weird"}) == "incomplete"


def test_compare_shows_stale_runs(three):
    now = time.time()
    for i, m in ((3, live()), (4, live(pid=dead_pid())), (5, live(heartbeat=now - 7200))):
        make_run(three / str(i), config("adam", 0.01, i), [f"seed={i}"], m, curve_rows(0.5, 2))
    code, rows, err = compare_json(three)
    assert code == 0, err
    assert rows["3"]["status"] == "running" and rows["3"]["reason"] is None
    assert rows["4"]["status"] == "stale" and "is gone" in rows["4"]["reason"]
    assert rows["5"]["status"] == "stale" and rows["5"]["reason"] == "no heartbeat for 2.0 h"
    assert rows["4"]["epochs_run"] == 2  # the epochs so far, from curves.csv
    assert "pid" not in rows["3"] and "heartbeat" not in rows["3"]  # bookkeeping, not metrics
    assert "5: stale: says running, but no heartbeat for 2.0 h" in err
    code, out, err = run_main(["best", str(three)])  # stale runs are not completed ones
    assert code == 0 and out.splitlines()[0] == str(three / "1")


def test_sweep_rows_use_the_same_status(three, tmp_path):
    from runner.sweep.report import make_row, read_metrics

    trial = {"job": 4, "overrides": ["seed=4"], "params": {"seed": 4}}
    make_run(tmp_path / "4", config(), ["seed=4"], live(pid=dead_pid()))
    assert make_row(trial, tmp_path / "4", read_metrics(tmp_path / "4"))["status"] == "stale"
    poke(three / "0" / "metrics.json", 17)
    assert read_metrics(three / "0") is None


def test_the_lifecycle_is_one_table():
    assert rundir.FINAL == ("completed", "diverged", "failed", "interrupted", "pruned")
    assert (
        set(rundir.STATUSES)
        == set(rundir.LIFECYCLE)
        == {
            "running",
            "completed",
            "diverged",
            "failed",
            "interrupted",
            "pruned",
            "stale",
            "unreadable",
            "incomplete",
        }
    )
    assert set(rundir.WRITTEN) == set(rundir.FINAL) | {"running"}
    assert all(isinstance(meaning, str) and meaning for _, _, meaning in rundir.LIFECYCLE.values())


# ---------------------------------------------------------------------------------------------
# reading each file


def test_reads_give_data_or_a_reason(tmp_path):
    run = tmp_path / "r"
    make_run(run, config(), ["seed=1"], metrics_for(0.5, 2, 1.0), curve_rows(0.5, 2))
    got = rundir.read_metrics(run)
    assert got.ok and got.data["best_val_acc"] == 0.5
    assert rundir.read_config(run).data["optimizer.lr"] == 0.01
    assert rundir.read_config(run, flat=False).data["optimizer"]["name"] == "adam"
    assert rundir.read_overrides(run).data == ["seed=1"]
    curves = rundir.read_curves(run).data
    assert curves.fields == rundir.curve_fields("acc") and len(curves.rows) == 2
    assert rundir.read_diagnostics(run).missing
    cases = {
        "metrics.json": [
            (b"", "metrics.json: empty"),
            (b"[1, 2]", "metrics.json: not a JSON object (a list)"),
            (b'{"status": 3}', "metrics.json: status is 3, not a string"),
            (
                b'{"status": "compl',
                "metrics.json: not valid JSON (Unterminated "
                "string starting at: line 1 column 12; "
                "truncated?)",
            ),
            (
                b'{"a": 1,, "b"}',
                "metrics.json: not valid JSON (Expecting "
                "property name enclosed in double quotes: line 1 "
                "column 9)",
            ),
            (b"[" * 100000, "metrics.json: not valid JSON"),
        ],
        ".hydra/config.yaml": [
            (b"data: [unclosed\n", ".hydra/config.yaml: not valid YAML ("),
            (b"- 1\n", ".hydra/config.yaml: not a mapping of settings"),
        ],
        ".hydra/overrides.yaml": [(b"a: 1\n", ".hydra/overrides.yaml: not a list")],
        "diagnostics.csv": [
            (b"x,y\n1,2\n", "diagnostics.csv: no layer and epoch columns"),
            (b"layer,epoch\n\xfe", "diagnostics.csv: not UTF-8 (byte 0xfe at 12)"),
        ],
    }
    readers = {
        "metrics.json": rundir.read_metrics,
        ".hydra/config.yaml": rundir.read_config,
        ".hydra/overrides.yaml": rundir.read_overrides,
        "diagnostics.csv": rundir.read_diagnostics,
    }
    for name, items in cases.items():
        for content, reason in items:
            (run / name).write_bytes(content)
            got = readers[name](run)
            assert not got.ok and got.error.startswith(reason), (name, content[:20], got)
    (run / "curves.csv").unlink()  # a folder where a file should be
    (run / "curves.csv").mkdir()
    assert rundir.read_curves(run).error == "curves.csv: is a folder, not a file"
    # curves: a malformed line is left out with a note, odd cells are NaN
    (run / "curves.csv").rmdir()
    (run / "curves.csv").write_text('epoch,val_acc\n1,0.5\n2,x\n3\n"4,0.7\n')
    got = rundir.read_curves(run)
    assert got.ok and [r["epoch"] for r in got.data.rows] == [1.0, 2.0]
    assert got.data.rows[1]["val_acc"] != got.data.rows[1]["val_acc"]  # NaN
    assert got.data.notes == (
        "curves.csv: 2 malformed lines left out (cells differ from the header's 2)",
    )


def test_load_best(tmp_path):
    import numpy as np

    from runner.checkpoint import save_params

    run = tmp_path / "r"
    run.mkdir()
    with pytest.raises(rundir.RunDirError, match=f"^{run / 'best_params.npz'}: no such file"):
        rundir.load_best(run)
    assert not rundir.has_best(run)
    save_params(
        run / "best_params.npz",
        {"layer0": {"dense": {"kernel": np.ones((2, 3))}}},
        {"layer0": {"bn": {"mean": np.zeros(3)}}},
    )
    params, stats = rundir.load_best(run)
    assert params["layer0"]["dense"]["kernel"].shape == (2, 3)
    assert stats["layer0"]["bn"]["mean"].tolist() == [0, 0, 0]
    poke(run / "best_params.npz", 0, b"X")
    with pytest.raises(rundir.RunDirError) as e:
        rundir.load_best(run)
    assert str(e.value).startswith(f"{run / 'best_params.npz'}: damaged, not a parameter file")
    assert "\n" not in str(e.value)


def test_gradcheck_run_with_a_damaged_config_names_the_file(tmp_path, capsys):
    from runner.tools.gradcheck import main

    run = tmp_path / "r"
    make_run(run, config(), [], metrics_for(0.5, 2, 1.0))
    poke(run / ".hydra" / "config.yaml", 3)
    assert main(["gradcheck", "--run", str(run)]) == 2
    err = capsys.readouterr().err
    assert err == (f"runner: error: --run {run}: .hydra/config.yaml: not UTF-8 (byte 0xff at 3)\n")


def test_lessons_reads_through_rundir(three, capsys, monkeypatch):
    spec = importlib.util.spec_from_file_location("lessons", ROOT / "scripts" / "lessons.py")
    lessons = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "lessons", lessons)  # its dataclasses look themselves up
    spec.loader.exec_module(lessons)
    poke(three / "1" / "curves.csv", 30)
    jobs = lessons.load_sweep(three)
    assert [j.path.name for j in jobs] == ["0", "2"]
    assert jobs[0].m("best_val_acc") == 0.8 and jobs[0].o("optimizer.name") == "adam"
    assert jobs[0].curve("val_acc")[-1] == pytest.approx(0.8)
    err = capsys.readouterr().err
    assert f"{three / '1'}: left out, curves.csv: not UTF-8 (byte 0xff at 30)" in err
    # ranking follows the one direction rule: higher val acc first
    assert [j.path.name for j in sorted(jobs, key=lessons._rank_key)] == ["0", "2"]


# ---------------------------------------------------------------------------------------------
# metric names and direction: one table, one rule


def test_one_alias_table_and_one_direction_rule():
    from runner.compare import results
    from runner.tools import ensemble

    assert rundir.canonical("val_acc") == "best_val_acc"
    assert rundir.canonical("loss") == "best_val_loss" and rundir.canonical("time") == "wall_time"
    for name in ("best_val_acc", "test_acc", "val_acc", "acc", "final_train_acc"):
        assert rundir.higher_is_better(name) is True and rundir.better(name) == "max"
    for name in (
        "best_val_loss",
        "loss",
        "test_rmse",
        "rmse",
        "wall_time",
        "time",
        "compile_time",
        "final_train_loss",
    ):
        assert rundir.higher_is_better(name) is False and rundir.better(name) == "min"
    for name in ("best_epoch", "epochs_run", "params", "cv_mean", "budget"):
        assert rundir.higher_is_better(name) is None
    assert rundir.canonical("budget") == "epochs_run"  # a pruned trial's epochs: --sort budget
    # no second table or rule left behind
    assert not hasattr(results, "METRIC_ALIASES") and not hasattr(ensemble, "ALIASES")
    assert results.ALIASES is rundir.ALIASES
    # the core names a head's metric; which way it is better is rundir's rule alone
    from runner.core import losses

    assert not hasattr(losses, "higher_is_better")
    assert rundir.higher_is_better(losses.metric_name("softmax")) is True
    assert rundir.higher_is_better(losses.metric_name("linear")) is False


def test_compare_sorts_and_marks_best_by_the_rule(three, monkeypatch):
    from runner.compare.results import Keys, load_runs
    from runner.compare.table import choose_columns, default_sort

    class Args:
        keep, drop, all = [], [], False

    runs = load_runs([three])
    keys = Keys(runs)
    cols = choose_columns(Args, keys, runs, [], default_sort(runs, keys), "table")[0]
    marks = {c.name: c.better for c in cols if c.kind == "metric"}
    assert marks == {name: rundir.better(name) for name in marks}
    assert marks["best_val_acc"] == "max" and marks["wall_time"] == "min"
    assert marks["best_epoch"] is None
    # compare asks the rule: turn it around and the default order of --sort flips
    code, out, _ = run_main(["compare", str(three), "--sort", "test_acc", "--format", "csv"])
    assert [r.split(",")[0] for r in out.splitlines()[1:]] == ["1", "0", "2"]
    monkeypatch.setattr(rundir, "higher_is_better", lambda name: False)
    code, out, _ = run_main(["compare", str(three), "--sort", "test_acc", "--format", "csv"])
    assert [r.split(",")[0] for r in out.splitlines()[1:]] == ["2", "0", "1"]


# ---------------------------------------------------------------------------------------------
# writing


def test_a_failed_write_names_the_target_file(tmp_path, monkeypatch):
    from runner.shell import describe

    target = tmp_path / "metrics.json"
    target.write_text('{"status": "running"}\n')

    def full(fd, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "write", full)
    with pytest.raises(OSError) as e:
        rundir.write_json(target, {"status": "completed"})
    monkeypatch.undo()
    assert e.value.errno == errno.ENOSPC and e.value.filename == str(target)
    line = describe(e.value)
    assert line.startswith(f"cannot write {str(target)!r}: No space left on device")
    assert os.listdir(tmp_path) == ["metrics.json"]  # no temp file left behind
    assert json.loads(target.read_text()) == {"status": "running"}  # the old file, whole
    with pytest.raises(OSError) as e:
        rundir.atomic_write(tmp_path / "no" / "x.csv", "a")
    assert e.value.filename == str(tmp_path / "no" / "x.csv")
    assert e.value.strerror == f"the folder {tmp_path / 'no'} does not exist"


def test_atomic_write_writes_text_as_utf8_and_bytes_as_they_are(tmp_path):
    rundir.atomic_write(tmp_path / "a.txt", "é\n")
    rundir.atomic_write(tmp_path / "b.bin", b"\xff\x00")
    assert (tmp_path / "a.txt").read_bytes() == "é\n".encode()
    assert (tmp_path / "b.bin").read_bytes() == b"\xff\x00"
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's 0600
    rundir.write_json(tmp_path / "m.json", {"x": float("nan"), "y": [float("inf"), 1.5]})
    assert json.loads((tmp_path / "m.json").read_text()) == {"x": None, "y": [None, 1.5]}


def test_rundir_imports_nothing_heavy():
    code = (
        "import sys, runner.rundir, runner.compare.results\n"
        "print([m for m in ('jax', 'numpy', 'hydra', 'omegaconf', 'yaml') "
        "if m in sys.modules])\n"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "[]"


def test_single_runs_started_in_the_same_second_get_a_folder_each(tmp_path, monkeypatch):
    """hydra.run.dir of the shipped config, resolved as three `runner` processes started in the
    same second resolve it (the clock frozen): three different folders, each created by the
    process that got it."""
    from datetime import datetime

    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from runner import runtime
    from runner.help import conf_dir

    monkeypatch.chdir(tmp_path)
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        cfg = compose("config", return_hydra_config=True)
    OmegaConf.register_new_resolver(
        "now", lambda p: datetime(2026, 1, 2, 3, 4, 5).strftime(p), replace=True
    )
    try:
        dirs = []
        for _ in range(3):
            runtime.register_unique_dir()  # a new process: nothing claimed yet
            dirs.append(cfg.hydra.run.dir)
            assert cfg.hydra.run.dir == dirs[-1]  # one process resolves it to one folder
    finally:  # Hydra's own `now` back
        OmegaConf.register_new_resolver(
            "now", lambda p: datetime.now().strftime(p), use_cache=True, replace=True
        )
    assert dirs == [
        "outputs/2026-01-02/03-04-05",
        "outputs/2026-01-02/03-04-05-1",
        "outputs/2026-01-02/03-04-05-2",
    ]
    assert all((tmp_path / d).is_dir() for d in dirs)


def test_progress_writes_skip_fsync_and_final_ones_keep_it(tmp_path, monkeypatch):
    """A running run's metrics.json and curves.csv are rewritten every second: no fsync (3-8
    ms each here); they are still whole files. What a run ends with is fsynced."""
    from runner.runjob import Keeper

    synced = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real(fd)))
    keeper = Keeper(tmp_path)
    keeper.start("acc", epochs=3)
    row = {"epoch": 1, "step": 2, "lr": 0.1, "lr_next": 0.1, "train_loss": 1.0}
    keeper.epoch(row)  # the first epoch is always written
    assert synced == []
    assert json.loads((tmp_path / rundir.METRICS).read_text())["epochs_run"] == 1
    assert (tmp_path / rundir.CURVES).read_text().splitlines()[1].startswith("1,2,0.1,0.1,1,")
    rundir.write_json(tmp_path / rundir.METRICS, {"status": "completed"})
    rundir.write_curves(tmp_path / rundir.CURVES, [row], "acc")
    assert len(synced) == 2
