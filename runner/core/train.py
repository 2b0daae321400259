"""The pure training core: `init_state(spec, hp, key, data)` and
`train_epoch(spec, state, data, hp) -> (state, metrics)`.

Everything here is a pure function of its arguments, so jax.jit (and jax.vmap over hp and keys)
can wrap it. The dataset is an argument, never a closure: a closed-over array would be embedded
in the program as a constant and slow the compile down. Numbers come from `hp` (traced); only
the hashable `spec` is static, so runs that differ in numbers share one compiled program.

`PROGRAMS` (a runner.core.programs.Programs) keeps the compiled executables of these functions
for the process: `PROGRAMS.get(fn, spec, *args) -> (executable, compile seconds)`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar, cast

import jax
import jax.numpy as jnp
import optax

from runner.core import layerstats as diag
from runner.core import losses, optim, schedules
from runner.core.programs import FAST, GROUP_ONCE, Programs
from runner.core.spec import ModelSpec, Spec
from runner.core.state import BatchStats, Data, HParams, Metrics, Params, TrainState

if TYPE_CHECKING:
    import flax.linen

EVAL_CHUNK = 2048  # examples per evaluation pass: bounds memory on larger sets

T = TypeVar("T")
# What flax's model.apply returns with mutable collections: (outputs, updated collections).
WithCollections = tuple[jax.Array, dict[str, Any]]


def _model(spec: Spec, hp: HParams) -> flax.linen.Module:
    from runner.core import nn  # flax: only where a program is traced (not loaded: progstore)

    return nn.build_model(spec.model, hp)


class InitKeys(NamedTuple):
    """The keys a run's seed key splits into: the three streams model.init draws from and the
    run's own key (its state's rng; gradcheck's fixed rrelu/dropout key)."""

    params: jax.Array
    dropout: jax.Array
    rrelu: jax.Array
    run: jax.Array


def init_keys(key: jax.Array) -> InitKeys:
    """The one split of a run's key (jax.random.PRNGKey(seed)) into its InitKeys."""
    k_params, k_drop, k_rrelu, k_run = jax.random.split(key, 4)
    return InitKeys(params=k_params, dropout=k_drop, rrelu=k_rrelu, run=k_run)


def init_variables(
    model: ModelSpec, hp: HParams, keys: InitKeys, sample: jax.Array
) -> tuple[Params, BatchStats]:
    """The model's initial (params, batch_stats) for an input batch shaped like `sample`."""
    from runner.core import nn

    variables = nn.build_model(model, hp).init(
        {"params": keys.params, "dropout": keys.dropout, "rrelu": keys.rrelu}, sample, train=False
    )
    # not .get(): flax types it as Optional, which pyright then rejects for BatchStats
    batch_stats = variables["batch_stats"] if "batch_stats" in variables else {}  # noqa: SIM401
    return variables["params"], batch_stats


def init_state(spec: Spec, hp: HParams, key: jax.Array, data: Data) -> TrainState:
    """Parameters, batch-norm statistics, optimizer state, RNG and step as one pytree."""
    keys = init_keys(key)
    params, batch_stats = init_variables(spec.model, hp, keys, data["x_train"][:1])
    mask = optim.decay_mask(params, spec.optim.penalize_bias_and_norm)
    tx = optim.make_optimizer(spec.optim, hp, hp["lr"], mask)
    return TrainState(
        params=params,
        batch_stats=batch_stats,
        opt_state=tx.init(params),
        rng=keys.run,
        step=jnp.zeros((), jnp.int32),
    )


def _apply(
    spec: Spec,
    hp: HParams,
    params: Params,
    batch_stats: BatchStats,
    x: jax.Array,
    *,
    train: bool,
    rng: jax.Array | None = None,
    mask: jax.Array | None = None,
) -> tuple[jax.Array, BatchStats]:
    """Forward pass; returns (outputs, new batch_stats)."""
    model = _model(spec, hp)
    variables = {"params": params}
    if spec.model.batchnorm:
        variables["batch_stats"] = batch_stats
    if not train:
        return cast(jax.Array, model.apply(variables, x, train=False)), batch_stats
    assert rng is not None, "a training-mode pass draws dropout and rrelu from rng"
    k_drop, k_rrelu = jax.random.split(rng)
    rngs = {"dropout": k_drop, "rrelu": k_rrelu}
    if spec.model.batchnorm:
        out, upd = cast(
            WithCollections,
            model.apply(variables, x, train=True, rngs=rngs, mask=mask, mutable=["batch_stats"]),
        )
        return out, upd["batch_stats"]
    out = cast(jax.Array, model.apply(variables, x, train=True, rngs=rngs, mask=mask))
    return out, batch_stats


def _epoch_batches(spec: Spec, key: jax.Array) -> tuple[jax.Array, jax.Array]:
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


# The per-step divergence check (max_step_loss) averages over at least this many examples, so
# that one hard example in a batch of 1 is not mistaken for a diverging run.
STEP_LOSS_EXAMPLES = 32


def max_step_loss(weighted: jax.Array, weights: jax.Array, batch_size: int) -> jax.Array:
    """The largest training (data) loss of one update's batch in an epoch: `weighted` holds each
    step's loss times its example count, `weights` the counts. Batches under STEP_LOSS_EXAMPLES
    are pooled with their neighbours: the max over every ceil(32 / batch_size) consecutive
    updates (the whole epoch when it is shorter)."""
    k = min(-(-STEP_LOSS_EXAMPLES // batch_size), weighted.shape[0])
    if k == 1:
        return jnp.max(weighted / weights)
    window = jnp.ones((k,), weighted.dtype)
    sums = jnp.convolve(weighted, window, mode="valid")
    return jnp.max(sums / jnp.convolve(weights, window, mode="valid"))


def train_epoch(
    spec: Spec, state: TrainState, data: Data, hp: HParams
) -> tuple[TrainState, Metrics]:
    """One pass over the training set as a lax.scan over mini-batches. Metrics stay on the
    device: the mean loss and metric, the largest step loss (max_step_loss), the mean gradient
    norm, and the learning rate of the epoch's first update (lr) and of the update after the
    epoch (lr_next)."""
    head = spec.model.head
    x, y = data["x_train"], data["y_train"]
    rng, k_perm, k_steps = jax.random.split(state.rng, 3)
    idx, wts = _epoch_batches(spec, k_perm)
    mask = optim.decay_mask(state.params, spec.optim.penalize_bias_and_norm)

    def step(carry, inp):
        params, batch_stats, opt_state, it = carry
        ib, wb, key = inp
        xb, yb = x[ib], y[ib]
        lr = schedules.learning_rate(it, spec.sched, hp)

        def loss_fn(p):
            out, new_bs = _apply(spec, hp, p, batch_stats, xb, train=True, rng=key, mask=wb)
            data_loss = losses.weighted_mean(losses.per_example_loss(head, out, yb), wb)
            # L1 is not differentiated: its proximal step follows the update (below).
            pen = optim.penalty(p, mask, hp, l1=False, l2=spec.optim.l2)
            return data_loss + pen, (data_loss, out, new_bs)

        (_, (data_loss, out, new_bs)), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        tx = optim.make_optimizer(spec.optim, hp, lr, mask)
        updates, opt_state = tx.update(grads, opt_state, params)
        layer_stats: dict[str, jax.Array] = {}  # per-layer numbers (spec.diagnostics)
        if spec.diagnostics:
            names = diag.layer_names(params)
            layer_stats = dict(
                grad_norm=diag.group_norms(grads, names),
                update_ratio=diag.group_norms(updates, names)
                / (diag.group_norms(params, names) + 1e-12),
            )
        params = cast(Params, optax.apply_updates(params, updates))  # the same tree as params
        if spec.optim.l1:  # soft-thresholding: weights under lr * l1 become exactly 0
            params = cast(Params, optim.soft_threshold(params, mask, lr * hp["l1"]))
        sw = jnp.sum(wb)
        stats = (
            data_loss * sw,
            jnp.sum(wb * losses.metric(head, out, yb)),
            sw,
            optim.global_norm(grads),
            lr,
            layer_stats,
        )
        return (params, new_bs, opt_state, it + 1), stats

    keys = jax.random.split(k_steps, spec.steps_per_epoch)
    carry0 = (state.params, state.batch_stats, state.opt_state, state.step)
    (params, batch_stats, opt_state, it), (ls, ms, ws, gn, lrs, layer_stats) = jax.lax.scan(
        step, carry0, (idx, wts, keys)
    )
    n = jnp.sum(ws)
    metrics: Metrics = dict(
        train_loss=jnp.sum(ls) / n,
        train_metric=losses.finalize(head, jnp.sum(ms) / n),
        grad_norm=jnp.mean(gn),
        max_step_loss=max_step_loss(ls, ws, spec.batch_size),
        lr=lrs[0],  # the rate of the epoch's first update (all of them when it is per epoch)
        lr_next=schedules.learning_rate(it, spec.sched, hp),  # the next epoch's first rate
    )
    if spec.diagnostics:  # means over the epoch's steps
        metrics["diag"] = {k: jnp.mean(v, axis=0) for k, v in layer_stats.items()}
    new_state = TrainState(
        params=params, batch_stats=batch_stats, opt_state=opt_state, rng=rng, step=it
    )
    return new_state, metrics


def forward(
    spec: Spec, params: Params, batch_stats: BatchStats, x: jax.Array, hp: HParams
) -> jax.Array:
    """The model's raw outputs (N, n_out) in evaluation mode (no dropout, running batch-norm
    statistics), EVAL_CHUNK examples at a time."""
    n = x.shape[0]
    if n == 0:
        return jnp.zeros((0, spec.model.n_out), jnp.float32)
    chunk = min(n, EVAL_CHUNK)
    pad = (-n) % chunk
    xp = jnp.concatenate([x, jnp.zeros((pad,) + x.shape[1:], x.dtype)])
    out = jax.lax.map(
        lambda xc: _apply(spec, hp, params, batch_stats, xc, train=False)[0],
        xp.reshape((-1, chunk) + x.shape[1:]),
    )
    return out.reshape((-1,) + out.shape[2:])[:n]


def evaluate(
    spec: Spec, state: TrainState, x: jax.Array, y: jax.Array, hp: HParams
) -> tuple[jax.Array, jax.Array]:
    """Loss and metric of the model in evaluation mode (forward's outputs)."""
    head = spec.model.head
    n = x.shape[0]
    if n == 0:
        nan = jnp.full((), jnp.nan, jnp.float32)
        return nan, nan
    out = forward(spec, state.params, state.batch_stats, x, hp)
    return (
        jnp.sum(losses.per_example_loss(head, out, y)) / n,
        losses.finalize(head, jnp.sum(losses.metric(head, out, y)) / n),
    )


def activation_pass(spec: Spec, state: TrainState, data: Data, hp: HParams) -> Metrics:
    """Weight norms and activation statistics per layer, from an evaluation-mode forward pass
    over the first DIAG_BATCH training examples (a fixed batch, so epochs are comparable)."""
    model = _model(spec, hp)
    names = diag.layer_names(state.params)
    variables = {"params": state.params}
    if spec.model.batchnorm:
        variables["batch_stats"] = state.batch_stats
    x = data["x_train"][: diag.DIAG_BATCH]
    _, inter = cast(
        WithCollections, model.apply(variables, x, train=False, mutable=["intermediates"])
    )
    mean, std, dead, sat = diag.activation_stats(
        inter.get("intermediates", {}), names, spec.model.activation
    )
    return dict(
        weight_norm=diag.group_norms(state.params, names),
        act_mean=mean,
        act_std=std,
        dead_frac=dead,
        saturated_frac=sat,
        identical_frac=diag.identical_units(state.params, names),
    )


def epoch(spec: Spec, state: TrainState, data: Data, hp: HParams) -> tuple[TrainState, Metrics]:
    """train_epoch then validation: one compiled call, one host sync per epoch."""
    state, m = train_epoch(spec, state, data, hp)
    m["val_loss"], m["val_metric"] = evaluate(spec, state, data["x_val"], data["y_val"], hp)
    if spec.diagnostics:
        m["diag"].update(activation_pass(spec, state, data, hp))
    return state, m


def evaluate_splits(spec: Spec, state: TrainState, data: Data, hp: HParams) -> Metrics:
    """{train,val,test}_{loss,metric} of the state, and with spec.diagnostics its "diag"
    (activation_pass): the untrained network's row of diagnostics.csv (epoch 0) comes from the
    initial evaluation, with no program of its own to compile."""
    out: Metrics = {}
    for split in ("train", "val", "test"):
        out[f"{split}_loss"], out[f"{split}_metric"] = evaluate(
            spec, state, data[f"x_{split}"], data[f"y_{split}"], hp
        )
    if spec.diagnostics:
        out["diag"] = activation_pass(spec, state, data, hp)
    return out


def train(
    spec: Spec, state: TrainState, data: Data, hp: HParams, epochs: int
) -> tuple[TrainState, Metrics]:
    """`epochs` epochs as one scan: (state, data, hp) -> (state, per-epoch metrics). For
    callers that need no per-epoch host work (benchmarks, vectorised sweeps)."""
    return jax.lax.scan(lambda s, _: epoch(spec, s, data, hp), state, None, length=epochs)


# ---------------------------------------------------------------------------------------------
# Vectorised runs: the same functions under jax.vmap over a leading "member" axis of states,
# hyperparameters and keys; the data stay shared (in_axes None). runner.vectorized drives them.


def init_states(spec: Spec, hps: HParams, seeds: jax.Array, data: Data) -> TrainState:
    """Initial states of all members from their int32 seeds (keys as jax.random.PRNGKey(seed)
    makes them, so a member starts exactly where a run alone with that seed does)."""
    return jax.vmap(lambda hp, s: init_state(spec, hp, jax.random.PRNGKey(s), data))(hps, seeds)


def _keep(active: jax.Array, new: T, old: T) -> T:
    return jax.tree_util.tree_map(lambda n, o: jnp.where(active, n, o), new, old)


def epochs_masked(
    spec: Spec, states: TrainState, data: Data, hps: HParams, active: jax.Array
) -> tuple[TrainState, Metrics]:
    """One epoch for every member; a member whose `active` is False (stopped early, diverged,
    or done with its epochs) keeps its state unchanged. Its metrics are computed anyway (vmap
    runs every member) and ignored by the host."""

    def one(state: TrainState, hp: HParams, act: jax.Array) -> tuple[TrainState, Metrics]:
        new, m = epoch(spec, state, data, hp)
        return _keep(act, new, state), m

    return jax.vmap(one)(states, hps, active)


def evaluate_members(spec: Spec, states: TrainState, data: Data, hps: HParams) -> Metrics:
    return jax.vmap(lambda s, hp: evaluate_splits(spec, s, data, hp))(states, hps)


def select_members(spec: Spec, take: jax.Array, new: TrainState, old: TrainState) -> TrainState:
    """Per member: `new` where take, else `old` (the best-so-far states)."""
    return jax.vmap(_keep)(take, new, old)


# ---------------------------------------------------------------------------------------------
# The process's compiled programs of these functions.

# Programs a run calls once or twice (initial weights, the evaluations before and after
# training, an ensemble member's predictions) are compiled without LLVM's optimisations on CPU:
# most of their compile time, none of their run time matters (docs/performance.md). The
# per-epoch programs keep the full optimisation.
RUN_ONCE = frozenset({init_state, init_states, evaluate_splits, evaluate_members, forward})
# The run-once programs of a vectorised group: under trainer.compile=auto they are compiled
# with more optimisation than a single run's (compile_options).
GROUP_ONCE_FNS = frozenset({init_states, evaluate_members})
# Only these draw initial weights; every other program is shared across initializers.
DRAWS_INIT = frozenset({init_state, init_states})
PROGRAMS = Programs(run_once=RUN_ONCE, draws_init=DRAWS_INIT)

# trainer.compile=auto's cost model for the epoch program (docs/performance.md, 2026-12-05,
# a loaded 2-core machine): compiled with FAST it compiles 2-3.6 s faster (a third less) and
# trains slower by about this much per GFLOP of training and per update (digits MLP: +0.7 s
# for 4 GFLOP and 400 updates; W1: +2.5 s for 49 GFLOP and 810 updates; digits at batch 8:
# +1.1 s for 1 GFLOP and 790 updates).
FAST_SAVES_SECONDS = 2.0
FAST_SECONDS_PER_GFLOP = 0.03
FAST_SECONDS_PER_STEP = 1.3e-3


def training_flops(spec: Spec) -> float | None:
    """Estimated FLOPs of the run's updates: 6 per weight of a dense layer per example
    (forward and backward), padded batches included; None for a cnn."""
    m = spec.model
    if m.arch not in ("mlp", "resmlp"):
        return None
    k = m.maxout_k if m.activation == "maxout" else 1
    width = 1
    for d in spec.input_shape:
        width *= d
    weights = 0
    for i, h in enumerate(m.hidden):
        weights += width * h * k
        if m.arch == "resmlp" and i > 0 and h != width:
            weights += width * h  # the projection of the skip connection
        width = h
    weights += width * m.n_out
    return 6.0 * weights * spec.batch_size * spec.sched.total_steps


def fast_pays(spec: Spec) -> bool:
    """Whether compiling the epoch program with FAST saves more compile time than its slower
    training costs (the cost model above). Never for a cnn: unoptimised convolutions train
    ~17x slower."""
    flops = training_flops(spec)
    if flops is None:
        return False
    extra = flops / 1e9 * FAST_SECONDS_PER_GFLOP + spec.sched.total_steps * FAST_SECONDS_PER_STEP
    return extra < FAST_SAVES_SECONDS


def compile_options(fn, spec: Spec, args: tuple) -> jax.stages.CompilerOptions | None:
    """PROGRAMS' rule: Programs.compile_options, except that with trainer.compile=auto a single
    run's epoch program is compiled without LLVM's optimisations (FAST) when fast_pays, and a
    vectorised group's initial weights and evaluations with GROUP_ONCE (a sweep runs them per
    group). Vectorised groups' epochs keep full optimisation: one program serves many members
    (and groups)."""
    auto = spec.compile == "auto" and jax.default_backend() == "cpu"
    if fn is epoch and auto and fast_pays(spec):
        return FAST
    if fn in GROUP_ONCE_FNS and auto:
        return GROUP_ONCE
    return PROGRAMS.compile_options(fn, spec, args)


PROGRAMS.options_for = compile_options
