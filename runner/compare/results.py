"""Runs as `runner compare`, `runner best` and `runner plot` (runner.compare) see them, read
through runner.rundir (the run folder's format, status and metric names), without importing jax,
hydra or omegaconf. A run that is damaged, half-done or still going is still listed (status
unreadable, stale, running or incomplete; see rundir.LIFECYCLE) with a warning; reading never
raises for one bad run."""

from __future__ import annotations

import json
import math
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from runner import rundir
from runner.rundir import ALIASES

SPECIAL = ("id", "status", "path", "reason")


class ResultsError(Exception):
    """Bad input (unknown key, bad path): one line for the user, exit code 2."""


class NoRuns(ResultsError):
    """No run directory under the given paths: exit code 1."""


def natural_key(s: str):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", s)]


def as_number(v):
    """A float for numbers and numeric strings ("1e-3"); None otherwise (also for NaN)."""
    if isinstance(v, bool) or v is None:
        return None
    if isinstance(v, (int, float)):
        return float(v) if math.isfinite(v) else None
    if isinstance(v, str):
        try:
            f = float(v)
        except ValueError:
            return None
        return f if math.isfinite(f) else None
    return None


def show_value(v) -> str:
    """A setting as text, the way it is written on the command line."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, (list, tuple)):
        return "[" + ",".join(show_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return json.dumps(v, sort_keys=True)
    return str(v)


@dataclass
class Run:
    path: Path
    id: str = ""
    status: str = rundir.INCOMPLETE
    params: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    warnings: list = field(default_factory=list)
    reason: str | None = None  # why the status is unreadable or stale
    curves_error: str | None = None  # "curves.csv: not UTF-8 (byte 0xff at 17)"
    _curves: rundir.Curves | None = None
    _curves_notes: tuple | None = None
    _overrides: list | None = None

    @property
    def metric(self) -> str | None:
        """ "acc" or "rmse" (from metrics.json, else from the curves' header)."""
        m = self.metrics.get("metric")
        if m:
            return m
        self.curves()
        return self._curves.metric()

    def get(self, key: tuple):
        kind, name = key
        if kind == "p":
            return self.params.get(name)
        if kind == "m":
            return self.metrics.get(name)
        return {
            "id": self.id,
            "status": self.status,
            "path": str(self.path),
            "reason": self.reason,
        }[name]

    def curves(self) -> list[dict]:
        """curves.csv rows as {field: float} (NaN for empty cells); [] if missing or damaged."""
        if self._curves is None:
            self._read_curves()
        if self._curves_notes is None:
            self._curves_notes = self._curves.notes
            self.warnings.extend(self._curves_notes)
        return self._curves.rows

    def curve_fields(self) -> list[str]:
        self.curves()
        return self._curves.fields

    def _read_curves(self) -> str | None:
        """Read curves.csv; the error if it is damaged."""
        got = rundir.read_curves(self.path)
        self._curves = got.data if got.ok else rundir.Curves()
        self.curves_error = got.error
        return got.error

    def val_curve(self) -> list[float]:
        """The validation metric per epoch (val_acc / val_rmse); train loss without val split."""
        rows = self.curves()
        m = self.metric
        for name in (f"val_{m}", "val_loss", "train_loss"):
            vals = [r.get(name, math.nan) for r in rows]
            if any(math.isfinite(v) for v in vals):
                return vals
        return []

    def overrides(self) -> list[str]:
        if self._overrides is None:
            got = rundir.read_overrides(self.path)
            self._overrides = got.data if got.ok else []
            if got.error:
                self.warnings.append(got.error)
        return self._overrides


def _from_curves(run: Run) -> None:
    """Summary metrics of a run without a final metrics.json, from the epochs written so far."""
    rows = run.curves()
    m = run.metric
    if not rows or not m:
        return
    got = {}
    got["metric"] = m
    got["epochs_run"] = len(rows)
    last = rows[-1]
    for split in ("train", "val"):
        for name in ("loss", m):
            v = last.get(f"{split}_{name}", math.nan)
            got[f"final_{split}_{name}"] = v if math.isfinite(v) else None
    key = f"val_{m}" if rundir.higher_is_better(m) else "val_loss"
    pick = max if rundir.higher_is_better(key) else min
    finite = [(i, r[key]) for i, r in enumerate(rows) if math.isfinite(r.get(key, math.nan))]
    if finite:
        target = pick(v for _, v in finite)
        i = next(j for j, v in finite if v == target)  # the first epoch reaching it
        got["best_epoch"] = i + 1
        for name in ("loss", m):
            v = rows[i].get(f"val_{name}", math.nan)
            got[f"best_val_{name}"] = v if math.isfinite(v) else None
    if "time" in last and math.isfinite(last["time"]):
        got["train_time"] = last["time"]
    for k, v in got.items():  # what metrics.json says (a half-finished run's) wins
        if run.metrics.get(k) is None:
            run.metrics[k] = v


def load_run(path: Path, now: float | None = None) -> Run:
    """A run folder as a Run: settings, metrics, status (rundir.status_of; unreadable when a
    file is damaged, with the reason naming it) and warnings. Never raises for a bad run."""
    run = Run(path=path)
    damaged = []
    cfg = rundir.read_config(path)
    if cfg.ok:
        run.params = cfg.data
    elif cfg.missing:
        run.warnings.append(f"no {rundir.CONFIG}")
    else:
        damaged.append(cfg.error)

    got = rundir.read_metrics(path)
    metrics = got.data if got.ok else None
    if got.missing:
        run.warnings.append(f"no {rundir.METRICS} (not started, refused or interrupted)")
    elif got.error:
        damaged.append(got.error)
    bad_curves = run._read_curves()  # read now: a damaged curves.csv makes the run unreadable
    if bad_curves:
        damaged.append(bad_curves)

    if metrics:
        run.metrics = {
            k: v
            for k, v in metrics.items()
            if k != "status"
            and k not in rundir.LIVE_KEYS
            and (v is None or isinstance(v, (int, float, str)))
        }
    mtime = rundir.last_write(path) if metrics and metrics.get("status") == rundir.RUNNING else None
    run.status = rundir.status_of(metrics, now, mtime)
    if run.status == rundir.STALE:
        run.reason = rundir.stale_reason(metrics, now, mtime)
        run.warnings.append(f"stale: says running, but {run.reason}")
    elif run.status == rundir.INCOMPLETE and metrics:
        run.warnings.append(f"{rundir.METRICS} has status {metrics.get('status')!r}")
    if cfg.missing:
        run.status = rundir.INCOMPLETE
    if damaged:
        run.status = rundir.UNREADABLE
        run.reason = "; ".join(damaged)
        run.warnings.append(f"unreadable: {run.reason}")
    if run.status not in rundir.FINAL:
        _from_curves(run)
    return run


def flat_provenance(data: dict, prefix: str = "") -> dict:
    """provenance.json as dotted keys (git.commit, versions.jax, env.XLA_FLAGS). Left out: the
    diff's text (git.diff_sha256 and diff_bytes stand for it) and the `previous` provenance of
    a resumed run."""
    out = {}
    for k, v in data.items():
        key = prefix + str(k)
        if key == "previous" or k == "diff":
            continue
        if isinstance(v, dict):
            out.update(flat_provenance(v, key + "."))
        else:
            out[key] = v
    return out


def load_provenance(run: Run) -> dict | None:
    """The run's provenance as flat_provenance's dotted keys; None when it has no
    provenance.json or a damaged one (then with a warning on the run)."""
    got = rundir.read_provenance(run.path)
    if got.error:
        run.warnings.append(got.error)
    return flat_provenance(got.data) if got.ok else None


def _is_run(path: Path) -> bool:
    return (path / rundir.HYDRA_DIR).is_dir()


def find_run_dirs(root: Path) -> list[Path]:
    """Run directories at or under root (a run, a sweep or any folder above them)."""
    if not root.exists():
        raise ResultsError(f"{root}: no such file or directory")
    if root.is_file():
        for parent in (root.parent, root.parent.parent):
            if _is_run(parent):
                return [parent]
        raise ResultsError(f"{root}: not a run directory (a run has a .hydra/ folder)")
    return rundir.run_dirs_under(root)


def load_runs(paths) -> list[Run]:
    """Every run under the paths, ordered by path (job 10 after job 9), with short ids: each
    run's path relative to the deepest folder holding them all."""
    dirs, seen = [], set()
    for p in paths:
        for d in find_run_dirs(Path(p)):
            key = os.path.realpath(d)
            if key not in seen:
                seen.add(key)
                dirs.append(d)
    if not dirs:
        raise NoRuns(
            f"no runs found under {', '.join(str(p) for p in paths)} "
            f"(a run is a folder with .hydra/ in it)"
        )
    dirs.sort(key=lambda d: natural_key(str(d)))
    absolute = [os.path.abspath(d) for d in dirs]
    common = os.path.commonpath(absolute)
    if len(dirs) == 1 or common in absolute:
        common = os.path.dirname(common)
    now = time.time()
    runs = []
    for d, a in zip(dirs, absolute):
        run = load_run(d, now)
        run.id = Path(os.path.relpath(a, common)).as_posix()
        runs.append(run)
    return runs


class Keys:
    """The keys a set of runs offers (settings, metrics, id/status/path) and their names."""

    def __init__(self, runs: list[Run]):
        params, metrics = {}, {}
        for r in runs:
            for k in r.params:
                params.setdefault(k, None)
            for k in r.metrics:
                metrics.setdefault(k, None)
        self.params = list(params)
        self.metrics = list(metrics)
        self._groups = {k[:-5]: k for k in self.params if k.endswith(".name")}

    @staticmethod
    def label(key: tuple) -> str:
        kind, name = key
        return name[:-5] if kind == "p" and name.endswith(".name") else name

    def available(self) -> str:
        aliases = [a for a, t in ALIASES.items() if t in self.metrics]
        text = ", ".join(SPECIAL)
        if self.metrics:
            text += "; metrics: " + ", ".join(self.metrics)
        if aliases:
            text += " (short: " + ", ".join(aliases) + ")"
        if self.params:
            text += "; settings: " + ", ".join(self.label(("p", k)) for k in self.params)
        return text

    def find(self, name: str) -> tuple | None:
        if name in SPECIAL:
            return ("s", name)
        if name in self.metrics:
            return ("m", name)
        if name in self.params:
            return ("p", name)
        if name in self._groups:
            return ("p", self._groups[name])
        if ALIASES.get(name) in self.metrics:
            return ("m", ALIASES[name])
        ends = [k for k in self.params if k.endswith("." + name)]
        if len(ends) == 1:
            return ("p", ends[0])
        return None

    def unknown(self, name: str) -> str:
        """Why `name` is no key: ambiguous suffix, or unknown with the closest names."""
        ends = [k for k in self.params if k.endswith("." + name)]
        if len(ends) > 1:
            return f"'{name}' is ambiguous ({', '.join(ends)})"
        import difflib

        names = list(SPECIAL) + self.metrics + list(ALIASES) + self.params + list(self._groups)
        close = difflib.get_close_matches(name, names, n=3, cutoff=0.6)
        return f"unknown key '{name}'" + (f" (did you mean {' or '.join(close)}?)" if close else "")

    def resolve(self, name: str, option: str) -> tuple:
        key = self.find(name)
        if key is None:
            raise ResultsError(f"{option}: {self.unknown(name)}; available: {self.available()}")
        return key
