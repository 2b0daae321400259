"""The live display of a run (rich): one progress line per epoch with losses, metrics, learning
rate and ETA, then a summary table and the run directory."""
from __future__ import annotations

import math

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table


def _f(v, digits=4) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        if not math.isfinite(v):
            return str(v)
        return f"{v:.{digits}g}"
    return str(v)


class Display:
    def __init__(self, epochs: int, *, enabled: bool = True, console: Console | None = None,
                 title: str = "train"):
        self.console = console or Console(stderr=True)
        self.enabled = enabled
        self.epochs = epochs
        self.progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(bar_width=12),
            TextColumn("epoch"), MofNCompleteColumn(), TextColumn("{task.fields[stats]}"),
            TextColumn("eta"), TimeRemainingColumn(compact=True),
            console=self.console, disable=not enabled, transient=False)
        self.task = None
        self.title = title

    def __enter__(self):
        self.progress.start()
        self.task = self.progress.add_task(self.title, total=self.epochs,
                                           stats="(train|val) compiling...")
        return self

    def __exit__(self, *exc):
        self.progress.stop()

    def start(self, spec, n_params: int, compile_time: float) -> None:
        self.progress.update(self.task, stats=f"{n_params:,} params, compiled in "
                                              f"{compile_time:.2f}s")

    def epoch(self, row: dict) -> None:
        # Kept short to fit 100 columns: each pair is train|validation.
        m = "acc" if "val_acc" in row else "rmse"
        stats = (f"loss {_f(row['train_loss'], 3)}[dim]|[/]{_f(row['val_loss'], 3)} "
                 f"{m} {_f(row[f'train_{m}'], 3)}[dim]|[/]{_f(row[f'val_{m}'], 3)} "
                 f"lr {_f(row['lr'], 3)}")
        self.progress.update(self.task, advance=1, stats=stats)


def summary_table(metrics: dict) -> Table:
    m = metrics["metric"]
    status = metrics["status"]
    colour = {"completed": "green", "diverged": "yellow"}.get(status, "red")
    table = Table(title=f"status: [{colour}]{status}[/]", show_header=True)
    table.add_column("split")
    table.add_column("loss", justify="right")
    table.add_column(m, justify="right")
    table.add_row("train (final epoch)", _f(metrics["final_train_loss"]),
                  _f(metrics[f"final_train_{m}"]))
    table.add_row("val (final epoch)", _f(metrics["final_val_loss"]), _f(metrics[f"final_val_{m}"]))
    table.add_row(f"val (best, epoch {_f(metrics['best_epoch'])})", _f(metrics["best_val_loss"]),
                  _f(metrics[f"best_val_{m}"]))
    table.add_row(f"test ({metrics['eval_weights'] or '-'} weights)", _f(metrics["test_loss"]),
                  _f(metrics[f"test_{m}"]))
    return table


def summary_line(metrics: dict) -> str:
    return (f"{metrics['epochs_run']}/{metrics['epochs']} epochs, "
            f"{metrics['iterations']} iterations ({metrics['steps_per_epoch']}/epoch, "
            f"batch {metrics['batch_size']}), {metrics['params']:,} params, "
            f"wall {metrics['wall_time']:.2f}s (compile {metrics['compile_time']:.2f}s, "
            f"train {metrics['train_time']:.2f}s)")
