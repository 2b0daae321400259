"""What a sweep leaves and shows: one summary row per trial (read back from the trial's own
metrics.json), the ranking by objective, mean +- std over seeds, summary.json / summary.csv,
best.yaml, topk.png and the final rich table.

The objective of a trial is its metrics.json's cv_mean when it ran k-fold cross-validation, else
best_<monitor> (what the task returns); `mode` (max for accuracy, min for losses and RMSE) comes
from the trials' metrics.json too.
"""

from __future__ import annotations

import csv
import io
import json
import math
import shlex
from pathlib import Path

from runner import rundir, search
from runner.rundir import FINAL, atomic_write, write_json

METRIC_KEYS = (
    "best_val_loss",
    "best_val_acc",
    "best_val_rmse",
    "test_loss",
    "test_acc",
    "test_rmse",
    "cv_folds",
    "cv_mean",
    "cv_std",
)


finite = search.is_number  # a finite int or float, not a bool


def read_metrics(run_dir) -> dict | None:
    """The trial's metrics.json (rundir.read_metrics), None when missing or damaged."""
    got = rundir.read_metrics(run_dir)
    return got.data if got.ok else None


objective = search.objective  # one rule for the sweep's summary and runner compare's views


def make_row(
    trial: dict,
    run_dir=None,
    metrics: dict | None = None,
    *,
    status: str | None = None,
    error: str | None = None,
    wall_time: float | None = None,
) -> dict:
    """One summary row: the trial's plan (job, stage, overrides, params) and its results."""
    row = {
        "job": trial["job"],
        "stage": trial.get("stage", 1),
        "status": status or "pending",
        "objective": None,
        "monitor": None,
        "mode": None,
        "epochs_run": None,
        "epochs": None,
        "budget": None,  # epochs the trial trained (a pruned trial's share)
        "wall_time": wall_time,
        "error": error,
        "params": dict(trial.get("params", {})),
        "overrides": list(trial["overrides"]),
        "dir": str(run_dir) if run_dir else None,
    }
    for k in ("bracket", "rung"):  # hyperband/sha: the trial's bracket and the rung it reached
        if k in trial:
            row[k] = trial[k]
    if metrics:
        st = metrics.get("status")
        if st in FINAL:
            row["status"] = st
        elif status is None:
            live = rundir.status_of(metrics, mtime=rundir.last_write(run_dir) if run_dir else None)
            row["status"] = live if live in (rundir.RUNNING, rundir.STALE) else "pending"
        elif st == "running" and row["status"] == "completed":
            row["status"] = "failed"  # the task returned but never finished its files
            row["error"] = row["error"] or "metrics.json still says running"
        row["objective"] = objective(metrics)
        for k in ("monitor", "mode", "epochs_run", "epochs"):
            row[k] = metrics.get(k)
        row["budget"] = row["epochs_run"]
        if row["status"] == rundir.PRUNED:
            row["pruned_by"] = metrics.get("pruned_by")
        if row["mode"] not in ("max", "min") and isinstance(row["monitor"], str):
            row["mode"] = rundir.better(row["monitor"])  # older metrics.json without a mode
        if finite(metrics.get("wall_time")):
            row["wall_time"] = metrics["wall_time"]
        for k in METRIC_KEYS:
            if k in metrics:
                row[k] = metrics[k]
        if metrics.get("error") and row["status"] == "failed":
            row["error"] = metrics["error"]
        if row["status"] == "diverged":
            row["reason"] = metrics.get("diverged_reason") or "diverged"
    if row["error"]:
        row["error"] = (
            str(row["error"]).strip().splitlines()[0] if str(row["error"]).strip() else row["error"]
        )
    return row


def sweep_mode(rows: list[dict]) -> tuple[str | None, str]:
    """(monitor, mode) of the sweep: the most common among trials with metrics."""
    seen = [(r["monitor"], r["mode"]) for r in rows if r.get("mode") in ("max", "min")]
    if not seen:
        return None, "max"
    best = max(set(seen), key=seen.count)
    return best


STATUS_ORDER = {
    "completed": 0,
    "pruned": 1,  # trained less than the completed trials: its objective is from a smaller budget
    "diverged": 2,
    "interrupted": 3,
    "failed": 3,
    "running": 4,
    "stale": 4,
    "pending": 5,
}


def rank_key(row: dict, mode: str):
    obj = row.get("objective")
    order = STATUS_ORDER.get(row["status"], 6)
    if row["status"] == "completed" and obj is None:
        order = 1
    value = (-obj if mode == "max" else obj) if obj is not None else 0.0
    return (order, value, row["job"])


def ranked(rows: list[dict], mode: str) -> list[dict]:
    return sorted(rows, key=lambda r: rank_key(r, mode))


def best_row(rows: list[dict], mode: str) -> dict | None:
    top = ranked(rows, mode)
    if top and top[0]["status"] == "completed" and top[0]["objective"] is not None:
        return top[0]
    return None


def is_seed(override: str) -> bool:
    return override.split("=", 1)[0].lstrip("+") == "seed"


def seed_groups(rows: list[dict], mode: str) -> list[dict]:
    """Trials whose overrides are equal except seed=...: mean +- std (sample, ddof=1) and n of
    the completed trials' objectives. Empty when no configuration ran with several seeds."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        key = tuple(o for o in r["overrides"] if not is_seed(o))
        groups.setdefault(key, []).append(r)
    if all(len(g) == 1 for g in groups.values()):
        return []
    out = []
    for key, members in groups.items():
        objs = [
            r["objective"]
            for r in members
            if r["status"] == "completed" and r["objective"] is not None
        ]
        n = len(objs)
        mean = math.fsum(objs) / n if n else None
        std = (
            math.sqrt(math.fsum((x - mean) ** 2 for x in objs) / (n - 1))
            if n > 1
            else (0.0 if n == 1 else None)
        )
        params = {k: v for k, v in members[0]["params"].items() if k != "seed"}
        out.append(
            {
                "overrides": list(key),
                "params": params,
                "mean": mean,
                "std": std,
                "n": n,
                "n_trials": len(members),
                "jobs": [r["job"] for r in members],
                "seeds": [r["params"].get("seed") for r in members],
                "statuses": {
                    s: sum(r["status"] == s for r in members)
                    for s in sorted({r["status"] for r in members})
                },
            }
        )
    sign = -1.0 if mode == "max" else 1.0
    out.sort(
        key=lambda g: (
            g["mean"] is None,
            sign * g["mean"] if g["mean"] is not None else 0,
            g["jobs"][0],
        )
    )
    return out


def counts(rows: list[dict]) -> dict:
    c = dict.fromkeys(("completed", "pruned", "diverged", "failed", "running", "pending"), 0)
    for r in rows:
        c[r["status"]] = c.get(r["status"], 0) + 1
    return c


def summary(rows: list[dict], *, sweep_dir, kind: str, state: str, stages=None) -> dict:
    rows = sorted(rows, key=lambda r: r["job"])
    monitor, mode = sweep_mode(rows)
    # Coarse to fine: the best comes from the last stage with a completed trial (the earlier
    # stages trained fewer epochs); the table still ranks every trial.
    done = [r["stage"] for r in rows if r["status"] == "completed" and r["objective"] is not None]
    final = [r for r in rows if r["stage"] == max(done)] if done else rows
    best = best_row(final, mode)
    groups = seed_groups(rows, mode)
    final_groups = [g for g in groups if g["jobs"][0] in {r["job"] for r in final}]
    return {
        "sweep_dir": str(sweep_dir),
        "kind": kind,
        "state": state,
        "monitor": monitor,
        "mode": mode,
        "n_trials": len(rows),
        "counts": counts(rows),
        "best": (
            {k: best[k] for k in ("job", "stage", "objective", "overrides", "params", "dir")}
            if best
            else None
        ),
        "best_group": (
            final_groups[0] if final_groups and final_groups[0]["mean"] is not None else None
        ),
        "stages": stages or [],
        "trials": rows,
        "groups": groups,
    }


def _cell(v):
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.10g}" if math.isfinite(v) else str(v)
    if isinstance(v, (list, dict)):
        return json.dumps(v)
    return v


def write_summary(sweep_dir: Path, summ: dict) -> None:
    write_json(Path(sweep_dir) / "summary.json", summ)
    rows = summ["trials"]
    params = []
    for r in rows:
        params += [k for k in r["params"] if k not in params]
    metric_cols = [k for k in METRIC_KEYS if any(k in r for r in rows)]
    cols = (
        ["job", "stage"]
        + [k for k in ("bracket", "rung") if any(k in r for r in rows)]
        + ["status", "objective", "monitor"]
        + params
        + ["epochs_run", "epochs", "budget", "wall_time"]
        + metric_cols
        + ["error", "reason"]
        + (["pruned_by"] if any(r.get("pruned_by") for r in rows) else [])
        + ["overrides", "dir"]
    )
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(cols)
    for r in rows:
        cells = []
        for c in cols:
            if c in params:
                cells.append(_cell(r["params"].get(c)))
            elif c == "overrides":
                cells.append(" ".join(r["overrides"]))
            else:
                cells.append(_cell(r.get(c)))
        w.writerow(cells)
    atomic_write(Path(sweep_dir) / "summary.csv", buf.getvalue())


# ---------------------------------------------------------------------------------------------
# best.yaml


def command_line(overrides: list[str]) -> str:
    return "runner " + " ".join(shlex.quote(o) for o in overrides)


def preset_text(overrides: list[str], groups: set[str], header: list[str]) -> str:
    """An experiment preset (`# @package _global_`) that sets what `overrides` set: group choices
    in its defaults list, values in its body. Copy it to conf/experiment/NAME.yaml and run
    `runner experiment=NAME`, or rerun the `# run:` line of its header."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import OmegaConf

    from runner.sweep.space import install_grammar

    install_grammar()
    parser = OverridesParser.create()
    defaults, body, skipped = [], {}, []
    for ov in parser.parse_overrides(list(overrides)):
        key = ov.key_or_group
        if ov.is_delete() or ov.package is not None or ov.is_sweep_override():
            skipped.append(ov.input_line)
        elif key in groups or "/" in key:
            group = key if key.startswith("/") else "/" + key
            if key.lstrip("/") == "experiment":
                skipped.append(ov.input_line)
            else:
                defaults.append(f"  - {'' if ov.is_add() else 'override '}{group}: {ov.value()}")
        else:
            node = body
            parts = key.split(".")
            for part in parts[:-1]:
                node = node.setdefault(part, {})
            node[parts[-1]] = ov.value()
    lines = ["# @package _global_"] + [f"# {h}" for h in header]
    if skipped:
        lines.append(
            f"# not expressible in a preset (rerun them on the command line): {' '.join(skipped)}"
        )
    if defaults:
        lines += ["defaults:"] + defaults
    if body:
        lines.append(OmegaConf.to_yaml(OmegaConf.create(body)).rstrip("\n"))
    return "\n".join(lines) + "\n"


def write_best(sweep_dir: Path, summ: dict, groups: set[str]) -> tuple[list[str], str] | None:
    """best.yaml: the best seed-averaged configuration when seeds were repeated, else the best
    trial. Returns (overrides, description) or None when no trial completed."""
    monitor = summ["monitor"] or "objective"
    if summ["best_group"] and any(g["n_trials"] > 1 for g in summ["groups"]):
        g = summ["best_group"]
        overrides = g["overrides"]
        what = (
            f"best configuration of {summ['sweep_dir']} over seeds: {monitor} "
            f"{g['mean']:.6g} +- {g['std']:.3g} (n={g['n']}, jobs "
            f"{','.join(map(str, g['jobs']))})"
        )
    elif summ["best"]:
        b = summ["best"]
        overrides = b["overrides"]
        what = f"best trial of {summ['sweep_dir']}: job {b['job']}, {monitor} {b['objective']:.6g}"
    else:
        return None
    text = preset_text(
        overrides,
        groups,
        [
            what + f" ({summ['mode']})",
            f"run: {command_line(overrides)}",
            "or copy this file to conf/experiment/NAME.yaml and run: runner experiment=NAME",
        ],
    )
    atomic_write(Path(sweep_dir) / "best.yaml", text)
    return overrides, what


# ---------------------------------------------------------------------------------------------
# topk.png


def _labels(rows: list[dict]) -> list[str]:
    keys = []
    for r in rows:
        keys += [k for k in r["params"] if k not in keys]
    varying = [k for k in keys if len({json.dumps(r["params"].get(k)) for r in rows}) > 1] or keys
    short = {k: k.rsplit(".", 1)[-1] for k in varying}
    if len(set(short.values())) < len(short):
        short = {k: k for k in varying}
    out = []
    for r in rows:
        parts = [f"{short[k]}={_fmt(r['params'].get(k))}" for k in varying if k in r["params"]]
        out.append(f"job {r['job']}: " + " ".join(parts))
    return out


def _fmt(v, digits=3) -> str:
    if isinstance(v, float):
        return f"{v:.{digits}g}" if math.isfinite(v) else str(v)
    return "-" if v is None else str(v)


STAGE_STYLES = ("--", ":", "-.")  # earlier stages; the last stage is drawn solid


def _top_per_stage(summ: dict, k: int) -> list[dict]:
    """The k best completed trials, or with coarse-to-fine stages the k best of each stage
    (the coarse stage's short curves next to the fine stage's long ones)."""
    done = [
        r
        for r in ranked(summ["trials"], summ["mode"])
        if r["status"] == "completed" and r["objective"] is not None and r.get("dir")
    ]
    stages = sorted({r.get("stage", 1) for r in done})
    return [r for s in stages for r in [x for x in done if x.get("stage", 1) == s][:k]]


def plot_topk(sweep_dir: Path, summ: dict, k: int) -> bool:
    """topk.png: validation loss (from epoch 0, the untrained network; log axis when it spans
    over 10x) and metric against epoch of the k best trials, of each stage for a
    coarse-to-fine sweep (earlier stages dashed/dotted, the last solid, "stage N" in the
    legend, which sits outside the panels). False when no trial has curves."""
    curves = []
    for r in _top_per_stage(summ, k):
        got = rundir.read_curves(r["dir"])
        if got.ok and got.data.rows and "epoch" in got.data.fields:
            rows = [x for x in got.data.rows if math.isfinite(x["epoch"])]
            m = rundir.read_metrics(r["dir"])
            start = (m.data or {}).get("initial_val_loss") if m.ok else None
            if rows:
                curves.append((r, rows, start))
    if not curves:
        return False
    from runner.plots import log_scale_if_wide, pyplot, save_png

    plt = pyplot()
    metric = next((m for m in ("acc", "rmse") if f"val_{m}" in curves[0][1][0]), None)
    panels = [("val_loss", "validation loss")] + (
        [(f"val_{metric}", f"validation {metric}")] if metric else []
    )
    stages = sorted({r.get("stage", 1) for r, _, _ in curves})
    style = {s: STAGE_STYLES[i % len(STAGE_STYLES)] for i, s in enumerate(stages[:-1])}
    style[stages[-1]] = "-"
    fig, axes = plt.subplots(
        1,
        len(panels),
        figsize=(4.8 * len(panels) + 2.6, 4.2),
        squeeze=False,
        sharex=True,  # the loss starts at epoch 0, the metric at 1
        layout="constrained",
    )
    labels = _labels([r for r, _, _ in curves])
    for i, ((r, rows, start), label) in enumerate(zip(curves, labels)):
        stage = r.get("stage", 1)
        if len(stages) > 1:
            label = f"stage {stage}, {label}"
        for ax, (key, _) in zip(axes[0], panels):
            xs = [int(x["epoch"]) for x in rows]
            ys = [x.get(key, float("nan")) for x in rows]
            if key == "val_loss" and isinstance(start, (int, float)) and 0 not in xs:
                xs, ys = [0, *xs], [start, *ys]
            marker = "." if style[stage] == "-" else "x"
            ax.plot(xs, ys, marker=marker, ms=5, ls=style[stage], color=f"C{i % 10}", label=label)
    from matplotlib.ticker import MaxNLocator

    for ax, (key, title) in zip(axes[0], panels):
        if key in ("val_loss", "val_rmse"):  # always log: the top trials differ in decades
            log_scale_if_wide(ax, [y for line in ax.lines for y in line.get_ydata()], span=1)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel(title)
        ax.set_title(title)
        ax.grid(alpha=0.3)
    fig.legend(handles=axes[0][0].get_lines(), loc="outside right upper", fontsize=7)
    top = f"top {len(curves)} trials"
    if len(stages) > 1:
        top = f"top {k} completed trials of each of {len(stages)} stages"
    fig.suptitle(f"{top} by {summ['monitor']} ({summ['mode']})", fontsize=10)
    save_png(fig, Path(sweep_dir) / "topk.png")
    return True


def plot_search(sweep_dir: Path, summ: dict) -> bool:
    """search.png (runner.searchplot): the objective against each swept setting and parallel
    coordinates of the best trials. False when there is nothing to draw (no swept setting, no
    trial with an objective)."""
    from runner.searchplot import plot_search as draw

    try:
        draw(search.sweep_of(summ, path=sweep_dir), Path(sweep_dir) / search.SEARCH_PNG)
    except search.SearchError:
        return False
    return True


# ---------------------------------------------------------------------------------------------
# the final table

COLOURS = {"completed": "green", "pruned": "cyan", "diverged": "yellow", "failed": "red"}
MAX_ROWS = 30


def _objective_cell(r: dict) -> str:
    if r["objective"] is None:
        return "-"
    s = f"{r['objective']:.4g}"
    if r.get("cv_folds") and finite(r.get("cv_std")):
        s += f" ± {r['cv_std']:.2g}"
    return s


def _labels_of(params: list[str]) -> list[str]:
    """Column headers: each setting's shortest dotted suffix that no other one ends with
    (optimizer.lr -> lr, regularization.weight_decay -> weight_decay)."""
    out = []
    for p in params:
        parts = p.split(".")
        for n in range(1, len(parts) + 1):
            label = ".".join(parts[-n:])
            if not any(q != p and (q == label or q.endswith("." + label)) for q in params):
                break
        out.append(label)
    return out


def _fitted_table(headers, rows, right, width, fixed):
    """A rich Table of `rows` (cells: rich markup) under `headers`, every cell on one line.
    With `width`, the columns from the right that do not fit it are left out (never the first
    `fixed`); returns (table, headers left out)."""
    from rich import box
    from rich.console import Console
    from rich.measure import Measurement
    from rich.table import Table

    def build(ks):
        t = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
        for k in ks:
            t.add_column(
                headers[k],
                justify="right" if right[k] else "left",
                no_wrap=True,
                overflow="ellipsis",
            )
        for r in rows:
            t.add_row(*[r[k] for k in ks])
        return t

    keep = list(range(len(headers)))
    t = build(keep)
    if width:
        wide = Console(width=10**4)  # measuring only
        while len(keep) > fixed and Measurement.get(wide, wide.options, t).maximum > width:
            keep.pop()
            t = build(keep)
    return t, [h for k, h in enumerate(headers) if k not in keep]


def tables(summ: dict, width: int | None = None) -> list:
    """The closing report: rich Tables and plain lines (str: titles, the errors and reasons
    under the table), in order. Every cell stays on one line; an error or reason is a line of
    its own under the table; with `width` (the console's), the columns that do not fit are left
    out and named. So a narrow terminal or a pipe (80 columns) never breaks a row or a reason
    into fragments; summary.csv has everything."""
    rows = summ["trials"]
    monitor = summ["monitor"] or "objective"
    c = summ["counts"]
    staged = len({r["stage"] for r in rows}) > 1
    params = []
    for r in rows:
        params += [k for k in r["params"] if k not in params]
    title = (
        f"{len(rows)} trials: {c['completed']} completed, "
        + (f"{c['pruned']} pruned, " if c.get("pruned") else "")
        + f"{c['diverged']} diverged, {c['failed']} failed"
        + (f", {c['pending'] + c['running']} not run" if c["pending"] + c["running"] else "")
        + f"; sorted by {monitor} ({summ['mode']})"
    )
    objective = monitor + (" (cv)" if any(r.get("cv_folds") for r in rows) else "")
    headers = ["#", "job"] + (["stage"] if staged else []) + ["status", objective]
    headers += _labels_of(params) + ["epochs", "time"]
    right = [h != "status" for h in headers]
    order = ranked(rows, summ["mode"])
    cells, notes = [], []
    for i, r in enumerate(order[:MAX_ROWS], 1):
        colour = COLOURS.get(r["status"], "dim")
        row = [str(i), str(r["job"])] + ([str(r["stage"])] if staged else [])
        row += [f"[{colour}]{r['status']}[/]", _objective_cell(r)]
        # — : a key left out of this trial (its group's option lacks it: conditional sweeps)
        row += [_fmt(r["params"][p], 4) if p in r["params"] else "—" for p in params]
        ep = f"{r['epochs_run']}/{r['epochs']}" if r.get("epochs_run") is not None else "-"
        row += [ep, f"{r['wall_time']:.1f}s" if finite(r.get("wall_time")) else "-"]
        cells.append(row)
        err = r.get("error") or r.get("reason")
        if err:
            notes.append(f"job {r['job']} {r['status']}: {' '.join(str(err).split())}")
    t, left_out = _fitted_table(headers, cells, right, width, len(headers) - len(params) - 2)
    out = [title, t, *notes]
    if len(order) > MAX_ROWS:
        out.append(f"... {len(order) - MAX_ROWS} more rows in summary.csv")
    groups = summ["groups"]
    if groups:
        g_params = [p for p in params if p != "seed"]
        g_headers = ["#", "mean ± std", "n", *_labels_of(g_params), "jobs"]
        g_cells = [
            [
                str(i),
                "-" if g["mean"] is None else f"{g['mean']:.4g} ± {g['std']:.2g}",
                f"{g['n']}/{g['n_trials']}",
                *[_fmt(g["params"][p], 4) if p in g["params"] else "—" for p in g_params],
                ",".join(map(str, g["jobs"])),
            ]
            for i, g in enumerate(groups[:MAX_ROWS], 1)
        ]
        gt, g_left_out = _fitted_table(
            g_headers, g_cells, [h != "jobs" for h in g_headers], width, 3
        )
        left_out += [h for h in g_left_out if h not in left_out]
        out += [f"over seeds: {monitor} mean ± std, n completed/trials", gt]
    if left_out:
        out.append(f"not shown at this width: {', '.join(left_out)} (summary.csv has them)")
    return out


def print_report(
    console,
    summ: dict,
    sweep_dir,
    best,
    plotted: bool,
    *,
    searched: bool = False,
    drawing: tuple | list = (),
) -> None:
    """The end of a sweep: the tables, the best trial and how to rerun it, a warning for each
    log-scaled setting whose best value sits at the edge of its range (runner.search), the
    files (`plotted`: topk.png was drawn, `searched`: search.png, `drawing`: the PNGs a
    detached process is drawing, hydra.sweeper.plot_wait)."""
    console.print()
    for t in tables(summ, console.width):
        if isinstance(t, str):  # one line each, whatever the width (a terminal wraps it whole)
            console.print(t, markup=False, highlight=False, soft_wrap=True)
        else:
            console.print(t)
    if best:
        overrides, what = best
        console.print(what, highlight=False, soft_wrap=True)
        # markup=False: an override such as logger=[tensorboard,mlflow] is not a rich tag
        console.print(
            f"rerun: {command_line(overrides)}", markup=False, highlight=False, soft_wrap=True
        )
    for line in search.edge_warnings(search.sweep_of(summ, path=sweep_dir)):
        console.print(f"warning: {line}", markup=False, highlight=False, soft_wrap=True)
    files = (
        ["trials.json", "summary.json", "summary.csv"]
        + (["best.yaml"] if best else [])
        + (["topk.png"] if plotted else [])
        + ([search.SEARCH_PNG] if searched else [])
    )
    later = f"; {', '.join(drawing)}: drawing in the background" if drawing else ""
    console.print(
        f"sweep directory: [bold]{sweep_dir}[/] ({', '.join(files)}{later})",
        highlight=False,
        soft_wrap=True,
    )
    if summ["counts"]["pending"]:
        console.print(
            f"resume: add hydra.sweeper.resume={sweep_dir}", highlight=False, soft_wrap=True
        )
