"""The detached process that draws a run's curves.png and diagnostics.png after `runner` has
given the prompt back (trainer.plot_wait: runner.plots.draw_in_background starts it):

    python -m runner.compare.plotjob RUN_DIR [TITLE]

The same drawing as `runner plot RUN_DIR` (plot_run), from the files on disk; in runner.compare,
so that the import contracts keep JAX out of it. It waits for EOF on stdin (its parent closes
the pipe once runner.plots.PENDING names this process), draws, and then, also when the draw
failed or was stopped: PLOT_ERROR holds the one-line reason (or is removed after a good draw),
and PENDING is removed last (runner.plots.child_main, shared with runner.sweep.plotjob). Each
PNG is written atomically: never half a PNG. It exits after the draw, or after
runner.plots.DRAW_TIMEOUT seconds at the latest."""

from __future__ import annotations

import sys
from pathlib import Path

from runner import rundir
from runner.compare.main import plot_run
from runner.compare.results import load_run
from runner.plots import child_main, not_drawn


def draw(run_dir: Path, title: str | None = None) -> str | None:
    """Draw the run's PNGs; None when all were drawn, else the one line that says what was not."""
    try:
        run = load_run(run_dir)
        run.id = str(run_dir)
        plot_run(run, title=title or None)
    except BaseException as e:  # noqa: BLE001 - whatever stops the draw is what the record says
        return not_drawn(e)
    missed = [w for w in run.warnings if w.startswith("not plotted")]
    return f"{rundir.DIAGNOSTICS_PNG} {missed[0]}" if missed else None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    run_dir = Path(argv[0])
    title = argv[1] if len(argv) > 1 else None
    return child_main(run_dir, lambda: draw(run_dir, title))


if __name__ == "__main__":
    sys.exit(main())
