"""curves.png and diagnostics.png, and the matplotlib set-up every PNG of runner uses: pyplot()
and save_png() (runner.compare.render, runner.sweep.report and scripts/lessons.py draw through
them). matplotlib is imported only inside pyplot() (it is slow to import: docs/performance.md),
with the Agg backend: no display needed."""

from __future__ import annotations

import io
from pathlib import Path

from runner.rundir import atomic_write

METRIC_LABEL = {"acc": "accuracy", "rmse": "RMSE"}


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
    half a file) and close it; `tight`: fig.tight_layout() first. The folder must exist."""
    import matplotlib.pyplot as plt

    try:
        if tight:
            fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=dpi)
    finally:
        plt.close(fig)
    atomic_write(Path(path), buf.getvalue())


def plot_diagnostics(rows: list[dict], path: Path, title: str = "") -> None:
    """Per-layer gradient norm and activation std against epoch: a vanishing gradient shows as
    the first layers' lines far below the last ones."""
    plt = pyplot()
    layers = list(dict.fromkeys(r["layer"] for r in rows))
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    cmap = plt.get_cmap("viridis")
    for i, layer in enumerate(layers):
        rs = [r for r in rows if r["layer"] == layer]
        colour = cmap(i / max(len(layers) - 1, 1))
        axes[0].plot(
            [r["epoch"] for r in rs],
            [r["grad_norm"] for r in rs],
            label=layer,
            color=colour,
            marker=".",
        )
        if layer.startswith("layer"):
            axes[1].plot(
                [r["epoch"] for r in rs],
                [r["act_std"] for r in rs],
                label=layer,
                color=colour,
                marker=".",
            )
    axes[0].set_yscale("log")
    axes[0].set_ylabel("gradient norm (mean over the epoch's steps)")
    axes[1].set_ylabel("activation std (fixed batch)")
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, ncol=2)
    if title:
        fig.suptitle(title)
    save_png(fig, path, tight=True)


def plot_curves(rows: list[dict], metric: str | None, path: Path, title: str = "") -> None:
    """Loss (left) and metric (right), train and validation, against epoch; a column the rows
    lack (a curves.csv of another version) is left out."""
    plt = pyplot()
    epochs = [r["epoch"] for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, label in (
        (axes[0], "loss", "loss"),
        (axes[1], metric, METRIC_LABEL.get(metric, metric or "metric")),
    ):
        for split, name in (("train", "train"), ("val", "validation")):
            if key and f"{split}_{key}" in rows[0]:
                ax.plot(epochs, [r[f"{split}_{key}"] for r in rows], label=name, marker=".")
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend()
    if title:
        fig.suptitle(title)
    save_png(fig, path, tight=True)
