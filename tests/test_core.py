"""The pure core: train() is a function jax.vmap can wrap, and a vmapped batch of runs equals
the same runs done one by one."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from conftest import TINY, compose
from runner import app
from runner.core import train
from runner.config import validate
from runner.data import load_dataset


def test_vmapped_runs_equal_sequential_runs():
    lrs = [0.01, 0.2]
    cfg = validate(compose(TINY + ["optimizer=momentum", "trainer.epochs=3",
                                   "regularization.dropout=0.2", "seed=4"]))
    ds = load_dataset(cfg.data)
    spec, hp, data = app.prepare(cfg, ds)
    hps = jax.tree_util.tree_map(lambda v: jnp.stack([v] * len(lrs)), hp)
    hps["lr"] = jnp.asarray(lrs, jnp.float32)
    keys = jnp.stack([jax.random.PRNGKey(4)] * len(lrs))

    @jax.jit
    def run_all(hps, keys, data):
        states = jax.vmap(lambda h, k: train.init_state(spec, h, k, data))(hps, keys)
        return jax.vmap(lambda s, h: train.train(spec, s, data, h, 3))(states, hps)

    _, metrics = run_all(hps, keys, data)
    assert metrics["train_loss"].shape == (len(lrs), 3)
    for i, lr in enumerate(lrs):
        one = validate(compose(TINY + ["optimizer=momentum", "trainer.epochs=3",
                                       "regularization.dropout=0.2", "seed=4",
                                       f"optimizer.lr={lr}"]))
        seq = app.fit(one, ds)
        np.testing.assert_allclose(metrics["train_loss"][i],
                                   [r["train_loss"] for r in seq.history], rtol=2e-5)
        np.testing.assert_allclose(metrics["val_metric"][i],
                                   [r["val_acc"] for r in seq.history], rtol=1e-6)
    assert not np.allclose(metrics["train_loss"][0], metrics["train_loss"][1])
