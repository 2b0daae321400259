"""logger=tensorboard|mlflow and `runner export`: what they write, read back with the tools' own
readers (TensorBoard's EventAccumulator and hparams plugin data, MlflowClient on the real
SQLite store). One real sweep (2 trials, both loggers, in a subprocess) is shared by the tests;
the export tests work in-process on runs trained here."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from conftest import compose

from runner.export import main as export_main

pytest.importorskip("tensorboardX")
pytest.importorskip("tensorboard")
pytest.importorskip("mlflow")


RUNNER = [sys.executable, "-m", "runner"]


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _events(logdir: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(logdir), size_guidance={"scalars": 0})
    acc.Reload()
    return acc


def _session(acc) -> tuple[dict, str]:
    """(hparams, end status) from the hparams plugin's own data in the events."""
    from tensorboard.plugins.hparams import api_pb2, metadata

    content = acc.PluginTagToContent(metadata.PLUGIN_NAME)
    start = metadata.parse_session_start_info_plugin_data(content[metadata.SESSION_START_INFO_TAG])
    end = metadata.parse_session_end_info_plugin_data(content[metadata.SESSION_END_INFO_TAG])
    values = {}
    for key, v in start.hparams.items():
        kind = v.WhichOneof("kind")
        values[key] = getattr(v, kind)
    return values, api_pb2.Status.Name(end.status)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A tracking URI on a RAM disk where there is one: creating MLflow's tables commits ~50
    migrations, 15 s on this machine's disk, 3 s in memory."""
    shm = "/dev/shm"
    base = (
        tempfile.mkdtemp(dir=shm, prefix="runner-mlflow-")
        if os.access(shm, os.W_OK)
        else str(tmp_path_factory.mktemp("mlflow"))
    )
    yield f"sqlite:///{base}/mlflow.db"
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def sweep(tmp_path_factory, store):
    """A real 2-trial sweep with both loggers on."""
    tmp = tmp_path_factory.mktemp("loggers")
    d = tmp / "sweep"
    p = subprocess.run(
        RUNNER
        + [
            "-m",
            "debug=tiny",
            "trainer.epochs=2",
            "trainer.plot=true",
            "seed=0,1",
            "logger=[tensorboard,mlflow]",
            f"logger.mlflow.tracking_uri={store}",
            "hydra.sweeper.plot=false",  # the trials' PNGs are logged, not the sweep's
            f"hydra.sweep.dir={d}",
        ],
        cwd=tmp,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert p.returncode == 0, p.stderr
    assert "warning: logger" not in p.stderr, p.stderr
    return d


@pytest.fixture(scope="module")
def client(store, sweep):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=store)


def _runs(client, experiment="run"):
    exp = client.get_experiment_by_name(experiment)
    return client.search_runs([exp.experiment_id])


def test_tensorboard_scalars_hparams_and_diagnostics_match_the_run_files(sweep):
    seeds = {}
    for trial in ("0", "1"):
        run = sweep / trial
        acc = _events(run / "tensorboard")
        curves = _rows(run / "curves.csv")
        assert [int(r["epoch"]) for r in curves] == [1, 2]
        for key in ("train_loss", "val_loss", "val_acc", "lr"):
            got = [(s.step, s.value) for s in acc.Scalars(key)]
            want = [(int(r["epoch"]), float(r[key])) for r in curves]
            assert [g[0] for g in got] == [w[0] for w in want], key
            assert [g[1] for g in got] == pytest.approx([w[1] for w in want], rel=1e-6), key
        diag = [r for r in _rows(run / "diagnostics.csv") if r["layer"] == "layer0"]
        got = {s.step: s.value for s in acc.Scalars("diagnostics/layer0/act_std")}
        assert got == pytest.approx({int(r["epoch"]): float(r["act_std"]) for r in diag}, rel=1e-6)
        metrics = json.loads((run / "metrics.json").read_text())
        final = acc.Scalars("final/best_val_loss")
        assert final[-1].value == pytest.approx(metrics["best_val_loss"], rel=1e-6)
        hp, status = _session(acc)
        assert status == "STATUS_SUCCESS"
        assert hp["optimizer.name"] == "adam" and hp["model.width"] == 16
        assert not any(k.startswith(("paths", "logger")) for k in hp)
        seeds[trial] = hp["seed"]
        record = json.loads((run / "export.json").read_text())
        assert record["tensorboard"]["ok"] and record["mlflow"]["ok"], record
    # one HParams table: each trial is a session with its own seed
    assert seeds == {"0": 0.0, "1": 1.0}


def test_mlflow_sweep_is_one_parent_with_the_trials_as_children(sweep, client, store):
    runs = _runs(client)
    parent_id = json.loads((sweep / "mlflow_parent.json").read_text())
    (parent_id,) = parent_id.values()
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent_id]
    assert [p.info.run_id for p in parents] == [parent_id]
    assert parents[0].data.tags["runner.kind"] == "sweep"
    assert parents[0].info.status == "FINISHED"
    assert sorted(c.data.params["seed"] for c in children) == ["0", "1"]
    for child in children:
        run_dir = Path(child.data.tags["runner.run_dir"])
        assert run_dir.parent == sweep.resolve()
        assert child.info.status == "FINISHED"
        assert child.data.tags["runner.status"] == "completed"
        assert child.data.params["optimizer.name"] == "adam"
        history = client.get_metric_history(child.info.run_id, "val_loss")
        curves = _rows(run_dir / "curves.csv")
        history = sorted((m.step, m.value) for m in history)
        assert [m[0] for m in history] == [int(r["epoch"]) for r in curves]
        assert [m[1] for m in history] == pytest.approx([float(r["val_loss"]) for r in curves])
        metrics = json.loads((run_dir / "metrics.json").read_text())
        assert child.data.metrics["test_acc"] == pytest.approx(metrics["test_acc"], rel=1e-6)
        assert "diagnostics/head/grad_norm" in child.data.metrics
        artifacts = {a.path for a in client.list_artifacts(child.info.run_id)}
        assert artifacts == {"metrics.json", "curves.png", "diagnostics.png"}
        # beside the store, not in ./mlruns of whatever folder the sweep started from
        db_dir = Path(store[len("sqlite:///") :]).resolve().parent
        assert child.info.artifact_uri.startswith((db_dir / "mlartifacts").as_uri())
        record = json.loads((run_dir / "export.json").read_text())["mlflow"]
        assert record["run_id"] == child.info.run_id


@pytest.fixture(scope="module")
def finished(sweep, tmp_path_factory):
    """A single run's folder (no sweep above it, nothing sent yet): a trial of the sweep,
    copied."""
    d = tmp_path_factory.mktemp("run") / "2026-01-01" / "12-00-00"
    shutil.copytree(sweep / "0", d, ignore=shutil.ignore_patterns("tensorboard", "export.json"))
    return d


def test_export_run_to_mlflow_with_artifacts_and_again_replaces_it(finished, store, client, capsys):
    args = ["export", str(finished), "--to", "mlflow", "--tracking-uri", store]
    args += ["--experiment", "exported"]
    assert export_main.main(args) == 0
    out = capsys.readouterr().out
    first = json.loads((finished / "export.json").read_text())["mlflow"]["run_id"]
    assert f"{finished} -> mlflow: run {first}" in out and "sent 1 of 1" in out
    run = client.get_run(first)
    assert "mlflow.parentRunId" not in run.data.tags  # a single run: no parent
    overrides = (finished / ".hydra" / "overrides.yaml").read_text().split("\n")
    label = " ".join(o[2:] for o in overrides if o.startswith("- "))
    assert "seed=0" in label and run.data.tags["mlflow.runName"] == label
    assert {a.path for a in client.list_artifacts(first)} >= {"metrics.json", "curves.png"}
    assert export_main.main(args) == 0
    second = json.loads((finished / "export.json").read_text())["mlflow"]["run_id"]
    assert second != first and client.get_run(first).info.lifecycle_stage == "deleted"
    assert [r.info.run_id for r in _runs(client, "exported")] == [second]


def test_export_run_to_tensorboard_twice_keeps_one_event_file(finished, capsys):
    for _ in range(2):
        assert export_main.main(["export", str(finished), "--to", "tensorboard"]) == 0
    assert len(os.listdir(finished / "tensorboard")) == 1
    acc = _events(finished / "tensorboard")
    assert [s.step for s in acc.Scalars("val_acc")] == [1, 2]
    assert "view: tensorboard --logdir" in capsys.readouterr().out


def test_export_sweep_reuses_its_parent_and_skips_a_damaged_trial(
    sweep, store, client, tmp_path, capsys
):
    copy = tmp_path / "sweep"
    shutil.copytree(sweep, copy)
    (copy / "1" / "metrics.json").write_bytes(b"\xff{")
    parent = json.loads((copy / "mlflow_parent.json").read_text())[store]
    rc = export_main.main(["export", str(copy), "--to", "mlflow", "--tracking-uri", store])
    out, err = capsys.readouterr()
    assert rc == 1
    assert err.strip().splitlines() == [
        f"runner: warning: mlflow: {copy / '1'}: metrics.json: not UTF-8 (byte 0xff at 0) (skipped)"
    ]
    sent = json.loads((copy / "0" / "export.json").read_text())["mlflow"]
    assert sent["parent_run_id"] == parent
    assert client.get_run(sent["run_id"]).data.tags["mlflow.parentRunId"] == parent
    assert "sent 1 of 2, skipped 1" in out


def test_a_failing_logger_keeps_the_run_and_says_so(finished, tmp_path):
    from runner.config import validate
    from runner.export import after_run

    run = tmp_path / "run"
    shutil.copytree(finished, run)
    (tmp_path / "x.db").write_text("not a database")
    bad = f"sqlite:///{tmp_path}/x.db"
    cfg = validate(compose(["logger=mlflow", f"logger.mlflow.tracking_uri={bad}"]))
    warned = []
    problems = after_run(run, cfg.logger, warned.append)
    assert warned == problems and len(warned) == 1
    assert warned[0].startswith(f"logger mlflow: {run}: DatabaseError: ") and "\n" not in warned[0]
    assert "file is not a database" in warned[0]
    assert warned[0].endswith(f"(the run is kept; retry: runner export {run} --to mlflow)")
    record = json.loads((run / "export.json").read_text())["mlflow"]
    assert record["ok"] is False and record["error"]
    assert json.loads((run / "metrics.json").read_text())["status"] == "completed"


def test_a_missing_extra_names_the_pip_extra(finished, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tensorboardX", None)  # import fails as if not installed
    assert export_main.main(["export", str(finished), "--to", "tensorboard"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        "runner: error: logger tensorboard needs tensorboardX (tensorboardX is not "
        "installed): pip install 'runner[tensorboard]'"
    )


@pytest.mark.parametrize(
    "args,message",
    [
        (["nowhere", "--to", "mlflow"], "runner export: nowhere: no such folder"),
        (
            [".", "--to", "wandb"],
            "runner export: --to wandb: unknown logger; choose tensorboard or mlflow "
            "(both: --to tensorboard,mlflow)",
        ),
        (["."], "runner export: the following arguments are required: --to"),
    ],
)
def test_export_bad_input_is_one_line(args, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert export_main.main(["export", *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"runner: error: {message}"), err


def test_export_of_a_folder_without_runs_is_bad_input(tmp_path, capsys):
    assert export_main.main(["export", str(tmp_path), "--to", "tensorboard"]) == 2
    assert capsys.readouterr().err.strip() == (
        f"runner: error: runner export: {tmp_path}: no run folders in it (a run has .hydra/)"
    )


def test_logger_config_is_validated_and_listed():
    from runner.config import ConfigError, validate
    from runner.help import conf_dir, groups_help
    from runner.shell import describe

    both = validate(compose(["logger=[tensorboard,mlflow]"])).logger
    assert both.backends == ("tensorboard", "mlflow")
    assert validate(compose([])).logger.backends == ()
    with pytest.raises(ConfigError) as e:
        validate({"logger": {"wandb": {}}})
    assert str(e.value) == (
        "logger.wandb: unknown logger; choose from none, csv, tensorboard, mlflow "
        "(several: logger=[tensorboard,mlflow])"
    )
    for chosen in ("wandb", "[tensorboard,wandb]"):
        with pytest.raises(Exception) as e:
            compose([f"logger={chosen}"])
        assert describe(e.value) == (
            "logger=wandb: unknown option; choose one of csv, mlflow, none, tensorboard"
        )
    assert "logger (default: none)\n  csv " in groups_help(conf_dir())


def test_trials_finishing_at_once_share_one_parent_run(store, client, tmp_path):
    """Parallel trials (joblib, submitit) each ask for the sweep's parent run: the lock on the
    sweep folder makes exactly one."""
    from concurrent.futures import ThreadPoolExecutor

    from runner.export.mlflow import PARENT, _client, _experiment, _parent

    sweep = tmp_path / "multirun" / "12-00-00"
    sweep.mkdir(parents=True)
    experiment = _experiment(_client(store), "parallel", None)
    with ThreadPoolExecutor(4) as pool:
        ids = list(pool.map(lambda _: _parent(_client(store), sweep, store, experiment), range(4)))
    assert len(set(ids)) == 1
    assert json.loads((sweep / PARENT).read_text()) == {store: ids[0]}
    assert [r.info.run_id for r in _runs(client, "parallel")] == ids[:1]


def test_every_run_status_has_an_hparams_session_status():
    """A run stopped by Ctrl-C is logged too: every status a run can end with maps to a value
    of the HParams plugin's Status enum (it has no ABORTED)."""
    pytest.importorskip("tensorboardX")
    from tensorboardX.proto.api_pb2 import Status

    from runner import rundir
    from runner.export import tensorboard as tb

    for status in (*tb.STATUS, *rundir.LIFECYCLE):
        summary = tb._session_end(status)
        assert summary.value, status
    assert Status.Name(Status.Value(tb.STATUS["interrupted"])) == "STATUS_UNKNOWN"
