"""Seeing a sweep's search: `runner plot SWEEP_DIR` (search.png), `runner compare SWEEP_DIR
--importance` and the edge-of-range warning, on sweep folders written here the way a sweep writes
them (trials.json with its search space, each trial's metrics.json, summary.json made by
runner.sweep.report itself), so that nothing trains."""

from __future__ import annotations

import io
import json
import math
import random
import re
from pathlib import Path

import pytest
from conftest import run_main

from runner import plots, search
from runner.sweep import report

# search-space entries as trials.json stores them (runner.sweep.space.Param.to_json), via param()
LR = dict(key="optimizer.lr", kind="interval", low=1e-4, high=1e-1, log=True)
WD = dict(key="regularization.weight_decay", kind="interval", low=1e-6, high=1e-2, log=True)
OPT = dict(key="optimizer", kind="choice", values=["sgd", "adam"])
DROP = dict(key="regularization.dropout", kind="interval", low=0.0, high=0.5)
GRID_LR = dict(key="optimizer.lr", kind="choice", values=["0.001", "0.01", "0.1"])
SEEDS = dict(key="seed", kind="choice", values=["0", "1", "2"])


def param(p: dict) -> dict:
    return {"values": [], "low": None, "high": None, "log": False, "integer": False} | p


def make_sweep(d: Path, space: list[dict], trials: list[tuple], kind="random") -> dict:
    """A finished sweep in `d`: trials are (params, status, objective); the objective is the
    trial's best_val_acc (None: the trial has none, as a failed one). Returns the summary."""
    space = [param(p) for p in space]
    plan_trials, rows = [], []
    for job, (params, status, obj) in enumerate(trials):
        overrides = [f"{k}={v}" for k, v in params.items()]
        plan_trials.append({"job": job, "stage": 1, "overrides": overrides, "params": params})
        run_dir = d / str(job)
        run_dir.mkdir(parents=True)
        metrics = {"status": status, "task": "classification", "metric": "acc"}
        metrics |= {"monitor": "val_acc", "mode": "max", "epochs": 10, "wall_time": 1.0}
        metrics["epochs_run"] = 3 if status == "pruned" else 10
        if obj is not None:
            metrics["best_val_acc"] = obj
        (run_dir / "metrics.json").write_text(json.dumps(metrics))
        (run_dir / ".hydra").mkdir()
        (run_dir / ".hydra" / "overrides.yaml").write_text(json.dumps(overrides))
        config: dict = {}
        for k, v in params.items():  # a nested config, as YAML's JSON subset
            *parents, leaf = k.split(".")
            node = config
            for part in parents:
                node = node.setdefault(part, {})
            node[leaf] = v
        (run_dir / ".hydra" / "config.yaml").write_text(json.dumps(config))
        rows.append(report.make_row(plan_trials[-1], run_dir, metrics, status=status))
    stages = [{"stage": 1, "n_trials": len(trials), "epochs": None, "top_k": 5}]
    stages[0] |= {"overrides": [], "space": space}
    plan = {"version": 1, "kind": kind, "created": "2026-12-05T12:00:00", "arguments": []}
    plan |= {"options": {}, "stages": stages, "trials": plan_trials}
    (d / "trials.json").write_text(json.dumps(plan))
    summ = report.summary(rows, sweep_dir=d, kind=kind, state="finished", stages=stages)
    report.write_summary(d, summ)
    return summ


def lr_driven(n: int, seed: int = 0) -> list[tuple]:
    """n trials, lr and wd log-uniform; the objective depends on lr only (peak at 10^-2.5, the
    middle of the lr range in log10), plus a little noise."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        lr, wd = 10 ** rng.uniform(-4, -1), 10 ** rng.uniform(-6, -2)
        obj = 0.9 - 0.08 * (math.log10(lr) + 2.5) ** 2 + rng.gauss(0, 0.005)
        out.append(({"optimizer.lr": lr, "regularization.weight_decay": wd}, "completed", obj))
    return out


def test_plot_sweep_dir_draws_search_png(tmp_path):
    d = tmp_path / "sweep"
    trials = [
        ({"optimizer.lr": 10 ** (-4 + 0.3 * i), "optimizer": ["sgd", "adam"][i % 2]}, st, obj)
        for i, (st, obj) in enumerate(
            [("completed", 0.5 + 0.04 * i) for i in range(8)]
            + [("pruned", 0.3), ("pruned", 0.35), ("diverged", None), ("failed", None)]
        )
    ]
    make_sweep(d, [LR, OPT], trials)
    code, out, err = run_main(["plot", str(d)])
    assert (code, out) == (0, f"{d / 'search.png'}\n"), err
    png = d / "search.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in d.iterdir() if not p.is_dir()) == [
        "search.png",
        "summary.csv",
        "summary.json",
        "trials.json",
    ]  # written atomically: no temporary file left
    desc = plots.read_description(png)
    lr_panel, opt_panel, par = desc["panels"][:3]
    assert (lr_panel["title"], lr_panel["xscale"], lr_panel["ylabel"]) == (
        "optimizer.lr",
        "log",
        "val_acc (max)",
    )
    assert [ln["x"][0] for ln in lr_panel["lines"]] == [1e-4, 1e-1]  # the range's bounds
    assert opt_panel["xscale"] == "linear" and opt_panel["xticks"] == ["sgd", "adam"]
    assert par["xticks"] == ["lr (log)", "optimizer", "val_acc"]
    # 8 completed trials in colour (marker o), the 2 pruned ones with an objective in grey
    coloured = [ln for ln in par["lines"] if ln["marker"] == "o"]
    grey = [ln for ln in par["lines"] if ln["color"] == "#bbbbbb"]
    assert (len(coloured), len(grey)) == (8, 2)
    # the best (job 7, lr 10^-1.9) drawn last: lr at (log10 lr + 4) / 3 of its axis, adam = top
    assert coloured[-1]["y"] == [pytest.approx(2.1 / 3, abs=1e-5), 1.0, 1.0]
    labels = desc["legends"][0]["labels"]
    assert labels == ["completed", "pruned (hollow)", "diverged", "failed / interrupted"] + [
        "best (job 7)"
    ]
    # nothing to draw yet: exit 1, one line
    e = tmp_path / "empty"
    make_sweep(e, [LR], [({"optimizer.lr": 0.01}, "failed", None)])
    code, out, err = run_main(["plot", str(e)])
    assert (code, out) == (1, "")
    assert err == f"runner: error: {e}: no trial has an objective yet: nothing to plot\n"


def test_importance_ranks_the_driving_parameter_first(tmp_path):
    d = tmp_path / "sweep"
    make_sweep(d, [LR, WD], lr_driven(24))
    code, out, err = run_main(["compare", str(d), "--importance"])
    assert code == 0 and err == "", err  # the best lr sits mid-range: no edge warning
    rows = [ln.split() for ln in out.splitlines() if re.match(r"(optimizer|regularization)\.", ln)]
    assert [r[0] for r in rows] == ["optimizer.lr", "regularization.weight_decay"]
    shares = [int(r[1]) for r in rows]
    assert shares[0] >= 90 and abs(sum(shares) - 100) <= 1
    assert "scikit-learn" in out and "RandomForestRegressor" in out
    assert "permutation_importance" in out and "over the 24 of 24 trials with an objective" in out


def test_importance_too_few_trials(tmp_path):
    d = tmp_path / "sweep"
    trials = lr_driven(6) + [
        ({"optimizer.lr": 0.09, "regularization.weight_decay": 1e-4}, "diverged", 0.1),
        ({"optimizer.lr": 0.09, "regularization.weight_decay": 1e-4}, "diverged", None),
        ({"optimizer.lr": 0.001, "regularization.weight_decay": 1e-4}, "pruned", 0.3),
    ]
    make_sweep(d, [LR, WD], trials)
    code, out, err = run_main(["compare", str(d), "--importance"])
    assert (code, err) == (0, "")
    assert out == (
        "importance: 7 trials with an objective (completed or diverged); at least 8 are "
        "needed for an estimate\n"
    )
    code, out, err = run_main(["compare", str(d / "0"), "--importance"])
    assert code == 2 and out == ""
    assert err.startswith("runner: error: --importance: PATH must be one sweep folder")
    code, out, err = run_main(["compare", str(d), "--importance", "--where", "lr<0.01"])
    assert (code, out) == (2, "")
    assert err == (
        "runner: error: --importance: not with --where (the estimate uses every trial of the "
        "sweep that has an objective)\n"
    )


def _edge(space, best, others=()):
    """The edge warnings of a sweep over one setting: the best trial's value `best`, then the
    runners-up's `others`, best first."""
    axis = search.axes_of([param(space)])[0]
    values = [best, *others]
    trials = [
        search.Trial(j, 1, "completed", 0.9 - 0.1 * j, {axis.name: v}) for j, v in enumerate(values)
    ]
    sweep = search.Sweep(Path("."), "random", "val_acc", "max", [axis], trials, {axis.name: best})
    return search.edge_warnings(sweep)


def test_edge_of_range_rule():
    upper = "optimizer.lr best at the upper edge 0.1 ({} in [0.0001, 0.1]): widen the range"
    lower = "optimizer.lr best at the lower edge 0.0001 ({} in [0.0001, 0.1]): widen the range"
    # an interval: the best in the outer 10 % of its log10 length (0.3 of 3 decades) at either
    # end, and the 3 best trials in the outer third (1 decade) on that side
    assert _edge(LR, 0.08, [0.05, 0.03]) == [upper.format("0.08")]
    assert _edge(LR, 0.052, [0.011, 0.09]) == [upper.format("0.052")]
    assert _edge(LR, 1.9e-4, [3e-4, 9.9e-4]) == [lower.format("0.00019")]
    assert _edge(LR, 2.1e-4, [1.1e-4, 1.2e-4]) == []  # the best just outside the band
    assert _edge(LR, 0.048, [0.09, 0.08]) == []
    assert _edge(LR, 0.08, [0.05, 0.009]) == []  # a runner-up mid-range: no trend to the edge
    assert _edge(LR, 1.9e-4, [3e-4, 1.1e-3]) == []
    assert _edge(LR, 0.003, [0.09, 0.08]) == []
    # a grid: its smallest and largest value, whatever the runners-up
    grid = "optimizer.lr best at the {} edge {} ({} in [0.001, 0.1]): widen the range"
    assert _edge(GRID_LR, 0.001, [0.01, 0.1]) == [grid.format("lower", "0.001", "0.001")]
    assert _edge(GRID_LR, 0.1, [0.001]) == [grid.format("upper", "0.1", "0.1")]
    assert _edge(GRID_LR, 0.01, [0.1, 0.001]) == []
    # only log-scaled settings: a linear interval, a category, seeds (range(3) holds 0)
    assert _edge(DROP, 0.5, [0.49, 0.48]) == [] and _edge(OPT, "adam", ["sgd"]) == []
    assert _edge(SEEDS, 2, [1]) == []
    # no stored search space (a summary.json alone): the range searched is unknown
    axis = search.axes_of([param(LR)])[0]
    trials = [search.Trial(0, 1, "completed", 0.9, {axis.name: 0.1})]
    sweep = search.Sweep(Path("."), "random", "val_acc", "max", [axis], trials, {axis.name: 0.1})
    assert search.edge_warnings(sweep) == [upper.format("0.1")]
    sweep.space_known = False
    assert search.edge_warnings(sweep) == []


def test_edge_warning_in_compare_and_the_sweeps_closing_report(tmp_path):
    d = tmp_path / "sweep"
    trials = [
        ({"optimizer.lr": lr, "regularization.weight_decay": 1e-4}, "completed", obj)
        for lr, obj in [(0.001, 0.5), (0.03, 0.8), (0.08, 0.9), (0.05, 0.85)]
    ]
    summ = make_sweep(d, [LR, WD], trials)
    line = "optimizer.lr best at the upper edge 0.1 (0.08 in [0.0001, 0.1]): widen the range"
    code, out, err = run_main(["compare", str(d)])
    assert code == 0 and f"runner: warning: {line}\n" in err
    code, out, err = run_main(["compare", str(d), "--watch"])  # the sweep is over: ends at once
    assert code == 0 and "sweep finished" in out and f"runner: warning: {line}\n" in err
    # the sweep's end: search.png drawn and listed, the warning under the best trial
    assert report.plot_search(d, summ)
    assert (d / "search.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from rich.console import Console

    buf = io.StringIO()
    report.print_report(Console(file=buf, width=200), summ, d, None, False, searched=True)
    text = buf.getvalue()
    assert f"\nwarning: {line}\n" in text
    assert "(trials.json, summary.json, summary.csv, search.png)" in text
    # the best in the middle of the range: no warning
    m = tmp_path / "middle"
    summ = make_sweep(m, [LR, WD], [(p | {"optimizer.lr": 0.003}, s, o) for p, s, o in trials])
    code, out, err = run_main(["compare", str(m)])
    assert code == 0 and "widen the range" not in err
    buf = io.StringIO()
    report.print_report(Console(file=buf, width=200), summ, m, None, False)
    assert "widen the range" not in buf.getvalue()


def test_a_running_sweep_is_read_from_the_trials_own_metrics(tmp_path):
    d = tmp_path / "sweep"
    make_sweep(d, [LR], [({"optimizer.lr": 0.01}, "completed", 0.7)] * 2)
    summ = json.loads((d / "summary.json").read_text())
    summ["trials"][1] |= {"status": "running", "objective": None}  # written before job 1 ended
    (d / "summary.json").write_text(json.dumps(summ))
    # a trial the summary already has as final is not read again
    (d / "0" / "metrics.json").write_text(json.dumps({"status": "running"}))
    sweep = search.load_sweep(d)
    assert [(t.status, t.objective) for t in sweep.trials] == [
        ("completed", 0.7),
        ("completed", 0.7),
    ]
    (d / "trials.json").write_text("{")
    code, out, err = run_main(["plot", str(d)])
    assert (code, out) == (2, "")
    assert err.startswith(f"runner: error: {d / 'trials.json'}: cannot read it (")
