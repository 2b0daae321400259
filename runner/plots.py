"""curves.png: loss and metric against epoch, train and validation. matplotlib is imported here
only (it costs ~0.5 s), with the Agg backend: no display needed."""
from __future__ import annotations

import io
from pathlib import Path

from runner.outputs import atomic_write

METRIC_LABEL = {"acc": "accuracy", "rmse": "RMSE"}


def plot_curves(rows: list[dict], metric: str, path: Path, title: str = "") -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, label in ((axes[0], "loss", "loss"),
                           (axes[1], metric, METRIC_LABEL.get(metric, metric))):
        ax.plot(epochs, [r[f"train_{key}"] for r in rows], label="train", marker=".")
        ax.plot(epochs, [r[f"val_{key}"] for r in rows], label="validation", marker=".")
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    atomic_write(path, buf.getvalue())
