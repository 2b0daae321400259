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

from runner import rundir
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


def finite(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def read_metrics(run_dir) -> dict | None:
    """The trial's metrics.json (rundir.read_metrics), None when missing or damaged."""
    got = rundir.read_metrics(run_dir)
    return got.data if got.ok else None


def objective(metrics: dict) -> float | None:
    if metrics.get("cv_folds") and finite(metrics.get("cv_mean")):
        return float(metrics["cv_mean"])
    monitor = metrics.get("monitor")
    v = metrics.get(f"best_{monitor}") if monitor else None
    return float(v) if finite(v) else None


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
        "wall_time": wall_time,
        "error": error,
        "params": dict(trial.get("params", {})),
        "overrides": list(trial["overrides"]),
        "dir": str(run_dir) if run_dir else None,
    }
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
    c = dict.fromkeys(("completed", "diverged", "failed", "running", "pending"), 0)
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
        ["job", "stage", "status", "objective", "monitor"]
        + params
        + ["epochs_run", "epochs", "wall_time"]
        + metric_cols
        + ["error", "reason", "overrides", "dir"]
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


def plot_topk(sweep_dir: Path, summ: dict, k: int) -> bool:
    top = [
        r
        for r in ranked(summ["trials"], summ["mode"])
        if r["status"] == "completed" and r["objective"] is not None and r.get("dir")
    ][:k]
    curves = []
    for r in top:
        got = rundir.read_curves(r["dir"])
        if got.ok and got.data.rows and "epoch" in got.data.fields:
            curves.append((r, got.data.rows))
    if not curves:
        return False
    from runner.plots import pyplot, save_png

    plt = pyplot()
    metric = next((m for m in ("acc", "rmse") if f"val_{m}" in curves[0][1][0]), None)
    panels = [("val_loss", "validation loss")] + (
        [(f"val_{metric}", f"validation {metric}")] if metric else []
    )
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4.2), squeeze=False)
    labels = _labels([r for r, _ in curves])
    for (_, rows), label in zip(curves, labels):
        for ax, (key, _) in zip(axes[0], panels):
            ax.plot(
                [x["epoch"] for x in rows],
                [x.get(key, float("nan")) for x in rows],
                marker=".",
                label=label,
            )
    from matplotlib.ticker import MaxNLocator

    for ax, (_, title) in zip(axes[0], panels):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel(title)
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=7)
    fig.suptitle(f"top {len(curves)} trials by {summ['monitor']} ({summ['mode']})")
    save_png(fig, Path(sweep_dir) / "topk.png", tight=True)
    return True


# ---------------------------------------------------------------------------------------------
# the final table

COLOURS = {"completed": "green", "diverged": "yellow", "failed": "red"}
MAX_ROWS = 30


def _objective_cell(r: dict) -> str:
    if r["objective"] is None:
        return "-"
    s = f"{r['objective']:.4g}"
    if r.get("cv_folds") and finite(r.get("cv_std")):
        s += f" ± {r['cv_std']:.2g}"
    return s


def tables(summ: dict) -> list:
    from rich.table import Table

    rows = summ["trials"]
    monitor = summ["monitor"] or "objective"
    c = summ["counts"]
    staged = len({r["stage"] for r in rows}) > 1
    params = []
    for r in rows:
        params += [k for k in r["params"] if k not in params]
    title = (
        f"{len(rows)} trials: {c['completed']} completed, {c['diverged']} diverged, "
        f"{c['failed']} failed"
        + (f", {c['pending'] + c['running']} not run" if c["pending"] + c["running"] else "")
        + f"; sorted by {monitor} ({summ['mode']})"
    )
    t = Table(title=title, title_justify="left")

    def col(name, width=None, **kw):  # short columns stay readable; the error column wraps
        t.add_column(name, min_width=width or min(len(name), 12), **kw)

    col("#", justify="right")
    col("job", justify="right")
    if staged:
        col("stage", justify="right")
    col("status", 9)
    col(monitor + (" (cv)" if any(r.get("cv_folds") for r in rows) else ""), justify="right")
    for p in params:
        col(p, justify="right")
    col("epochs", justify="right")
    col("time", justify="right")
    errors = any(r.get("error") or r.get("reason") for r in rows)
    if errors:
        t.add_column("error / reason", overflow="fold", max_width=48)
    order = ranked(rows, summ["mode"])
    for i, r in enumerate(order[:MAX_ROWS], 1):
        colour = COLOURS.get(r["status"], "dim")
        cells = [str(i), str(r["job"])] + ([str(r["stage"])] if staged else [])
        cells += [f"[{colour}]{r['status']}[/]", _objective_cell(r)]
        cells += [_fmt(r["params"].get(p), 4) for p in params]
        ep = f"{r['epochs_run']}/{r['epochs']}" if r.get("epochs_run") is not None else "-"
        cells += [ep, f"{r['wall_time']:.1f}s" if finite(r.get("wall_time")) else "-"]
        if errors:
            err = r.get("error") or r.get("reason") or ""
            cells.append(err if len(err) <= 60 else err[:59] + "…")
        t.add_row(*cells)
    if len(order) > MAX_ROWS:
        t.caption = f"... {len(order) - MAX_ROWS} more rows in summary.csv"
    out = [t]
    groups = summ["groups"]
    if groups:
        g_params = [p for p in params if p != "seed"]
        gt = Table(
            title=f"over seeds: {monitor} mean ± std, n completed/trials", title_justify="left"
        )
        gt.add_column("#", justify="right")
        for p in g_params:
            gt.add_column(p, justify="right")
        gt.add_column("mean ± std", justify="right")
        gt.add_column("n", justify="right")
        gt.add_column("jobs")
        for i, g in enumerate(groups[:MAX_ROWS], 1):
            ms = "-" if g["mean"] is None else f"{g['mean']:.4g} ± {g['std']:.2g}"
            gt.add_row(
                str(i),
                *[_fmt(g["params"].get(p), 4) for p in g_params],
                ms,
                f"{g['n']}/{g['n_trials']}",
                ",".join(map(str, g["jobs"])),
            )
        out.append(gt)
    return out


def print_report(console, summ: dict, sweep_dir, best, plotted: bool) -> None:
    """The end of a sweep: the tables, the best trial and how to rerun it, the files."""
    console.print()
    for t in tables(summ):
        console.print(t)
    if best:
        overrides, what = best
        console.print(what, highlight=False)
        console.print(f"rerun: {command_line(overrides)}", highlight=False, soft_wrap=True)
    files = (
        ["trials.json", "summary.json", "summary.csv"]
        + (["best.yaml"] if best else [])
        + (["topk.png"] if plotted else [])
    )
    console.print(
        f"sweep directory: [bold]{sweep_dir}[/] ({', '.join(files)})",
        highlight=False,
        soft_wrap=True,
    )
    if summ["counts"]["pending"]:
        console.print(
            f"resume: add hydra.sweeper.resume={sweep_dir}", highlight=False, soft_wrap=True
        )
