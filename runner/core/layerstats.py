"""Babysitting the learning process, device side: the per-layer numbers computed inside the
compiled epoch (the host side, runner/diagnostics.py, turns them into rows and warnings).

Per layer (top-level parameter group, in network_order: layer0, layer1, skip1, ..., head) and
epoch: weight norm, gradient norm and update/weight ratio (means over the epoch's steps), and,
from one evaluation-mode pass over a fixed batch of training examples at the end of the epoch,
the activation mean and std, the fraction of dead units (ReLU family: output <= 0 for every
example of the batch) and of saturated activations (sigmoid within 0.01 of 0 or 1, tanh within
0.01 of +-1), and the fraction of identical (symmetric) units: hidden units whose incoming
weights and bias equal another unit's of the same layer (identical_units).

The initial evaluation computes the same pass on the untrained network: diagnostics.csv's epoch
0, whose gradient norm and update ratio are NaN (no step has been taken).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

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
    "identical_frac",
)
# identical_units: relative tolerance on the two fingerprints of a unit's weights. Symmetric
# units get bit-identical weights (the same numbers through the same operations); this only
# absorbs a reduction order that could differ between columns.
IDENTICAL_RTOL = 1e-6


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


def _layer_weights(group: Any) -> jax.Array | None:
    """A hidden layer's incoming weights as (fan_in + 1, units): its dense or conv kernel (a
    conv's receptive field flattened) with the bias as the last row; None for other groups."""
    if not isinstance(group, Mapping):
        return None
    inner = group.get("dense", group.get("conv"))
    if not isinstance(inner, Mapping) or "kernel" not in inner:
        return None
    k = inner["kernel"]
    w = k.reshape(-1, k.shape[-1])
    b = inner.get("bias", jnp.zeros((k.shape[-1],), k.dtype))
    return jnp.concatenate([w, b[None, :]], axis=0)


def identical_units(params: Params, names: list[str]) -> jax.Array:
    """Per name, the fraction of its units whose incoming weights and bias equal another unit's
    (NaN for the head, skip projections and anything but a hidden layer). Equal units compute
    the same output and get the same gradient, so they stay equal: the symmetry that zero or
    constant initialization never breaks. Exact up to IDENTICAL_RTOL and cheap (O(weights)):
    each unit's weight column is reduced to two fingerprints (dot products with two fixed
    random vectors); units are sorted by the first, and neighbours whose two fingerprints agree
    count as equal (distinct columns agree on both by chance with probability ~0)."""
    nan = jnp.full((), jnp.nan, jnp.float32)
    out = []
    for name in names:
        m = _layer_weights(params.get(name)) if name.startswith("layer") else None
        if m is None or m.shape[1] < 2:
            out.append(nan)
            continue
        # A host constant, not jax.random: threefry inside the program cost ~1.5 s of compile
        # in every epoch and evaluation program.
        r = jnp.asarray(np.random.default_rng(0).standard_normal((2, m.shape[0])), m.dtype)
        f = r @ m  # (2, units)
        tol = IDENTICAL_RTOL * (jnp.abs(r) @ jnp.abs(m))
        order = jnp.argsort(f[0])
        f, tol = f[:, order], tol[:, order]
        same = jnp.all(jnp.abs(f[:, 1:] - f[:, :-1]) <= jnp.maximum(tol[:, 1:], tol[:, :-1]), 0)
        false = jnp.zeros((1,), bool)
        twin = jnp.concatenate([same, false]) | jnp.concatenate([false, same])
        out.append(jnp.mean(twin.astype(jnp.float32)))
    return jnp.stack(out)
