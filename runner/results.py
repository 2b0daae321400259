"""Read run directories as the runner leaves them, without importing jax, hydra or omegaconf:
`.hydra/config.yaml` (the composed config, flattened to dotted keys), `.hydra/overrides.yaml`,
`metrics.json` and `curves.csv`. A run that is unreadable, half-written or still going is still
listed (status running or incomplete) with a warning; reading never raises for one bad run.

Used by `runner compare`, `runner best` and `runner plot` (runner.compare)."""
from __future__ import annotations

import json
import math
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from runner.compare_yaml import load_yaml, parse_config

FINAL = ("completed", "diverged", "failed")
STATUSES = FINAL + ("running", "incomplete")
# A run whose metrics.json says "running" but whose files have not changed for this long is
# probably interrupted: it is still listed as running, with a warning.
STALE_AFTER_S = 30 * 60

# Short names for metrics.json keys (--sort, --where, --group-by, --keep accept both).
METRIC_ALIASES = {
    "val_acc": "best_val_acc", "val_rmse": "best_val_rmse", "val_loss": "best_val_loss",
    "acc": "best_val_acc", "rmse": "best_val_rmse", "loss": "best_val_loss",
    "train_loss": "final_train_loss", "train_acc": "final_train_acc",
    "train_rmse": "final_train_rmse", "time": "wall_time", "wall": "wall_time",
}
SPECIAL = ("id", "status", "path")


class ResultsError(Exception):
    """Bad input (unknown key, bad path): one line for the user, exit code 2."""


class NoRuns(ResultsError):
    """No run directory under the given paths: exit code 1."""


def flatten(cfg, prefix: str = "") -> dict:
    """{"optimizer": {"lr": 0.1}} -> {"optimizer.lr": 0.1}; lists and empty maps are leaves."""
    out = {}
    for k, v in cfg.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


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
    status: str = "incomplete"
    params: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    warnings: list = field(default_factory=list)
    _curves: list | None = None
    _curve_fields: list | None = None
    _overrides: list | None = None

    @property
    def metric(self) -> str | None:
        """"acc" or "rmse" (from metrics.json, else from the curves' header)."""
        m = self.metrics.get("metric")
        if m:
            return m
        self.curves()
        for name in self._curve_fields or ():
            if name in ("val_acc", "val_rmse"):
                return name[4:]
        return None

    def get(self, key: tuple):
        kind, name = key
        if kind == "p":
            return self.params.get(name)
        if kind == "m":
            return self.metrics.get(name)
        return {"id": self.id, "status": self.status, "path": str(self.path)}[name]

    def curves(self) -> list[dict]:
        """curves.csv rows as {field: float} (NaN for empty cells); [] if missing."""
        if self._curves is None:
            self._curves, self._curve_fields = [], []
            p = self.path / "curves.csv"
            try:
                text = p.read_text()
            except FileNotFoundError:
                return self._curves
            except OSError as e:
                self.warnings.append(f"cannot read curves.csv: {e.strerror}")
                return self._curves
            lines = text.splitlines()
            if not lines:
                return self._curves
            names = lines[0].strip().split(",")
            self._curve_fields = names
            for line in lines[1:]:
                cells = line.split(",")
                if len(cells) != len(names):
                    if line.strip():
                        self.warnings.append("curves.csv has a malformed line (half-written?)")
                    continue
                row = {}
                for n, c in zip(names, cells):
                    try:
                        row[n] = float(c) if c else math.nan
                    except ValueError:
                        row[n] = math.nan
                self._curves.append(row)
        return self._curves

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
            try:
                ov = load_yaml((self.path / ".hydra" / "overrides.yaml").read_text())
                self._overrides = [str(x) for x in ov] if isinstance(ov, list) else []
            except Exception:  # noqa: BLE001 - a missing/odd file means no overrides shown
                self._overrides = []
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
    key, better = (f"val_{m}", max) if m == "acc" else ("val_loss", min)
    finite = [(i, r[key]) for i, r in enumerate(rows) if math.isfinite(r.get(key, math.nan))]
    if finite:
        target = better(v for _, v in finite)
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
    run = Run(path=path)
    hydra = path / ".hydra"
    try:
        cfg = parse_config((hydra / "config.yaml").read_text())
        if not isinstance(cfg, dict):
            raise ValueError("not a mapping")
        run.params = flatten(cfg)
        config_ok = True
    except Exception as e:  # noqa: BLE001 - any unreadable config: listed as incomplete
        run.warnings.append(f"unreadable .hydra/config.yaml ({type(e).__name__})")
        config_ok = False

    mpath = path / "metrics.json"
    try:
        text = mpath.read_text()
    except FileNotFoundError:
        text = None
        run.warnings.append("no metrics.json (not started, refused or interrupted)")
    except OSError as e:
        text = None
        run.warnings.append(f"cannot read metrics.json: {e.strerror}")
    metrics = None
    if text is not None:
        try:
            metrics = json.loads(text)
            if not isinstance(metrics, dict):
                raise ValueError("not an object")
        except ValueError:
            metrics = None
            run.warnings.append("unreadable metrics.json (half-written?)")
    status = metrics.get("status") if metrics else None
    if metrics:
        run.metrics = {k: v for k, v in metrics.items()
                       if k != "status" and (v is None or isinstance(v, (int, float, str)))}
    if status in FINAL:
        run.status = status
    elif status == "running":
        run.status = "running"
        now = time.time() if now is None else now
        mtimes = []
        for p in (mpath, path / "curves.csv"):
            try:
                mtimes.append(p.stat().st_mtime)
            except OSError:
                pass
        idle = now - max(mtimes) if mtimes else 0.0
        if idle > STALE_AFTER_S:
            run.warnings.append(f"says running but nothing was written for {idle / 3600:.1f} h "
                                f"(interrupted?)")
    else:
        run.status = "incomplete"
        if metrics is not None:
            run.warnings.append(f"metrics.json has status {status!r}")
    if not config_ok:
        run.status = "incomplete"
    if run.status in ("running", "incomplete"):
        _from_curves(run)
    return run


def _is_run(path: Path) -> bool:
    return (path / ".hydra").is_dir()


def find_run_dirs(root: Path) -> list[Path]:
    """Run directories at or under root (a run, a sweep or any folder above them)."""
    if not root.exists():
        raise ResultsError(f"{root}: no such file or directory")
    if root.is_file():
        for parent in (root.parent, root.parent.parent):
            if _is_run(parent):
                return [parent]
        raise ResultsError(f"{root}: not a run directory (a run has a .hydra/ folder)")
    if _is_run(root):
        return [root]
    found = []
    for dirpath, dirnames, _ in os.walk(root):
        if ".hydra" in dirnames:
            found.append(Path(dirpath))
            dirnames[:] = []
            continue
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
    return found


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
        raise NoRuns(f"no runs found under {', '.join(str(p) for p in paths)} "
                     f"(a run is a folder with .hydra/ in it)")
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
        aliases = [a for a, t in METRIC_ALIASES.items() if t in self.metrics]
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
        if METRIC_ALIASES.get(name) in self.metrics:
            return ("m", METRIC_ALIASES[name])
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
        names = list(SPECIAL) + self.metrics + list(METRIC_ALIASES) + self.params + list(
            self._groups)
        close = difflib.get_close_matches(name, names, n=3, cutoff=0.6)
        return f"unknown key '{name}'" + (f" (did you mean {' or '.join(close)}?)"
                                          if close else "")

    def resolve(self, name: str, option: str) -> tuple:
        key = self.find(name)
        if key is None:
            raise ResultsError(f"{option}: {self.unknown(name)}; available: {self.available()}")
        return key
