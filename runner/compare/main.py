"""`runner compare`, `runner best` and `runner plot`: read finished (or running) run directories
and answer in the terminal which settings won, by how much and how stable. Never imports jax or
hydra; rich and matplotlib only when drawing. Entry point: main(argv) -> exit code, with argv
starting with the subcommand ("compare", "best" or "plot"; "compare" when left out).

Exit codes: 0 ok; 1 nothing to show (no runs under the paths, no run matches --where, no
completed run for `best`, no curves yet for `plot`); 2 bad input (unknown key or metric, bad
--where, missing path...), one line on stderr "runner: error: ..."; 130 Ctrl-C (how `compare
--watch` on a folder of single runs ends; it exits 0 when the sweep it watches ends)."""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from runner import rundir
from runner.compare import search
from runner.compare.render import Column, fmt_number, missing, render
from runner.compare.results import (
    Keys,
    NoRuns,
    ResultsError,
    Run,
    find_run_dirs,
    load_provenance,
    load_run,
    load_runs,
    show_value,
)
from runner.compare.table import (
    Group,
    build_rows,
    caption,
    choose_columns,
    default_sort,
    hashable,
    make_groups,
    parse_sort,
    rerun_overrides,
    sort_items,
    sortable,
)
from runner.compare.where import compile_where
from runner.shell import OneLineParser, UsageError

COMMANDS = ("compare", "best", "plot")
DEFAULT_ROOT = "outputs"
FORMATS = ("table", "markdown", "csv", "json")
MAX_WARNINGS = 10


def _parsers() -> dict:
    fmt = argparse.RawDescriptionHelpFormatter
    c = OneLineParser(
        prog="runner compare",
        formatter_class=fmt,
        description="One row per run under PATH (default: outputs/): the settings "
        "that differ,\nvalidation/test metrics and a sparkline of the "
        "validation curve.",
        epilog="KEY: a setting (optimizer.lr, a group's name as optimizer, a unique "
        "suffix as lr), a metrics.json key (best_val_acc, test_loss, wall_time; "
        "short: val_acc, val_loss, val_rmse, loss, time), status, id or path.\n"
        "examples:\n"
        "  runner compare outputs/multirun --group-by optimizer,optimizer.lr\n"
        "  runner compare --where 'optimizer=adam and lr<1e-2' --sort "
        "test_acc --top 5\n"
        "  runner compare --diff multirun/2026-01-02/10-00-00/3 "
        "multirun/2026-01-02/10-00-00/5\n"
        "  runner compare outputs/2026-01-02/10-00-00 outputs/2026-01-03/09-00-00 --diff\n"
        "  runner compare outputs/multirun/2026-01-02/10-00-00 --watch\n"
        "Exit codes: 0 ok, 1 nothing found, 2 bad input, 130 Ctrl-C. See docs/compare.md.",
    )
    c.add_argument(
        "paths",
        nargs="*",
        metavar="PATH",
        help="runs, sweeps or folders above them (default: outputs)",
    )
    c.add_argument(
        "--sort",
        metavar="KEY[:asc|desc][,...]",
        help="sort rows (default: the runs' monitor, e.g. best_val_acc; acc "
        "descending, everything else ascending unless :asc/:desc)",
    )
    c.add_argument("--top", type=int, metavar="N", help="only the first N rows after sorting")
    c.add_argument(
        "--where",
        metavar="EXPR",
        help="filter, e.g. 'optimizer=adam and optimizer.lr<1e-2 and "
        "status=completed' (=, !=, <, <=, >, >=, ~ regex, !~; and/or/not; "
        "parentheses)",
    )
    c.add_argument(
        "--group-by",
        metavar="KEY[,KEY]",
        help="one row per group: mean ± std and count over the other settings",
    )
    c.add_argument(
        "--all",
        action="store_true",
        help="show every setting, not only those that differ between rows",
    )
    c.add_argument(
        "--keep",
        action="append",
        default=[],
        metavar="REGEX",
        help="also show settings/metrics whose name matches (re.search)",
    )
    c.add_argument(
        "--drop",
        action="append",
        default=[],
        metavar="REGEX",
        help="hide settings/metrics whose name matches ('curve' for the sparkline)",
    )
    c.add_argument("--format", choices=FORMATS, default="table")
    c.add_argument(
        "--precision",
        type=int,
        metavar="N",
        help="digits after the point (default 4; CSV/JSON keep full precision unless given)",
    )
    c.add_argument(
        "--plot",
        metavar="FILE.png",
        help="also draw the shown runs' validation curves overlaid (groups: mean ± std band)",
    )
    c.add_argument(
        "--diff",
        nargs="*",
        metavar="RUN",
        help="the settings, provenance (git commit, versions, devices, host...) and metrics "
        "that differ between runs: those named (paths or ids), or without names the runs "
        "under PATH (and --where), at most 26",
    )
    c.add_argument(
        "--watch",
        action="store_true",
        help="keep the table up to date as epochs pass and trials finish, until the sweep "
        "ends (every PATH a sweep folder) or Ctrl-C (exit 130); piped: the table, one line "
        "per run that ends, the table again at the end",
    )
    c.add_argument(
        "--interval",
        type=float,
        metavar="SECONDS",
        help="--watch: how often to look for changed files (default 1)",
    )
    c.add_argument(
        "--importance",
        action="store_true",
        help="for one sweep folder: the share of the objective's variance each swept setting "
        "explains (scikit-learn random forest + permutation importance), its best value and "
        "range",
    )
    b = OneLineParser(
        prog="runner best",
        description="Print the best completed run's directory "
        "(line 1) and its command-line overrides, shell-quoted (line 2).",
    )
    b.add_argument("paths", nargs="*", metavar="PATH", help="default: outputs")
    b.add_argument(
        "--metric",
        metavar="KEY[:asc|desc]",
        help="default: the runs' monitor (best_val_acc: highest, best_val_loss: "
        "lowest); :desc picks the highest, :asc the lowest",
    )
    b.add_argument("--where", metavar="EXPR", help="as for runner compare")
    p = OneLineParser(
        prog="runner plot",
        description="Redraw a run's curves.png from curves.csv "
        "(and its diagnostics when the run has diagnostics.csv); for a sweep folder, draw "
        "its search.png (the objective against each swept setting, parallel coordinates of "
        "the best trials).",
    )
    p.add_argument(
        "run", metavar="RUN", help="a run directory (or its id under outputs/), or a sweep folder"
    )
    p.add_argument(
        "--out", metavar="FILE.png", help="default: RUN/curves.png (a sweep: SWEEP/search.png)"
    )
    return {"compare": c, "best": b, "plot": p}


def _warn(runs: list[Run]) -> None:
    lines = [f"runner: warning: {r.id}: {w}" for r in runs for w in r.warnings]
    for line in lines[:MAX_WARNINGS]:
        print(line, file=sys.stderr)
    if len(lines) > MAX_WARNINGS:
        print(f"runner: warning: ... and {len(lines) - MAX_WARNINGS} more", file=sys.stderr)


# ---------------------------------------------------------------------------------------------
# commands


def _select(args, runs: list[Run], keys: Keys) -> list[Run]:
    if not args.where:
        return runs
    pred, _ = compile_where(args.where, keys)
    selected = [r for r in runs if pred(r)]
    if not selected:
        raise NoRuns(
            f"no run matches --where '{args.where}' ({len(runs)} runs under "
            f"{', '.join(args.paths)})"
        )
    return selected


def _check(args) -> None:
    if getattr(args, "top", None) is not None and args.top < 1:
        raise ResultsError("--top: N must be at least 1")
    if getattr(args, "precision", None) is not None and not 0 <= args.precision <= 15:
        raise ResultsError("--precision: N must be between 0 and 15")


@dataclass
class Table:
    """What `runner compare` shows for a set of runs (compare_table)."""

    columns: list
    rows: list
    caption: str
    items: list  # runs, or Groups with --group-by, sorted, after --top
    gkeys: list
    selected: list  # the runs after --where
    sort_spec: list


def compare_table(args, runs: list[Run]) -> Table:
    """The table of `runner compare` ARGS for the runs (also each refresh of --watch). Raises
    ResultsError for bad input, NoRuns when --where matches none."""
    keys = Keys(runs)
    selected = _select(args, runs, keys)
    gkeys = (
        [keys.resolve(n.strip(), "--group-by") for n in args.group_by.split(",")]
        if args.group_by
        else []
    )
    sort_spec = parse_sort(args.sort, keys, "--sort") if args.sort else default_sort(selected, keys)
    items = make_groups(selected, gkeys) if gkeys else selected
    items = sort_items(items, sort_spec)
    if args.top:
        items = items[: args.top]
    shown = [r for it in items for r in (it.runs if gkeys else [it])]
    cols, hidden = choose_columns(args, keys, shown, gkeys, sort_spec, args.format)
    rows = build_rows(cols, items)
    note = caption(runs, shown, items, gkeys, sort_spec, hidden)
    return Table(cols, rows, note, items, gkeys, selected, sort_spec)


def cmd_compare(args) -> int:
    _check(args)
    args.paths = args.paths or [DEFAULT_ROOT]
    if args.watch or args.interval is not None:
        from runner.compare import watch

        return watch.cmd_watch(args, compare_table)
    if args.diff is not None:
        return cmd_diff(args)
    if args.importance:
        return search.cmd_importance(args)
    runs = load_runs(args.paths)
    try:
        t = compare_table(args, runs)
        render(args.format, t.columns, t.rows, args.precision, t.caption)
        if args.plot:
            _plot_selection(args.plot, t.items, t.gkeys, t.columns)
    finally:
        _warn(runs)
    search.warn_edges(args.paths)
    return 0


def _plot_selection(path: str, items: list, gkeys, cols) -> None:
    from runner.compare.render import plot_overlay

    params = [c.key for c in cols if c.kind == "param" and c.key not in gkeys]
    series = []
    for it in items:
        if isinstance(it, Group):
            label = (
                " ".join(f"{Keys.label(k)}={show_value(v)}" for k, v in zip(gkeys, it.values))
                + f" (n={len(it.runs)})"
            )
            series.append((label, it.runs))
        else:
            label = " ".join(
                [it.id] + [f"{Keys.label(k)}={show_value(it.get(k))}" for k in params[:4]]
            )
            series.append((label, [it]))
    metrics = Counter(r.metric for _, runs in series for r in runs if r.metric)
    metric = metrics.most_common(1)[0][0] if metrics else "acc"
    plot_overlay(series, metric, Path(path))
    print(f"runner: wrote {path}", file=sys.stderr)


def find_run(name: str, paths: list[str], loaded=None) -> Run:
    """A run by path, or by id / path suffix among the runs under paths (`loaded`: those runs,
    or a function returning them, called only when `name` is no path)."""
    p = Path(name)
    if p.exists():
        dirs = find_run_dirs(p)
        if len(dirs) == 1:
            run = load_run(dirs[0])
            run.id = str(dirs[0])
            return run
        raise ResultsError(f"{name}: not a run directory ({len(dirs)} runs under it)")
    if p.is_absolute() or name.startswith(("./", "../", "~")):
        raise ResultsError(f"{name}: no such file or directory")
    missing_roots = [r for r in paths if not Path(r).exists()]
    if missing_roots:
        raise ResultsError(
            f"{name}: no such file or directory (nor a run id: there is no "
            f"{', '.join(map(str, missing_roots))} folder to look in)"
        )
    runs = loaded() if callable(loaded) else loaded if loaded is not None else load_runs(paths)
    want = name.strip("/")
    hits = [r for r in runs if r.id == want] or [
        r for r in runs if Path(r.path).as_posix().endswith("/" + want)
    ]
    if len(hits) == 1:
        return hits[0]
    if not hits:
        examples = ", ".join(r.id for r in runs[:3])
        raise ResultsError(
            f"{name}: no such run under {', '.join(paths)} (give a path or an "
            f"id such as {examples})"
        )
    raise ResultsError(f"{name}: ambiguous, matches {', '.join(r.id for r in hits[:5])}")


MAX_DIFF = 26  # runs in one --diff: columns a to z


def _diff_runs(args) -> list[Run]:
    """The runs --diff names, or without names the runs under PATH (and --where)."""
    if len(args.diff) == 1:
        raise ResultsError(
            f"--diff: name two or more runs, or none to compare the runs under PATH "
            f"(got only {args.diff[0]})"
        )
    if args.diff:
        cache = []

        def loaded():  # the runs under PATH, read once, only for a name that is no path
            if not cache:
                cache.append(load_runs(args.paths))
            return cache[0]

        runs = [find_run(name, args.paths, loaded) for name in args.diff]
    else:
        runs = load_runs(args.paths)
        if args.where:
            runs = _select(args, runs, Keys(runs))
        if len(runs) < 2:
            raise NoRuns(
                f"--diff: {len(runs)} run under {', '.join(args.paths)}"
                f"{' matching --where' if args.where else ''}; it compares two or more"
            )
    if len(runs) > MAX_DIFF:
        raise ResultsError(
            f"--diff: {len(runs)} runs, at most {MAX_DIFF} fit side by side "
            f"(name them, or narrow with --where)"
        )
    return runs


def _differ(values: list) -> bool:
    first = hashable(values[0])
    return any(hashable(v) != first for v in values[1:])


NO_FILE = object()  # a run without (a readable) provenance.json: "—"
SHORT = ("commit", "diff_sha256")  # hashes: 12 hex digits tell them apart in a table


def cmd_diff(args) -> int:
    """Rows (kind, key, value per run) for the keys whose values differ: config, provenance,
    then status and metrics. A run without provenance.json shows — in the provenance rows; a
    damaged one is a warning, and the other runs are still compared."""
    runs = _diff_runs(args)
    names = [chr(ord("a") + i) for i in range(len(runs))]
    prov = [load_provenance(r) for r in runs]
    has_prov = [p is not None for p in prov]
    rows = []
    sources = (
        ("config", "p", [r.params for r in runs]),
        ("provenance", "v", [p or {} for p in prov]),
        ("metrics", "m", [r.metrics for r in runs]),
    )
    for kind, code, dicts in sources:
        if kind == "metrics" and _differ([r.status for r in runs]):
            rows.append(("metrics", "status", [r.status for r in runs]))
        for k in dict.fromkeys(key for d in dicts for key in d):
            values = [
                NO_FILE if kind == "provenance" and not has else d.get(k, missing())
                for d, has in zip(dicts, has_prov)
            ]
            if _differ(values):
                rows.append((kind, Keys.label((code, k)), values))
    if args.format in ("csv", "json"):  # raw values, missing ones as null
        cols = [Column(n, "text") for n in ["kind", "key", *names]]
        cells = [
            [kind, key, *(None if v is missing() or v is NO_FILE else v for v in values)]
            for kind, key, values in rows
        ]
    else:
        precision = 4 if args.precision is None else args.precision

        def text(kind, key, v):
            if v is NO_FILE:
                return "—"
            if v is missing():
                return "-"
            if kind == "metrics":
                return fmt_number(v, precision)
            if kind == "provenance" and key.endswith(SHORT) and isinstance(v, str):
                return v[:12]
            return show_value(v)

        cols = [Column("", "text"), Column("key", "text")] + [Column(n, "text") for n in names]
        cells = [[kind, key, *(text(kind, key, v) for v in values)] for kind, key, values in rows]
    if args.format == "table":
        print("\n".join(f"{n}: {r.path}" for n, r in zip(names, runs)))
    if args.format == "table" and not rows:
        same = (
            "same"
            if all(has_prov)
            else "no provenance.json"
            if not any(has_prov)
            else "only some runs have provenance.json"
        )
        print(f"same config and metrics; provenance: {same}")
    else:
        render(args.format, cols, cells, args.precision)
    _warn(runs)
    return 0


def cmd_best(args) -> int:
    args.paths = args.paths or [DEFAULT_ROOT]
    runs = load_runs(args.paths)
    try:
        keys = Keys(runs)
        completed = [r for r in runs if r.status == "completed"]
        pruned = [r for r in runs if r.status == rundir.PRUNED]
        if args.where and pruned:
            pred, _ = compile_where(args.where, keys)
            pruned = [r for r in pruned if pred(r)]
        if not completed:
            raise NoRuns(
                f"no completed run under {', '.join(args.paths)} ({len(runs)} runs"
                + (f", {len(pruned)} pruned" if pruned else "")
                + ")"
            )
        if args.metric:
            spec = parse_sort(args.metric, keys, "--metric")
            if spec[0][0][0] != "m":
                raise ResultsError(
                    f"--metric: '{args.metric}' is not a metric; available: "
                    f"{', '.join(keys.metrics)}"
                )
        else:
            spec = default_sort(completed, keys)
        if not spec:
            raise ResultsError(
                f"--metric: no validation metric in the runs; available: "
                f"{', '.join(keys.metrics) or 'none'}"
            )
        candidates = _select(args, completed, keys)
        ranked = [r for r in sort_items(candidates, spec[:1]) if sortable(r.get(spec[0][0]))]
        if not ranked:
            raise NoRuns(f"no completed run has {Keys.label(spec[0][0])}")
        best = ranked[0]
        print(best.path)
        print(shlex.join(rerun_overrides(best.overrides())))
        key, desc = spec[0]
        print(
            f"runner: best {Keys.label(key)} = {show_value(best.get(key))} "
            f"({'max' if desc else 'min'} over {len(ranked)} completed runs"
            f"{_pruned_note(pruned)}): {best.id}",
            file=sys.stderr,
        )
    finally:
        _warn(runs)
    return 0


def _pruned_note(pruned: list[Run]) -> str:
    """'; not ranked: 3 pruned at 2-4 epochs': they trained less than the ranked runs."""
    if not pruned:
        return ""
    budgets = sorted(b for r in pruned if isinstance(b := r.metrics.get("epochs_run"), int))
    at = ""
    if budgets:
        lo, hi = budgets[0], budgets[-1]
        at = f" at {lo} epoch{'s' if hi > 1 else ''}" if lo == hi else f" at {lo}-{hi} epochs"
    return f"; not ranked: {len(pruned)} pruned{at}"


def cmd_plot(args) -> int:
    if search.is_sweep(args.run):  # a sweep folder: search.png
        search.plot_sweep(args.run, args.out, written=print)
        return 0
    run = find_run(args.run, [DEFAULT_ROOT])
    plot_run(run, Path(args.out) if args.out else None, written=print, name=args.run)
    _warn([run])
    return 0


def plot_run(
    run: Run, out: Path | None = None, title: str | None = None, written=None, name: str = ""
) -> list:
    """Draw the run's curves.png (to `out`, default RUN/curves.png) and, when it has
    diagnostics, its diagnostics.png from the files on disk: `runner plot` and the detached
    process that draws a run's PNGs after it returned (runner.compare.plotjob). `title`: default
    the run's overrides, else its id. Raises for curves it cannot draw; what it leaves out goes to
    run.warnings ("not plotted: ..."). `written(path)` is called for each PNG once written;
    `name`: the run as the user named it, for the messages."""
    written = written or (lambda path: None)
    curves = run.path / rundir.CURVES
    rows = run.curves()
    if run.curves_error:  # "curves.csv: not UTF-8 (byte 0xff at 17)"
        raise ResultsError(os.path.join(str(run.path), run.curves_error))
    if not rows:
        raise NoRuns(
            f"{name or run.id}: no {rundir.CURVES} yet (the run has not finished an epoch)"
        )
    metric = run.metric
    fields = run.curve_fields()
    wanted = ["train_loss", "val_loss"] + ([f"train_{metric}", f"val_{metric}"] if metric else [])
    have = [f for f in wanted if f in fields]
    if "epoch" not in fields or not have:
        raise ResultsError(
            f"{curves}: nothing to plot (columns {', '.join(fields)}; expected "
            f"epoch and some of {', '.join(wanted)})"
        )
    lacking = [f for f in wanted if f not in fields]
    if lacking:
        run.warnings.append(
            f"{rundir.CURVES} has no {', '.join(lacking)} column"
            f"{'s' if len(lacking) > 1 else ''}: plotted the others"
        )
    from runner.plots import plot_curves

    default_out = out is None
    out = out or run.path / rundir.CURVES_PNG
    title = title if title is not None else " ".join(run.overrides()) or run.id
    plot_curves(rows, metric, out, title=title, metrics=run.metrics)
    written(out)
    done = [out]
    diag = _plot_diagnostics(run, out, default_out, title)
    if diag:
        written(diag)
        done.append(diag)
    return done


def _plot_diagnostics(run: Run, out: Path, default_out: bool, title: str) -> Path | None:
    """A run with diagnostics.csv (per-layer rows) also gets RUN/diagnostics.png (with --out
    FILE.png: FILE_diagnostics.png)."""
    got = rundir.read_diagnostics(run.path)
    if got.error:
        run.warnings.append(f"not plotted: {got.error}")
        return
    rows = got.data
    if not rows or not {"grad_norm", "act_std"} <= set(rows[0]):
        if rows:
            run.warnings.append(
                f"not plotted: {rundir.DIAGNOSTICS} has no grad_norm and act_std columns"
            )
        return
    try:
        from runner.plots import plot_diagnostics
    except ImportError:
        return
    target = (
        run.path / rundir.DIAGNOSTICS_PNG
        if default_out
        else out.with_name(out.stem + "_diagnostics.png")
    )
    plot_diagnostics(rows, target, title=title)
    return target


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    cmd = argv.pop(0) if argv and argv[0] in COMMANDS else "compare"
    parser = _parsers()[cmd]
    try:
        args = parser.parse_intermixed_args(argv)
        return {"compare": cmd_compare, "best": cmd_best, "plot": cmd_plot}[cmd](args)
    except SystemExit as e:  # --help, or argparse's own exit
        return int(e.code or 0)
    except NoRuns as e:
        print(f"runner: error: {e}", file=sys.stderr)
        return 1
    except (UsageError, ResultsError, rundir.RunDirError) as e:
        print(f"runner: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # runner compare | head
        with contextlib.suppress(OSError):
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - silence the flush at exit
        return 0
    except OSError as e:  # e.g. --plot into a folder that does not exist (rundir.atomic_write)
        where = f"cannot write {e.filename}: " if e.filename else ""
        print(f"runner: error: {where}{e.strerror or e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
