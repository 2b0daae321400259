"""Babysitting diagnostics: numbers against hand computations, the warnings, the initial-loss
check and overfit mode."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import TINY, compose, run_inprocess

from runner import app, diagnostics
from runner.config import validate
from runner.core import layerstats as diag
from runner.core import losses, train
from runner.data import load_dataset
from runner.progress import summary_line


def test_activation_stats_on_constructed_activations():
    a = jnp.array(
        [[0.0, 0.5, 0.0, 0.995], [0.0, 0.2, -1.0, 0.002], [0.0, 0.7, 0.0, 0.9]]
    )  # 3 examples x 4 units
    inter = {"layer0": {"activations": (a,)}}
    mean, std, dead, sat = diag.activation_stats(inter, ["layer0", "head"], "relu")
    assert float(mean[0]) == pytest.approx(float(a.mean()))
    assert float(std[0]) == pytest.approx(float(a.std()))
    assert float(dead[0]) == pytest.approx(0.5)  # units 0 and 2 are <= 0 for all examples
    assert math.isnan(float(sat[0])) and math.isnan(float(mean[1]))
    _, _, dead_s, sat_s = diag.activation_stats(inter, ["layer0"], "sigmoid")
    assert math.isnan(float(dead_s[0]))
    # saturated: < 0.01 or > 0.99: the six zeros, -1.0, 0.002 and 0.995
    assert float(sat_s[0]) == pytest.approx(9 / 12 - 1 / 12)
    _, _, _, sat_t = diag.activation_stats(
        {"layer0": {"activations": (jnp.array([[0.995, -0.999, 0.5, 0.0]]),)}}, ["layer0"], "tanh"
    )
    assert float(sat_t[0]) == pytest.approx(0.5)


def test_layer_order_is_network_order():
    params = {"head": 0, "layer10": 0, "layer2": 0, "skip1": 0, "layer0": 0, "layer1": 0}
    assert diag.layer_names(params) == ["layer0", "layer1", "skip1", "layer2", "layer10", "head"]
    assert diag.network_order(["head", "other", "layer0"]) == ["layer0", "other", "head"]
    # what a resmlp whose width changes at blocks 1 and 3 has: layer i, then its skip i
    cfg = validate(compose(TINY + ["model=resmlp", "model.widths=[8,12,12,6]"]))
    spec, hp, data = app.prepare(cfg, load_dataset(cfg.data))
    state = jax.eval_shape(lambda: train.init_state(spec, hp, jax.random.PRNGKey(0), data))
    assert diag.layer_names(state.params) == [
        "layer0",
        "layer1",
        "skip1",
        "layer2",
        "layer3",
        "skip3",
        "head",
    ]


def test_gradient_norms_and_update_ratios_match_hand_computation():
    """One full-batch SGD step: per-layer gradient norms equal those of jax.grad of the loss,
    and update/weight ratio = lr * ||g|| / ||w||."""
    lr = 0.1
    cfg = validate(
        compose(
            TINY
            + ["optimizer=sgd", f"optimizer.lr={lr}", "trainer.batch_size=full", "model.depth=3"]
        )
    )
    ds = load_dataset(cfg.data)
    spec, hp, data = app.prepare(cfg, ds)
    key = jax.random.PRNGKey(cfg.seed)
    init, _ = train.PROGRAMS.get(train.init_state, spec, hp, key, data)
    state0 = init(hp, key, data)
    step, _ = train.PROGRAMS.get(train.epoch, spec, state0, data, hp)
    state1, m = step(state0, data, hp)

    model = train._model(spec, hp)
    # The epoch permutes the examples; the mean loss over the full batch does not care.
    grads = jax.grad(
        lambda p: jnp.mean(
            losses.per_example_loss(
                "softmax", model.apply({"params": p}, data["x_train"], train=False), data["y_train"]
            )
        )
    )(state0.params)
    names = diag.layer_names(state0.params)
    hand_g = [
        float(jnp.sqrt(sum(jnp.sum(x**2) for x in jax.tree_util.tree_leaves(grads[n]))))
        for n in names
    ]
    hand_w = [
        float(jnp.sqrt(sum(jnp.sum(x**2) for x in jax.tree_util.tree_leaves(state0.params[n]))))
        for n in names
    ]
    np.testing.assert_allclose(m["diag"]["grad_norm"], hand_g, rtol=1e-4)
    np.testing.assert_allclose(m["diag"]["update_ratio"], lr * np.array(hand_g) / hand_w, rtol=1e-4)
    w_end = [
        float(jnp.sqrt(sum(jnp.sum(x**2) for x in jax.tree_util.tree_leaves(state1.params[n]))))
        for n in names
    ]
    np.testing.assert_allclose(m["diag"]["weight_norm"], w_end, rtol=1e-5)


def test_watcher_warns_once_per_kind():
    seen = []
    w = diagnostics.Watcher(seen.append)

    def row(layer, g, ratio=1e-3, dead=0.0):
        return dict(layer=layer, grad_norm=g, update_ratio=ratio, dead_frac=dead)

    w.epoch(1, [row("layer0", 1e-6), row("layer1", 1e-2, dead=0.8), row("head", 1.0)])
    w.epoch(2, [row("layer0", 1e-6), row("layer1", 0.5, ratio=0.5), row("head", 1.0)])
    w.epoch(3, [row("layer0", 1e-6), row("layer1", 9.0, ratio=0.5), row("head", 1.0)])
    kinds = [m.split(" ")[0] for m in seen]
    assert kinds == ["vanishing", "dead", "exploding", "update/weight"]
    assert "layer0" in seen[0] and "layer1 80%" in seen[1] and "layer1 x50" in seen[2]
    assert "too high" in seen[3]


def test_vanishing_gradients_warned_in_a_deep_sigmoid_net():
    _, r = run_inprocess(
        ["model.depth=10", "activation=sigmoid", "optimizer=sgd", "optimizer.lr=0.1"]
    )
    assert any(m.startswith("vanishing gradients") for m in r.metrics["warnings"])
    # epoch 1's gradients (epoch 0, the untrained network, has none)
    first = [d for d in r.diagnostics if d["layer"] == "layer0"][1]["grad_norm"]
    last = [d for d in r.diagnostics if d["layer"] == "head"][1]["grad_norm"]
    assert first < 1e-3 * last


def test_initial_loss_check():
    _, ok = run_inprocess([])
    assert ok.metrics["initial_loss_expected"] == pytest.approx(math.log(10))
    assert not any("initial loss" in m for m in ok.metrics["warnings"])
    _, bad = run_inprocess(["init=normal", "init.std=3"])
    assert any(m.startswith("initial loss") for m in bad.metrics["warnings"])


def test_overfit_batches_reaches_full_training_accuracy():
    _, r = run_inprocess(
        [
            "trainer.overfit_batches=2",
            "trainer.batch_size=16",
            "trainer.epochs=60",
            "optimizer.lr=0.01",
            "model.width=64",
            "data.max_samples=400",
        ]
    )
    assert r.metrics["n_train"] == 32
    assert r.metrics["overfit_reached"] is True and r.metrics["overfit_train_acc"] == 1.0
    # The README promises the run says so: the closing summary has the line.
    assert (
        "overfit check passed: 32 training examples reached 100.0% training accuracy"
        in summary_line(r.metrics)
    )
    _, weak = run_inprocess(
        [
            "trainer.overfit_batches=2",
            "trainer.batch_size=16",
            "trainer.epochs=1",
            "optimizer=sgd",
            "optimizer.lr=1e-4",
            "data.max_samples=400",
        ]
    )
    assert weak.metrics["overfit_reached"] is False
    assert any("overfit check failed" in m for m in weak.metrics["warnings"])
    assert "overfit check passed" not in summary_line(weak.metrics)


def test_diagnostics_files_written(tmp_path):
    _, r = run_inprocess(["trainer.epochs=2", "model.depth=3"])
    app.write_run(tmp_path, r, plot=True)
    lines = (tmp_path / "diagnostics.csv").read_text().splitlines()
    assert lines[0] == ",".join(diag.FIELDS)
    # epoch 0 (the untrained network) and 2 epochs x (3 hidden layers + head)
    assert len(lines) == 1 + 3 * 4
    assert (tmp_path / "diagnostics.png").read_bytes()[:4] == b"\x89PNG"
    _, off = run_inprocess(["trainer.epochs=1", "trainer.diagnostics=false"])
    assert off.diagnostics == []
