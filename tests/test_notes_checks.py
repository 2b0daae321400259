"""The course notes' checks made exact: warnings that name their cause (identical units, a
vanishing gradient) before blaming the learning rate, weights growing without bound, the
train/validation gap; L1's proximal step (exact zeros); test numbers of the best and of the
final weights; diagnostics.csv's epoch 0 (the untrained network)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import TINY, compose, run_inprocess

from runner import app, diagnostics, rundir
from runner.checkpoint import load_params
from runner.config import validate
from runner.core import layerstats, losses, optim, train
from runner.data import load_dataset

# ---------------------------------------------------------------------------------------------
# Watcher and gap_advice on constructed rows


def _row(layer, *, g=1e-2, u=1e-3, w=1.0, ident=0.0, dead=0.0):
    return dict(
        layer=layer, grad_norm=g, update_ratio=u, weight_norm=w, identical_frac=ident,
        dead_frac=dead,
    )  # fmt: skip


def test_identical_units_are_the_cause_not_the_learning_rate():
    seen = []
    w = diagnostics.Watcher(seen.append)
    nan = math.nan
    # epoch 0: no gradient yet, every hidden unit identical (zero initialization)
    w.epoch(0, [_row("layer0", g=nan, u=nan, w=0.0, ident=1.0), _row("head", g=nan, u=nan)])
    assert len(seen) == 1 and seen[0].startswith("identical units at initialization (epoch 0)")
    assert "layer0 100%" in seen[0] and "initialize the weights randomly" in seen[0]
    # epoch 1: zero gradient into layer0 and a zero update ratio, both from the symmetry
    w.epoch(1, [_row("layer0", g=0.0, u=0.0, w=0.0, ident=1.0), _row("head", g=0.5)])
    assert len(seen) == 2 and seen[1].startswith("update/weight ratio")
    assert "not the learning rate" in seen[1] and "layer0 has identical units" in seen[1]
    assert not any("too low" in m or "vanishing" in m for m in seen)
    w.epoch(2, [_row("layer0", g=0.0, u=0.0, w=0.0, ident=1.0), _row("head", g=0.5)])
    assert len(seen) == 2  # each kind once per run


def test_low_ratio_below_a_moving_layer_is_a_vanishing_gradient():
    seen = []
    w = diagnostics.Watcher(seen.append)
    # no vanishing warning (layer0's gradient is 1e-2 of the head's), but the lower layers'
    # ratios are tiny while the last hidden layer's is in the band
    w.epoch(
        1,
        [
            _row("layer0", g=1e-2, u=1e-7),
            _row("layer1", g=1e-1, u=1e-6),
            _row("layer2", g=1.0, u=2e-3),
            _row("head", g=1.0),
        ],
    )
    assert len(seen) == 1 and "the cause is a vanishing gradient" in seen[0]
    assert "layer0 1.0e-07, layer1 1.0e-06" in seen[0] and "too low" not in seen[0]
    # every layer equally slow and no other sign: the learning rate
    plain = []
    diagnostics.Watcher(plain.append).epoch(
        1, [_row("layer0", u=1e-6), _row("layer1", u=1e-6), _row("head")]
    )
    assert plain == [
        "update/weight ratio far from ~1e-3 (outside [0.0001, 0.01]) at epoch 1: layer0 "
        "1.0e-06, layer1 1.0e-06; learning rate too low?"
    ]


def test_weights_growing_without_bound():
    seen = []
    w = diagnostics.Watcher(seen.append)
    w.epoch(0, [_row("layer0", w=2.0), _row("head", w=0.1)])
    w.epoch(1, [_row("layer0", w=15.0), _row("head", w=5.0)])  # x7.5, and the head x50
    assert seen == []  # the head starts small on purpose (init.head_scale)
    w.epoch(2, [_row("layer0", w=21.0), _row("head", w=5.0)])  # x10.5 since epoch 0
    assert len(seen) == 1 and seen[0].startswith("weights growing without bound at epoch 2")
    assert "layer0 norm x10 since epoch 0" in seen[0]
    # a steady 30 % a epoch for 5 epochs in a row, under 10x in total
    streak = []
    s = diagnostics.Watcher(streak.append)
    for ep in range(6):
        s.epoch(ep, [_row("layer1", w=1.3**ep)])
        assert bool(streak) == (ep == 5), ep
    assert "layer1 norm up over 25% every epoch for 5 epochs (now 3.71)" in streak[0]
    # a checkpoint's bookkeeping keeps the count (JSON round trip)
    import json

    again = diagnostics.Watcher(streak.append)
    again.load(json.loads(json.dumps(s.state())))
    assert again.streak == {"layer1": 5} and again.first_norm == {"layer1": [0, 1.0]}


def test_train_validation_gap_advice():
    gap = diagnostics.gap_advice
    big = gap("acc", dict(train_metric=0.99, val_metric=0.80), {})
    assert big.startswith("big train/validation gap") and "regularization" in big
    assert "train acc 0.990, validation acc 0.800" in big
    none = gap("acc", dict(train_metric=0.61, val_metric=0.60), {})
    assert none.startswith("no train/validation gap") and "capacity" in none
    assert gap("acc", dict(train_metric=0.97, val_metric=0.965), {}) is None  # fits well
    # a poor fit that identical units explain is not a capacity problem
    assert gap("acc", dict(train_metric=0.61, val_metric=0.60), {}, {"identical"}) is None
    assert gap("acc", dict(train_metric=0.90, val_metric=0.85), {}) is None  # a small gap
    # regression: losses (MSE); "poor" against the untrained model's loss
    assert "big" in gap("rmse", dict(train_loss=0.1, val_loss=0.3), {"train_loss": 1.0})
    assert "no train" in gap("rmse", dict(train_loss=0.5, val_loss=0.5), {"train_loss": 1.0})
    assert gap("rmse", dict(train_loss=0.1, val_loss=0.105), {"train_loss": 1.0}) is None


def test_identical_units_measure():
    rng = np.random.default_rng(0)
    k = rng.normal(size=(5, 6)).astype(np.float32)
    k[:, 3] = k[:, 1]  # units 1 and 3 share their weights (and bias 0)
    params = {
        "layer0": {"dense": {"kernel": jnp.asarray(k), "bias": jnp.zeros(6)}},
        "layer1": {"dense": {"kernel": jnp.zeros((6, 4)), "bias": jnp.zeros(4)}},
        "head": {"kernel": jnp.zeros((4, 2)), "bias": jnp.zeros(2)},
    }
    frac = layerstats.identical_units(params, ["layer0", "layer1", "head"])
    np.testing.assert_allclose(np.asarray(frac[:2]), [2 / 6, 1.0])
    assert math.isnan(float(frac[2]))
    params["layer0"]["dense"]["bias"] = jnp.arange(6.0)  # a different bias: no longer equal
    assert float(layerstats.identical_units(params, ["layer0"])[0]) == 0.0


# ---------------------------------------------------------------------------------------------
# Real runs


def test_zero_init_run_warns_about_identical_units_not_the_learning_rate():
    _, r = run_inprocess(["init=zeros", "trainer.epochs=2"])
    warnings = r.metrics["warnings"]
    assert warnings[0].startswith("identical units at initialization (epoch 0): layer0 100%")
    assert not any(
        "learning rate too" in m or "vanishing" in m or "capacity" in m for m in warnings
    )
    ratio = [m for m in warnings if m.startswith("update/weight ratio")]
    assert ratio and "not the learning rate" in ratio[0]
    assert {d["identical_frac"] for d in r.diagnostics if d["layer"].startswith("layer")} == {1.0}


@pytest.fixture(scope="module")
def stopped(tmp_path_factory):
    """(cfg, result, run folder, states after each epoch) of a run that stops after epoch 2
    with epoch 1 the best (min_delta 0.5 can never be met again)."""
    cfg = validate(
        compose(
            TINY
            + [
                "model.depth=3",
                "regularization=early_stopping",
                "regularization.patience=1",
                "regularization.min_delta=0.5",
                "trainer.epochs=5",
                "trainer.checkpoint=1",
            ]
        )
    )
    states = []
    r = app.fit(cfg, load_dataset(cfg.data), on_checkpoint=lambda s, best, meta: states.append(s))
    folder = tmp_path_factory.mktemp("stopped")
    app.write_run(folder, r, plot=False)
    return cfg, r, folder, states


def test_epoch_zero_diagnostics_are_the_untrained_network(stopped):
    cfg, r, folder, _ = stopped
    zero = [d for d in r.diagnostics if d["epoch"] == 0]
    assert [d["layer"] for d in zero] == ["layer0", "layer1", "layer2", "head"]
    assert r.diagnostics[: len(zero)] == zero and r.diagnostics[-1]["epoch"] == 2
    assert all(math.isnan(d["grad_norm"]) and math.isnan(d["update_ratio"]) for d in zero)
    # the same numbers as a direct activation pass over the initial weights of the same seed
    spec, hp, data = app.prepare(cfg, load_dataset(cfg.data))
    state, direct = jax.jit(
        lambda key: (
            s := train.init_state(spec, hp, key, data),
            train.activation_pass(spec, s, data, hp),
        )
    )(jax.random.PRNGKey(cfg.seed))
    direct = jax.device_get(direct)
    for key in ("act_std", "act_mean", "weight_norm", "dead_frac"):
        np.testing.assert_allclose([d[key] for d in zero], direct[key], rtol=1e-5, err_msg=key)
    assert all(d["act_std"] > 0 for d in zero[:3])
    got = rundir.read_diagnostics(folder)  # diagnostics.csv: NaN written as nan, read back
    assert [(d["epoch"], d["layer"]) for d in got.data[:4]] == [(0, d["layer"]) for d in zero]
    assert math.isnan(got.data[0]["grad_norm"])
    assert got.data[0]["act_std"] == pytest.approx(zero[0]["act_std"], rel=1e-5)


def test_test_numbers_of_the_best_and_the_final_weights(stopped):
    from rich.console import Console

    from runner.progress import summary_table

    cfg, r, folder, states = stopped
    m = r.metrics
    assert (m["best_epoch"], m["test_epoch"], m["epochs_run"], m["final_test_epoch"]) == (
        1,
        1,
        2,
        2,
    )
    spec, hp, data = app.prepare(cfg, load_dataset(cfg.data))

    def scores(params, batch_stats):
        out = train.forward(spec, params, batch_stats, data["x_test"], hp)
        loss = float(jnp.mean(losses.per_example_loss("softmax", out, data["y_test"])))
        return loss, float(jnp.mean(jnp.argmax(out, -1) == data["y_test"]))

    best = scores(*load_params(folder / rundir.BEST_PARAMS))
    final = scores(states[-1].params, states[-1].batch_stats)
    assert (m["test_loss"], m["test_acc"]) == pytest.approx(best, rel=1e-5)
    assert (m["final_test_loss"], m["final_test_acc"]) == pytest.approx(final, rel=1e-5)
    assert best[0] != final[0]
    console = Console(record=True, width=120)
    console.print(summary_table(m))
    text = console.export_text()
    assert "test (best epoch 1 weights)" in text and "test (final weights, epoch 2)" in text


def test_soft_threshold_is_the_l1_proximal_step():
    w = {"a": {"kernel": jnp.array([0.5, -0.5, 0.05, -0.02, 0.0])}, "b": jnp.array([0.01, -0.3])}
    mask = {"a": {"kernel": True}, "b": False}
    out = optim.soft_threshold(w, mask, 0.1)
    np.testing.assert_allclose(out["a"]["kernel"], [0.4, -0.4, 0.0, 0.0, 0.0], rtol=1e-6)
    np.testing.assert_array_equal(out["b"], w["b"])  # unmasked: unchanged
    assert int(jnp.sum(out["a"]["kernel"] == 0)) == 3  # exactly zero, not merely small


def test_l1_step_in_training_and_exact_zeros(tmp_path, stopped):
    lr, l1 = 0.1, 0.3
    over = ["optimizer=sgd", f"optimizer.lr={lr}", "trainer.batch_size=full"]
    cfg = validate(compose(TINY + over + [f"regularization.l1={l1}"]))
    ds = load_dataset(cfg.data)
    spec, hp, data = app.prepare(cfg, ds)
    state0 = jax.jit(lambda key: train.init_state(spec, hp, key, data))(jax.random.PRNGKey(0))
    state1, _ = jax.jit(lambda s: train.epoch(spec, s, data, hp))(state0)
    # one full-batch step: w1 = soft_threshold(w0 - lr * (gradient of the data loss), lr * l1)
    model = train._model(spec, hp)
    grads = jax.jit(
        jax.grad(
            lambda p: jnp.mean(
                losses.per_example_loss(
                    "softmax", model.apply({"params": p}, data["x_train"]), data["y_train"]
                )
            )
        )
    )(state0.params)
    for path, w0 in jax.tree_util.tree_leaves_with_path(state0.params):
        g = _at(grads, path)
        w1 = np.asarray(_at(state1.params, path))
        step = np.asarray(w0 - lr * g)
        if "kernel" in jax.tree_util.keystr(path):
            step = np.sign(step) * np.maximum(np.abs(step) - lr * l1, 0)
            assert np.any(w1 == 0) == np.any(step == 0)
        np.testing.assert_allclose(w1, step, rtol=1e-4, atol=1e-6, err_msg=str(path))
    # 3 epochs: many weights exactly 0 in best_params.npz; none without L1 (`stopped`)
    over = ["optimizer=sgd", "optimizer.lr=0.5", "trainer.epochs=3", "model.depth=3"]
    _, r = run_inprocess(over + ["regularization.l1=0.05"])
    app.write_run(tmp_path, r, plot=False)
    zeros = {}
    for name, folder in (("l1", tmp_path), ("none", stopped[2])):
        kernels = [v["kernel"] for v in _groups(load_params(folder / rundir.BEST_PARAMS)[0])]
        zeros[name] = sum(int(np.sum(k == 0)) for k in kernels) / sum(k.size for k in kernels)
    assert zeros["none"] == 0.0 and zeros["l1"] > 0.25, zeros  # 30 % here


def _at(tree, path):
    for p in path:
        tree = tree[p.key]
    return tree


def _groups(params):
    for v in params.values():
        if "kernel" in v:
            yield v
        else:
            yield from _groups(v)
