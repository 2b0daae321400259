"""Optimizers, gradient clipping, decoupled weight decay and the L1/L2 loss penalties.

Everything here runs inside ``jax.jit`` with ``hp`` traced. We do not use
``optax.inject_hyperparams``: the optax transformation is rebuilt inside the jitted step from the
traced ``hp`` and the scheduled learning rate on every call. optax transformations are closures,
so traced numbers are fine, and the optimizer state's pytree structure depends only on the static
``OptimSpec`` (never on hp values), so the state made by ``init`` outside the step is accepted by
the transformation built inside it.

The update chain for one step (``g`` the gradient of loss + penalty, ``eta`` the scheduled lr):

1. ``optax.clip(clip_value)``: each entry clipped to [-clip_value, clip_value] (if enabled);
2. ``optax.clip_by_global_norm(clip_norm)``: if ``||g|| >= c`` then ``g <- c g / ||g||`` (notes);
3. the base optimizer, which returns ``-eta * u_t`` (``u_t`` its direction);
4. decoupled weight decay on masked params: ``w_{t+1} = w_t - eta_t (u_t + lambda w_t)`` with
   ``lambda = hp["weight_decay"]`` (regularization.weight_decay). Always in the chain; an exact
   no-op when lambda = 0.

Base optimizers (standard forms, optax conventions):

- sgd:       ``u = g``
- momentum:  ``v_t = mu v_{t-1} + g_t``, ``u = v_t``. With a constant lr this is the notes'
  ``change_t = gamma change_{t-1} + eta grad`` (``change = eta v``).
- nesterov:  ``v_t = mu v_{t-1} + g_t``, ``u = g_t + mu v_t``
- adagrad:   ``G_t = G_{t-1} + g^2`` (``G_0 = initial_accumulator_value``),
  ``u = g / sqrt(G_t + eps)``
- adadelta:  ``E_g = rho E_g + (1-rho) g^2``, ``d = sqrt(E_x + eps) / sqrt(E_g + eps) * g``,
  ``E_x = rho E_x + (1-rho) d^2``, ``u = d`` scaled by the scheduled lr (optax.adadelta with
  ``learning_rate=None`` would *ascend*; we always pass the lr).
- rmsprop:   ``s_t = rho s_{t-1} + (1-rho) g^2`` (rho = optimizer.decay),
  ``r_t = g / sqrt(s_t + eps)`` (the notes' form, eps inside the root; optax's default);
  ``centered`` divides by ``sqrt(s_t - m_t^2 + eps)``, ``m_t`` the running mean of g. Then
  optimizer.momentum ``mu`` as in optax/PyTorch: ``change_t = mu change_{t-1} + eta r_t``,
  ``w -= change_t``. conf/optimizer/rmsprop.yaml sets momentum 0, which is exactly plain RMSProp
  (the momentum buffer is always in the state, so its structure does not depend on mu).
- adam:      ``m_t = b1 m + (1-b1) g``, ``v_t = b2 v + (1-b2) g^2``,
  ``u = m_hat / (sqrt(v_hat) + eps)`` with ``m_hat = m_t/(1-b1^t)``, ``v_hat = v_t/(1-b2^t)``
  (the notes print ``-`` signs in the moment updates; this is the standard form).
- nadam:     as adam with ``m_hat = b1 m_t/(1-b1^{t+1}) + (1-b1) g_t/(1-b1^t)``.
- adamw:     adam direction plus optimizer.weight_decay (``hp["adamw_weight_decay"]``) times w on
  masked params, inside the lr: ``u = adam + lambda_w w``.

Penalties (masked params only): ``l2/2 * sum(w^2)`` is added to the loss (the 1/2 makes its
gradient exactly ``l2 * w``). ``l1 * sum(|w|)`` is not differentiated: after the update above,
``soft_threshold`` applies its proximal step ``w <- sign(w) * max(|w| - eta * l1, 0)``. A
subgradient ``l1 * sign(w)`` makes a weight jump across 0 and never land on it; the proximal step
sets every weight whose |w| falls under ``eta * l1`` to exactly 0 (the lasso's sparsity). For
sgd this is the exact proximal-gradient (ISTA) step; for the adaptive optimizers it is a
decoupled shrink of ``eta * l1`` per step, as weight decay above is decoupled (optax 0.2.8 has no
proximal or soft-threshold transformation, so it is written here).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from runner.config import OPTIMIZERS
from runner.core.spec import OptimSpec

OPTIMIZER_NAMES = OPTIMIZERS  # config.py's list: the schema and the core name the same set


def global_norm(tree):
    """sqrt of the sum of squares of every entry of every leaf."""
    return optax.tree.norm(tree)


def _base(spec: OptimSpec, hp, lr, params_mask) -> optax.GradientTransformation:
    name = spec.name
    if name == "sgd":
        return optax.sgd(lr)
    if name == "momentum":
        return optax.sgd(lr, momentum=hp["momentum"])
    if name == "nesterov":
        return optax.sgd(lr, momentum=hp["momentum"], nesterov=True)
    if name == "adagrad":
        return optax.adagrad(
            lr, initial_accumulator_value=hp["initial_accumulator_value"], eps=hp["eps"]
        )
    if name == "adadelta":
        return optax.adadelta(lr, rho=hp["rho"], eps=hp["eps"])
    if name == "rmsprop":
        return optax.rmsprop(
            lr, decay=hp["decay"], eps=hp["eps"], centered=spec.centered, momentum=hp["momentum"]
        )
    if name == "adam":
        return optax.adam(lr, b1=hp["b1"], b2=hp["b2"], eps=hp["eps"])
    if name == "nadam":
        return optax.nadam(lr, b1=hp["b1"], b2=hp["b2"], eps=hp["eps"])
    if name == "adamw":
        return optax.adamw(
            lr,
            b1=hp["b1"],
            b2=hp["b2"],
            eps=hp["eps"],
            weight_decay=hp["adamw_weight_decay"],
            mask=params_mask,
        )
    raise ValueError(f"unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZER_NAMES)}")


def make_optimizer(spec: OptimSpec, hp, lr, params_mask) -> optax.GradientTransformation:
    """The full update chain: [clip by value] -> [clip by global norm] -> base -> weight decay.

    ``lr`` is this step's (traced) scheduled learning rate; ``params_mask`` a pytree of Python
    bools matching the params (True: decay applies). The final update on a masked param is
    ``-lr * (u + weight_decay * w)``, on the others ``-lr * u``.
    """
    parts = []
    if spec.clip_value:
        parts.append(optax.clip(hp["clip_value"]))
    if spec.clip_norm:
        parts.append(optax.clip_by_global_norm(hp["clip_norm"]))
    parts.append(_base(spec, hp, lr, params_mask))
    # base gives -lr*u; adding (-lr*wd)*w yields -lr*(u + wd*w). Traced, so never skipped.
    decay = -jnp.asarray(lr, jnp.float32) * jnp.asarray(hp["weight_decay"], jnp.float32)
    parts.append(optax.add_decayed_weights(decay, mask=params_mask))
    return optax.chain(*parts)


def _key_name(entry) -> str:
    for attr in ("key", "name", "idx"):
        if hasattr(entry, attr):
            return str(getattr(entry, attr))
    return str(entry)


def decay_mask(params, penalize_bias_and_norm: bool = False):
    """A pytree of bools shaped like ``params``: True where decay and penalties apply.

    Kernels (flax param ``kernel``: dense and conv weights) always; biases, batch-norm scales and
    any other param only with ``penalize_bias_and_norm``; PReLU slopes (any path component
    containing ``prelu``) never.
    """

    def leaf_mask(path, _):
        names = [_key_name(e).lower() for e in path]
        if any("prelu" in n for n in names):
            return False
        if names and names[-1] == "kernel":
            return True
        return bool(penalize_bias_and_norm)

    return jax.tree_util.tree_map_with_path(leaf_mask, params)


def _is_static(flag) -> bool:
    return isinstance(flag, (bool, np.bool_))


def soft_threshold(params, mask, threshold):
    """The L1 penalty's proximal step on the params where ``mask`` is True:
    ``sign(w) * max(|w| - threshold, 0)`` (``threshold`` = lr * l1, traced); others unchanged."""
    return jax.tree.map(
        lambda w, m: (
            jnp.sign(w) * jnp.maximum(jnp.abs(w) - threshold, 0.0).astype(w.dtype) if m else w
        ),
        params,
        mask,
    )


def penalty(params, mask, hp, *, l1: bool = True, l2: bool = True):
    """``hp["l2"]/2 * sum(w^2) + hp["l1"] * sum(|w|)`` over the params where ``mask`` is True.
    ``l1``/``l2`` False (static: the spec's) leave that term out of the program.

    The 1/2 convention makes the gradient of the L2 term ``l2 * w``. ``|w|`` is written as
    ``w * stop_gradient(sign(w))`` so that its gradient is ``sign(w)`` (0 at w = 0).
    """
    leaves = jax.tree.leaves(params)
    flags = jax.tree.leaves(mask)
    if len(leaves) != len(flags):
        raise ValueError(f"mask has {len(flags)} leaves, params have {len(leaves)}")
    # Python bools (the usual, static mask) select leaves; array flags (a traced mask) multiply.
    chosen = [
        w if _is_static(m) else w * jnp.asarray(m, w.dtype)
        for w, m in zip(leaves, flags)
        if not _is_static(m) or m
    ]
    total = jnp.zeros((), jnp.float32)
    if not chosen:
        return total
    if l2:
        total = total + 0.5 * hp["l2"] * sum(jnp.sum(jnp.square(w)) for w in chosen)
    if l1:
        total = total + hp["l1"] * sum(
            jnp.sum(w * jax.lax.stop_gradient(jnp.sign(w))) for w in chosen
        )
    return total
