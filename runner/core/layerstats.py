"""Babysitting the learning process, device side: the per-layer numbers computed inside the
compiled epoch (the host side, runner/diagnostics.py, turns them into rows and warnings).

Per layer (top-level parameter group, in network_order: layer0, layer1, skip1, ..., head) and
epoch: weight norm, gradient norm and update/weight ratio (means over the epoch's steps), and,
from one evaluation-mode pass over a fixed batch of training examples at the end of the epoch,
the activation mean and std, the fraction of dead units (ReLU family: output <= 0 for every
example of the batch) and of saturated activations (sigmoid within 0.01 of 0 or 1, tanh within
0.01 of +-1).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import jax
import jax.numpy as jnp

from runner.core import optim
from runner.core.state import Params

DIAG_BATCH = 256  # examples in the end-of-epoch activation pass
SATURATION_MARGIN = 0.01
DEAD_FAMILY = ("relu", "leaky_relu", "prelu", "rrelu", "elu", "selu")
FIELDS = (
    "epoch",
    "layer",
    "weight_norm",
    "grad_norm",
    "update_ratio",
    "act_mean",
    "act_std",
    "dead_frac",
    "saturated_frac",
)


def network_order(names: Iterable[str]) -> list[str]:
    """Top-level parameter group names (layer<i>, skip<i>, head) in network order: by block
    index i, and within a block alphabetically, so hidden layer i comes before the skip
    projection that runs beside it (a resmlp whose width changes at blocks 1 and 3: layer0,
    layer1, skip1, layer2, layer3, skip3, head); names without an index after the numbered
    ones; the head last. The one order of diagnostics.csv's rows and gradcheck's report."""

    def key(name: str) -> tuple[int, int, str]:
        m = re.fullmatch(r"([a-z_]+?)(\d+)", name)
        if name == "head":
            return (2, 0, name)
        return (0, int(m.group(2)), name) if m else (1, 0, name)

    return sorted(names, key=key)


def layer_names(params: Params) -> list[str]:
    """The top-level groups of a params tree in network order (network_order)."""
    return network_order(params.keys())


def group_norms(tree: Any, names: list[str]) -> jax.Array:
    """One L2 norm per top-level group of `tree` (params, gradients or updates: dicts keyed by
    layer name), stacked in `names` order."""
    return jnp.stack([optim.global_norm(tree[k]) for k in names])


def activation_stats(
    intermediates: dict[str, Any], names: list[str], activation: str
) -> tuple[jax.Array, ...]:
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
        dead = (
            jnp.mean(jnp.all(a <= 0, axis=0).astype(jnp.float32))
            if activation in DEAD_FAMILY
            else nan
        )
        if activation == "sigmoid":
            sat = jnp.mean(
                ((a < SATURATION_MARGIN) | (a > 1 - SATURATION_MARGIN)).astype(jnp.float32)
            )
        elif activation == "tanh":
            sat = jnp.mean((jnp.abs(a) > 1 - SATURATION_MARGIN).astype(jnp.float32))
        else:
            sat = nan
        out.append((jnp.mean(a), jnp.std(a), dead, sat))
    return tuple(jnp.stack(col) for col in zip(*out))
