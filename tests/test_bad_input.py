"""Bad input: one clear line naming the key, the value and what is allowed; a non-zero exit; no
traceback; no run directory that looks complete."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

RUNNER = [sys.executable, "-m", "runner"]
QUICK = ["trainer.epochs=1", "trainer.progress=false", "data.max_samples=100"]


def bad(args, tmp_path, env=None):
    run_dir = tmp_path / "run"
    e = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    e.update(env or {})
    p = subprocess.run(RUNNER + QUICK + list(args) + [f"hydra.run.dir={run_dir}"],
                       capture_output=True, text=True, env=e, timeout=120)
    lines = [line for line in p.stderr.splitlines() if line.strip()]
    assert p.returncode != 0
    assert "Traceback" not in p.stderr
    assert len(lines) == 1, p.stderr
    assert not (run_dir / "metrics.json").exists()
    assert not run_dir.exists() or not any(run_dir.iterdir())
    return lines[0]


@pytest.mark.parametrize("args,expect", [
    (["activation=foo"], ["activation=foo", "unknown option", "leaky_relu"]),
    (["optimizer=adamx"], ["optimizer=adamx", "adamw"]),
    (["trainer.epochs=abc"], ["trainer.epochs='abc'", "integer"]),
    (["trainer.epochs=2.5"], ["trainer.epochs=2.5", "integer"]),
    (["optimizer.lr=0"], ["optimizer.lr=0", "> 0"]),
    (["optimizer.lr=-0.1"], ["optimizer.lr=-0.1", "> 0"]),
    (["regularization.dropout=1.0"], ["regularization.dropout=1", "< 1"]),
    (["regularization.dropout=-0.1"], ["regularization.dropout=-0.1", ">= 0"]),
    (["trainer.batch_size=0"], ["trainer.batch_size=0", ">= 1"]),
    (["trainer.batch_size=big"], ["trainer.batch_size='big'", "'full'"]),
    (["model.depth=0"], ["model.depth=0", ">= 1"]),
    (["optimizer=momentum", "optimizer.momentum=1.0"], ["optimizer.momentum=1", "< 1"]),
    (["regularization=early_stopping", "regularization.patience=-1"],
     ["regularization.patience=-1", ">= 0"]),
    (["trainer.epoch=5"], ["trainer.epoch", "not a setting of trainer=default", "epochs"]),
    (["activation.alpha=2"], ["activation.alpha", "activation=relu", "activation=elu"]),
    (["regularization.batchnorm=maybe"], ["regularization.batchnorm='maybe'", "true or false"]),
    (["trainer.plot=sometimes"], ["trainer.plot='sometimes'", "true, false or auto"]),
    (["model=cnn", "data=iris"], ["model=cnn", "data=iris", "tabular"]),
    (["trainer.batch_size=5000"], ["trainer.batch_size=5000", "training examples"]),
    (["data=iris", "data.task=binary"], ["data.task=binary", "3 classes"]),
    (["data=prices", "data.task=classification"], ["data.task=classification"]),
    (["data=csv", "data.path=/no/such/file.csv", "data.target=y"],
     ["data.path='/no/such/file.csv'", "no such file"]),
    (["data=csv", "data.path=/tmp"], ["data.target"]),
])
def test_bad_input_one_line(args, expect, tmp_path):
    line = bad(args, tmp_path)
    for word in expect:
        assert word in line, (word, line)


def _csv(tmp_path, text):
    p = tmp_path / "d.csv"
    p.write_text(text)
    return p


def test_csv_non_numeric(tmp_path):
    p = _csv(tmp_path, "a,b,y\n1,2,0\n3,abc,1\n" + "1,2,0\n" * 30)
    line = bad(["data=csv", f"data.path={p}", "data.target=y"], tmp_path)
    assert "'abc'" in line and "'b'" in line and "data.path" in line


def test_csv_missing_value(tmp_path):
    p = _csv(tmp_path, "a,b,y\n1,2,0\n3,,1\n" + "1,2,0\n" * 30)
    line = bad(["data=csv", f"data.path={p}", "data.target=y"], tmp_path)
    assert "missing" in line and "'b'" in line


def test_csv_no_such_target_column(tmp_path):
    p = _csv(tmp_path, "a,b,y\n" + "1,2,0\n" * 30)
    line = bad(["data=csv", f"data.path={p}", "data.target=price"], tmp_path)
    assert "data.target='price'" in line and "a, b, y" in line


def test_log_targets_must_be_positive(tmp_path):
    p = _csv(tmp_path, "a,y\n" + "".join(f"{i},{i - 10}.5\n" for i in range(40)))
    line = bad(["data=csv", f"data.path={p}", "data.target=y", "data.task=log_regression"],
               tmp_path)
    assert "data.task=log_regression" in line and "positive" in line


def test_output_directory_not_writable(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    p = subprocess.run(RUNNER + [f"hydra.run.dir={blocker}/run"] + QUICK, capture_output=True,
                       text=True, timeout=120,
                       env={k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"})
    lines = [line for line in p.stderr.splitlines() if line.strip()]
    assert p.returncode != 0 and "Traceback" not in p.stderr
    assert len(lines) == 1 and str(blocker) in lines[0] and "writable" in lines[0]


def test_hydra_full_error_shows_traceback(tmp_path):
    p = subprocess.run(RUNNER + ["optimizer.lr=0", f"hydra.run.dir={tmp_path / 'r'}"] + QUICK,
                       capture_output=True, text=True, timeout=120,
                       env=dict(os.environ, HYDRA_FULL_ERROR="1"))
    assert p.returncode != 0 and "Traceback" in p.stderr
