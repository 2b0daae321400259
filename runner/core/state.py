"""The training state and the types the compiled core passes around.

`TrainState` is one pytree (a frozen dataclass registered with jax.tree_util, as
flax.struct.PyTreeNode builds it, without importing flax: a run whose programs all come from
runner.progstore never needs flax): jax.jit, jax.vmap, jax.tree_util and jax.device_put/get
see its five fields as children, and `state.replace(params=...)` gives a changed copy.
runner.checkpoint stores its arrays named by field, the way the keys of the dict it replaces
were named ("state['params']['layer0']...").
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import jax

# Nested dicts of arrays as flax builds them: the "params" and "batch_stats" collections.
Params = Mapping[str, Any]
BatchStats = Mapping[str, Any]
# The dataset on the device: x_train, y_train, x_val, y_val, x_test, y_test
# (runner.data.Dataset.arrays()).
Data = dict[str, jax.Array]
# Traced hyperparameters, a flat dict of float32 arrays (runner.core.spec.make_hparams).
HParams = dict[str, jax.Array]
# What a compiled call returns besides the state: named scalars (per member under vmap), and
# "diag", a dict of per-layer vectors, when spec.diagnostics is on.
Metrics = dict[str, Any]


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class TrainState:
    """Everything a run carries from one epoch to the next."""

    params: Params  # the model's weights
    batch_stats: BatchStats  # batch norm's running statistics ({} without batch norm)
    opt_state: Any  # optax's state for params (a tuple of NamedTuples)
    rng: jax.Array  # the run's PRNG key; each epoch splits its keys off it
    step: jax.Array  # int32: optimizer steps taken (the schedules' clock)

    def replace(self, **changes: Any) -> TrainState:
        """A copy with the fields in `changes` replaced."""
        return dataclasses.replace(self, **changes)

    def weights(self) -> dict[str, Any]:
        """{"params", "batch_stats"}: what evaluating the model needs (a checkpoint's best)."""
        return {"params": self.params, "batch_stats": self.batch_stats}

    def with_weights(self, weights: dict[str, Any]) -> TrainState:
        """This state with params and batch_stats from `weights` (as weights() gives them)."""
        return self.replace(params=weights["params"], batch_stats=weights["batch_stats"])
