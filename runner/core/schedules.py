"""Learning-rate schedules as pure jnp functions of the update count.

``learning_rate(step, spec, hp)`` runs inside ``jax.jit`` with ``hp`` traced (float32 arrays from
``runner.core.spec.make_hparams``) and vectorises with ``jax.vmap`` over a batch of ``hp``. The only
Python branching is on the static ``SchedSpec``; every number comes from ``hp``. (optax's own
schedules branch in Python on some arguments, e.g. ``exponential_decay``'s ``decay_rate``, so we
write them out here.)

Clock. ``step`` is the number of optimizer updates already done (0 for the first update).
``t`` counts the schedule's unit: ``t = step`` (unit ``iteration``) or
``t = step / steps_per_epoch`` (unit ``epoch``); with ``staircase`` it is floored, so with the
epoch unit ``t`` is the number of whole epochs completed and the rate changes once per epoch.
Cyclic schedules and the warmup ramp always use the fractional clock (the rate moves every
batch).

Schedules (``lr0 = hp["lr"]``):

- constant:    ``lr0``
- step:        ``lr0 * factor ** floor(t / every)``
- time_based:  ``lr0 / (1 + k t)``      (notes: lr0=0.2, k=1 -> 0.1, 0.0667, 0.05, 0.04 at t=1..4)

  A curve row (curves.csv) of epoch ``e`` logs ``lr``, the rate of its first update (``t = e - 1``
  epochs done; every update of it with staircase), and ``lr_next``, the rate after it (``t = e``):
  the notes' table ("epoch 1 -> 0.1") is the lr_next column, and lr_next of epoch e is lr of e+1.

- exponential: ``lr0 * exp(-k t)``
- piecewise:   ``lr0 * factors[j]``, ``j`` the last boundary ``<= t`` (``lr0`` before the first)
- cyclic (Smith 2017):  ``cycle = floor(1 + t / (2 step_size))``,
  ``x = |t / step_size - 2 cycle + 1|`` (x = 1 at base_lr, x = 0 at the peak),
  ``lr = base_lr + (max_lr - base_lr) * w(x) * scale`` with the window
  ``w``: triangular ``1 - x``, welch ``1 - x^2`` (parabolic), hann ``(1 + cos(pi x)) / 2``
  (sinusoidal), and the policy's ``scale``: triangular ``1``, triangular2 ``1 / 2^(cycle - 1)``
  (amplitude halves every cycle), exp_range ``gamma ** iteration`` (iteration counted in updates).
  A cycle starts at ``base_lr``.
- cosine:      ``lr0 * (f + (1 - f) * (1 + cos(pi * min(t, D) / D)) / 2)``, ``D = decay_steps``,
  ``f = final_fraction``.

Warmup (``spec.warmup``; ``W = hp["warmup"]`` units, ``s = hp["warmup_start"]``): while the
fractional clock ``t < W`` the rate is ``main(0) * (s + (1 - s) t / W)``, a linear ramp from
``s * main(0)`` towards ``main(0)``; afterwards the main schedule runs on the shifted clock
``t - W`` (floored when staircase), so it starts where the ramp ends.
"""

from __future__ import annotations

import jax.numpy as jnp

from runner.core.spec import SchedSpec

SCHEDULE_NAMES = ("constant", "step", "time_based", "exponential", "piecewise", "cyclic", "cosine")


def _window(name: str, x):
    """Cyclic window: 1 at the peak (x = 0), 0 at the bounds (x = 1)."""
    if name == "triangular":
        return 1.0 - x
    if name == "welch":
        return 1.0 - x * x
    if name == "hann":
        return 0.5 * (1.0 + jnp.cos(jnp.pi * x))
    raise ValueError(f"unknown cyclic window {name!r}")


def _iterations(spec: SchedSpec, t_frac):
    """A fractional clock in the schedule's unit, converted to updates."""
    return t_frac * spec.steps_per_epoch if spec.unit == "epoch" else t_frac


def _main(spec: SchedSpec, hp, t_frac):
    """The schedule without warmup on the fractional clock t_frac (in units)."""
    lr0 = jnp.asarray(hp["lr"], jnp.float32)
    t = jnp.floor(t_frac) if spec.staircase else t_frac
    name = spec.name
    if name == "constant":
        return lr0 * jnp.ones_like(t)
    if name == "step":
        return lr0 * hp["factor"] ** jnp.floor(t / hp["every"])
    if name == "time_based":
        return lr0 / (1.0 + hp["k"] * t)
    if name == "exponential":
        return lr0 * jnp.exp(-hp["k"] * t)
    if name == "piecewise":
        if spec.n_boundaries == 0:
            return lr0 * jnp.ones_like(t)
        boundaries = jnp.asarray(hp["boundaries"], jnp.float32)
        factors = jnp.concatenate(
            [jnp.ones((1,), jnp.float32), jnp.asarray(hp["factors"], jnp.float32)]
        )
        j = jnp.sum((boundaries <= t).astype(jnp.int32))
        return lr0 * factors[j]
    if name == "cyclic":
        tc = t_frac  # never floored: the rate changes every batch
        ss = hp["step_size"]
        cycle = jnp.floor(1.0 + tc / (2.0 * ss))
        x = jnp.abs(tc / ss - 2.0 * cycle + 1.0)
        w = _window(spec.window, jnp.clip(x, 0.0, 1.0))
        if spec.policy == "triangular":
            scale = 1.0
        elif spec.policy == "triangular2":
            scale = 1.0 / 2.0 ** (cycle - 1.0)
        elif spec.policy == "exp_range":
            scale = hp["gamma"] ** _iterations(spec, tc)
        else:
            raise ValueError(f"unknown cyclic policy {spec.policy!r}")
        return hp["base_lr"] + (hp["max_lr"] - hp["base_lr"]) * w * scale
    if name == "cosine":
        d = hp["decay_steps"]
        frac = jnp.minimum(t, d) / d
        f = hp["final_fraction"]
        return lr0 * (f + (1.0 - f) * 0.5 * (1.0 + jnp.cos(jnp.pi * frac)))
    raise ValueError(f"unknown schedule {name!r}; choose one of {', '.join(SCHEDULE_NAMES)}")


def learning_rate(step, spec: SchedSpec, hp):
    """The learning rate for the update that follows ``step`` completed updates (float32)."""
    step = jnp.asarray(step, jnp.float32)
    t_frac = step / spec.steps_per_epoch if spec.unit == "epoch" else step
    if not spec.warmup:
        return jnp.asarray(_main(spec, hp, t_frac), jnp.float32)
    w = hp["warmup"]
    s = hp["warmup_start"]
    ramp = _main(spec, hp, jnp.zeros_like(t_frac)) * (
        s + (1.0 - s) * t_frac / jnp.maximum(w, 1e-12)
    )
    after = _main(spec, hp, jnp.maximum(t_frac - w, 0.0))
    return jnp.asarray(jnp.where(t_frac < w, ramp, after), jnp.float32)
