"""Babysitting the learning process: per-layer numbers computed on the device, and the warnings
the course notes teach to look for.

Per layer (top-level parameter group: layer0.., skip1.., head) and epoch: weight norm, gradient
norm and update/weight ratio (means over the epoch's steps), and, from one evaluation-mode pass
over a fixed batch of training examples at the end of the epoch, the activation mean and std,
the fraction of dead units (ReLU family: output <= 0 for every example of the batch) and of
saturated activations (sigmoid within 0.01 of 0 or 1, tanh within 0.01 of +-1).
"""
from __future__ import annotations

import math
import re

import jax.numpy as jnp

from runner import optim

DIAG_BATCH = 256          # examples in the end-of-epoch activation pass
SATURATION_MARGIN = 0.01
DEAD_FAMILY = ("relu", "leaky_relu", "prelu", "rrelu", "elu", "selu")
FIELDS = ("epoch", "layer", "weight_norm", "grad_norm", "update_ratio", "act_mean", "act_std",
          "dead_frac", "saturated_frac")


def layer_names(params) -> list[str]:
    """Top-level parameter groups in network order: layer0, skip1, layer1, ..., head."""
    def key(name):
        m = re.fullmatch(r"([a-z_]+?)(\d+)", name)
        if name == "head":
            return (2, 0, name)
        return (0, int(m.group(2)), name) if m else (1, 0, name)
    return sorted(params.keys(), key=key)


def group_norms(tree, names):
    """One L2 norm per top-level group, stacked in `names` order."""
    return jnp.stack([optim.global_norm(tree[k]) for k in names])


def activation_stats(intermediates, names, activation: str):
    """(mean, std, dead, saturated) per name; NaN where a layer has no hidden activation (the
    head, skip projections) or the measure does not apply to the activation."""
    nan = jnp.full((), jnp.nan, jnp.float32)
    out = []
    for name in names:
        acts = intermediates.get(name, {}).get("activations")
        if acts is None:
            out.append((nan, nan, nan, nan))
            continue
        a = acts[0].reshape(acts[0].shape[0], -1)  # (examples, units)
        dead = (jnp.mean(jnp.all(a <= 0, axis=0).astype(jnp.float32))
                if activation in DEAD_FAMILY else nan)
        if activation == "sigmoid":
            sat = jnp.mean(((a < SATURATION_MARGIN) | (a > 1 - SATURATION_MARGIN))
                           .astype(jnp.float32))
        elif activation == "tanh":
            sat = jnp.mean((jnp.abs(a) > 1 - SATURATION_MARGIN).astype(jnp.float32))
        else:
            sat = nan
        out.append((jnp.mean(a), jnp.std(a), dead, sat))
    return tuple(jnp.stack(col) for col in zip(*out))


def rows(epoch: int, names, diag: dict) -> list[dict]:
    """Host-side rows of diagnostics.csv for one epoch."""
    return [{"epoch": epoch, "layer": name,
             **{k: float(diag[k][i]) for k in FIELDS[2:]}} for i, name in enumerate(names)]


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
                self._once("vanishing", f"vanishing gradients at epoch {epoch}: {layers[0]} "
                           f"gradient norm {first:.2e} is under 1e-3 of the head's {last:.2e}")
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
            self._once("exploding", f"exploding gradients at epoch {epoch}: gradient norm grew "
                       f"over 10x in one epoch in {', '.join(exploding)}")
        if dead:
            self._once("dead", f"dead units at epoch {epoch}: over half the units never "
                       f"activate on a batch in {', '.join(dead)}")
        if ratio:
            high = any(u > 1e-2 for _, u in ratio)
            shown = ", ".join(f"{n} {u:.1e}" for n, u in ratio[:4])
            more = f" and {len(ratio) - 4} more" if len(ratio) > 4 else ""
            self._once("ratio", f"update/weight ratio far from ~1e-3 (outside [1e-4, 1e-2]) at "
                       f"epoch {epoch}: {shown}{more}; learning rate too "
                       f"{'high' if high else 'low'}?")
