"""Every stop keeps what finished, as a user meets it: the `runner` command in a subprocess of
its own session, stopped with a real Ctrl-C (SIGINT to its process group), SIGTERM or SIGKILL,
then `runner resume` / a resumed sweep, compared with the run that was never stopped."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

RUNNER = [sys.executable, "-m", "runner"]
# Small epochs and many of them: a stop lands mid-run, and the whole run stays a few seconds.
LONG = [
    "data=digits",
    "data.max_samples=300",
    "model.width=16",
    "trainer.progress=false",
    "trainer.plot=false",
    "trainer.epochs=800",
]


def start(args, cwd):
    return subprocess.Popen(
        RUNNER + list(args),
        cwd=cwd,
        start_new_session=True,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def metrics(run_dir: Path) -> dict:
    try:
        return json.loads((run_dir / "metrics.json").read_text())
    except (OSError, ValueError):
        return {}


def wait_for(cond, proc, timeout=120.0):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if cond():
            return
        assert proc.poll() is None, f"ended before the stop: {proc.communicate()}"
        time.sleep(0.02)
    raise AssertionError("timed out waiting")


def curves(run_dir: Path) -> list[dict]:
    with open(run_dir / "curves.csv") as f:
        return [{k: v for k, v in r.items() if k != "time"} for r in csv.DictReader(f)]


def weights(run_dir: Path) -> dict:
    with np.load(run_dir / "best_params.npz") as z:
        return {k: z[k] for k in z.files}


TIMES = {"wall_time", "train_time", "compile_time", "resumed_from_epoch"}


def assert_same_run(a: Path, b: Path) -> None:
    assert curves(a) == curves(b)
    assert (a / "diagnostics.csv").read_text() == (b / "diagnostics.csv").read_text()
    ma, mb = metrics(a), metrics(b)
    assert {k: v for k, v in ma.items() if k not in TIMES} == {
        k: v for k, v in mb.items() if k not in TIMES
    }
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys() and all(np.array_equal(wa[k], wb[k]) for k in wa)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The run never stopped."""
    d = tmp_path_factory.mktemp("ref")
    p = subprocess.run(
        RUNNER + LONG + [f"hydra.run.dir={d / 'run'}"],
        cwd=d,
        text=True,
        capture_output=True,
        timeout=300,
    )
    assert p.returncode == 0, p.stderr
    return d / "run"


def test_ctrl_c_keeps_every_finished_epoch_and_resume_finishes_the_same_run(tmp_path, reference):
    run_dir = tmp_path / "run"
    p = start(LONG + [f"hydra.run.dir={run_dir}"], tmp_path)
    wait_for(lambda: metrics(run_dir).get("epochs_run", 0) >= 1, p)
    os.killpg(p.pid, signal.SIGINT)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 130, err
    assert "Traceback" not in err
    m = metrics(run_dir)
    k = m["epochs_run"]
    assert m["status"] == "interrupted" and m["interrupted_by"] == "SIGINT" and 1 <= k < 800
    line = (
        f"runner: interrupted (SIGINT) after epoch {k}/800; kept in {run_dir}; "
        f"resume with: runner resume {run_dir}"
    )
    assert err.strip().splitlines()[-1] == line
    assert len(curves(run_dir)) == k
    assert m["best_epoch"] and (run_dir / "best_params.npz").is_file()
    assert (run_dir / "checkpoint.npz").is_file() and (run_dir / "diagnostics.csv").is_file()
    assert curves(run_dir) == curves(reference)[:k]

    q = subprocess.run(
        RUNNER + ["resume", str(run_dir)], cwd=tmp_path, text=True, capture_output=True, timeout=300
    )
    assert q.returncode == 0, q.stderr
    assert f"resumed after epoch {k}" in q.stdout.replace("\n", "")
    assert metrics(run_dir)["status"] == "completed"
    assert metrics(run_dir)["resumed_from_epoch"] == k
    for t in ("wall_time", "train_time", "compile_time"):  # totals over both processes
        assert metrics(run_dir)[t] > m[t], t
    assert_same_run(run_dir, reference)
    # a finished run is not resumed again
    again = subprocess.run(
        RUNNER + ["resume", str(run_dir)], text=True, capture_output=True, timeout=120
    )
    assert again.returncode == 2
    assert again.stderr.strip() == f"runner: error: {run_dir}: status completed: nothing to resume"


def test_sigterm_stops_with_exit_143_and_an_interrupted_run(tmp_path):
    run_dir = tmp_path / "run"
    p = start(LONG + [f"hydra.run.dir={run_dir}"], tmp_path)
    wait_for(lambda: metrics(run_dir).get("epochs_run", 0) >= 1, p)
    os.killpg(p.pid, signal.SIGTERM)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 143, err
    assert "Traceback" not in err
    m = metrics(run_dir)
    assert m["status"] == "interrupted" and m["interrupted_by"] == "SIGTERM"
    assert err.strip().splitlines()[-1].startswith("runner: interrupted (SIGTERM) after epoch ")


def test_sigkill_leaves_a_stale_run_that_resumes_from_its_last_checkpoint(tmp_path, reference):
    from runner.compare.results import load_run

    run_dir = tmp_path / "run"
    p = start(LONG + [f"hydra.run.dir={run_dir}", "trainer.checkpoint=100"], tmp_path)
    wait_for(lambda: (run_dir / "checkpoint.npz").is_file(), p)
    os.killpg(p.pid, signal.SIGKILL)
    p.communicate(timeout=60)
    m = metrics(run_dir)
    assert m["status"] == "running" and m["pid"] == p.pid and m["epochs_run"] >= 1
    assert load_run(run_dir).status == "stale"  # its process is gone

    q = subprocess.run(
        RUNNER + ["resume", str(run_dir)], cwd=tmp_path, text=True, capture_output=True, timeout=300
    )
    assert q.returncode == 0, q.stderr
    assert metrics(run_dir)["resumed_from_epoch"] % 100 == 0
    assert_same_run(run_dir, reference)


SWEEP = [
    "-m",
    "data=digits",
    "data.max_samples=300",
    "model.width=16",
    "trainer.plot=false",
    "hydra.sweeper.progress=false",
    "hydra.sweeper.plot=false",  # no test here looks at topk.png/search.png
    "trainer.progress=false",
    "hydra/launcher=vmap",
    "hydra.launcher.max_members=2",
]


def test_vmap_groups_write_their_jobs_as_they_finish_and_resume_retrains_only_the_rest(tmp_path):
    from runner.compare.results import load_runs

    sweep = tmp_path / "sweep"
    args = SWEEP + [
        "trainer.epochs=800",
        "optimizer.lr=0.001,0.002,0.003,0.004",
        f"hydra.sweep.dir={sweep}",
    ]
    p = start(args, tmp_path)
    # the first group's two jobs are on disk, complete, while the second group trains (and
    # shows its progress to readers)
    first = [sweep / "0", sweep / "1"]
    second = [sweep / "2", sweep / "3"]
    wait_for(
        lambda: (
            all(metrics(d).get("status") == "completed" for d in first)
            and all(metrics(d).get("epochs_run", 0) >= 1 for d in second)
        ),
        p,
    )
    running = {r.path.name: r for r in load_runs([sweep])}
    assert {running[d.name].status for d in second} == {"running"}
    assert all(running[d.name].metrics["epochs_run"] >= 1 for d in second)
    os.killpg(p.pid, signal.SIGKILL)
    p.communicate(timeout=60)
    after = {r.path.name: r.status for r in load_runs([sweep])}
    assert after == {"0": "completed", "1": "completed", "2": "stale", "3": "stale"}
    kept = {d.name: (d / "metrics.json").read_bytes() for d in first}

    q = subprocess.run(
        RUNNER + ["-m", f"hydra.sweeper.resume={sweep}"],
        cwd=tmp_path,
        text=True,
        capture_output=True,
        timeout=300,
    )
    assert q.returncode == 0, q.stderr
    assert {d.name: (d / "metrics.json").read_bytes() for d in first} == kept  # not retrained
    assert all(metrics(d)["status"] == "completed" for d in second)
    summary = json.loads((sweep / "summary.json").read_text())
    assert summary["state"] == "finished"
    assert [t["status"] for t in summary["trials"]] == ["completed"] * 4


def test_ctrl_c_on_a_sweep_keeps_the_group_in_flight_as_interrupted(tmp_path):
    sweep = tmp_path / "sweep"
    p = start(
        SWEEP + ["trainer.epochs=800", "optimizer.lr=0.001,0.002", f"hydra.sweep.dir={sweep}"],
        tmp_path,
    )
    wait_for(lambda: metrics(sweep / "1").get("epochs_run", 0) >= 1, p)
    os.killpg(p.pid, signal.SIGINT)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 130, err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] == (
        f"sweep: interrupted (SIGINT) with 0 of 2 trials done; kept in {sweep}; resume with: "
        f"runner -m hydra.sweeper.resume={sweep}"
    )
    for job in ("0", "1"):
        m = metrics(sweep / job)
        assert m["status"] == "interrupted" and 1 <= m["epochs_run"] < 800
        assert len(curves(sweep / job)) == m["epochs_run"]
    summary = json.loads((sweep / "summary.json").read_text())
    assert summary["state"] == "interrupted"
    assert [t["status"] for t in summary["trials"]] == ["interrupted"] * 2
