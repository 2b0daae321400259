"""A sweep folder read for its search views: the swept hyperparameters (axes, from trials.json's
search space), every trial's values, status and objective (summary.json, brought up to date from
the trials' own metrics.json while the sweep runs), and the edge-of-range warning. Pure Python,
no NumPy: `runner compare` (runner.compare.search), `runner plot` and the sweep's closing table
(runner.sweep.report) all use it, and the import contracts keep runner.compare and runner.sweep
apart, so it lives beside them. The drawing is runner.searchplot, the importance estimate
runner.importance.

Scales: an interval tagged log is log-scaled; a numeric grid (a,b,c / logspace / geomspace /
range) is log-scaled when its values are all positive and span at least a factor LOG_SPAN (so
lr=0.001,0.01,0.1 and width=int(geomspace(16,256,5)) are, seed=range(5) and width=64,128 are
not); other numbers are linear; anything else is categorical, in the order of the grid.

The edge of a range (edge_warnings), for a log-scaled setting only: for a grid, its smallest
or largest value; for an interval, the outer EDGE_FRACTION (10 %) of its length in log10 at
either end (for tag(log,interval(1e-4,1e-1)), three decades: below 2.0e-4 or above 5.0e-2,
i.e. within a factor 2 of a bound), where, besides the best trial, the runners-up agree: the
TOP_AGREE best completed trials all lie in the outer third on that side. The best value alone
would land in an edge band in 20 % of sweeps for a setting that does not matter at all (a
log-uniform search puts 10 % of its trials in each band); with the runners-up in the outer
third as well, ~2 %; for a setting whose optimum lies beyond the bound, the best trials crowd
towards it, and the notes' advice (002, hyperparameter optimisation: "adjust range") is to
widen the range. A grid has a handful of values, each tried on purpose: its best at the
smallest or largest value is reason enough."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from runner import rundir

TRIALS = "trials.json"
SUMMARY = "summary.json"
SEARCH_PNG = "search.png"
LOG_SPAN = 10.0  # a positive numeric grid spanning at least this factor is log-scaled
EDGE_FRACTION = 0.1  # an interval's edge: this share of its (log10) length at either end
TOP_AGREE = 3  # an interval's edge counts when this many best trials sit in its outer third
# Trials whose objective tells how good their settings are: a diverged trial's objective is the
# best it reached before it stopped (its settings made it diverge: that is information);
# a pruned one trained fewer epochs than the others, so its objective is not comparable.
SCORED = (rundir.COMPLETED, rundir.DIVERGED)
# Below this many scored trials a random forest's importance estimate is noise (runner.importance)
MIN_TRIALS = 8


class SearchError(Exception):
    """A sweep folder that cannot be read: one line naming the file, for the user."""


class NothingYet(SearchError):
    """A readable sweep with nothing to show yet (no trial has an objective)."""


@dataclass
class Axis:
    """One swept hyperparameter: `scale` is log, linear or category; low/high the searched
    range (numbers); `grid` the grid's values (natives; empty for an interval)."""

    name: str
    scale: str
    low: float | None = None
    high: float | None = None
    grid: list = field(default_factory=list)
    integer: bool = False

    def categories(self) -> list[str]:
        return [show(v) for v in self.grid]

    def position(self, value) -> float | None:
        """The value's coordinate on the axis: log10 on a log axis, the grid index for a
        category; None for a value the axis cannot place (a key left out of this trial)."""
        if self.scale == "category":
            try:
                return float(self.categories().index(show(value)))
            except ValueError:
                return None
        if not is_number(value):
            return None
        if self.scale == "log":
            return math.log10(value) if value > 0 else None
        return float(value)

    def describe_range(self) -> str:
        if self.scale == "category":
            return ", ".join(self.categories())
        what = f"[{short(self.low)}, {short(self.high)}]"
        if self.grid:
            what = f"{len(self.grid)} values in {what}"
        return what + (" log" if self.scale == "log" else "")


@dataclass
class Trial:
    job: int
    stage: int
    status: str
    objective: float | None
    params: dict
    dir: str | None = None

    @property
    def scored(self) -> bool:
        return self.status in SCORED and self.objective is not None


@dataclass
class Sweep:
    path: Path
    kind: str
    monitor: str | None
    mode: str  # max | min
    axes: list[Axis]
    trials: list[Trial]
    best: dict | None  # the params of the best trial (of the best configuration over seeds)
    # False: no search space stored (a summary.json alone): the axes are the values tried,
    # which say nothing about the range that was searched, so no edge warning
    space_known: bool = True

    def scored(self) -> list[Trial]:
        return [t for t in self.trials if t.scored]

    def ranked(self) -> list[Trial]:
        """The scored trials, best first."""
        sign = -1.0 if self.mode == "max" else 1.0
        return sorted(self.scored(), key=lambda t: (sign * t.objective, t.job))


def is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def show(v) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, (list, dict)):
        return json.dumps(v, separators=(",", ":"))  # as typed: model.widths=[64,64]
    return str(v)


def short(v) -> str:
    return f"{v:.3g}" if is_number(v) else show(v)


def native(s):
    """'0.01' -> 0.01, '3' -> 3, 'adam' -> 'adam': a value string as a summary cell."""
    if not isinstance(s, str):
        return s
    for cast in (int, float):
        try:
            return cast(s)
        except ValueError:
            pass
    return s


def is_sweep_dir(path) -> bool:
    p = Path(path)
    return (p / TRIALS).is_file() or (p / SUMMARY).is_file()


def _read_json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise SearchError(f"{path}: cannot read it ({' '.join(str(e).split())})") from None
    if not isinstance(data, dict):
        raise SearchError(f"{path}: not a JSON object")
    return data


def axes_of(space: list[dict]) -> list[Axis]:
    """The swept hyperparameters of a search space as trials.json stores it (runner.sweep.space
    Param.to_json: key, kind fixed|choice|interval, values, low, high, log, integer)."""
    axes = []
    for p in space:
        name = str(p.get("key", "")).lstrip("+~")
        kind = p.get("kind")
        if kind == "interval" and is_number(p.get("low")) and is_number(p.get("high")):
            log = bool(p.get("log")) and p["low"] > 0
            axes.append(
                Axis(
                    name,
                    "log" if log else "linear",
                    p["low"],
                    p["high"],
                    [],
                    bool(p.get("integer")),
                )
            )
        elif kind == "choice":
            axes.append(_grid_axis(name, [native(v) for v in p.get("values") or []]))
    return axes


def _grid_axis(name: str, values: list) -> Axis:
    nums = [v for v in values if is_number(v)]
    if values and len(nums) == len(values):
        lo, hi = min(nums), max(nums)
        log = lo > 0 and hi >= LOG_SPAN * lo
        integer = all(isinstance(v, int) for v in nums)
        return Axis(name, "log" if log else "linear", lo, hi, values, integer)
    return Axis(name, "category", grid=list(dict.fromkeys(show(v) for v in values)))


def _axes_from_trials(trials: list[Trial]) -> list[Axis]:
    """Without a stored space (a summary.json alone): each key's values seen, as a grid."""
    keys: list[str] = []
    for t in trials:
        keys += [k for k in t.params if k not in keys]
    out = []
    for k in keys:
        seen = [t.params[k] for t in trials if k in t.params]
        out.append(_grid_axis(k, sorted({show(v): v for v in seen}.values(), key=show)))
    return out


def objective(metrics: dict) -> float | None:
    """A trial's objective from its metrics.json: the k-fold mean, else the best value of the
    monitored metric (None when not finite). runner.sweep and runner.compare both use it."""
    if metrics.get("cv_folds") and is_number(metrics.get("cv_mean")):
        return float(metrics["cv_mean"])
    monitor = metrics.get("monitor")
    v = metrics.get(f"best_{monitor}") if monitor else None
    return float(v) if is_number(v) else None


def load_sweep(path) -> Sweep:
    """The sweep in folder `path`. Raises SearchError for a folder without trials.json and
    summary.json, or with one of them damaged."""
    path = Path(path)
    plan = _read_json(path / TRIALS)
    summ = _read_json(path / SUMMARY)
    if plan is None and summ is None:
        raise SearchError(f"{path}: not a sweep folder (no {TRIALS} or {SUMMARY})")
    return sweep_of(summ, plan, path)


def sweep_of(summ: dict | None, plan: dict | None = None, path=".") -> Sweep:
    """The sweep of a summary (runner.sweep.report.summary's dict) and/or plan (trials.json's)."""
    path = Path(path)
    stages = (plan or {}).get("stages") or (summ or {}).get("stages") or []
    rows = {r["job"]: r for r in (summ or {}).get("trials", []) if isinstance(r, dict)}
    planned = (plan or {}).get("trials") or list(rows.values())
    trials, modes = [], []
    for t in planned:
        job = t.get("job")
        row = rows.get(job, {})
        status = row.get("status", "pending")
        value = row.get("objective")
        run_dir = row.get("dir") or str(path / str(job))
        if status not in rundir.FINAL:
            got = rundir.read_metrics(run_dir)  # the summary is rewritten per trial: look closer
            if got.ok and got.data.get("status") in rundir.FINAL:
                status = got.data["status"]
                value = objective(got.data)
                modes.append(got.data.get("mode"))
        trials.append(
            Trial(
                job=job,
                stage=t.get("stage", 1),
                status=status,
                objective=float(value) if is_number(value) else None,
                params=dict(t.get("params") or row.get("params") or {}),
                dir=run_dir,
            )
        )
    mode = (summ or {}).get("mode") or next((m for m in modes if m in ("max", "min")), "max")
    # The first stage's space is the range the user asked for (later stages are narrowed)
    space = next((st["space"] for st in stages if isinstance(st, dict) and st.get("space")), None)
    axes = axes_of(space) if space else _axes_from_trials(trials)
    sweep = Sweep(
        path=path,
        kind=str((plan or summ or {}).get("kind", "")),
        monitor=(summ or {}).get("monitor"),
        mode=mode,
        axes=axes,
        trials=trials,
        best=None,
        space_known=bool(space),
    )
    sweep.best = _best_params(summ, sweep)
    return sweep


def _best_params(summ: dict | None, sweep: Sweep) -> dict | None:
    """The sweep's own choice (summary.json: over seeds when seeds were repeated, else the best
    trial of the last stage), else the best completed trial."""
    if summ:
        group = summ.get("best_group")
        if group and any(g.get("n_trials", 1) > 1 for g in summ.get("groups", [])):
            return dict(group.get("params") or {})
        if summ.get("best"):
            return dict(summ["best"].get("params") or {})
    done = [t for t in sweep.ranked() if t.status == rundir.COMPLETED]
    return dict(done[0].params) if done else None


def edge_of(axis: Axis, value) -> tuple[str, float] | None:
    """("lower" | "upper", the bound) when `value` sits at that edge of the axis' searched range
    (module docstring), else None. Only log-scaled axes have edges worth a warning."""
    if axis.scale != "log" or not is_number(value) or value <= 0:
        return None
    lo, hi = axis.low, axis.high
    if axis.grid:
        close = lambda a, b: math.isclose(a, b, rel_tol=1e-9)
        if close(value, lo):
            return "lower", lo
        if close(value, hi):
            return "upper", hi
        return None
    span = math.log10(hi) - math.log10(lo)
    at = (math.log10(value) - math.log10(lo)) / span
    if at <= EDGE_FRACTION:
        return "lower", lo
    if at >= 1 - EDGE_FRACTION:
        return "upper", hi
    return None


def edge_message(axis: Axis, side: str, bound: float, value) -> str:
    return (
        f"{axis.name} best at the {side} edge {short(bound)} "
        f"({short(value)} in [{short(axis.low)}, {short(axis.high)}]): widen the range"
    )


def _agree(axis: Axis, side: str, sweep: Sweep) -> bool:
    """The TOP_AGREE best completed trials all have values in the outer third of the interval
    on `side` (module docstring)."""
    top = [t for t in sweep.ranked() if t.status == rundir.COMPLETED][:TOP_AGREE]
    lo, hi = math.log10(axis.low), math.log10(axis.high)
    for t in top:
        v = t.params.get(axis.name)
        if not is_number(v) or v <= 0:
            return False
        at = (math.log10(v) - lo) / (hi - lo)
        if (at > 1 / 3) if side == "lower" else (at < 2 / 3):
            return False
    return bool(top)


def edge_warnings(sweep: Sweep) -> list[str]:
    """One line per log-scaled hyperparameter whose best value sits at an edge of its range
    (module docstring)."""
    if not sweep.best or not sweep.space_known:
        return []
    out = []
    for axis in sweep.axes:
        value = sweep.best.get(axis.name)
        hit = edge_of(axis, value)
        if hit and (axis.grid or _agree(axis, hit[0], sweep)):
            out.append(edge_message(axis, hit[0], hit[1], value))
    return out


def too_few(sweep: Sweep) -> str | None:
    """The line `--importance` prints instead of an estimate when too few trials have an
    objective that counts (runner.importance), else None."""
    n = len(sweep.scored())
    if n >= MIN_TRIALS:
        return None
    return (
        f"importance: {n} trial{'s' if n != 1 else ''} with an objective (completed or "
        f"diverged); at least {MIN_TRIALS} are needed for an estimate"
    )
