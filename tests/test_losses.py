"""Heads: losses, metrics, predictions and the weighted mean (runner.core.losses)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from runner.core.losses import (
    batch_loss,
    finalize,
    metric,
    metric_name,
    per_example_loss,
    predict,
    weighted_mean,
)


def softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def test_notes_softmax_example_and_cross_entropy():
    logits = np.array([[1.3, 5.1, 2.2, 0.7, 1.1]], np.float32)
    p = np.asarray(predict("softmax", jnp.asarray(logits)))
    np.testing.assert_allclose(p.round(2), [[0.02, 0.90, 0.05, 0.01, 0.02]])
    y = np.array([1])
    ce = np.asarray(per_example_loss("softmax", jnp.asarray(logits), jnp.asarray(y)))
    onehot = np.eye(5)[y]
    np.testing.assert_allclose(
        ce, -(onehot * np.log(softmax(logits.astype(np.float64)))).sum(-1), rtol=1e-5
    )
    assert ce[0] == pytest.approx(-np.log(0.9), abs=0.01)


def test_cross_entropy_batch_and_accuracy():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(6, 4)).astype(np.float32)
    y = np.array([0, 1, 2, 3, 0, 1])
    ce = np.asarray(per_example_loss("softmax", jnp.asarray(z), jnp.asarray(y)))
    want = -np.log(softmax(z.astype(np.float64))[np.arange(6), y])
    np.testing.assert_allclose(ce, want, rtol=1e-5)
    acc = np.asarray(metric("softmax", jnp.asarray(z), jnp.asarray(y)))
    np.testing.assert_array_equal(acc, (z.argmax(-1) == y).astype(np.float32))
    assert metric_name("softmax") == "acc"


def test_binary_cross_entropy_and_accuracy():
    z = np.array([[2.0], [-1.0], [0.3], [-0.2]], np.float32)
    y = np.array([1, 0, 0, 1])
    bce = np.asarray(per_example_loss("sigmoid", jnp.asarray(z), jnp.asarray(y)))
    s = 1 / (1 + np.exp(-z[:, 0].astype(np.float64)))
    np.testing.assert_allclose(bce, -y * np.log(s) - (1 - y) * np.log(1 - s), rtol=1e-5)
    np.testing.assert_array_equal(
        np.asarray(metric("sigmoid", jnp.asarray(z), jnp.asarray(y))), [1, 1, 0, 0]
    )
    np.testing.assert_allclose(np.asarray(predict("sigmoid", jnp.asarray(z))), s, rtol=1e-6)
    assert metric_name("sigmoid") == "acc"


def test_mse_and_rmse():
    out = np.array([[1.0], [2.0], [0.5]], np.float32)
    y = np.array([1.5, 0.0, 0.5], np.float32)
    se = np.asarray(per_example_loss("linear", jnp.asarray(out), jnp.asarray(y)))
    np.testing.assert_allclose(se, [0.25, 4.0, 0.0])  # plain (pred - y)^2, no 1/2
    np.testing.assert_allclose(np.asarray(metric("linear", jnp.asarray(out), jnp.asarray(y))), se)
    assert metric_name("linear") == "rmse"
    assert float(finalize("linear", se.sum(), 3.0)) == pytest.approx(np.sqrt(4.25 / 3))
    assert float(finalize("linear", se.mean())) == pytest.approx(np.sqrt(4.25 / 3))  # from a mean
    np.testing.assert_allclose(np.asarray(predict("linear", jnp.asarray(out))), out[:, 0])


def test_log_mse_and_predict():
    out = np.array([[np.log(2.0)], [1.0], [0.0]], np.float32)
    y = np.array([2.0, 5.0, 0.5], np.float32)
    loss = np.asarray(per_example_loss("log_linear", jnp.asarray(out), jnp.asarray(y)))
    np.testing.assert_allclose(loss, (out[:, 0] - np.log(y)) ** 2, rtol=1e-5, atol=1e-7)
    assert float(
        batch_loss("log_linear", jnp.asarray(out), jnp.asarray(y), jnp.ones(3))
    ) == pytest.approx(np.mean((out[:, 0] - np.log(y)) ** 2), rel=1e-5)
    np.testing.assert_allclose(
        np.asarray(predict("log_linear", jnp.asarray(out))), np.exp(out[:, 0]), rtol=1e-6
    )
    assert metric_name("log_linear") == "rmse"


def test_finalize_accuracy():
    assert float(finalize("softmax", 3.0, 4.0)) == pytest.approx(0.75)
    assert float(finalize("softmax", 0.75)) == pytest.approx(0.75)
    assert float(finalize("sigmoid", 0.0, 0.0)) == 0.0  # no examples: no division by zero


def test_weighted_mean_ignores_padding_rows():
    values = jnp.array([1.0, 3.0, 1e6, jnp.nan])
    w = jnp.array([1.0, 1.0, 0.0, 0.0])
    assert float(weighted_mean(values, w)) == pytest.approx(2.0)
    assert float(weighted_mean(values, jnp.zeros(4))) == 0.0


def test_padded_batch_gradient_is_finite_and_ignores_padding():
    # a padded log_linear batch: the padding row has y = 0 and weight 0
    y = jnp.array([2.0, 3.0, 0.0])
    w = jnp.array([1.0, 1.0, 0.0])

    def loss(out, y, w):
        return batch_loss("log_linear", out, y, w)

    out = jnp.array([[0.1], [0.2], [7.0]])
    val, g = jax.jit(jax.value_and_grad(loss))(out, y, w)
    assert np.isfinite(float(val))
    np.testing.assert_allclose(
        float(val), np.mean((np.array([0.1, 0.2]) - np.log([2.0, 3.0])) ** 2), rtol=1e-5
    )
    assert np.all(np.isfinite(np.asarray(g))) and float(g[2, 0]) == 0.0
    # softmax: the weight-0 row changes nothing
    z = jnp.array([[1.0, 2.0], [0.5, -1.0], [100.0, -100.0]])
    yc = jnp.array([1, 0, 1])
    full = float(batch_loss("softmax", z, yc, w))
    two = float(batch_loss("softmax", z[:2], yc[:2], jnp.ones(2)))
    assert full == pytest.approx(two, rel=1e-6)


def test_which_way_a_metric_is_better_is_runner_rundirs_rule_alone():
    """The core names a head's metric; runner.rundir alone says which way it is better (the core
    imports no host module, so it keeps no rule of its own)."""
    from runner import rundir
    from runner.core import losses

    assert not hasattr(losses, "higher_is_better")
    assert rundir.higher_is_better(metric_name("softmax")) is True
    assert rundir.higher_is_better(metric_name("sigmoid")) is True
    assert rundir.higher_is_better(metric_name("linear")) is False
    assert rundir.higher_is_better(metric_name("log_linear")) is False
