"""Hydra's cluster launchers with runner's sweeper: submitit (its local executor; SLURM's config
composes) and joblib run the same sweep command as the default launcher and leave
the same layout: <sweep dir>/<job>/ with metrics.json, curves.csv and .hydra/, and the sweep's
summary.json, summary.csv and best.yaml. Each job runs in a process of its own that imports JAX,
so every sweep here has two tiny trials. Needs the `cluster` extra (in the `test` extra too)."""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from conftest import TINY

pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
pytest.importorskip("hydra_plugins.hydra_joblib_launcher")

RUNNER = [sys.executable, "-m", "runner", "-m"]
SLURM_TARGET = "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"


def sweep(tmp_path, *args, env=None, timeout=120):
    d = tmp_path / "sweep"
    p = subprocess.run(
        # no topk.png/search.png: no test here looks at them (saves their drawing)
        RUNNER + list(args) + ["hydra.sweeper.plot=false", f"hydra.sweep.dir={d}"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=dict(os.environ, **(env or {})),
    )
    return p, d


def load(path: Path) -> dict:
    return json.loads(path.read_text())


def check_completed_sweep(p, d, lrs=("0.01", "0.1")):
    """The default launcher's layout: a folder per trial and the sweep's summary files."""
    assert p.returncode == 0, p.stderr
    s = load(d / "summary.json")
    assert s["state"] == "finished" and s["n_trials"] == len(lrs)
    assert s["counts"]["completed"] == len(lrs)
    for job, lr in enumerate(lrs):
        run = d / str(job)
        m = load(run / "metrics.json")
        assert m["status"] == "completed" and m["epochs_run"] == 1
        assert f"- optimizer.lr={lr}\n" in (run / ".hydra" / "overrides.yaml").read_text()
        assert (run / ".hydra" / "config.yaml").is_file()
        assert len((run / "curves.csv").read_text().splitlines()) == 2  # header + 1 epoch
        row = s["trials"][job]
        assert row["job"] == job and row["status"] == "completed"
        assert row["params"] == {"optimizer.lr": float(lr)}
        assert row["objective"] == m["best_val_acc"] and Path(row["dir"]) == run.resolve()
    assert len((d / "summary.csv").read_text().splitlines()) == len(lrs) + 1
    best = max(s["trials"], key=lambda r: r["objective"])
    assert s["best"]["job"] == best["job"]
    import yaml

    assert yaml.safe_load((d / "best.yaml").read_text())["optimizer"]["lr"] == float(
        lrs[best["job"]]
    )
    return s


def test_submitit_local_runs_a_two_job_sweep_end_to_end(tmp_path):
    p, d = sweep(
        tmp_path,
        "hydra/launcher=submitit_local",
        *TINY,
        "trainer.progress=true",
        "optimizer.lr=0.01,0.1",
    )
    check_completed_sweep(p, d)
    # each trial ran as a submitit job (a process of its own) with its log folder
    for job in (0, 1):
        hydra_yaml = (d / str(job) / ".hydra" / "hydra.yaml").read_text()
        job_id = next(
            line.split(":", 1)[1].strip(" '")
            for line in hydra_yaml.splitlines()
            if line.strip().startswith("id:")
        )
        out = (d / ".submitit" / job_id / f"{job_id}_0_log.out").read_text()
        err = (d / ".submitit" / job_id / f"{job_id}_0_log.err").read_text()
        assert f"job {job}: completed, best val_acc" in out
        # no live display in a log file: one plain line per epoch instead
        assert f"job {job} epoch 1/1: loss" in err and "\x1b[" not in err
    assert "job 0: completed" not in p.stdout  # the jobs' own lines stay in their logs


def test_joblib_runs_a_two_job_sweep_end_to_end(tmp_path):
    p, d = sweep(
        tmp_path, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", *TINY, "optimizer.lr=0.01,0.1"
    )
    check_completed_sweep(p, d)
    # joblib's workers share the sweep's stdout: their one line per job comes through
    assert "job 0: completed, best val_acc" in p.stdout
    assert "job 1: completed, best val_acc" in p.stdout
    assert not (d / ".submitit").exists()


def test_a_failing_trial_in_a_submitit_job_is_recorded_and_the_sweep_goes_on(tmp_path):
    p, d = sweep(tmp_path, "hydra/launcher=submitit_local", *TINY, "optimizer.lr=-1,0.1")
    assert p.returncode == 0, p.stderr  # not every trial failed
    error = "optimizer.lr=-1.0: out of range; expected a number > 0"
    assert load(d / "0" / "metrics.json") == {"status": "failed", "error": error}
    assert load(d / "1" / "metrics.json")["status"] == "completed"
    s = load(d / "summary.json")
    assert [r["status"] for r in s["trials"]] == ["failed", "completed"]
    assert s["trials"][0]["error"] == error and s["best"]["job"] == 1
    assert f"job 0 failed: {error}" in " ".join(p.stderr.split())
    assert "Traceback" not in p.stderr
    # the job's own log says why too
    logs = [e.read_text() for e in (d / ".submitit").glob("*/*_0_log.err")]
    assert any(f"job 0 failed: {error}" in text for text in logs), logs


@pytest.mark.slow  # submitit waits 15 s for a dead job's result file
def test_a_crashed_submitit_job_is_a_failed_trial_with_its_last_error_line(tmp_path):
    # XLA aborts the job's process when JAX starts (an unknown flag): no result comes back.
    # (submitit waits 15 s for a result file before it gives up on a job: this test's time.)
    p, d = sweep(
        tmp_path,
        "hydra/launcher=submitit_local",
        *TINY,
        "optimizer.lr=0.1",
        "+hydra.job.env_set.XLA_FLAGS=--xla_runner_no_such_flag",
    )
    assert p.returncode == 2  # every trial failed
    row = load(d / "summary.json")["trials"][0]
    assert row["status"] == "failed"
    err = row["error"]
    assert "\n" not in err and "ended without a result" in err, err
    assert "Unknown flag in XLA_FLAGS: --xla_runner_no_such_flag" in err, err
    log = Path(err.rsplit("(log: ", 1)[1].rstrip(")"))
    assert log.is_file() and log.parent.parent == d / ".submitit"
    last = p.stderr.strip().splitlines()[-1]
    assert last.startswith("runner: error: sweep: all 1 trials failed; first error (job 0): job ")


def test_describe_turns_submitit_errors_into_one_line():
    from submitit.core.utils import FailedJobError, UncompletedJobError

    from runner.shell import describe

    raised = FailedJobError(
        "Job (task=0) failed during processing with trace:\n----------------------\n"
        'Traceback (most recent call last):\n  File "x.py", line 1, in <module>\n'
        "KeyboardInterrupt: stopped\n----------------------\n"
        "You can check full logs with 'job.stderr(0)' and 'job.stdout(0)'or at paths:\n"
        "  - /s/.submitit/7/7_0_log.err\n  - /s/.submitit/7/7_0_log.out"
    )
    assert describe(raised) == (
        "the job raised KeyboardInterrupt: stopped (log: /s/.submitit/7/7_0_log.err)"
    )
    died = UncompletedJobError(
        "Job 8_1 (task: 0) with path /s/.submitit/8_1/8_1_0_result.pkl\n"
        "has not produced any output (state: OUT_OF_MEMORY)\nError stream produced:\n"
        + "-" * 40
        + "\nslurmstepd: error: Detected 1 oom_kill event in StepId=8.batch\n"
    )
    assert describe(died) == (
        "job 8_1 ended without a result (state OUT_OF_MEMORY): slurmstepd: "
        "error: Detected 1 oom_kill event in StepId=8.batch "
        "(log: /s/.submitit/8_1/8_1_0_log.err)"
    )
    refused = FailedJobError("sbatch: error: invalid partition specified: gpu\nmore")
    assert describe(refused) == "FailedJobError: sbatch: error: invalid partition specified: gpu"


# ---------------------------------------------------------------------------------------------
# SLURM: conf/hydra/launcher/slurm.yaml


def test_slurm_config_composes_to_submitits_slurm_launcher():
    from hydra import compose, initialize_config_dir

    from runner.help import conf_dir

    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        cfg = compose(
            "config",
            overrides=[
                "hydra/launcher=slurm",
                "hydra.launcher.partition=gpu",
                "hydra.launcher.mem_gb=32",
            ],
            return_hydra_config=True,
        )
    launcher = cfg.hydra.launcher
    assert launcher._target_ == SLURM_TARGET
    assert launcher.partition == "gpu" and launcher.mem_gb == 32
    assert (
        launcher.timeout_min,
        launcher.cpus_per_task,
        launcher.gpus_per_node,
        launcher.array_parallelism,
        launcher.name,
    ) == (60, 4, 1, 64, "runner")
    assert launcher.submitit_folder.endswith("/.submitit/%j")  # in the sweep's folder
    assert cfg.hydra.sweeper._target_.endswith("RunnerSweeper")  # runner's sweeper still
    header = (conf_dir() / "hydra" / "launcher" / "slurm.yaml").read_text().splitlines()[1]
    assert header.startswith("# run: runner -m hydra/launcher=slurm hydra.launcher.partition=")


# ---------------------------------------------------------------------------------------------
# joblib on a terminal: the sweep's progress bar is the only live display


@pytest.mark.slow  # a whole joblib sweep on a pseudo-terminal (docs/performance.md)
def test_joblib_jobs_on_a_terminal_leave_the_live_display_to_the_sweep(tmp_path):
    d = tmp_path / "sweep"
    master, slave = pty.openpty()
    env = dict(os.environ, COLUMNS="120", TERM="xterm-256color")
    env.pop("NO_COLOR", None)
    cmd = RUNNER + [
        "hydra/launcher=joblib",
        *TINY,
        "trainer.progress=true",
        "optimizer.lr=0.01,0.1",
        f"hydra.sweep.dir={d}",
    ]
    proc = subprocess.Popen(
        cmd, cwd=tmp_path, stdin=subprocess.DEVNULL, stdout=slave, stderr=slave, env=env
    )
    os.close(slave)
    chunks: list[bytes] = []

    def read():
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the terminal's other end closed
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert proc.wait(timeout=120) == 0
    finally:
        proc.kill()
        reader.join(timeout=10)
        os.close(master)
    out = b"".join(chunks).decode("utf-8", "replace")
    assert load(d / "summary.json")["counts"]["completed"] == 2
    plain = re.sub(r"\x1b\[[0-9;]*m", "", out)  # colours off, cursor moves kept
    assert "sweep ━" in plain and "trial 2/2" in plain  # the sweep's bar
    # no live display of a job's own (it would fight the sweep's for the same line)
    assert "compiling..." not in plain and "epoch 0/1" not in plain
    # each job's line first clears the line the sweep's bar is on
    for job in (0, 1):
        i = out.index(f"job {job}: completed")
        assert out[i - 5 : i] == "\r\x1b[2K", repr(out[i - 40 : i + 20])
