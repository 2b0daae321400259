"""End to end: the `runner` command as a user runs it, in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from runner.plots import wait_for_plots

RUNNER = [sys.executable, "-m", "runner"]
QUICK = ["trainer.epochs=2", "data.max_samples=150", "model.width=16"]


def run(args, cwd=None, env=None, timeout=180):
    e = dict(os.environ, **(env or {}))
    return subprocess.run(
        RUNNER + list(args), cwd=cwd, env=e, capture_output=True, text=True, timeout=timeout
    )


def test_default_run_creates_outputs_folder(tmp_path):
    script = Path(sys.executable).parent / "runner"  # the console script
    p = subprocess.run([str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    runs = list((tmp_path / "outputs").glob("*/*/metrics.json"))
    assert len(runs) == 1
    run_dir = runs[0].parent
    m = json.loads(runs[0].read_text())
    assert m["status"] == "completed"
    assert m["epochs_run"] == 20 and m["best_val_acc"] > 0.9  # an MLP on digits
    assert (run_dir / ".hydra" / "config.yaml").exists()
    # drawn by a detached process after the prompt came back (trainer.plot_wait=auto)
    assert wait_for_plots(run_dir, timeout=120) is None
    assert (run_dir / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len((run_dir / "curves.csv").read_text().splitlines()) == 21
    assert str(run_dir.relative_to(tmp_path)) in p.stdout.replace("\n", "")
    assert "test" in p.stdout


def test_single_run_with_overrides_writes_its_directory(tmp_path):
    out = tmp_path / "run"
    p = run(
        [
            "data=iris",
            "model=resmlp",
            "activation=elu",
            "init=he_normal",
            "optimizer=nesterov",
            "optimizer.lr=0.05",
            "schedule=cyclic",
            "regularization.dropout=0.3",
            "trainer.batch_size=32",
            "seed=3",
            f"hydra.run.dir={out}",
            *QUICK,
        ]
    )
    assert p.returncode == 0, p.stderr
    m = json.loads((out / "metrics.json").read_text())
    assert m["status"] == "completed" and m["epochs_run"] == 2
    for key in (
        "best_epoch",
        "iterations",
        "wall_time",
        "compile_time",
        "params",
        "test_acc",
        "final_train_loss",
        "best_val_acc",
    ):
        assert m[key] is not None, key
    header = (out / "curves.csv").read_text().splitlines()[0].split(",")
    assert header == [
        "epoch",
        "step",
        "lr",
        "lr_next",
        "train_loss",
        "train_acc",
        "val_loss",
        "val_acc",
        "max_step_loss",
        "grad_norm",
        "time",
    ]
    overrides = (out / ".hydra" / "overrides.yaml").read_text()
    assert "optimizer=nesterov" in overrides
    assert not list(out.glob(".*.tmp"))  # atomic writes leave no temp files


def test_multirun_two_jobs(tmp_path):
    """With a fixed key of the swept group that its default (adam) lacks: set where the
    trial's optimizer has it (runner.shell.sweep_fixed_keys)."""
    sweep = tmp_path / "sweep"
    p = run(
        ["-m", "optimizer=sgd,momentum", "optimizer.momentum=0.5", "data=iris"]
        + ["hydra.sweeper.plot=false", f"hydra.sweep.dir={sweep}", *QUICK]
    )
    assert p.returncode == 0, p.stderr
    for job, opt in (("0", "sgd"), ("1", "momentum")):
        m = json.loads((sweep / job / "metrics.json").read_text())
        assert m["status"] == "completed"
        overrides = (sweep / job / ".hydra" / "overrides.yaml").read_text()
        assert f"optimizer={opt}" in overrides
        assert ("optimizer.momentum=0.5" in overrides) == (opt == "momentum")
    assert "momentum: 0.5" in (sweep / "1" / ".hydra" / "config.yaml").read_text()


def test_help_lists_groups_and_options():
    p = run(["--help"])
    assert p.returncode == 0
    for word in (
        "activation",
        "leaky_relu",
        "optimizer",
        "nadam",
        "schedule",
        "cyclic",
        "regularization",
        "batchnorm",
        "init",
        "orthogonal",
        "data",
        "mnist1d",
    ):
        assert word in p.stdout, word


def test_cfg_job_prints_resolved_config():
    p = run(["--cfg", "job", "optimizer=sgd", "optimizer.lr=0.5"])
    assert p.returncode == 0, p.stderr
    assert "name: sgd" in p.stdout and "lr: 0.5" in p.stdout
    assert "hydra:" not in p.stdout


def test_shell_completion_suggests_groups():
    p = run(["--shell-completion", "query=bash"], env={"COMP_LINE": "runner activation=le"})
    assert p.returncode == 0, p.stderr
    assert "activation=leaky_relu" in p.stdout


def test_python_dash_m_and_debug_flag(tmp_path):
    p = run(["--debug", "activation=foo", f"hydra.run.dir={tmp_path / 'r'}"])
    assert p.returncode != 0
    assert "Traceback" in p.stderr


def test_paths_outputs_and_debug_fast(tmp_path):
    """paths.outputs moves the run folders; RUNNER_JAX_CACHE still names JAX's compilation cache
    (through conf/paths); debug=fast trains 3 epochs on at most 500 examples, without plots."""
    jax_dir = tmp_path / "jax-from-env"
    p = run(
        ["debug=fast", f"paths.outputs={tmp_path / 'runs'}"],
        cwd=tmp_path,
        env={"RUNNER_JAX_CACHE": str(jax_dir)},
    )
    assert p.returncode == 0, p.stderr
    runs = list((tmp_path / "runs").glob("*/*/metrics.json"))
    assert len(runs) == 1 and not (tmp_path / "outputs").exists()
    m = json.loads(runs[0].read_text())
    assert m["status"] == "completed" and m["epochs_run"] == 3
    assert m["steps_per_epoch"] <= -(-500 // 64)  # the full digits set takes 20 batches of 64
    assert (runs[0].parent / "curves.csv").exists() and not list(runs[0].parent.glob("*.png"))
    assert any(jax_dir.iterdir()), "compiled programs cached where RUNNER_JAX_CACHE says"


def test_paths_jax_cache_off_beats_the_environment(tmp_path):
    jax_dir = tmp_path / "jax-from-env"
    p = run(
        ["debug=tiny", "paths.jax_cache=off", f"hydra.run.dir={tmp_path / 'run'}"],
        cwd=tmp_path,
        env={"RUNNER_JAX_CACHE": str(jax_dir)},
    )
    assert p.returncode == 0, p.stderr
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["status"] == "completed"
    assert not jax_dir.exists(), "paths.jax_cache=off: no compilation cache"
