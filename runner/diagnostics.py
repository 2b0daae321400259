"""Babysitting the learning process, host side: diagnostics.csv's rows from the numbers the
compiled epoch returns (runner/core/layerstats.py), and the warnings the course notes teach to
look for."""

from __future__ import annotations

import math

from runner.core.layerstats import FIELDS


def rows(epoch: int, names, diag: dict) -> list[dict]:
    """Host-side rows of diagnostics.csv for one epoch."""
    return [
        {"epoch": epoch, "layer": name, **{k: float(diag[k][i]) for k in FIELDS[2:]}}
        for i, name in enumerate(names)
    ]


class Watcher:
    """Turns per-epoch rows into the notes' warnings: each kind once per run, naming the layers
    (and values) that triggered it."""

    def __init__(self, warn):
        self.warn = warn
        self.seen: set = set()
        self.previous: dict = {}

    def _once(self, kind, msg):
        if kind not in self.seen:
            self.seen.add(kind)
            self.warn(msg)

    def epoch(self, epoch: int, rows_: list[dict]) -> None:
        by = {r["layer"]: r for r in rows_}
        layers = [r["layer"] for r in rows_ if r["layer"].startswith("layer")]
        if layers and "head" in by:
            first, last = by[layers[0]]["grad_norm"], by["head"]["grad_norm"]
            if last > 0 and first < 1e-3 * last:
                self._once(
                    "vanishing",
                    f"vanishing gradients at epoch {epoch}: {layers[0]} "
                    f"gradient norm {first:.2e} is under 1e-3 of the head's {last:.2e}",
                )
        exploding, dead, ratio = [], [], []
        for r in rows_:
            name, g = r["layer"], r["grad_norm"]
            prev = self.previous.get(name)
            if prev and math.isfinite(g) and g > 10 * prev:
                exploding.append(f"{name} x{g / prev:.0f}")
            self.previous[name] = g
            if r["dead_frac"] > 0.5:
                dead.append(f"{name} {100 * r['dead_frac']:.0f}%")
            u = r["update_ratio"]
            if name.startswith("layer") and math.isfinite(u) and not 1e-4 <= u <= 1e-2:
                ratio.append((name, u))
        if exploding:
            self._once(
                "exploding",
                f"exploding gradients at epoch {epoch}: gradient norm grew "
                f"over 10x in one epoch in {', '.join(exploding)}",
            )
        if dead:
            self._once(
                "dead",
                f"dead units at epoch {epoch}: over half the units never "
                f"activate on a batch in {', '.join(dead)}",
            )
        if ratio:
            high = any(u > 1e-2 for _, u in ratio)
            shown = ", ".join(f"{n} {u:.1e}" for n, u in ratio[:4])
            more = f" and {len(ratio) - 4} more" if len(ratio) > 4 else ""
            self._once(
                "ratio",
                f"update/weight ratio far from ~1e-3 (outside [1e-4, 1e-2]) at "
                f"epoch {epoch}: {shown}{more}; learning rate too "
                f"{'high' if high else 'low'}?",
            )
