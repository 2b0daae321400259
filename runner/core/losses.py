"""Heads: losses, per-example metrics and predictions.

``out`` is the model's raw output: logits ``(B, C)`` for softmax, ``(B, 1)`` (or ``(B,)``) for
the other heads. ``y`` is ``(B,)``: int class ids for softmax and sigmoid (0/1), float targets for
linear, raw positive targets for log_linear (the log is taken here).

=========== ==================================================== ====================== =========
head        per-example loss                                     per-example metric     name
=========== ==================================================== ====================== =========
softmax     cross-entropy ``-sum_c onehot(y)_c log softmax(out)_c``  1[argmax out == y]     acc
sigmoid     binary cross-entropy ``-y log s(z) - (1-y) log(1-s(z))`` 1[(z > 0) == y]        acc
linear      squared error ``(out - y)^2`` (no 1/2: loss = MSE)   ``(out - y)^2``            rmse
log_linear  ``(out - log y)^2`` (the model predicts log y)       ``(out - log y)^2``        rmse
=========== ==================================================== ====================== =========

A batch's loss is the weighted mean ``sum(w l) / max(sum(w), 1)`` with per-example weights ``w``
(0 for padding rows). Metrics are accumulated as weighted sums over an epoch and turned into the
reported number by ``finalize``: the mean for accuracy, ``sqrt`` of the mean for rmse. For
log_linear the rmse is in log space (about the relative error of the predicted price).
Targets must be positive for log_linear; a non-positive target (only padding rows have one) is
read as 1 so that padded batches stay finite.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

HEAD_NAMES = ("softmax", "sigmoid", "linear", "log_linear")
CLASSIFICATION_HEADS = ("softmax", "sigmoid")


def _check(head: str) -> None:
    if head not in HEAD_NAMES:
        raise ValueError(f"unknown head {head!r}; choose one of {', '.join(HEAD_NAMES)}")


def _scalar_out(out):
    """(B, 1) or (B,) -> (B,)."""
    out = jnp.asarray(out)
    if out.ndim >= 2 and out.shape[-1] == 1:
        out = out[..., 0]
    return out


def per_example_loss(head: str, out, y):
    """Loss of each example, shape (B,)."""
    _check(head)
    if head == "softmax":
        n_classes = out.shape[-1]
        return optax.softmax_cross_entropy(out, jax.nn.one_hot(y, n_classes, dtype=out.dtype))
    z = _scalar_out(out)
    if head == "sigmoid":
        return optax.sigmoid_binary_cross_entropy(z, jnp.asarray(y, z.dtype))
    if head == "linear":
        return jnp.square(z - jnp.asarray(y, z.dtype))
    y = jnp.asarray(y, z.dtype)  # log_linear; y <= 0 (only padding rows) is read as 1
    return jnp.square(z - jnp.log(jnp.where(y > 0, y, 1.0)))


def metric(head: str, out, y):
    """Per-example metric values, shape (B,): 0/1 correctness or squared error."""
    _check(head)
    if head == "softmax":
        return (jnp.argmax(out, axis=-1) == y).astype(jnp.float32)
    z = _scalar_out(out)
    if head == "sigmoid":
        return ((z > 0).astype(jnp.int32) == jnp.asarray(y, jnp.int32)).astype(jnp.float32)
    return per_example_loss(head, out, y).astype(jnp.float32)  # squared error


def metric_name(head: str) -> str:
    """``"acc"`` for classification heads, ``"rmse"`` for regression heads. Which way a metric
    is better is runner.rundir's rule (higher_is_better, by name), never decided here."""
    _check(head)
    return "acc" if head in CLASSIFICATION_HEADS else "rmse"


def finalize(head: str, metric_sum, weight_sum=1.0):
    """The reported metric from the weighted sum of per-example metric values and the sum of the
    weights n (or from their weighted mean alone, leaving ``weight_sum`` at 1): accuracy
    ``sum / n``; rmse ``sqrt(sum / n)`` (n clamped to >= 1)."""
    mean = jnp.asarray(metric_sum, jnp.float32) / jnp.maximum(
        jnp.asarray(weight_sum, jnp.float32), 1.0
    )
    return mean if metric_name(head) == "acc" else jnp.sqrt(mean)


def weighted_mean(values, w):
    """``sum(w * values) / max(sum(w), 1)``: padding rows (weight 0) count for nothing."""
    w = jnp.asarray(w, jnp.float32)
    values = jnp.where(w > 0, values, 0.0)  # a non-finite padding row cannot leak in
    return jnp.sum(w * values) / jnp.maximum(jnp.sum(w), 1.0)


def batch_loss(head: str, out, y, w):
    """The weighted-mean loss of a batch."""
    return weighted_mean(per_example_loss(head, out, y), w)


def predict(head: str, out):
    """Class probabilities (B, C) for softmax; P(y = 1) (B,) for sigmoid; values (B,) for linear;
    ``exp(out)`` (B,) for log_linear (back from log space)."""
    _check(head)
    if head == "softmax":
        return jax.nn.softmax(out, axis=-1)
    z = _scalar_out(out)
    if head == "sigmoid":
        return jax.nn.sigmoid(z)
    if head == "linear":
        return z
    return jnp.exp(z)
