"""Output of `runner compare`: a rich table (terminal), markdown, CSV and JSON (plain, parseable),
sparklines, and the overlaid learning curves of --plot. The tables come in as columns and cells
built by runner.compare; nothing here reads run directories except curves for --plot."""

from __future__ import annotations

import csv
import io
import json
import math
import sys
from dataclasses import dataclass

from runner.compare.results import show_value

BLOCKS = "▁▂▃▄▅▆▇█"
SPARK = "curve"  # the sparkline column (--drop curve hides it)
SPARK_WIDTH = 16
STATUS_STYLE = {
    "completed": "green",
    "diverged": "red",
    "failed": "bold red",
    "interrupted": "magenta",
    "pruned": "cyan",
    "running": "yellow",
    "stale": "yellow dim",
    "unreadable": "bold red",
    "incomplete": "dim",
}


@dataclass
class Column:
    name: str  # header, CSV/JSON field (group metrics: NAME_mean and NAME_std there)
    kind: str  # id | path | status | param | metric | n | spark
    key: tuple | None = None
    better: str | None = None  # "max" / "min": the best cell is shown bold in the table


@dataclass
class Cell:
    value: object = None  # raw value (metric mean in groups)
    std: object = None  # groups: the sample standard deviation (None for one run)
    grouped: bool = False
    counts: bool = False  # groups of integer metrics (epochs): one decimal is enough


def fmt_number(v, precision: int) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if not math.isfinite(v):
            return str(v)
        if v == 0 or abs(v) >= 10**-precision:
            return f"{v:.{precision}f}"
        return f"{v:.{max(precision - 1, 0)}e}"
    return show_value(v)


def sparkline(values, width: int = SPARK_WIDTH) -> str:
    """Unicode blocks, one per epoch (epochs averaged into at most `width` buckets), scaled to
    the curve's own range; a blank for a missing value."""
    vals = list(values)
    if not vals:
        return ""
    if len(vals) > width:
        buckets = []
        for i in range(width):
            seg = [
                v
                for v in vals[i * len(vals) // width : (i + 1) * len(vals) // width]
                if math.isfinite(v)
            ]
            buckets.append(sum(seg) / len(seg) if seg else math.nan)
        vals = buckets
    finite = [v for v in vals if math.isfinite(v)]
    if not finite:
        return " " * len(vals)
    lo, hi = min(finite), max(finite)
    span = hi - lo
    out = []
    for v in vals:
        if not math.isfinite(v):
            out.append(" ")
        elif span <= 1e-12 * max(1.0, abs(hi)):
            out.append(BLOCKS[3])
        else:
            out.append(BLOCKS[min(7, int((v - lo) / span * 7 + 0.5))])
    return "".join(out)


def _text(col: Column, cell, precision: int) -> str:
    """A cell as text for the table and markdown."""
    if col.kind in ("metric", "n"):
        if isinstance(cell, Cell):
            if cell.counts:
                precision = min(precision, 1)
            text = fmt_number(cell.value, precision)
            if cell.grouped and cell.std is not None:
                # the std in the mean's notation: 0.9500 ± 0.0000, not ± 2.6e-07
                fixed = "e" not in text and isinstance(cell.std, float)
                text += " ± " + (
                    f"{cell.std:.{precision}f}" if fixed else fmt_number(cell.std, precision)
                )
            return text
        return fmt_number(cell, precision)
    if col.kind == "param":
        return "—" if cell is _MISSING else show_value(cell)  # a key this run has not
    return "" if cell is None else str(cell)


_MISSING = object()


def missing():
    return _MISSING


def _best_rows(columns, rows) -> dict:
    best = {}
    for j, col in enumerate(columns):
        if col.kind != "metric" or col.better is None:
            continue
        vals = [
            (i, r[j].value)
            for i, r in enumerate(rows)
            if isinstance(r[j], Cell)
            and isinstance(r[j].value, (int, float))
            and not isinstance(r[j].value, bool)
            and math.isfinite(r[j].value)
        ]
        if len(vals) > 1:
            target = (max if col.better == "max" else min)(v for _, v in vals)
            best[j] = {i for i, v in vals if v == target}
    return best


def _fit(widths: list[int], mins: list, available: int, gap: int) -> list[int]:
    """Narrow the columns that may shrink (mins[j] not None), widest first, down to their
    minimum, until the table fits `available`; what still does not fit wraps."""
    widths = list(widths)
    excess = sum(widths) + gap * (len(widths) - 1) - available
    while excess > 0:
        j = max(
            (k for k, m in enumerate(mins) if m is not None and widths[k] > m),
            key=lambda k: widths[k] - mins[k],
            default=None,
        )
        if j is None:
            break
        widths[j] -= 1
        excess -= 1
    return widths


def _mins(columns, texts) -> list:
    """How narrow each column may become in a terminal (None: not at all)."""
    return [
        14
        if c.kind == "id"
        else max([6] + [len(t[j]) for t in texts])
        if c.kind == "param"
        else None
        for j, c in enumerate(columns)
    ]


def _fit_terminal(columns, texts, widths, available: int, gap: int, notes: list) -> list[int]:
    """The columns that fit a terminal `available` wide, in order. A table too wide first gives
    up its reason column (each reason then goes to `notes` as `id: reason`, whole), then the
    columns from the right that still do not fit (the id and status always stay)."""
    keep = list(range(len(columns)))
    mins = _mins(columns, texts)

    def width(ks):
        fitted = _fit([widths[k] for k in ks], [mins[k] for k in ks], available, gap)
        return sum(fitted) + gap * (len(ks) - 1)

    if width(keep) <= available:
        return keep
    ids = [j for j, c in enumerate(columns) if c.kind == "id"]
    for j, c in enumerate(columns):
        if c.name == "reason" and c.kind == "text":
            keep.remove(j)
            for n, t in enumerate(texts, 1):
                if t[j]:
                    notes.append(f"{t[ids[0]] if ids else n}: {t[j]}")
    for j in reversed(list(keep)):
        if width(keep) <= available:
            break
        if columns[j].kind not in ("id", "status"):
            keep.remove(j)
    return keep


def _clip(text: str, width: int, left: bool = False) -> str:
    """Cut to width with an ellipsis: on the left for ids and dotted names (their end tells
    them apart: …/12-00-00/7, …izer.lr)."""
    if len(text) <= width:
        return text
    return "…" + text[len(text) - width + 1 :] if left else text[: max(width - 1, 0)] + "…"


def render_table(columns, rows, precision: int, caption: str = "", file=None) -> None:
    """Aligned columns under a rule. Laid out here rather than with rich.Table, which is slow
    for a thousand rows (docs/performance.md); rich only styles the text when writing to a
    terminal. Piped output is plain text as wide as it needs, one line per row; in a terminal
    every line fits its width (a terminal would break a longer one into fragments): ids are
    narrowed (…), the reason column becomes one `id: reason` line per run under the table, and
    the columns that still do not fit are left out, named in the caption."""
    file = file or sys.stdout
    gap = 2
    texts = [[_text(c, x, precision) for c, x in zip(columns, row)] for row in rows]
    widths = [max([len(c.name)] + [len(t[j]) for t in texts]) for j, c in enumerate(columns)]
    console = None
    notes: list[str] = []
    if getattr(file, "isatty", lambda: False)():
        from rich.console import Console

        console = Console(file=file, highlight=False)
        keep = _fit_terminal(columns, texts, widths, console.width, gap, notes)
        if len(keep) < len(columns):
            left_out = [
                c.name for j, c in enumerate(columns) if j not in keep and c.name != "reason"
            ]
            if left_out:
                caption += (
                    ("; " if caption else "")
                    + f"not shown at this width: {', '.join(left_out)} (--drop, a wider "
                    "terminal or a pipe shows them)"
                )
            columns = [columns[j] for j in keep]
            rows = [[r[j] for j in keep] for r in rows]
            texts = [[t[j] for j in keep] for t in texts]
        widths = [max([len(c.name)] + [len(t[j]) for t in texts]) for j, c in enumerate(columns)]
        widths = _fit(widths, _mins(columns, texts), console.width, gap)
    right = [c.kind in ("metric", "n") for c in columns]
    left = [c.kind in ("id", "param") for c in columns]

    def line(cells):
        return [
            (_clip(t, w, lf).rjust(w) if r else _clip(t, w, lf).ljust(w))
            for t, w, r, lf in zip(cells, widths, right, left)
        ]

    best = _best_rows(columns, rows)
    styles = [["bold"] * len(columns)]
    body = [line([c.name for c in columns])]
    for i, (row, cells) in enumerate(zip(rows, texts)):
        body.append(line(cells))
        row_styles = []
        for j, (col, cell) in enumerate(zip(columns, row)):
            if col.kind == "status":
                row_styles.append(STATUS_STYLE.get(str(cell).split(" ")[0], ""))
            elif col.kind == "spark":
                row_styles.append("cyan")
            else:
                row_styles.append("bold" if i in best.get(j, ()) else "")
        styles.append(row_styles)
    rule = "─" * (sum(widths) + gap * (len(widths) - 1))
    if console is None:
        out = [(" " * gap).join(cells).rstrip() for cells in body]
        out.insert(1, rule)
        if caption:
            out.append(caption)
        file.write("\n".join(out) + "\n")
        return
    from rich.text import Text

    text = Text()
    for n, (cells, row_styles) in enumerate(zip(body, styles)):
        for j, (cell, style) in enumerate(zip(cells, row_styles)):
            if j:
                text.append(" " * gap)
            text.append(cell, style=style or None)
        text.append("\n")
        if n == 0:
            text.append(rule + "\n", style="dim")
    for note in notes:
        text.append(note + "\n")
    if caption:
        text.append(caption + "\n", style="dim")
    console.print(text, end="", soft_wrap=True)


def render_markdown(columns, rows, precision: int, file=None) -> None:
    file = file or sys.stdout

    def esc(s: str) -> str:
        return s.replace("|", "\\|")

    lines = [
        "| " + " | ".join(esc(c.name) for c in columns) + " |",
        "|" + "|".join("---:" if c.kind in ("metric", "n") else "---" for c in columns) + "|",
    ]
    for row in rows:
        lines.append(
            "| " + " | ".join(esc(_text(c, x, precision)) for c, x in zip(columns, row)) + " |"
        )
    file.write("\n".join(lines) + "\n")


def _raw(v, precision):
    """A value for CSV/JSON: full precision unless --precision was given."""
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if precision is not None and isinstance(v, float):
        return float(fmt_number(v, precision))
    return v


def records(columns, rows, precision=None) -> list[dict]:
    """Rows as flat dicts: group metrics as NAME_mean and NAME_std; spark columns left out."""
    out = []
    for row in rows:
        rec = {}
        for col, cell in zip(columns, row):
            if col.kind == "spark":
                continue
            if isinstance(cell, Cell):
                if cell.grouped:
                    rec[col.name + "_mean"] = _raw(cell.value, precision)
                    rec[col.name + "_std"] = _raw(cell.std, precision)
                else:
                    rec[col.name] = _raw(cell.value, precision)
            elif cell is _MISSING:
                rec[col.name] = None
            else:
                rec[col.name] = _raw(cell, precision)
        out.append(rec)
    return out


def render_json(columns, rows, precision=None, file=None) -> None:
    file = file or sys.stdout
    file.write(json.dumps(records(columns, rows, precision), indent=2, allow_nan=False) + "\n")


def render_csv(columns, rows, precision=None, file=None) -> None:
    file = file or sys.stdout
    recs = records(columns, rows, precision)
    fields = list(recs[0]) if recs else [c.name for c in columns if c.kind != "spark"]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(fields)
    for rec in recs:
        w.writerow(
            [
                ""
                if rec.get(f) is None
                else (show_value(rec[f]) if isinstance(rec[f], (bool, list, dict)) else rec[f])
                for f in fields
            ]
        )
    file.write(buf.getvalue())


def render(fmt: str, columns, rows, precision, caption: str = "", file=None) -> None:
    if fmt == "table":
        render_table(columns, rows, 4 if precision is None else precision, caption, file)
    elif fmt == "markdown":
        render_markdown(columns, rows, 4 if precision is None else precision, file)
    elif fmt == "csv":
        render_csv(
            [c for c in columns if c.kind != "spark"],
            [[x for c, x in zip(columns, r) if c.kind != "spark"] for r in rows],
            precision,
            file,
        )
    else:
        render_json(columns, rows, precision, file)


def mean_curve(curves: list[list[float]]) -> tuple[list[float], list[float]]:
    """Per-epoch mean and (sample) std over curves of possibly different lengths."""
    n = max((len(c) for c in curves), default=0)
    mean, std = [], []
    for i in range(n):
        vals = [c[i] for c in curves if i < len(c) and math.isfinite(c[i])]
        if not vals:
            mean.append(math.nan)
            std.append(math.nan)
            continue
        m = sum(vals) / len(vals)
        mean.append(m)
        std.append(
            math.sqrt(sum((v - m) ** 2 for v in vals) / (len(vals) - 1)) if len(vals) > 1 else 0.0
        )
    return mean, std


def plot_overlay(series, metric: str, path, title: str = "") -> None:
    """series: [(label, [runs])]: one line per run, or for a group of runs the mean with a
    +-1 std band; validation loss (left) and validation metric (right) against epoch."""
    from runner.plots import pyplot, save_png

    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for label, runs in series:
        for ax, name in ((axes[0], "val_loss"), (axes[1], f"val_{metric}")):
            curves = [[r.get(name, math.nan) for r in run.curves()] for run in runs]
            curves = [c for c in curves if c]
            if not curves:
                continue
            mean, std = mean_curve(curves)
            epochs = list(range(1, len(mean) + 1))
            (line,) = ax.plot(epochs, mean, label=label, lw=1.4)
            if len(curves) > 1:
                ax.fill_between(
                    epochs,
                    [m - s for m, s in zip(mean, std)],
                    [m + s for m, s in zip(mean, std)],
                    color=line.get_color(),
                    alpha=0.15,
                    lw=0,
                )
    for ax, ylabel in (
        (axes[0], "validation loss"),
        (axes[1], "validation " + {"acc": "accuracy", "rmse": "RMSE"}.get(metric, metric)),
    ):
        ax.set_xlabel("epoch")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    if 0 < len(series) <= 20:
        axes[1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
    if title:
        fig.suptitle(title, fontsize=9)
    save_png(fig, path, tight=True)
