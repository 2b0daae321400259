"""The sweep views of `runner compare` and `runner plot`: `runner plot SWEEP_DIR` (search.png,
runner.searchplot), `runner compare SWEEP_DIR --importance` (runner.importance, run in a child
process: it needs NumPy and scikit-learn, which runner.compare never loads) and the edge-of-range
warning under `runner compare SWEEP_DIR` (runner.search.edge_warnings)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from runner.compare.render import Column, render
from runner.compare.results import NoRuns, ResultsError
from runner.search import (
    SCORED,
    SEARCH_PNG,
    NothingYet,
    SearchError,
    edge_warnings,
    is_sweep_dir,
    load_sweep,
    short,
    too_few,
)


def is_sweep(path) -> bool:
    return Path(path).is_dir() and is_sweep_dir(path)


def _load(path):
    try:
        return load_sweep(path)
    except SearchError as e:
        raise ResultsError(str(e)) from None


def plot_sweep(path, out=None, written=None) -> Path:
    """Draw SWEEP/search.png (or `out`); NoRuns while no trial has an objective."""
    from runner.searchplot import plot_search

    sweep = _load(path)
    try:
        done = plot_search(sweep, Path(out) if out else Path(path) / SEARCH_PNG)
    except NothingYet as e:
        raise NoRuns(str(e)) from None
    except SearchError as e:
        raise ResultsError(str(e)) from None
    if written:
        written(done)
    return done


def edge_lines(paths) -> list[str]:
    """The edge-of-range warnings of the sweep folders among `paths` (named by folder when
    there are several)."""
    sweeps = [p for p in paths if is_sweep(p)]
    out = []
    for p in sweeps:
        try:
            lines = edge_warnings(load_sweep(p))
        except SearchError as e:
            lines = [f"no edge-of-range check: {e}"]
        out += [f"{p}: {line}" if len(sweeps) > 1 else line for line in lines]
    return out


def warn_edges(paths) -> None:
    for line in edge_lines(paths):
        print(f"runner: warning: {line}", file=sys.stderr)


def importance(path) -> dict:
    """runner.importance's estimate for the sweep in `path`, computed in a child process."""
    proc = subprocess.run(
        [sys.executable, "-m", "runner.importance", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode:
        lines = proc.stderr.strip().splitlines() or [f"exit code {proc.returncode}"]
        raise ResultsError("--importance: " + lines[-1].removeprefix("runner: error: "))
    return json.loads(proc.stdout)


def cmd_importance(args) -> int:
    for flag in ("where", "group_by", "sort", "top", "plot"):
        if getattr(args, flag, None):
            raise ResultsError(
                f"--importance: not with --{flag.replace('_', '-')} (the estimate uses every "
                f"trial of the sweep that has an objective)"
            )
    if len(args.paths) != 1 or not is_sweep(args.paths[0]):
        raise ResultsError(
            f"--importance: PATH must be one sweep folder (with trials.json or summary.json); "
            f"got {' '.join(args.paths)}"
        )
    path = args.paths[0]
    sweep = _load(path)
    message = too_few(sweep)
    if message:
        print(message)
    else:
        got = importance(path)
        monitor = sweep.monitor or "objective"
        r2 = got.get("oob_r2")
        note = (
            f"share of {monitor} ({sweep.mode})'s variance each setting explains, over the "
            f"{got['n']} of {len(sweep.trials)} trials with an objective ({' or '.join(SCORED)}); "
            f"{got['estimator']}"
            + (f"; the forest's out-of-bag R² {r2:.2f}" if r2 is not None else "")
        )
        if args.format in ("csv", "json"):
            cols = [Column(n, "text") for n in ("parameter", "share", "best", "range")]
            cells = [[r["param"], r["share"], r["best"], r["range"]] for r in got["rows"]]
        else:
            cols = [Column("parameter", "id"), Column("share", "n")]
            cols += [Column("best", "n"), Column("range", "text")]
            cells = [
                [r["param"], f"{100 * r['share']:.0f} %", short(r["best"]), r["range"]]
                for r in got["rows"]
            ]
        render(args.format, cols, cells, args.precision, note)
    warn_edges(args.paths)
    return 0
