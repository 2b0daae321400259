"""The rows of `runner compare`: runs or groups of runs (mean ± std), their sort order, which
columns to show (only the settings that differ, unless --all/--keep/--drop) and the cells."""

from __future__ import annotations

import math
import re
from collections import Counter

from runner import rundir
from runner.compare.render import SPARK, Cell, Column, mean_curve, missing, sparkline
from runner.compare.results import Keys, ResultsError, Run, natural_key, show_value

# ---------------------------------------------------------------------------------------------
# rows: runs or groups of runs, both answering .get(key)


class Group:
    def __init__(self, gkeys: list[tuple], values: tuple, runs: list[Run]):
        self.gkeys, self.values, self.runs = gkeys, values, runs
        self.id = " ".join(show_value(v) for v in values)

    def stats(self, key):
        vals = [
            float(v)
            for v in (r.get(key) for r in self.runs)
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
        ]
        if not vals:
            return None, None
        mean = sum(vals) / len(vals)
        std = (
            math.sqrt(sum((v - mean) ** 2 for v in vals) / (len(vals) - 1))
            if len(vals) > 1
            else None
        )
        return mean, std

    def status(self) -> str:
        counts = Counter(r.status for r in self.runs)
        if len(counts) == 1:
            return next(iter(counts))
        return ", ".join(f"{n} {s}" for s, n in counts.most_common())

    def get(self, key):
        if key in self.gkeys:
            return self.values[self.gkeys.index(key)]
        if key == ("s", "status"):
            return self.status()
        if key == ("s", "id"):
            return self.id
        if key[0] == "m":
            return self.stats(key)[0]
        vals = {show_value(r.get(key)) for r in self.runs}
        return self.runs[0].get(key) if len(vals) == 1 else None


def hashable(v):
    return show_value(v) if isinstance(v, (list, dict)) else v


def make_groups(runs: list[Run], gkeys: list[tuple]) -> list[Group]:
    groups: dict = {}
    for r in runs:
        values = tuple(r.get(k) for k in gkeys)
        groups.setdefault(tuple(hashable(v) for v in values), (values, []))[1].append(r)
    return [Group(gkeys, values, members) for values, members in groups.values()]


# ---------------------------------------------------------------------------------------------
# sorting


def _default_desc(key: tuple) -> bool:
    """Metrics that are better higher (rundir.higher_is_better) sort descending, the rest
    ascending."""
    return key[0] == "m" and bool(rundir.higher_is_better(key[1]))


def parse_sort(text: str, keys: Keys, option: str) -> list[tuple]:
    spec = []
    for part in text.split(","):
        part = part.strip()
        name, _, direction = part.partition(":")
        if direction not in ("", "asc", "desc"):
            raise ResultsError(f"{option}: '{part}': the direction after ':' is asc or desc")
        if not name:
            raise ResultsError(f"{option}: empty key in '{text}'")
        key = keys.resolve(name, option)
        spec.append((key, _default_desc(key) if not direction else direction == "desc"))
    return spec


def default_sort(runs: list[Run], keys: Keys) -> list[tuple]:
    """The runs' monitor (most common one): best_val_acc descending, best_val_loss ascending."""
    counts = Counter(
        (r.metrics["monitor"], r.metrics.get("mode"))
        for r in runs
        if isinstance(r.metrics.get("monitor"), str)
    )
    if counts:
        (monitor, mode), _ = counts.most_common(1)[0]
        if f"best_{monitor}" in keys.metrics:
            desc = mode == "max" if mode else bool(rundir.higher_is_better(monitor))
            return [(("m", f"best_{monitor}"), desc)]
    for name in ("best_val_acc", "best_val_rmse", "best_val_loss"):
        if name in keys.metrics:
            return [(("m", name), _default_desc(("m", name)))]
    return []


def sortable(v):
    if v is None or isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return (0, float(v))
    return (1, natural_key(show_value(v)))


def sort_items(items: list, spec: list[tuple]) -> list:
    """Stable multi-key sort; rows without a value for a key go last in either direction."""
    for key, desc in reversed(spec):
        present, absent = [], []
        for it in items:
            sv = sortable(it.get(key))
            if sv is None:
                absent.append(it)
            else:
                present.append((sv, it))
        present.sort(key=lambda t: t[0], reverse=desc)
        items = [it for _, it in present] + absent
    return items


# ---------------------------------------------------------------------------------------------
# columns

REASON = ("s", "reason")
# Settings a sweeper writes into each trial as bookkeeping, not hyperparameters: hidden from the
# columns unless --all or --keep asks, and left out of `runner best`'s rerun line.
SWEEPER_KEYS = ("trainer.prune_curve",)


def rerun_overrides(overrides: list[str]) -> list[str]:
    """The overrides without the SWEEPER_KEYS ones: what reruns the configuration alone."""
    return [o for o in overrides if o.split("=", 1)[0].lstrip("+~") not in SWEEPER_KEYS]


def _regexes(patterns: list[str], option: str) -> list:
    out = []
    for p in patterns:
        try:
            out.append(re.compile(p))
        except re.error as e:
            raise ResultsError(f"{option}: bad regular expression '{p}' ({e})") from None
    return out


def _matches(rxs, key: tuple) -> bool:
    names = {key[1], Keys.label(key)}
    return any(rx.search(n) for rx in rxs for n in names)


def choose_columns(
    args, keys: Keys, runs: list[Run], gkeys: list[tuple], sort_spec, fmt: str
) -> tuple[list[Column], int]:
    """Columns to show, and how many settings were hidden because equal in every row."""
    keep, drop = _regexes(args.keep, "--keep"), _regexes(args.drop, "--drop")
    all_keys = [("p", k) for k in keys.params] + [("m", k) for k in keys.metrics]
    for rx, pattern in zip(keep, args.keep):
        if not any(_matches([rx], k) for k in all_keys):
            raise ResultsError(
                f"--keep: '{pattern}' matches no setting or metric; available: {keys.available()}"
            )
    cols = [Column("id", "id", ("s", "id"))] if not gkeys else []
    for k in gkeys:
        kind = {"p": "param", "m": "text"}.get(k[0], "status" if k[1] == "status" else "id")
        cols.append(Column(Keys.label(k), kind, k))
    if gkeys:
        cols.append(Column("n", "n"))
    if ("s", "status") not in gkeys:
        cols.append(Column("status", "status", ("s", "status")))

    hidden = 0
    params = []
    for k in keys.params:
        key = ("p", k)
        if key in gkeys:
            continue
        bookkeeping = k in SWEEPER_KEYS  # hidden, but not counted as equal in all rows
        if gkeys:
            show = False
        else:
            # A key some runs lack (optimizer.b1 for sgd) differs only where runs have it.
            seen = {hashable(r.params[k]) for r in runs if k in r.params}
            show = args.all or (len(seen) > 1 and not bookkeeping)
            hidden += not show and not bookkeeping
        if _matches(keep, key) and not show:
            show = True
            hidden -= not gkeys and not bookkeeping
        if show and drop and _matches(drop, key):
            show = False
        if show:
            params.append(key)
    cols += [Column(Keys.label(k), "param", k) for k in params]

    metric_names = list(dict.fromkeys(r.metric for r in runs if r.metric))
    wanted = [f"{part}_{m}" for m in metric_names for part in ("best_val", "final_val", "test")]
    wanted += ["best_val_loss", "best_epoch", "epochs_run", "wall_time"]
    wanted += [k[1] for k, _ in sort_spec if k[0] == "m"]
    wanted += [k for k in keys.metrics if _matches(keep, ("m", k))]
    for name in dict.fromkeys(wanted):
        key = ("m", name)
        if name not in keys.metrics or key in gkeys:
            continue
        if drop and _matches(drop, key) and not _matches(keep, key):
            continue
        cols.append(Column(name, "metric", key, rundir.better(name)))
    if fmt in ("table", "markdown") and not any(rx.search(SPARK) for rx in drop):
        cols.append(Column(SPARK, "spark"))
    if not gkeys and any(r.reason for r in runs) and not (drop and _matches(drop, REASON)):
        cols.append(Column("reason", "text", REASON))  # why unreadable or stale
    return cols, max(hidden, 0)


def build_rows(cols: list[Column], items: list) -> list[list]:
    rows = []
    for it in items:
        row = []
        for col in cols:
            if col.kind == "spark":
                runs = it.runs if isinstance(it, Group) else [it]
                curves = [c for c in (r.val_curve() for r in runs) if c]
                row.append(sparkline(curves[0] if len(curves) == 1 else mean_curve(curves)[0]))
            elif col.kind == "n":
                row.append(Cell(len(it.runs)))
            elif col.kind == "metric":
                if isinstance(it, Group) and col.key not in it.gkeys:
                    mean, std = it.stats(col.key)
                    counts = all(type(r.get(col.key)) in (int, type(None)) for r in it.runs)
                    row.append(Cell(mean, std, grouped=True, counts=counts))
                else:
                    row.append(Cell(it.get(col.key)))
            elif col.kind == "param" and isinstance(it, Run):
                row.append(it.params.get(col.key[1], missing()))
            elif col.kind == "param" and col.key not in it.gkeys:  # --keep in groups
                values = {hashable(r.params.get(col.key[1])) for r in it.runs}
                row.append(it.runs[0].params.get(col.key[1]) if len(values) == 1 else "*")
            else:
                row.append(it.get(col.key))
        rows.append(row)
    return rows


def caption(runs, shown, items, gkeys, sort_spec, hidden) -> str:
    counts = Counter(r.status for r in shown)
    parts = [
        f"{len(shown)} of {len(runs)} runs" if len(shown) != len(runs) else f"{len(runs)} runs"
    ]
    parts[0] += " (" + ", ".join(f"{n} {s}" for s, n in counts.most_common()) + ")"
    if gkeys:
        varying = [
            Keys.label(("p", k))
            for k in dict.fromkeys(k for r in shown for k in r.params)
            if ("p", k) not in gkeys
            and any(
                len({hashable(r.params[k]) for r in g.runs if k in r.params}) > 1 for g in items
            )
        ]
        if len(varying) > 6:
            varying = varying[:6] + [f"{len(varying) - 6} more"]
        parts.append(
            f"{len(items)} groups; mean ± std (n-1) over "
            f"{', '.join(varying) if varying else 'repeats'}"
        )
    if sort_spec:
        parts.append(
            "sorted by "
            + ", ".join(f"{Keys.label(k)} {'desc' if d else 'asc'}" for k, d in sort_spec)
        )
    if hidden:
        parts.append(f"{hidden} settings equal in all rows hidden (--all shows them)")
    return "; ".join(parts)
