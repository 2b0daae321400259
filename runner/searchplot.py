"""search.png: how a sweep's objective depends on each swept hyperparameter, and which settings
the best trials share. Drawn by `runner plot SWEEP_DIR` (runner.compare.search) and at the end of
a sweep (runner.sweep.report.plot_search), from runner.search's reading of the folder.

Top rows: one panel per swept hyperparameter, the objective against its value (a log x axis for
a log-scaled one, categories side by side for a categorical one; dotted lines at the searched
range's bounds). Completed trials are filled dots, pruned ones hollow (their objective comes from
a smaller budget), diverged ones orange crosses, failed or interrupted ones black crosses (those
without an objective sit on the worst edge of the panel), the best trial a red star.
Bottom row: parallel coordinates of the PARALLEL_TOP best completed trials, one vertical axis per
hyperparameter (its searched range from bottom to top, log10 where log-scaled) and the objective
last, coloured by objective (bright = better); the other trials with an objective in light grey.

matplotlib is imported only when drawing (runner.plots.pyplot)."""

from __future__ import annotations

import math
from pathlib import Path

from runner import rundir
from runner.search import Axis, NothingYet, SearchError, Sweep, is_number, short

PARALLEL_TOP = 10
COLS = 4  # panels per row
MAX_GRID_TICKS = 8  # a numeric grid of at most this many values gets a tick at each
OTHER_GREY = "#bbbbbb"
STYLE = {  # status: (marker, face colour, edge colour, legend label)
    rundir.COMPLETED: ("o", "C0", "C0", "completed"),
    rundir.PRUNED: ("o", "none", "C9", "pruned (hollow)"),
    rundir.DIVERGED: ("x", "#ff7f0e", "#ff7f0e", "diverged"),
    rundir.FAILED: ("x", "black", "black", "failed / interrupted"),
}
STYLE[rundir.INTERRUPTED] = STYLE[rundir.FAILED]


def _labels(axes: list[Axis]) -> list[str]:
    """Each name's last dotted part where that is unique (optimizer.lr -> lr)."""
    tails = [a.name.rsplit(".", 1)[-1] for a in axes]
    return [t if tails.count(t) == 1 else a.name for t, a in zip(tails, axes)]


def _x(axis: Axis, value, job: int):
    """A value's x in its panel: the value itself on a numeric axis, the category's index
    (spread a little by job, so that trials of one category do not hide one another)."""
    if axis.scale == "category":
        pos = axis.position(value)
        return None if pos is None else pos + ((job * 0.618034) % 1 - 0.5) * 0.3
    if not is_number(value) or (axis.scale == "log" and value <= 0):
        return None
    return value


def _unit(axis: Axis, value) -> float:
    """A value on a parallel-coordinates axis: 0 at the searched range's low end, 1 at its high
    end (log10 where log-scaled); NaN breaks the line where a trial lacks the key."""
    pos = axis.position(value)
    if pos is None:
        return math.nan
    if axis.scale == "category":
        n = len(axis.grid)
        return pos / (n - 1) if n > 1 else 0.5
    lo, hi = axis.position(axis.low), axis.position(axis.high)
    if lo is None or hi is None or hi == lo:
        return 0.5
    return (pos - lo) / (hi - lo)


def _grid(fig, rows: int, cols: int, gap_h=0.95, gap_w=0.7):
    """rows x cols panels over a wider parallel-coordinates row, with fixed margins in inches
    (constrained layout measured every tick label and took 2/3 of the drawing time)."""
    w, h = fig.get_size_inches()
    left, right, top, bottom = 0.8, 0.95, 0.65, 0.9  # right: the colour bar's labels
    ratios = [1.0] * rows + [1.25]
    ah = (h - top - bottom - rows * gap_h) / len(ratios)
    aw = (w - left - right - (cols - 1) * gap_w) / cols
    return fig.add_gridspec(
        rows + 1,
        cols,
        height_ratios=ratios,
        left=left / w,
        right=1 - right / w,
        top=1 - top / h,
        bottom=bottom / h,
        hspace=gap_h / ah,
        wspace=gap_w / aw,
    )


def _ticks(ax, axis: Axis, NullFormatter) -> None:
    """A numeric grid of a few values: a tick at each (seed 0 1 2, width 16 ... 256). A log
    axis spanning under two decades: ticks at the bounds and two values between (matplotlib
    would label every minor tick, 2x10^1 3x10^1 ..., into one another)."""
    ticks = None
    if axis.grid and len(axis.grid) <= MAX_GRID_TICKS:
        ticks = sorted(axis.grid)
    elif axis.scale == "log" and axis.high < 100 * axis.low:
        ratio = (axis.high / axis.low) ** (1 / 3)
        ticks = [axis.low * ratio**k for k in range(4)]
    if ticks:
        ax.set_xticks(ticks, [short(v) for v in ticks])
        ax.xaxis.set_minor_formatter(NullFormatter())


def plot_search(sweep: Sweep, path, top: int = PARALLEL_TOP) -> Path:
    """Draw search.png of `sweep` to `path` (atomically). Raises SearchError when the sweep has
    no swept hyperparameter or no trial with an objective yet."""
    axes = sweep.axes
    if not axes:
        raise SearchError(f"{sweep.path}: the sweep swept no hyperparameter: nothing to plot")
    drawn = [t for t in sweep.trials if t.status in STYLE]
    with_obj = [t for t in drawn if t.objective is not None]
    if not with_obj:
        raise NothingYet(f"{sweep.path}: no trial has an objective yet: nothing to plot")
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.lines import Line2D
    from matplotlib.ticker import NullFormatter

    from runner.plots import log_scale_if_wide, pyplot, save_png

    plt = pyplot()
    cols = min(len(axes), COLS)
    rows = math.ceil(len(axes) / cols)
    fig = plt.figure(figsize=(max(3.6 * cols, 8.0), 3.0 * rows + 3.6))
    grid = _grid(fig, rows, cols)
    monitor = sweep.monitor or "objective"
    worst_y = 0.03 if sweep.mode == "max" else 0.97  # axes fraction: the panel's worst edge
    ranked = sweep.ranked()
    best = next((t for t in ranked if t.status == rundir.COMPLETED), None)
    labels = _labels(axes)
    present = set()
    for i, (axis, label) in enumerate(zip(axes, labels)):
        ax = fig.add_subplot(grid[i // cols, i % cols])
        for status, (marker, face, edge, _) in STYLE.items():
            pts = [(t, _x(axis, t.params.get(axis.name), t.job)) for t in drawn]
            pts = [(t, x) for t, x in pts if t.status == status and x is not None]
            if not pts:
                continue
            present.add(status)
            scored = [(x, t.objective) for t, x in pts if t.objective is not None]
            unscored = [x for t, x in pts if t.objective is None]
            kw = dict(marker=marker, s=26, linewidths=1.2, zorder=3)
            kw |= dict(facecolors=face, edgecolors=edge) if marker == "o" else dict(c=edge)
            if scored:
                ax.scatter([p[0] for p in scored], [p[1] for p in scored], **kw)
            if unscored:
                ax.scatter(
                    unscored, [worst_y] * len(unscored), transform=ax.get_xaxis_transform(), **kw
                )
        if best is not None:
            bx = _x(axis, best.params.get(axis.name), best.job)
            if bx is not None:
                ax.scatter([bx], [best.objective], marker="*", s=160, c="#d62728", zorder=4)
        if axis.scale == "log":
            ax.set_xscale("log")
            ax.minorticks_off()  # a log axis' minor ticks took a third of the drawing time
        if axis.scale == "category":
            ax.set_xticks(range(len(axis.grid)), axis.categories())
            ax.set_xlim(-0.6, len(axis.grid) - 0.4)
        else:
            for bound in (axis.low, axis.high):
                ax.axvline(bound, color="grey", ls=":", lw=0.8, zorder=1)
            _ticks(ax, axis, NullFormatter)
        if sweep.mode == "min":
            log_scale_if_wide(ax, [t.objective for t in with_obj])
        ax.set_title(axis.name, fontsize=9)
        ax.set_xlabel(label + (" (log)" if axis.scale == "log" else ""))
        if i % cols == 0:
            ax.set_ylabel(f"{monitor} ({sweep.mode})")
        ax.grid(alpha=0.3)
    handles = [
        Line2D([], [], ls="", marker=m, markerfacecolor=f, markeredgecolor=e, color=e, label=lab)
        for s, (m, f, e, lab) in STYLE.items()
        if s in present and s != rundir.INTERRUPTED
    ]
    if best is not None:
        handles.append(
            Line2D(
                [], [], ls="", marker="*", ms=11, color="#d62728", label=f"best (job {best.job})"
            )
        )
    fig.legend(
        handles=handles,
        loc="lower center",
        bbox_to_anchor=(0.5, 0.0),
        ncol=len(handles),
        fontsize=8,
    )
    _parallel(fig.add_subplot(grid[rows, :]), fig, sweep, labels, top, Normalize, ScalarMappable)
    counts = {}
    for t in sweep.trials:
        counts[t.status] = counts.get(t.status, 0) + 1
    what = ", ".join(f"{n} {s}" for s, n in sorted(counts.items(), key=lambda kv: -kv[1]))
    fig.suptitle(
        f"{sweep.path}: {len(sweep.trials)} trials ({what})",
        fontsize=10,
        x=0.02,
        y=1 - 0.08 / fig.get_size_inches()[1],
        ha="left",
        va="top",
    )
    path = Path(path)
    save_png(fig, path)
    return path


def _parallel(ax, fig, sweep: Sweep, labels, top: int, Normalize, ScalarMappable) -> None:
    import matplotlib

    axes = sweep.axes
    sign = -1.0 if sweep.mode == "max" else 1.0
    ranked = sorted(
        (t for t in sweep.trials if t.objective is not None),
        key=lambda t: (t.status != rundir.COMPLETED, sign * t.objective, t.job),
    )
    # the best completed trials; without any, the best of those with an objective
    shown = [t for t in ranked if t.status == rundir.COMPLETED][:top] or ranked[:top]
    others = [t for t in ranked if t not in shown]
    objs = [t.objective for t in ranked]
    lo, hi = min(objs), max(objs)
    n = len(axes)
    xs = list(range(n + 1))

    def ys(t):
        obj = (t.objective - lo) / (hi - lo) if hi > lo else 0.5
        return [_unit(a, t.params.get(a.name)) for a in axes] + [obj]

    for t in others:
        ax.plot(xs, ys(t), color=OTHER_GREY, lw=0.8, alpha=0.6, zorder=1)
    cmap = matplotlib.colormaps["viridis" if sweep.mode == "max" else "viridis_r"]
    tops = [t.objective for t in shown]
    norm = Normalize(min(tops), max(tops) if max(tops) > min(tops) else min(tops) + 1e-12)
    for t in reversed(shown):  # the best drawn last, on top
        ax.plot(xs, ys(t), color=cmap(norm(t.objective)), lw=1.8, marker="o", ms=3, zorder=2)
    for i, a in enumerate(axes):
        ax.axvline(i, color="black", lw=0.8, zorder=0)
        if a.scale == "category":
            for c in a.categories():
                ax.text(i + 0.03, _unit(a, c), c, fontsize=7, va="center")
        else:
            ax.text(i + 0.03, 0.0, short(a.low), fontsize=7, va="bottom")
            ax.text(i + 0.03, 1.0, short(a.high), fontsize=7, va="top")
    ax.axvline(n, color="black", lw=0.8, zorder=0)
    ax.text(n + 0.03, 0.0, short(lo), fontsize=7, va="bottom")
    ax.text(n + 0.03, 1.0, short(hi), fontsize=7, va="top")
    ax.set_xticks(
        xs,
        [lab + (" (log)" if a.scale == "log" else "") for lab, a in zip(labels, axes)]
        + [sweep.monitor or "objective"],
    )
    ax.set_xlim(-0.1, n + 0.4)
    ax.set_ylim(-0.05, 1.05)
    ax.set_yticks([])
    ax.set_title(
        f"parallel coordinates: the {len(shown)} best completed trials (grey: the others); "
        "each axis spans the searched range",
        fontsize=9,
    )
    fig.colorbar(
        ScalarMappable(norm=norm, cmap=cmap),
        ax=ax,
        label=sweep.monitor or "objective",
        fraction=0.03,
        pad=0.02,
    )
