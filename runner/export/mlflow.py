"""A run folder as an MLflow run, written with MlflowClient (the `mlflow` extra: mlflow-skinny,
SQLAlchemy and Alembic for the SQLite store).

    params     the settings (runner.export.hparams), 100 a request
    metrics    curves.csv's columns per epoch (step = epoch), diagnostics.csv's as
               diagnostics/LAYER/STAT, metrics.json's numbers (best_val_acc, test_loss, ...)
    tags       runner.status (completed, diverged, failed, interrupted), runner.run_dir,
               runner.overrides; MLflow's own status FINISHED, FAILED or KILLED
    artifacts  metrics.json, curves.png, diagnostics.png (those the run has)

The store: logger.mlflow.tracking_uri, else an SQLite database <paths.outputs>/mlflow.db with
artifacts in <paths.outputs>/mlartifacts. A sweep's trials are child runs (tag
mlflow.parentRunId) of one parent run per sweep folder; the parent's id is kept in the sweep
folder (mlflow_parent.json), created under a file lock, since trials may be separate processes
(joblib, submitit) finishing at once. Sending a run again replaces its MLflow run (the old one
is deleted), so an export never doubles a curve.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import math
import os
import time
from pathlib import Path

from runner import rundir
from runner.export import RECORD, RunFiles, hparams, numbers, require

PARENT = "mlflow_parent.json"  # in the sweep folder: {tracking_uri: parent run id}
STATUS = {"completed": "FINISHED", "diverged": "FAILED", "failed": "FAILED"}
ARTIFACTS = (rundir.METRICS, rundir.CURVES_PNG, rundir.DIAGNOSTICS_PNG)
SKIP_CURVES = ("epoch", "step")


def default_store(run: RunFiles) -> tuple[str, str]:
    """(tracking URI, artifact root) under the run's paths.outputs (relative: to the current
    folder, as `runner` resolves it)."""
    outputs = (run.config.get("paths") or {}).get("outputs") or "outputs"
    if not isinstance(outputs, str) or "${" in outputs:
        outputs = "outputs"
    root = Path(os.path.expanduser(outputs)).resolve()
    root.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{root / 'mlflow.db'}", (root / "mlartifacts").as_uri()


def _beside(uri: str) -> str | None:
    """The artifact root of a new experiment in a local SQLite store: beside the database file.
    MLflow's own default is ./mlruns in whatever folder the run started from; a server's URI
    (None) keeps the server's setting."""
    if not uri.startswith("sqlite:///"):
        return None
    return (Path(uri[len("sqlite:///") :]).resolve().parent / "mlartifacts").as_uri()


@functools.cache
def _client(uri: str):
    """One client a store and process: a vmapped sweep sends all its trials from one process,
    and opening a store (checking its schema) takes seconds."""
    # MLflow 3 reports usage to its developers unless told not to: a local experiment runner
    # sends nothing anywhere on its own. MLFLOW_DISABLE_TELEMETRY=false turns it back on.
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    require("mlflow", "mlflow")
    # MLflow and Alembic announce each table they create (INFO lines on stderr) the first
    # time a store is used: not the run's news.
    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def _experiment(client, name: str, artifacts: str | None) -> str:
    found = client.get_experiment_by_name(name)
    if found is None:
        try:
            return client.create_experiment(name, artifact_location=artifacts)
        except Exception:
            found = client.get_experiment_by_name(name)
            if found is None:
                raise
    if found.lifecycle_stage == "deleted":
        client.restore_experiment(found.experiment_id)
    return found.experiment_id


def _parent(client, sweep: Path, uri: str, experiment_id: str) -> str:
    """The sweep's parent run: made by the first trial to get here, under a lock on the sweep
    folder, and kept in PARENT for the others and for later exports."""
    import fcntl

    with open(sweep / ".mlflow_parent.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            known = json.loads((sweep / PARENT).read_text(encoding="utf-8"))
            if not isinstance(known, dict):
                known = {}
        except (OSError, ValueError):
            known = {}
        run_id = known.get(uri)
        if run_id:
            try:
                if client.get_run(run_id).info.lifecycle_stage == "active":
                    return run_id
            except Exception:  # noqa: BLE001 - gone from the store: make a new one
                pass
        name = f"sweep {sweep.parent.name}/{sweep.name}"
        parent = client.create_run(
            experiment_id,
            run_name=name,
            tags={"runner.sweep_dir": str(sweep.resolve()), "runner.kind": "sweep"},
        )
        known[uri] = parent.info.run_id
        rundir.write_json(sweep / PARENT, known)
        return parent.info.run_id


def _previous(run: RunFiles, uri: str) -> str | None:
    """The MLflow run this folder was sent to before (export.json), in this store."""
    try:
        entry = json.loads((run.path / RECORD).read_text(encoding="utf-8")).get("mlflow") or {}
    except (OSError, ValueError, AttributeError):
        return None
    return entry.get("run_id") if entry.get("tracking_uri") == uri else None


def _chunks(items: list, n: int):
    for i in range(0, len(items), n):
        yield items[i : i + n]


def write(run: RunFiles, opts) -> dict:
    """Send the run; returns {"tracking_uri", "experiment_id", "run_id", "parent_run_id"}."""
    if opts.tracking_uri:
        uri, artifacts = opts.tracking_uri, _beside(opts.tracking_uri)
    else:
        uri, artifacts = default_store(run)
    client = _client(uri)
    from mlflow.entities import Metric, Param

    name = opts.experiment or run.config.get("name") or "runner"
    experiment_id = _experiment(client, str(name), artifacts)
    old = _previous(run, uri)
    if old:
        with contextlib.suppress(Exception):  # already gone: nothing to replace
            client.delete_run(old)
    parent_id = _parent(client, run.sweep, uri, experiment_id) if run.sweep else None
    status = run.status
    tags = {
        "runner.status": status,
        "runner.run_dir": str(run.path.resolve()),
        "runner.overrides": " ".join(run.overrides)[:5000],
    }
    if parent_id:
        tags["mlflow.parentRunId"] = parent_id
    wall = numbers(run.metrics).get("wall_time", 0.0)
    end_ms = int(time.time() * 1000)
    label = " ".join(run.overrides) or "defaults"
    created = client.create_run(
        experiment_id,
        start_time=end_ms - int(wall * 1000),
        tags=tags,
        run_name=(f"{run.path.name}: {label}" if run.sweep else label)[:250],
    )
    run_id = created.info.run_id
    params = [Param(k, str(v)[:6000]) for k, v in hparams(run).items()]
    metrics = []
    for row in run.curves:
        epoch = row.get("epoch")
        if not isinstance(epoch, float) or not math.isfinite(epoch):
            continue
        for key, value in row.items():
            if key not in SKIP_CURVES and math.isfinite(value):
                metrics.append(Metric(key, value, end_ms, int(epoch)))
    for row in run.diagnostics:
        epoch = row.get("epoch")
        if not isinstance(epoch, float) or not math.isfinite(epoch):
            continue
        for key, value in row.items():
            if key not in ("epoch", "layer") and math.isfinite(value):
                metrics.append(
                    Metric(f"diagnostics/{row['layer']}/{key}", value, end_ms, int(epoch))
                )
    last = int(max((m.step for m in metrics), default=0))
    metrics += [Metric(k, v, end_ms, last) for k, v in numbers(run.metrics).items()]
    for chunk in _chunks(params, 100):
        client.log_batch(run_id, params=chunk)
    for chunk in _chunks(metrics, 1000):
        client.log_batch(run_id, metrics=chunk)
    for name in ARTIFACTS:
        if (run.path / name).is_file():
            client.log_artifact(run_id, str(run.path / name))
    client.set_terminated(run_id, STATUS.get(status, "KILLED"), end_time=end_ms)
    if parent_id:  # the sweep ends with its last trial; each one moves its end on
        client.set_terminated(parent_id, "FINISHED", end_time=end_ms)
    return {
        "tracking_uri": uri,
        "experiment_id": experiment_id,
        "run_id": run_id,
        "parent_run_id": parent_id,
    }
