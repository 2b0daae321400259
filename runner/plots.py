"""curves.png and diagnostics.png, and the matplotlib set-up every PNG of runner uses: pyplot()
and save_png() (runner.compare.render, runner.sweep.report and scripts/lessons.py draw through
them). matplotlib is imported only inside pyplot() (it is slow to import: docs/performance.md),
with the Agg backend: no display needed.

Every PNG carries a description of what it shows (DESCRIPTION_KEY, a PNG text chunk: JSON with
per panel its title, labels, axis scales, x tick labels and lines, and per legend whether it
covers any drawn data), so that tests, and anyone with PIL, check a picture by reading it back:
read_description(path)."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

from runner.rundir import atomic_write

METRIC_LABEL = {"acc": "accuracy", "rmse": "RMSE"}
DESCRIPTION_KEY = "runner:axes"
BEST_COLOUR = "#d62728"  # the best-epoch marker, the only red of curves.png
LOG_SPAN = 10.0  # a y axis goes log when its positive values span more than this factor
MAX_DESCRIBED = 1000  # points of a line whose data the description carries
RATIO_BAND = (1e-4, 1e-2)  # the update/weight ratios diagnostics.py accepts (~1e-3 is right)


def pyplot(rc: dict | None = None):
    """matplotlib.pyplot on the Agg backend (files only, no display), with `rc` (rcParams such
    as {"font.size": 8}) applied."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if rc:
        plt.rcParams.update(rc)
    return plt


def save_png(fig, path, *, dpi: int = 100, tight: bool = False) -> None:
    """Write `fig` to `path` as a PNG atomically (runner.rundir.atomic_write: readers never see
    half a file), with its description (describe()) as a text chunk, and close it; `tight`:
    fig.tight_layout() first. The folder must exist."""
    import matplotlib.pyplot as plt
    from PIL import Image, PngImagePlugin

    try:
        if tight:
            fig.tight_layout()
        fig.set_dpi(dpi)
        # One render serves both the description (tick labels and legend boxes exist only
        # after a draw) and the pixels; savefig would render a second time.
        fig.canvas.draw()
        try:
            desc = describe(fig)
        except Exception as e:  # noqa: BLE001 - a figure describe() cannot read keeps its pixels
            desc = {"error": f"{type(e).__name__}: {e}"}
        info = PngImagePlugin.PngInfo()
        info.add_text(DESCRIPTION_KEY, json.dumps(desc, allow_nan=False))
        size = fig.canvas.get_width_height(physical=True)
        img = Image.frombuffer("RGBA", size, fig.canvas.buffer_rgba(), "raw", "RGBA", 0, 1)
        buf = io.BytesIO()
        img.save(buf, format="png", pnginfo=info, dpi=(dpi, dpi))
    finally:
        plt.close(fig)
    atomic_write(Path(path), buf.getvalue())


def read_description(path) -> dict:
    """The description save_png wrote into the PNG at `path` ({} for a PNG without one)."""
    from PIL import Image

    with Image.open(path) as img:
        text = getattr(img, "text", {}).get(DESCRIPTION_KEY)
    return json.loads(text) if text else {}


def _num(v):
    v = _finite(v)
    return None if math.isnan(v) else float(f"{v:.6g}")


def _display_runs(line):
    """A drawn line's vertices in display coordinates, as runs of consecutive finite points
    (NaN breaks a line, and a log axis drops values <= 0)."""
    xy = line.get_transform().transform(line.get_xydata())
    ok = [math.isfinite(x) and math.isfinite(y) for x, y in xy.tolist()]
    runs, start = [], None
    for i, good in enumerate([*ok, False]):
        if good and start is None:
            start = i
        elif not good and start is not None:
            runs.append(xy[start:i])
            start = None
    return runs


def _covers_data(box, axes) -> bool:
    """Whether the display box `box` (a legend) hides part of a line drawn in `axes` (only
    the part inside an axes counts: a line is clipped there)."""
    from matplotlib.path import Path as MPath
    from matplotlib.transforms import Bbox

    for ax in axes:
        inter = Bbox.intersection(box, ax.bbox)
        if inter is None or inter.width <= 0 or inter.height <= 0:
            continue
        for line in ax.lines:
            if not line.get_visible():
                continue
            for pts in _display_runs(line):
                if len(pts) == 1 and inter.contains(*pts[0]):
                    return True
                if len(pts) > 1 and MPath(pts).intersects_bbox(inter, filled=False):
                    return True
    return False


def describe(fig) -> dict:
    """What a drawn figure shows, as JSON-ready data: size in pixels, title, and per panel
    its title, labels, scales, limits, visible x tick labels and lines (label, colour, style,
    marker, data), and per legend its labels and whether it covers data (`covers_data`)."""
    from matplotlib.colors import to_hex

    renderer = fig.canvas.get_renderer()
    axes = [ax for ax in fig.axes if ax.get_visible()]
    panels = []
    for ax in axes:
        lo, hi = sorted(ax.get_xlim())
        ticks = [
            t.get_text().replace("\u2212", "-")
            for t in ax.get_xticklabels()
            if t.get_visible() and t.get_text() and lo <= t.get_position()[0] <= hi
        ]
        lines = [
            {
                "label": line.get_label(),
                "color": to_hex(line.get_color()),
                "linestyle": line.get_linestyle(),
                "marker": str(line.get_marker()),
                "n": len(line.get_xdata()),
                # a long series (a per-step trace) is described by its length only
                **(
                    {
                        "x": [_num(v) for v in line.get_xdata()],
                        "y": [_num(v) for v in line.get_ydata()],
                    }
                    if len(line.get_xdata()) <= MAX_DESCRIBED
                    else {}
                ),
            }
            for line in ax.lines
        ]
        panels.append(
            {
                "title": ax.get_title(),
                "xlabel": ax.get_xlabel(),
                "ylabel": ax.get_ylabel(),
                "xscale": ax.get_xscale(),
                "yscale": ax.get_yscale(),
                "xlim": [_num(v) for v in ax.get_xlim()],
                "ylim": [_num(v) for v in ax.get_ylim()],
                "xticks": ticks,
                "lines": lines,
            }
        )
    legends = [(i, ax.get_legend()) for i, ax in enumerate(axes)] + [
        ("figure", leg) for leg in fig.legends
    ]
    sup = getattr(fig, "_suptitle", None)  # Figure.get_suptitle() is matplotlib >= 3.8
    title = sup.get_text() if sup is not None else ""
    return {
        "size": list(fig.canvas.get_width_height(physical=True)),
        "title": title,
        "panels": panels,
        "legends": [
            {
                "owner": owner,
                "labels": [t.get_text() for t in leg.get_texts()],
                "covers_data": _covers_data(leg.get_window_extent(renderer), axes),
            }
            for owner, leg in legends
            if leg is not None and leg.get_visible()
        ],
    }


def _finite(v) -> float:
    try:
        v = float(v)
    except (TypeError, ValueError):
        return math.nan
    return v if math.isfinite(v) else math.nan


def log_scale_if_wide(ax, values, span: float = LOG_SPAN) -> bool:
    """Put `ax`'s y axis on a log scale when the finite `values` are all positive and span
    more than `span` (a loss falling from 2.3 to 0.01 is a line at 0 otherwise; span=1: log
    whenever they are positive and not all equal)."""
    vals = [v for v in map(_finite, values) if not math.isnan(v)]
    wide = bool(vals) and min(vals) > 0 and max(vals) > span * min(vals)
    if wide:
        ax.set_yscale("log")
    return wide


def _integer_epochs(ax) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.grid(alpha=0.3)


def _margins(fig, rows, cols, *, left=0.75, right=0.25, bottom=0.55, top=0.65, gap=0.75):
    """Fixed margins, in inches, around a rows x cols grid: constrained or tight layout
    measures every tick label first, which doubled the time of a run's PNGs."""
    w, h = fig.get_size_inches()
    aw = (w - left - right - (cols - 1) * gap) / cols
    ah = (h - bottom - top - (rows - 1) * gap) / rows
    fig.subplots_adjust(
        left=left / w,
        right=1 - right / w,
        bottom=bottom / h,
        top=1 - top / h,
        wspace=gap / aw,
        hspace=gap / ah,
    )


def plot_curves(
    rows: list[dict],
    metric: str | None,
    path: Path,
    title: str = "",
    metrics: dict | None = None,
) -> None:
    """Loss, metric (train and validation) and learning rate against epoch. From the run's
    metrics (metrics.json): epoch 0, the untrained network's losses (initial_*_loss), and the
    best epoch (a dashed red line on every panel, a star on the validation curves). A loss
    spanning more than LOG_SPAN goes on a log axis, so does the learning rate. A column the
    rows lack (a curves.csv of another version) is left out; so is the lr panel then."""
    plt = pyplot()
    metrics = metrics or {}
    rows = [r for r in rows if not math.isnan(_finite(r.get("epoch")))]
    epochs = [int(r["epoch"]) for r in rows]
    first = rows[0] if rows else {}
    best = metrics.get("best_epoch")
    best = int(best) if isinstance(best, (int, float)) and math.isfinite(best) else None
    panels = [("loss", "loss")]
    if metric and any(f"{s}_{metric}" in first for s in ("train", "val")):
        panels.append((metric, METRIC_LABEL.get(metric, metric)))
    lr = [_finite(r.get("lr")) for r in rows]
    has_lr = any(not math.isnan(v) for v in lr)
    fig, axes = plt.subplots(
        1,
        len(panels) + has_lr,
        figsize=(3.9 * (len(panels) + has_lr) + 0.6, 4.4),
        sharex=True,
        squeeze=False,
    )
    axes = list(axes[0])
    for ax, (key, label) in zip(axes, panels):
        shown = []
        for split, name, colour in (("train", "train", "C0"), ("val", "validation", "C1")):
            if f"{split}_{key}" not in first:
                continue
            xs, ys = list(epochs), [_finite(r[f"{split}_{key}"]) for r in rows]
            start = _finite(metrics.get(f"initial_{split}_{key}"))
            if not math.isnan(start) and 0 not in xs:
                xs, ys = [0, *xs], [start, *ys]
            ax.plot(xs, ys, label=name, marker=".", color=colour)
            shown += ys
            if split == "val" and best in xs:
                y = ys[xs.index(best)]
                ax.plot([best], [y], marker="*", ms=13, color=BEST_COLOUR, ls="", label="_best")
        expected = _finite(metrics.get("initial_loss_expected"))
        if key == "loss" and not math.isnan(expected):  # the notes' check: ~ln C untrained
            ax.axhline(expected, color="0.45", ls=":", lw=1.2, label=f"ln C = {expected:.4g}")
            shown.append(expected)
        gone = metrics.get("diverged_epoch")  # set only when the run diverged
        if key == "loss" and gone:
            # its loss from there on is inf or NaN: nothing would be drawn
            ax.axvline(gone, color="k", ls="-.", lw=1.2, label=f"diverged (epoch {gone})")
        if key == "acc" or not log_scale_if_wide(ax, shown):
            ax.ticklabel_format(axis="y", useOffset=False)  # 2.3026 (ln 10), not +2.302
        ax.set_title(label)
    if has_lr:
        ax = axes[-1]
        ax.plot(epochs, lr, marker=".", color="C2", label="lr (used in the epoch)")
        if not log_scale_if_wide(ax, lr):
            ax.ticklabel_format(axis="y", useOffset=False)
            ax.set_ylim(bottom=0)  # a constant rate reads as one, not as noise around 1e-3
        ax.set_title("learning rate")
    for i, ax in enumerate(axes):
        _integer_epochs(ax)
        if best is not None:
            lab = f"best epoch ({best})" if i == 0 else "_best"
            ax.axvline(best, color=BEST_COLOUR, ls="--", lw=1.2, label=lab)
    handles = {}
    for ax in axes:  # train and validation appear in two panels: one legend entry each
        for line in ax.get_lines():
            if not line.get_label().startswith("_"):
                handles.setdefault(line.get_label(), line)
    handles = list(handles.values())
    ncol = max(1, min(len(handles), int(fig.get_size_inches()[0] // 1.9)))
    # titles name the panels (no y labels): the tick labels of a flat loss (2.30258) are wide
    _margins(fig, 1, len(axes), bottom=0.75 + 0.2 * -(-len(handles) // ncol), gap=0.85)
    if handles:
        fig.legend(handles=handles, loc="lower center", ncol=ncol, fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    save_png(fig, path)


DIAG_PANELS = (
    ("grad_norm", "gradient norm", "mean over the epoch's steps"),
    ("update_ratio", "update/weight ratio", "mean over the epoch's steps"),
    ("act_std", "activation std", "fixed batch, end of epoch"),
    ("dead_frac", "dead-unit fraction", "never active on the batch"),
)


def plot_diagnostics(rows: list[dict], path: Path, title: str = "") -> None:
    """Per layer against epoch (epoch 0: the untrained network): gradient norm, update/weight
    ratio (the band diagnostics.py accepts shaded), activation std (log axes: a vanishing
    signal shows as the deep layers' lines decades below the first ones) and dead-unit
    fraction (with the saturated fraction dashed, for sigmoid and tanh). NaN (no gradient at
    epoch 0, no activation in the head) is left out; one legend, outside the panels."""
    plt = pyplot()
    from matplotlib.ticker import NullLocator

    rows = [r for r in rows if not math.isnan(_finite(r.get("epoch")))]  # a damaged line
    layers = list(dict.fromkeys(r["layer"] for r in rows))
    # Shared x: epoch 0 has activations but no gradient yet, and the panels should still align.
    fig, grid = plt.subplots(2, 2, figsize=(11, 7), sharex=True)
    _margins(fig, 2, 2, left=0.9, right=1.15 + 0.8 * (len(layers) // 25), gap=1.05)
    cmap = plt.get_cmap("viridis")
    colour = {layer: cmap(i / max(len(layers) - 1, 1)) for i, layer in enumerate(layers)}
    by_layer = {layer: [r for r in rows if r["layer"] == layer] for layer in layers}
    handles = {}
    for ax, (key, name, how) in zip(grid.flat, DIAG_PANELS):
        styles = [(key, "-")] + ([("saturated_frac", "--")] if key == "dead_frac" else [])
        values = []
        for k, ls in styles:
            for layer, rs in by_layer.items():
                ys = [_finite(r.get(k)) for r in rs]
                if all(math.isnan(y) for y in ys) or (k == "saturated_frac" and not any(ys)):
                    continue
                xs = [int(_finite(r["epoch"])) for r in rs]
                (line,) = ax.plot(xs, ys, ls=ls, marker=".", color=colour[layer], label=layer)
                handles.setdefault(layer, line)
                values += ys
        if key == "dead_frac":
            ax.set_ylim(-0.03, 1.03)
            if any(line.get_linestyle() == "--" for line in ax.lines):
                how = "solid; saturated: dashed"
            if not ax.lines:
                ax.text(0.5, 0.5, "no ReLU-family layer", ha="center", transform=ax.transAxes)
        else:
            positive = [v for v in values if v > 0]
            if positive:
                ax.set_yscale("log")
                if max(positive) > 100 * min(positive):
                    # decades apart: minor ticks add nothing to read but most of the time
                    ax.yaxis.set_minor_locator(NullLocator())
        if key == "update_ratio" and ax.lines:
            ax.axhspan(*RATIO_BAND, color="green", alpha=0.08, zorder=0)
            ax.axhline(1e-3, color="green", ls=":", lw=1, label="_target")
        ax.set_title(f"{name} ({how})", fontsize=10)
        ax.set_ylabel(name if key != "dead_frac" else "fraction of units")
        _integer_epochs(ax)
        ax.xaxis.set_tick_params(labelbottom=True)
    if handles:
        fig.legend(
            handles=list(handles.values()),
            loc="upper right",
            bbox_to_anchor=(1, 1 - 0.6 / 7),
            fontsize=8,
            ncol=1 + len(handles) // 25,
        )
    if title:
        fig.suptitle(title, fontsize=9)
    save_png(fig, path)


# ---------------------------------------------------------------------------------------------
# A run's PNGs drawn after the prompt came back (trainer.plot_wait): a detached child process,
# runner.compare.plotjob, draws them from the run's files as `runner plot RUN` does. While it
# draws, PENDING in the run folder names it; when it is done PENDING is gone and either the PNGs
# are there or PLOT_ERROR says why not. wait_for_plots(run_dir) waits for that. A sweep's
# topk.png and search.png (hydra.sweeper.plot_wait) go the same way, in the sweep folder, drawn
# by runner.sweep.plotjob (SWEEP_CHILD); both children run child_main.

PENDING = ".plots-pending"  # "PID HOST" of the process drawing the run's PNGs
PLOT_ERROR = "plots-error.txt"  # one line: why the background draw left no PNG
DRAW_TIMEOUT = 300  # s: the child gives up (and says so in PLOT_ERROR) after this
CHILD = "runner.compare.plotjob"  # a run's curves.png and diagnostics.png
SWEEP_CHILD = "runner.sweep.plotjob"  # a sweep's topk.png and search.png

_children: list = []  # this process's children (Popen): reaped so that none lingers as a zombie


def _write_marker(run_dir: Path, pid: int) -> None:
    from runner.rundir import hostname

    atomic_write(Path(run_dir) / PENDING, f"{pid} {hostname()}\n")


def in_background(plot_wait, in_sweep: bool, loggers) -> bool:
    """Whether a run's PNGs are drawn by the detached process (trainer.plot_wait: true draws
    before returning, false after; auto: after, except for a sweep's trials, which would start
    one process each, all at once for a vmapped group, and with logger=mlflow, which uploads
    the PNGs, so they must exist first). The rule of `runner` and `runner resume` alike."""
    if isinstance(plot_wait, bool):
        return not plot_wait
    return not in_sweep and "mlflow" not in loggers


def mark_pending(run_dir) -> None:
    """PENDING naming this process: written before the run's final metrics.json, so that a
    reader never sees a finished run whose PNGs are coming but not announced."""
    import os

    _write_marker(Path(run_dir), os.getpid())


def draw_in_background(run_dir, *args: str, child: str = CHILD) -> int:
    """Start the detached process `python -m CHILD RUN_DIR ARGS...` that draws the folder's
    PNGs from its files (CHILD: a run's curves.png and diagnostics.png, ARGS its title;
    SWEEP_CHILD: a sweep's), and return its pid. It runs in a session of its own (a Ctrl-C or
    SIGTERM of this process, or the terminal closing, does not reach it) and waits, on its
    stdin, until PENDING names it (child_main). Raises OSError when it cannot be started
    (PENDING then removed)."""
    import contextlib
    import subprocess
    import sys

    run_dir = Path(run_dir).resolve()
    _reap()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", child, str(run_dir), *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
    except OSError:
        with contextlib.suppress(OSError):
            (run_dir / PENDING).unlink(missing_ok=True)  # no draw will follow
        raise
    try:
        _write_marker(run_dir, proc.pid)
    finally:
        proc.stdin.close()  # the child's signal to start (EOF also if this process dies first)
    _children.append(proc)
    return proc.pid


class Stopped(Exception):
    pass


def _stop(signum, frame):
    import signal

    raise Stopped(
        f"timed out after {DRAW_TIMEOUT} s" if signum == signal.SIGALRM else "stopped by SIGTERM"
    )


def child_main(folder: Path, draw) -> int:
    """The body of a drawing process (CHILD, SWEEP_CHILD): wait for the parent's go, run
    `draw()` (None when every PNG was drawn, else the one line that says what was not) under
    DRAW_TIMEOUT, then, also when the draw failed or was stopped: PLOT_ERROR holds that line
    (or is removed after a good draw: it was an earlier draw's), and PENDING is removed last.
    Exit status 1 when something was not drawn."""
    import contextlib
    import os
    import signal
    import sys

    folder = Path(folder)
    with contextlib.suppress(OSError):
        sys.stdin.read()  # the parent's go: PENDING now names this process
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGALRM, _stop)
    signal.alarm(DRAW_TIMEOUT)
    try:
        error = draw()
    except BaseException as e:  # noqa: BLE001 - whatever stops the draw is what the record says
        error = not_drawn(e)
    signal.alarm(0)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the record and PENDING's removal, whole
    try:
        if error:
            atomic_write(folder / PLOT_ERROR, error + "\n")
        else:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(folder / PLOT_ERROR)  # from an earlier draw of the same folder
    finally:
        with contextlib.suppress(OSError):
            os.unlink(folder / PENDING)
    return 1 if error else 0


def not_drawn(e: BaseException, what: str = "PNGs") -> str:
    """The one line PLOT_ERROR holds for the exception that stopped a draw."""
    if isinstance(e, KeyboardInterrupt):
        e = Stopped("stopped by SIGINT")
    text = " ".join(str(e).split())  # one line, however the message was laid out
    return f"{what} not drawn: {type(e).__name__}" + (f": {text}" if text else "")


def _reap() -> None:
    for proc in list(_children):
        if proc.poll() is not None:
            _children.remove(proc)


def _alive(pid: int, host: str, since: float) -> bool:
    """Whether the process `pid` on `host` that wrote PENDING at `since` still runs (on
    another host: assumed so)."""
    from runner import rundir

    if host != rundir.hostname():
        return True
    _reap()  # a child of ours that has exited is a zombie, which os.kill still finds
    if rundir.pid_alive(pid) is False:
        return False
    born = rundir.process_started(pid)
    if born is not None and born > since + 2:  # the pid reused by a later process
        return False
    try:  # a zombie whose parent has not reaped it has finished all the same
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def pending(run_dir) -> int | None:
    """The pid of the process drawing the run's PNGs, or None when none is: no PENDING, or a
    stale one (its process is gone, or it is older than DRAW_TIMEOUT allows: a pid reused, or
    a process on another host)."""
    import os
    import time

    path = Path(run_dir) / PENDING
    try:
        text = path.read_text()
        written = os.stat(path).st_mtime
    except (OSError, UnicodeDecodeError):
        return None
    try:
        pid_text, host = text.split()
        pid = int(pid_text)
    except ValueError:
        return None  # a marker being replaced is never half-written (atomic_write): damaged
    if time.time() - written > DRAW_TIMEOUT + 60 or not _alive(pid, host, written):
        return None
    return pid


def wait_for_plots(run_dir, timeout: float = 120.0) -> str | None:
    """Wait until no process is drawing the PNGs of `run_dir`, a run's or a sweep's folder
    (returns at once when none is, a stale PENDING included). None when the PNGs, if the run
    drew any, are all there; else the one line that says why not: PLOT_ERROR's, or that the
    drawing process ended without finishing. TimeoutError after `timeout` seconds."""
    import time

    run_dir = Path(run_dir)
    deadline = time.monotonic() + timeout
    while (pid := pending(run_dir)) is not None:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{run_dir}: PNGs still being drawn after {timeout:g} s (pid {pid})")
        time.sleep(0.05)
    try:
        return (run_dir / PLOT_ERROR).read_text().strip() or "PNGs not drawn"
    except FileNotFoundError:
        pass
    except OSError as e:
        return f"{PLOT_ERROR}: {e.strerror or e}"
    if (run_dir / PENDING).exists():
        return "the process drawing the PNGs ended without finishing"
    return None
