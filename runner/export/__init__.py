"""Send finished runs to the tools people already have open: TensorBoard and MLflow.

Every logger works from a finished run folder (metrics.json, curves.csv, diagnostics.csv,
.hydra/config.yaml, read through runner.rundir), so one code path serves both the live hook
(`logger=tensorboard|mlflow`: runner.task and runner.resume call after_run() once the run's files
are written) and `runner export RUN_OR_SWEEP --to ...` (runner.export.main) for runs that
finished earlier. The writers are optional extras, imported only when chosen.

A logger's failure never loses the run: it is one warning line, and export.json in the run
folder records per logger what was sent (ok, where, the MLflow run id) or why not.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from runner import rundir

BACKENDS = ("tensorboard", "mlflow")
RECORD = "export.json"  # in the run folder: what each logger sent, or its error
# The pip extra that brings each logger's writer.
EXTRAS = {"tensorboard": "tensorboard", "mlflow": "mlflow"}


class ExportError(Exception):
    """Why a run could not be sent: one line for the user."""


class MissingExtra(ExportError):
    """The chosen logger's package is not installed: the same for every run."""


@dataclass
class Options:
    """Where the loggers write (logger.* of the config, or `runner export`'s options)."""

    tensorboard_dir: str = "tensorboard"
    tracking_uri: str | None = None
    experiment: str | None = None
    extra: dict = field(default_factory=dict)


def options_of(logger_cfg) -> Options:
    """Options from a validated config's logger (runner.config.LoggerConfig)."""
    tb, ml = logger_cfg.tensorboard, logger_cfg.mlflow
    return Options(
        tensorboard_dir=tb.dir if tb else "tensorboard",
        tracking_uri=ml.tracking_uri if ml else None,
        experiment=ml.experiment if ml else None,
    )


def require(module: str, backend: str):
    """Import a writer's package, or say which extra brings it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise MissingExtra(
            f"logger {backend} needs {module} ({e.name or module} is not installed): "
            f"pip install 'runner[{EXTRAS[backend]}]'"
        ) from None


@dataclass
class RunFiles:
    """What the loggers read from one finished run folder."""

    path: Path
    metrics: dict
    config: dict  # nested, as .hydra/config.yaml
    curves: list  # curves.csv rows ({field: float})
    diagnostics: list  # diagnostics.csv rows
    overrides: list

    @property
    def status(self) -> str:
        return rundir.status_of(self.metrics)

    @property
    def sweep(self) -> Path | None:
        """The sweep folder a trial belongs to (Hydra writes multirun.yaml there)."""
        parent = self.path.resolve().parent
        return parent if (parent / "multirun.yaml").is_file() else None


def read_run(path: Path) -> RunFiles:
    """A run folder's files, or ExportError naming the damaged or missing one."""
    path = Path(path)
    if not (path / rundir.CONFIG).is_file():
        raise ExportError(f"{path}: not a run folder (no {rundir.CONFIG})")
    metrics = rundir.read_metrics(path)
    if not metrics.ok:
        raise ExportError(f"{path}: {metrics.error or rundir.METRICS + ': missing'}")
    status = rundir.status_of(metrics.data)
    if status not in rundir.FINAL:
        raise ExportError(f"{path}: status {status}: not finished, nothing to send yet")
    config = rundir.read_config(path, flat=False)
    if not config.ok:
        raise ExportError(f"{path}: {config.error or rundir.CONFIG + ': missing'}")
    curves = rundir.read_curves(path)
    if curves.error:
        raise ExportError(f"{path}: {curves.error}")
    diag = rundir.read_diagnostics(path)
    overrides = rundir.read_overrides(path)
    return RunFiles(
        path=path,
        metrics=metrics.data,
        config=config.data,
        curves=curves.data.rows if curves.ok else [],
        diagnostics=diag.data if diag.ok else [],
        overrides=overrides.data if overrides.ok else [],
    )


def hparams(run: RunFiles) -> dict:
    """The run's settings as flat key -> str/number/bool: what TensorBoard's HParams table and
    MLflow's params show. Where files go and how the run reports are not hyperparameters."""
    skip = ("paths.", "logger.", "trainer.progress", "trainer.plot")
    out = {}
    for key, value in rundir.flatten(run.config).items():
        if key.startswith(skip) or key in ("paths", "logger") or value is None:
            continue
        out[key] = value if isinstance(value, (bool, int, float, str)) else str(value)
    return out


def numbers(metrics: dict) -> dict:
    """metrics.json's finite numbers (best_val_acc, test_loss, wall_time, ...)."""
    import math

    return {
        k: float(v)
        for k, v in metrics.items()
        if isinstance(v, (int, float))
        and not isinstance(v, bool)
        and math.isfinite(v)
        and k not in rundir.LIVE_KEYS
    }


def send(run: RunFiles, backend: str, opts: Options) -> dict:
    """Send one run to one logger; returns what to record (where it went)."""
    if backend == "tensorboard":
        from runner.export.tensorboard import write
    elif backend == "mlflow":
        from runner.export.mlflow import write
    else:
        raise ExportError(f"--to {backend}: unknown; choose one of {', '.join(BACKENDS)}")
    return write(run, opts)


def _record(path: Path, backend: str, entry: dict) -> None:
    import json

    target = Path(path) / RECORD
    try:
        old = json.loads(target.read_text(encoding="utf-8"))
        if not isinstance(old, dict):
            old = {}
    except (OSError, ValueError):
        old = {}
    old[backend] = {**entry, "at": time.strftime("%Y-%m-%dT%H:%M:%S")}
    import contextlib

    with contextlib.suppress(OSError):  # a read-only run folder: sent all the same
        rundir.write_json(target, old)


def export_run(path: Path, backend: str, opts: Options) -> dict:
    """Send a finished run folder to one logger and record it in export.json. Raises
    ExportError (or the writer's own error) when it cannot; the record then says why."""
    run = read_run(path)
    try:
        entry = send(run, backend, opts)
    except Exception as e:
        from runner.shell import describe

        why = str(e) if isinstance(e, ExportError) else describe(e)
        why = why.replace(" (rerun with --debug for the traceback)", "")
        _record(path, backend, {"ok": False, "error": why})
        raise (e if isinstance(e, MissingExtra) else ExportError(f"{path}: {why}")) from e
    _record(path, backend, {"ok": True, **entry})
    return entry


def after_run(run_dir: Path, logger_cfg, warn) -> list[str]:
    """The live hook: send a just-written run to each chosen logger. A failure is one warning
    (warn(line)), recorded in export.json; the run and its exit status stay as they are."""
    problems = []
    if not logger_cfg.backends:
        return problems
    opts = options_of(logger_cfg)
    for backend in logger_cfg.backends:
        try:
            export_run(Path(run_dir), backend, opts)
        except Exception as e:  # noqa: BLE001 - a logger must never cost the run
            line = f"logger {backend}: {e} (the run is kept; retry: runner export {run_dir} "
            line += f"--to {backend})"
            problems.append(line)
            warn(line)
    return problems
