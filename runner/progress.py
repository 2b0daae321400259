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


# A sweep shows one live display over its trials; rich allows one live display at a time, so while
# a sweep's Progress is set here each trial adds its row to it instead of starting its own.
_shared: Progress | None = None


def share(progress: Progress | None) -> None:
    """Make trials draw into `progress` (None: each trial owns its display again)."""
    global _shared
    _shared = progress


def columns():
    return (
        TextColumn("[bold]{task.description}"),
        BarColumn(bar_width=12),
        TextColumn("{task.fields[unit]}"),
        MofNCompleteColumn(),
        TextColumn("{task.fields[stats]}"),
        TextColumn("eta"),
        TimeRemainingColumn(compact=True),
    )


class Display:
    def __init__(
        self,
        epochs: int,
        *,
        enabled: bool = True,
        console: Console | None = None,
        title: str = "train",
    ):
        self.console = console or Console(stderr=True)
        self.enabled = enabled
        self.epochs = epochs
        self.owned = _shared is None
        self.progress = _shared or Progress(
            *columns(), console=self.console, disable=not enabled, transient=False
        )
        self.task = None
        self.title = title

    def __enter__(self):
        if self.owned:
            self.progress.start()
        self.task = self.progress.add_task(
            self.title,
            total=self.epochs,
            unit="epoch",
            stats="(train|val) compiling...",
            visible=self.enabled,
        )
        return self

    def __exit__(self, *exc):
        if self.owned:
            self.progress.stop()
        else:
            self.progress.remove_task(self.task)

    def start(self, spec, n_params: int, compile_time: float) -> None:
        self.progress.update(
            self.task, stats=f"{n_params:,} params, compiled in {compile_time:.2f}s"
        )

    def warn(self, msg: str) -> None:
        # Printed above the live line; always shown, even with the progress display off.
        # soft_wrap: one line however narrow the terminal, never a fragment without its prefix
        self.progress.console.print(f"[yellow]warning:[/] {msg}", highlight=False, soft_wrap=True)

    def advance(self, epochs: int, stats: str) -> None:
        self.progress.update(self.task, advance=epochs, stats=stats)

    def epoch(self, row: dict) -> None:
        self.progress.update(self.task, advance=1, stats=epoch_stats(row))


def epoch_stats(row: dict) -> str:
    """An epoch's numbers in one short line (rich markup): each pair is train|validation."""
    # Kept short to fit 100 columns.
    m = "acc" if "val_acc" in row else "rmse"
    return (
        f"loss {_f(row['train_loss'], 3)}[dim]|[/]{_f(row['val_loss'], 3)} "
        f"{m} {_f(row[f'train_{m}'], 3)}[dim]|[/]{_f(row[f'val_{m}'], 3)} "
        f"lr {_f(row['lr'], 3)}"
    )


def summary_table(metrics: dict) -> Table:
    m = metrics["metric"]
    status = metrics["status"]
    colour = {"completed": "green", "diverged": "yellow"}.get(status, "red")
    table = Table(title=f"status: [{colour}]{status}[/]", show_header=True)
    table.add_column("split")
    table.add_column("loss", justify="right")
    table.add_column(m, justify="right")
    table.add_row(
        "train (final epoch)", _f(metrics["final_train_loss"]), _f(metrics[f"final_train_{m}"])
    )
    table.add_row("val (final epoch)", _f(metrics["final_val_loss"]), _f(metrics[f"final_val_{m}"]))
    table.add_row(
        f"val (best, epoch {_f(metrics['best_epoch'])})",
        _f(metrics["best_val_loss"]),
        _f(metrics[f"best_val_{m}"]),
    )
    # test_* are the best epoch's weights (best_params.npz: what to report), final_test_* the
    # weights after the last epoch; metrics.json from before both existed has test_* only.
    table.add_row(
        f"test (best epoch {_f(metrics.get('test_epoch', metrics['best_epoch']))} weights)"
        if "final_test_loss" in metrics
        else f"test ({metrics.get('eval_weights') or '-'} weights)",
        _f(metrics["test_loss"]),
        _f(metrics[f"test_{m}"]),
    )
    if "final_test_loss" in metrics:
        table.add_row(
            f"test (final weights, epoch {_f(metrics.get('final_test_epoch'))})",
            _f(metrics["final_test_loss"]),
            _f(metrics[f"final_test_{m}"]),
        )
    return table


def summary_line(metrics: dict) -> str:
    cv = ""
    if metrics.get("cv_folds"):
        cv = (
            f"{metrics['cv_folds']}-fold cross-validation: best {metrics['monitor']} "
            f"{_f(metrics['cv_mean'])} +- {_f(metrics['cv_std'])} (mean +- std over folds; "
            f"the table shows fold means)\n"
        )
    overfit = ""
    if metrics.get("overfit_reached"):  # a failed check is a warning already
        overfit = (
            f"\noverfit check passed: {metrics['n_train']} training examples reached "
            f"{100 * metrics['overfit_train_acc']:.1f}% training accuracy"
        )
    return (
        cv
        + (
            f"{metrics['epochs_run']}/{metrics['epochs']} epochs, "
            f"{metrics['iterations']} iterations ({metrics['steps_per_epoch']}/epoch, "
            f"batch {metrics['batch_size']}), {metrics['params']:,} params, "
            f"wall {metrics['wall_time']:.2f}s (compile {metrics['compile_time']:.2f}s, "
            f"train {metrics['train_time']:.2f}s)"
        )
        + overfit
    )
