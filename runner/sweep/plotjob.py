"""The detached process that draws a sweep's topk.png and search.png after the sweep has given
the prompt back (hydra.sweeper.plot_wait: runner.sweep.run starts it through
runner.plots.draw_in_background):

    python -m runner.sweep.plotjob SWEEP_DIR TOP_K NAME...

NAME: topk.png and/or search.png, the PNGs the closing report announced. The same drawing as
the foreground's (report.plot_topk, report.plot_search), from the sweep folder's files
(summary.json, trials.json, the trials' curves.csv and metrics.json). Here, not in
runner.compare: runner.sweep and runner.compare do not import each other, and nothing here
imports JAX (runner.sweep.report and runner.searchplot do not). runner.plots.child_main does
the rest: the wait for the parent's go, the DRAW_TIMEOUT alarm, PLOT_ERROR's one line when a
PNG was not drawn (an announced PNG with nothing to draw included), PENDING removed last."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from runner import search
from runner.plots import Stopped, child_main, not_drawn
from runner.sweep.report import plot_search, plot_topk

TOPK_PNG = "topk.png"
NAMES = (TOPK_PNG, search.SEARCH_PNG)


def draw(sweep_dir: Path, top_k: int, names: list[str]) -> str | None:
    """Draw `names` of the sweep in `sweep_dir`; None when all were drawn, else one line that
    says, per PNG not drawn, why."""
    summ = json.loads((sweep_dir / "summary.json").read_text())  # unreadable: child_main says
    errors = []
    for i, name in enumerate(names):
        try:
            if name == TOPK_PNG:
                if not summ.get("best") or not plot_topk(sweep_dir, summ, top_k):
                    errors.append(f"{name} not drawn: no completed trial has curves")
            elif name == search.SEARCH_PNG:
                if not plot_search(sweep_dir, summ):
                    errors.append(f"{name} not drawn: no swept setting or no trial's objective")
            else:
                errors.append(f"{name} not drawn: not a PNG of a sweep ({', '.join(NAMES)})")
        except Stopped as e:  # DRAW_TIMEOUT or SIGTERM: no more drawing
            errors.append(not_drawn(e, " and ".join(names[i:])))
            break
        except Exception as e:  # noqa: BLE001 - one PNG failing leaves the other drawn
            errors.append(not_drawn(e, name))
    return "; ".join(errors) or None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    return child_main(Path(argv[0]), lambda: draw(Path(argv[0]), int(argv[1]), argv[2:]))


if __name__ == "__main__":
    sys.exit(main())
