"""The pure training core: `init_state(spec, hp, key, data)` and
`train_epoch(spec, state, data, hp) -> (state, metrics)`.

Everything here is a pure function of its arguments, so jax.jit (and later jax.vmap over hp and
keys) can wrap it. The dataset is an argument, never a closure: a closed-over array would be
embedded in the program as a constant and slow the compile down. Numbers come from `hp` (traced);
only the hashable `spec` is static, so runs that differ in numbers share one compiled program.

`compiled(...)` keeps one executable per (function, spec, argument shapes) for the process.
"""
from __future__ import annotations

import dataclasses
import time
from functools import partial

import jax
import jax.numpy as jnp
import optax

from runner.core import layerstats as diag
from runner.core import losses, nn, optim, schedules
from runner.core.spec import Spec

EVAL_CHUNK = 2048  # examples per evaluation pass: bounds memory on larger sets


def _model(spec: Spec, hp):
    return nn.build_model(spec.model, hp)


def init_state(spec: Spec, hp, key, data):
    """Parameters, batch-norm statistics, optimizer state, RNG and step as one pytree."""
    model = _model(spec, hp)
    k_params, k_drop, k_rrelu, k_run = jax.random.split(key, 4)
    sample = data["x_train"][:1]
    variables = model.init({"params": k_params, "dropout": k_drop, "rrelu": k_rrelu}, sample,
                           train=False)
    params = variables["params"]
    mask = optim.decay_mask(params, spec.optim.penalize_bias_and_norm)
    tx = optim.make_optimizer(spec.optim, hp, hp["lr"], mask)
    return dict(params=params, batch_stats=variables.get("batch_stats", {}),
                opt_state=tx.init(params), rng=k_run, step=jnp.zeros((), jnp.int32))


def _apply(spec, hp, params, batch_stats, x, *, train, rng=None, mask=None):
    """Forward pass; returns (outputs, new batch_stats)."""
    model = _model(spec, hp)
    variables = {"params": params}
    if spec.model.batchnorm:
        variables["batch_stats"] = batch_stats
    if not train:
        return model.apply(variables, x, train=False), batch_stats
    k_drop, k_rrelu = jax.random.split(rng)
    rngs = {"dropout": k_drop, "rrelu": k_rrelu}
    if spec.model.batchnorm:
        out, upd = model.apply(variables, x, train=True, rngs=rngs, mask=mask,
                               mutable=["batch_stats"])
        return out, upd["batch_stats"]
    return model.apply(variables, x, train=True, rngs=rngs, mask=mask), batch_stats


def _epoch_batches(spec: Spec, key):
    """A fresh permutation as (steps, batch) indices and weights; a partial last batch is padded
    with weight-0 rows so every step has the same shape (lax.scan needs that)."""
    n, b, steps = spec.n_train, spec.batch_size, spec.steps_per_epoch
    perm = jax.random.permutation(key, n)
    weights = jnp.ones((n,), jnp.float32)
    total = steps * b
    if total > n:
        perm = jnp.concatenate([perm, jnp.zeros((total - n,), perm.dtype)])
        weights = jnp.concatenate([weights, jnp.zeros((total - n,), jnp.float32)])
    else:  # drop_last: the tail of the permutation sits this epoch out
        perm, weights = perm[:total], weights[:total]
    return perm.reshape(steps, b), weights.reshape(steps, b)


def train_epoch(spec: Spec, state, data, hp):
    """One pass over the training set as a lax.scan over mini-batches. Metrics stay on the
    device: sums of weighted loss and metric, mean gradient norm, the last learning rate."""
    head = spec.model.head
    x, y = data["x_train"], data["y_train"]
    rng, k_perm, k_steps = jax.random.split(state["rng"], 3)
    idx, wts = _epoch_batches(spec, k_perm)
    mask = optim.decay_mask(state["params"], spec.optim.penalize_bias_and_norm)

    def step(carry, inp):
        params, batch_stats, opt_state, it = carry
        ib, wb, key = inp
        xb, yb = x[ib], y[ib]
        lr = schedules.learning_rate(it, spec.sched, hp)

        def loss_fn(p):
            out, new_bs = _apply(spec, hp, p, batch_stats, xb, train=True, rng=key, mask=wb)
            data_loss = losses.weighted_mean(losses.per_example_loss(head, out, yb), wb)
            pen = optim.penalty(p, mask, hp, l1=spec.optim.l1, l2=spec.optim.l2)
            return data_loss + pen, (data_loss, out, new_bs)

        (_, (data_loss, out, new_bs)), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        tx = optim.make_optimizer(spec.optim, hp, lr, mask)
        updates, opt_state = tx.update(grads, opt_state, params)
        if spec.diagnostics:
            names = diag.layer_names(params)
            layer_stats = (diag.group_norms(grads, names), diag.group_norms(updates, names)
                           / (diag.group_norms(params, names) + 1e-12))
        else:
            layer_stats = ()
        params = optax.apply_updates(params, updates)
        sw = jnp.sum(wb)
        stats = (data_loss * sw, jnp.sum(wb * losses.metric(head, out, yb)), sw,
                 optim.global_norm(grads), lr, layer_stats)
        return (params, new_bs, opt_state, it + 1), stats

    keys = jax.random.split(k_steps, spec.steps_per_epoch)
    carry0 = (state["params"], state["batch_stats"], state["opt_state"], state["step"])
    (params, batch_stats, opt_state, it), (ls, ms, ws, gn, lrs, layer_stats) = jax.lax.scan(
        step, carry0, (idx, wts, keys))
    n = jnp.sum(ws)
    metrics = dict(train_loss=jnp.sum(ls) / n,
                   train_metric=losses.finalize(head, jnp.sum(ms) / n),
                   grad_norm=jnp.mean(gn), lr=lrs[-1])
    if spec.diagnostics:
        metrics["diag"] = dict(grad_norm=jnp.mean(layer_stats[0], axis=0),
                               update_ratio=jnp.mean(layer_stats[1], axis=0))
    new_state = dict(params=params, batch_stats=batch_stats, opt_state=opt_state, rng=rng, step=it)
    return new_state, metrics


def evaluate(spec: Spec, state, x, y, hp):
    """Loss and metric of the model in evaluation mode (no dropout, running BN statistics)."""
    head = spec.model.head
    n = x.shape[0]
    if n == 0:
        nan = jnp.full((), jnp.nan, jnp.float32)
        return nan, nan
    chunk = min(n, EVAL_CHUNK)
    pad = (-n) % chunk
    w = jnp.concatenate([jnp.ones((n,), jnp.float32), jnp.zeros((pad,), jnp.float32)])
    xp = jnp.concatenate([x, jnp.zeros((pad,) + x.shape[1:], x.dtype)])
    yp = jnp.concatenate([y, jnp.zeros((pad,) + y.shape[1:], y.dtype)])

    def one(args):
        xc, yc, wc = args
        out, _ = _apply(spec, hp, state["params"], state["batch_stats"], xc, train=False)
        return (jnp.sum(wc * losses.per_example_loss(head, out, yc)),
                jnp.sum(wc * losses.metric(head, out, yc)))

    shape = lambda a: a.reshape((-1, chunk) + a.shape[1:])
    ls, ms = jax.lax.map(one, (shape(xp), shape(yp), shape(w)))
    return jnp.sum(ls) / n, losses.finalize(head, jnp.sum(ms) / n)


def activation_pass(spec: Spec, state, data, hp):
    """Weight norms and activation statistics per layer, from an evaluation-mode forward pass
    over the first DIAG_BATCH training examples (a fixed batch, so epochs are comparable)."""
    model = _model(spec, hp)
    names = diag.layer_names(state["params"])
    variables = {"params": state["params"]}
    if spec.model.batchnorm:
        variables["batch_stats"] = state["batch_stats"]
    x = data["x_train"][:diag.DIAG_BATCH]
    _, inter = model.apply(variables, x, train=False, mutable=["intermediates"])
    mean, std, dead, sat = diag.activation_stats(inter.get("intermediates", {}), names,
                                                 spec.model.activation)
    return dict(weight_norm=diag.group_norms(state["params"], names), act_mean=mean,
                act_std=std, dead_frac=dead, saturated_frac=sat)


def epoch(spec: Spec, state, data, hp):
    """train_epoch then validation: one compiled call, one host sync per epoch."""
    state, m = train_epoch(spec, state, data, hp)
    m["val_loss"], m["val_metric"] = evaluate(spec, state, data["x_val"], data["y_val"], hp)
    if spec.diagnostics:
        m["diag"].update(activation_pass(spec, state, data, hp))
    return state, m


def evaluate_splits(spec: Spec, state, data, hp):
    out = {}
    for split in ("train", "val", "test"):
        out[f"{split}_loss"], out[f"{split}_metric"] = evaluate(
            spec, state, data[f"x_{split}"], data[f"y_{split}"], hp)
    return out


def train(spec: Spec, state, data, hp, epochs: int):
    """`epochs` epochs as one scan: (state, data, hp) -> (state, per-epoch metrics). For
    callers that need no per-epoch host work (benchmarks, vectorised sweeps)."""
    return jax.lax.scan(lambda s, _: epoch(spec, s, data, hp), state, None, length=epochs)


# ---------------------------------------------------------------------------------------------
# Vectorised runs: the same functions under jax.vmap over a leading "member" axis of states,
# hyperparameters and keys; the data stay shared (in_axes None). runner.vectorized drives them.

def init_states(spec: Spec, hps, seeds, data):
    """Initial states of all members from their int32 seeds (keys as jax.random.PRNGKey(seed)
    makes them, so a member starts exactly where a run alone with that seed does)."""
    return jax.vmap(lambda hp, s: init_state(spec, hp, jax.random.PRNGKey(s), data))(hps, seeds)


def _keep(active, new, old):
    return jax.tree_util.tree_map(lambda n, o: jnp.where(active, n, o), new, old)


def epochs_masked(spec: Spec, states, data, hps, active):
    """One epoch for every member; a member whose `active` is False (stopped early, diverged,
    or done with its epochs) keeps its state unchanged. Its metrics are computed anyway (vmap
    runs every member) and ignored by the host."""
    def one(state, hp, act):
        new, m = epoch(spec, state, data, hp)
        return _keep(act, new, state), m
    return jax.vmap(one)(states, hps, active)


def evaluate_members(spec: Spec, states, data, hps):
    return jax.vmap(lambda s, hp: evaluate_splits(spec, s, data, hp))(states, hps)


def select_members(spec: Spec, take, new, old):
    """Per member: `new` where take, else `old` (the best-so-far states)."""
    return jax.vmap(_keep)(take, new, old)


# ---------------------------------------------------------------------------------------------
# One compiled executable per (function, spec, shapes), reused for the life of the process.

_CACHE: dict = {}
# Programs a run calls once or twice (initial weights, the evaluations before and after
# training) are compiled without LLVM's optimisations on CPU: a third of the compile time (W1's
# init program: 1.1 -> 0.3 s, mostly the normal sampler's erfinv code per weight shape) for
# run time that does not matter. The per-epoch programs keep the full optimisation.
_RUN_ONCE = {"init_state", "init_states", "evaluate_splits", "evaluate_members"}
STATS = {"compiles": 0, "compile_time": 0.0}


def _signature(args):
    leaves, tree = jax.tree_util.tree_flatten(args)
    # The sharding too: a vmapped group's member axis may be split over devices.
    return tree, tuple((jnp.shape(a), jnp.result_type(a), getattr(a, "sharding", None))
                       for a in leaves)


def compiled(fn, spec: Spec, *args, static=()):
    """The executable of jit(fn)(spec, *args, *static); compiles on first use. Returns
    (executable, seconds spent compiling now)."""
    if fn not in (init_state, init_states):
        # Only init_state draws initial weights: other programs are shared across initializers.
        spec = dataclasses.replace(spec, model=dataclasses.replace(spec.model, init="zeros"))
    key = (fn.__name__, spec, static, _signature(args))
    exe = _CACHE.get(key)
    if exe is not None:
        return exe, 0.0
    t0 = time.perf_counter()
    jitted = jax.jit(partial(fn, spec, **dict(static)) if static else partial(fn, spec))
    quick = fn.__name__ in _RUN_ONCE and jax.default_backend() == "cpu"
    exe = jitted.lower(*args).compile({"xla_backend_optimization_level": 0} if quick else None)
    dt = time.perf_counter() - t0
    _CACHE[key] = exe
    STATS["compiles"] += 1
    STATS["compile_time"] += dt
    return exe, dt
